"""``tierstore simulate --intensity``: the emissions of deferrable moves, run at once, run
carbon-aware, and at the offline optimum, for the same moves, deadlines and bandwidth.

The trace is replayed once with the configured policies (:class:`~.replay.EngineReplay`),
recording every move each plan made and when. Moves that copy bytes become :class:`Job` s on
their lane (pair of tiers, which the bandwidth limit is per): deferrable ones released when
first planned and due ``max_deferral`` later (a pre-load's own deadline if sooner); urgent
ones run first, at once, and take their share of the lane. Then three schedules of the
deferrable jobs:

- *immediate*: each starts when planned (what the daemon does without a ``[carbon]`` table);
- *carbon-aware*: the daemon's rule (:func:`~.deferral.place`), online: at each plan and each
  step of the series it sees only the moves planned so far and the forecast (the series
  itself: a perfect forecast);
- *optimum*: every move known in advance, bytes assigned to the cheapest time within their
  windows under the bandwidth, exactly (:func:`optimum`). Bytes may split across the series'
  steps there, which no single copy does: a lower bound on any schedule.

Moves run non-preemptively, earliest deadline first, at the bandwidth limit; a move's
emissions are its bytes times :data:`~tierstore.carbon.MOVE_JOULES_PER_BYTE` times the
intensity while its bytes cross (estimates). The replay's reads are served as if every move
ran when planned: deferring a demotion does not change what the trace reads from where.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tierstore.carbon import Forecast, move_grams

from .base import Plan, Snapshot
from .deferral import Job, copies_nothing, place
from .engine import PolicyEngine
from .replay import EngineReplay
from .simulate import CONFIGURED, Simulation

__all__ = ["CarbonComparison", "Lane", "Outcome", "collect", "compare", "optimum"]

STRATEGIES = ("immediate", "carbon-aware", "optimum")


# -- what the replay planned -----------------------------------------------------------------


@dataclass
class _Recorder:
    """The engine, noting each plan and the snapshot it was made from."""

    engine: PolicyEngine
    plans: list[tuple[Snapshot, Plan]] = field(default_factory=list)

    def plan(self, snapshot: Snapshot) -> Plan:
        plan = self.engine.plan(snapshot)
        if plan.moves:
            self.plans.append((snapshot, plan))
        return plan


def collect(sim: Simulation, max_deferral: float, *, offset: float = 0.0,
            rate: float | None = None, policy: str = CONFIGURED
            ) -> tuple[list[Job], list[Job]]:
    """(deferrable, urgent) jobs of the moves ``policy`` makes on the trace, trace times
    shifted by ``offset``; a pre-load's deadline leaves time for its copy at ``rate``."""
    replay = sim.replay(policy)
    assert isinstance(replay, EngineReplay)
    recorder = _Recorder(replay.engine)
    replay.engine = recorder  # type: ignore[assignment]  # the same plan() the replay calls
    replay.run(sim.trace, sim.tick)
    deferrable, urgent = [], []
    for snapshot, plan in recorder.plans:
        at = plan.now + offset
        for n, move in enumerate(plan.moves):
            if copies_nothing(move, snapshot):
                continue
            obj = snapshot.get(move.key)
            origin = move.src or (snapshot.best(obj) if obj is not None else None)
            job_id = (at, n, move.key)
            lane = (origin, move.dst)
            if not move.deferrable:
                urgent.append(Job(job_id, move.bytes, at, at, lane))
                continue
            deadline = at + max_deferral
            if move.due is not None:
                deadline = min(deadline, move.due + offset - (move.bytes / rate if rate else 0))
            deferrable.append(Job(job_id, move.bytes, at, max(at, deadline), lane))
    return deferrable, urgent


# -- a lane: its bandwidth, the time urgent moves hold it, the intensity over it -------------


class Lane:
    """One pair of tiers at ``rate`` bytes/s (None: unlimited), busy with the ``urgent``
    jobs first (each at once, in turn), under ``forecast`` (its first value holds before it,
    its last after it)."""

    def __init__(self, rate: float | None, urgent: Iterable[Job], forecast: Forecast):
        self.rate, self.forecast = rate, forecast
        busy: list[tuple[float, float]] = []
        if rate is not None:
            free_from = -math.inf
            for job in sorted(urgent, key=lambda j: j.release):
                start = max(free_from, job.release)
                free_from = start + job.bytes / rate
                if busy and busy[-1][1] >= start:
                    busy[-1] = (busy[-1][0], free_from)
                else:
                    busy.append((start, free_from))
        self.busy = busy
        self._starts = [a for a, _ in busy]
        self._ends = [b for _, b in busy]
        self._busy_before = [0.0]
        for a, b in busy:
            self._busy_before.append(self._busy_before[-1] + b - a)

    def _busy_until(self, t: float) -> float:
        """Busy seconds before ``t``."""
        i = bisect.bisect_right(self._starts, t)
        if i == 0:
            return 0.0
        a, b = self.busy[i - 1]
        return self._busy_before[i - 1] + min(t, b) - a

    def free_time(self, start: float, end: float) -> float:
        """Seconds of ``[start, end)`` no urgent move holds."""
        if end <= start:
            return 0.0
        return (end - start) - (self._busy_until(end) - self._busy_until(start))

    def free_spans(self, start: float, end: float) -> list[tuple[float, float]]:
        """The spans of ``[start, end)`` no urgent move holds."""
        spans, at = [], start
        i = max(0, bisect.bisect_right(self._ends, start))
        while at < end:
            if i < len(self.busy) and self.busy[i][0] < end:
                a, b = self.busy[i]
                if a > at:
                    spans.append((at, a))
                at = max(at, b)
                i += 1
            else:
                spans.append((at, end))
                break
        return spans

    def capacity(self, start: float, end: float) -> float:
        assert self.rate is not None
        return self.rate * self.free_time(start, end)

    def intensity(self, when: float) -> float:
        value = self.forecast.at(when)
        if value is not None:
            return value
        steps = self.forecast.steps
        return steps[0].intensity if when < steps[0].start else steps[-1].intensity

    def transfer(self, start: float, nbytes: int) -> tuple[float, float]:
        """(finish, gCO2e) of ``nbytes`` sent from ``start`` in the lane's free time."""
        if self.rate is None:
            return start, move_grams(nbytes, self.intensity(start))
        left, grams, at = nbytes / self.rate, 0.0, start
        i = bisect.bisect_right(self._ends, at)  # the first busy span ending after ``at``
        while left > 0:
            if i < len(self.busy) and self.busy[i][0] <= at:
                at = max(at, self.busy[i][1])
                i += 1
                continue
            limit = self.busy[i][0] if i < len(self.busy) else math.inf
            take = min(left, limit - at)
            grams += self._grams(at, at + take)
            at += take
            left -= take
        return at, grams

    def _grams(self, start: float, end: float) -> float:
        """gCO2e of the lane's full rate over ``[start, end)``."""
        assert self.rate is not None
        total, at = 0.0, start
        for step in self.forecast.between(start, end):
            if step.start > at:
                total += move_grams(self.rate * (step.start - at), self.intensity(at))
            total += move_grams(self.rate * (step.end - step.start), step.intensity)
            at = step.end
        if end > at:
            total += move_grams(self.rate * (end - at), self.intensity(at))
        return total


class _Runner:
    """A lane carrying eligible jobs one at a time, earliest deadline first, each to its
    end once started."""

    def __init__(self, lane: Lane):
        self.lane = lane
        self.free_from = -math.inf
        self.queue: list[tuple[float, float, str, Job, float]] = []
        self.done: dict[Hashable, tuple[float, float]] = {}  # id -> (finish, gCO2e)
        self.running: tuple[float, float, int] | None = None  # (start, finish, bytes)

    def add(self, job: Job, eligible: float) -> None:
        heapq.heappush(self.queue, (job.deadline, eligible, str(job.id), job, eligible))

    def advance(self, until: float) -> None:
        """Start every queued job that can start before ``until``."""
        while self.queue:
            _, eligible, _, job, _ = self.queue[0]
            start = max(self.free_from, eligible)
            if start >= until:
                return
            heapq.heappop(self.queue)
            finish, grams = self.lane.transfer(start, job.bytes)
            self.done[job.id] = (finish, grams)
            self.running = (start, finish, job.bytes)
            self.free_from = finish

    def backlog(self, at: float) -> float:
        """Bytes queued or still crossing at ``at``."""
        queued = float(sum(entry[3].bytes for entry in self.queue))
        if self.running is not None and self.running[1] > at:
            start, finish, nbytes = self.running
            queued += nbytes * (finish - max(at, start)) / max(finish - start, 1e-12)
        return queued


# -- the three schedules ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One schedule of the deferrable moves: gCO2e, deadlines met, mean wait (s)."""

    strategy: str
    grams: float
    met: int | None  # None: not a schedule of whole moves (the optimum's, when infeasible)
    moves: int
    mean_delay: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "grams_co2e": round(self.grams, 3),
                "deadlines_met": self.met, "moves": self.moves,
                "mean_delay_s": None if self.mean_delay is None else round(self.mean_delay, 1),
                "estimate": True}


def _run(jobs: Sequence[Job], lanes: dict[Hashable, Lane], eligible: dict[Hashable, float],
         name: str) -> Outcome:
    runners = {lane: _Runner(lanes[lane]) for lane in lanes}
    for job in sorted(jobs, key=lambda j: eligible[j.id]):
        runner = runners[job.lane]
        runner.advance(eligible[job.id])  # what can start before it does
        runner.add(job, eligible[job.id])
    for runner in runners.values():
        runner.advance(math.inf)
    return _outcome(name, jobs, runners)


def _outcome(name: str, jobs: Sequence[Job], runners: dict[Hashable, _Runner]) -> Outcome:
    done = {k: v for r in runners.values() for k, v in r.done.items()}
    grams = sum(done[j.id][1] for j in jobs)
    met = sum(1 for j in jobs if done[j.id][0] <= j.deadline + 1e-6)
    delay = sum(done[j.id][0] - j.release for j in jobs) / len(jobs) if jobs else 0.0
    return Outcome(name, grams, met, len(jobs), delay)


def immediate(jobs: Sequence[Job], lanes: dict[Hashable, Lane]) -> Outcome:
    return _run(jobs, lanes, {j.id: j.release for j in jobs}, "immediate")


def carbon_aware(jobs: Sequence[Job], lanes: dict[Hashable, Lane], forecast: Forecast
                 ) -> Outcome:
    """The daemon's rule, online: decided again at each plan and each step of the series,
    from the moves planned so far."""
    runners = {lane: _Runner(lanes[lane]) for lane in lanes}
    released = sorted(jobs, key=lambda j: j.release)
    horizon = max((j.deadline for j in jobs), default=0.0)
    times = sorted({j.release for j in jobs} | {s.start for s in forecast.steps
                                                if released and released[0].release
                                                < s.start < horizon})
    pending: dict[Hashable, Job] = {}
    at = 0

    def capacity(lane: Hashable, start: float, end: float) -> float:
        return lanes[lane].capacity(start, end)

    rated = any(lane.rate is not None for lane in lanes.values())
    for now in times:
        for runner in runners.values():
            runner.advance(now)
        while at < len(released) and released[at].release <= now:
            pending[released[at].id] = released[at]
            at += 1
        if not pending:
            continue
        backlog = {lane: r.backlog(now) for lane, r in runners.items()} if rated else None
        starts = place(list(pending.values()), now, forecast, capacity if rated else None,
                       backlog=backlog)
        for job_id, start in starts.items():
            if start <= now:
                job = pending.pop(job_id)
                runners[job.lane].add(job, now)
    for job in pending.values():  # past the series: at its end
        runners[job.lane].add(job, times[-1] if times else job.release)
    for runner in runners.values():
        runner.advance(math.inf)
    return _outcome("carbon-aware", jobs, runners)


def optimum(jobs: Sequence[Job], lane: Lane) -> tuple[float, bool]:
    """The least gCO2e any schedule of ``jobs`` (on one lane) can emit, bytes free to split
    across time, and whether every job can meet its deadline.

    The loads per span that serve every job form the base polytope of a polymatroid (the
    bytes a set of spans can carry, each job within its window: a flow), and a linear cost
    is least over it by the greedy rule: the cheapest spans first, each taking as many bytes
    as the spans taken so far add to what can be carried (Edmonds). What a set of spans can
    carry is found by earliest-deadline-first over them, exact for windows on a line
    (Glover's rule for convex bipartite matching, in bytes).
    """
    if not jobs:
        return 0.0, True
    if lane.rate is None:
        grams = 0.0
        for job in jobs:
            steps = lane.forecast.between(job.release, job.deadline)
            low = min([s.intensity for s in steps] + [lane.intensity(job.release)])
            grams += move_grams(job.bytes, low)
        return grams, True
    pieces = _pieces(jobs, lane)
    order = sorted(jobs, key=lambda j: j.release)
    by_cost: dict[float, list[int]] = defaultdict(list)
    for i, (_, _, cost, _) in enumerate(pieces):
        by_cost[cost].append(i)
    chosen = [False] * len(pieces)
    carried, grams = 0.0, 0.0
    for cost in sorted(by_cost):
        for i in by_cost[cost]:
            chosen[i] = True
        more = _carried(order, pieces, chosen)
        grams += move_grams(more - carried, cost)
        carried = more
    total = sum(j.bytes for j in jobs)
    return grams, carried >= total * (1 - 1e-9)


def _pieces(jobs: Sequence[Job], lane: Lane) -> list[tuple[float, float, float, float]]:
    """(start, end, intensity, bytes it carries) of the lane's free time, cut wherever the
    intensity changes or a window opens or closes."""
    assert lane.rate is not None
    lo, hi = min(j.release for j in jobs), max(j.deadline for j in jobs)
    cuts = sorted({j.release for j in jobs} | {j.deadline for j in jobs}
                  | {s.start for s in lane.forecast.steps if lo < s.start < hi}
                  | {s.end for s in lane.forecast.steps if lo < s.end < hi})
    out = []
    for a, b in lane.free_spans(lo, hi):
        i = bisect.bisect_right(cuts, a)
        at = a
        while at < b:
            end = min(b, cuts[i]) if i < len(cuts) else b
            if end > at:
                out.append((at, end, lane.intensity(at), lane.rate * (end - at)))
            at, i = end, i + 1
    return out


def _carried(order: Sequence[Job], pieces: Sequence[tuple[float, float, float, float]],
             chosen: Sequence[bool]) -> float:
    """Bytes the chosen pieces can carry, each job within its window (EDF over time)."""
    heap: list[tuple[float, int, float]] = []  # (deadline, n, bytes left)
    at, carried = 0, 0.0
    for i, (start, _, _, room) in enumerate(pieces):
        if not chosen[i]:
            continue
        while at < len(order) and order[at].release <= start:
            heapq.heappush(heap, (order[at].deadline, at, float(order[at].bytes)))
            at += 1
        while heap and heap[0][0] <= start:
            heapq.heappop(heap)
        while heap and room > 0:
            deadline, n, left = heapq.heappop(heap)
            take = min(left, room)
            room -= take
            carried += take
            if left - take > 0:
                heapq.heappush(heap, (deadline, n, left - take))
    return carried


# -- the comparison --------------------------------------------------------------------------


@dataclass(frozen=True)
class CarbonComparison:
    """The three schedules of one replay's deferrable moves."""

    source: str
    offset: float
    rate: float | None
    max_deferral: float
    deferrable: int
    deferrable_bytes: int
    urgent: int
    urgent_bytes: int
    outcomes: tuple[Outcome, ...]
    feasible: bool

    def outcome(self, strategy: str) -> Outcome:
        return next(o for o in self.outcomes if o.strategy == strategy)

    @property
    def gap(self) -> float:
        """Carbon-aware's gCO2e above the optimum's, as a fraction of the optimum's."""
        best = self.outcome("optimum").grams
        ours = self.outcome("carbon-aware").grams
        return (ours - best) / best if best > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"intensity": self.source, "offset_s": self.offset,
                "bandwidth": self.rate, "max_deferral_s": self.max_deferral,
                "deferrable_moves": self.deferrable, "deferrable_bytes": self.deferrable_bytes,
                "urgent_moves": self.urgent, "urgent_bytes": self.urgent_bytes,
                "optimum_meets_every_deadline": self.feasible,
                "carbon_aware_above_optimum": round(self.gap, 4),
                "outcomes": [o.to_json() for o in self.outcomes], "estimate": True}


def compare(sim: Simulation, forecast: Forecast, *, max_deferral: float,
            rate: float | None = None) -> CarbonComparison:
    """Replay ``sim``'s configured policies and schedule their deferrable moves three ways
    under ``forecast`` (see the module). A trace whose times lie outside the forecast is
    shifted to start where it starts; deadlines stop at its end."""
    if not forecast:
        raise ValueError(f"{forecast.source}: no intensity in it")
    inside = forecast.start <= sim.trace.start and sim.trace.end < forecast.end
    offset = 0.0 if inside else forecast.start - sim.trace.start
    deferrable, urgent = collect(sim, max_deferral, offset=offset, rate=rate)
    deferrable = [Job(j.id, j.bytes, j.release, min(j.deadline, max(j.release, forecast.end)),
                      j.lane) for j in deferrable]
    names = {j.lane for j in deferrable} | {j.lane for j in urgent}
    lanes = {name: Lane(rate, [j for j in urgent if j.lane == name], forecast)
             for name in names}
    grams, feasible = 0.0, True
    for name, lane in lanes.items():
        lane_grams, ok = optimum([j for j in deferrable if j.lane == name], lane)
        grams += lane_grams
        feasible = feasible and ok
    best = Outcome("optimum", grams, len(deferrable) if feasible else None, len(deferrable))
    return CarbonComparison(
        source=forecast.source, offset=offset, rate=rate, max_deferral=max_deferral,
        deferrable=len(deferrable), deferrable_bytes=sum(j.bytes for j in deferrable),
        urgent=len(urgent), urgent_bytes=sum(j.bytes for j in urgent),
        outcomes=(immediate(deferrable, lanes), carbon_aware(deferrable, lanes, forecast),
                  best),
        feasible=feasible)
