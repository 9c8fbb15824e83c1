"""How far ahead of its consumer a prefetcher reads.

Reading too little ahead starves the consumer whenever a read takes longer than consuming
one shard; reading too far ahead holds memory that buys nothing. By Little's law the bytes
that must be in flight to hide the read latency are the rate at which they are used times
the latency::

    depth = base read latency s x min(consumption bytes/s x safety, delivery bytes/s x gain)

so the adaptive policy measures those and keeps that many bytes read ahead, never more than
the byte budget, and always at least the next shard. The consumption term is Little's law
with headroom; the delivery term keeps a consumer faster than the tier from asking for more
than deeper reading has been seen to deliver, while leaving room to find out whether it
would. The measurements:

- **Consumption rate**: bytes of shards taken per second of the consumer's own time, the time
  between handing a shard over and being asked for the next. Time the consumer spent waiting
  for a shard is left out: a starved consumer must not look slow, or the depth that starves
  it would be kept.
- **Delivery rate**: for each shard, the bytes that finished reading while it was being read,
  over the time it took; the best of the recent ones. A consumer faster than the tier can
  serve is paced by what the tier delivers, not by its own appetite.
- **Base read latency**: the median time of recent shard reads that started with few shards
  being read (from the moment a shard's first ranged read got a read slot to its bytes being
  verified), or of all recent reads where that is less. A saturated server answers more
  slowly the more is asked of it at once; Little's law fed with that latency would ask for
  more depth, which would slow it further, up to the budget. The base latency is what a read
  costs unqueued; when the tier itself slows down the depth shrinks, reads start with few in
  flight again, and the base follows; a slow start (connections being opened) is forgotten
  as soon as later reads are faster.

(The same idea as BBR's congestion control: bottleneck rate times minimum round trip.) The
first measurements are the least representative (connections being opened, a DataLoader
filling its own prefetch queue at once), and shards already asked for cannot be taken back,
so the depth grows as TCP's slow start does, by at most each finished read's bytes (at most
doubling per read latency), and shrinks at once.

Fixed policies are kept for comparison: a number of shards, or as far as the budget allows.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DepthController", "PrefetchStats", "Read", "ReadAhead", "check_read_ahead"]

ReadAhead = int | Literal["adaptive", "budget"]
"""``"adaptive"``: Little's law; ``"budget"``: as far as the byte budget allows; an int ``n``:
at most ``n`` shards read or being read ahead of the consumer."""

SAFETY = 2.0  # headroom over the measured need: latency and rate both vary from shard to shard
PROBE = 2.0  # gain over what the reads deliver at the present depth, plus one read, so that
# the depth grows while deeper reading delivers more: at depth D reads deliver about
# D / latency, so the target grows while reads take less than PROBE times their unqueued
# latency (the one read more keeps a depth of a read or two growing, where the ratio is
# rough). Where the server is the bottleneck, (PROBE - 1) / PROBE of the depth waits there
# and buys nothing but memory (on Ceph with half the dataset hot: peak PSS 719-748 MiB with
# a gain of 3, 692 with this, at the same samples/s; with all of it hot, no change)
START_SHARDS = 1  # the adaptive depth before anything is measured, in shards: the first
# read goes alone (it opens the connections; several at once would each open their own)
QUIET = 2  # a read that started with at most this many shards being read measures base latency
WINDOW = 8  # recent reads the latency and delivery estimates look at
WEIGHT = 0.25  # weight of the newest measurement in the consumer's moving average


def check_read_ahead(value: object) -> ReadAhead:
    """``value`` if it is a read-ahead policy, else a ValueError saying what is."""
    if value in ("adaptive", "budget") or (
            isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError(f"read_ahead must be 'adaptive', 'budget' or a number of shards >= 1, "
                     f"not {value!r}")


@dataclass
class PrefetchStats:
    """What a prefetcher did and where its read-ahead stands.

    Read on the consumer's side; updated on the loader loop and by the consumer.

    Attributes
    ----------
    shards, bytes, reads : int
        Shards read, their bytes, and the ranged reads that read them.
    peak_bytes : int
        Most bytes held at once: being read, or read and not yet released.
    rereads : list of str
        Shards re-read after a bad checksum.
    retries : int
        Reads tried again after a passing failure.
    read_ahead : str, default "adaptive"
        The policy: ``adaptive``, ``budget``, or ``"<n> shards"``.
    budget_bytes : int
        Bytes read ahead at most.
    start_depth_bytes : int
        The adaptive depth before anything was measured.
    depth_bytes : int
        How far ahead it reads now (bytes being read or read, not taken).
    max_depth_bytes : int
        The deepest it read ahead.
    held_bytes, held_shards : int
        Bytes (and shards) being read or read and not yet released, now.
    peak_shards : int
        Most shards held at once.
    latency_s : float
        The base read latency of a shard, in seconds.
    consumption_bytes_per_s : float
        A moving average of the consumer's pace.
    delivery_bytes_per_s : float
        The best recent pace of the reads.
    stall_s : float
        Seconds the consumer waited for a shard.
    stalls : int
        Shards the consumer had to wait for.
    busy_s : float
        Seconds the consumer spent between shards.
    due_samples : int
        Samples read when due from a file on this node's disk (:mod:`.samples`).
    """

    shards: int = 0
    bytes: int = 0
    reads: int = 0
    peak_bytes: int = 0  # most bytes held at once: being read, or read and not yet released
    rereads: list[str] = field(default_factory=list)  # shards re-read after a bad checksum
    retries: int = 0  # reads tried again after a passing failure
    read_ahead: str = "adaptive"  # the policy: adaptive, budget, or "<n> shards"
    budget_bytes: int = 0
    start_depth_bytes: int = 0  # the adaptive depth before anything was measured
    depth_bytes: int = 0  # how far ahead it reads now (bytes being read or read, not taken)
    max_depth_bytes: int = 0
    held_bytes: int = 0  # bytes being read or read and not yet released, now
    held_shards: int = 0
    peak_shards: int = 0
    latency_s: float = 0.0  # base read latency of a shard
    consumption_bytes_per_s: float = 0.0  # moving average of the consumer's pace
    delivery_bytes_per_s: float = 0.0  # best recent pace of the reads
    stall_s: float = 0.0  # time the consumer waited for a shard
    stalls: int = 0  # shards the consumer had to wait for
    busy_s: float = 0.0  # time the consumer spent between shards
    due_samples: int = 0  # samples read when due from a file on this node's disk (.samples)

    def snapshot(self) -> PrefetchStats:
        """Copy the statistics as they are now.

        Returns
        -------
        PrefetchStats
            A copy that later updates do not touch (to send along with a batch).
        """
        return dataclasses.replace(self, rereads=list(self.rereads))

    @property
    def stall_fraction(self) -> float:
        """The share of the consumer's time spent waiting for shards."""
        total = self.stall_s + self.busy_s
        return self.stall_s / total if total > 0 else 0.0


@dataclass
class Read:
    """One shard read, as the controller follows it."""

    started: float  # time.perf_counter() when the read was started
    delivered: int  # bytes the prefetcher had read before it started
    crowd: int  # shards being read when it started, itself included
    latency: float | None = None  # its read time, when the reader reports one


class DepthController:
    """The read-ahead limit of one prefetcher, in bytes and in shards.

    Parameters
    ----------
    policy
        See :data:`ReadAhead`.
    budget
        Bytes read ahead at most, whatever the policy.
    start
        The adaptive depth until the first read and the consumer's pace are measured.
    stats
        Where the limit and its measurements are published.
    """

    def __init__(self, policy: ReadAhead, budget: int, start: int,
                 stats: PrefetchStats | None = None, *, safety: float = SAFETY):
        self.policy = check_read_ahead(policy)
        self.budget = max(1, budget)
        self.safety = safety
        self.stats = stats if stats is not None else PrefetchStats()
        self._reading = self._finished = 0
        self._delivered = 0
        self._last_read = 0  # the bytes of the last read that finished
        self._quiet: deque[float] = deque(maxlen=WINDOW)  # latencies of uncrowded reads
        self._recent: deque[float] = deque(maxlen=WINDOW)  # latencies of all reads
        self._rates: deque[float] = deque(maxlen=WINDOW)  # delivery-rate samples
        self._bytes = self._busy = 0.0  # the consumer's decayed sums: pace = bytes / busy
        self._room = max(1, start)  # the most the depth may be now: slow start
        self.stats.read_ahead = policy if isinstance(policy, str) else f"{policy} shards"
        self.stats.budget_bytes = self.budget
        self.stats.start_depth_bytes = min(self.budget, max(1, start))
        self._publish(self.stats.start_depth_bytes if policy == "adaptive" else self.budget)

    @property
    def max_shards(self) -> int | float:
        """Shards held ahead at most (fixed policies); the bytes limit rules otherwise."""
        return self.policy if isinstance(self.policy, int) else math.inf

    def limit(self) -> int:
        """Bytes that may be read ahead now."""
        return self.stats.depth_bytes

    def start(self) -> Read:
        """A shard read begins."""
        self._reading += 1
        return Read(time.perf_counter(), self._delivered, self._reading)

    def finish(self, read: Read, nbytes: int | None) -> None:
        """A shard read ended, having cost ``nbytes`` of the window (None: it failed or was
        cancelled)."""
        self._reading -= 1
        if nbytes is None:
            return
        lifetime = max(time.perf_counter() - read.started, 1e-6)
        self._delivered += nbytes
        self._last_read = nbytes
        self._room += nbytes
        self._rates.append((self._delivered - read.delivered) / lifetime)
        latency = read.latency if read.latency is not None else lifetime
        if self._finished:  # the first read paid for opening connections: not a latency
            self._recent.append(latency)
            if read.crowd <= QUIET:
                self._quiet.append(latency)
        self._finished += 1
        if self._recent:
            recent = statistics.median(self._recent)  # keeps a slow start from sticking
            self.stats.latency_s = min(statistics.median(self._quiet), recent) \
                if self._quiet else recent
        self.stats.delivery_bytes_per_s = max(self._rates)
        self._update()

    def consumed(self, nbytes: int, busy: float) -> None:
        """The consumer spent ``busy`` seconds on a shard of ``nbytes`` before asking for the
        next one."""
        self._bytes = (1 - WEIGHT) * self._bytes + WEIGHT * nbytes
        self._busy = (1 - WEIGHT) * self._busy + WEIGHT * max(busy, 1e-6)
        self.stats.busy_s += busy
        self.stats.consumption_bytes_per_s = self._bytes / self._busy
        self._update()

    def _update(self) -> None:
        if self.policy != "adaptive" or not self._recent or not self._busy:
            return
        stats = self.stats
        want = min(stats.latency_s * stats.consumption_bytes_per_s * self.safety,
                   stats.latency_s * stats.delivery_bytes_per_s * PROBE + self._last_read)
        self._room = int(min(self.budget, want, self._room))
        self._publish(self._room)

    def _publish(self, depth: int) -> None:
        self.stats.depth_bytes = depth
        self.stats.max_depth_bytes = max(self.stats.max_depth_bytes, depth)
