"""Local files written and read past the page cache (``O_DIRECT``), where the filesystem allows
it.

A write through the page cache costs the writer's CPU far more than its bytes' copy: pages
are allocated, accounted and later written back one by one. On the 2-core benchmark machine
(ext4 on a virtio disk) ``dd`` spends 1.6-1.9 s of system time per GiB written that way and
0.11-0.13 s with ``oflag=direct``, and a loader keeping the shards it fetched from S3 hot
spent half of a cold epoch's CPU there. Nothing is gained by caching what is written: a
shard being copied to the hot tier is in the writer's memory already, and is read next in
the next epoch, from the hot tier's disk. So a local tier writes its files of a MiB and more
the way ``fio --direct=1`` does: from the write that takes one to a MiB on, the bytes go
to the device from the writer's own memory where it is page-aligned (a block of a shard read
into the loader's buffers), else through one page-aligned staging buffer (a memory copy at
several GB/s), and only a last piece shorter than a block goes through the page cache;
smaller files are written as usual. Durability is unchanged: ``O_DIRECT`` promises nothing
about the device's own cache, so the tier still ``fsync``\\ s the file and its folders before
a replica counts.

Reads of a whole part of a shard (:func:`read_direct`, 1-8 MiB) go past the page cache too:
filling the cache costs what writing through it does (1.7 s of system time per GiB read from
the disk, against 0.06 s direct at 1.3 GB/s), and the hot tier's files are not in the cache
anyway once written this way. So do a loader's reads of one sample at a time from a hot
shard's open file (:func:`pread`, any length). Other small reads (an index) stay buffered,
where the cache helps.

A filesystem that refuses ``O_DIRECT`` (some FUSE and network filesystems), when it is
switched on or at the first write, gets ordinary buffered writes:
:attr:`DirectWriter.direct` says which; :func:`read_direct` raises ``EINVAL`` there and the
caller reads the usual way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import errno
import fcntl
import mmap
import os
import queue
import threading
from collections.abc import AsyncIterator, Iterator

from .locality.health import in_thread

__all__ = ["ALIGN", "DIRECT_READ_MAX", "DIRECT_READ_MIN", "DIRECT_WRITE_MIN", "STAGE",
           "DirectWriter", "lent_buffers", "open_for_reads", "pread", "read_direct",
           "read_direct_into", "stream_file"]

ALIGN = 4096  # offsets, lengths and memory of direct I/O are multiples of this
STAGE = 8 * 2**20  # the staging buffer: one write to the device at a time
DIRECT_WRITE_MIN = 2**20  # files from this size up are written past the page cache
DIRECT_READ_MIN = 2**20  # reads from this size up go past the page cache...
DIRECT_READ_MAX = STAGE  # ...up to this size (one bounce buffer per thread)
_O_DIRECT = getattr(os, "O_DIRECT", 0)
BOUNCE_BUFFERS = min(32, (os.cpu_count() or 1) + 4)  # page-aligned read buffers per process,
# made as reads need them: as many as asyncio.to_thread runs threads, so that no read waits for
# one (a read that waited would measure the hot tier slower than it is: see locality)
_bounce: queue.LifoQueue[mmap.mmap] = queue.LifoQueue()
_bounce_made = 0
_bounce_lock = threading.Lock()
SPARE_BUFFERS = 8  # page-aligned stream buffers kept for reuse (of each size): lent_buffers
_spare: dict[int, list[mmap.mmap]] = {}
_spare_lock = threading.Lock()


class DirectWriter:
    """A new file at ``path`` (created or truncated), written in order: :meth:`write`, then
    :meth:`close`. Not thread-safe; one thread at a time (any thread).

    The first :data:`DIRECT_WRITE_MIN` bytes go through the page cache: a small file is
    written as any other (one system call, no device wait). From there on, once the file
    offset is block-aligned, the file descriptor is switched to ``O_DIRECT``. A write of
    :data:`DIRECT_WRITE_MIN` bytes or more is in the file when it returns (one reading the
    file meanwhile sees it), but for a last piece shorter than a block, staged until the
    next write or :meth:`close`.

    With ``reuse``, ``path`` is a kept file (:mod:`tierstore.tier.recycle`) written over
    from the start and cut to what was written when closed."""

    def __init__(self, path: str, mode: int = 0o666, *, reuse: bool = False):
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
                           | (0 if reuse else os.O_TRUNC), mode)
        self._reuse = reuse
        self.direct = False  # whether writes go past the page cache now
        self._refused = not _O_DIRECT  # the filesystem would not
        self._stage: mmap.mmap | None = None  # page-aligned (mmap), once direct
        self._held = 0  # bytes at the start of the stage not yet written
        self.written = 0
        self.direct_bytes = 0  # of them, written past the page cache

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        if self._stage is None and not self._refused and \
                self.written + len(view) >= DIRECT_WRITE_MIN:
            head = -self.written % ALIGN  # through the cache up to a block boundary
            _write_all(self._fd, view[:head])
            self.written += len(view[:head])
            view = view[head:]
            self._go_direct()
        if self._stage is None:
            _write_all(self._fd, view)
            self.written += len(view)
            return len(data)
        while view:
            if not self._held and len(view) >= ALIGN and _page_aligned(view):
                n = len(view) // ALIGN * ALIGN  # from the caller's own memory: no copy
                self._put(view[:n])
                self.written += n
                view = view[n:]
                continue
            n = min(len(view), STAGE - self._held)
            self._stage[self._held:self._held + n] = view[:n]
            self._held += n
            self.written += n
            view = view[n:]
            if self._held == STAGE:
                self._drain(STAGE)
        if len(data) >= DIRECT_WRITE_MIN and self._held >= ALIGN:  # a large chunk is in the
            self._drain(self._held // ALIGN * ALIGN)  # file when this returns, but for a tail
        return len(data)

    def _go_direct(self) -> None:
        try:
            fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) | _O_DIRECT)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._refused = True
            return
        self.direct = True
        self._stage = _aligned(STAGE)

    def _put(self, view: memoryview) -> None:
        """Write ``view`` (page-aligned memory, a multiple of :data:`ALIGN` long) at the
        file's offset, past the page cache while the filesystem lets it."""
        try:
            _write_all(self._fd, view)
            self.direct_bytes += len(view) if self.direct else 0
        except OSError as exc:  # refused after all (alignment the device wants larger)
            if exc.errno != errno.EINVAL or not self.direct:
                raise
            self._buffered()
            _write_all(self._fd, view)

    def _drain(self, nbytes: int) -> None:
        """Write the stage's first ``nbytes`` (a multiple of :data:`ALIGN`)."""
        assert self._stage is not None
        with memoryview(self._stage) as stage:
            self._put(stage[:nbytes])
            rest = self._held - nbytes
            stage[:rest] = stage[nbytes:self._held]
        self._held = rest

    def _buffered(self) -> None:
        fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~_O_DIRECT)
        self.direct = False

    def close(self) -> None:
        """Write what is staged (the last piece shorter than a block through the page
        cache) and close the file. Closing twice is a no-op."""
        if self._fd < 0:
            return
        try:
            if self._stage is not None:
                if aligned := self._held // ALIGN * ALIGN:
                    self._drain(aligned)
                if self._held:
                    self._buffered()
                    with memoryview(self._stage) as stage:
                        _write_all(self._fd, stage[:self._held])
                    self._held = 0
            if self._reuse:
                os.ftruncate(self._fd, self.written)
        finally:
            fd, self._fd = self._fd, -1
            os.close(fd)
            staged, self._stage = self._stage, None
            if staged is not None:
                # a view of it may live on in the traceback of a write that failed or was
                # interrupted (that error is what the caller must see): the last view's end
                # frees it then
                with contextlib.suppress(BufferError):
                    staged.close()


def _page_aligned(view: memoryview) -> bool:
    """Whether ``view``'s memory starts on a page (a shard's block, a buffer of
    :class:`~tierstore.loader.buffers.ShardBuffers`); False where its address cannot be had
    (read-only memory)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(view)) % ALIGN == 0
    except (TypeError, ValueError):
        return False


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view):]


def read_direct(path: str, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of ``path`` (fewer at its end), read with ``O_DIRECT`` into one
    of the process's aligned buffers and copied out once. ``end - start`` is at most
    :data:`DIRECT_READ_MAX`. Raises ``OSError(EINVAL)`` where the filesystem refuses."""
    return _copied(_pread(path, start, end))


def _copied(got: tuple[mmap.mmap, int, int]) -> bytes:
    """The bytes a direct read left in a bounce buffer (:func:`_pread`), copied out; the
    buffer goes back."""
    buffer, skip, n = got
    try:
        with memoryview(buffer) as view:
            return bytes(view[skip:skip + n])
    finally:
        _bounce.put(buffer)


async def read_direct_into(path: str, start: int, into: memoryview) -> int:
    """:func:`read_direct` of ``len(into)`` bytes from ``start`` into ``into``; how many.
    The disk read runs in a thread; the copy into ``into`` is made on the calling loop, so a
    read cancelled midway writes nothing into ``into`` after it is cancelled (the thread,
    which cannot be stopped, gives its buffer back when it is done)."""
    handoff = _Handoff()
    try:
        await in_thread(handoff.read, path, start, start + len(into))
    except asyncio.CancelledError:
        handoff.abandon()
        raise
    buffer, skip, n = handoff.take()
    try:
        with memoryview(buffer) as view:
            into[:n] = view[skip:skip + n]
    finally:
        _bounce.put(buffer)
    return n


class _Handoff:
    """A direct read's bounce buffer passed from its thread to the loop, or given back by
    whichever side learns last that the loop no longer wants it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._got: tuple[mmap.mmap, int, int] | None = None
        self._abandoned = False

    def read(self, path: str, start: int, end: int) -> None:
        got = _pread(path, start, end)
        with self._lock:
            if not self._abandoned:
                self._got = got
                return
        _bounce.put(got[0])

    def abandon(self) -> None:
        with self._lock:
            self._abandoned, got, self._got = True, self._got, None
        if got is not None:
            _bounce.put(got[0])

    def take(self) -> tuple[mmap.mmap, int, int]:
        with self._lock:
            got, self._got = self._got, None
        assert got is not None
        return got


def _pread(path: str, start: int, end: int) -> tuple[mmap.mmap, int, int]:
    """Bytes ``[start, end)`` of ``path`` read with ``O_DIRECT`` into a bounce buffer:
    (the buffer, where they begin in it, how many); the caller gives the buffer back
    (``_bounce.put``)."""
    if not _O_DIRECT:
        raise OSError(errno.EINVAL, "O_DIRECT is not available here", path)
    _check_span(start, end)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | _O_DIRECT)
    try:
        return _pread_fd(fd, start, end)
    finally:
        os.close(fd)


def _check_span(start: int, end: int) -> None:
    if not 0 <= start <= end or end - start > DIRECT_READ_MAX:
        raise ValueError(f"a direct read covers 0 to {DIRECT_READ_MAX} bytes, not "
                         f"[{start}, {end})")


def _pread_fd(fd: int, start: int, end: int) -> tuple[mmap.mmap, int, int]:
    """:func:`_pread` from a file opened with ``O_DIRECT``."""
    lo = start // ALIGN * ALIGN
    length = -(-(end - lo) // ALIGN) * ALIGN
    buffer = _take_bounce()
    try:
        with memoryview(buffer) as view:
            got = 0
            while got < length:
                n = os.preadv(fd, [view[got:length]], lo + got)
                if n == 0:  # the end of the file
                    break
                got += n
    except BaseException:
        _bounce.put(buffer)
        raise
    skip = start - lo
    return buffer, skip, max(0, min(got, end - lo) - skip)


def open_for_reads(path: str, *, create: bool = False) -> tuple[int, bool]:
    """A read-only descriptor of ``path`` for :func:`pread` (``create``: an empty file made
    when there is none, with its folders, for a writer to fill), and whether its reads go
    past the page cache (``O_DIRECT``, where the filesystem allows it)."""
    flags = os.O_RDONLY | os.O_CLOEXEC
    if create:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        flags |= os.O_CREAT
    if _O_DIRECT:
        try:
            return os.open(path, flags | _O_DIRECT, 0o666), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, flags, 0o666), False


def pread(fd: int, direct: bool, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of the file ``fd`` (fewer at its end), from
    :func:`open_for_reads`: through one of the process's aligned buffers when ``direct``
    (any length, in pieces of at most :data:`DIRECT_READ_MAX`), else a plain ``pread``."""
    if not direct:
        return os.pread(fd, end - start, start)
    pieces = []
    for lo in range(start, end, DIRECT_READ_MAX):
        hi = min(lo + DIRECT_READ_MAX, end)
        pieces.append(_copied(_pread_fd(fd, lo, hi)))
        if len(pieces[-1]) < hi - lo:
            break  # the end of the file
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


STREAM_PART = 2 * 2**20  # a streamed file's reads: on the benchmark machine's virtio disk
# reads and writes of 1-2 MiB move 1.9-3 GB/s past the page cache, of 8 MiB 1.2-2 GB/s
STREAM_AHEAD = 4  # ...this many in flight ahead of the chunk its consumer holds


async def stream_file(path: str, size: int, part: int = STREAM_PART,
                      ahead: int = STREAM_AHEAD) -> AsyncIterator[memoryview]:
    """Bytes ``[0, size)`` of the local file ``path`` (fewer at its end), in chunks of
    ``part`` bytes read in threads with ``ahead`` reads in flight, past the page cache where
    the filesystem allows it, straight into page-aligned buffers of the stream's own: no
    copy, and a :class:`DirectWriter` writes them as they are. Each chunk is a view *lent*
    until the consumer asks for the next one: a consumer keeping chunks copies them.

    So a local file being uploaded (or copied where the kernel could not copy it,
    :mod:`.localcopy`) has its next chunks read while the current one is sent or written;
    read and written one after the other, with a bounce copy, a 16 MiB move between local
    tiers took 41 ms, twice what a plain buffered copy and ``fsync`` take."""
    part = -(-part // ALIGN) * ALIGN
    fd, direct = open_for_reads(path)
    loop = asyncio.get_running_loop()
    free = [_aligned(part) for _ in range(min(ahead + 1, -(-size // part)))]
    reads: collections.deque[tuple[asyncio.Future[int], mmap.mmap, int]] = collections.deque()
    offsets = iter(range(0, size, part))
    try:
        while True:
            while free and (lo := next(offsets, None)) is not None:
                buffer, n = free.pop(), min(part, size - lo)
                reads.append((loop.run_in_executor(None, _read_full, fd, buffer, lo, n, direct),
                              buffer, n))
            if not reads:
                return
            got = await reads[0][0]
            _, buffer, n = reads.popleft()
            with memoryview(buffer) as view:
                yield view[:got]
            free.append(buffer)
            if got < n:
                return  # the file ends before ``size``
    finally:
        # threads still reading write into these buffers and read this descriptor: both
        # stay until the last of them is done
        if reads:
            await asyncio.shield(asyncio.gather(*(r for r, _, _ in reads),
                                                return_exceptions=True))
        os.close(fd)


def _read_full(fd: int, buffer: mmap.mmap, lo: int, n: int, direct: bool) -> int:
    """Read ``n`` bytes at ``lo`` into ``buffer`` (whole blocks when ``direct``); how many
    there were (fewer at the file's end)."""
    length = -(-n // ALIGN) * ALIGN if direct else n
    got = 0
    with memoryview(buffer) as view:
        while got < length:
            k = os.preadv(fd, [view[got:length]], lo + got)
            if k == 0:
                break
            got += k
    return min(got, n)


def _take_bounce() -> mmap.mmap:
    global _bounce_made
    with _bounce_lock:
        if _bounce.empty() and _bounce_made < BOUNCE_BUFFERS:
            _bounce_made += 1
            return _aligned(DIRECT_READ_MAX + 2 * ALIGN)
    return _bounce.get()


def _aligned(nbytes: int) -> mmap.mmap:
    """Page-aligned memory of this process alone (a forked child gets its own copy; the
    default, shared, mapping would be written by both)."""
    return mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


@contextlib.contextmanager
def lent_buffers(size: int) -> Iterator[tuple[mmap.mmap, mmap.mmap]]:
    """Two page-aligned buffers of ``size`` bytes for a stream's reads (an S3 object's
    ranges, received straight into them), taken from (and given back to) up to
    :data:`SPARE_BUFFERS` kept ones: touching fresh memory costs the kernel about as much as
    a copy."""
    with _spare_lock:
        spare = _spare.setdefault(size, [])
        taken = [spare.pop() for _ in range(min(2, len(spare)))]
    while len(taken) < 2:
        taken.append(_aligned(size))
    try:
        yield taken[0], taken[1]
    finally:
        with _spare_lock:
            spare = _spare.setdefault(size, [])
            kept = taken[:max(0, SPARE_BUFFERS - len(spare))]
            spare.extend(kept)
        for buffer in taken[len(kept):]:
            with contextlib.suppress(BufferError):  # a view kept past its loan: let it be
                buffer.close()


def _forget_buffers() -> None:
    global _bounce, _bounce_made, _bounce_lock, _spare, _spare_lock
    _bounce, _bounce_made, _bounce_lock = queue.LifoQueue(), 0, threading.Lock()
    _spare, _spare_lock = {}, threading.Lock()


os.register_at_fork(after_in_child=_forget_buffers)  # a lock held at the fork, say
