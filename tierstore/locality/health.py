"""What the reader measures of each endpoint: decayed averages of latency and throughput, a
window of recent latencies for the p95, and a circuit breaker.

One :class:`EndpointHealth` per tier (each tier is one endpoint: a bucket behind a server, or a
folder). Clocks are ``time.monotonic`` seconds, passed in so tests and callers agree.

The breaker: after ``trip_after`` consecutive endpoint failures the endpoint is **open** (out of
rotation) for ``cooldown`` seconds; then it is **half-open**: the next read that ranks it lets
exactly one request through (the probe). A probe that answers closes the breaker (the endpoint
is back in rotation); one that fails opens it again for another cool-down.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["BreakerState", "EndpointHealth", "HealthSnapshot", "in_thread", "measuring_queue",
           "queued"]

T = TypeVar("T")

WINDOW = 64  # recent latencies kept for the p95
SMALL_READ = 256 * 1024  # a read up to this size measures latency; larger ones, throughput
MIN_P95_SAMPLES = 5
# One sample moves the average by at most this factor of it: a lone spike (a busy CPU, a lost
# packet) does not send traffic away, while a sustained slowdown still overtakes the next
# endpoint within a few reads (the average grows geometrically). The p95 sees every sample.
CLIP = 3.0


_queued: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar(
    "tierstore_queued", default=None)


def queued(seconds: float) -> None:
    """The read under way waited ``seconds`` in this process before its tier began to serve
    it (for one of the tier's request slots, for a thread): time that says nothing of the
    endpoint, left out of what the read measures of it. A local tier's reads queue behind
    each other in the process; counted, they made a hot tier on a fast disk look several
    times slower than S3 and sent reads of staged copies to S3."""
    holder = _queued.get()
    if holder is not None:
        holder[0] += seconds


async def in_thread(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)`` in a thread of the loop's pool; the wait for a free thread
    is :func:`queued` (the context, with the read's holder, goes along to the thread)."""
    submitted = time.perf_counter()

    def run() -> T:
        queued(time.perf_counter() - submitted)
        return func(*args, **kwargs)

    return await asyncio.to_thread(run)


@contextlib.contextmanager
def measuring_queue() -> Iterator[list[float]]:
    """Within it, tasks and threads started (they copy the context) add what they report
    through :func:`queued` to the one-element list it yields."""
    holder = [0.0]
    token = _queued.set(holder)
    try:
        yield holder
    finally:
        _queued.reset(token)


class BreakerState(enum.Enum):
    CLOSED = "closed"  # in rotation
    OPEN = "open"  # out of rotation until the cool-down ends
    HALF_OPEN = "half-open"  # cool-down over: one probe read decides

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """An endpoint's state as ``stat`` shows it."""

    latency_ms: float | None
    p95_ms: float | None
    mb_per_s: float | None
    samples: int
    state: str
    consecutive_failures: int
    failures: int


class EndpointHealth:
    """Measurements and breaker of one endpoint."""

    def __init__(self, *, alpha: float = 0.3, trip_after: int = 3, cooldown: float = 5.0):
        self.alpha = alpha
        self.trip_after = trip_after
        self.cooldown = cooldown
        self.latency: float | None = None  # seconds, EWMA
        self.throughput: float | None = None  # bytes per second, EWMA
        self.measured_at = -math.inf  # when the last sample came
        self.samples = 0
        self.warm = False  # the first answer also paid for the client session: no sample
        self.recent: deque[float] = deque(maxlen=WINDOW)
        self.consecutive_failures = 0
        self.failures = 0
        self.open_until: float | None = None  # set while open or half-open
        self.probing = False  # a probe request is in flight
        self.trips = 0

    # -- measurements ------------------------------------------------------------------------

    def _latency_sample(self, seconds: float, now: float) -> None:
        self.latency = seconds if self.latency is None else (
            self.alpha * min(seconds, CLIP * self.latency) + (1 - self.alpha) * self.latency)
        self.recent.append(seconds)
        self.samples += 1
        self.measured_at = now

    def success(self, nbytes: int, seconds: float, now: float) -> float | None:
        """A request answered in full: learn from it, and close the breaker. Returns the
        latency sample taken (None: none, as for the first answer, which also paid for
        setting up the client session and connection, or a large read)."""
        sample: float | None = None
        if not self.warm:
            self.warm = True
        elif nbytes <= SMALL_READ or self.latency is None:
            self._latency_sample(seconds, now)
            sample = seconds
        else:  # the latency estimate is taken off, at most half the read's time: one slow
            # small read (the first after the connection) left reads of 8 MiB measured at
            # 80 GB/s from S3, and reads of staged hot copies went there
            rate = nbytes / max(seconds - self.latency, seconds / 2, 1e-6)
            self.throughput = rate if self.throughput is None else (
                self.alpha * rate + (1 - self.alpha) * self.throughput)
            self.measured_at = now
        self.answered()
        return sample

    def answered(self) -> None:
        """A request answered in full: the breaker closes. Alone (not through
        :meth:`success`), for a request whose time says nothing of this endpoint: a copy,
        timed with its destination's writes."""
        self.consecutive_failures = 0
        self.open_until = None
        self.probing = False

    def censored(self, seconds: float, now: float) -> None:
        """A request cancelled after ``seconds`` because another answered first: its latency is
        at least that, which counts when it is more than the average (a slowed endpoint)."""
        if self.latency is None or seconds > self.latency:
            self._latency_sample(seconds, now)
        self.probing = False

    def failure(self, now: float, *, endpoint: bool = True) -> bool:
        """A request failed. ``endpoint``: the endpoint's fault (down, timing out, refusing),
        not the replica's (missing file, bad checksum). Returns True when this trips it open."""
        self.failures += 1
        was_probe, self.probing = self.probing, False
        if not endpoint:
            return False
        self.consecutive_failures += 1
        if was_probe or (self.open_until is None
                         and self.consecutive_failures >= self.trip_after):
            self.open_until = now + self.cooldown
            self.trips += 1
            return True
        return False

    # -- the breaker -------------------------------------------------------------------------

    def state(self, now: float) -> BreakerState:
        if self.open_until is None:
            return BreakerState.CLOSED
        if now < self.open_until or self.probing:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def begin(self, now: float) -> bool:
        """A request is about to go out; True when it is the half-open endpoint's probe."""
        if self.state(now) is BreakerState.HALF_OPEN:
            self.probing = True
            return True
        return False

    def abandon(self) -> None:
        """A request went nowhere (cancelled before any answer, not for being slow)."""
        self.probing = False

    # -- estimates ---------------------------------------------------------------------------

    def expected_latency(self, prior: float, now: float, memory: float) -> float:
        """Seconds: the measured average, fading back to ``prior`` with half-life ``memory``
        as it ages (so an endpoint once slow is tried again some time later)."""
        if self.latency is None:
            return prior
        weight = 0.5 ** (max(0.0, now - self.measured_at) / memory)
        return weight * self.latency + (1 - weight) * prior

    def p95(self) -> float | None:
        """Seconds: the 95th percentile of recent latencies (None with too few)."""
        if len(self.recent) < MIN_P95_SAMPLES:
            return None
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    def snapshot(self, now: float) -> HealthSnapshot:
        p95 = self.p95()
        return HealthSnapshot(
            latency_ms=None if self.latency is None else self.latency * 1000,
            p95_ms=None if p95 is None else p95 * 1000,
            mb_per_s=None if self.throughput is None else self.throughput / 1e6,
            samples=self.samples, state=str(self.state(now)),
            consecutive_failures=self.consecutive_failures, failures=self.failures)
