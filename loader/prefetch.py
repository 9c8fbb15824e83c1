"""Read-ahead of whole shards, bounded by bytes and paced by the consumer.

A :class:`ShardPrefetcher` runs on the process's loader loop. It walks the shards a reader
will need, in the order it needs them, and starts reading each as soon as its read-ahead
window has room for it: how much room is the :class:`~.readahead.DepthController`'s call
(adaptive by default: as far ahead as the measured consumption rate and read latency need,
never beyond the byte budget). Each shard is read as several ranged reads of known offsets (no
size probe), all shards' reads bounded together by ``max_reads``; a read that fails for a
passing reason is retried with backoff (:mod:`.retry`) after the store has tried every
replica. The consumer takes shards in order from a queue as they land (:mod:`.landing`),
takes their samples as their bytes are checked, and gives their room back to the window.
Nothing unchecked reaches it: a shard's blocks as they match the index's block checksums, the
whole shard once it matches the index's checksum; a mismatch re-reads it through the store's
verified, failing-over path, and a shard that stays wrong is a
:class:`~tierstore.loader.errors.CorruptShard`, never bytes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import queue
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from tierstore.checksum import checksum
from tierstore.errors import ChecksumMismatch, NoReadableReplica, TierstoreError
from tierstore.store import Store

from .buffers import ShardBuffers
from .errors import CorruptShard, ShardError
from .format import Buffer
from .index import ShardEntry
from .landing import Landing
from .readahead import START_SHARDS, DepthController, PrefetchStats, Read, ReadAhead
from .retry import NEVER, Backoff, retrying
from .runtime import LoopThread

__all__ = ["PrefetchStats", "ShardPrefetcher", "cost", "read_shard"]

T = TypeVar("T")
PART_SIZE = 8 * 2**20  # one ranged read; a shard of 64 MiB is 8 reads in flight
HEAD_READS = 3  # blocks of a shard its consumer waits for that are read at once
_UNDECODED = "none of its samples were decoded past the blocks that match the index"
SHARD_OVERHEAD = 4096  # what a shard costs the budget besides its bytes: empty shards count
Latency = Callable[[float], None]
Fetch = Callable[[ShardEntry, Latency, Landing], Awaitable[Buffer]]
"""``await fetch(shard, on_latency, landing)``: the shard's verified bytes; ``on_latency(seconds)``
reports how long reading it took, ``landing`` follows its parts (:func:`read_shard` does both)."""


class _Window:
    """What is read ahead now (bytes and shards, being read or read and not yet taken back),
    and the producer waiting for room. Lives on the loader loop only."""

    def __init__(self, depth: DepthController, stats: PrefetchStats):
        self.depth = depth
        self.stats = stats
        self.held = 0
        self.shards = 0
        self._room = asyncio.Event()

    def fits(self, nbytes: int) -> bool:
        # an item larger than the whole limit goes alone: it slows reading, never stops it
        return self.shards == 0 or (self.held + nbytes <= self.depth.limit()
                                    and self.shards < self.depth.max_shards)

    async def acquire(self, nbytes: int) -> None:
        while not self.fits(nbytes):
            self._room.clear()
            await self._room.wait()
        self.held += nbytes
        self.shards += 1
        self._publish()

    def release(self, nbytes: int) -> None:
        self.held -= nbytes
        self.shards -= 1
        self._publish()
        self.poke()

    def poke(self) -> None:
        """The limit may have changed: look again."""
        self._room.set()

    def _publish(self) -> None:
        stats = self.stats
        stats.held_bytes, stats.held_shards = self.held, self.shards
        stats.peak_bytes = max(stats.peak_bytes, self.held)
        stats.peak_shards = max(stats.peak_shards, self.shards)


def cost(shard: ShardEntry) -> int:
    """What holding ``shard`` costs the read-ahead budget."""
    return shard.size + SHARD_OVERHEAD


async def read_shard(store: Store, shard: ShardEntry, *, reads: asyncio.Semaphore,
                     part_size: int = PART_SIZE, stats: PrefetchStats | None = None,
                     backoff: Backoff = NEVER, on_latency: Latency | None = None,
                     buffers: ShardBuffers | None = None, landing: Landing | None = None
                     ) -> Buffer:
    """The whole of ``shard``, verified against the index: ranged reads in parallel, then,
    on a checksum mismatch, one verified whole read that fails over between replicas.

    A read failing for a passing reason is tried again as ``backoff`` says. ``on_latency``
    is told how long the shard took, from its first read getting one of the ``reads`` slots
    to its bytes being verified. A shard read in parts lands in memory from ``buffers`` when
    given (a view of a reused buffer), else in a new ``bytearray``. ``landing`` is told of
    each part as it lands (its consumer may start on the checked ones: :mod:`.landing`); a
    shard its consumer is already waiting for (``landing.head``) is read in blocks, in
    order, a few at a time, so that its first samples come first.
    """
    stats = stats if stats is not None else PrefetchStats()
    began: list[float] = []

    def retried(exc: BaseException, delay: float) -> None:
        stats.retries += 1

    async def slot(read: Callable[[], Awaitable[T]]) -> T:
        async def once() -> T:
            async with reads:
                if not began:
                    began.append(time.perf_counter())
                stats.reads += 1
                return await read()

        return await retrying(once, backoff, on_retry=retried)

    async def part(lo: int, hi: int) -> bytes:
        return await slot(lambda: store.cat(shard.key, lo, hi))

    head = landing is not None and landing.head and bool(shard.blocks)
    step = shard.block_size if head else part_size
    order = asyncio.Semaphore(HEAD_READS) if head else contextlib.nullcontext()

    async def into(whole: memoryview, lo: int, hi: int) -> None:
        # each part lands in its place as it arrives: a shard is held once, not as its
        # parts and then their copy
        async with order:
            await slot(lambda: store.cat_into(shard.key, whole[lo:hi], lo))
        if landing is not None:
            landing.landed(lo, hi)

    try:
        if shard.size == 0:  # nothing to read (a Zarr chunk never written, an empty file)
            data: Buffer = b""
        elif shard.size <= step:
            data = await part(0, shard.size)
        else:
            whole = (memoryview(bytearray(shard.size)) if buffers is None
                     else buffers.take(shard.size))
            if landing is not None:
                landing.begin(whole)
            await asyncio.gather(*(into(whole, lo, min(lo + step, shard.size))
                                   for lo in range(0, shard.size, step)))
            data = whole
        if len(data) != shard.size or checksum(data) != shard.checksum:
            stats.rereads.append(shard.key)
            data = await retrying(lambda: _verified(store, shard), backoff, on_retry=retried)
    except ShardError:
        raise
    except (TierstoreError, OSError) as exc:
        raise ShardError(f"cannot read shard {shard.key!r}: {exc}", shard=shard.key) from exc
    if on_latency is not None and began:
        on_latency(time.perf_counter() - began[0])
    stats.shards += 1
    stats.bytes += len(data)
    return data


async def _verified(store: Store, shard: ShardEntry) -> bytes:
    try:
        data = await store.cat(shard.key, verify=True)
    except NoReadableReplica as exc:
        if any(isinstance(e, ChecksumMismatch) for _, e in exc.failures):
            raise CorruptShard(f"shard {shard.key!r} is corrupt: {exc}; {_UNDECODED}",
                               shard=shard.key) from exc
        raise
    if len(data) != shard.size or checksum(data) != shard.checksum:
        raise CorruptShard(
            f"shard {shard.key!r} does not match the dataset index: the store holds "
            f"{len(data)} bytes with checksum {checksum(data)}, the index expects "
            f"{shard.size} bytes with checksum {shard.checksum} (was it replaced after the "
            f"index was written? rewrite the index); {_UNDECODED}", shard=shard.key)
    return data


class ShardPrefetcher:
    """Reads ``shards`` ahead of their consumer, in order, as far ahead as ``read_ahead``
    says and never holding more than ``budget`` bytes.

    Parameters
    ----------
    loop
        The process's loader loop.
    fetch
        ``await fetch(shard, on_latency)``: the shard's verified bytes (:func:`read_shard`).
    shards
        ``(position in the index, entry)`` in the order the consumer needs them.
    budget
        Bytes read ahead at most (being read, or handed over and not yet released), each
        shard counted with a small overhead so that many tiny shards are bounded too.
    stats
        Where to count; :attr:`stats` either way.
    read_ahead
        The depth policy (:data:`~.readahead.ReadAhead`): adaptive by default.
    """

    def __init__(self, loop: LoopThread, fetch: Fetch, shards: Sequence[tuple[int, ShardEntry]],
                 budget: int, stats: PrefetchStats | None = None, *,
                 read_ahead: ReadAhead = "adaptive"):
        self._loop = loop
        self._fetch = fetch
        self._shards = list(shards)
        self.started = 0  # shards whose read has begun (read by the consumer's side too)
        self.stats = stats if stats is not None else PrefetchStats()
        first = cost(self._shards[0][1]) if self._shards else SHARD_OVERHEAD
        self.depth = DepthController(read_ahead, budget, START_SHARDS * first, self.stats)
        self._ready: queue.Queue[tuple[int, Landing] | None] = queue.Queue()
        self._tasks: set[asyncio.Task[Buffer]] = set()
        self._early: set[Landing] = set()  # released by the consumer before their read ended
        self._window: _Window | None = None
        self._handed: tuple[float, Landing] | None = None  # the last shard handed out, when
        self._producer = loop.submit(self._produce())

    async def _produce(self) -> None:
        window = self._window = _Window(self.depth, self.stats)
        for position, shard in self._shards:
            await window.acquire(cost(shard))
            landing = Landing(shard, head=self.started == 0)
            self.started += 1
            read = self.depth.start()
            task = asyncio.ensure_future(self._fetch(
                shard, functools.partial(setattr, read, "latency"), landing))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._hand_over, landing=landing,
                                                     read=read, nbytes=cost(shard)))
            self._ready.put((position, landing))
        self._ready.put(None)

    def _hand_over(self, task: asyncio.Task[Buffer], landing: Landing, read: Read,
                   nbytes: int) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            self.depth.finish(read, None)
            landing.fail(ShardError(f"the read of shard {landing.shard.key!r} was cancelled",
                                    shard=landing.shard.key))
        elif (exc := task.exception()) is not None:
            self.depth.finish(read, None)
            landing.fail(exc)
        else:
            self.depth.finish(read, nbytes)  # in the window's units, as the consumer's pace
            landing.finish(task.result())
        if landing in self._early:
            self._early.discard(landing)
            self._release(landing)
        if self._window is not None:
            self._window.poke()

    def next(self) -> tuple[int, Landing]:
        """The next shard, as it lands (:meth:`Landing.wait` for its bytes, which raises
        the error that reading it raised), or :class:`StopIteration` after the last."""
        asked = time.perf_counter()
        if self._handed is not None:  # the consumer's pace: the last shard, over its time
            handed, last = self._handed  # less what it waited for its bytes
            self.depth.consumed(cost(last.shard), asked - handed - last.waited)
        position, landing = self._take()
        self._stalled(time.perf_counter() - asked)
        self._handed = (time.perf_counter(), landing)
        return position, landing

    def _stalled(self, waited: float) -> None:
        self.stats.stall_s += waited
        self.stats.stalls += waited > 1e-3

    def _take(self) -> tuple[int, Landing]:
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
        return item

    def release(self, landing: Landing) -> None:
        """Give back the room of a shard the consumer has finished with (once its read is
        over: a consumer that needed only its first samples may be done before it is)."""
        self._stalled(landing.waited)
        landing.close()
        self._loop.call_soon(self._release, landing)

    def _release(self, landing: Landing) -> None:
        if not landing.done:
            self._early.add(landing)  # released by _hand_over
        elif self._window is not None:
            self._window.release(cost(landing.shard))

    def shutdown(self) -> None:
        """Stop reading ahead: cancel the producer and every read in flight."""
        self._producer.cancel()

        async def cancel_all() -> None:
            for task in list(self._tasks):
                task.cancel()

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            self._loop.submit(cancel_all()).result(timeout=5)
