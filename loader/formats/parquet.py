"""Parquet shards: a sample is a row; rows are read a row group at a time.

The index keeps each row group's first row and byte range (from the footer, which is all a
scan through a ranged reader reads), so a later increment can fetch single row groups; today
the loader reads and verifies whole shards and decodes one row group at a time.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ShardFormatError
from .base import Buffer, Layout, RangeReader, ShardFormat, ShardReader

if TYPE_CHECKING:
    from ..index import DatasetIndex, ShardEntry

__all__ = ["ParquetFormat"]

_FOOTER_GUESS = 64 * 1024  # one ranged read usually holds the whole footer


class ParquetFormat(ShardFormat):
    """Parquet files as shards; a raw sample is one row as ``{column: value}``.

    Parameters
    ----------
    columns
        The columns to read (all when None); the others are never decoded.
    """

    name = "parquet"

    def __init__(self, columns: Sequence[str] | None = None):
        self.columns = None if columns is None else list(columns)

    def __repr__(self) -> str:
        return f"ParquetFormat(columns={self.columns!r})"

    def scan(self, data: Buffer, key: str) -> Layout:
        return _layout(_metadata(pa.BufferReader(data), key))

    async def scan_ranged(self, read: RangeReader, size: int, key: str) -> Layout:
        if size < 12:
            raise ShardFormatError(f"{key!r} is not a Parquet file ({size} bytes)")
        tail_start = max(0, size - _FOOTER_GUESS)
        tail = await read(tail_start, size)
        footer = int.from_bytes(tail[-8:-4], "little") + 8
        if tail[-4:] != b"PAR1" or footer > size:
            raise ShardFormatError(f"{key!r} is not a Parquet file (no footer)")
        if footer > len(tail):
            tail_start = size - footer
            tail = await read(tail_start, size)
        return _layout(_metadata(pa.PythonFile(_TailFile(tail, tail_start, size)), key))

    def open(self, data: Buffer, shard: ShardEntry, index: DatasetIndex) -> ShardReader:
        try:
            file = pq.ParquetFile(pa.BufferReader(data))
        except (pa.ArrowException, OSError) as exc:
            raise ShardFormatError(f"{shard.key!r} is not a readable Parquet file: {exc}") \
                from exc
        meta, firsts, first = file.metadata, [], 0
        for i in range(meta.num_row_groups):
            firsts.append(first)
            first += meta.row_group(i).num_rows
        return _ParquetReader(file, shard.key, firsts or [0], self.columns)


def _metadata(source: Any, key: str) -> pq.FileMetaData:
    try:
        return pq.ParquetFile(source).metadata
    except (pa.ArrowException, OSError) as exc:
        raise ShardFormatError(f"{key!r} is not a readable Parquet file: {exc}") from exc


def _layout(meta: pq.FileMetaData) -> Layout:
    """Row count, and per row group ``[first_row, start, end]`` byte ranges."""
    groups, first = [], 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        starts, ends = [], []
        for c in range(group.num_columns):
            column = group.column(c)
            start = column.data_page_offset
            if column.dictionary_page_offset is not None and column.dictionary_page_offset > 0:
                start = min(start, column.dictionary_page_offset)
            starts.append(start)
            ends.append(start + column.total_compressed_size)
        groups.append([first, min(starts, default=0), max(ends, default=0)])
        first += group.num_rows
    return Layout(samples=meta.num_rows, meta={"row_groups": groups})


class _ParquetReader(ShardReader):
    """Rows of one shard; the row group of the last row asked for stays decoded."""

    def __init__(self, file: pq.ParquetFile, key: str, firsts: list[int],
                 columns: list[str] | None):
        self._file = file
        self._key = key
        self._firsts = firsts
        self._columns = columns
        self._group = -1
        self._rows: list[dict[str, Any]] = []

    def sample(self, i: int) -> dict[str, Any]:
        group = bisect.bisect_right(self._firsts, i) - 1
        if group != self._group:
            try:
                table = self._file.read_row_group(group, columns=self._columns)
            except (pa.ArrowException, OSError, KeyError) as exc:
                raise ShardFormatError(f"cannot read row group {group} of {self._key!r} "
                                       f"(columns {self._columns}): {exc}") from exc
            self._group, self._rows = group, table.to_pylist()
        return self._rows[i - self._firsts[group]]


class _TailFile:
    """A read-only file of ``size`` bytes of which only the tail is known: enough for
    pyarrow to parse a Parquet footer without the rest of the object."""

    def __init__(self, tail: bytes, tail_start: int, size: int):
        self._tail, self._start, self._size, self._pos = tail, tail_start, size, 0
        self.closed = False

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if self._pos < self._start:
            raise OSError(f"read at byte {self._pos}, before the footer")
        stop = self._size if n < 0 else min(self._size, self._pos + n)
        out = self._tail[self._pos - self._start:stop - self._start]
        self._pos = stop
        return out

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
