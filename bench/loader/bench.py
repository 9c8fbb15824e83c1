"""``tierstore bench loader``: accelerator utilisation of TierLoader against the loaders a
user would otherwise write, in the spirit of MLPerf Storage/DLIO.

One run: build the benchmark's store (:mod:`.setup`), generate a dataset of random
samples (sizes drawn from the workload's distribution) in the data tier through the loader's
ingest, then for each loader run ``--epochs`` epochs of a training loop that sleeps the
emulated compute time per batch (:mod:`.measure`):

1. ``plain``: ``DataLoader`` over a map-style dataset reading each sample's byte range with
   s3fs; 2. ``filecache``: the same through ``filecache::`` (:mod:`.baselines`); both
   run first, while every shard is on the data tier;
3. the peers ``--baselines`` names (``wds``, ``mosaic``, ``litdata``; :mod:`.peers`): each
   writes the same samples with its own writer into the same bucket and reads them with its
   own loader and shuffle; one that is not installed, raises or hangs (no batch for
   ``--peer-timeout``) is recorded in the document's ``failures``, with its error, and the run
   goes on;
4. ``tierstore``: ``TierLoader`` over the dataset, with ``tierstore daemon --tick 1s`` running
   beside it (``--no-daemon`` to leave it out), which may stage shards into the hot tier; it
   is started, and has started, before the loader's first epoch, as on a node where it runs.

Each loader and epoch gives one entry of the result's ``results`` list, measured the same way
for every loader: samples/s, MB/s, time to first batch, step waits (p50/p99), AU, peak PSS and
client CPU (the training process and its workers), whether every sample came exactly once,
and the bytes and GETs the data tier served (the S3 server's own counters where it keeps them,
as Ceph's radosgw does; else, for tierstore, its store's; else not counted). Beside tierstore's
measured hot-tier hit rate the result shows what plain LRU of the same hot capacity would
have served on the same sequence of shard reads. A table goes to the terminal, the document
to ``--json FILE`` and the results folder, and a plot (throughput over time, wait-time
distribution) beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import multiprocessing
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tierstore.cli.progress import Steps, Transfer
from tierstore.energy import EnergyModel
from tierstore.errors import MissingExtra, require
from tierstore.sync import open_store

from ..common.errors import BenchError
from ..common.results import result_document, save_and_say, write_json
from .accelerators import (
    Accelerators,
    Trainee,
    one_line,
    rank_view,
    tier_trainee,
)
from .find_max import Trial, find_max
from .measure import (
    EpochRun,
    MemorySampler,
    Stalled,
    cpu_seconds,
    exactly_once,
    lru_hit_rates,
    shard_reads,
    side_by_side,
)
from .options import PEERS, PRESETS
from .stores import BenchStore, DaemonProcess, make_bench_store, remove_tree

__all__ = ["MEMORY_CONSTANT", "Workload", "run_benchmark", "run_loader"]

MEMORY_CONSTANT = 1 << 30  # what the peak may exceed the read-ahead budget by: the interpreter,
# torch and the workers' own footprint, the batches in the DataLoader's queue
DEFAULT_DATASET = 512 << 20


@dataclasses.dataclass(frozen=True)
class Workload:
    """What one run generates and emulates, after the preset, scale and overrides."""

    preset: str
    scale: float
    format: str
    samples: int
    sample_bytes: int
    sample_stdev: int
    shard_bytes: int
    batch_size: int
    compute_s: float
    epochs: int
    workers: int
    seed: int
    accelerators: int = 1  # training processes on the node (ranks of one job)

    @property
    def expected_bytes(self) -> int:
        return self.samples * self.sample_bytes


def workload_of(args: argparse.Namespace) -> Workload:
    preset = PRESETS[args.preset]
    scale = args.scale
    mean = args.sample_size or max(1, round(preset.sample_bytes * scale))
    stdev = (args.sample_stdev if args.sample_stdev is not None
             else round(preset.sample_stdev * scale))
    samples = args.samples or max(1, (args.dataset_size or DEFAULT_DATASET) // mean)
    total = samples * mean
    shard = args.shard_size or int(min(64 << 20, max(1 << 20, total // 64)))
    compute = args.compute if args.compute is not None else preset.compute_s * scale
    return Workload(preset.name, scale, args.format or preset.format, samples, mean, stdev,
                    shard, args.batch_size or preset.batch_size, compute, args.epochs,
                    args.workers, args.seed, args.accelerators)


def sample_sizes(work: Workload) -> np.ndarray:
    """Per sample, its size (:func:`normal_sizes` of the workload)."""
    return normal_sizes(work.samples, work.sample_bytes, work.sample_stdev, work.seed)


def normal_sizes(samples: int, mean: int, stdev: float, seed: int) -> np.ndarray:
    """``samples`` sizes, normal around ``mean``, clipped to [mean/8, mean + 4 sd]; the same
    for a seed."""
    rng = np.random.default_rng([seed, 1])
    if stdev <= 0:
        return np.full(samples, mean, dtype=np.int64)
    sizes = rng.normal(mean, stdev, samples)
    return np.clip(sizes, max(1, mean // 8), mean + 4 * stdev).astype(np.int64)


# -- the dataset --------------------------------------------------------------------------------


def generate(bench: BenchStore, prefix: str, work: Workload) -> Any:
    """Write the dataset into the data tier with the loader's ingest; its index."""
    from tierstore.loader import write_parquet_shards, write_raw_files, write_tar_shards

    sizes = sample_sizes(work)
    rng = np.random.default_rng([work.seed, 2])
    with open_store(bench.config) as store, \
            Transfer("generate", int(sizes.sum()), work.samples) as progress:

        def payloads() -> Iterator[tuple[int, bytes]]:
            for i, size in enumerate(sizes.tolist()):
                data = rng.bytes(size)
                progress.file_done(size)
                yield i, data

        tier = bench.data_tier
        if work.format == "tar":
            per_shard = max(1, work.shard_bytes // max(1, work.sample_bytes))
            return write_tar_shards(
                store, prefix, ({"__key__": f"{i:08d}", "bin": d} for i, d in payloads()),
                samples_per_shard=per_shard, shard_bytes=work.shard_bytes, tier=tier)
        if work.format == "raw":
            return write_raw_files(store, prefix,
                                   ((f"{i:08d}.bin", d) for i, d in payloads()), tier=tier)
        import pyarrow as pa

        table = pa.table({"key": pa.array(range(work.samples), pa.int64()),
                          "data": pa.array([d for _, d in payloads()], pa.binary())})
        rows = max(1, work.shard_bytes // max(1, work.sample_bytes))
        return write_parquet_shards(store, prefix, table, rows_per_shard=rows,
                                    row_group_rows=max(1, min(rows, work.batch_size)), tier=tier)


# -- the loaders --------------------------------------------------------------------------------


def _epochs(label: str, total: int) -> Steps:
    """Progress over a loader's epochs, in samples (a bar on a terminal, else nothing)."""
    from rich.progress import TextColumn

    steps = Steps(TextColumn("samples"))
    steps.task(label, total)
    return steps


class EpochMeter:
    """What is measured around each epoch, the same for every loader: the client's peak memory
    and CPU (its training processes and their workers), the S3 server's CPU and, where it
    keeps them, its counters of GETs and bytes served (every client's: the daemon's staging
    included)."""

    def __init__(self, bench: BenchStore, memory: MemorySampler, samples: int):
        self.bench = bench
        self.memory = memory
        self.samples = samples
        self._counters: dict[str, int] = {}
        self._server_cpu = 0.0

    def start(self) -> None:
        if self.bench.server_counters is not None:
            self._counters = self.bench.server_counters()
        self._server_cpu = cpu_seconds(self.bench.server_pids())
        self.memory.reset()

    def stop(self, run: EpochRun) -> tuple[tuple[int, int], dict[str, Any]]:
        """(peak RSS, peak PSS) and the entry's other figures."""
        cpu = self.memory.cpu()
        peak = self.memory.peak()
        out: dict[str, Any] = {
            "client_cpu_s": cpu,
            "client_cpu_ms_per_sample": cpu * 1e3 / run.samples if run.samples else 0.0,
            "server_cpu_s": cpu_seconds(self.bench.server_pids()) - self._server_cpu,
            **exactly_once(run, self.samples),
            "s3_gets": None, "s3_bytes": None, "s3_counted_by": None}
        if self.bench.server_counters is not None:
            now = self.bench.server_counters()
            out.update(s3_gets=now["gets"] - self._counters["gets"],
                       s3_bytes=now["get_bytes"] - self._counters["get_bytes"],
                       s3_counted_by="server")
        return peak, out


def _entry(loader: str, epoch: int, run: EpochRun, hit_rate: dict[str, float],
           memory: tuple[int, int], **extra: Any) -> dict[str, Any]:
    wall = run.wall_s
    return {"loader": loader, "epoch": epoch, "samples": run.samples, "steps": run.steps,
            "bytes": run.payload_bytes, "wall_s": wall,
            "samples_per_s": run.samples / wall if wall > 0 else 0.0,
            "mb_per_s": run.payload_bytes / wall / 1e6 if wall > 0 else 0.0,
            "au": run.au, "compute_s": run.compute_s, "wait_s": sum(run.waits),
            # seconds the accelerators (each rank's) waited for data: the idle energy's base
            "accelerator_wait_s": sum(sum(r.waits) for r in run.ranks) if run.ranks
            else sum(run.waits),
            "first_wait_s": run.waits[0] if run.waits else 0.0,
            "first_batch_s": run.waits[0] if run.waits else 0.0,
            "wait_p50_s": run.percentile(50), "wait_p99_s": run.percentile(99),
            "wait_max_s": max(run.waits, default=0.0), "hit_rate": hit_rate,
            "peak_rss_bytes": memory[0], "peak_pss_bytes": memory[1], **extra}


def run_baseline(name: str, bench: BenchStore, index: Any, work: Workload,
                 meter: EpochMeter, runs: list[tuple[str, int, EpochRun]]
                 ) -> list[dict[str, Any]]:
    """``plain`` or ``filecache``: a DataLoader over a map-style dataset through fsspec, in a
    training process of its own."""
    from tierstore.loader.runtime import LoopThread

    from .baselines import sample_refs

    store = LoopThread.get().store(bench.config)
    refs = LoopThread.get().submit(sample_refs(store, index, bench.data_tier)).result()
    cache = str(bench.workdir / "filecache") if name == "filecache" else None
    trainee = functools.partial(baseline_trainee, refs, work.format, bench.data_url(),
                                bench.storage_options, cache, work.batch_size, work.workers,
                                work.seed)
    out = []
    with _epochs(name, work.samples * work.epochs) as progress, \
            Accelerators([trainee], compute_s=work.compute_s) as trainer:
        for epoch in range(work.epochs):
            meter.start()
            try:
                run, _ = trainer.epoch(epoch)
            except Exception as exc:
                raise BenchError(f"the {name} baseline failed in epoch {epoch + 1}: "
                                 f"{exc}") from exc
            progress.advance(run.samples)
            payload = max(1, run.payload_bytes)
            if cache is None:
                hits = {bench.data_tier: 1.0}
            else:
                hits = {"filecache": run.cached_bytes / payload,
                        bench.data_tier: 1.0 - run.cached_bytes / payload}
            peak, measured = meter.stop(run)
            out.append(_entry(name, epoch, run, hits, peak, stored_bytes=index.total_bytes,
                              **measured))
            runs.append((name, epoch, run))
    return out


class _BaselineTrainee:
    """A plain DataLoader over :class:`~.baselines.SampleReads`, shuffled per epoch."""

    def __init__(self, dataset: Any, batch_size: int, workers: int, seed: int):
        import torch
        from torch.utils.data import DataLoader

        from .baselines import collate_payloads

        self.seed = seed
        self.generator = torch.Generator()
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                 generator=self.generator, num_workers=workers,
                                 collate_fn=collate_payloads, persistent_workers=workers > 0)

    def epoch(self, epoch: int) -> Any:
        self.generator.manual_seed(self.seed * 1000 + epoch)
        return self.loader

    def metrics(self) -> None:
        return None

    def close(self) -> None:
        del self.loader  # its persistent workers exit


def baseline_trainee(refs: Any, fmt: str, url: str, options: dict[str, Any],
                     cache: str | None, batch_size: int, workers: int, seed: int) -> Trainee:
    """The plain or filecache baseline in a training process."""
    from .baselines import SampleReads

    return _BaselineTrainee(SampleReads(refs, fmt, url, options, cache), batch_size, workers,
                            seed)


class _PeerTrainee:
    def __init__(self, peer: Any):
        self.peer = peer

    def epoch(self, epoch: int) -> Any:
        return self.peer.epoch(epoch)

    def metrics(self) -> None:
        return None

    def close(self) -> None:
        self.peer.close()


def peer_trainee(peer: Any) -> Trainee:
    """A peer that has written its dataset, opened for reading in a training process."""
    peer.open()
    return _PeerTrainee(peer)


def run_tierstore(bench: BenchStore, prefix: str, index: Any, work: Workload,
                  prefetch_bytes: int | None, daemon: DaemonProcess | None,
                  meter: EpochMeter, runs: list[tuple[str, int, EpochRun]]
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """TierLoader's epochs; the entries and what its own metrics said."""
    from tierstore.loader import TierDataset


    ranks = [functools.partial(TierDataset, bench.config, prefix, decode=None, shuffle=True,
                               seed=work.seed, prefetch_bytes=prefetch_bytes, rank=rank,
                               world_size=work.accelerators)
             for rank in range(work.accelerators)]
    dataset = ranks[0]()  # each accelerator process makes its own, as a training script does
    hot_capacity = bench.config.tiers[bench.hot_tier].capacity or 0
    sizes = [s.size for s in index.shards]
    sequences = [side_by_side([shard_reads(index, dataclasses.replace(dataset.spec, epoch=e),
                                            max(1, work.workers), rank, work.accelerators)
                                for rank in range(work.accelerators)])
                 for e in range(work.epochs)]
    lru = lru_hit_rates(sizes, sequences, hot_capacity)
    out, metrics = [], []
    trainees = [functools.partial(tier_trainee, rank, work.batch_size, work.workers)
                for rank in ranks]
    with _epochs("tierstore", work.samples * work.epochs) as progress, \
            Accelerators(trainees, compute_s=work.compute_s) as job:
        for epoch in range(work.epochs):
            meter.start()
            run, merged = job.epoch(epoch)
            progress.advance(run.samples)
            m: Any = types.SimpleNamespace(**(merged or {}))
            metrics.append(merged)
            peak, measured = meter.stop(run)
            hits = {name: m.hit_rate.get(name, 0.0) for name in bench.config.tiers}
            if measured["s3_counted_by"] is None:  # no server counters: the loader's own
                measured.update(s3_bytes=m.bytes_by_tier.get(bench.data_tier, 0),
                                s3_gets=m.reads_by_tier.get(bench.data_tier, 0),
                                s3_counted_by="store (the loader's reads; not the daemon's)")
            out.append(_entry(
                "tierstore", epoch, run, hits, peak, stored_bytes=index.total_bytes,
                **measured,
                hot_hit_rate=m.hot_hit_rate, lru_hot_hit_rate=lru[epoch],
                read_hit_rate=m.read_hit_rate, bytes_read=sum(m.bytes_by_tier.values()),
                loader_au=m.au, prefetch_budget_bytes=m.prefetch_budget_bytes,
                peak_in_flight_bytes=m.peak_in_flight_bytes,
                **_ranks(run)))
            runs.append(("tierstore", epoch, run))
    return out, {"prefetch_budget_bytes": dataset.prefetch_bytes, "metrics": metrics,
                 "daemon": daemon is not None}


def peer_site(bench: BenchStore, prefix: str, name: str, cache_bytes: int | None) -> Any:
    """Where peer ``name`` keeps its dataset: beside tierstore's, in the data tier's bucket."""
    from .peers import PeerSite

    return PeerSite.of_storage_options(bench.data_url(), bench.storage_options,
                                       f"{prefix.replace('/', '-')}-{name}",
                                       bench.workdir / "peers" / name, cache_bytes)


def _ranks(run: EpochRun) -> dict[str, Any]:
    """What an entry keeps of each rank of a run of several."""
    return {"ranks": [rank_view(r) for r in run.ranks]} if run.ranks else {}


def run_peer(name: str, bench: BenchStore, prefix: str, work: Workload, cache_bytes: int | None,
             stall_s: float, meter: EpochMeter, runs: list[tuple[str, int, EpochRun]],
             keep: bool = False, most: int | None = None
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A peer's write and epochs: its entries and a report (what it wrote, how it reads, and
    ``failure``: None, or where it crashed or hung and its error; a peer never stops the
    run). With ``most``, then ``find_max`` over up to that many accelerators, on the data it
    wrote (written once: a store's space for deleted objects may come back only later)."""
    from .peers import Peer, SampleSource, peer_class

    report: dict[str, Any] = {"failure": None}
    out: list[dict[str, Any]] = []
    cls = peer_class(name)
    missing = cls.missing()
    if missing is not None:
        report["failure"] = {"phase": "import", "kind": "not installed", "error": missing}
        return out, report
    peer: Peer | None = None
    phase = ["set-up"]
    children = {p.pid for p in multiprocessing.active_children()}
    try:
        site = peer_site(bench, prefix, name, cache_bytes)
        peer = cls(site, SampleSource(sample_sizes(work), work.seed),
                   batch_size=work.batch_size, workers=work.workers, seed=work.seed,
                   shard_bytes=work.shard_bytes)
        phase[0] = "write"
        began = time.time()
        report["write"] = peer.write()
        report["write_s"] = round(time.time() - began, 3)
        report["stored"] = stored = peer.stored()
        phase[0] = "open"
        report["how"] = peer.describe()
        out = _peer_epochs(peer, name, work, stall_s, meter, runs, stored["bytes"], phase)
    except Stalled as exc:
        report["failure"] = {"phase": phase[0], "kind": "hang", "error": str(exc)}
    except Exception as exc:
        report["failure"] = {"phase": phase[0], "kind": "crash", "error": one_line(exc)}
    try:
        if most is not None and peer is not None and "stored" in report:
            report["find_max"] = _searched(functools.partial(
                _peer_trial, peer, name, work, stall_s, meter, report["stored"]["bytes"]),
                most)
    finally:
        if peer is not None:
            with contextlib.suppress(Exception):
                peer.close()
            if not keep:
                with contextlib.suppress(Exception):
                    peer.remove()
        left = _end_children(children)
        if left and report["failure"] is not None:
            report["failure"]["workers_ended"] = left
    return out, report


def _peer_epochs(peer: Any, name: str, work: Workload, stall_s: float, meter: EpochMeter,
                 runs: list[tuple[str, int, EpochRun]], stored_bytes: int,
                 phase: list[str]) -> list[dict[str, Any]]:
    """The epochs of a peer that has written its dataset, in ``work.accelerators`` training
    processes; ``phase[0]`` says where it is."""
    out = []
    ranks = [functools.partial(peer_trainee, peer)] * work.accelerators
    with _epochs(name, work.samples * work.epochs) as progress, \
            Accelerators(ranks, compute_s=work.compute_s, stall_s=stall_s) as job:
        for epoch in range(work.epochs):
            phase[0] = f"epoch {epoch + 1}"
            meter.start()
            run, _ = job.epoch(epoch)
            progress.advance(run.samples)
            peak, measured = meter.stop(run)
            out.append(_entry(name, epoch, run, {}, peak, stored_bytes=stored_bytes,
                              **measured, **_ranks(run)))
            runs.append((name, epoch, run))
    return out


def _peer_trial(peer: Any, name: str, work: Workload, stall_s: float, meter: EpochMeter,
                stored_bytes: int, accelerators: int) -> Trial:
    """A --find-max trial of a peer: its epochs with ``accelerators`` training processes,
    its cache emptied first (a trial starts cold)."""
    if peer.site.cache_dir != Path():
        remove_tree(peer.site.cache_dir)
    shaped = dataclasses.replace(work, accelerators=accelerators)
    return _tried(accelerators, lambda: _peer_epochs(peer, name, shaped, stall_s, meter, [],
                                                     stored_bytes, ["open"]))


def _tried(accelerators: int, epochs: Callable[[], list[dict[str, Any]]]) -> Trial:
    """A --find-max trial from the entries ``epochs()`` gives; one that fails counts as not
    kept, and the search goes on."""
    try:
        entries = epochs()
    except Exception as exc:
        return Trial(accelerators, failure=one_line(exc))
    return Trial(accelerators, [e["au"] for e in entries], [e["samples_per_s"] for e in entries])


def _searched(trial: Callable[[int], Trial], most: int) -> dict[str, Any]:
    """What the result document keeps of a --find-max search (:func:`~.find_max.find_max`)."""
    found, trials = find_max(trial, most)
    return {"max_accelerators": found, "trials": [t.to_dict() for t in trials]}


def _end_children(before: set[int | None]) -> int:
    """End the worker processes a failed loader left behind (a DataLoader iterator cut off
    while it started its workers never stops them): this process's multiprocessing children
    that were not there ``before``; how many."""
    left = [p for p in multiprocessing.active_children() if p.pid not in before]
    for p in left:
        p.terminate()
    for p in left:
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join(5)
    return len(left)


# -- the run ------------------------------------------------------------------------------------


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark ``args`` describe; the result document."""
    work = workload_of(args)
    config = getattr(args, "config", None)
    if config is None and args.s3 is None and not getattr(args, "allow_local", False):
        raise BenchError("say where the data lives: --config STORE.toml (its warm tier) or "
                         "--s3 moto (a local S3 server started for the run)")
    loaders = loaders_of(args)
    if work.format == "parquet" and set(loaders) & {"plain", "filecache"}:
        raise BenchError("the plain and filecache baselines read samples by byte range: use "
                         "--format tar or raw, or --loaders tierstore")
    if getattr(args, "find_max", False) and work.compute_s <= 0:
        raise BenchError("--find-max needs --compute SECONDS per batch: without compute there "
                         "is no accelerator utilisation to keep")
    if work.accelerators > 1 and set(loaders) & {"plain", "filecache"}:
        raise BenchError("--accelerators runs tierstore's loader and the peers (wds, mosaic, "
                         "litdata): the plain and filecache baselines do not split by rank")
    temp = None
    if args.workdir:
        workdir = Path(args.workdir)
    else:
        temp = tempfile.mkdtemp(prefix="tierstore-bench-loader-")
        workdir = Path(temp)
    sizes = sample_sizes(work)
    dataset_bytes = int(sizes.sum())
    hot_capacity = int(dataset_bytes * args.hot_fraction)
    peers = [n for n in loaders if n in PEERS]
    # the OSD holds tierstore's dataset and each peer's, and room to spare
    s3_bytes = max(2 << 30, int(dataset_bytes * 1.2 * (2 + len(peers))))
    bench = make_bench_store(workdir, hot_capacity, config=config, s3=args.s3, tier=args.tier,
                             hot_dir=Path(args.hot_dir) if args.hot_dir else None,
                             s3_bytes=s3_bytes)
    prefix = f"bench-loader/{uuid.uuid4().hex[:8]}"
    daemon: DaemonProcess | None = None
    try:
        began = time.time()
        index = generate(bench, prefix, work)
        generated = time.time() - began
        order = [n for n in ("plain", "filecache", *PEERS, "tierstore") if n in loaders]
        results: list[dict[str, Any]] = []
        runs: list[tuple[str, int, EpochRun]] = []
        tier_report: dict[str, Any] = {}
        peer_reports: dict[str, Any] = {}
        peer_cache = hot_capacity if args.hot_fraction < 1.0 else None
        daemon_status: int | None = None
        finding = getattr(args, "find_max", False)
        exclude = lambda: [p for p in (_moto_pid(bench), daemon.pid if daemon else None)  # noqa: E731
                           if p is not None]
        # every loader runs in training processes of its own (bench/loader/accelerators.py): what
        # this process holds is the benchmark's, not a loader's
        with MemorySampler(exclude, count_self=False) as memory:
            meter = EpochMeter(bench, memory, work.samples)
            for name in order:
                if name == "tierstore":
                    if args.daemon:
                        daemon = DaemonProcess(bench.config_path, workdir / "daemon.log",
                                               args.daemon_tick)
                        daemon.wait_started()
                    try:
                        entries, tier_report = run_tierstore(bench, prefix, index, work,
                                                             args.prefetch_bytes, daemon,
                                                             meter, runs)
                    finally:
                        if daemon is not None:
                            daemon_status = daemon.stop()
                    results += entries
                elif name in PEERS:
                    entries, peer_reports[name] = run_peer(
                        name, bench, prefix, work, peer_cache, args.peer_timeout, meter, runs,
                        keep=args.keep, most=args.max_accelerators if finding else None)
                    results += entries
                else:
                    results += run_baseline(name, bench, index, work, meter, runs)
            most = {name: r["find_max"] for name, r in peer_reports.items() if "find_max" in r}
            if finding and "tierstore" in order:
                most["tierstore"] = _searched(functools.partial(
                    _tier_trial, bench, prefix, index, work, args, meter), args.max_accelerators)
        document = result_document(
            "loader", results,
            workload={**dataclasses.asdict(work), "preset_source": PRESETS[work.preset].source},
            dataset={"format": work.format, "samples": len(index), "shards": len(index.shards),
                     "bytes": index.total_bytes, "payload_bytes": dataset_bytes,
                     "sample_bytes_mean": float(sizes.mean()),
                     "sample_bytes_stdev": float(sizes.std()),
                     "generate_s": round(generated, 3)},
            store={"data_tier": bench.data_tier, "data_tier_is": bench.server,
                   "hot_tier": bench.hot_tier, "hot_capacity_bytes": hot_capacity,
                   "hot_share": hot_capacity / index.total_bytes if index.total_bytes else 0.0,
                   "hot_watermarks": [bench.config.tiers[bench.hot_tier].low_watermark,
                                      bench.config.tiers[bench.hot_tier].high_watermark]},
            daemon={"ran": daemon is not None, "tick": args.daemon_tick,
                    "exit_status": daemon_status},
            tierstore={k: v for k, v in tier_report.items() if k != "metrics"},
            peers={k: {f: v for f, v in r.items() if f not in ("failure", "find_max")}
                   for k, r in peer_reports.items()},
            failures=[{"loader": k, **r["failure"]} for k, r in peer_reports.items()
                      if r["failure"] is not None],
            loader_metrics=tier_report.get("metrics", []),
            find_max=most or None,
            memory_constant_bytes=MEMORY_CONSTANT)
        energy = EnergyModel.of(args.accelerator, watts=args.accelerator_watts,
                                intensity=args.intensity)
        for r in document["results"]:
            r["accelerator_idle"] = energy.idle(r["accelerator_wait_s"]).as_dict()
        document["energy"] = {**dataclasses.asdict(energy), "about": energy.describe()}
        document["criteria"] = criteria(document)
        document["summary"] = summary(document)
        document["timelines"] = {f"{name}/{epoch}": {"waits": run.waits,
                                                      "timeline": run.timeline}
                                 for name, epoch, run in runs}
        return document
    finally:
        if not args.keep:
            with contextlib.suppress(Exception):
                _remove_dataset(bench, prefix)
        bench.close()
        if temp is not None and not args.keep:
            remove_tree(Path(temp))


def _tier_trial(bench: BenchStore, prefix: str, index: Any, work: Workload,
                args: argparse.Namespace, meter: EpochMeter, accelerators: int) -> Trial:
    """A --find-max trial of tierstore: its epochs with ``accelerators`` training processes,
    from cold (its hot replicas dropped; no daemon)."""
    def epochs() -> list[dict[str, Any]]:
        _drop_hot(bench, index)
        return run_tierstore(bench, prefix, index,
                             dataclasses.replace(work, accelerators=accelerators),
                             args.prefetch_bytes, None, meter, [])[0]

    return _tried(accelerators, epochs)


def _drop_hot(bench: BenchStore, index: Any) -> None:
    """Drop the dataset's hot replicas where another replica stays: the next trial is cold."""
    from tierstore.loader.runtime import LoopThread

    loop = LoopThread.get()
    store = loop.store(bench.config)

    async def drop() -> None:
        for shard in index.shards:
            record = store.catalog.get(shard.key)
            tiers = [r.tier for r in record.ready] if record is not None else []
            if bench.hot_tier in tiers and len(tiers) > 1:
                await store.drop_replica(shard.key, bench.hot_tier)

    loop.submit(drop()).result()


def loaders_of(args: argparse.Namespace) -> list[str]:
    """The loaders a run compares: tierstore (where --loaders has it) and the baselines
    (--baselines, else those --loaders names)."""
    baselines = getattr(args, "baselines", None)
    if baselines is None:
        return list(args.loaders)
    return [n for n in args.loaders if n == "tierstore"] + list(baselines)


def _moto_pid(bench: BenchStore) -> int | None:
    for fn in bench._cleanup:
        owner = getattr(fn, "__self__", None)
        process = getattr(owner, "process", None)
        if process is not None:
            return int(process.pid)
    return None


def _remove_dataset(bench: BenchStore, prefix: str) -> None:
    with open_store(bench.config) as store:
        for key in store.find(prefix + "/"):
            store.rm(key)


def criteria(document: dict[str, Any]) -> dict[str, Any]:
    """The issue's bars, computed from the results (None where a loader did not run)."""
    by = {(r["loader"], r["epoch"]): r for r in document["results"]}
    share = document["store"]["hot_share"]
    hot = document["store"]["hot_tier"]
    out: dict[str, Any] = {"hot_share": share}
    ts0, plain0 = by.get(("tierstore", 0)), by.get(("plain", 0))
    if ts0 and plain0 and plain0["samples_per_s"] > 0:
        ratio = ts0["samples_per_s"] / plain0["samples_per_s"]
        out["cold_epoch_speedup_vs_plain"] = {"value": ratio, "bar": 3.0, "met": ratio >= 3.0}
    ts = [r for r in document["results"] if r["loader"] == "tierstore"]
    plain = [r for r in document["results"] if r["loader"] == "plain"]
    if ts:
        if document["workload"]["compute_s"] > 0:  # no compute: no utilisation to speak of
            au = min(r["au"] for r in ts)
            out["tierstore_au_min"] = {"value": au, "bar": 0.9, "met": au >= 0.9,
                                       "plain_au_max": max((r["au"] for r in plain),
                                                           default=None)}
        later = [r for r in ts if r["epoch"] >= 1]
        if later:
            rate = min(r["hit_rate"].get(hot, 0.0) for r in later)
            out["hot_hit_rate_later_epochs_min"] = {
                "value": rate, "bar": 0.9 * share, "met": rate >= 0.9 * share,
                "lru": [r.get("lru_hot_hit_rate") for r in later]}
        budget = document["tierstore"].get("prefetch_budget_bytes", 0)
        peak = max(r["peak_pss_bytes"] for r in ts)
        out["peak_memory"] = {"value_pss_bytes": peak,
                              "peak_rss_bytes": max(r["peak_rss_bytes"] for r in ts),
                              "bar_bytes": budget + MEMORY_CONSTANT,
                              "met": peak <= budget + MEMORY_CONSTANT}
    out.update(_peer_criteria(document, by))
    return out


def _peer_criteria(document: dict[str, Any], by: dict[tuple[str, int], dict[str, Any]]
                   ) -> dict[str, Any]:
    """Issue 12's bars against the peers, where the run has what they need."""
    out: dict[str, Any] = {}
    ts0, wds0 = by.get(("tierstore", 0)), by.get(("wds", 0))
    if ts0 and wds0 and wds0["samples_per_s"] > 0:
        ratio = ts0["samples_per_s"] / wds0["samples_per_s"]
        out["cold_epoch_vs_wds"] = {"value": ratio, "bar": 1.2, "met": ratio >= 1.2}
        out["first_batch_vs_wds"] = {"value_s": ts0["first_batch_s"],
                                     "wds_s": wds0["first_batch_s"],
                                     "met": ts0["first_batch_s"] <= wds0["first_batch_s"]}
    if ts0 and ts0.get("s3_bytes") is not None and ts0.get("s3_counted_by") == "server":
        share = ts0["s3_bytes"] / ts0["stored_bytes"]
        out["cold_epoch_s3_bytes"] = {"value": share, "bar": 1.02, "met": share <= 1.02}
    peaks = {name: max(r["peak_pss_bytes"] for r in document["results"] if r["loader"] == name)
             for name in PEERS if (name, 0) in by}
    ts = [r["peak_pss_bytes"] for r in document["results"] if r["loader"] == "tierstore"]
    if ts and peaks:
        lowest = min(peaks.values())
        out["peak_pss_vs_peers"] = {"value_bytes": max(ts), "lowest_peer_bytes": lowest,
                                    "bar_bytes": int(lowest * 1.25),
                                    "met": max(ts) <= lowest * 1.25}
    return out


# -- output -------------------------------------------------------------------------------------


def _accelerators(work: dict[str, Any]) -> str:
    n = work.get("accelerators", 1)
    return f" in each of {n} training processes" if n > 1 else ""


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _s3_share(r: dict[str, Any]) -> str:
    """The bytes the data tier served in an epoch, as a multiple of the loader's dataset."""
    if r.get("s3_bytes") is None or not r.get("stored_bytes"):
        return "-"
    return f"{r['s3_bytes'] / r['stored_bytes']:.2f}x"


def render_table(document: dict[str, Any]) -> Any:
    from rich.table import Table

    work, data, store = document["workload"], document["dataset"], document["store"]
    title = (f"tierstore bench loader: {work['preset']} x{work['scale']:g}, {data['format']}, "
             f"{data['samples']:,} samples in {data['shards']:,} objects "
             f"({_mib(data['bytes'])}), batch {work['batch_size']}, compute "
             f"{work['compute_s'] * 1e3:.1f} ms/batch, {work['workers']} workers"
             f"{_accelerators(work)}; hot tier "
             f"{_mib(store['hot_capacity_bytes'])} ({store['hot_share']:.0%}); data on "
             f"{store['data_tier_is']}")
    table = Table(title=title, title_justify="left")
    for name in ("loader", "epoch", "samples/s", "MB/s", "1st batch", "AU", "wait p50",
                 "wait p99", "hit rate", "S3 bytes", "GETs", "CPU ms/sample", "peak PSS",
                 "each once"):
        table.add_column(name, justify="left" if name in ("loader", "hit rate") else "right")
    for r in document["results"]:
        hits = " ".join(f"{k} {v:.0%}" for k, v in r["hit_rate"].items() if v > 0.0005) or "-"
        once = r.get("exactly_once")
        table.add_row(r["loader"], str(r["epoch"] + 1), f"{r['samples_per_s']:,.0f}",
                      f"{r['mb_per_s']:,.1f}", f"{r.get('first_batch_s', 0.0):.2f} s",
                      f"{r['au']:.1%}", f"{r['wait_p50_s'] * 1e3:.1f} ms",
                      f"{r['wait_p99_s'] * 1e3:.1f} ms", hits, _s3_share(r),
                      "-" if r.get("s3_gets") is None else f"{r['s3_gets']:,}",
                      f"{r.get('client_cpu_ms_per_sample', 0.0):.2f}",
                      _mib(r["peak_pss_bytes"]),
                      "-" if once is None else "yes" if once else
                      f"NO ({r['missing']} missing, {r['repeated']} again)")
    return table


def summary(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Per loader, side by side: cold (first) epoch samples/s, the later epochs', S3 bytes per
    epoch over its dataset, time to first batch, peak PSS, client CPU per sample."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in document["results"]:
        by.setdefault(r["loader"], []).append(r)
    out = []
    for name, rows in by.items():
        rows = sorted(rows, key=lambda r: r["epoch"])
        share = [r["s3_bytes"] / r["stored_bytes"] if r.get("s3_bytes") is not None
                 and r.get("stored_bytes") else None for r in rows]
        out.append({"loader": name, "cold_samples_per_s": rows[0]["samples_per_s"],
                    "later_samples_per_s": [r["samples_per_s"] for r in rows[1:]],
                    "s3_bytes_per_dataset": share,
                    "s3_counted_by": rows[0].get("s3_counted_by"),
                    "first_batch_s": rows[0].get("first_batch_s"),
                    "peak_pss_bytes": max(r["peak_pss_bytes"] for r in rows),
                    "client_cpu_ms_per_sample": [r.get("client_cpu_ms_per_sample")
                                                 for r in rows],
                    "every_sample_once": all(r.get("exactly_once") for r in rows),
                    "accelerator_idle_joules": [r["accelerator_idle"]["joules"]
                                                for r in rows if "accelerator_idle" in r]})
    return out


def render_summary(document: dict[str, Any]) -> Any:
    from rich.markup import escape  # an install hint's '[peers]' is no style
    from rich.table import Table

    table = Table(title="side by side", title_justify="left")
    for name in ("loader", "cold epoch samples/s", "later epochs", "S3 bytes / dataset",
                 "first batch", "peak PSS", "CPU ms/sample", "each sample once",
                 "idle J/epoch (est.)"):
        table.add_column(name, justify="left" if name in ("loader", "later epochs",
                                                          "S3 bytes / dataset") else "right")
    for s in document.get("summary", []):
        share = ", ".join("-" if x is None else f"{x:.2f}x" for x in s["s3_bytes_per_dataset"])
        table.add_row(s["loader"], f"{s['cold_samples_per_s']:,.0f}",
                      ", ".join(f"{x:,.0f}" for x in s["later_samples_per_s"]) or "-", share,
                      f"{s['first_batch_s']:.2f} s", _mib(s["peak_pss_bytes"]),
                      ", ".join(f"{x:.2f}" for x in s["client_cpu_ms_per_sample"]),
                      "yes" if s["every_sample_once"] else "NO",
                      ", ".join(f"{x:,.0f}" for x in s.get("accelerator_idle_joules", [])))
    for f in document.get("failures", []):  # the whole error is printed below the table
        error = f["error"] if len(f["error"]) <= 60 else f["error"][:57] + "..."
        table.add_row(f["loader"], f"{f['kind']} ({f['phase']})", escape(error), *[""] * 6)
    return table


def _verdict(criterion: dict[str, Any]) -> str:
    return "met" if criterion["met"] else "NOT met"


def render_criteria(document: dict[str, Any]) -> list[str]:
    c = document["criteria"]
    lines = []
    if "cold_epoch_speedup_vs_plain" in c:
        v = c["cold_epoch_speedup_vs_plain"]
        lines.append(f"cold epoch samples/s vs plain: {v['value']:.2f}x (bar 3x): "
                     f"{_verdict(v)}")
    if document["workload"]["compute_s"] <= 0:
        lines.append("AU: not measured (no compute emulated; --compute SECONDS per batch)")
    if "tierstore_au_min" in c:
        v = c["tierstore_au_min"]
        plain = v["plain_au_max"]
        lines.append(f"tierstore AU, lowest epoch: {v['value']:.1%} (bar 90%"
                     f"{'' if plain is None else f'; plain at most {plain:.1%}'}): "
                     f"{_verdict(v)}")
    if "hot_hit_rate_later_epochs_min" in c:
        v = c["hot_hit_rate_later_epochs_min"]
        lru = ", ".join(f"{x:.0%}" for x in v["lru"] if x is not None)
        lines.append(f"hot hit rate, epochs 2+: {v['value']:.0%} (bar {v['bar']:.0%} = 90% of "
                     f"the hot share; plain LRU: {lru}): {_verdict(v)}")
    if "cold_epoch_vs_wds" in c:
        v = c["cold_epoch_vs_wds"]
        lines.append(f"cold epoch samples/s vs WebDataset: {v['value']:.2f}x (bar 1.2x): "
                     f"{_verdict(v)}")
        v = c["first_batch_vs_wds"]
        lines.append(f"time to first batch: {v['value_s']:.2f} s (WebDataset {v['wds_s']:.2f} "
                     f"s): {_verdict(v)}")
    if "cold_epoch_s3_bytes" in c:
        v = c["cold_epoch_s3_bytes"]
        lines.append(f"S3 bytes in tierstore's cold epoch: {v['value']:.2f}x the dataset (bar "
                     f"1.02x, the server's counters): {_verdict(v)}")
    if "peak_pss_vs_peers" in c:
        v = c["peak_pss_vs_peers"]
        lines.append(f"peak PSS vs the lowest peer's + 25%: {_mib(v['value_bytes'])} (bar "
                     f"{_mib(v['bar_bytes'])}): {_verdict(v)}")
    for f in document.get("failures", []):
        lines.append(f"{f['loader']}: {f['kind']} in {f['phase']}: {f['error']}")
    for name, found in (document.get("find_max") or {}).items():
        tried = ", ".join(f"{t['accelerators']}: {min(t['au'], default=0):.0%}"
                          + ("" if t["failure"] is None else " (failed)")
                          for t in found["trials"])
        lines.append(f"{name}: {found['max_accelerators']} accelerator(s) kept at AU >= 90% "
                     f"in every epoch (lowest AU per count tried: {tried})")
    if "peak_memory" in c:
        v = c["peak_memory"]
        lines.append(f"peak memory (PSS, loader process and workers): "
                     f"{_mib(v['value_pss_bytes'])} (bar: budget + "
                     f"{_mib(MEMORY_CONSTANT)} = {_mib(v['bar_bytes'])}): "
                     f"{_verdict(v)}")
    return lines


def plot(document: dict[str, Any], path: Path) -> Path:
    """Throughput over time (samples/s in bins) and the distribution of step waits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    colours = {"tierstore": "tab:green", "plain": "tab:red", "filecache": "tab:blue",
               "wds": "tab:orange", "mosaic": "tab:purple", "litdata": "tab:brown"}
    by_loader: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for key, value in document["timelines"].items():
        name, epoch = key.rsplit("/", 1)
        by_loader.setdefault(name, []).append((int(epoch), value))
    for name, epochs in by_loader.items():
        offset, xs, ys, waits = 0.0, [], [], []
        for _, value in sorted(epochs, key=lambda e: e[0]):
            timeline = value["timeline"]
            waits += value["waits"]
            if not timeline:
                continue
            end = timeline[-1][0]
            width = max(end / 20, 1.0, 8 * end / len(timeline))  # several batches a bin
            bins = max(1, math.ceil(end / width))
            counts = np.zeros(bins)
            for t, n, _ in timeline:
                counts[min(bins - 1, int(t / width))] += n
            xs += [offset + (i + 0.5) * width for i in range(bins)]
            ys += (counts / width).tolist()
            offset += end
            left.axvline(offset, color=colours.get(name, "grey"), alpha=0.15, lw=1)
        left.plot(xs, ys, label=name, color=colours.get(name), drawstyle="steps-mid")
        if waits:
            w = np.sort(np.maximum(np.asarray(waits), 1e-6))
            right.plot(w, np.arange(1, len(w) + 1) / len(w), label=name,
                       color=colours.get(name))
    left.set_xlabel("seconds since the loader's first epoch began (epochs back to back)")
    left.set_ylabel("samples/s")
    left.set_title("throughput over time")
    left.legend()
    right.set_xscale("log")
    right.set_xlabel("time the training loop waited for a batch (s)")
    right.set_ylabel("fraction of steps")
    right.set_title("wait-time distribution (CDF)")
    right.legend()
    work = document["workload"]
    fig.suptitle(f"tierstore bench loader: {work['preset']} x{work['scale']:g}, compute "
                 f"{work['compute_s'] * 1e3:.1f} ms/batch, batch {work['batch_size']}, "
                 f"{work['workers']} workers")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_loader(args: argparse.Namespace) -> int:
    """The ``tierstore bench loader`` command."""
    document = run_benchmark(args)
    from rich.console import Console

    out = sys.stderr if args.json_file == "-" else sys.stdout
    console = Console(file=out, width=None if out.isatty() else 150)
    console.print(render_table(document))
    console.print(render_summary(document))
    if "energy" in document:
        console.print(f"idle J/epoch: the accelerators' time waiting for data, as energy "
                      f"({document['energy']['about']})", highlight=False, markup=False)
    for line in render_criteria(document):
        console.print(line, highlight=False, markup=False)
    saved = save_and_say(document, args.results)
    picture = Path(args.plot) if args.plot else (
        saved.with_suffix(".png") if saved else
        Path(args.json_file).with_suffix(".png") if args.json_file not in (None, "-") else None)
    if picture is not None:
        try:
            require("matplotlib", part="the plot", package="matplotlib", extra="bench")
        except MissingExtra as exc:
            print(f"tierstore: no plot: {exc}", file=sys.stderr)
            picture = None
    if picture is not None:
        plot(document, picture)
        document["plot"] = str(picture)
        if saved is not None:
            saved.write_text(json.dumps(document, indent=2) + "\n")
    write_json(document, args.json_file)
    if picture is not None:
        print(f"tierstore: plot saved to {picture}", file=sys.stderr)
    return 0
