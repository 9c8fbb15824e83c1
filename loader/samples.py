"""Samples read when they are due, each on its own, from shards on the node's own disk.

A shard read from S3 has to be read ahead: its bytes come in blocks, late, and its samples
wait in the reader's shuffle buffer until the order reaches them. A shard whose best replica
is a file on the node's own disk (the hot tier, once the shard was kept there) needs neither:
its file is opened (:class:`LocalShard`), the shuffle buffer holds where each sample lies
(:class:`DueSample`), and each sample is read from its own byte range when the reader is
about to yield it, a few ahead in threads (:class:`DueReads`), past the page cache. This is
how MosaicML Streaming reads its local shards: a reader holds the samples it is about to hand
over, not the shards or the buffer of samples behind them.

A shard read from S3 that the reader's fill writes to the hot tier is half-way there: the file
the fill writes is opened when the fill starts (:meth:`LocalShard.filling`), and a sample that
will wait long in the shuffle buffer is read back from it when it is due (its read waits for
its block to be written), while those due soon are held (:mod:`.dataset`'s
``READ_BACK_AFTER``): a read back costs the CPU of an ``O_DIRECT`` read, holding costs memory.

Nothing unchecked is handed over: every sample is checked against its own checksum in the
index (:attr:`~.index.ShardEntry.sample_checksums`). The file stays readable while it is open,
so a replica evicted or moved meanwhile is still read whole; a sample that cannot be read from
it or does not match has its shard read again whole through the store's verified, failing-over
path (another replica), once, and is taken from there; a shard that stays wrong is a
:class:`~.errors.CorruptShard`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tierstore.checksum import checksum
from tierstore.direct import open_for_reads, pread
from tierstore.store import Store

from .index import ShardEntry
from .readahead import PrefetchStats

__all__ = ["AHEAD", "DueReads", "DueSample", "LocalShard"]

log = logging.getLogger(__name__)
AHEAD = 48  # due samples read ahead of the one being yielded
THREADS = 6  # threads per process reading them

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(THREADS, "tierstore-samples")
        return _pool


def _forget_threads() -> None:  # a forked child has none of its parent's threads
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_threads)


class LocalShard:
    """``shard``'s file on this node's disk, open for reads (and closed once nothing refers
    to it): ``tier`` and ``path`` as :meth:`~tierstore.Store.hot_file` named them (reads
    counted as the tier's), or (``tier`` None) the file a fill is writing (not counted: the
    bytes were counted as they were fetched)."""

    def __init__(self, shard: ShardEntry, tier: str | None, path: str,
                 until: Callable[[int], bool] | None = None):
        self.shard, self.tier = shard, tier
        self._until = until  # a file being written: until(end) waits for its bytes
        self._fd, self._direct = open_for_reads(path, create=until is not None)
        self._closer = weakref.finalize(self, os.close, self._fd)
        self.verified: bytes | None = None  # the shard read whole elsewhere, after a mismatch
        self._verifying = threading.Lock()
        if tier is not None and os.fstat(self._fd).st_size != shard.size:
            self.close()
            raise OSError(f"{path} is not of the {shard.size} bytes the index says")

    @classmethod
    def filling(cls, shard: ShardEntry, path: str, until: Callable[[int], bool]
                ) -> LocalShard | None:
        """The file a fill writes ``shard`` to, made if it is not there yet and open
        (None where it cannot be); ``until(end)`` waits until its bytes up to ``end`` are
        written, false if they never will be."""
        try:
            return cls(shard, None, path, until)
        except OSError as exc:
            log.warning("cannot read shard %r from the file its fill writes: %s", shard.key, exc)
            return None

    @classmethod
    def open(cls, store: Store, shard: ShardEntry) -> LocalShard | None:
        """The local file of ``shard``'s best replica, open; None when that replica is not
        on this node's disk (or its file is not there, or not of the shard's size)."""
        found = store.hot_file(shard.key)
        if found is None:
            return None
        try:
            return cls(shard, *found)
        except OSError:
            return None

    def read(self, index: int) -> bytes | None:
        """Sample ``index``'s bytes from the file, when they match its checksum."""
        shard = self.shard
        assert shard.offsets is not None
        lo, hi = shard.offsets[index], shard.offsets[index + 1]
        if self._until is not None and not self._until(hi):
            return None
        try:
            data = pread(self._fd, self._direct, lo, hi)
        except (OSError, ValueError):
            return None
        if len(data) != hi - lo or checksum(data) != shard.sample_checksums[index]:
            return None
        return data

    def reread(self, whole: Callable[[], bytes]) -> bytes:
        """The shard's verified bytes from ``whole()`` (its store's verified read), called
        once however many samples ask."""
        with self._verifying:
            if self.verified is None:
                self.verified = whole()
            return self.verified

    def close(self) -> None:
        self._closer()


@dataclass(frozen=True, slots=True)
class DueSample:
    """Sample ``index`` of ``local``'s shard, to be read when it is due."""

    local: LocalShard
    index: int


class DueReads:
    """Reads due samples for one reader: each a few (``ahead``) before it is yielded, in
    threads; ``whole(shard)`` is the shard's verified read through the store, for a sample
    that cannot be read from its file or does not match."""

    def __init__(self, store: Store, whole: Callable[[ShardEntry], bytes],
                 stats: PrefetchStats, ahead: int = AHEAD):
        self._store = store
        self._whole = whole
        self._stats = stats
        self._ahead = ahead
        self._reads: dict[int, concurrent.futures.Future[bytes | None]] = {}
        self._next = 0  # the first position not yet looked at for reading ahead

    def read_ahead(self, position: int, order: Sequence[int], pending: Mapping[int, Any]
                   ) -> None:
        """Start reading the due samples among ``order[position:position + ahead]`` that
        are taken already (in ``pending``), up to the first that is not."""
        self._next = max(self._next, position)
        end = min(position + self._ahead, len(order))
        while self._next < end:
            due = pending.get(order[self._next])
            if due is None:
                break
            if isinstance(due, DueSample):
                self._reads[self._next] = _threads().submit(due.local.read, due.index)
            self._next += 1

    def take(self, position: int, due: DueSample) -> bytes:
        """The bytes of ``due``, yielded at ``position`` of the order, checked."""
        read = self._reads.pop(position, None)
        if read is None or not read.done():  # the consumer waits for it
            began = time.perf_counter()
            data = read.result() if read is not None else due.local.read(due.index)
            self._stats.stall_s += time.perf_counter() - began
        else:
            data = read.result()
        self._stats.due_samples += 1
        local = due.local
        if data is None:  # unreadable or not matching: the shard from the store, whole
            whole = local.reread(lambda: self._whole(local.shard))
            offsets = local.shard.offsets
            assert offsets is not None
            data = whole[offsets[due.index]:offsets[due.index + 1]]
        elif local.tier is not None:
            self._store.count_read(local.tier, len(data))
        return data

    def close(self) -> None:
        """Stop: reads not taken are cancelled (or left to finish; nothing waits for them)."""
        for read in self._reads.values():
            read.cancel()
        self._reads.clear()
