"""A run: every job's clones as processes that start together, their files laid out first
and cleaned up after, and their results grouped as fio groups them.

A phase with a single job process runs it in this process. Otherwise each job process is
started with ``spawn`` (never ``fork``: the parent may hold event loops and client sessions
from laying out files), gets ready, and waits at a barrier so that every job's clock starts
at the same moment, as fio's do. A job with ``stonewall`` waits for every earlier job: the
jobs before it run (and finish) first, as one phase, then the next phase starts.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
import traceback
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Any

from ..common.errors import BenchError, TargetError
from .engine import JobPlan, run_job
from .options import JobOptions
from .pattern import Workload
from .stats import JobResult, merge_results
from .target import make_target

__all__ = ["Run", "group_results", "job_groups", "plan_jobs", "run_plans"]

Ticker = Callable[[Sequence[int], float], None]


@dataclass
class Run:
    """The job processes of one run and what they measured."""

    plans: list[JobPlan]
    results: list[JobResult]


async def _file_size(options: JobOptions, plan_target: Any) -> int:
    files = len(plan_target.paths)
    if options.size is not None:
        return options.size // files
    sizes = [await plan_target.existing_size(i) for i in range(files)]
    if any(s is None for s in sizes):
        raise BenchError(f"job {options.name!r}: size= is required when the files do not "
                         "exist yet")
    return min(s for s in sizes if s is not None)


def job_groups(options_list: Sequence[JobOptions]) -> list[tuple[int, int]]:
    """(groupid, phase) of each job, numbered as fio numbers them: ``new_group`` or
    ``stonewall`` on a job after the first starts a new reporting group, and ``stonewall``
    also makes it wait for every earlier job (a new phase). A job's numjobs clones share its
    group and phase."""
    found, group, phase = [], 0, 0
    for index, options in enumerate(options_list):
        if index and (options.stonewall or options.new_group):
            group += 1
        if index and options.stonewall:
            phase += 1
        found.append((group, phase))
    return found


async def _plan(options_list: Sequence[JobOptions]) -> list[JobPlan]:
    plans: list[JobPlan] = []
    for options, (groupid, phase) in zip(options_list, job_groups(options_list), strict=True):
        for jobnum in range(options.numjobs):
            target = make_target(options, jobnum)
            file_size = await _file_size(options, target)
            if file_size < options.block_sizes[0]:
                raise BenchError(f"job {options.name!r}: each file holds {file_size} bytes, "
                                 f"less than one block ({options.block_sizes[0]})")
            total = None if options.time_based else file_size * len(target.paths)
            work = Workload(file_size=file_size, nrfiles=len(target.paths),
                            bs=options.block_sizes, sequential=options.sequential,
                            read_percent=options.read_percent, total_bytes=total,
                            seed=options.seed + jobnum,
                            zipf_theta=options.zipf_theta
                            if options.random_distribution == "zipf" else None)
            plans.append(JobPlan(options, jobnum, len(plans), groupid, target, work, phase))
    return plans


async def _layout(plans: Sequence[JobPlan]) -> None:
    for plan in plans:
        await plan.target.layout(plan.workload.file_size, fill=plan.options.reads)


async def _cleanup(plans: Sequence[JobPlan]) -> None:
    for plan in plans:
        await plan.target.cleanup()


def plan_jobs(options_list: Sequence[JobOptions]) -> list[JobPlan]:
    """Job processes for ``options_list`` (numjobs clones each), files sized and laid out."""
    async def prepare() -> list[JobPlan]:
        plans = await _plan(options_list)
        await _layout(plans)
        return plans

    return asyncio.run(prepare())


def run_plans(plans: list[JobPlan], ticker: Ticker | None = None) -> Run:
    """Run every job process; remove what the targets must not leave behind, whatever
    happens. ``ticker(progress, seconds)`` is called about once a second with each job's
    bytes read and written so far. Phases (``stonewall``) run one after another."""
    try:
        results: list[JobResult] = []
        for phase in sorted({p.phase for p in plans}):
            part = [p for p in plans if p.phase == phase]
            results += [_inline(part[0], ticker)] if len(part) == 1 else \
                _processes(part, ticker)
    finally:
        asyncio.run(_cleanup(plans))
    return Run(plans, results)


def _inline(plan: JobPlan, ticker: Ticker | None) -> JobResult:
    progress = [0, 0]

    async def main() -> JobResult:
        job = asyncio.create_task(run_job(plan, progress=progress))
        began = time.monotonic()
        while ticker is not None and not job.done():
            await asyncio.wait([job], timeout=1.0)
            ticker(progress, time.monotonic() - began)
        return await job

    return asyncio.run(main())


def _child(plan: JobPlan, barrier: Any, results: Any, progress: Any) -> None:
    """A job process: run, then send ("ok", result) or ("error", type, message)."""
    try:
        result = asyncio.run(run_job(plan, gate=barrier.wait, progress=progress))
        results.put(("ok", plan.slot, result))
    except BaseException as exc:  # reported to the parent, which decides the exit status
        barrier.abort()
        kind = "usage" if isinstance(exc, BenchError) else "io"
        results.put(("error", plan.slot, kind, _describe(exc)))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, BenchError | TargetError | OSError):
        return text
    return f"{type(exc).__name__}: {text}\n{''.join(traceback.format_exception(exc))}"


def _processes(plans: list[JobPlan], ticker: Ticker | None) -> list[JobResult]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(plans))
    results: Any = ctx.Queue()
    progress: MutableSequence[int] = ctx.Array("q", 2 * (max(p.slot for p in plans) + 1),
                                               lock=False)
    children = [ctx.Process(target=_child, args=(plan, barrier, results, progress),
                            name=f"bench-{plan.options.name}.{plan.jobnum}", daemon=True)
                for plan in plans]
    for child in children:
        child.start()
    try:
        return _collect(plans, children, results, progress, ticker)
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join(timeout=10)


def _collect(plans: list[JobPlan], children: list[Any], results: Any,
             progress: Sequence[int], ticker: Ticker | None) -> list[JobResult]:
    found: dict[int, JobResult] = {}
    by_slot = {p.slot: p for p in plans}
    began = time.monotonic()
    while len(found) < len(plans):
        try:
            message = results.get(timeout=1.0)
        except queue.Empty:
            if ticker is not None:
                ticker(progress, time.monotonic() - began)
            dead = [c for c in children if not c.is_alive() and c.exitcode not in (0, None)]
            if dead:
                raise TargetError(f"job process {dead[0].name} died (exit "
                                  f"{dead[0].exitcode})") from None
            continue
        if message[0] == "error":
            _, slot, kind, text = message
            error = BenchError if kind == "usage" else TargetError
            raise error(f"job {by_slot[slot].options.name!r}: {text}")
        found[message[1]] = message[2]
    return [found[p.slot] for p in plans]


def group_results(run: Run) -> list[JobResult]:
    """Results as fio prints them: one per job process, or one per reporting group for the
    groups whose jobs ask for ``group_reporting``."""
    out: list[JobResult] = []
    for groupid in sorted({p.groupid for p in run.plans}):
        pairs = [(p, r) for p, r in zip(run.plans, run.results, strict=True)
                 if p.groupid == groupid]
        if any(p.options.group_reporting for p, _ in pairs):
            out.append(merge_results(r for _, r in pairs))
        else:
            out += [r for _, r in pairs]
    return out
