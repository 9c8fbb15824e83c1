"""A tier in a local folder (NVMe, a slow disk): reads and writes past the page cache
(:mod:`tierstore.direct`), moves between local tiers copied by the kernel
(:mod:`tierstore.localcopy`), atomic renames, fsyncs, and no path through a link planted
below the root."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import stat
from collections.abc import AsyncIterable, AsyncIterator, Coroutine, Iterable, Mapping, Sequence
from typing import Any

from ..checksum import Hasher, checksum_file
from ..direct import (
    DIRECT_READ_MAX,
    DIRECT_READ_MIN,
    DirectWriter,
    read_direct,
    read_direct_into,
    stream_file,
)
from ..errors import TierError
from ..keys import RESERVED_PREFIX
from ..localcopy import COPY_PIECE, KernelCopy, LocalFile
from ..locality.health import in_thread
from .base import PART_SIZE, Chunk, Tier, file_version, gone
from .recycle import RECYCLE_BYTES, Recycler

__all__ = ["LocalTier"]

WRITE_THREADS = 4  # write_files: threads writing and syncing a batch of small files

log = logging.getLogger("tierstore.tier")


class LocalTier(Tier, protocols=("file", "local")):
    """A tier in a local folder."""

    atomic_rename = True
    is_local = True
    receipts = True  # the hash of what was handed to the kernel, and the file's version

    def __init__(self, config: Any):
        super().__init__(config)
        self._direct_reads = True  # until the filesystem refuses O_DIRECT
        self._recycler = Recycler(self.root, RECYCLE_BYTES if config.capacity is None
                                  else min(RECYCLE_BYTES, config.capacity // 8))

    def _configure(self, options: dict[str, Any]) -> dict[str, Any]:
        options.setdefault("auto_mkdir", True)
        return options

    def _check_path(self, path: str, full: str) -> None:
        """Refuse a local path that passes through a symbolic link below the root: one
        planted there (a hot folder shared with other pods) would lead writes, reads and
        removals out of the tier. Links above the root (``/data -> /mnt/nvme``) are the
        operator's and fine. One ``lstat`` per name below the root, up to the first that
        does not exist (what an operation then creates is a folder or a file, not a link).
        A link put in place between this check and the operation is not seen."""
        here = self.root
        for name in full[len(self.root) + 1:].split("/"):
            here = f"{here}/{name}"
            try:
                if not stat.S_ISLNK(os.lstat(here).st_mode):
                    continue
            except OSError:  # missing (or unreadable): the operation itself finds out
                return
            link = here[len(self.root) + 1:]
            with contextlib.suppress(OSError):
                link += f" (to {os.readlink(here)})"
            raise TierError(self.name, f"access to {path!r}", f"{link} is a symbolic link "
                            "inside the tier's root; tierstore follows no links there")

    # -- reads -------------------------------------------------------------------------------

    async def read(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        if start is not None and end is not None and start >= 0 \
                and self._reads_direct(end - start):
            with contextlib.suppress(_DirectRefused):
                data: bytes = await self._direct(path, in_thread(
                    read_direct, self.full_path(path), start, end))
                return data
        return await super().read(path, start, end)

    async def read_into(self, path: str, start: int, view: memoryview) -> int:
        if len(view) and self._reads_direct(len(view)):
            with contextlib.suppress(_DirectRefused):
                n: int = await self._direct(path, read_direct_into(
                    self.full_path(path), start, view))
                return n
        return await super().read_into(path, start, view)

    def _reads_direct(self, nbytes: int) -> bool:
        """Whether a read of ``nbytes`` goes past the page cache (:mod:`tierstore.direct`)."""
        return self._direct_reads and DIRECT_READ_MIN <= nbytes <= DIRECT_READ_MAX

    async def _direct(self, path: str, read: Coroutine[Any, Any, Any]) -> Any:
        """Await a local read past the page cache (:mod:`tierstore.direct`); raises
        :class:`_DirectRefused` (and reads never try again) where the filesystem refuses."""
        async with self._limit():
            try:
                return await self._guard("read", read)
            except TierError as exc:
                if gone(exc):
                    raise self._missing(path) from exc
                if not isinstance(exc.__cause__, OSError) or exc.__cause__.errno != errno.EINVAL:
                    raise
        self._direct_reads = False
        raise _DirectRefused

    async def hash(self, path: str, size: int) -> Hasher:
        """Read ``path`` whole and hash it in one thread call (one reused buffer, no bytes
        objects)."""
        async with self._limit():
            try:
                return await self._guard("read", asyncio.to_thread(
                    checksum_file, self.full_path(path)))
            except TierError as exc:
                if gone(exc):
                    raise self._missing(path) from exc
                raise

    async def iter_read(self, path: str, size: int, part: int = PART_SIZE
                        ) -> AsyncIterator[Chunk]:
        """Stream ``path`` as :func:`~tierstore.direct.stream_file` reads it, several reads
        ahead, each chunk lent only until the next is asked for (copy what you keep)."""
        if size <= 0:
            return
        async with self._limit():
            try:
                async for view in stream_file(self.full_path(path), size):
                    yield view
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise self._translate("read", exc) from exc

    # -- writes ------------------------------------------------------------------------------

    async def written_size(self, path: str, digest: str | None = None
                           ) -> tuple[int | None, bool]:
        """The size of a file this process has just written, and whether the bytes
        :meth:`write` handed the kernel hash to ``digest`` and the file is still the one
        written (inode and modification time; reading the bytes back would read the page
        cache they were just copied into, not the disk)."""
        full = self.full_path(path)
        expected = self._vouched.pop(full, None)
        info = await self._file_info(full)
        if info is None:
            return None, False
        return int(info["size"]), expected == _receipt(info, digest)

    async def write(self, path: str, chunks: AsyncIterable[Chunk], *,
                    size: int | None = None) -> int:
        """Written chunk by chunk in threads, past the page cache where it can
        (:mod:`tierstore.direct`), each chunk hashed as it is handed to the kernel: the
        receipt :meth:`written_size` checks. A :class:`~tierstore.localcopy.LocalFile` is
        copied by the kernel instead, where that lands its checksum. Either writes over a
        file this tier kept (:mod:`.recycle`) when one of about the size is there."""
        full = self.full_path(path)
        self._vouched.pop(full, None)
        if isinstance(chunks, LocalFile):
            copied = await self._copy_local(full, chunks)
            if copied is not None:
                return copied
        hasher = Hasher()
        reuse = size is not None and await self._reuse(size, full)
        written = await self._write_blocking(lambda: _open_local(full, reuse=reuse), chunks,
                                             hasher)
        await self._vouch(full, hasher)
        return written

    async def write_files(self, files: Sequence[tuple[str, str, bytes]]) -> bool:
        """In :data:`WRITE_THREADS` threads, each taking its share of the files: each
        file written to its temporary name, fsynced and renamed; then each folder they went
        to fsynced once. The bytes are vouched for: they are the ones handed to the kernel,
        and each file's size is checked once they are."""
        fulls = [(self.full_path(tmp), self.full_path(path), data) for tmp, path, data in files]
        for _, full, _ in fulls:
            self._vouched.pop(full, None)

        async def part(files: Sequence[tuple[str, str, bytes]]) -> list[str]:
            async with self._limit():
                return await self._guard("write", asyncio.to_thread(
                    _write_files, files, self.root, self.config.fsync))

        threads = max(1, min(WRITE_THREADS, self.config.max_concurrency))
        folders = await asyncio.gather(*(part(fulls[i::threads]) for i in range(threads)))
        if self.config.fsync:
            await self._guard("sync", asyncio.to_thread(
                _sync_folders, {f: None for found in folders for f in found}))
        return True

    async def _vouch(self, full: str, hasher: Hasher) -> None:
        info = await self._call("stat", "info", full)
        self._vouched[full] = _receipt(info, hasher.hexdigest())

    async def _copy_local(self, full: str, source: LocalFile) -> int | None:
        """``source`` copied to ``full`` by the kernel (:mod:`tierstore.localcopy`), its
        bytes durable and vouched for as a streamed write's are; None when they did not
        land as ``source.checksum`` says or the kernel would not copy (nothing vouched)."""
        hasher = Hasher()
        try:
            async with self._limit():
                reuse = await self._reuse(source.size, full)
                copy = await self._guard("write", asyncio.to_thread(
                    functools.partial(KernelCopy, source.path, full, reuse=reuse)))
                try:
                    for start in range(0, source.size, COPY_PIECE):
                        want = min(COPY_PIECE, source.size - start)
                        got = await self._guard("write", asyncio.to_thread(
                            copy.piece, start, want, hasher))
                        if got < want:
                            break
                        if source.pace is not None:
                            await source.pace(got)
                finally:
                    landed = hasher.size == source.size and hasher.hexdigest() == source.checksum
                    await self._guard("write", asyncio.to_thread(copy.close))
        except (TierError, OSError) as exc:  # the stream decides what was wrong
            log.debug("tier %r: a kernel copy of %s failed (%s); streaming it", self.name,
                      source.path, exc)
            return None
        if not landed:
            log.warning("tier %r: a kernel copy of %s did not land its checksum; streaming it",
                        self.name, source.path)
            return None
        await self._vouch(full, hasher)
        return hasher.size

    async def _reuse(self, size: int, full: str) -> bool:
        """Whether a kept file of about ``size`` bytes is at ``full`` now, to write over."""
        try:
            return await asyncio.to_thread(self._recycler.take, size, full)
        except OSError:  # the folder could not be read: a new file, as if none were kept
            return False

    async def remove(self, path: str) -> None:
        """Delete ``path`` (a large file is kept for a while, to be written over: see
        :mod:`.recycle`) and the folders it leaves empty; what is gone already is fine."""
        full = self.full_path(path)
        self._vouched.pop(full, None)
        await self._guard("delete", asyncio.to_thread(_remove_file, full, self.root,
                                                      self._recycler))

    async def close(self) -> None:
        """Free the files this tier kept, then close as any tier."""
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self._recycler.drain)
        await super().close()

    async def rename(self, src: str, dst: str) -> None:
        """Move ``src`` to ``dst`` atomically."""
        src_full, dst_full = self.full_path(src), self.full_path(dst)
        await self._guard("rename", asyncio.to_thread(_replace_file, src_full, dst_full))

    async def sync(self, path: str) -> None:
        """Make ``path``'s bytes and its name durable: fsync the file, then every folder from
        its own up to the root (any of them may be new); unless the tier's ``fsync`` is off."""
        if self.config.fsync:
            await self._guard("sync", asyncio.to_thread(_sync_file, self.full_path(path),
                                                        self.root))


class _DirectRefused(Exception):
    """The filesystem refuses O_DIRECT: read the usual way."""


def _receipt(info: Mapping[str, Any], digest: str | None) -> str:
    """A local write's receipt: the file as written (its version: modification time and
    inode) and the checksum of what was handed to the kernel."""
    return f"{file_version(info)}:{digest}"


def _open_local(full: str, *, reuse: bool = False) -> DirectWriter:
    os.makedirs(os.path.dirname(full), exist_ok=True)
    return DirectWriter(full, reuse=reuse)


def _replace_file(src: str, dst: str, tries: int = 3) -> None:
    """Atomic rename into place; an empty folder left where the file goes is removed first
    (a key may take the name of a folder whose objects are gone). A folder another process
    removes as it empties (:func:`_remove_file`) between making it and the rename is made
    again."""
    for attempt in range(tries):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.isdir(dst):
            os.rmdir(dst)  # fails, as it should, if the folder is not empty
        try:
            os.replace(src, dst)
            return
        except FileNotFoundError:
            if attempt == tries - 1 or not os.path.exists(src):
                raise


def _sync_file(full: str, root: str) -> None:
    """fsync a file, then its folder and each folder above it up to ``root`` (their
    entries: a power cut may otherwise lose a renamed or newly created name). The file's
    pages, clean now, leave the page cache: a replica is written past it or copied by the
    kernel (:mod:`tierstore.localcopy`), and is read past it too."""
    for path in [full, *_folders(full, root)]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            if path == full:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _folders(full: str, root: str) -> list[str]:
    """The folders of ``full`` up to ``root``, deepest first."""
    folders, folder = [], os.path.dirname(full)
    while folder == root or folder.startswith(root + "/"):
        folders.append(folder)
        folder = os.path.dirname(folder)
    return folders


def _write_files(files: Sequence[tuple[str, str, bytes]], root: str, fsync: bool
                 ) -> list[str]:
    """Part of :meth:`LocalTier.write_files`' work (blocking); the folders the files went
    to. Every file is written and handed to writeback first, then each is fsynced (by then
    mostly on the disk: one journal commit covers many) and renamed. Small files stay in the
    page cache, where a read soon after finds them."""
    for tmp, _, data in files:
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            view, written = memoryview(data), 0
            while written < len(view):
                written += os.write(fd, view[written:])
            if fsync:  # starts writeback; dirty pages stay cached (clean ones would go)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    folders: dict[str, None] = {}
    for tmp, full, data in files:
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if fsync:
                os.fsync(fd)
            landed = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if landed != len(data):
            raise OSError(errno.EIO, f"{landed} bytes landed in {tmp}, expected {len(data)}")
        if tmp != full:
            _replace_file(tmp, full)
        folders.update(dict.fromkeys(_folders(full, root)))
    return list(folders)


def _sync_folders(folders: Iterable[str]) -> None:
    """fsync each folder once, deepest first (a new folder's entry in its parent after its
    own entries)."""
    for folder in sorted(folders, key=lambda f: -f.count("/")):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_file(full: str, root: str, recycler: Recycler | None = None) -> None:
    """Remove a file (kept by ``recycler`` if it will) and the folders it leaves empty, up
    to the root; tierstore's own folder (temporary names) stays, as writers of other
    processes may be about to use it."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # (a file where a
        if recycler is None or not recycler.keep(full):  # folder of its path would be:
            os.remove(full)  # nothing can be there)
    parent = os.path.dirname(full)
    reserved = f"{root}/{RESERVED_PREFIX}"
    while parent.startswith(root + "/") and not (
            parent == reserved or parent.startswith(reserved + "/")):
        try:
            os.rmdir(parent)
        except OSError:  # not empty (or already gone): stop climbing
            break
        parent = os.path.dirname(parent)
