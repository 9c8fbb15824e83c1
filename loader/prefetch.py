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

A tar shard with block checksums is read block by block instead (a *parted* shard,
:mod:`.landing`): each block takes room in the window as it is read and gives it back once its
consumer has passed it and the hot-tier fill has written it, so the window holds the blocks
between the consumer and the read-ahead, and its depth follows a block's read latency rather
than a whole shard's.

A shard whose best replica is a file on this node's disk, of a format whose samples each have
their own range and checksum, is not read ahead at all: its file is opened and handed over
(``Landing.local``), and its consumer reads each sample when it is due (:mod:`.samples`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import queue
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tierstore.checksum import checksum
from tierstore.errors import ChecksumMismatch, NoReadableReplica, TierstoreError
from tierstore.store import Store

from .buffers import ShardBuffers
from .errors import CorruptShard, ShardError
from .fill import HotFill
from .formats.base import Buffer
from .index import ShardEntry
from .landing import Landing
from .readahead import START_SHARDS, DepthController, PrefetchStats, Read, ReadAhead
from .retry import NEVER, Backoff, retrying
from .runtime import LoopThread
from .samples import LocalShard

__all__ = ["PrefetchStats", "ShardPrefetcher", "ShardReads", "cost", "read_shard"]

T = TypeVar("T")
PART_SIZE = 8 * 2**20  # one ranged read; a shard of 64 MiB is 8 reads in flight
HEAD_READS = 3  # blocks of a shard its consumer waits for that are read at once
LOCAL_OPEN = 64  # shards on this node's disk open ahead of their consumer at most
_UNDECODED = "none of its samples were decoded past the blocks that match the index"
SHARD_OVERHEAD = 4096  # what a shard costs the budget besides its bytes: empty shards count
Latency = Callable[[float], None]


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
        return self.held == 0 or (self.held + nbytes <= self.depth.limit()
                                  and self.shards < self.depth.max_shards)

    async def acquire(self, nbytes: int, shards: int = 1,
                      urgent: Callable[[], bool] = lambda: False) -> None:
        """Room for ``nbytes`` (and ``shards`` more shards: a parted shard's blocks take
        room as bytes only); at once when ``urgent()``: the consumer waits for these bytes
        (the room is held by blocks it still needs)."""
        while not (self.fits(nbytes) or urgent()):
            self._room.clear()
            await self._room.wait()
        self.held += nbytes
        self.shards += shards
        self._publish()

    def release(self, nbytes: int, shards: int = 1) -> None:
        self.held -= nbytes
        self.shards -= shards
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


def _wanted(landing: Landing, lo: int) -> bool:
    return lo < landing.wanted


def _failure(landing: Landing, exc: BaseException | None) -> BaseException:
    """What the consumer of ``landing`` gets for a read that raised ``exc`` (None or a
    cancellation: that the read was cancelled)."""
    if exc is None or isinstance(exc, asyncio.CancelledError):
        return ShardError(f"the read of shard {landing.shard.key!r} was cancelled",
                          shard=landing.shard.key)
    return exc


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


@dataclass
class ShardReads:
    """How a reader reads its shards: from ``store``, at most ``reads`` ranged reads in flight,
    each of ``part_size``, a passing failure tried again as ``backoff`` says, counted in
    ``stats``; whole shards into ``buffers`` and blocks into ``blocks``; each shard read from
    a slower tier kept on the hot tier through ``fills`` (:mod:`.fill`), when given."""

    store: Store
    reads: asyncio.Semaphore
    stats: PrefetchStats
    part_size: int = PART_SIZE
    backoff: Backoff = NEVER
    buffers: ShardBuffers | None = None
    blocks: ShardBuffers | None = None
    fills: HotFill | None = None

    def sampled(self, shard: ShardEntry, ranged: bool) -> bool:
        """Whether ``shard``'s samples can be read each on its own, when due, from a file
        on this node's disk (:mod:`.samples`): a format whose samples each lie in their own
        range (``ranged``), with a checksum for each."""
        return ranged and bool(shard.sample_checksums) and shard.offsets is not None

    def parted(self, shard: ShardEntry, ranged: bool) -> bool:
        """Whether ``shard`` is read in blocks, each let go once used (:mod:`.landing`): a
        shard of several blocks with their checksums, of a format whose samples each lie in
        their own range (``ranged``)."""
        return (ranged and shard.offsets is not None and len(shard.blocks) > 1
                and shard.block_size > 0)

    async def whole(self, shard: ShardEntry, on_latency: Latency, landing: Landing) -> Buffer:
        """The whole of ``shard``, verified (:func:`read_shard`), kept hot when it came from
        a slower tier, one fetch for the node."""
        def read() -> Awaitable[Buffer]:
            return read_shard(self.store, shard, reads=self.reads, part_size=self.part_size,
                              stats=self.stats, backoff=self.backoff, on_latency=on_latency,
                              buffers=self.buffers, landing=landing)

        return await (read() if self.fills is None else self.fills.fetch(shard, read))

    async def claim(self, landing: Landing) -> Callable[[], Awaitable[None]]:
        """Claim a parted shard's hot replica before its blocks are read (its blocks are
        written there as they are checked: :meth:`HotFill.stream`); what to await once the
        read is over (a claim that only marked the fetch is given back)."""
        if self.fills is None or (claim := await self.fills.claim(landing.shard)) is None:
            return _nothing
        if claim.fills:
            self.fills.stream(claim, landing)
            return _nothing
        return claim.release

    async def block(self, shard: ShardEntry, lo: int, into: memoryview) -> float:
        """Read bytes ``[lo, lo + len(into))`` of ``shard`` into ``into``; seconds the read
        took from getting its slot."""
        async def once() -> float:
            async with self.reads:
                began = time.perf_counter()
                self.stats.reads += 1
                got = await self.store.cat_into(shard.key, into, lo)
                if got != len(into):
                    raise ShardError(f"shard {shard.key!r} ended at byte {lo + got}, the index "
                                     f"says {shard.size}", shard=shard.key)
                return time.perf_counter() - began

        try:
            return await retrying(once, self.backoff, on_retry=self._retried)
        except ShardError:
            raise
        except (TierstoreError, OSError) as exc:
            raise ShardError(f"cannot read shard {shard.key!r}: {exc}", shard=shard.key) from exc

    async def reread(self, shard: ShardEntry) -> bytes:
        """``shard`` whole through the store's verified, failing-over path (a block did not
        match the index)."""
        self.stats.rereads.append(shard.key)
        try:
            return await retrying(lambda: _verified(self.store, shard), self.backoff,
                                  on_retry=self._retried)
        except ShardError:
            raise
        except (TierstoreError, OSError) as exc:
            raise ShardError(f"cannot read shard {shard.key!r}: {exc}", shard=shard.key) from exc

    def _retried(self, exc: BaseException, delay: float) -> None:
        self.stats.retries += 1


async def _nothing() -> None:
    return None


class ShardPrefetcher:
    """Reads ``shards`` ahead of their consumer, in order, as far ahead as ``read_ahead``
    says and never holding more than ``budget`` bytes.

    Parameters
    ----------
    loop
        The process's loader loop.
    reads
        What shards are read with (:class:`ShardReads`); its ``stats`` are :attr:`stats`.
    shards
        ``(position in the index, entry)`` in the order the consumer needs them.
    budget
        Bytes read ahead at most (being read, or handed over and not yet released), each
        shard counted with a small overhead so that many tiny shards are bounded too.
    ranged
        Whether a shard's format reads each sample from its own byte range
        (:attr:`~.format.ShardFormat.ranged_samples`): such a shard with block checksums is
        read in blocks, each let go once its consumer has passed it (:mod:`.landing`).
    read_ahead
        The depth policy (:data:`~.readahead.ReadAhead`): adaptive by default.
    """

    def __init__(self, loop: LoopThread, reads: ShardReads,
                 shards: Sequence[tuple[int, ShardEntry]], budget: int, *,
                 ranged: Callable[[ShardEntry], bool] = lambda shard: False,
                 read_ahead: ReadAhead = "adaptive"):
        self._loop = loop
        self._reads = reads
        self._shards = list(shards)
        self._parted = [reads.parted(shard, ranged(shard)) for _, shard in self._shards]
        self._sampled = [reads.sampled(shard, ranged(shard)) for _, shard in self._shards]
        self._opened: asyncio.Semaphore | None = None  # local shards open ahead (loop's)
        self.started = 0  # shards whose read has begun (read by the consumer's side too)
        self.stats = reads.stats
        self.depth = DepthController(read_ahead, budget, START_SHARDS * self._first_cost(),
                                     self.stats)
        self._ready: queue.Queue[tuple[int, Landing] | None] = queue.Queue()
        self._tasks: set[asyncio.Task[object]] = set()
        self._early: set[Landing] = set()  # released by the consumer before their read ended
        self._window: _Window | None = None
        self._handed: tuple[float, Landing] | None = None  # the last shard handed out, when
        self._producer = loop.submit(self._produce())

    def _first_cost(self) -> int:
        """The read-ahead before anything is measured: the first shard, or the first few
        blocks of a parted one."""
        if not self._shards:
            return SHARD_OVERHEAD
        shard = self._shards[0][1]
        return HEAD_READS * shard.block_size if self._parted[0] else cost(shard)

    async def _produce(self) -> None:
        window = self._window = _Window(self.depth, self.stats)
        self._opened = asyncio.Semaphore(LOCAL_OPEN)
        for (position, shard), parted, sampled in zip(self._shards, self._parted,
                                                       self._sampled, strict=True):
            if sampled and (local := await self._open_local(shard)) is not None:
                self.started += 1  # nothing to read ahead: its samples are read when due
                self._ready.put((position, Landing(shard, local=local)))
                continue
            await window.acquire(0 if parted else cost(shard))  # a parted one: its blocks
            landing = Landing(shard, head=self.started == 0, parted=parted, free=self._freed,
                              waiting=self._waiting)
            self.started += 1
            if parted:
                await self._read_blocks(position, landing, window)
                continue
            read = self.depth.start()
            self._spawn(self._reads.whole(shard, functools.partial(setattr, read, "latency"),
                                          landing),
                        functools.partial(self._hand_over, landing=landing, read=read))
            self._ready.put((position, landing))
        self._ready.put(None)

    async def _open_local(self, shard: ShardEntry) -> LocalShard | None:
        """``shard``'s file, open, when its best replica is on this node's disk (at most
        :data:`LOCAL_OPEN` such shards are open ahead of the consumer)."""
        assert self._opened is not None
        await self._opened.acquire()
        local = LocalShard.open(self._reads.store, shard)
        if local is None:
            self._opened.release()
        return local

    def _spawn(self, coro: Awaitable[T], done: Callable[[asyncio.Task[T]], None] | None = None
               ) -> asyncio.Task[T]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if done is not None:
            task.add_done_callback(done)
        return task

    def _hand_over(self, task: asyncio.Task[Buffer], landing: Landing, read: Read) -> None:
        if task.cancelled():
            self.depth.finish(read, None)
            landing.fail(_failure(landing, None))
        elif (exc := task.exception()) is not None:
            self.depth.finish(read, None)
            landing.fail(exc)
        else:
            self.depth.finish(read, cost(landing.shard))  # in the window's units, as the
            landing.finish(task.result())  # consumer's pace
        self._ended(landing)

    def _ended(self, landing: Landing) -> None:
        """A shard's read is over: its room goes back if its consumer is done with it."""
        if landing in self._early:
            self._early.discard(landing)
            self._release(landing)
        if self._window is not None:
            self._window.poke()

    # -- parted shards --------------------------------------------------------------------

    async def _read_blocks(self, position: int, landing: Landing, window: _Window) -> None:
        """Start reading a parted shard's blocks, in order, each as the window has room."""
        shard = landing.shard
        settled = await self._reads.claim(landing)
        self._ready.put((position, landing))
        blocks = []
        try:
            for lo in range(0, shard.size, shard.block_size):
                if landing.done or landing.mismatched or landing.unwanted:
                    break  # failed, being re-read whole, or neither consumer nor fill wants more
                hi = min(lo + shard.block_size, shard.size)
                await window.acquire(hi - lo, shards=0,
                                     urgent=functools.partial(_wanted, landing, lo))
                blocks.append(self._spawn(self._block(landing, lo, hi)))
        except BaseException:  # cancelled: its fill's stream ends with it
            landing.fail(_failure(landing, None))
            await asyncio.shield(settled())
            raise
        self._spawn(self._settle(landing, blocks, settled),
                    lambda task: self._ended(landing))

    async def _block(self, landing: Landing, lo: int, hi: int) -> None:
        """Read one block; the first block that does not match the index has the shard
        re-read whole, at once (its consumer waits for it)."""
        read = self.depth.start()
        into = (memoryview(bytearray(hi - lo)) if self._reads.blocks is None
                else self._reads.blocks.take(hi - lo))
        try:
            read.latency = await self._reads.block(landing.shard, lo, into)
        except BaseException as exc:  # its room goes back: it never landed
            self.depth.finish(read, None)
            self._freed(hi - lo)
            landing.fail(_failure(landing, exc))
            raise
        self.depth.finish(read, hi - lo)
        if landing.landed(lo, hi, into):
            try:
                landing.finish(await self._reads.reread(landing.shard))
            except BaseException as exc:
                landing.fail(_failure(landing, exc))
                raise

    async def _settle(self, landing: Landing, blocks: Sequence[asyncio.Task[None]],
                      settled: Callable[[], Awaitable[None]]) -> None:
        """Once every block of a parted shard is read (or it was re-read): finished when all
        matched the index; its fill's claim settled either way."""
        shard = landing.shard
        try:
            await asyncio.gather(*blocks, return_exceptions=True)
            if not landing.done:  # every block read and checked (or no more wanted)
                landing.finish(None)
            if landing.checked == shard.size:
                self.stats.shards += 1
                self.stats.bytes += shard.size
        except BaseException:
            landing.fail(_failure(landing, None))
            raise
        finally:
            await asyncio.shield(settled())

    def _waiting(self) -> None:
        """A consumer waits for bytes of a parted shard not read yet (from its thread)."""
        if self._window is not None:
            self._loop.call_soon(self._window.poke)

    def _freed(self, nbytes: int) -> None:
        """A parted shard let ``nbytes`` of blocks go (from either thread)."""
        if self._window is not None:
            self._loop.call_soon(self._window.release, nbytes, 0)

    def next(self) -> tuple[int, Landing]:
        """The next shard, as it lands (:meth:`Landing.wait` for its bytes, which raises
        the error that reading it raised), or :class:`StopIteration` after the last."""
        asked = time.perf_counter()
        if self._handed is not None:  # the consumer's pace: the last shard, over its time
            handed, last = self._handed  # less what it waited for its bytes (one read
            if last.local is None:  # ahead: a local shard's samples are read when due)
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

    def reread(self, shard: ShardEntry) -> bytes:
        """``shard`` whole through the store's verified, failing-over path (from the
        consumer's thread: one of its samples read on its own did not match)."""
        return self._loop.submit(self._reads.reread(shard)).result()

    def release(self, landing: Landing) -> None:
        """Give back the room of a shard the consumer has finished with (once its read is
        over: a consumer that needed only its first samples may be done before it is)."""
        self._stalled(landing.waited)
        landing.close()
        self._loop.call_soon(self._release, landing)

    def _release(self, landing: Landing) -> None:
        if landing.local is not None:
            if self._opened is not None:
                self._opened.release()
            return
        if not landing.done:
            self._early.add(landing)  # released by _ended
        elif self._window is not None:
            self._window.release(0 if landing.parted else cost(landing.shard))

    def shutdown(self, drain: float = 0.0) -> None:
        """Stop reading ahead: cancel the producer and every read in flight, after waiting
        up to ``drain`` seconds for the reads under way (when the consumer took every sample
        it needed: the trailing blocks of a shard it has passed still go to its fill)."""
        if not drain:
            self._producer.cancel()

        async def cancel_all() -> None:
            deadline = time.monotonic() + drain
            while (left := deadline - time.monotonic()) > 0 and (
                    self._tasks or not self._producer.done()):
                if self._tasks:
                    await asyncio.wait(list(self._tasks), timeout=left)
                else:  # the producer waits for room that the fills' writes give back
                    await asyncio.sleep(min(left, 0.01))
            self._producer.cancel()
            for task in list(self._tasks):
                task.cancel()

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            self._loop.submit(cancel_all()).result(timeout=5 + drain)
