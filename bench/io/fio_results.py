"""fio's JSON (fio's own or ``tierstore bench io``'s) as flat result entries and latency curves.

One entry per job and direction that did I/O: where it ran (``target``), what it did (``rw``,
``bs``, ``iodepth``) and what it measured (``bw_bytes``, ``iops``, completion latency
percentiles). The saved result of ``tierstore bench io`` lists these entries and keeps the whole
fio document beside them; ``tierstore bench report`` reads them back, and reads real fio's
``--output-format=json`` the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..common.errors import BenchError
from ..common.units import parse_size

__all__ = ["LatencyCurve", "bs_text", "fio_entries", "is_fio_document", "latency_curves"]

_DIRECTIONS = ("read", "write", "trim")
_FIO_DEFAULT_BS = 4096
_SHOWN_PERCENTILES = {"50.000000": "clat_p50_ns", "90.000000": "clat_p90_ns",
                      "99.000000": "clat_p99_ns", "99.900000": "clat_p99_9_ns"}


@dataclass(frozen=True)
class LatencyCurve:
    """Completion latency percentiles of one job and direction: ``(percent, ns)`` pairs."""

    label: str
    rw: str
    direction: str
    points: tuple[tuple[float, float], ...]
    series: str = ""  # what was measured (a tier, a target): one colour on a plot
    test: str = ""  # how (block size and queue depth): one line style


def is_fio_document(document: Any) -> bool:
    """Whether ``document`` has fio's JSON shape (a ``jobs`` list of jobs with ``read``)."""
    jobs = document.get("jobs") if isinstance(document, dict) else None
    return isinstance(jobs, list) and all(
        isinstance(j, dict) and isinstance(j.get("read"), dict) for j in jobs)


def bs_text(size: int) -> str:
    """4096 -> ``4k``, 1048576 -> ``1m``, as fio's options write block sizes."""
    for suffix, unit in (("m", 2**20), ("k", 1024)):
        if size >= unit and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def _option(job: Mapping[str, Any], doc: Mapping[str, Any], name: str) -> str | None:
    for options in (job.get("job options"), doc.get("global options")):
        if isinstance(options, dict) and name in options:
            return str(options[name])
    return None


def _block_size(job: Mapping[str, Any], doc: Mapping[str, Any]) -> tuple[str, int]:
    text = _option(job, doc, "bs") or _option(job, doc, "blocksize")
    ranged = _option(job, doc, "bsrange") or _option(job, doc, "blocksize_range")
    if ranged and not text:
        low = ranged.partition("-")[0]
        try:
            return ranged, parse_size(low, "bsrange")
        except BenchError:
            return ranged, 0
    if not text:
        return bs_text(_FIO_DEFAULT_BS), _FIO_DEFAULT_BS
    try:
        size = parse_size(text.split(",")[0], "bs")
    except BenchError:
        return text, 0
    return bs_text(size), size


def _targets(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """tierstore's description of each job's target, by job name (absent in fio's JSON)."""
    extra = doc.get("tierstore")
    jobs = extra.get("jobs") if isinstance(extra, dict) else None
    found: dict[str, dict[str, Any]] = {}
    for job in jobs if isinstance(jobs, list) else []:
        if isinstance(job, dict) and isinstance(job.get("target"), dict):
            found.setdefault(str(job.get("jobname")), job["target"])
    return found


def _target_label(job: Mapping[str, Any], doc: Mapping[str, Any],
                  target: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """(label of where the job ran, tier name or None)."""
    if target is not None:
        files = target.get("files") or []
        if target.get("kind") == "tier":
            return f"tier {target.get('tier')}", str(target.get("tier"))
        return (str(files[0]) if files else str(target.get("kind"))), None
    tier = _option(job, doc, "tier")
    if tier:
        return f"tier {tier}", tier
    for name in ("filename", "directory"):
        value = _option(job, doc, name)
        if value:
            return value, None
    return str(job.get("jobname", "?")), None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | int:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


def fio_entries(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flat entries (one per job and active direction) of a fio JSON document."""
    targets = _targets(doc)
    entries = []
    for job in doc.get("jobs", []):
        name = str(job.get("jobname", "?"))
        target, tier = _target_label(job, doc, targets.get(name))
        bs, bs_bytes = _block_size(job, doc)
        depth = _option(job, doc, "iodepth")
        numjobs = _option(job, doc, "numjobs")
        for direction in _DIRECTIONS:
            part = job.get(direction)
            if not isinstance(part, dict) or not _number(part.get("total_ios")):
                continue
            clat = _mapping(part.get("clat_ns"))
            percentiles = _mapping(clat.get("percentile"))
            entry: dict[str, Any] = {
                "target": target, "job": name, "rw": _option(job, doc, "rw") or "read",
                "direction": direction, "bs": bs, "bs_bytes": bs_bytes,
                "iodepth": int(depth) if depth and depth.isdigit() else 1,
                "numjobs": int(numjobs) if numjobs and numjobs.isdigit() else 1,
                "runtime_ms": _number(part.get("runtime")),
                "io_bytes": _number(part.get("io_bytes")),
                "bw_bytes": _number(part.get("bw_bytes")), "iops": _number(part.get("iops")),
                "clat_mean_ns": _number(clat.get("mean"))}
            if tier is not None:
                entry["tier"] = tier
            for key, field in _SHOWN_PERCENTILES.items():
                if key in percentiles:
                    entry[field] = _number(percentiles[key])
            entries.append(entry)
    return entries


def latency_curves(doc: Mapping[str, Any], source: str = "") -> list[LatencyCurve]:
    """The ``clat_ns.percentile`` curve of every job and active direction of a fio document;
    ``source`` (a file's name) starts each label when several documents are compared."""
    curves = []
    entries = iter(fio_entries(doc))
    for job in doc.get("jobs", []):
        for direction in _DIRECTIONS:
            part = job.get(direction)
            if not isinstance(part, dict) or not _number(part.get("total_ios")):
                continue
            entry = next(entries)
            clat = part.get("clat_ns") or {}
            raw = clat.get("percentile") if isinstance(clat, dict) else None
            if not isinstance(raw, dict):
                continue
            try:
                points = tuple(sorted((float(p), float(v)) for p, v in raw.items()
                                      if float(v) > 0))
            except (TypeError, ValueError):
                continue
            label = (f"{source}: " if source else "") + (
                f"{entry['target']} {entry['rw']} {entry['bs']} qd{entry['iodepth']}"
                + (f" {direction}" if entry["rw"] in ("randrw", "rw", "readwrite") else ""))
            if points:
                curves.append(LatencyCurve(
                    label, entry["rw"], direction, points,
                    series=(f"{source}: " if source else "") + str(entry["target"]),
                    test=f"{entry['bs']} qd{entry['iodepth']}"))
    return curves
