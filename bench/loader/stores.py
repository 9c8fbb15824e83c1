"""The store ``tierstore bench loader`` runs against, and the processes around it.

The benchmark never writes into a user's catalog: it builds a store of its own in a work
folder, with

- a **hot** tier: a local folder that holds ``--hot-fraction`` of the dataset's size under its
  high watermark (the daemon keeps it under its watermarks; a peer's cache is bounded at the
  same bytes), and
- the **data** tier the dataset is generated in: the warm tier of ``--config STORE.toml`` (or
  the tier ``--tier`` names), or a bucket of a local S3 server the benchmark starts itself:
  ``--s3 moto`` (in a process of its own so the server's CPU is not the training loop's) or
  ``--s3 ceph``, the project's single-node Ceph radosgw (:mod:`..common.ceph`, the tests' fixture: a
  real S3 gateway that keeps connections open, with its own request counters),

and a SQLite catalog beside them. The config is written as TOML so that ``tierstore daemon``
can run as a subprocess over the same store during the tierstore loader's epochs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tierstore.config import Config, TierClass, TierConfig, load_config

from ..common.ceph import free_port
from ..common.errors import BenchError

__all__ = ["BenchStore", "DaemonProcess", "MotoProcess", "config_toml", "make_bench_store"]

DATA_TIER = "warm"
HOT_TIER = "hot"


class MotoProcess:
    """moto's S3 server in a child process on 127.0.0.1 and a free port."""

    def __init__(self, log: Path):
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.access_key = "tierstore-bench"
        self.secret_key = uuid.uuid4().hex
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # moto: no region_name given
        self._log: IO[bytes] = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.endpoint_url + "/moto-api/", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise BenchError(f"the moto server did not start (see {log})") from None
                time.sleep(0.1)

    def storage_options(self) -> dict[str, Any]:
        return {"key": self.access_key, "secret": self.secret_key,
                "client_kwargs": {"endpoint_url": self.endpoint_url}}

    def make_bucket(self, name: str) -> None:
        import s3fs

        fs = s3fs.S3FileSystem(**self.storage_options())
        fs.mkdir(name)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class DaemonProcess:
    """``tierstore daemon --config CFG --tick 1s --no-metrics`` as a child process, stopped
    with SIGTERM (it finishes or rolls back its moves in flight)."""

    def __init__(self, config_path: Path, log: Path, tick: str = "1s"):
        self.log_path = log
        self._log: IO[bytes] = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tierstore.cli", "daemon", "--config", str(config_path),
             "--tick", tick, "--no-metrics", "--shutdown-timeout", "10s"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_started(self, timeout: float = 60.0) -> None:
        """Wait until the daemon has started (its log says so), as it would have long before
        a training job on a node where it runs; a BenchError if it exits or takes longer."""
        deadline = time.monotonic() + timeout
        while b"daemon started" not in self.log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BenchError(f"tierstore daemon did not start (see {self.log_path})")
            time.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM, wait; the exit status (None if it had to be killed)."""
        status: int | None = self.process.poll()
        if status is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                status = self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                status = None
        self._log.close()
        return status


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise BenchError(f"cannot write {value!r} into a TOML config")


def config_toml(config: Config) -> str:
    """``config`` as a TOML file :func:`tierstore.config.load_config` reads back."""
    lines = [f"home = {_toml_value(str(config.home))}",
             f"catalog = {_toml_value(config.catalog)}",
             f"default_tier = {_toml_value(config.default_tier)}",
             f"site = {_toml_value(config.site)}"]
    for tier in config.tiers.values():
        lines += ["", f"[tiers.{tier.name}]",
                  f"class = {_toml_value(tier.tier_class.name.lower())}",
                  f"url = {_toml_value(tier.url)}", f"site = {_toml_value(tier.site)}",
                  f"high_watermark = {tier.high_watermark!r}",
                  f"low_watermark = {tier.low_watermark!r}",
                  f"max_concurrency = {tier.max_concurrency}", f"timeout = {tier.timeout!r}"]
        if tier.capacity is not None:
            lines.append(f"capacity = {tier.capacity}")
        if tier.options:
            lines.append(f"options = {_toml_value(dict(tier.options))}")
    if config.policies:
        lines += ["", "[policies]"]
        lines += [f"{name} = {_toml_value(value)}" for name, value in config.policies.items()]
    return "\n".join(lines) + "\n"


@dataclass
class BenchStore:
    """The benchmark's own store: its config (also as a TOML file), which tier holds the
    dataset and which is hot, and what to stop and remove afterwards."""

    config: Config
    config_path: Path
    workdir: Path
    data_tier: str
    hot_tier: str
    server: str  # what the data tier is, in words (for the report)
    storage_options: dict[str, Any]  # of the data tier (for the baselines' s3fs)
    _cleanup: list[Callable[[], None]] = field(default_factory=list, repr=False)
    # the S3 server the bench started: its processes (for its CPU) and, where it keeps them,
    # its own counters of requests served to every client (``gets``, ``get_bytes``)
    server_pids: Callable[[], list[int]] = field(default=lambda: [], repr=False)
    server_counters: Callable[[], dict[str, int]] | None = field(default=None, repr=False)

    def data_url(self) -> str:
        return self.config.tiers[self.data_tier].url

    def close(self) -> None:
        while self._cleanup:
            with contextlib.suppress(Exception):
                self._cleanup.pop()()


def _pick_data_tier(config: Config, name: str | None) -> TierConfig:
    if name is not None:
        return config.tier(name)
    for wanted in (TierClass.WARM, TierClass.COLD):
        for tier in config.tiers.values():
            if tier.tier_class == wanted:
                return tier
    raise BenchError(f"{config.source or 'the config'} has no warm or cold tier to put the "
                     "dataset in; name one with --tier")


def start_bench_ceph(workdir: Path, memstore_bytes: int) -> tuple[Any, Callable[[], None]]:
    """The single-node Ceph RGW of a benchmark run, under ``workdir``; it cannot start: a
    :class:`BenchError` that says why."""
    from ..common.ceph import CephStartError, CephUnavailable, start_ceph

    try:
        return start_ceph(workdir / "ceph", memstore_bytes=memstore_bytes)
    except (CephUnavailable, CephStartError) as exc:
        raise BenchError(f"--s3 ceph: {exc}") from None


def _ceph_pids(cluster: Path) -> list[int]:
    pids = []
    for f in (cluster / "run").glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(f.read_text().strip()))
    return pids


def make_bench_store(workdir: Path, hot_capacity: int, *, config: str | None = None,
                     s3: str | None = None, tier: str | None = None,
                     hot_dir: Path | None = None, s3_bytes: int = 2 << 30) -> BenchStore:
    """A store for one benchmark run under ``workdir``: a hot local folder of
    ``hot_capacity`` bytes and a data tier from ``config`` (its tier ``tier``, default its
    first warm one), from a local S3 server (``s3="moto"`` or ``"ceph"``, whose in-memory OSD
    gets ``s3_bytes``), or, with neither, a local folder (no S3: only useful for quick
    checks)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cleanup: list[Callable[[], None]] = []
    policies: Mapping[str, Any] = {}
    server_pids: Callable[[], list[int]] = lambda: []  # noqa: E731
    counters: Callable[[], dict[str, int]] | None = None
    if s3 is not None and config is not None:
        raise BenchError("give --config or --s3, not both")
    if s3 == "ceph":
        from ..common.ceph import _CEPH_DIRS, rgw_counters

        ceph, stop = start_bench_ceph(workdir, s3_bytes)
        cleanup.append(stop)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        try:
            ceph.make_bucket(bucket)
        except Exception:
            stop()
            raise
        data = TierConfig(name=DATA_TIER, tier_class=TierClass.WARM,
                          url=f"s3://{bucket}/warm", options=ceph.storage_options(),
                          timeout=30.0)
        where = f"single-node Ceph radosgw (memstore OSD) at {ceph.endpoint_url}"
        cluster = _CEPH_DIRS[ceph.endpoint_url]
        server_pids = lambda: _ceph_pids(cluster)  # noqa: E731
        counters = lambda: rgw_counters(ceph)  # noqa: E731
    elif s3 is not None:
        if s3 != "moto":
            raise BenchError(f"--s3 {s3!r}: 'moto' or 'ceph'")
        try:
            import moto  # noqa: F401
        except ImportError:
            raise BenchError("--s3 moto needs moto installed (pip install 'moto[server]')") \
                from None
        server = MotoProcess(workdir / "moto.log")
        cleanup.append(server.stop)
        server_pids = lambda: [server.process.pid]  # noqa: E731
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        try:
            server.make_bucket(bucket)
        except Exception:
            server.stop()
            raise
        data = TierConfig(name=DATA_TIER, tier_class=TierClass.WARM,
                          url=f"s3://{bucket}/warm", options=server.storage_options(),
                          timeout=30.0)
        where = f"moto S3 server (child process) at {server.endpoint_url}"
    elif config is not None:
        user = load_config(config)
        data = _pick_data_tier(user, tier)
        policies = user.policies
        where = f"tier {data.name!r} ({data.tier_class.name.lower()}) of {config}"
    else:
        data = TierConfig(name=DATA_TIER, tier_class=TierClass.WARM,
                          url=(workdir / "tiers" / "warm").absolute().as_uri())
        where = "a local folder (no S3 server)"
    if data.tier_class == TierClass.HOT:
        hot_name = data.name
        tiers = {data.name: data}
    else:
        hot_name = HOT_TIER if data.name != HOT_TIER else "hot-bench"
        hot_path = (hot_dir or workdir / "tiers" / "hot").absolute()
        hot_path.mkdir(parents=True, exist_ok=True)
        hot = TierConfig(name=hot_name, tier_class=TierClass.HOT, url=hot_path.as_uri())
        # ``hot_capacity`` bytes fit under its high watermark: what a peer's cache is given
        # (a watermark is the daemon's headroom, not a smaller cache)
        tiers = {hot_name: dataclasses.replace(
                     hot, capacity=max(1, math.ceil(hot_capacity / hot.high_watermark))),
                 data.name: data}
    home = workdir.absolute()
    bench_config = Config(home=home, catalog=f"sqlite:///{home / 'catalog.db'}", tiers=tiers,
                          default_tier=data.name, source=str(home / "tierstore.toml"),
                          policies=policies)
    path = home / "tierstore.toml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the keys
    with os.fdopen(fd, "w") as out:
        out.write(config_toml(bench_config))
    bench_config = load_config(path)
    return BenchStore(bench_config, path, home, data.name, hot_name, where,
                      dict(data.options), cleanup, server_pids, counters)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
