"""Read-through fill: a shard a reader fetched from a slower tier becomes its hot replica.

The reader has the shard's bytes, verified against the index, in memory anyway; writing them
to the node's hot tier (:meth:`Store.fill <tierstore.store.Store.fill>`, the store's crash-safe
replica path) saves the daemon fetching the same bytes again to stage them, so each shard
crosses from the slower tier once. Fills run beside the reads, one write at a time; the
shards waiting for theirs are held in memory up to ``max_pending_bytes`` (a local write
usually outpaces a read from S3, so few wait): a shard offered beyond that is left to the
daemon.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from tierstore.errors import TierstoreError
from tierstore.store import Store

from .format import Buffer
from .index import ShardEntry

__all__ = ["FillStats", "HotFill"]

log = logging.getLogger(__name__)


@dataclass
class FillStats:
    """What a reader's fills did: shards and bytes written to the hot tier, shards left to
    the daemon because enough fills were under way, fills that failed."""

    shards: int = 0
    bytes: int = 0
    skipped: int = 0
    failed: int = 0


class HotFill:
    """Fills of one reader, on its loader loop."""

    def __init__(self, store: Store, *, max_pending_bytes: int = 128 * 2**20):
        self.store = store
        self.max_pending_bytes = max_pending_bytes
        self.pending_bytes = 0
        self.stats = FillStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writing = asyncio.Semaphore(1)  # one write at a time: reads come first

    def offer(self, shard: ShardEntry, data: Buffer) -> None:
        """Fill ``shard`` from ``data`` (verified bytes) in the background, if it is worth
        it: the store decides (no hot replica yet, room under the high watermark)."""
        if self.store.fill_tier is None or not shard.size:
            return
        if self._tasks and self.pending_bytes + len(data) > self.max_pending_bytes:
            self.stats.skipped += 1
            return
        self.pending_bytes += len(data)
        task = asyncio.get_running_loop().create_task(self._fill(shard, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fill(self, shard: ShardEntry, data: Buffer) -> None:
        async with self._writing:
            try:
                if await self.store.fill(shard.key, data, shard.checksum):
                    self.stats.shards += 1
                    self.stats.bytes += len(data)
            except (TierstoreError, OSError) as exc:
                self.stats.failed += 1
                log.warning("could not keep shard %r on the hot tier: %s", shard.key, exc)
            finally:
                self.pending_bytes -= len(data)

    async def close(self, timeout: float = 30.0) -> None:
        """Let fills under way finish (a fill cancelled midway is rolled back)."""
        if self._tasks:
            _, left = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in left:
                task.cancel()
            if left:
                await asyncio.wait(left)
