"""A shard handed to its consumer while it is still being read.

A shard is read as several ranged reads into one buffer; waiting for the last of them before
the first sample is taken costs the time to first batch of a cold start the whole shard's
read (a 64 MiB shard from S3: most of a second), where a stream of samples would start after
its first megabytes. When the index has checksums of the shard's blocks
(:attr:`~.index.ShardEntry.blocks`), each part is checked block by block as its read
completes, and the consumer may take the samples that lie in the checked part of the shard
from its start (:meth:`Landing.wait`) while the rest is still being read. Nothing unchecked is
ever handed over: a part's bytes count only once its read has returned (no failover or hedge
can write into them after that), and a block whose checksum does not match stops the checked
prefix there until the whole shard has been verified (or re-read) the usual way. Without block
checksums the prefix jumps from nothing to the whole shard when it is verified, as before.

The loader loop writes (:meth:`landed`, :meth:`finish`, :meth:`fail`); the consumer's
thread reads (:meth:`wait`).
"""

from __future__ import annotations

import threading
import time

from tierstore.checksum import checksum

from .format import Buffer
from .index import ShardEntry

__all__ = ["Landing"]


class Landing:
    """The bytes of ``shard`` as they are read and checked."""

    def __init__(self, shard: ShardEntry, *, head: bool = False):
        self.shard = shard
        self.head = head  # its consumer waits for it already: its first blocks come first
        self.data: Buffer = b""  # the shard's buffer (whole once finished)
        self.checked = 0  # bytes from the start that are checked against the index
        self.waited = 0.0  # seconds the consumer spent in wait()
        self._landed: list[tuple[int, int]] = []  # parts read, not yet under the prefix
        self._mismatch = False  # a block did not match: nothing more until finished
        self._done = False
        self._closed = False
        self._error: BaseException | None = None
        self._changed = threading.Condition()

    # -- the loader loop ------------------------------------------------------------------

    def begin(self, data: Buffer) -> None:
        """The buffer the shard's parts are read into."""
        with self._changed:
            self.data = data

    def landed(self, lo: int, hi: int) -> None:
        """The read of bytes ``[lo, hi)`` has returned: check the blocks now complete."""
        blocks, size = self.shard.blocks, self.shard.block_size
        if not blocks or self._mismatch or self._done:
            return
        self._landed.append((lo, hi))
        reach, checked = _covered(self._landed, self.checked), self.checked
        while checked < reach:
            block_end = min(checked + size, self.shard.size)
            if block_end > reach:
                break
            if checksum(memoryview(self.data)[checked:block_end]) != blocks[checked // size]:
                self._mismatch = True  # the whole shard's verification takes over
                break
            checked = block_end
        self._landed = [r for r in self._landed if r[1] > checked]  # under the prefix: done
        if checked > self.checked:
            with self._changed:
                self.checked = checked
                self._changed.notify_all()

    def finish(self, data: Buffer) -> None:
        """The whole shard, verified."""
        with self._changed:
            self.checked, self._done = len(data), True
            if not self._closed:
                self.data = data
            self._changed.notify_all()

    def fail(self, error: BaseException) -> None:
        """Reading the shard failed (or was cancelled): its waiter gets ``error``."""
        with self._changed:
            self._error, self._done = error, True
            self._changed.notify_all()

    # -- the consumer ---------------------------------------------------------------------

    def wait(self, end: int) -> Buffer:
        """The shard's buffer once its bytes ``[0, end)`` are checked (all of it after the
        read finished); raises the read's error if it failed first."""
        with self._changed:
            if self.checked < end and self._error is None:
                began = time.perf_counter()
                while self.checked < end and self._error is None and not self._done:
                    self._changed.wait()
                self.waited += time.perf_counter() - began
            if self._error is not None:
                raise self._error
            return self.data

    def close(self) -> None:
        """The consumer is done with the shard: let go of its buffer (for reuse)."""
        with self._changed:
            self._closed, self.data = True, b""

    @property
    def done(self) -> bool:
        """Whether the read is over (finished or failed)."""
        return self._done


def _covered(ranges: list[tuple[int, int]], start: int) -> int:
    """How far from ``start`` the union of ``ranges`` reaches without a gap."""
    end = start
    for lo, hi in sorted(ranges):
        if lo > end:
            break
        end = max(end, hi)
    return end
