"""Carbon-aware moves: when each move of a plan runs, and why.

A move a policy marked ``deferrable`` (:class:`~tierstore.policies.base.Move`: a demotion, the
shedding below a high watermark, a pre-load with slack, a replica beyond the second) may wait
for a cleaner hour of the grid; every other move runs at once (:func:`urgency` says why). Each
deferrable move has a deadline: ``max_deferral`` after a plan first proposed it, or sooner
where it has a deadline of its own (a pre-load's, less the time its copy takes). Among the
steps of the intensity forecast (:class:`~tierstore.carbon.Forecast`) from now to that
deadline, :func:`place` puts it in the cleanest one that still has room for its bytes at the
bandwidth limit (earliest deadline first, so a move with less time picks first); it runs now
if that step is the current one, else it is held.

Held moves are planned again each cycle by the policies; :class:`CarbonScheduler` remembers
when each was first proposed, so its deadline does not slide. A move whose policy stops
proposing it (the object was read again, say) is forgotten: held, it never ran. A move that
runs now but needs the room a held move frees (a promotion onto a tier that a held demotion
empties) takes that move with it: room needed now is never deferred.

Pure: no clock and no I/O here; the daemon and ``tierstore plan`` fetch the forecast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from tierstore.carbon import Forecast

from .base import Move, Plan, Snapshot
from .ledger import Ledger

__all__ = ["CarbonScheduler", "Job", "Schedule", "Timing", "place", "urgency"]

MoveId = tuple[str, str | None, str]  # key, src, dst: the same move planned again
Capacity = Callable[[Hashable, float, float], float]  # (lane, start, end) -> bytes it can carry


@dataclass(frozen=True)
class Job:
    """A deferrable move's bytes in time: released at ``release``, landed by ``deadline``,
    over ``lane`` (a pair of tiers, which the bandwidth limit is per)."""

    id: Hashable
    bytes: int
    release: float
    deadline: float
    lane: Hashable = None


def bandwidth(rate: float | None) -> Capacity | None:
    """The bytes a lane carries over ``[start, end)`` at ``rate`` bytes/s (None: unlimited)."""
    if rate is None:
        return None
    return lambda lane, start, end: rate * max(0.0, end - start)


def place(jobs: Sequence[Job], now: float, forecast: Forecast, capacity: Capacity | None,
          *, backlog: dict[Hashable, float] | None = None) -> dict[Hashable, float]:
    """When each job starts: in the cleanest forecast step between now (or its release) and
    its deadline that still has room for its bytes, the earliest such step on a tie;
    earliest deadline first, each job taking room from the steps it is put in.

    ``capacity`` (None: unlimited) says what a lane carries over a span; ``backlog`` is bytes
    already started on each lane, which take the first room. A job that no step has room for
    starts now (late is better than never). Greedy, not optimal: the simulation
    (:mod:`.carbonsim`) measures it against the offline optimum.
    """
    steps = forecast.between(now, max((j.deadline for j in jobs), default=now))
    used: dict[tuple[Hashable, int], float] = {}
    if capacity is not None:
        for lane, nbytes in (backlog or {}).items():
            for i, step in enumerate(steps):
                if nbytes <= 0:
                    break
                take = min(nbytes, capacity(lane, step.start, step.end))
                used[lane, i] = take
                nbytes -= take
    out: dict[Hashable, float] = {}
    for job in sorted(jobs, key=lambda j: (j.deadline, j.release, str(j.id))):
        best: tuple[float, float, int] | None = None  # (intensity, start, step)
        for i, step in enumerate(steps):
            start, end = max(step.start, job.release, now), min(step.end, job.deadline)
            if end <= start or (best is not None and step.intensity >= best[0]):
                continue
            if capacity is not None:
                room = capacity(job.lane, start, end) - used.get((job.lane, i), 0.0)
                if room < job.bytes:
                    continue
            best = (step.intensity, start, i)
        if best is None:
            out[job.id] = now
            continue
        out[job.id] = best[1]
        key = (job.lane, best[2])
        used[key] = used.get(key, 0.0) + job.bytes
    return out


@dataclass(frozen=True)
class Timing:
    """When a move runs (Unix seconds), and why; ``deadline`` and ``intensity`` (gCO2e/kWh
    when it runs) where known."""

    when: float
    why: str
    deferrable: bool = False
    deadline: float | None = None
    intensity: float | None = None

    def to_json(self) -> dict[str, object]:
        return {"when": round(self.when, 3), "when_iso": _iso(self.when), "why": self.why,
                "deferrable": self.deferrable,
                "deadline": None if self.deadline is None else round(self.deadline, 3),
                "intensity": self.intensity}


@dataclass(frozen=True)
class Schedule:
    """A plan's moves with their :class:`Timing` (one each, in order)."""

    plan: Plan
    timings: tuple[Timing, ...]
    at: float  # the time it was made for

    def runs_now(self, index: int) -> bool:
        return self.timings[index].when <= self.at

    @property
    def now(self) -> Plan:
        """The plan less the held moves (the order kept)."""
        moves = tuple(m for i, m in enumerate(self.plan.moves) if self.runs_now(i))
        return replace(self.plan, moves=moves)

    @property
    def held(self) -> list[tuple[Move, Timing]]:
        return [(m, t) for i, (m, t) in enumerate(zip(self.plan.moves, self.timings,
                                                      strict=True)) if not self.runs_now(i)]

    def to_json(self) -> dict[str, object]:
        """The plan's JSON, each move with its timing."""
        out = self.plan.to_json()
        out["moves"] = [{**m.to_json(), **t.to_json()}
                        for m, t in zip(self.plan.moves, self.timings, strict=True)]
        out["held"] = len(self.held)
        return out


def urgency(move: Move, snapshot: Snapshot) -> str:
    """Why a move that is not deferrable runs now: the one place that says it."""
    obj = snapshot.get(move.key)
    rank = snapshot.rank
    promotion = obj is not None and rank(move.dst) < min(map(rank, obj.replicas))
    if move.policy == "next_use":
        return "next-use staging" if promotion else "makes room for next-use staging"
    if move.policy == "watermarks":
        return f"room needed now ({move.src} over its high watermark)"
    if move.policy == "placement":
        return "repairs an object short of its replicas"
    if move.policy == "pins":
        return "pinned there"
    if move.policy == "preload":
        return "a pre-load with no slack before its deadline"
    if promotion:
        return "a promotion for reads now"
    return "makes room for a promotion"


def copies_nothing(move: Move, snapshot: Snapshot) -> bool:
    obj = snapshot.get(move.key)
    return obj is not None and move.dst in obj.replicas


class CarbonScheduler:
    """Decides, cycle after cycle, which moves of a plan run now and which wait for a
    cleaner hour (see the module). ``bandwidth`` is bytes/s per pair of tiers (None:
    unlimited), as the daemon's limit."""

    def __init__(self, max_deferral: float, bandwidth: float | None = None):
        self.max_deferral = max_deferral
        self.bandwidth = bandwidth
        self._first_seen: dict[MoveId, float] = {}

    @staticmethod
    def _id(move: Move) -> MoveId:
        return (move.key, move.src, move.dst)

    def schedule(self, plan: Plan, snapshot: Snapshot, forecast: Forecast | None, *,
                 now: float | None = None, copy_rate: float | None = None,
                 unavailable: str | None = None) -> Schedule:
        """Each move's timing at ``now`` (default ``plan.now``). ``forecast`` None (with the
        reason in ``unavailable``) runs everything now. Remembers the held moves' first
        sighting."""
        now = plan.now if now is None else now
        current = forecast.at(now) if forecast else None
        timings: list[Timing | None] = []
        jobs: list[Job] = []
        for i, move in enumerate(plan.moves):
            timing, job = self._classify(i, move, snapshot, now, forecast, current,
                                         copy_rate, unavailable)
            timings.append(timing)
            if job is not None:
                jobs.append(job)
        if jobs:
            assert forecast is not None and current is not None
            starts = place(jobs, now, forecast, bandwidth(self.bandwidth))
            for job in jobs:
                assert isinstance(job.id, int)
                timings[job.id] = self._placed(job, starts[job.id], now, forecast, current)
        done = [t for t in timings if t is not None]
        assert len(done) == len(plan.moves)
        settled = _settle(plan, snapshot, done, now)
        self._first_seen = {self._id(m): self._first_seen.get(self._id(m), now)
                            for m, t in zip(plan.moves, settled, strict=True) if t.when > now}
        return Schedule(plan, tuple(settled), now)

    def _classify(self, index: int, move: Move, snapshot: Snapshot, now: float,
                  forecast: Forecast | None, current: float | None, copy_rate: float | None,
                  unavailable: str | None) -> tuple[Timing | None, Job | None]:
        """The move's timing if it runs now whatever the forecast, else the job to place."""
        if copies_nothing(move, snapshot):
            return Timing(now, "now: copies nothing (drops a replica)", intensity=current), None
        if not move.deferrable:
            return Timing(now, f"urgent: {urgency(move, snapshot)}", intensity=current), None
        release = self._first_seen.get(self._id(move), now)
        deadline = release + self.max_deferral
        if move.due is not None:
            rate = self.bandwidth or copy_rate
            deadline = min(deadline, move.due - (move.bytes / rate if rate else 0.0))
        if deadline <= now:
            return Timing(now, "now: its deadline has come", True, deadline, current), None
        if forecast is None:
            why = f"now: no intensity forecast ({unavailable or 'none configured'})"
            return Timing(now, why, True, deadline), None
        if current is None:
            return Timing(now, "now: the forecast does not cover now", True, deadline), None
        obj = snapshot.get(move.key)
        origin = move.src or (snapshot.best(obj) if obj is not None else None)
        return None, Job(index, move.bytes, now, deadline, (origin, move.dst))

    @staticmethod
    def _placed(job: Job, start: float, now: float, forecast: Forecast, current: float
                ) -> Timing:
        at = forecast.at(start)
        if start <= now:
            return Timing(now, f"now: {current:.0f} gCO2e/kWh, the cleanest before "
                               f"{_iso(job.deadline)}", True, job.deadline, current)
        assert at is not None
        return Timing(start, f"deferred: {at:.0f} gCO2e/kWh at {_iso(start)} vs "
                             f"{current:.0f} now", True, job.deadline, at)


def _settle(plan: Plan, snapshot: Snapshot, timings: list[Timing], now: float
            ) -> list[Timing]:
    """Timings such that the moves that run now can run without the held ones: a move that
    needs the room a held move frees holds too if it may wait, else takes the held move
    with it (room needed now is never deferred)."""
    timings = list(timings)
    changed = True
    while changed:
        changed = False
        ledger = Ledger(snapshot)
        for i, move in enumerate(plan.moves):
            if timings[i].when > now:
                continue
            if ledger.check(move) is None:
                ledger.apply(move)
                continue
            freers = [j for j in range(i) if timings[j].when > now
                      and plan.moves[j].src == move.dst]
            later = max((timings[j].when for j in freers), default=now)
            deadline = timings[i].deadline
            if freers and timings[i].deferrable and deadline is not None and later < deadline:
                timings[i] = replace(timings[i], when=later,
                                     why=f"deferred: waits for the room held moves free on "
                                         f"{move.dst} ({_iso(later)})")
            elif freers:
                for j in freers:
                    timings[j] = replace(timings[j], when=now,
                                         why=f"now: frees room on {move.dst} that "
                                             f"{move.key} needs now")
            else:
                continue  # not for want of a held move's room: left to the daemon to report
            changed = True
            break
    return timings


def _iso(seconds: float) -> str:
    if not math.isfinite(seconds):
        return str(seconds)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%MZ")
