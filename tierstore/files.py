"""File objects over the store: a seekable reader and a writer that commits on close."""

from __future__ import annotations

import io
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sync import SyncStore

__all__ = ["ObjectReader", "ObjectWriter"]


class ObjectReader(io.RawIOBase):
    """A seekable, read-only view of one object; each read is a ranged read of the store.

    Wrap it in :class:`io.BufferedReader` (as :meth:`SyncStore.open` does) for small reads.
    """

    def __init__(self, store: SyncStore, key: str, size: int):
        self._store = store
        self.name = key
        self.size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), max(0, self.size - self._pos))
        if want == 0:
            return 0
        data = self._store.cat(self.name, self._pos, self._pos + want)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def readall(self) -> bytes:
        data = self._store.cat(self.name, self._pos, None) if self._pos < self.size else b""
        self._pos += len(data)
        return data


class ObjectWriter(io.RawIOBase):
    """Buffers writes in a spooled temporary file and puts the object on close.

    Nothing is visible in the store until :meth:`close` commits it; :meth:`discard` (or an
    exception inside a ``with`` block) drops the bytes instead.
    """

    def __init__(self, store: SyncStore, key: str, *, tier: str | None = None,
                 overwrite: bool = True, spool: int = 64 * 2**20):
        self._store = store
        self.name = key
        self._tier = tier
        self._overwrite = overwrite
        self._buffer = tempfile.SpooledTemporaryFile(max_size=spool)  # noqa: SIM115 (closed in close)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        return self._buffer.write(data)

    def discard(self) -> None:
        self._buffer.close()
        super().close()

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._buffer.seek(0)
            self._store.put(self.name, self._buffer, tier=self._tier, overwrite=self._overwrite)
        finally:
            self._buffer.close()
            super().close()
