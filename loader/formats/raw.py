"""Raw files: one object per sample (an image folder kept as it is)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Buffer, Layout, RangeReader, ShardFormat, ShardReader

if TYPE_CHECKING:
    from ..index import DatasetIndex, ShardEntry

__all__ = ["RawFormat"]


class RawFormat(ShardFormat):
    """Each object is one sample; a raw sample is ``{"__key__": key, "data": bytes}``."""

    name = "raw"

    def scan(self, data: Buffer, key: str) -> Layout:
        return Layout(samples=1, offsets=(0, len(data)))

    async def scan_ranged(self, read: RangeReader, size: int, key: str) -> Layout:
        return Layout(samples=1, offsets=(0, size))  # nothing to read

    def open(self, data: Buffer, shard: ShardEntry, index: DatasetIndex) -> ShardReader:
        return _RawReader(bytes(data), shard.key)


class _RawReader(ShardReader):
    def __init__(self, data: bytes, key: str):
        self._data = data
        self._key = key

    def sample(self, i: int) -> dict[str, Any]:
        if i != 0:
            raise IndexError(f"{self._key!r} holds one sample, not {i + 1}")
        return {"__key__": self._key, "data": self._data}
