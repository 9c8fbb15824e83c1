"""Read-ahead of whole shards, bounded by bytes.

A :class:`ShardPrefetcher` runs on the process's loader loop. It walks the shards a reader
will need, in the order it needs them, and starts reading each as soon as the
:class:`ByteBudget` has room for it; each shard is read as several ranged reads of known
offsets (no size probe), all shards' reads bounded together by ``max_reads``. The consumer
takes finished shards in order from a queue, opens them, and gives their bytes back to the
budget. Every shard is verified against the index's checksum before the consumer sees it; a
mismatch re-reads it through the store's verified, failing-over path, and a shard that stays
wrong is a :class:`~tierstore.loader.errors.CorruptShard`, never bytes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import queue
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from tierstore.checksum import checksum
from tierstore.errors import ChecksumMismatch, NoReadableReplica, TierstoreError
from tierstore.store import Store

from .errors import CorruptShard, ShardError
from .format import Buffer
from .index import ShardEntry
from .runtime import LoopThread

__all__ = ["ByteBudget", "PrefetchStats", "ShardPrefetcher", "cost", "read_shard"]

PART_SIZE = 8 * 2**20  # one ranged read; a shard of 64 MiB is 8 reads in flight
SHARD_OVERHEAD = 4096  # what a shard costs the budget besides its bytes: empty shards count
Fetch = Callable[[ShardEntry], Awaitable[Buffer]]


@dataclass
class PrefetchStats:
    """What a prefetcher did (read on the consumer's side; updated on the loop)."""

    shards: int = 0
    bytes: int = 0
    reads: int = 0
    peak_bytes: int = 0  # most bytes held at once: being read, or read and not yet released
    rereads: list[str] = field(default_factory=list)  # shards re-read after a bad checksum


class ByteBudget:
    """Bytes held at once, at most ``capacity``; a single item larger than the whole budget
    is let through alone, so an oversized shard slows reading down instead of stopping it."""

    def __init__(self, capacity: int, stats: PrefetchStats | None = None):
        self.capacity = max(1, capacity)
        self.held = 0
        self.stats = stats or PrefetchStats()
        self._changed = asyncio.Condition()

    async def acquire(self, nbytes: int) -> None:
        async with self._changed:
            await self._changed.wait_for(
                lambda: self.held == 0 or self.held + nbytes <= self.capacity)
            self.held += nbytes
            self.stats.peak_bytes = max(self.stats.peak_bytes, self.held)

    async def release(self, nbytes: int) -> None:
        async with self._changed:
            self.held -= nbytes
            self._changed.notify_all()


def cost(shard: ShardEntry) -> int:
    """What holding ``shard`` costs the read-ahead budget."""
    return shard.size + SHARD_OVERHEAD


async def read_shard(store: Store, shard: ShardEntry, *, reads: asyncio.Semaphore,
                     part_size: int = PART_SIZE, stats: PrefetchStats | None = None
                     ) -> Buffer:
    """The whole of ``shard``, verified against the index: ranged reads in parallel, then,
    on a checksum mismatch, one verified whole read that fails over between replicas."""
    stats = stats if stats is not None else PrefetchStats()

    async def part(lo: int, hi: int) -> bytes:
        async with reads:
            stats.reads += 1
            return await store.cat(shard.key, lo, hi)

    try:
        if shard.size == 0:  # nothing to read (a Zarr chunk never written, an empty file)
            data: Buffer = b""
        else:
            parts = await asyncio.gather(*(part(lo, min(lo + part_size, shard.size))
                                           for lo in range(0, shard.size, part_size)))
            data = parts[0] if len(parts) == 1 else b"".join(parts)
        if len(data) != shard.size or checksum(data) != shard.checksum:
            stats.rereads.append(shard.key)
            data = await _verified(store, shard)
    except ShardError:
        raise
    except (TierstoreError, OSError) as exc:
        raise ShardError(f"cannot read shard {shard.key!r}: {exc}", shard=shard.key) from exc
    stats.shards += 1
    stats.bytes += len(data)
    return data


async def _verified(store: Store, shard: ShardEntry) -> bytes:
    try:
        data = await store.cat(shard.key, verify=True)
    except NoReadableReplica as exc:
        if any(isinstance(e, ChecksumMismatch) for _, e in exc.failures):
            raise CorruptShard(f"shard {shard.key!r} is corrupt: {exc}; none of its samples "
                               "were decoded", shard=shard.key) from exc
        raise
    if len(data) != shard.size or checksum(data) != shard.checksum:
        raise CorruptShard(
            f"shard {shard.key!r} does not match the dataset index: the store holds "
            f"{len(data)} bytes with checksum {checksum(data)}, the index expects "
            f"{shard.size} bytes with checksum {shard.checksum} (was it replaced after the "
            "index was written? rewrite the index); none of its samples were decoded",
            shard=shard.key)
    return data


class ShardPrefetcher:
    """Reads ``shards`` ahead of their consumer, in order, holding at most ``budget`` bytes.

    Parameters
    ----------
    loop
        The process's loader loop.
    fetch
        ``await fetch(shard)``: the shard's verified bytes (:func:`read_shard`).
    shards
        ``(position in the index, entry)`` in the order the consumer needs them.
    budget
        Bytes read ahead at most (being read, or handed over and not yet released), each
        shard counted with a small overhead so that many tiny shards are bounded too.
    """

    def __init__(self, loop: LoopThread, fetch: Fetch, shards: Sequence[tuple[int, ShardEntry]],
                 budget: int, stats: PrefetchStats | None = None):
        self._loop = loop
        self._fetch = fetch
        self._shards = list(shards)
        self.stats = stats if stats is not None else PrefetchStats()
        self._budget = budget
        self._ready: queue.Queue[tuple[int, ShardEntry, concurrent.futures.Future[Buffer]]
                                 | None] = queue.Queue()
        self._tasks: set[asyncio.Task[Buffer]] = set()
        self._bytes: ByteBudget | None = None
        self._producer = loop.submit(self._produce())

    async def _produce(self) -> None:
        self._bytes = ByteBudget(self._budget, self.stats)
        for position, shard in self._shards:
            await self._bytes.acquire(cost(shard))
            task = asyncio.ensure_future(self._fetch(shard))
            self._tasks.add(task)
            done: concurrent.futures.Future[Buffer] = concurrent.futures.Future()
            task.add_done_callback(functools.partial(self._hand_over, done=done))
            self._ready.put((position, shard, done))
        self._ready.put(None)

    def _hand_over(self, task: asyncio.Task[Buffer], done: concurrent.futures.Future[Buffer]
                   ) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            done.cancel()
        elif (exc := task.exception()) is not None:
            done.set_exception(exc)
        else:
            done.set_result(task.result())

    def next(self) -> tuple[int, ShardEntry, Buffer]:
        """The next shard, blocking until it is read; raises the error that reading it
        raised, or :class:`StopIteration` after the last."""
        while True:
            try:
                item = self._ready.get(timeout=0.1)
                break
            except queue.Empty:
                if self._producer.cancelled():
                    raise StopIteration from None
                if self._producer.done():
                    self._producer.result()  # re-raises if it crashed (else None is queued)
        if item is None:
            self._ready.put(None)
            raise StopIteration
        position, shard, done = item
        return position, shard, done.result()

    def release(self, shard: ShardEntry) -> None:
        """Give back the budget of a shard the consumer has finished with."""
        if self._bytes is not None:
            budget, nbytes = self._bytes, cost(shard)
            self._loop.call_soon(lambda: asyncio.ensure_future(budget.release(nbytes)))

    def shutdown(self) -> None:
        """Stop reading ahead: cancel the producer and every read in flight."""
        self._producer.cancel()

        async def cancel_all() -> None:
            for task in list(self._tasks):
                task.cancel()

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            self._loop.submit(cancel_all()).result(timeout=5)
