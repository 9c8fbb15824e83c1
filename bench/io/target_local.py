"""Local files: positional reads and writes on file descriptors (``os.preadv``/``pwritev``),
with ``direct=1`` as ``O_DIRECT``, and fio's defaults ``invalidate=1`` (the page cache of each
file is dropped before the job, so buffered reads start cold) and ``fadvise_hint=1`` (random
jobs turn the kernel's read-ahead off, sequential ones ask for more), as fio's do."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from typing import Any

from ..common.errors import BenchError, TargetError
from .target import BlockingTarget, filler

__all__ = ["LocalTarget"]


class LocalTarget(BlockingTarget):
    """Files on a local filesystem."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._fds: list[int] = []

    # -- the starting process ------------------------------------------------------------

    async def existing_size(self, index: int) -> int | None:
        try:
            return os.stat(self.paths[index]).st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TargetError(f"{self.paths[index]}: {exc.strerror}") from exc

    async def layout(self, size: int, *, fill: bool) -> None:
        await asyncio.to_thread(self._layout, size, fill)

    def _layout(self, size: int, fill: bool) -> None:
        for path in self.paths:
            try:
                with open(path, "ab") as handle:  # its folder must exist, as for fio
                    have = handle.tell()
                    if have >= size:
                        continue
                    if fill:  # reads need data: fio writes the whole file ("Laying out")
                        for chunk in filler(size - have):
                            handle.write(chunk)
                        handle.flush()
                        os.fsync(handle.fileno())  # else invalidate cannot drop the pages
                    else:
                        handle.truncate(size)
            except OSError as exc:
                raise TargetError(f"{path}: cannot lay out {size} bytes ({exc.strerror})") \
                    from exc

    async def cleanup(self) -> None:
        if self.options.unlink:
            for path in self.paths:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)

    # -- the job process -----------------------------------------------------------------

    async def open(self) -> None:
        flags = os.O_RDWR if self.options.writes else os.O_RDONLY
        if self.options.direct:
            if not hasattr(os, "O_DIRECT"):
                raise BenchError("direct=1: this platform has no O_DIRECT")
            flags |= os.O_DIRECT
        for path in self.paths:
            self._fds.append(self._open(path, flags))

    def _open(self, path: str, flags: int) -> int:
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            if self.options.direct and exc.errno == errno.EINVAL:
                raise BenchError(f"direct=1: the filesystem of {path} does not support "
                                 "O_DIRECT (EINVAL); run with direct=0") from exc
            raise TargetError(f"{path}: cannot open ({exc.strerror})") from exc
        if self.options.invalidate and not self.options.direct:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        if self.options.fadvise_hint:  # as fio does: no read-ahead for random I/O
            advice = (os.POSIX_FADV_SEQUENTIAL if self.options.sequential
                      else os.POSIX_FADV_RANDOM)
            os.posix_fadvise(fd, 0, 0, advice)
        return fd

    def new_pass(self) -> None:
        if self.options.invalidate and not self.options.direct:
            for fd in self._fds:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def fileno(self, index: int) -> int:
        return self._fds[index]

    def fsync(self, index: int) -> None:
        os.fsync(self._fds[index])

    async def read(self, index: int, offset: int, length: int) -> int:
        buffer = bytearray(length)
        return await asyncio.to_thread(os.preadv, self._fds[index], [buffer], offset)

    async def write(self, index: int, offset: int, data: memoryview) -> int:
        return await asyncio.to_thread(os.pwritev, self._fds[index], [data], offset)

    async def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "files": [os.path.abspath(p) for p in self.paths],
                "direct": self.options.direct}
