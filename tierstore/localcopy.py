"""Copies from one local file to another made by the kernel, hashed as they land.

A move between two local tiers (hot NVMe to a slow disk and back) has its bytes on this node
already: nothing gains from passing them through Python. ``copy_file_range`` copies them in
the kernel, through the page cache, which on the benchmark machine's virtio disk moved 1.3
GB/s with four moves at once where reads and writes past the page cache (:mod:`.direct`)
moved 0.8-0.95 GB/s, however deep their pipeline. Each piece is hashed from the
destination's pages once it is copied (a memory read, no disk), so what the kernel will write
is what is proven, as a streamed write proves what it handed the kernel. Closed, the copy's
pages are handed to writeback and the source's dropped from the cache; the tier makes the
replica durable under its final name (:meth:`~tierstore.tier.Tier.sync`: one ``fsync`` of
the file after the rename, which also drops its pages, now clean), so a move leaves the
cache as it found it.

:class:`LocalFile` is how a caller offers a file as a write's source: a local tier copies it
(:meth:`~tierstore.tier.Tier.write`), S3 reads one that goes up as a single PUT whole, in
one call, any other tier streams its ``chunks``, and so do a local tier whose copy did not
hash to the file's checksum (or could not be made) and S3 where what it read did not, the
caller's verified stream then deciding whether the source or the copy was wrong.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from .checksum import Hasher

__all__ = ["COPY_PIECE", "KernelCopy", "LocalFile"]

COPY_PIECE = 8 * 2**20  # copied, hashed (and paced) at a time


@dataclass(frozen=True)
class LocalFile:
    """The whole local file ``path`` (``size`` bytes, ``checksum`` in the catalog's terms)
    as the bytes of a write; iterated, it is ``chunks`` (the caller's verified stream of
    the same bytes). ``pace(nbytes)`` is awaited after each piece a kernel copy makes."""

    path: str
    size: int
    checksum: str
    chunks: AsyncIterable[bytes | memoryview]
    pace: Callable[[int], Awaitable[None]] | None = None

    def __aiter__(self) -> AsyncIterator[bytes | memoryview]:
        return self.chunks.__aiter__()


class KernelCopy:
    """``source`` copied to ``target`` (created or truncated) piece by piece, in threads:
    :meth:`piece`, then :meth:`close`. With ``reuse``, ``target`` is a kept file
    (:mod:`tierstore.tier.recycle`) written over from the start and cut to what was copied
    when closed."""

    def __init__(self, source: str, target: str, *, reuse: bool = False):
        self._src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            self._dst = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
                                | (0 if reuse else os.O_TRUNC), 0o666)
        except BaseException:
            os.close(self._src)
            raise
        self._buffer = bytearray(COPY_PIECE)
        self._reuse = reuse
        self._end = 0  # bytes copied from the start

    def piece(self, start: int, nbytes: int, hasher: Hasher) -> int:
        """Copy ``nbytes`` from ``start`` (the same offset in both files) and hash what
        landed; how many were copied (fewer: the source ended)."""
        done = 0
        while done < nbytes:
            n = os.copy_file_range(self._src, self._dst, nbytes - done, start + done,
                                   start + done)
            if n == 0:
                break
            done += n
        view = memoryview(self._buffer)
        landed = 0
        while landed < done:
            n = os.preadv(self._dst, [view[:min(done - landed, len(view))]], start + landed)
            if n == 0:
                break
            hasher.update(view[:n])
            landed += n
        # hashed: its pages may go to the disk now, while the next piece is copied, rather
        # than all at the sync (the advice starts their writeback; dirty pages stay cached)
        os.posix_fadvise(self._dst, start, landed, os.POSIX_FADV_DONTNEED)
        self._end = max(self._end, start + landed)
        return landed

    def close(self) -> None:
        """Close both files: the target's pages written back from now on (not waited for:
        its sync does), the source's (clean) dropped from the page cache."""
        try:
            if self._reuse:
                os.ftruncate(self._dst, self._end)
            for fd in (self._dst, self._src):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(self._dst)
            os.close(self._src)
