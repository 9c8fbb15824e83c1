"""Several emulated accelerators on one node, as MLPerf Storage runs them (``--accelerators N``).

Each accelerator is a training process of its own: rank ``r`` of an ``N``-rank job, with its own
DataLoader and workers, taking a batch, then sleeping the workload's compute time per step. The
benchmark process starts them (``spawn``, as ``torchrun`` would: nothing inherited), starts each
epoch in all of them at once, and merges what they measured (:func:`merge_runs`): the epoch's
samples over the slowest rank's time, every rank's waits, and the lowest rank's AU (a job steps
at the pace of its slowest accelerator).

Only the tierstore loader runs this way so far: it is told its rank and the world size, so no
process group is needed. The peers split by rank through ``torch.distributed`` (WebDataset,
LitData) or the environment (MosaicML Streaming), which these processes do not set up yet.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from .loader_measure import EpochRun, run_epoch

__all__ = ["Accelerators", "merge_metrics", "merge_runs", "rank_view"]

START_TIMEOUT = 300.0  # seconds for a training process to build its loader
EPOCH_TIMEOUT = 3600.0  # seconds for one epoch of one rank


class Accelerators:
    """``len(datasets)`` training processes, rank ``r`` iterating ``datasets[r]()`` (a
    :class:`~tierstore.loader.TierDataset` for that rank, made in its process as a training
    script makes it) through a :class:`~tierstore.loader.TierLoader`; a context manager."""

    def __init__(self, datasets: Sequence[Callable[[], Any]], *, batch_size: int,
                 workers: int, compute_s: float):
        context = multiprocessing.get_context("spawn")
        self._ends: list[Connection] = []
        self._processes: list[Any] = []
        for dataset in datasets:
            mine, theirs = context.Pipe()
            process = context.Process(target=_accelerator, name="tierstore-accelerator",
                                      args=(theirs, dataset, batch_size, workers, compute_s))
            process.start()
            theirs.close()
            self._ends.append(mine)
            self._processes.append(process)
        for end in self._ends:
            self._receive(end, START_TIMEOUT)

    def epoch(self, epoch: int) -> tuple[list[EpochRun], list[dict[str, Any]]]:
        """Run ``epoch`` on every rank at once: each rank's run and loader metrics."""
        for end in self._ends:
            end.send(epoch)
        got = [self._receive(end, EPOCH_TIMEOUT) for end in self._ends]
        return [run for run, _ in got], [metrics for _, metrics in got]

    def _receive(self, end: Connection, timeout: float) -> Any:
        if not end.poll(timeout):
            raise TimeoutError(f"an accelerator process sent nothing for {timeout:g}s")
        kind, value = end.recv()
        if kind == "error":
            raise RuntimeError(f"an accelerator process failed: {value}")
        return value

    def close(self) -> None:
        for end in self._ends:
            with contextlib.suppress(OSError):  # a process that is gone already
                end.send(None)
        for process in self._processes:
            process.join(30)
            if process.is_alive():
                process.kill()
                process.join()

    def __enter__(self) -> Accelerators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _accelerator(end: Connection, dataset: Callable[[], Any], batch_size: int, workers: int,
                 compute_s: float) -> None:
    """One training process: build the loader, then run each epoch it is sent."""
    if "fork" in multiprocessing.get_all_start_methods():
        # as under torchrun, whose processes fork their DataLoader workers (the platform's
        # default); a process multiprocessing spawned would spawn them too, each importing
        # torch afresh: 2.4-3 s of a cold epoch's first batch on 2 cores
        multiprocessing.set_start_method("fork", force=True)
    try:
        from tierstore.loader import TierLoader

        from .loader_baselines import collate_payloads

        loader = TierLoader(dataset(), batch_size=batch_size, num_workers=workers,
                            collate_fn=collate_payloads, persistent_workers=workers > 0)
        end.send(("ready", None))
        try:
            while (epoch := end.recv()) is not None:
                loader.set_epoch(epoch)
                run = run_epoch(loader, compute_s, None)
                end.send(("epoch", (run, loader.metrics().to_dict())))
        finally:
            loader.shutdown()
    except Exception as exc:  # the benchmark process reports it; never a silent hang
        end.send(("error", f"{type(exc).__name__}: {exc}"))


def merge_runs(runs: Sequence[EpochRun]) -> EpochRun:
    """One epoch of the job from its ranks' runs: samples, bytes and steps summed, the
    slowest rank's time, every wait; its AU and first batch are the worst rank's
    (:attr:`EpochRun.ranks` keeps them)."""
    return EpochRun(
        samples=sum(r.samples for r in runs), payload_bytes=sum(r.payload_bytes for r in runs),
        cached_bytes=sum(r.cached_bytes for r in runs), steps=sum(r.steps for r in runs),
        wall_s=max(r.wall_s for r in runs), compute_s=sum(r.compute_s for r in runs),
        waits=_waits(runs),
        timeline=sorted(t for r in runs for t in r.timeline),
        started=min(r.started for r in runs), ids=[i for r in runs for i in r.ids],
        ranks=list(runs))


def _waits(runs: Sequence[EpochRun]) -> list[float]:
    """The job's waits: its first step waits for every rank's first batch, then each rank's."""
    firsts = [r.waits[0] for r in runs if r.waits]
    if not firsts:
        return []
    return [max(firsts), *(w for r in runs for w in r.waits[1:])]


def merge_metrics(ranks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The tierstore loader metrics of the job from its ranks' (``LoaderMetrics.to_dict``):
    bytes and reads per tier summed, hit rates of the sums, the lowest AU."""
    by_tier: dict[str, int] = {}
    reads: dict[str, int] = {}
    for m in ranks:
        for tier, n in m.get("bytes_by_tier", {}).items():
            by_tier[tier] = by_tier.get(tier, 0) + n
        for tier, n in m.get("reads_by_tier", {}).items():
            reads[tier] = reads.get(tier, 0) + n
    total, total_reads = sum(by_tier.values()), sum(reads.values())
    classes: dict[str, str] = ranks[0].get("tier_classes", {}) if ranks else {}
    hot = sum(n for tier, n in by_tier.items() if classes.get(tier) == "hot")
    return {
        **(ranks[0] if ranks else {}),
        "bytes_by_tier": by_tier, "reads_by_tier": reads,
        "hit_rate": {t: n / total for t, n in by_tier.items()} if total else {},
        "read_hit_rate": {t: n / total_reads for t, n in reads.items()} if total_reads else {},
        "hot_hit_rate": hot / total if total else 0.0,
        "au": min((m.get("au", 0.0) for m in ranks), default=0.0),
        "peak_in_flight_bytes": sum(m.get("peak_in_flight_bytes", 0) for m in ranks),
        "ranks": list(ranks),
    }


def rank_view(run: EpochRun) -> dict[str, Any]:
    """What the result document keeps of one rank's epoch."""
    return {"samples": run.samples, "wall_s": run.wall_s, "au": run.au,
            "first_batch_s": run.waits[0] if run.waits else 0.0,
            "samples_per_s": run.samples / run.wall_s if run.wall_s > 0 else 0.0}

