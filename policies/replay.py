"""Replaying an access trace against the policies in virtual time, and against plain LRU.

No store, no clock: every object of the trace starts on one tier (:func:`place`), and each
:class:`Replay` serves the trace's reads, in order, from the hottest tier holding the object.
:class:`EngineReplay` keeps access statistics the way the catalog does (a read adds one to a
score that halves every ``half_life``: :meth:`AccessStats.score_at
<tierstore.catalog.AccessStats.score_at>`), and every ``tick`` of trace time runs the policy
engine on the snapshot this makes and carries out the plan at once (:func:`apply_plan`: a move
takes no time and no bandwidth). :class:`LruReplay` is the baseline: the hottest tier as a
plain LRU cache of whole objects, filled on every miss.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from tierstore.catalog import AccessStats
from tierstore.catalog.base import DEFAULT_HALF_LIFE

from .base import ObjectState, Snapshot, TierState
from .config import PolicyConfig
from .engine import default_engine
from .ledger import apply_plan
from .trace import Read, Trace, TraceError

__all__ = ["MAX_TICKS", "EngineReplay", "LruReplay", "Replay", "Result", "Served", "place"]

MAX_TICKS = 1_000_000  # a replay that would plan more often than this asks for a longer tick


@dataclass
class Served:
    """Reads (and their bytes) one tier served."""

    reads: int = 0
    bytes: int = 0


@dataclass
class Result:
    """What one policy did with a trace: reads served per tier (hottest first), moves made.

    ``bytes_moved`` counts bytes copied onto a tier; a move that only drops a replica (the
    object has one on its destination already) copies nothing.
    """

    policy: str
    description: str
    tiers: dict[str, Served]
    moves: int = 0
    promotions: int = 0
    demotions: int = 0
    bytes_moved: int = 0
    plans: int = 0
    seconds: float = 0.0

    @property
    def reads(self) -> int:
        return sum(served.reads for served in self.tiers.values())

    @property
    def bytes(self) -> int:
        return sum(served.bytes for served in self.tiers.values())

    def read_hit_rate(self, tier: str) -> float:
        """The share of reads ``tier`` served."""
        return self.tiers[tier].reads / self.reads if self.reads else 0.0

    def byte_hit_rate(self, tier: str) -> float:
        """The share of bytes read that ``tier`` served."""
        return self.tiers[tier].bytes / self.bytes if self.bytes else 0.0

    def to_json(self) -> dict[str, object]:
        return {"policy": self.policy, "description": self.description, "reads": self.reads,
                "bytes": self.bytes,
                "tiers": {name: {"reads": s.reads, "bytes": s.bytes,
                                 "read_hit_rate": self.read_hit_rate(name),
                                 "byte_hit_rate": self.byte_hit_rate(name)}
                          for name, s in self.tiers.items()},
                "moves": self.moves, "promotions": self.promotions,
                "demotions": self.demotions, "bytes_moved": self.bytes_moved,
                "plans": self.plans, "seconds": round(self.seconds, 3)}


def place(trace: Trace, tiers: Sequence[TierState], start: str) -> dict[str, str]:
    """Where each object is before the first read: on ``start`` while it stays under its
    high watermark, in the order objects are first read; the rest likewise on the next
    colder tiers.

    Raises
    ------
    TraceError
        If the objects do not fit under the high watermarks of ``start`` and colder tiers.
    """
    names = [tier.name for tier in tiers]
    below = tiers[names.index(start):]
    used = dict.fromkeys(names, 0)
    out: dict[str, str] = {}
    for key, size in trace.sizes.items():
        tier = next((t for t in below if used[t.name] + size <= t.high_bytes), None)
        if tier is None:
            raise TraceError(f"{trace.source}: its objects do not fit under the high "
                             f"watermarks of {start} and the tiers colder than it")
        used[tier.name] += size
        out[key] = tier.name
    return out


class Replay(ABC):
    """One policy serving a trace's reads (``tiers`` hottest first); :meth:`run` makes its
    :class:`Result`."""

    ticks = False  # whether the replay plans every tick

    def __init__(self, name: str, description: str, tiers: Sequence[TierState]):
        self.tiers = tuple(tiers)
        self.rank = {tier.name: i for i, tier in enumerate(self.tiers)}
        self.result = Result(name, description, {tier.name: Served() for tier in self.tiers})

    def serve(self, read: Read, tier: str) -> None:
        served = self.result.tiers[tier]
        served.reads += 1
        served.bytes += read.bytes

    @abstractmethod
    def read(self, read: Read) -> None:
        """Serve ``read`` (and note it)."""

    @abstractmethod
    def tick(self, now: float) -> None:
        """Plan at ``now`` and carry the plan out (called only when :attr:`ticks`)."""

    def run(self, trace: Trace, tick: float,
            advance: Callable[[int], None] | None = None) -> Result:
        """Serve every read, planning every ``tick`` seconds of trace time from its start
        (before the reads at that time); ``advance(n)`` reports reads done."""
        began, plans, step = time.perf_counter(), 0, 0
        next_tick = trace.start
        for read in trace.reads:
            while self.ticks and next_tick <= read.time:
                self.tick(next_tick)
                plans += 1
                next_tick = trace.start + plans * tick
            self.read(read)
            step += 1
            if advance is not None and step == 1024:
                advance(step)
                step = 0
        if advance is not None and step:
            advance(step)
        self.result.plans = plans
        self.result.seconds = time.perf_counter() - began
        return self.result


@dataclass
class _Object:
    size: int
    replicas: tuple[str, ...]
    stats: AccessStats | None = field(default=None)


class EngineReplay(Replay):
    """The policy engine with ``config``, planning every tick; objects start where ``home``
    (:func:`place`) puts them; statistics are kept as the catalog keeps them, with its
    ``half_life``."""

    ticks = True

    def __init__(self, name: str, description: str, config: PolicyConfig,
                 tiers: Sequence[TierState], trace: Trace, home: Mapping[str, str], *,
                 half_life: float = DEFAULT_HALF_LIFE):
        super().__init__(name, description, tiers)
        self.objects = {key: _Object(trace.sizes[key], (tier,)) for key, tier in home.items()}
        self.used = dict.fromkeys(self.rank, 0)
        for obj in self.objects.values():
            self.used[obj.replicas[0]] += obj.size
        self.engine = default_engine(config)
        self.created = trace.start
        self.half_life = half_life

    def read(self, read: Read) -> None:
        obj = self.objects[read.key]
        self.serve(read, min(obj.replicas, key=self.rank.__getitem__))
        old = obj.stats
        obj.stats = AccessStats(read.key, read.time, 1, 1.0) if old is None else AccessStats(
            read.key, max(read.time, old.last_access), old.count + 1,
            old.score_at(read.time, self.half_life) + 1)

    def snapshot(self, now: float) -> Snapshot:
        """The objects and tiers as a catalog would show them at ``now``."""
        objects = tuple(
            ObjectState(key=key, size=obj.size, replicas=obj.replicas, created=self.created,
                        last_access=None if obj.stats is None else obj.stats.last_access,
                        count=0 if obj.stats is None else obj.stats.count,
                        score=0.0 if obj.stats is None else obj.stats.score_at(
                            now, self.half_life))
            for key, obj in self.objects.items())
        tiers = tuple(replace(tier, used=self.used[tier.name]) for tier in self.tiers)
        return Snapshot(objects, tiers, now)

    def tick(self, now: float) -> None:
        snapshot = self.snapshot(now)
        plan = self.engine.plan(snapshot)
        if not plan.moves:
            return
        after = apply_plan(snapshot, plan)
        result = self.result
        for move in plan:
            obj = self.objects[move.key]
            best = min(self.rank[tier] for tier in obj.replicas)
            result.moves += 1
            if self.rank[move.dst] < best:
                result.promotions += 1
            else:
                result.demotions += 1
            if move.dst not in obj.replicas:
                result.bytes_moved += move.bytes
            state = after.get(move.key)
            assert state is not None
            obj.replicas = state.replicas
        self.used = {tier.name: tier.used for tier in after.tiers}


class LruReplay(Replay):
    """The hottest tier as an LRU cache of whole objects: a miss is served from the object's
    home tier and copied to the cache, evicting the least recently read objects to make room
    (an eviction drops the copy: a move of no bytes). No policy runs."""

    def __init__(self, name: str, description: str, tiers: Sequence[TierState],
                 trace: Trace, home: Mapping[str, str]):
        super().__init__(name, description, tiers)
        self.home = home
        self.sizes = trace.sizes
        self.cache = self.tiers[0]
        self.cached: OrderedDict[str, int] = OrderedDict()  # key -> size, least recent first
        self.filled = 0

    def tick(self, now: float) -> None:
        """Nothing: an LRU cache acts on reads only."""

    def read(self, read: Read) -> None:
        if read.key in self.cached:
            self.cached.move_to_end(read.key)
            self.serve(read, self.cache.name)
            return
        self.serve(read, self.home[read.key])
        size = self.sizes[read.key]
        if size > self.cache.limit:
            return
        result = self.result
        while self.filled + size > self.cache.limit:
            self.filled -= self.cached.popitem(last=False)[1]
            result.moves += 1
            result.demotions += 1
        self.cached[read.key] = size
        self.filled += size
        result.moves += 1
        result.promotions += 1
        result.bytes_moved += size
