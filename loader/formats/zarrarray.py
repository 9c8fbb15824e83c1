"""Zarr v3 arrays: a sample is a slice along the first axis; a shard is one chunk object.

Reads are chunk-aligned: the array must be chunked along its first axis only (each chunk
spans the other axes whole), so one chunk object holds whole samples. A chunk is decoded
once, by running the array's own codecs (zarr's synchronous codec methods) over the verified
bytes, without a zarr store or event loop per chunk. Chunks that were never written (all fill
value) are indexed with no bytes and read as the fill value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ShardFormatError
from .base import Buffer, Layout, ShardFormat, ShardReader

if TYPE_CHECKING:
    from ..index import DatasetIndex, ShardEntry

__all__ = ["MAX_CHUNKS", "MAX_CHUNK_BYTES", "ZarrFormat", "check_chunks", "chunk_layouts"]

META_KEY = "zarr"  # where the array's metadata sits in the index's dataset-level meta
MAX_CHUNK_BYTES = 2**31
"""The most bytes a chunk may decode to. A reader holds a chunk whole in memory, decoded (a
chunk never written is made of its fill value, from the shape alone), so metadata that
claims more would have it allocate what it cannot; Blosc refuses chunks this large too."""
MAX_CHUNKS = 2**20
"""The most chunks an indexed array may have: each is an index entry (about 100 bytes of
JSON that every loader reads at start-up) and a catalog lookup at indexing."""


def chunk_layouts(metadata: Mapping[str, Any], array: str) -> list[tuple[str, Layout]]:
    """``(key, layout)`` of every chunk of the array whose ``zarr.json`` is ``metadata`` and
    whose objects live under the key ``array``, in first-axis order."""
    meta = _parse(metadata, array)
    rows, chunk_rows = meta.shape[0], meta.chunk_grid.chunk_shape[0]
    out = []
    for i in range(_chunk_count(meta, array)):
        coords = (i,) + (0,) * (len(meta.shape) - 1)
        key = f"{array}/{meta.encode_chunk_key(coords)}"
        count = min(chunk_rows, rows - i * chunk_rows)
        out.append((key, Layout(samples=count, meta={"chunk": i})))
    return out


def _parse(metadata: Mapping[str, Any], array: str) -> Any:
    from zarr.core.chunk_grids import RegularChunkGrid
    from zarr.core.metadata.v3 import ArrayV3Metadata

    if metadata.get("zarr_format") != 3 or metadata.get("node_type") != "array":
        raise ShardFormatError(f"{array!r} is not a Zarr v3 array")
    try:
        meta = ArrayV3Metadata.from_dict(dict(metadata))
    except (ValueError, TypeError, KeyError) as exc:
        raise ShardFormatError(f"{array!r}: unreadable Zarr metadata: {exc}") from exc
    if not meta.shape:
        raise ShardFormatError(f"{array!r} is 0-dimensional: it has no first axis to index")
    if not isinstance(meta.chunk_grid, RegularChunkGrid):
        raise ShardFormatError(f"{array!r}: only regular chunk grids are read")
    chunks = meta.chunk_grid.chunk_shape
    if tuple(chunks[1:]) != tuple(meta.shape[1:]):
        raise ShardFormatError(
            f"{array!r} is chunked {tuple(chunks)} for shape {tuple(meta.shape)}: the loader "
            "reads arrays chunked along the first axis only (chunks spanning the other axes "
            "whole); rechunk it")
    if any(getattr(c, "_decode_sync", None) is None for c in meta.codecs):
        names = [type(c).__name__ for c in meta.codecs]
        raise ShardFormatError(f"{array!r}: codecs {names} cannot be decoded chunk by chunk "
                               "(the sharding codec is not read yet)")
    nbytes = math.prod(chunks) * meta.dtype.to_native_dtype().itemsize
    if nbytes > MAX_CHUNK_BYTES:
        raise ShardFormatError(f"{array!r}: chunks {tuple(chunks)} of {meta.dtype} decode to "
                               f"{nbytes} bytes each, more than the {MAX_CHUNK_BYTES} a "
                               "reader holds at once; rechunk it")
    _chunk_count(meta, array)  # refuses more chunks than an index holds
    return meta


def _chunk_count(meta: Any, array: str) -> int:
    """How many chunks the array's first axis has, refusing more than :data:`MAX_CHUNKS`."""
    rows, chunk_rows = meta.shape[0], meta.chunk_grid.chunk_shape[0]
    count = -(-rows // chunk_rows) if chunk_rows else 0
    if count > MAX_CHUNKS:
        raise ShardFormatError(f"{array!r}: {rows} rows in chunks of {chunk_rows} are {count} "
                               f"chunks, more than the {MAX_CHUNKS} one index holds; rechunk "
                               "it with more rows per chunk")
    return count


def check_chunks(meta: Mapping[str, Any], shards: Sequence[ShardEntry]) -> None:
    """Check the Zarr part of an index before anything is read: the array's metadata (as
    :func:`chunk_layouts` would), and that no chunk claims more rows than a chunk holds."""
    info = meta.get(META_KEY)
    if not isinstance(info, Mapping) or not isinstance(info.get("metadata"), Mapping):
        raise ShardFormatError("the index names no Zarr array; rewrite it with "
                               "index_zarr_array")
    array = str(info.get("array"))
    chunk_rows = _parse(info["metadata"], array).chunk_grid.chunk_shape[0]
    for shard in shards:
        if shard.samples > chunk_rows:
            raise ShardFormatError(f"chunk {shard.key!r} of {array!r} claims {shard.samples} "
                                   f"rows; a chunk holds {chunk_rows}")


class ZarrFormat(ShardFormat):
    """Chunks of one Zarr v3 array; a raw sample is a NumPy array (one first-axis slice)."""

    name = "zarr"
    self_describing = False

    def __init__(self) -> None:
        self._decoders: dict[str, _ChunkDecoder] = {}  # per array, built where it is used

    def __getstate__(self) -> dict[str, object]:
        return {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()  # type: ignore[misc]

    def scan(self, data: Buffer, key: str) -> Layout:
        raise ShardFormatError(f"a Zarr chunk ({key!r}) does not describe itself: index the "
                               "whole array (index_zarr_array or write_zarr_array)")

    def open(self, data: Buffer, shard: ShardEntry, index: DatasetIndex) -> ShardReader:
        info = index.meta.get(META_KEY)
        if not isinstance(info, Mapping):
            raise ShardFormatError("the index names no Zarr array; rewrite it with "
                                   "index_zarr_array")
        array = str(info["array"])
        decoder = self._decoders.get(array)
        if decoder is None:
            decoder = self._decoders[array] = _ChunkDecoder(info["metadata"], array)
        return _ZarrReader(decoder.decode(data), shard.samples)


class _ChunkDecoder:
    """The codec chain of one array, run backwards over one chunk's bytes."""

    def __init__(self, metadata: Mapping[str, Any], array: str):
        from zarr.abc.codec import ArrayArrayCodec, ArrayBytesCodec, BytesBytesCodec
        from zarr.core.array_spec import ArrayConfig
        from zarr.core.buffer import default_buffer_prototype

        meta = _parse(metadata, array)
        spec = meta.get_chunk_spec((0,) * len(meta.shape), ArrayConfig.from_dict({}),
                                   default_buffer_prototype())
        self._fill = spec
        self._array_array: list[tuple[Any, Any]] = []
        for codec in meta.codecs:
            if isinstance(codec, ArrayArrayCodec):
                self._array_array.append((codec, spec))
                spec = codec.resolve_metadata(spec)
        self._array_bytes: list[tuple[Any, Any]] = [
            (c, spec) for c in meta.codecs if isinstance(c, ArrayBytesCodec)]
        spec = self._array_bytes[0][0].resolve_metadata(spec)
        self._bytes_bytes: list[tuple[Any, Any]] = []
        for codec in meta.codecs:
            if isinstance(codec, BytesBytesCodec):
                self._bytes_bytes.append((codec, spec))
                spec = codec.resolve_metadata(spec)

    def decode(self, data: Buffer) -> np.ndarray:
        from zarr.core.buffer.cpu import Buffer as ZarrBuffer

        if not len(data):  # a chunk never written: all fill value
            spec = self._fill
            return np.full(spec.shape, spec.fill_value, dtype=spec.dtype.to_native_dtype())
        chunk: Any = ZarrBuffer.from_bytes(bytes(data))
        for codec, spec in reversed(self._bytes_bytes):
            chunk = codec._decode_sync(chunk, spec)
        codec, spec = self._array_bytes[0]
        chunk = codec._decode_sync(chunk, spec)
        for codec, spec in reversed(self._array_array):
            chunk = codec._decode_sync(chunk, spec)
        return np.asarray(chunk.as_numpy_array())


class _ZarrReader(ShardReader):
    def __init__(self, chunk: np.ndarray, rows: int):
        self._chunk = chunk
        self._rows = rows

    def sample(self, i: int) -> np.ndarray:
        if not 0 <= i < self._rows:
            raise IndexError(f"row {i} of a chunk of {self._rows}")
        return np.array(self._chunk[i])  # a copy: the chunk can go
