"""Read-through fill: a shard a reader fetched from a slower tier becomes its hot replica.

The reader has the shard's bytes, verified against the index, in memory anyway; writing them
to the node's hot tier through the store's crash-safe replica path saves the daemon fetching
the same bytes again to stage them, so each shard crosses from the slower tier once. The
reader claims the hot replica before it fetches (:meth:`Store.claim_fill
<tierstore.store.Store.claim_fill>`): the daemon's staging copy and the node's other readers
(workers and ranks) then find the copy in flight and wait for it rather than fetch the same
bytes, and a reader that finds one in flight waits for it in turn, up to the time such a copy
should take (:data:`SLOWEST_COPY`). Fills run beside the reads, one write at a time; the shards
waiting for theirs are held in memory up to ``max_pending_bytes`` (a local write usually
outpaces a read from S3, so few wait): beyond that the reader waits for the writes, rather
than leave the shard to be fetched again. A shard read in blocks (:mod:`.landing`) is not held
whole at all: its fill writes each block as it is checked (:meth:`HotFill.stream`), and the
block goes once written; a shard re-read whole after a block did not match is not kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from tierstore.direct import DIRECT_WRITE_MIN
from tierstore.errors import CopyInFlight, TierstoreError
from tierstore.store import FillClaim, Store

from .formats.base import Buffer
from .index import ShardEntry
from .landing import Landing
from .samples import LocalShard

__all__ = ["SLOWEST_COPY", "FillStats", "HotFill"]

log = logging.getLogger(__name__)
SLOWEST_COPY = 25e6  # bytes/s: a copy in flight is waited for as long as it takes at this
# rate (plus a second), then the reader fetches the bytes itself


@dataclass
class FillStats:
    """What a reader's fills did: shards and bytes written to the hot tier, fills that
    failed, shards whose copy to the hot tier was in flight (the daemon's or another
    reader's) and waited for, and reads held up until the writes caught up."""

    shards: int = 0
    bytes: int = 0
    failed: int = 0
    waited: int = 0
    held_up: int = 0


class _Abandoned(Exception):
    """A streamed fill's blocks stopped coming: its replica is rolled back."""


class HotFill:
    """Fills of one reader, on its loader loop."""

    def __init__(self, store: Store, *, max_pending_bytes: int = 128 * 2**20):
        self.store = store
        self.max_pending_bytes = max_pending_bytes
        self.pending_bytes = 0
        self.stats = FillStats()
        self.room = True  # whether the hot tier had room for the last shard claimed
        self._tasks: set[asyncio.Task[None]] = set()
        self._writing = asyncio.Semaphore(1)  # one write at a time: reads come first

    async def fetch(self, shard: ShardEntry, read: Callable[[], Awaitable[Buffer]]) -> Buffer:
        """``read()`` the whole of ``shard``, claiming its hot replica first (the store
        decides: no hot replica yet) and writing the bytes read there in the background when
        the hot tier has room under its high watermark; without room the claim only marks
        the fetch while it runs. A copy already in flight there is waited for, so that
        ``read`` finds it ready."""
        claim = await self.claim(shard)
        try:
            data = await read()
        except BaseException:
            if claim is not None:
                await asyncio.shield(claim.release())
            raise
        if claim is not None and not claim.fills:
            await asyncio.shield(claim.release())
        elif claim is not None:
            self.pending_bytes += shard.size
            task = asyncio.get_running_loop().create_task(self._fill(claim, shard, data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            while self.pending_bytes > self.max_pending_bytes and len(self._tasks) > 1:
                self.stats.held_up += 1  # the writes fall behind the reads: wait for them
                await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
        return data

    async def claim(self, shard: ShardEntry) -> FillClaim | None:
        """The shard's claim (to fill, or, with no room, only to mark the fetch), or None
        when there is nothing to claim or a copy in flight was waited for."""
        tier = self.store.fill_tier
        if tier is None or not shard.size:
            return None
        try:
            try:
                claim = await self.store.claim_fill(shard.key)
                if claim is not None:  # a shard already hot says nothing of the room
                    self.room = claim.fills
                return claim
            except CopyInFlight:  # the daemon's staging copy or another reader's: wait for
                self.stats.waited += 1  # it, and read what it lands
                await self.store.wait_for_copy(shard.key, tier, 1 + shard.size / SLOWEST_COPY)
        except (TierstoreError, OSError) as exc:  # a fill is a help, never a failure
            log.warning("could not claim shard %r's hot replica: %s", shard.key, exc)
        return None

    def stream(self, claim: FillClaim, landing: Landing) -> None:
        """Write the blocks of a parted shard to ``claim``'s replica as they are checked
        (:meth:`Landing.sink`), in the background: a block is let go once written, so a
        shard is never held whole for its fill. Where the replica is a local file, its
        reader may read samples back from that file once written (:attr:`Landing.filing`)
        rather than hold them: the file is open for its reads, so a fill rolled back later
        leaves what was written readable, each sample checked against its own checksum."""
        blocks: asyncio.Queue[memoryview | None] = asyncio.Queue()
        shard = landing.shard
        # a block is in the file once written (DirectWriter: a write of a MiB or more)
        path = claim.local_path if shard.block_size >= DIRECT_WRITE_MIN else None

        def sink(index: int, view: memoryview | None) -> None:
            blocks.put_nowait(view)

        async def chunks() -> AsyncIterator[bytes]:
            for index in range(-(-shard.size // shard.block_size)):
                view = await blocks.get()
                if view is None:
                    raise _Abandoned(f"shard {shard.key!r} was re-read whole or failed")
                yield view  # type: ignore[misc]  # a writer takes any buffer
                landing.written(index)

        async def fill() -> None:
            try:
                await claim.write(chunks())
                landing.filed()
                self.stats.shards += 1
                self.stats.bytes += shard.size
            except _Abandoned:
                pass
            except (TierstoreError, OSError) as exc:
                self._failed(shard, exc)
            finally:
                landing.sink(None)

        landing.sink(sink, filing=path is not None)
        if path is not None:  # made now, for its reader to open; the writer truncates it
            landing.file(LocalShard.filling(shard, path, landing.until_on_file))
        task = asyncio.get_running_loop().create_task(fill())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fill(self, claim: FillClaim, shard: ShardEntry, data: Buffer) -> None:
        try:
            async with self._writing:
                await claim.commit(data, shard.checksum)
            self.stats.shards += 1
            self.stats.bytes += len(data)
        except (TierstoreError, OSError) as exc:
            self._failed(shard, exc)
        finally:
            self.pending_bytes -= shard.size

    def _failed(self, shard: ShardEntry, exc: BaseException) -> None:
        self.stats.failed += 1  # a fill is a help, never a failure
        log.warning("could not keep shard %r on the hot tier: %s", shard.key, exc)

    async def close(self, timeout: float = 30.0) -> None:
        """Let fills under way finish (a fill cancelled midway is rolled back)."""
        if self._tasks:
            _, left = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in left:
                task.cancel()
            if left:
                await asyncio.wait(left)
