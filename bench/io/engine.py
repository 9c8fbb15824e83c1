"""The engine: one job in one process, keeping ``iodepth`` requests in flight.

A job has ``iodepth`` :class:`~tierstore.cli.bench.io.lane.Lane` objects: threads over local files,
coroutines over object stores and tiers. The engine opens the target, waits at the start gate
(all job processes start together), runs the ramp, then the measured phase with a sampler of
fio's 500 ms bandwidth and IOPS windows, then ``end_fsync``, and gathers the lanes'
histograms and counters into a :class:`~tierstore.cli.bench.io.stats.JobResult` with the CPU time
and context switches of the process.
"""

from __future__ import annotations

import asyncio
import itertools
import mmap
import os
import resource
import threading
import time
from collections.abc import Callable, MutableSequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .lane import NEVER, Lane
from .options import JobOptions
from .pattern import Workload, lane_batches
from .stats import SAMPLE_SECONDS, DirectionStats, JobResult, Samples
from .target import BlockingTarget, Target

__all__ = ["JobPlan", "run_job"]

_clock = time.perf_counter_ns


@dataclass(frozen=True)
class JobPlan:
    """One job process: its options, which clone it is, its target and its I/O pattern."""

    options: JobOptions
    jobnum: int  # which of the job's numjobs clones
    slot: int  # which of all the run's job processes
    groupid: int  # fio's reporting group (new_group and stonewall start one)
    target: Target
    workload: Workload
    phase: int = 0  # jobs of one phase run together; a stonewall starts the next phase


def _lanes(plan: JobPlan, stop: threading.Event) -> list[Lane]:
    options, work = plan.options, plan.workload
    fsync_count = itertools.count()  # shared: next() on it is atomic under the GIL
    lanes = []
    for k in range(options.iodepth):
        buffer = mmap.mmap(-1, work.bs[1])  # page-aligned, as O_DIRECT needs
        if options.writes:
            buffer.write(os.urandom(work.bs[1]))  # incompressible, like fio's buffers
        lanes.append(Lane(lane_batches(work, k, options.iodepth), bs=work.bs[0],
                          writes_only=work.read_percent == 0, buffer=memoryview(buffer),
                          fsync_every=options.fsync if plan.target.blocking else 0,
                          fsync_count=fsync_count, stop=stop, aligned=options.direct))
    return lanes


async def _phase(lanes: list[Lane], target: Target, pool: ThreadPoolExecutor | None,
                 deadline: int) -> None:
    if pool is not None and isinstance(target, BlockingTarget):
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(pool, lane.run_blocking, target, deadline)
                               for lane in lanes))
    else:
        await asyncio.gather(*(lane.run_async(target, deadline) for lane in lanes))


class _Sampler:
    """fio's bandwidth and IOPS samples: rates over each 500 ms window of the run."""

    def __init__(self, lanes: list[Lane], options: JobOptions,
                 progress: MutableSequence[int] | None, slot: int):
        self.lanes, self.progress, self.slot = lanes, progress, slot
        self.active = (options.reads, options.writes)
        self.bw = (Samples(), Samples())
        self.iops = (Samples(), Samples())

    def _totals(self) -> list[int]:
        return [sum(lane.counters[i] for lane in self.lanes) for i in range(4)]

    async def run(self, start: int) -> None:
        previous, then = self._totals(), start
        while True:
            await asyncio.sleep(max(0.0, (then + SAMPLE_SECONDS * 1e9 - _clock()) / 1e9))
            now, totals = _clock(), self._totals()
            seconds = (now - then) / 1e9
            for d in (0, 1):
                if self.active[d]:
                    self.bw[d].values.append((totals[2 * d] - previous[2 * d]) / 1024 / seconds)
                    self.iops[d].values.append((totals[2 * d + 1] - previous[2 * d + 1])
                                               / seconds)
            if self.progress is not None:
                self.progress[2 * self.slot] = totals[0]
                self.progress[2 * self.slot + 1] = totals[2]
            previous, then = totals, now


async def run_job(plan: JobPlan, gate: Callable[[], Any] | None = None,
                  progress: MutableSequence[int] | None = None) -> JobResult:
    """Run one job process: open, wait at ``gate`` (all jobs start together), ramp, measure."""
    begun = time.monotonic()
    options, target = plan.options, plan.target
    stop = threading.Event()
    await target.open()
    pool = (ThreadPoolExecutor(max_workers=options.iodepth, thread_name_prefix="bench-lane")
            if target.blocking else None)
    try:
        lanes = _lanes(plan, stop)
        if gate is not None:
            await asyncio.to_thread(gate)
        if options.ramp_time:
            await _phase(lanes, target, pool, _clock() + int(options.ramp_time * 1e9))
            for lane in lanes:
                lane.reset()
        sampler = _Sampler(lanes, options, progress, plan.slot)
        usage, wall, start = resource.getrusage(resource.RUSAGE_SELF), time.time(), _clock()
        deadline = start + int(options.runtime * 1e9) if options.runtime else NEVER
        sampling = asyncio.create_task(sampler.run(start))
        try:
            await _phase(lanes, target, pool, deadline)
            _end_fsync(options, target, lanes[0])
        finally:
            sampling.cancel()
        runtime = _clock() - start
        return _result(plan, lanes, sampler, usage, wall, runtime, time.monotonic() - begun)
    finally:
        stop.set()
        if pool is not None:
            pool.shutdown(wait=True)
        await target.close()


def _end_fsync(options: JobOptions, target: Target, lane: Lane) -> None:
    if options.end_fsync and options.writes and isinstance(target, BlockingTarget):
        for index in range(len(target.paths)):
            t0 = _clock()
            target.fsync(index)
            lane.sync.add(_clock() - t0)


def _result(plan: JobPlan, lanes: list[Lane], sampler: _Sampler, usage: Any, wall: float,
            runtime: int, elapsed: float) -> JobResult:
    after = resource.getrusage(resource.RUSAGE_SELF)
    options = plan.options
    result = JobResult(
        name=options.name, groupid=plan.groupid, options=options.given,
        description={"rw": options.rw, "bs": list(plan.workload.bs),
                     "ioengine": options.ioengine, "iodepth": options.iodepth,
                     "target": plan.target.describe()},
        pid=os.getpid(), started=wall, runtime_ns=runtime, elapsed_s=elapsed,
        usr_s=after.ru_utime - usage.ru_utime, sys_s=after.ru_stime - usage.ru_stime,
        ctx=(after.ru_nvcsw + after.ru_nivcsw) - (usage.ru_nvcsw + usage.ru_nivcsw),
        majf=after.ru_majflt - usage.ru_majflt, minf=after.ru_minflt - usage.ru_minflt,
        iodepth=options.iodepth)
    for d, name in enumerate(("read", "write")):
        stats: DirectionStats = result.directions[name]
        for lane in lanes:
            stats.io_bytes += lane.counters[2 * d]
            stats.total_ios += lane.counters[2 * d + 1]
            stats.short_ios += lane.short[d]
            stats.clat.merge(lane.clat[d])
        stats.bw, stats.iops = sampler.bw[d], sampler.iops[d]
    for lane in lanes:
        result.sync.merge(lane.sync)
    return result
