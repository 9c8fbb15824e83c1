"""A shard handed to its consumer while it is still being read.

A shard is read as several ranged reads; waiting for the last of them before the first sample
is taken costs the time to first batch of a cold start the whole shard's read (a 64 MiB shard
from S3: most of a second), where a stream of samples would start after its first megabytes.
When the index has checksums of the shard's blocks (:attr:`~.index.ShardEntry.blocks`), each
part is checked block by block as its read completes, and the consumer may take the samples
that lie in the checked part of the shard from its start (:meth:`Landing.wait`) while the rest
is still being read. Nothing unchecked is ever handed over: a part's bytes count only once its
read has returned (no failover or hedge can write into them after that), and a block whose
checksum does not match stops the checked prefix there until the whole shard has been verified
(or re-read) the usual way. Without block checksums the prefix jumps from nothing to the whole
shard when it is verified, as before.

A shard lands in one of three ways:

- **whole**: its parts are read into one buffer of the shard's size (:meth:`begin`), which the
  consumer opens as a whole; any format.
- **in blocks** (``parted``): each block is read into a buffer of its own (:meth:`landed` with
  ``part``) and let go as soon as nobody needs it any more: the consumer has passed it
  (:meth:`passed`, for a format whose samples each lie in their own byte range, taken in
  order) and the hot-tier fill it was handed to (:meth:`sink`) has written it. A reader then
  holds the blocks between its consumer and its read-ahead, not whole shards: memory that
  follows a block's read latency rather than a shard's.
- **on this node's disk** (``local``): its best replica is a hot file, opened and handed over
  as it is; nothing is read ahead, and the consumer reads each sample when it is due
  (:mod:`.samples`).

The loader loop writes (:meth:`landed`, :meth:`finish`, :meth:`fail`, :meth:`written`); the
consumer's thread reads (:meth:`wait`, :meth:`read`, :meth:`passed`, :meth:`close`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tierstore.checksum import checksum

from .formats.base import Buffer
from .index import ShardEntry

if TYPE_CHECKING:
    from .samples import LocalShard

__all__ = ["Landing"]

FILE_WAIT = 120.0  # seconds a sample read back from a fill's file waits for its bytes at most
Sink = Callable[[int, memoryview | None], None]
"""``sink(block, view)``: a checked block of a parted shard, handed on in order (to the hot-tier
fill); the sink calls :meth:`Landing.written` once it no longer needs ``view``. ``view`` None:
no more will come (the shard was re-read whole, or its read failed), though not all did."""


@dataclass
class _Block:
    """A block of a parted shard, in its own buffer."""

    lo: int
    hi: int
    view: memoryview
    sunk: bool = False  # handed to the sink
    writing: bool = False  # handed to the sink and not yet written


class Landing:
    """The bytes of ``shard`` as they are read and checked.

    ``free(nbytes)`` is called (from either thread) as a parted shard lets a block go, and
    ``waiting()`` as its consumer starts waiting for bytes beyond :attr:`wanted`.
    """

    def __init__(self, shard: ShardEntry, *, head: bool = False, parted: bool = False,
                 free: Callable[[int], None] | None = None,
                 waiting: Callable[[], None] | None = None, local: LocalShard | None = None):
        self.shard = shard
        self.local = local  # the shard's file on this node's disk: nothing is read ahead
        self.head = head  # its consumer waits for it already: its first blocks come first
        self.parted = parted and bool(shard.blocks)
        self.data: Buffer = b""  # the shard's buffer (whole once finished)
        self.checked = 0  # bytes from the start that are checked against the index
        self.waited = 0.0  # seconds the consumer spent in wait()
        self._landed: list[tuple[int, int]] = []  # parts read, not yet under the prefix
        self._blocks: dict[int, _Block] = {}  # parted: blocks held, by index
        self._passed = 0  # parted: the consumer needs no byte below this
        self._sink: Sink | None = None
        self._filing = False  # its sink writes it to a file on this node's disk...
        self._file: LocalShard | None = None  # ...open here for reads...
        self._on_file = 0  # ...that holds its bytes up to here
        self._free = free
        self._waiting = waiting
        self.wanted = 0  # the consumer waits for the bytes up to here
        self._mismatch = False  # a block did not match: nothing more until finished
        self._done = local is not None
        self._closed = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()

    # -- the loader loop ------------------------------------------------------------------

    def begin(self, data: Buffer) -> None:
        """The buffer the shard's parts are read into (whole)."""
        with self._changed:
            self.data = data

    def sink(self, sink: Sink | None, *, filing: bool = False) -> None:
        """Hand each block of a parted shard on to ``sink`` once it is checked, in order;
        None: the sink is gone (the blocks it had not written are let go). ``filing``: the
        sink writes the shard to a file on this node's disk, which it names (:meth:`file`),
        and its consumer may read samples back from there (:attr:`filing`)."""
        with self._changed:
            self._sink, self._filing = sink, filing and sink is not None
            if sink is None:
                for block in self._blocks.values():
                    block.writing = False
            self._changed.notify_all()
        self._collect()

    @property
    def filing(self) -> LocalShard | None:
        """The file a filing sink writes the shard to, open for reads (its bytes read from it
        wait for :meth:`until_on_file`), while it does or once it wrote it all."""
        return self._file if self._filing or self._on_file == self.shard.size else None

    def file(self, local: LocalShard | None) -> None:
        """The sink's file, open for reads (None: it cannot be read; the consumer takes its
        samples from the blocks)."""
        with self._changed:
            self._file = local
            self._filing = self._filing and local is not None
            self._changed.notify_all()

    def written(self, index: int) -> None:
        """The sink is done with block ``index`` (a filing sink: it is in the file, unless
        it is the last, whose end may be written only when the file is closed)."""
        with self._changed:
            if (block := self._blocks.get(index)) is not None:
                block.writing = False
                if self._filing and block.hi < self.shard.size:
                    self._on_file = max(self._on_file, block.hi)
                    self._changed.notify_all()
        self._collect()

    def filed(self) -> None:
        """A filing sink wrote the whole shard to its file, and closed it."""
        with self._changed:
            if self._filing:
                self._on_file = self.shard.size
                self._changed.notify_all()
        self._collect()

    def landed(self, lo: int, hi: int, part: memoryview | None = None) -> bool:
        """The read of bytes ``[lo, hi)`` has returned (into ``part``, for a parted shard:
        one block): check the blocks now complete. True when this found the shard's first
        block that does not match (the whole shard must be verified, or re-read, now)."""
        if part is not None:
            with self._changed:
                self._blocks[lo // self.shard.block_size] = _Block(lo, hi, part)
        blocks, size = self.shard.blocks, self.shard.block_size
        if not blocks or self._mismatch or self._done:
            self._collect()
            return False
        self._landed.append((lo, hi))
        reach, checked = _covered(self._landed, self.checked), self.checked
        while checked < reach:
            block_end = min(checked + size, self.shard.size)
            if block_end > reach:
                break
            if checksum(self._view(checked, block_end)) != blocks[checked // size]:
                self._mismatch = True  # the whole shard's verification takes over
                break
            checked = block_end
        self._landed = [r for r in self._landed if r[1] > checked]  # under the prefix: done
        if checked > self.checked:
            with self._changed:
                first, self.checked = self.checked, checked
                self._changed.notify_all()
            self._hand_on(first, checked)
        self._collect()
        return self._mismatch

    def _hand_on(self, lo: int, hi: int) -> None:
        """Give the sink the blocks checked between ``lo`` and ``hi``."""
        if not self.parted or self._sink is None:
            return
        size = self.shard.block_size
        for index in range(lo // size, -(-hi // size)):
            block = self._blocks[index]
            block.sunk = block.writing = True
            self._sink(index, block.view)

    def finish(self, data: Buffer | None) -> None:
        """The whole shard, verified: ``data`` (a parted shard whose blocks all matched:
        None, its blocks are its bytes)."""
        with self._changed:
            if data is not None:
                self.checked, self.data = len(data), (b"" if self._closed else data)
            self._done = True
            self._changed.notify_all()
        self._over()

    def fail(self, error: BaseException) -> None:
        """Reading the shard failed (or was cancelled): its waiter gets ``error``."""
        with self._changed:
            self._error, self._done = error, True
            self._changed.notify_all()
        self._over()

    def _over(self) -> None:
        if self._sink is not None and (self._mismatch or self._error is not None):
            self._sink(-1, None)  # the rest of the blocks will not come
        self._collect()

    # -- the consumer ---------------------------------------------------------------------

    def wait(self, end: int) -> Buffer:
        """The shard's buffer once its bytes ``[0, end)`` are checked (all of it after the
        read finished); raises the read's error if it failed first. (A parted shard has no
        such buffer until re-read whole: :meth:`read` its samples.)"""
        with self._changed:
            if self.checked < end and self._error is None:
                if end > self.wanted:
                    self.wanted = end
                    if self._waiting is not None:
                        self._waiting()
                began = time.perf_counter()
                while self.checked < end and self._error is None and not self._done:
                    self._changed.wait()
                self.waited += time.perf_counter() - began
            if self._error is not None:
                raise self._error
            return self.data

    def until_on_file(self, end: int, timeout: float = FILE_WAIT) -> bool:
        """Wait until the shard's bytes ``[0, end)`` are in the file its filing sink writes
        (True), or that sink stopped first, or ``timeout`` seconds passed (False: a reader
        thread never waits on a fill forever). From any thread but the loader loop."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._filing and self._on_file < end and self._error is None:
                if (left := deadline - time.monotonic()) <= 0:
                    break
                self._changed.wait(left)
            return self._on_file >= end

    def read(self, lo: int, hi: int) -> Buffer:
        """Bytes ``[lo, hi)`` once checked: a view where they lie in one block or buffer."""
        data = self.wait(hi)
        with self._changed:
            if len(data) >= hi or not self.parted:
                return memoryview(data)[lo:hi]
            return self._view(lo, hi)

    def passed(self, offset: int) -> None:
        """The consumer will read nothing below ``offset`` (a parted shard's blocks there go
        once the sink has written them)."""
        with self._changed:
            self._passed = max(self._passed, offset)
        self._collect()

    def close(self) -> None:
        """The consumer is done with the shard: let go of its buffers (for reuse)."""
        with self._changed:
            self._closed, self.data, self._passed = True, b"", self.shard.size
        self._collect()

    @property
    def done(self) -> bool:
        """Whether the read is over (finished or failed)."""
        return self._done

    @property
    def unwanted(self) -> bool:
        """Whether the rest of a parted shard is wanted by nobody: its consumer is done with
        it and no fill takes its blocks."""
        return self._closed and self._sink is None

    @property
    def mismatched(self) -> bool:
        """Whether a block did not match the index (the shard must be verified whole)."""
        return self._mismatch

    # -- blocks ---------------------------------------------------------------------------

    def _view(self, lo: int, hi: int) -> Buffer:
        """Bytes ``[lo, hi)`` of the blocks (or the whole buffer): a view within one."""
        if not self.parted:
            return memoryview(self.data)[lo:hi]
        size = self.shard.block_size
        first, last = lo // size, (hi - 1) // size
        if first == last:
            block = self._blocks[first]
            return block.view[lo - block.lo:hi - block.lo]
        return b"".join(self._blocks[i].view[max(lo, i * size) - i * size:
                                             min(hi, (i + 1) * size) - i * size]
                        for i in range(first, last + 1))

    def _collect(self) -> None:
        """Let go of the blocks nobody needs: checked (or the read is over), passed by the
        consumer, and written by the sink (or not wanted by it)."""
        if not self.parted:
            return
        freed: list[int] = []
        with self._changed:
            for index, block in list(self._blocks.items()):
                checked = block.hi <= self.checked or self._done
                wanted = (self._sink is not None and not block.sunk and not self._done
                          and not self._mismatch)
                if checked and block.hi <= self._passed and not block.writing and not wanted:
                    del self._blocks[index]
                    freed.append(block.hi - block.lo)
        if self._free is not None:
            for nbytes in freed:
                self._free(nbytes)


def _covered(ranges: list[tuple[int, int]], start: int) -> int:
    """How far from ``start`` the union of ``ranges`` reaches without a gap."""
    end = start
    for lo, hi in sorted(ranges):
        if lo > end:
            break
        end = max(end, hi)
    return end
