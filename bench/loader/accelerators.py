"""Training processes: each loader the benchmark measures runs in one of its own, and several
emulated accelerators on one node, as MLPerf Storage runs them (``--accelerators N``).

Each accelerator is a training process of its own: rank ``r`` of an ``N``-rank job, with its own
DataLoader and workers, taking a batch, then sleeping the workload's compute time per step. The
benchmark process starts them (``spawn``, as ``torchrun`` would: nothing inherited), starts each
epoch in all of them at once, and merges what they measured (:func:`merge_runs`): the epoch's
samples over the slowest rank's time, every rank's waits, and the lowest rank's AU (a job steps
at the pace of its slowest accelerator).

Every loader, tierstore's and each baseline's, runs this way, in one training process when there
is one accelerator: what is measured of it (memory, CPU) is then its own, as a training script
that uses it would show, and none of what the benchmark process itself holds (the generated
data, and every library an earlier loader imported and left behind: measured in the benchmark
process, the loader measured last carried 300-400 MiB of them).

With several accelerators each training process is a rank of one job, started as ``torchrun``
starts one: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` set (MosaicML
Streaming splits by them) and a gloo process group (WebDataset and LitData split through
``torch.distributed``). tierstore's loader is told its rank and the world size as well.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import traceback
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.connection import Connection
from typing import Any, Protocol

from ..common.ceph import free_port
from .measure import EpochRun, Stalled, run_epoch

__all__ = ["Accelerators", "Trainee", "merge_metrics", "merge_runs", "one_line", "rank_view",
           "tier_trainee"]

START_TIMEOUT = 300.0  # seconds for a training process to build its loader
EPOCH_TIMEOUT = 3600.0  # seconds for one epoch of one rank


class Trainee(Protocol):
    """A loader as a training process holds it."""

    def epoch(self, epoch: int) -> Iterable[Any]:
        """The batches of ``epoch``."""

    def metrics(self) -> dict[str, Any] | None:
        """What the loader measured of the last epoch itself, if anything."""

    def close(self) -> None:
        """Stop its workers."""


class Accelerators:
    """``len(trainees)`` training processes, rank ``r`` making its loader with
    ``trainees[r]()`` (in its own process, as a training script makes it) and iterating it
    each epoch it is sent, ``compute_s`` per batch; a batch awaited longer than ``stall_s``
    is a :class:`~.measure.Stalled` hang. A context manager."""

    def __init__(self, trainees: Sequence[Callable[[], Trainee]], *, compute_s: float,
                 stall_s: float | None = None):
        context = multiprocessing.get_context("spawn")
        self._ends: list[Connection] = []
        self._processes: list[Any] = []
        job = (len(trainees), free_port()) if len(trainees) > 1 else None
        try:
            for rank, trainee in enumerate(trainees):
                mine, theirs = context.Pipe()
                process = context.Process(target=_accelerator, name="tierstore-trainer",
                                          args=(theirs, trainee, compute_s, stall_s,
                                                None if job is None else (rank, *job)))
                process.start()
                theirs.close()
                self._ends.append(mine)
                self._processes.append(process)
            for end in self._ends:
                self._receive(end, START_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def epoch(self, epoch: int) -> tuple[EpochRun, dict[str, Any] | None]:
        """Run ``epoch`` on every rank at once: the job's run and its loader's metrics (None
        for a loader that measures nothing itself), merged over the ranks when there are
        several (:func:`merge_runs`, :func:`merge_metrics`)."""
        for end in self._ends:
            end.send(epoch)
        got = [self._receive(end, EPOCH_TIMEOUT) for end in self._ends]
        if len(got) == 1:
            return got[0]
        metrics = [m for _, m in got if m is not None]
        return merge_runs([run for run, _ in got]), merge_metrics(metrics) if metrics else None

    def _receive(self, end: Connection, timeout: float) -> Any:
        if not end.poll(timeout):
            raise TimeoutError(f"a training process sent nothing for {timeout:g}s")
        try:
            kind, value = end.recv()
        except EOFError:
            raise RuntimeError("a training process died without a word") from None
        if kind == "stalled":
            raise Stalled(value)
        if kind == "error":
            raise RuntimeError(f"a training process failed: {value}")
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
        self._processes.clear()

    def __enter__(self) -> Accelerators:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _accelerator(end: Connection, trainee: Callable[[], Trainee], compute_s: float,
                 stall_s: float | None, job: tuple[int, int, int] | None) -> None:
    """One training process (rank ``job[0]`` of ``job[1]``, the group's port ``job[2]``):
    make the loader, then run each epoch it is sent."""
    if "fork" in multiprocessing.get_all_start_methods():
        # as under torchrun, whose processes fork their DataLoader workers (the platform's
        # default); a process multiprocessing spawned would spawn them too, each importing
        # torch afresh: 2.4-3 s of a cold epoch's first batch on 2 cores
        multiprocessing.set_start_method("fork", force=True)
    try:
        if job is not None:
            _join(*job)
        made = trainee()
    except Exception as exc:  # the benchmark process reports it; never a silent hang
        end.send(("error", one_line(exc)))
        return
    end.send(("ready", None))
    try:
        while (epoch := end.recv()) is not None:
            run = run_epoch(made.epoch(epoch), compute_s, None, stall_s)
            end.send(("epoch", (run, made.metrics())))
    except Stalled as exc:  # its workers may hang as well: leave without waiting for them
        end.send(("stalled", str(exc)))
        os._exit(0)
    except Exception as exc:
        end.send(("error", one_line(exc)))
    made.close()


def _join(rank: int, world: int, port: int) -> None:
    """Be rank ``rank`` of a ``world``-rank job on this node as ``torchrun`` starts one: its
    environment (MosaicML Streaming reads it) and a gloo process group (WebDataset and LitData
    split their shards by rank through it)."""
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)


def one_line(exc: BaseException) -> str:
    """An error in one line: its type and the last line of its message (a DataLoader worker's
    error arrives as a long multi-line one), and where it was raised (the innermost frame of
    the worker's traceback in that message, else of its own)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__
    frames = [line for line in lines if line.startswith('File "')]
    if not frames and exc.__traceback__ is not None:
        last = traceback.extract_tb(exc.__traceback__)[-1]
        frames = [f'File "{last.filename}", line {last.lineno}, in {last.name}']
    return f"{text} ({frames[-1]})" if frames else text


class _TierTrainee:
    def __init__(self, dataset: Any, batch_size: int, workers: int):
        from tierstore.loader import TierLoader

        from .baselines import collate_payloads

        self.loader = TierLoader(dataset, batch_size=batch_size, num_workers=workers,
                                 collate_fn=collate_payloads, persistent_workers=workers > 0)

    def epoch(self, epoch: int) -> Iterable[Any]:
        self.loader.set_epoch(epoch)
        return self.loader

    def metrics(self) -> dict[str, Any]:
        return dict(self.loader.metrics().to_dict())

    def close(self) -> None:
        self.loader.shutdown()


def tier_trainee(dataset: Callable[[], Any], batch_size: int, workers: int) -> Trainee:
    """tierstore's loader in a training process: a :class:`~tierstore.loader.TierLoader` over
    ``dataset()`` (a :class:`~tierstore.loader.TierDataset` for the process's rank)."""
    return _TierTrainee(dataset(), batch_size, workers)


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
            "wait_s": sum(run.waits), "first_batch_s": run.waits[0] if run.waits else 0.0,
            "samples_per_s": run.samples / run.wall_s if run.wall_s > 0 else 0.0}

