"""Choosing among an object's replicas, and reading with failover, a deadline and hedging.

:class:`Locality` belongs to a store. It scores each ready replica by a cost in milliseconds::

    cost = expected latency + bytes / expected throughput + the tier class's penalty

where the expected latency is the endpoint's measured EWMA, fading back (half-life
``locality.memory``) to the static estimate of its distance class (``locality.distance_ms``:
same node, zone, region, remote) -- the only estimate before anything is measured -- plus
the least overhead (server and client time beyond the static estimate) seen on any endpoint
(not for a local folder, which has no server), so that an unmeasured endpoint is not
preferred for being compared without it. The first
answer of each endpoint is not a sample: it also paid for the client session. Replicas
whose endpoint is out of rotation (circuit open) come last, tried only when all else failed.

:meth:`Locality.read` reads the best replica and, on an error, a timeout or a checksum
mismatch, the next, without the caller seeing an error; every failure is reported to the
store (logged and counted). A small read whose chosen replica has not answered within its
measured p95 (``locality.hedge_after``) is hedged: a second request goes to the next replica,
the first complete answer wins and the other request is cancelled. When every replica failed,
or ``locality.read_deadline`` passed, the caller gets one :class:`NoReadableReplica` naming the
object and what each replica answered. It is the one failover path: ``cat`` and ``open`` read
through it, and so do whole-object streams (``get``, every copy a move or a fill makes), as
streams: never hedged, no deadline of their own, and only their failures teach the health
model (their time is their destination's too).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from ..catalog import Replica
from ..config import Config, TierClass, TierConfig
from ..errors import ChecksumMismatch, NoReadableReplica, ObjectChanged, TierstoreError
from .health import (
    MIN_P95_SAMPLES,
    BreakerState,
    EndpointHealth,
    HealthSnapshot,
    measuring_queue,
)
from .settings import LocalitySettings
from .topology import Distance, distance, parse_site

__all__ = ["Locality", "Scored"]

log = logging.getLogger(__name__)
_CLASS_ORDER = {"hot": 0, "warm": 1, "cold": 2}  # hotter first, within a margin of noise
PRIOR_THROUGHPUT = 200e6  # bytes per second assumed before any large read is measured
Fetched = bytes | memoryview  # what a read returns: new bytes, or the caller's memory
R = TypeVar("R")  # what a fetch returns: Fetched, or for a stream what its destination says
Fetch = Callable[[Replica], Awaitable[R]]
OnFailure = Callable[[Replica, BaseException], None]
Running = dict[asyncio.Future[Any], tuple["Scored", float, list[float]]]
"""Requests in flight: each one's replica, when it was launched, and how long it queued in
this process (not the endpoint's time: see :func:`~.health.queued`)."""


_CLASS_RANK = {c.name.lower(): int(c) for c in TierClass}  # as Scored.tier_class names them


@dataclass(frozen=True, slots=True)
class Scored:
    """A replica with its cost as ranked now."""

    replica: Replica
    distance: Distance
    tier_class: str
    cost_ms: float
    state: BreakerState

    @property
    def tier(self) -> str:
        return self.replica.tier


class Locality:
    """Replica ranking, endpoint health and the read loop of one store (one process)."""

    def __init__(self, config: Config):
        self.settings: LocalitySettings = config.locality
        self.reader = parse_site(config.site)
        self.tiers: Mapping[str, TierConfig] = config.tiers
        self.distances = {name: distance(self.reader, tier.site)
                          for name, tier in config.tiers.items()}
        s = self.settings
        self.health = {name: EndpointHealth(alpha=s.ewma_alpha, trip_after=s.trip_after,
                                            cooldown=s.cooldown) for name in config.tiers}
        # Seconds that every request costs beyond its distance's static estimate (server and
        # client time): the least seen so far, added to the estimate of unmeasured endpoints
        # so that they are compared like with like with measured ones.
        self.overhead = 0.0
        self._overhead_seen = False
        # hedges sent, hedges that answered first, probes of half-open endpoints, probes
        # that brought an endpoint back, breaker trips, reads that hit the deadline.
        self.counters: Counter[str] = Counter()
        # Bytes read from a nearer replica than a reader blind to sites would have taken
        # (the hottest class's), by (that replica's distance, the distance read from): what
        # locality kept from crossing sites (tierstore.energy prices it).
        self.not_carried: Counter[tuple[Distance, Distance]] = Counter()

    # -- ranking -----------------------------------------------------------------------------

    def score(self, replica: Replica, nbytes: int, now: float | None = None) -> Scored:
        now = time.monotonic() if now is None else now
        tier = self.tiers.get(replica.tier)
        if tier is None:  # a tier no longer configured: last, and it will fail loudly
            return Scored(replica, Distance.REMOTE, "unknown", math.inf, BreakerState.CLOSED)
        s = self.settings
        dist = self.distances[tier.name]
        health = self.health[tier.name]
        tier_class = tier.tier_class.name.lower()
        # A local folder pays no server's or network's overhead: an unmeasured local tier
        # must not look as slow as the slowest thing measured so far.
        prior = s.distance_ms[str(dist)] / 1000 + (0.0 if _local(tier) else self.overhead)
        # A few samples are noise (one slow answer on a busy machine): until there are as
        # many as a p95 needs, the static estimate stands.
        latency = (prior if health.samples < MIN_P95_SAMPLES
                   else health.expected_latency(prior, now, s.memory))
        transfer = nbytes / (health.throughput or PRIOR_THROUGHPUT)
        cost = (latency + transfer) * 1000 + s.class_ms.get(tier_class, 0.0)
        return Scored(replica, dist, tier_class, cost, health.state(now))

    def rank(self, replicas: Iterable[Replica], nbytes: int = 0) -> list[Scored]:
        """Replicas best first: in rotation before out of it, then by cost, distance, class
        and name. A hotter class's replica goes before a colder one unless its cost is more
        than ``hotter_wins_within`` above it (each class step colder multiplies the cost
        compared by one plus that; the step from hot by one plus ``hot_wins_within``): a copy
        staged on the hot tier is read, not skipped for a warm copy that happened to measure
        faster while the hot tier's reads queued in this process. Replicas on tiers this
        config does not list are left out: this reader cannot reach them (another node's
        local disk, unless listed as reachable)."""
        now = time.monotonic()
        scored = [self.score(r, nbytes, now) for r in replicas if r.tier in self.tiers]
        step, hot = 1.0 + self.settings.hotter_wins_within, 1.0 + self.settings.hot_wins_within

        def weight(tier_class: str) -> float:  # the cost compared is the cost times this
            steps = _CLASS_ORDER.get(tier_class, 3)
            return 1.0 if steps == 0 else hot * step ** (steps - 1)

        return sorted(scored, key=lambda x: (
            x.state is BreakerState.OPEN, x.cost_ms * weight(x.tier_class),
            x.distance, x.tier_class, x.tier))

    def snapshot(self, tier: str) -> HealthSnapshot | None:
        health = self.health.get(tier)
        return None if health is None else health.snapshot(time.monotonic())

    def hedge_threshold(self, tier: str) -> float | None:
        """Seconds after which a read from ``tier`` is hedged (None: not yet measured)."""
        s = self.settings
        if s.hedge_after is not None:
            after = s.hedge_after / 1000
        else:
            health = self.health.get(tier)
            p95 = None if health is None else health.p95()
            if p95 is None:
                return None
            after = p95
        return max(after, s.hedge_min_ms / 1000)

    # -- reading -----------------------------------------------------------------------------

    async def read(self, key: str, ranked: list[Scored], fetch: Fetch[R], nbytes: int,
                   on_failure: OnFailure, *, stream: bool = False) -> tuple[Scored, R]:
        """Read through ``fetch`` from the best of ``ranked`` that answers; see the module.
        ``stream``: ``fetch`` streams the whole object on into a destination (a copy, a
        ``get``), so it is never hedged (two writers), has no deadline (the tiers' own
        timeouts bound each request) and its time teaches nothing of the source (only its
        breaker learns whether it answered)."""
        s = self.settings
        deadline = math.inf if stream else time.monotonic() + s.read_deadline
        pending = list(ranked)
        running: Running = {}
        failures: list[tuple[str, BaseException]] = []
        hedge: asyncio.Future[R] | None = None
        hedgeable = s.hedge and nbytes <= s.hedge_max_bytes and not stream

        def launch(item: Scored) -> asyncio.Future[R]:
            now = time.monotonic()
            health = self.health.get(item.tier)
            if health is not None and health.begin(now):
                self.counters["probes"] += 1
                log.info("probing tier %r (out of rotation since %d failures) with a read of "
                         "%r", item.tier, health.consecutive_failures, key)
            with measuring_queue() as waited:
                task = asyncio.ensure_future(fetch(item.replica))
            task.add_done_callback(_retrieve)
            running[task] = (item, now, waited)
            return task

        try:
            while True:
                if not running:
                    if not pending:
                        raise NoReadableReplica(key, failures)
                    launch(pending.pop(0))
                now = time.monotonic()
                wait = deadline - now
                hedge_due: float | None = None
                if (hedgeable and hedge is None and len(running) == 1 and pending
                        and pending[0].state is not BreakerState.OPEN):
                    ((first, started, _),) = running.values()
                    after = self.hedge_threshold(first.tier)
                    if after is not None:
                        hedge_due = started + after
                        wait = min(wait, hedge_due - now)
                done, _ = await asyncio.wait(
                    running, timeout=None if math.isinf(wait) else max(wait, 0.0),
                    return_when=asyncio.FIRST_COMPLETED)
                now = time.monotonic()
                if not done:
                    if now >= deadline:
                        self._deadline_passed(key, running, pending, failures, now)
                    if hedge_due is not None and now >= hedge_due and pending:
                        self.counters["hedges"] += 1
                        log.debug("hedging the read of %r: %r has not answered in %.1f ms",
                                  key, first.tier, (now - started) * 1000)
                        hedge = launch(pending.pop(0))
                    continue
                # failures first, so that every finished request is accounted for
                for task in sorted(done, key=lambda t: t.exception() is None):
                    item, started, waited = running.pop(task)
                    took = max(now - started - waited[0], 0.0)
                    health = self.health.get(item.tier)
                    exc = task.exception()
                    if exc is None:
                        data = task.result()
                        if health is not None and stream:
                            health.answered()
                        elif health is not None:
                            was_probe = health.probing
                            sample = health.success(len(cast(Fetched, data)), took, now)
                            if sample is not None:
                                self._learn_overhead(item, sample)
                            if was_probe:
                                self.counters["probe_successes"] += 1
                                log.info("tier %r answered its probe: back in rotation",
                                         item.tier)
                        if task is hedge:
                            self.counters["hedge_wins"] += 1
                        blind = min(ranked, key=lambda x: (_CLASS_RANK.get(x.tier_class, 9),
                                                          x.tier))
                        if item.distance < blind.distance:
                            self.not_carried[(blind.distance, item.distance)] += nbytes
                        for other, (loser, since, queue) in running.items():
                            other.cancel()
                            if (h := self.health.get(loser.tier)) is not None:
                                h.censored(now - since - queue[0], now)
                        running.clear()
                        return item, data
                    if not isinstance(exc, TierstoreError | OSError) or isinstance(
                            exc, ObjectChanged):  # no replica holds what is there now
                        raise exc
                    if health is not None and health.failure(
                            now, endpoint=not isinstance(exc, ChecksumMismatch
                                                         | FileNotFoundError)):
                        self.counters["trips"] += 1
                        log.warning("tier %r is out of rotation for %gs after %d consecutive "
                                    "failures (last: %s)", item.tier, health.cooldown,
                                    health.consecutive_failures, exc)
                    failures.append((item.tier, exc))
                    on_failure(item.replica, exc)
        finally:
            for task, (item, _, _) in running.items():
                task.cancel()
                if (h := self.health.get(item.tier)) is not None:
                    h.abandon()

    def _learn_overhead(self, item: Scored, sample: float) -> None:
        extra = max(0.0, sample - self.settings.distance_ms[str(item.distance)] / 1000)
        if not self._overhead_seen or extra < self.overhead:
            self.overhead, self._overhead_seen = extra, True

    def _deadline_passed(self, key: str, running: Running, pending: list[Scored],
                         failures: list[tuple[str, BaseException]], now: float) -> None:
        limit = self.settings.read_deadline
        for item, _, _ in running.values():
            if (h := self.health.get(item.tier)) is not None and h.failure(now):
                self.counters["trips"] += 1
            failures.append((item.tier, TimeoutError(
                f"no answer within the read deadline of {limit:g}s")))
        failures += [(item.tier, TimeoutError(
            f"not tried: the read deadline of {limit:g}s had passed")) for item in pending]
        self.counters["deadline_exceeded"] += 1
        log.warning("read of %r gave up after the read deadline of %gs", key, limit)
        raise NoReadableReplica(key, failures)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a finished request's exception as seen (a cancelled loser's, say)."""
    if not task.cancelled():
        task.exception()


def _local(tier: TierConfig) -> bool:
    """Whether ``tier`` is a folder of this machine (``file://`` or a plain path)."""
    return tier.url.startswith("file://") or "://" not in tier.url
