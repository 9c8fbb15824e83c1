"""What a result was measured on: the machine's description, and fio's ``disk_util``.

Every benchmark result carries the machine (cores, memory, kernel, versions, and the disks
under its local files) so results from different machines are never compared blindly.
``disk_util`` is read from ``/proc/diskstats`` before and after a run, as fio reports it.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["DiskStats", "block_device", "describe_machine", "nearest_existing"]

_PACKAGES = ("tierstore", "fsspec", "s3fs", "numpy")


def _meminfo_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def nearest_existing(path: str) -> str:
    """``path``, or the nearest folder above it that exists (where it would be made)."""
    here = os.path.abspath(path)
    while not os.path.exists(here) and os.path.dirname(here) != here:
        here = os.path.dirname(here)
    return here


def block_device(path: str) -> str | None:
    """The whole disk (``vda``, ``nvme0n1``) a local path lives on (or would be made on), or
    None."""
    try:
        dev = os.stat(nearest_existing(path))
    except OSError:
        return None
    sysfs = Path(f"/sys/dev/block/{os.major(dev.st_dev)}:{os.minor(dev.st_dev)}")
    if not sysfs.exists():
        return None
    resolved = sysfs.resolve()
    if (resolved / "partition").exists():
        resolved = resolved.parent
    return resolved.name


def _disk(name: str) -> dict[str, Any]:
    base = Path("/sys/block") / name
    out: dict[str, Any] = {"name": name}
    for key, rel in (("model", "device/model"), ("rotational", "queue/rotational"),
                     ("size_bytes", "size"), ("scheduler", "queue/scheduler")):
        try:
            text = (base / rel).read_text().strip()
        except OSError:
            continue
        out[key] = int(text) * 512 if key == "size_bytes" else (
            text == "1" if key == "rotational" else text)
    return out


def describe_machine(disks: Iterable[str] = ()) -> dict[str, Any]:
    """Cores, memory, CPU, kernel, Python and package versions, and the named disks."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _meminfo_bytes(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "disks": [_disk(name) for name in sorted(set(disks))],
    }


class DiskStats:
    """``/proc/diskstats`` of some disks, before and after a run (fio's ``disk_util``)."""

    _FIELDS = ("read_ios", "read_merges", "read_sectors", "read_ticks", "write_ios",
               "write_merges", "write_sectors", "write_ticks", "in_flight", "io_ticks",
               "in_queue")

    def __init__(self, disks: Iterable[str]):
        self.disks = sorted(set(disks))
        self._before = self._read()
        self._started = os.times().elapsed

    def _read(self) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        try:
            lines = Path("/proc/diskstats").read_text().splitlines()
        except OSError:
            return found
        for line in lines:
            parts = line.split()
            if len(parts) >= 14 and parts[2] in self.disks:
                found[parts[2]] = dict(zip(self._FIELDS, map(int, parts[3:14]), strict=True))
        return found

    def report(self) -> list[dict[str, Any]]:
        """fio's ``disk_util`` entries: I/Os, merges and ticks during the run, and util %."""
        after, elapsed_ms = self._read(), (os.times().elapsed - self._started) * 1000
        out = []
        for name in self.disks:
            if name not in after or name not in self._before:
                continue
            delta = {k: after[name][k] - self._before[name][k] for k in self._FIELDS}
            util = 100.0 * delta["io_ticks"] / elapsed_ms if elapsed_ms > 0 else 0.0
            out.append({"name": name, "read_ios": delta["read_ios"],
                        "write_ios": delta["write_ios"], "read_merges": delta["read_merges"],
                        "write_merges": delta["write_merges"],
                        "read_ticks": delta["read_ticks"], "write_ticks": delta["write_ticks"],
                        "in_queue": delta["in_queue"], "util": min(util, 100.0)})
        return out
