"""What ``tierstore bench loader`` measures, the same way for every loader.

- :func:`run_epoch`: the training loop of one epoch, with the accelerator emulated by a
  sleep per batch: per step the time spent in ``next()`` (waiting for data) and the compute
  time; AU is compute time over wall time with the first step (start-up) left out, as MLPerf
  Storage/DLIO count it.
- :class:`MemorySampler`: peak memory of this process and its children (the DataLoader
  workers), sampled from ``/proc``; both the sum of RSS (counts pages the forked workers
  share with the parent once per process: an upper bound) and the sum of PSS (shared pages
  split between the processes that map them: what they cost together).
- :func:`exactly_once`: whether an epoch handed over every sample exactly once (by the ids
  :func:`~.baselines.collate_payloads` puts in each batch).
- CPU: the sampler also adds up the CPU time of the same processes (user + system, from
  ``/proc``), so each epoch has the client's CPU beside its throughput; :func:`cpu_seconds`
  reads a server's processes the same way.
- :func:`lru_hit_rates`: what an LRU cache of the hot tier's capacity would have served over
  the same sequence of shard reads (the bound plain caching gives under per-epoch shuffle).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tierstore.loader import DatasetIndex, OrderSpec, Placement, worker_order
from tierstore.quantiles import percentile

from ..common.errors import BenchError

__all__ = ["EpochRun", "MemorySampler", "Stalled", "cpu_seconds", "exactly_once",
           "lru_hit_rates", "run_epoch", "shard_reads", "side_by_side"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Stalled(BenchError):
    """A loader handed over no batch for longer than the limit it was given (a hang)."""


@dataclass
class EpochRun:
    """One epoch of one loader as the training loop saw it."""

    samples: int = 0
    payload_bytes: int = 0
    cached_bytes: int = 0  # payload a cache served (the filecache baseline)
    steps: int = 0
    wall_s: float = 0.0  # from asking for the first batch to the end of the last compute
    compute_s: float = 0.0
    waits: list[float] = field(default_factory=list)
    timeline: list[tuple[float, int, int]] = field(default_factory=list)  # (t, samples, bytes)
    started: float = 0.0  # time.perf_counter() at the start
    ids: list[np.ndarray] = field(default_factory=list)  # per batch, its samples' numbers
    ranks: list[EpochRun] = field(default_factory=list)  # a job's: each accelerator's own

    @property
    def au(self) -> float:
        """Compute over wall time, the first step left out: ``compute / (compute + waits)``
        over steps 2..n (the first step's compute included: the accelerator works then); a
        job of several accelerators has its lowest."""
        if self.ranks:
            return min(r.au for r in self.ranks)
        waited = sum(self.waits[1:])
        total = self.compute_s + waited
        return self.compute_s / total if total > 0 else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.waits, q)


def _stalled(limit: float) -> Callable[[int, Any], None]:
    def raise_stalled(signum: int, frame: Any) -> None:
        raise Stalled(f"no batch for {limit:g} s (a hang)")

    return raise_stalled


def run_epoch(loader: Iterable[Any], compute_s: float,
              on_step: Callable[[int], None] | None = None,
              stall_s: float | None = None) -> EpochRun:
    """Iterate ``loader`` once, sleeping ``compute_s`` per batch (a batch is a dict of
    :func:`~.baselines.collate_payloads`). With ``stall_s``, a :class:`Stalled` if
    any one batch takes longer (SIGALRM: main thread only)."""
    guard = stall_s is not None and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGALRM, _stalled(stall_s or 0.0)) if guard else None
    try:
        return _run_epoch(loader, compute_s, on_step, stall_s if guard else None)
    finally:
        if guard:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _run_epoch(loader: Iterable[Any], compute_s: float,
               on_step: Callable[[int], None] | None, stall_s: float | None) -> EpochRun:
    run = EpochRun(started=time.perf_counter())
    it = iter(loader)  # not timed: an iterator cut off half-built leaves its workers behind
    while True:
        asked = time.perf_counter()
        if stall_s:
            signal.setitimer(signal.ITIMER_REAL, stall_s)
        try:
            batch = next(it)
        except StopIteration:
            break
        finally:
            if stall_s:
                signal.setitimer(signal.ITIMER_REAL, 0)
        got = time.perf_counter()
        run.waits.append(got - asked)
        lengths = batch["lengths"]
        n = int(lengths.numel())
        nbytes = int(lengths.sum())
        run.samples += n
        run.payload_bytes += nbytes
        if "cached" in batch:
            run.cached_bytes += int(lengths[batch["cached"]].sum())
        if "ids" in batch:
            run.ids.append(batch["ids"].numpy().copy())
        run.steps += 1
        run.timeline.append((got - run.started, n, nbytes))
        if compute_s > 0:
            time.sleep(compute_s)
            run.compute_s += time.perf_counter() - got
        if on_step is not None:
            on_step(n)
        del batch
    run.wall_s = time.perf_counter() - run.started
    return run


def exactly_once(run: EpochRun, samples: int) -> dict[str, Any]:
    """Whether ``run`` handed over each of the samples ``0..samples-1`` exactly once:
    ``exactly_once``, and how many were ``missing``, ``repeated`` (extra copies) or
    ``unknown`` (no number, or one out of range)."""
    ids = np.concatenate(run.ids) if run.ids else np.empty(0, dtype=np.int64)
    known = ids[(ids >= 0) & (ids < samples)]
    counts = np.bincount(known, minlength=samples)
    missing = int((counts == 0).sum())
    repeated = int(np.maximum(counts - 1, 0).sum())
    unknown = int(len(ids) - len(known))
    return {"exactly_once": missing == 0 and repeated == 0 and unknown == 0,
            "missing": missing, "repeated": repeated, "unknown": unknown}


# -- memory and CPU ---------------------------------------------------------------------------


def _status_kib(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return _status_kib(pid, "VmRSS")


def _cpu_ticks(pid: int) -> int:
    """User + system time of ``pid`` (all its threads), in clock ticks; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    except (OSError, ValueError, IndexError):
        return 0


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time ``pids`` have used so far (user + system), in seconds."""
    return sum(_cpu_ticks(p) for p in pids) / CLOCK_TICKS


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                out += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
    except OSError:
        pass
    return out


def process_tree(root: int, exclude: Sequence[int] = ()) -> list[int]:
    """``root`` and its descendants, leaving out ``exclude`` and theirs."""
    skip = set(exclude)
    seen, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in skip or pid in seen:
            continue
        seen.append(pid)
        todo += _children(pid)
    return seen


class MemorySampler:
    """Samples the memory of this process (unless ``count_self`` is false) and its children
    (minus ``exclude``: the S3 server, the daemon) every ``interval`` seconds on a thread;
    :meth:`peak` since :meth:`reset`, and :meth:`cpu`: the CPU time they used since then (a
    child that exits is counted up to its last sample, so at most ``interval`` of its time is
    missed).

    RSS is read every time (``/proc/PID/status``: constant cost). PSS is not: the kernel walks
    every page of a process to sum ``smaps_rollup``, about 20 ms per GiB resident, so reading
    it every 50 ms took 40-50% of a core on a 2-core machine, from the loaders it measured,
    and the most from the one with the most memory. It is read when the RSS sum reaches a new
    high (2% over the highest at a PSS reading before: PSS never exceeds RSS, so a peak of PSS
    comes with RSS near its own high), at least every ``pss_every`` seconds, and at
    :meth:`peak`."""

    def __init__(self, exclude: Callable[[], Sequence[int]] = lambda: (),
                 interval: float = 0.05, pss_every: float = 1.0, *, count_self: bool = True):
        self._exclude = exclude
        self._count_self = count_self
        self._interval = interval
        self._pss_every = pss_every
        self._pss_read_at = 0.0  # monotonic time of the last PSS reading
        self._pss_rss_high = 0  # the highest RSS sum a PSS reading was taken at
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.peak_rss = 0
        self.peak_pss = 0
        self._cpu_start: dict[int, int] = {}  # per pid, its ticks at the reset (0: born after)
        self._cpu_last: dict[int, int] = {}  # per pid, its ticks when last seen
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _pids(self) -> list[int]:
        pids = process_tree(os.getpid(), self._exclude())
        return pids if self._count_self else pids[1:]

    def sample(self, pss: bool = True) -> tuple[int, int]:
        """(sum of RSS, sum of PSS) in bytes, now; PSS 0 when ``pss`` is false and no
        reading is due."""
        pids = self._pids()
        rss = sum(_status_kib(p, "VmRSS") for p in pids) * 1024
        now = time.monotonic()
        pss = pss or rss > self._pss_rss_high * 1.02 or now - self._pss_read_at >= self._pss_every
        pss_sum = sum(_pss_kib(p) for p in pids) * 1024 if pss else 0
        ticks = {p: _cpu_ticks(p) for p in pids}
        with self._lock:
            if pss:
                self._pss_read_at, self._pss_rss_high = now, max(self._pss_rss_high, rss)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss_sum)
            for p, t in ticks.items():
                if t >= self._cpu_last.get(p, 0):
                    self._cpu_last[p] = t
        return rss, pss_sum

    def reset(self) -> None:
        pids = self._pids()
        with self._lock:
            self.peak_rss = self.peak_pss = self._pss_rss_high = 0
            self._cpu_start = {p: _cpu_ticks(p) for p in pids}
            self._cpu_last = dict(self._cpu_start)
        self.sample()

    def cpu(self) -> float:
        """CPU seconds (user + system) of this process and its children since :meth:`reset`."""
        self.sample()
        with self._lock:
            ticks = sum(t - self._cpu_start.get(p, 0) for p, t in self._cpu_last.items())
        return ticks / CLOCK_TICKS

    def peak(self) -> tuple[int, int]:
        self.sample()
        with self._lock:
            return self.peak_rss, self.peak_pss

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample(pss=False)


# -- what plain LRU would have done -------------------------------------------------------------


def shard_reads(index: DatasetIndex, spec: OrderSpec, workers: int, rank: int = 0,
                world_size: int = 1) -> list[int]:
    """The shards (positions in the index) a TierLoader rank reads in ``spec``'s epoch, in
    the order the store sees them: each worker reads its shards in the order it first needs
    them, and the workers proceed side by side, so their sequences are merged by how far
    through its own each one is."""
    starts = index.starts
    orders: list[list[int]] = []
    for w in range(max(1, workers)):
        ids = worker_order(starts, spec, Placement(rank, world_size, w, max(1, workers))).samples
        positions = np.searchsorted(starts, ids, side="right") - 1
        first = np.unique(positions, return_index=True)[1]
        orders.append(positions[np.sort(first)].tolist())
    return side_by_side(orders)


def side_by_side(sequences: Sequence[Sequence[int]]) -> list[int]:
    """Sequences that proceed at the same pace (workers, ranks), merged by how far through
    its own each one is."""
    keyed = sorted(((i + 0.5) / len(seq), n, x) for n, seq in enumerate(sequences)
                   for i, x in enumerate(seq))
    return [x for _, _, x in keyed]


def lru_hit_rates(sizes: Sequence[int], epochs: Sequence[Sequence[int]], capacity: int
                  ) -> list[float]:
    """Per epoch, the share of the bytes read that an LRU cache of ``capacity`` bytes
    (filled on every miss, evicting the least recently read) would have served, over the
    read sequences ``epochs`` (shard positions; ``sizes[pos]`` their bytes)."""
    cache: OrderedDict[int, int] = OrderedDict()
    held = 0
    rates = []
    for sequence in epochs:
        hit = total = 0
        for pos in sequence:
            size = sizes[pos]
            total += size
            if pos in cache:
                hit += size
                cache.move_to_end(pos)
                continue
            if size > capacity:
                continue
            while held + size > capacity and cache:
                _, gone = cache.popitem(last=False)
                held -= gone
            cache[pos] = size
            held += size
        rates.append(hit / total if total else 0.0)
    return rates
