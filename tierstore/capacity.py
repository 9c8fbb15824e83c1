"""A tier's ``capacity``: the hard limit on what writes may fill it to.

A put, copy or pin that would take a tier past its capacity is refused with
:class:`~tierstore.errors.TierFull`: before its first byte when its size is known, else as soon
as its stream passes the limit (its bytes are then rolled back like any failed write). The high
and low watermarks are the soft limits: the daemon moves objects away to keep usage under them.
Only writes are refused, so a tier whose capacity was lowered, or whose pinned objects alone
exceed it, stays over it; ``tierstore plan`` says so.

Usage is what the catalog counts (ready replicas, and other processes' copies in flight), read
again when older than ``max_age`` seconds (a read scans the catalog: about 23 ms per 100,000
replicas here, eight puts' worth), plus this process's writes in flight or ended since that
read. A write is refused only on a fresh read. Copies of other processes count from their
intent (a reader's read-through fill, the daemon's staging); new objects written by other
processes count once they commit (their size is not known before), so writers of new objects
in several processes at once can pass the limit by what they have in flight.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping

from .catalog import AsyncCatalog
from .errors import TierFull

__all__ = ["Capacity", "Reservation"]


class Reservation:
    """Room one write holds on a tier: its bytes, net of what it frees there (the replica an
    overwrite replaces)."""

    def __init__(self, capacity: Capacity, tier: str, key: str, freed: int):
        self.capacity = capacity
        self.tier = tier
        self.key = key
        self.nbytes = -freed
        self.size = 0  # bytes of the write reserved so far
        self.ended: float | None = None  # when the write ended (monotonic)

    async def grow(self, nbytes: int) -> None:
        """Reserve ``nbytes`` more, or raise :class:`TierFull`."""
        limit = self.capacity.limits[self.tier]
        for fresh in (False, True):
            used = await self.capacity.used(self.tier, fresh=fresh)
            if used + nbytes <= limit:
                self.nbytes += nbytes
                self.size += nbytes
                return
        raise TierFull(self.tier, self.key, self.size + nbytes, used - self.nbytes, limit)

    async def counted(self, chunks: AsyncIterable[bytes | memoryview]
                      ) -> AsyncIterator[bytes | memoryview]:
        """``chunks``, reserving what passes beyond the size reserved up front."""
        sent = 0
        async for chunk in chunks:
            sent += len(chunk)
            if sent > self.size:
                await self.grow(sent - self.size)
            yield chunk


class Capacity:
    """The room left on each tier with a capacity, for this process's writes."""

    def __init__(self, db: AsyncCatalog, capacities: Mapping[str, int | None], *,
                 max_age: float = 1.0, owner: Callable[[], str] = lambda: ""):
        self.db = db
        self.owner = owner  # who this process's copying replicas name: it counts them itself
        self.limits = {tier: limit for tier, limit in capacities.items() if limit is not None}
        self.max_age = max_age
        self._counted: dict[str, int] = {}  # bytes per tier at the last read of the catalog
        self._read_at = -math.inf
        self._held: list[Reservation] = []  # in flight, or ended since the last read

    async def used(self, tier: str, *, fresh: bool = False) -> int:
        """Bytes on ``tier``: the catalog's (read again if older than ``max_age``, or if
        ``fresh``) and this process's writes it may not count yet."""
        if fresh or time.monotonic() - self._read_at > self.max_age:
            started = time.monotonic()
            usage = await self.db.usage(exclude_owner=self.owner())
            self._counted = {u.tier: u.bytes + u.in_flight for u in usage}
            self._read_at = started
            self._held = [r for r in self._held if r.ended is None or r.ended >= started]
        return self._counted.get(tier, 0) + sum(r.nbytes for r in self._held if r.tier == tier)

    async def room(self, tier: str) -> int | None:
        """Bytes ``tier`` may still take (None: it has no capacity), read fresh."""
        if tier not in self.limits:
            return None
        return max(0, self.limits[tier] - await self.used(tier, fresh=True))

    @contextlib.asynccontextmanager
    async def reserve(self, tier: str, key: str, size: int | None, *, freed: int = 0
                      ) -> AsyncIterator[Reservation | None]:
        """Hold room for a write of ``size`` bytes (None: unknown, reserved as it streams
        through :meth:`Reservation.counted`) of ``key`` to ``tier``, which frees ``freed``
        there, for as long as the block runs; None for a tier without a capacity."""
        if tier not in self.limits:
            yield None
            return
        reservation = Reservation(self, tier, key, freed)
        self._held.append(reservation)
        try:
            await reservation.grow(size or 0)
            yield reservation
        except BaseException:  # refused or failed: rolled back, nothing to count
            self._held.remove(reservation)
            raise
        reservation.ended = time.monotonic()  # counted until the catalog counts it
