"""``tierstore bench migrate``: moving objects between two tiers, against a plain fsspec copy
and a plain fsspec move.

A set of ``--count`` objects of ``--size`` bytes is put on tier ``--src``. Each round then
makes six timed passes over the same bytes, in an order that alternates between rounds (so
drift in the machine's state falls on every path alike):

* ``tierstore`` forward: the daemon's own executor (:class:`~tierstore.daemon.Daemon`, the
  code ``tierstore daemon`` runs) moves every object from ``--src`` to ``--dst``, ``--jobs``
  moves in flight (the daemon's ``--max-moves``, default 4). Each move is the store's: a
  verified copy to a temporary name, commit, then the source replica removed.
* ``fsspec`` forward: the same bytes, as plain files on ``--src`` (laid out once, under
  ``.tierstore/bench/`` on the tier), copied to ``--dst`` by the tier's own fsspec filesystem
  (``put_file``, ``get_file`` or ``cp_file``, what ``fs.put``/``fs.get``/``fs.cp`` do), with
  the same number of copies in flight; no catalog, no verification, but a copy that lands on
  a local folder is fsynced (with its folder) as a move's must be: a copy left in the page
  cache would measure memory, not the disk. The copies are removed,
  untimed, after each pass, as a user would remove them (not through the tier, which keeps
  large files it frees to write its next replicas over: :mod:`tierstore.tier.recycle`).
* ``fsspec mv`` forward: a plain move, what a user of fsspec writes to move a file between
  two filesystems (fsspec's ``mv`` works within one): the same copy, then its source removed
  (``rm_file``), timed. Its own set of files goes to ``--dst`` and comes back on the way
  back, as tierstore's objects do.
* the three back, from ``--dst`` to ``--src`` (the objects go home).

Throughput is bytes moved over a pass's wall time, in MB/s (10^6 bytes); the median over the
rounds is reported per direction and path, with this process's CPU seconds per GB moved (the
client's: a server started for the run is another process). ``ratio`` is tierstore's over
the plain copy's (a move does more than a copy: it also removes its source),
``ratio_to_move`` over the plain move's (the same work, less the verification and the
catalog). The forward direction is the headline (``tierstore_mb_per_s``,
``baseline_mb_per_s``, ``ratio`` at the top of the JSON), the way back is under ``reverse``.

Where the tiers are: ``--config STORE.toml`` (any store; the objects live under
``bench-migrate/<run>/`` and are removed afterwards), else a scratch store in a temporary
folder (``--dir``) whose ``hot`` and ``cold`` tiers are local folders and whose ``warm``
tier is a local folder too, or with ``--s3 moto`` a bucket on a moto server started for the
run (a separate process on 127.0.0.1; needs ``moto[server]``), with ``--s3 ceph`` a bucket on
the project's single-node Ceph RGW started for the run (``bench/common/ceph-single-node.sh``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from tierstore.cli.progress import Transfer, bounded
from tierstore.config import Config, TierClass, TierConfig, load_config
from tierstore.daemon import Daemon, DaemonOptions
from tierstore.errors import ConfigError
from tierstore.keys import RESERVED_PREFIX
from tierstore.policies.base import Move, Plan, Snapshot
from tierstore.policies.engine import PolicyEngine
from tierstore.policies.snapshot import object_state, tier_states
from tierstore.redaction import redact
from tierstore.store import Store
from tierstore.tier import PART_SIZE, Tier
from tierstore.units import parse_size

from .common.ceph import free_port
from .common.errors import BenchError
from .common.results import result_document, save_and_say, write_json

__all__ = ["MigrateSettings", "add_migrate_arguments", "add_store_arguments", "bench_config",
           "check_store_arguments", "local_moto", "measure", "run_migrate", "scratch_config"]

EXIT_USAGE = 2
MB = 1e6
KEY_PREFIX = "bench-migrate"
BASE_DIR = f"{RESERVED_PREFIX}/bench"
DEFAULT_JOBS = DaemonOptions().max_moves
CEPH_BYTES = 2 << 30  # the in-memory OSD of --s3 ceph
VERIFICATION = ("tierstore: every move streams the source replica through its checksum "
                "(XXH3-128, checked against the catalog before the copy can complete; from "
                "a local folder to S3, an object of up to 32 MiB is read whole and checked "
                "before it is sent; between local folders the kernel copies it, hashed as it "
                "lands). To S3 "
                "the bytes go to their final name as one PUT (a multipart upload above 32 "
                "MiB, 4 parts in flight), proven by the server's check of the SHA-256 each "
                "request is signed with where it makes one (probed once), else by its ETag, "
                "which must equal the MD5 computed on the way and still show on a HEAD, else "
                "they are read back and checked; to a local folder they are written under a "
                "temporary name (past the page cache from a MiB on), hashed as they are "
                "handed to the kernel, fsynced and renamed. The new replica is committed, "
                "then the source replica removed. fsspec: a copy (put_file, get_file or "
                "cp_file), made durable where it lands on a local folder (the file and its "
                "folders fsynced, as a move's replica is), nothing verified; fsspec mv: the "
                "same copy, then its source removed (rm_file)")


@dataclass(frozen=True)
class MigrateSettings:
    """What one run measures."""

    src: str
    dst: str
    count: int = 8
    size: int = 16 * 2**20
    rounds: int = 5
    jobs: int = DEFAULT_JOBS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.src == self.dst:
            raise BenchError(f"--src and --dst are both {self.src!r}: pick two tiers")
        if not (self.count >= 1 and self.size >= 1 and self.rounds >= 1 and self.jobs >= 1):
            raise BenchError("expected --count, --size, --rounds and --jobs of at least 1")

    @property
    def pass_bytes(self) -> int:
        return self.count * self.size


@dataclass
class Timings:
    """Seconds and this process's CPU seconds per pass, per (direction, path), in round
    order."""

    seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    cpu: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, direction: str, path: str, timed: tuple[float, float]) -> None:
        self.seconds.setdefault((direction, path), []).append(timed[0])
        self.cpu.setdefault((direction, path), []).append(timed[1])


class _Stopwatch:
    """Wall and CPU seconds (this process, all its threads: the client's side; a server
    started for the run is another process) from its start to :meth:`read`."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


# -- the two ways of moving the bytes ---------------------------------------------------------


class _FixedPlan(PolicyEngine):
    """A policy engine whose plan is whatever the benchmark says."""

    def __init__(self) -> None:
        super().__init__([])
        self.moves: tuple[Move, ...] = ()

    def plan(self, snapshot: Snapshot) -> Plan:
        return Plan(self.moves, snapshot.now)


class _BenchDaemon(Daemon):
    """The daemon, its progress shown as bytes are copied."""

    advance: Callable[[int], None] = staticmethod(lambda _n: None)

    async def pace(self, src: str, dst: str, size: int) -> None:
        await super().pace(src, dst, size)
        self.advance(size)


async def _tierstore_pass(store: Store, daemon: _BenchDaemon, keys: Sequence[str], src: str,
                          dst: str) -> tuple[float, float]:
    """Move ``keys`` from ``src`` to ``dst`` with the daemon's executor; the seconds taken,
    and the CPU seconds."""
    records = [store.catalog.get(key) for key in keys]
    now = time.time()
    known = set(store.config.tiers)
    objects = tuple(state for record in records if record is not None
                    if (state := object_state(record, None, now, known)))
    snapshot = Snapshot(objects, tier_states(store.config, [], [r for r in records if r]), now)
    plan = Plan(tuple(Move(obj.key, src, dst, obj.size, "bench", "tierstore bench migrate")
                      for obj in objects), now)
    if len(plan) != len(keys):
        raise BenchError(f"{len(keys) - len(plan)} of the benchmark's objects are missing")
    daemon.outcomes = Counter()
    watch = _Stopwatch()
    await daemon._execute(plan, snapshot)
    timed = watch.read()
    if daemon.outcomes != Counter(done=len(keys)):
        raise BenchError(f"moves from {src} to {dst} did not all finish: "
                         f"{dict(daemon.outcomes)} (run with -v for the daemon's log lines)")
    return timed


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0]


async def _plain_copy(src: Tier, src_path: str, dst: Tier, dst_path: str) -> None:
    """Copy one file between two tiers' fsspec filesystems, as a user of fsspec would; on a
    local folder made durable after (:meth:`Tier.sync`: the file and its folders fsynced),
    as a move's replica is: a copy left in the page cache measures memory, not the disk."""
    await _copy(src, src_path, dst, dst_path)
    await dst.sync(dst_path)  # what a move's new replica gets (nothing on S3)


def _uncache(path: str) -> None:
    """Drop a local file's pages from the page cache (they are clean: nothing is lost)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


async def _copy(src: Tier, src_path: str, dst: Tier, dst_path: str) -> None:
    sfs, dfs = await src._fs(), await dst._fs()
    source, target = src.full_path(src_path), dst.full_path(dst_path)
    if not src.is_async and not dst.is_async:
        await asyncio.to_thread(dfs.makedirs, _parent(target), exist_ok=True)
        await asyncio.to_thread(dfs.cp_file, source, target)
    elif src.protocol == "file" and dst.is_async and hasattr(dfs, "_put_file"):
        await dfs._put_file(source, target)
    elif src.is_async and dst.protocol == "file" and hasattr(sfs, "_get_file"):
        await asyncio.to_thread(os.makedirs, _parent(target), exist_ok=True)
        await sfs._get_file(source, target)
    else:  # two remote stores: through this process, one request each way
        data = (await sfs._cat_file(source) if src.is_async
                else await asyncio.to_thread(sfs.cat_file, source))
        if dst.is_async:
            await dfs._pipe_file(target, data)
        else:
            await asyncio.to_thread(dfs.pipe_file, target, data)


async def _fsspec_pass(src: Tier, dst: Tier, names: Sequence[str], base: str, jobs: int,
                       advance: Callable[[int], None], size: int, *, move: bool = False
                       ) -> tuple[float, float]:
    """Copy ``base/src/NAME`` on ``src`` to ``base/copy/NAME`` on ``dst`` (the copies removed
    afterwards, untimed), or with ``move`` move ``base/mv/NAME`` from ``src`` to ``dst`` (the
    same copy, then its source removed); ``jobs`` at a time; the seconds taken, and the CPU
    seconds."""
    source, target = (f"{base}/mv", f"{base}/mv") if move else (f"{base}/src", f"{base}/copy")

    async def one(name: str) -> None:
        await _plain_copy(src, f"{source}/{name}", dst, f"{target}/{name}")
        if move:
            await _plain_remove(src, f"{source}/{name}")
        advance(size)

    if src.protocol == "file":  # read from the disk, as tierstore's sources are (written
        for name in names:  # past the page cache), not from what an earlier pass cached
            _uncache(src.full_path(f"{source}/{name}"))
    watch = _Stopwatch()
    await bounded(names, one, jobs)
    timed = watch.read()
    landed = await bounded(names, lambda name: dst.size(f"{target}/{name}"), jobs)
    if any(n != size for n in landed):
        raise BenchError(f"the fsspec {'move' if move else 'copy'} to {dst.name} left sizes "
                         f"{landed}, expected {size}")
    if not move:  # freed as a user's would be (not kept for tierstore's next writes)
        await bounded(names, lambda name: _plain_remove(dst, f"{target}/{name}"), jobs)
    return timed


async def _plain_remove(tier: Tier, path: str) -> None:
    fs, target = await tier._fs(), tier.full_path(path)
    if tier.is_async:
        await fs._rm_file(target)
    else:
        await asyncio.to_thread(fs.rm_file, target)


# -- a run ------------------------------------------------------------------------------------


def _contents(settings: MigrateSettings) -> Iterator[bytes]:
    rng = random.Random(settings.seed)
    for _ in range(settings.count):
        yield rng.randbytes(settings.size)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), PART_SIZE):
        yield data[start:start + PART_SIZE]


async def measure(config: Config, settings: MigrateSettings, *,
                  progress: Transfer | None = None) -> Timings:
    """Lay out the objects and the plain files, run the rounds, clean up; the timings."""
    store = await Store.connect(config)
    try:
        src, dst = store.tier(settings.src), store.tier(settings.dst)
        run = uuid.uuid4().hex[:8]
        keys = [f"{KEY_PREFIX}/{run}/obj-{i:04d}" for i in range(settings.count)]
        names = [f"obj-{i:04d}" for i in range(settings.count)]
        base = f"{BASE_DIR}/migrate-{run}"
        daemon = _BenchDaemon(store, DaemonOptions(max_moves=settings.jobs, metrics_port=None,
                                                   once=True), engine=_FixedPlan())
        if progress is not None:
            daemon.advance = progress.advance
        advance = progress.advance if progress is not None else (lambda _n: None)
        try:
            for key, name, data in zip(keys, names, _contents(settings), strict=True):
                await store.put(key, data, tier=src.name)
                await src.write(f"{base}/src/{name}", _one(data))
                await dst.write(f"{base}/src/{name}", _one(data))
                await src.write(f"{base}/mv/{name}", _one(data))
            return await _rounds(store, daemon, settings, keys, names, base, advance)
        finally:
            with contextlib.suppress(Exception):
                await bounded(keys, store.rm, settings.jobs)
            for tier in (src, dst):
                for name in names:
                    for folder in ("src", "copy", "mv"):
                        with contextlib.suppress(Exception):
                            await tier.remove(f"{base}/{folder}/{name}")
    finally:
        await store.close()


async def _rounds(store: Store, daemon: _BenchDaemon, settings: MigrateSettings,
                  keys: Sequence[str], names: Sequence[str], base: str,
                  advance: Callable[[int], None]) -> Timings:
    src, dst = store.tier(settings.src), store.tier(settings.dst)
    forward, back = f"{src.name}->{dst.name}", f"{dst.name}->{src.name}"
    timings = Timings()

    async def tierstore(direction: str) -> None:
        a, b = (src, dst) if direction == forward else (dst, src)
        timings.add(direction, "tierstore",
                    await _tierstore_pass(store, daemon, keys, a.name, b.name))

    async def fsspec(direction: str) -> None:
        a, b = (src, dst) if direction == forward else (dst, src)
        timings.add(direction, "fsspec", await _fsspec_pass(
            a, b, names, base, settings.jobs, advance, settings.size))

    async def fsspec_mv(direction: str) -> None:
        a, b = (src, dst) if direction == forward else (dst, src)
        timings.add(direction, "fsspec mv", await _fsspec_pass(
            a, b, names, base, settings.jobs, advance, settings.size, move=True))

    for round_no in range(settings.rounds):
        for direction in (forward, back):
            order = ((tierstore, fsspec, fsspec_mv) if round_no % 2 == 0
                     else (fsspec_mv, fsspec, tierstore))
            for step in order:
                await step(direction)
    return timings


def summarize(timings: Timings, settings: MigrateSettings, src: Tier, dst: Tier
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Result entries (one per direction and path) and the document's top-level figures."""
    entries: list[dict[str, Any]] = []
    medians: dict[tuple[str, str], float] = {}
    tiers = {src.name: src, dst.name: dst}
    for (direction, path), seconds in timings.seconds.items():
        rates = [settings.pass_bytes / s / MB for s in seconds]
        medians[(direction, path)] = median = statistics.median(rates)
        a, b = direction.split("->")
        entries.append({
            "name": f"{direction} {path}", "direction": direction, "path": path,
            "src": a, "dst": b, "src_url": redact(tiers[a].config.url),
            "dst_url": redact(tiers[b].config.url), "objects": settings.count,
            "object_bytes": settings.size, "jobs": settings.jobs,
            "mb_per_s": round(median, 2), "rounds_mb_per_s": [round(r, 2) for r in rates],
            "seconds": [round(s, 4) for s in seconds],
            "cpu_s_per_gb": round(statistics.median(timings.cpu[(direction, path)])
                                  / (settings.pass_bytes / 1e9), 3)})
    forward, back = f"{src.name}->{dst.name}", f"{dst.name}->{src.name}"

    def figures(direction: str) -> dict[str, Any]:
        ours, copy = medians[(direction, "tierstore")], medians[(direction, "fsspec")]
        move = medians[(direction, "fsspec mv")]
        return {"direction": direction, "tierstore_mb_per_s": round(ours, 2),
                "baseline_mb_per_s": round(copy, 2), "ratio": round(ours / copy, 3),
                "plain_move_mb_per_s": round(move, 2), "ratio_to_move": round(ours / move, 3)}

    for entry in entries:
        ratios = figures(entry["direction"])
        entry["ratio"], entry["ratio_to_move"] = ratios["ratio"], ratios["ratio_to_move"]
    top = figures(forward)
    top["reverse"] = figures(back)
    return entries, top


def format_table(entries: Sequence[dict[str, Any]], top: dict[str, Any],
                 settings: MigrateSettings) -> str:
    size = settings.size
    shown = f"{size / 2**20:g} MiB" if size >= 2**20 else f"{size / 1024:g} KiB"
    lines = [f"tierstore bench migrate: {settings.count} objects x {shown}, "
             f"{settings.jobs} in flight, {settings.rounds} rounds (median MB/s, 10^6 B)",
             "", f"{'direction':<22} {'path':<10} {'MB/s':>9} {'min':>9} {'max':>9} "
                 f"{'CPU s/GB':>9} {'ratio':>7} {'vs mv':>7}"]
    paths = ("tierstore", "fsspec", "fsspec mv")
    for entry in sorted(entries, key=lambda e: (e["direction"] != top["direction"],
                                                e["direction"], paths.index(e["path"]))):
        rates = entry["rounds_mb_per_s"]
        ours = entry["path"] == "tierstore"
        ratio = f"{entry['ratio']:.2f}" if ours else ""
        to_move = f"{entry['ratio_to_move']:.2f}" if ours else ""
        lines.append(f"{entry['direction']:<22} {entry['path']:<10} {entry['mb_per_s']:>9.1f} "
                     f"{min(rates):>9.1f} {max(rates):>9.1f} {entry['cpu_s_per_gb']:>9.2f} "
                     f"{ratio:>7} {to_move:>7}")
    lines += ["", f"ratio to a plain copy  {top['direction']}: {top['ratio']:.2f}   "
                  f"{top['reverse']['direction']}: {top['reverse']['ratio']:.2f}",
              f"ratio to a plain move  {top['direction']}: {top['ratio_to_move']:.2f}   "
              f"{top['reverse']['direction']}: {top['reverse']['ratio_to_move']:.2f}"]
    return "\n".join(lines) + "\n"


# -- where the tiers are ----------------------------------------------------------------------


@contextlib.contextmanager
def local_moto(timeout: float = 30.0) -> Iterator[dict[str, Any]]:
    """A moto S3 server in its own process on 127.0.0.1, with a fresh bucket; yields
    ``{"bucket": ..., "options": <s3fs storage options>}`` and stops the server after."""
    if find_spec("moto") is None or find_spec("flask") is None:
        raise BenchError("--s3 moto needs moto's server installed (pip install 'moto[server]')")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # moto's, and s3fs's, region
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                    break
            except (urllib.error.URLError, OSError) as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"the moto server did not start on {endpoint}: {exc}"
                                     ) from None
                time.sleep(0.1)
        options = {"key": "tierstore-bench", "secret": secrets.token_hex(16),
                   "client_kwargs": {"endpoint_url": endpoint}}
        bucket = f"migrate-{uuid.uuid4().hex[:8]}"
        import s3fs

        s3fs.S3FileSystem(skip_instance_cache=True, **options).call_s3("create_bucket",
                                                                       Bucket=bucket)
        yield {"bucket": bucket, "options": options, "endpoint": endpoint}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def scratch_config(s3: str | None, folder: str | None = None) -> Iterator[Config]:
    """A throw-away store: ``hot``, ``warm`` and ``cold`` local folders under a temporary
    folder (in ``folder`` if given), ``warm`` on a local S3 server started for it with
    ``s3="moto"`` or ``"ceph"``."""
    if s3 not in (None, "moto", "ceph"):
        raise BenchError(f"--s3 {s3!r}: only 'moto' and 'ceph' (local servers for the run) "
                         "are known; for another server, describe the store in a --config "
                         "file")
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="tierstore-migrate-", dir=folder)))
        tiers = {name: TierConfig(name=name, tier_class=TierClass[name.upper()],
                                  url=(home / name).as_uri())
                 for name in ("hot", "warm", "cold")}
        if s3 == "moto":
            moto = stack.enter_context(local_moto())
            tiers["warm"] = TierConfig(name="warm", tier_class=TierClass.WARM,
                                       url=f"s3://{moto['bucket']}/warm",
                                       options=moto["options"])
        elif s3 == "ceph":
            from .loader.stores import start_bench_ceph

            ceph, stop = start_bench_ceph(home, CEPH_BYTES)
            stack.callback(stop)
            bucket = f"migrate-{uuid.uuid4().hex[:8]}"
            ceph.make_bucket(bucket)
            tiers["warm"] = TierConfig(name="warm", tier_class=TierClass.WARM,
                                       url=f"s3://{bucket}/warm",
                                       options=ceph.storage_options(), timeout=30.0)
        yield Config(home=home, catalog=f"sqlite:///{home / 'catalog.db'}", tiers=tiers,
                     default_tier="hot")


# -- the command ------------------------------------------------------------------------------


def add_store_arguments(cmd: argparse.ArgumentParser, *, also: str = "") -> None:
    """``--config``, ``--s3`` and ``--dir``: the store a benchmark runs on, one's own or a
    scratch one (:func:`bench_config`); ``also``: what else goes in ``--dir``."""
    cmd.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                     help="the store whose tiers to use (default: a scratch store with local "
                          "hot, warm and cold folders)")
    cmd.add_argument("--s3", metavar="SERVER", choices=("moto", "ceph"),
                     help="scratch store only: put its warm tier on an S3 server started for "
                          "the run: moto, or a single-node Ceph RGW")
    cmd.add_argument("--dir", metavar="DIR", help=f"where the scratch store's temporary folder "
                     f"{also}goes (default: the system's temporary folder)")


def check_store_arguments(args: argparse.Namespace) -> None:
    """BenchError for ``--s3`` with ``--config``."""
    if getattr(args, "config", None) and args.s3:
        raise BenchError("--s3 makes a scratch store; with --config the store's own tiers "
                         "are used")


def bench_config(args: argparse.Namespace, stack: contextlib.ExitStack) -> Config:
    """The store of ``--config``, else a scratch store (``--s3``, ``--dir``) that ``stack``
    removes."""
    config_path = getattr(args, "config", None)
    return (load_config(config_path) if config_path
            else stack.enter_context(scratch_config(args.s3, args.dir)))


def add_migrate_arguments(cmd: argparse.ArgumentParser) -> None:
    """The options of ``tierstore bench migrate``."""
    add_store_arguments(cmd)
    cmd.add_argument("--src", default="hot", help="the tier objects start on (default: hot)")
    cmd.add_argument("--dst", default="warm", help="the tier they move to (default: warm)")
    cmd.add_argument("--count", type=int, default=8, help="objects (default: 8)")
    cmd.add_argument("--size", default="16MiB",
                     help="bytes per object: 512KiB, 16MiB, 64MB (default: 16MiB)")
    cmd.add_argument("--rounds", type=int, default=5,
                     help="interleaved rounds; the median is reported (default: 5)")
    cmd.add_argument("--jobs", type=int, default=DEFAULT_JOBS,
                     help=f"moves (and plain copies) in flight, as the daemon's --max-moves "
                          f"(default: {DEFAULT_JOBS})")
    cmd.add_argument("--json", metavar="FILE", dest="json_file",
                     help="also write the result document to FILE ('-': stdout)")
    cmd.add_argument("--results", metavar="DIR", help="results folder (default: "
                     "$TIERSTORE_RESULTS, else ./bench-results; 'none': do not save)")


def run_migrate(args: argparse.Namespace) -> int:
    """``tierstore bench migrate``: measure, print a table, save the result."""
    config_path = getattr(args, "config", None)
    try:
        settings = MigrateSettings(args.src, args.dst, args.count,
                                   parse_size(args.size, field="--size"), args.rounds, args.jobs)
        check_store_arguments(args)
    except (BenchError, ConfigError) as exc:
        print(f"tierstore: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    with contextlib.ExitStack() as stack:
        config = bench_config(args, stack)
        for name in (settings.src, settings.dst):
            if name not in config.tiers:
                print(f"tierstore: error: no tier {name!r} (tiers: {', '.join(config.tiers)})",
                      file=sys.stderr)
                return EXIT_USAGE
        passes = settings.rounds * 6
        with Transfer("migrate", settings.pass_bytes * passes,
                      settings.count * passes) as progress:
            timings = asyncio.run(measure(config, settings, progress=progress))
        src, dst = Tier(config.tiers[settings.src]), Tier(config.tiers[settings.dst])
        entries, top = summarize(timings, settings, src, dst)
    document = result_document(
        "migrate", entries, **top, config=config_path, scratch=None if config_path else
        {"s3": args.s3 or None}, objects=settings.count, object_bytes=settings.size,
        rounds=settings.rounds, jobs=settings.jobs, unit="MB/s (10^6 bytes per second)",
        verification=VERIFICATION)
    text = json.dumps(document, indent=2) + "\n"
    if getattr(args, "json", False):
        sys.stdout.write(text)
    else:
        sys.stdout.write(format_table(entries, top, settings))
    write_json(document, args.json_file)
    save_and_say(document, args.results)
    return 0
