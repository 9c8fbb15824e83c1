"""Ingest: write a dataset's shards into a store and its index beside them.

Each helper builds a shard in memory, learns its layout from those bytes (nothing is read
back for it), puts it (the store verifies what landed and returns its size and checksum), and
finally writes ``<prefix>/index.json``. Tar shards are packed in a thread while the shard
before uploads, so that making a shard and sending one overlap.
"""

from __future__ import annotations

import asyncio
import io
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tierstore.store import Store

from .formats.base import Layout, ShardFormat
from .formats.parquet import ParquetFormat
from .formats.raw import RawFormat
from .formats.tar import TarFormat, pack_tar_layout
from .index import (
    AnyStore,
    DatasetIndex,
    ShardEntry,
    _aio,
    _run,
    aindex_zarr_array,
    asave_index,
)

__all__ = ["write_parquet_shards", "write_raw_files", "write_tar_shards", "write_zarr_array"]

SHARD_BYTES = 64 * 2**20  # the shard size MosaicML Streaming and LitData default to


async def _put_shard(store: Store, key: str, data: bytes, fmt: ShardFormat, *,
                     tier: str | None, overwrite: bool, layout: Layout | None = None
                     ) -> ShardEntry:
    """Put one shard; its ``layout`` found in ``data`` unless the packer knew it."""
    layout = fmt.scan(data, key) if layout is None else layout
    info = await store.put(key, data, tier=tier, overwrite=overwrite)
    return ShardEntry.of(key, fmt.name, layout, info.size, info.checksum, data)


def _batches(samples: Iterable[Mapping[str, Any]], count: int, nbytes: int
             ) -> Iterator[list[Mapping[str, Any]]]:
    """Groups of at most ``count`` samples, cut early once ``nbytes`` of payload are held."""
    batch: list[Mapping[str, Any]] = []
    held = 0
    for sample in samples:
        batch.append(sample)
        held += sum(len(v) for k, v in sample.items() if not k.startswith("__"))
        if len(batch) >= count or held >= nbytes:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


async def _write_tar(store: Store, prefix: str, samples: Iterable[Mapping[str, Any]],
                     count: int, nbytes: int, tier: str | None, overwrite: bool
                     ) -> DatasetIndex:
    fmt, entries = TarFormat(), []
    batches = _batches(samples, count, nbytes)

    def pack_next() -> tuple[bytes, Layout] | None:  # in a thread: the samples drawn too
        batch = next(batches, None)
        return None if batch is None else pack_tar_layout(batch)

    uploading: asyncio.Future[ShardEntry] | None = None  # the shard before, one at most
    try:
        for n in itertools.count():
            packed = await asyncio.to_thread(pack_next)
            if uploading is not None:
                entries.append(await uploading)
                uploading = None
            if packed is None:
                break
            uploading = asyncio.ensure_future(_put_shard(
                store, f"{prefix}/shard-{n:06d}.tar", packed[0], fmt, tier=tier,
                overwrite=overwrite, layout=packed[1]))
    except BaseException:
        if uploading is not None:  # a put cancelled midway is rolled back
            uploading.cancel()
            await asyncio.gather(uploading, return_exceptions=True)
        raise
    index = DatasetIndex(prefix=prefix, shards=tuple(entries))
    await asave_index(store, index, tier=tier, overwrite=overwrite)
    return index


def write_tar_shards(store: AnyStore, prefix: str, samples: Iterable[Mapping[str, Any]], *,
                     samples_per_shard: int = 1000, shard_bytes: int = SHARD_BYTES,
                     tier: str | None = None, overwrite: bool = False) -> DatasetIndex:
    """Write WebDataset-style tar shards ``<prefix>/shard-NNNNNN.tar`` and their index.

    Parameters
    ----------
    store : SyncStore or Store
        A :class:`~tierstore.SyncStore` (or a :class:`~tierstore.Store`, run on fsspec's IO
        thread).
    prefix : str
        The dataset's folder of keys; the shards and ``index.json`` are written under it.
    samples : iterable of mapping
        Mappings with a ``__key__`` (no dot in its last segment) and ``ext -> bytes`` fields,
        in the dataset's canonical order; consumed as they come, a shard's worth at a time
        in a worker thread (never two at once) while the shard before uploads.
    samples_per_shard, shard_bytes : int
        A shard is closed at whichever limit comes first (1000 samples, 64 MiB of payload by
        default).
    tier : str, optional
        The tier the shards and the index go to; the config's default if None.
    overwrite : bool, default False
        Whether they may replace existing objects.

    Returns
    -------
    DatasetIndex
        The index written.

    Raises
    ------
    ObjectExists
        If a shard or the index exists and ``overwrite`` is False.
    """
    index: DatasetIndex = _run(_write_tar(_aio(store), prefix.strip("/"), samples,
                                          samples_per_shard, shard_bytes, tier, overwrite))
    return index


async def _write_parquet(store: Store, prefix: str, table: pa.Table, rows: int,
                         group_rows: int | None, tier: str | None, overwrite: bool
                         ) -> DatasetIndex:
    fmt, entries = ParquetFormat(), []
    for n, start in enumerate(range(0, max(table.num_rows, 1), rows)):
        out = io.BytesIO()
        pq.write_table(table.slice(start, rows), out, row_group_size=group_rows or rows)
        entries.append(await _put_shard(store, f"{prefix}/shard-{n:06d}.parquet",
                                        out.getvalue(), fmt, tier=tier, overwrite=overwrite))
    index = DatasetIndex(prefix=prefix, shards=tuple(entries))
    await asave_index(store, index, tier=tier, overwrite=overwrite)
    return index


def write_parquet_shards(store: AnyStore, prefix: str, table: pa.Table, *,
                         rows_per_shard: int = 100_000, row_group_rows: int | None = None,
                         tier: str | None = None, overwrite: bool = False) -> DatasetIndex:
    """Write a table as Parquet shards ``<prefix>/shard-NNNNNN.parquet`` and their index.

    Parameters
    ----------
    store : SyncStore or Store
        A :class:`~tierstore.SyncStore` (or a :class:`~tierstore.Store`, run on fsspec's IO
        thread).
    prefix : str
        The dataset's folder of keys; the shards and ``index.json`` are written under it.
    table : pyarrow.Table
        The rows, in the dataset's canonical order (an empty table makes one empty shard).
    rows_per_shard : int, default 100_000
        Rows per shard.
    row_group_rows : int, optional
        Rows per row group (rows are read a row group at a time); ``rows_per_shard`` if
        None.
    tier : str, optional
        The tier the shards and the index go to; the config's default if None.
    overwrite : bool, default False
        Whether they may replace existing objects.

    Returns
    -------
    DatasetIndex
        The index written.

    Raises
    ------
    ObjectExists
        If a shard or the index exists and ``overwrite`` is False.
    ValueError
        If ``rows_per_shard`` or ``row_group_rows`` is not positive.
    """
    if rows_per_shard < 1 or (row_group_rows is not None and row_group_rows < 1):
        raise ValueError("rows_per_shard and row_group_rows must be positive")
    index: DatasetIndex = _run(_write_parquet(_aio(store), prefix.strip("/"), table,
                                              rows_per_shard, row_group_rows, tier,
                                              overwrite))
    return index


async def _write_raw(store: Store, prefix: str, files: Iterable[tuple[str, bytes]],
                     tier: str | None, overwrite: bool) -> DatasetIndex:
    fmt = RawFormat()
    entries = [await _put_shard(store, f"{prefix}/{name}", bytes(data), fmt, tier=tier,
                                overwrite=overwrite) for name, data in files]
    index = DatasetIndex(prefix=prefix, shards=tuple(entries))
    await asave_index(store, index, tier=tier, overwrite=overwrite)
    return index


def write_raw_files(store: AnyStore, prefix: str, files: Iterable[tuple[str, bytes]], *,
                    tier: str | None = None, overwrite: bool = False) -> DatasetIndex:
    """Write one object per sample, and the index (one shard of one sample per object).

    Parameters
    ----------
    store : SyncStore or Store
        A :class:`~tierstore.SyncStore` (or a :class:`~tierstore.Store`, run on fsspec's IO
        thread).
    prefix : str
        The dataset's folder of keys; the shards and ``index.json`` are written under it.
    files : iterable of (str, bytes)
        ``(name, bytes)`` of each sample, written to ``<prefix>/<name>``, in the dataset's
        canonical order.
    tier : str, optional
        The tier the shards and the index go to; the config's default if None.
    overwrite : bool, default False
        Whether they may replace existing objects.

    Returns
    -------
    DatasetIndex
        The index written.

    Raises
    ------
    ObjectExists
        If a shard or the index exists and ``overwrite`` is False.
    """
    index: DatasetIndex = _run(_write_raw(_aio(store), prefix.strip("/"), files, tier,
                                          overwrite))
    return index


def _zarr_objects(array: np.ndarray, chunk_rows: int, compressors: Any) -> dict[str, bytes]:
    """The objects of ``array`` as a Zarr v3 array (``zarr.json`` and chunks), by key."""
    import zarr
    from zarr.core.sync import sync as zarr_sync
    from zarr.storage import MemoryStore

    memory = MemoryStore()
    target = zarr.create_array(memory, shape=array.shape, dtype=array.dtype,
                               chunks=(chunk_rows, *array.shape[1:]),
                               compressors=compressors, config={"write_empty_chunks": True})
    target[...] = array
    items: dict[str, bytes] = zarr_sync(_memory_items(memory))
    return items


async def _memory_items(memory: Any) -> dict[str, bytes]:
    from zarr.core.buffer import default_buffer_prototype

    out = {}
    async for key in memory.list():
        buffer = await memory.get(key, prototype=default_buffer_prototype())
        out[key] = buffer.to_bytes()
    return out


async def _write_zarr(store: Store, prefix: str, objects: dict[str, bytes], name: str,
                      tier: str | None, overwrite: bool) -> DatasetIndex:
    for key, data in sorted(objects.items()):
        await store.put(f"{prefix}/{name}/{key}", data, tier=tier, overwrite=overwrite)
    return await aindex_zarr_array(store, prefix, f"{prefix}/{name}", tier=tier,
                                   overwrite=overwrite)


def write_zarr_array(store: AnyStore, prefix: str, array: np.ndarray, *, chunk_rows: int,
                     compressors: Any = "auto", name: str = "data", tier: str | None = None,
                     overwrite: bool = False) -> DatasetIndex:
    """Write an array as a Zarr v3 array and index it: a sample is ``array[i]``.

    Parameters
    ----------
    store : SyncStore or Store
        A :class:`~tierstore.SyncStore` (or a :class:`~tierstore.Store`, run on fsspec's IO
        thread).
    prefix : str
        The dataset's folder of keys; the shards and ``index.json`` are written under it.
    array : numpy.ndarray
        The samples, along its first axis (at least one axis).
    chunk_rows : int
        The chunks' length along the first axis (1 or more): a chunk object is a shard.
    compressors : Any, default "auto"
        As :func:`zarr.create_array` takes them.
    name : str, default "data"
        The array is written under ``<prefix>/<name>``.
    tier : str, optional
        The tier the shards and the index go to; the config's default if None.
    overwrite : bool, default False
        Whether they may replace existing objects.

    Returns
    -------
    DatasetIndex
        The index written.

    Raises
    ------
    ObjectExists
        If a shard or the index exists and ``overwrite`` is False.
    ValueError
        If the array has no axis or ``chunk_rows`` is under 1.
    """
    if chunk_rows < 1 or array.ndim < 1:
        raise ValueError("need an array of at least one axis and chunk_rows >= 1")
    objects = _zarr_objects(array, chunk_rows, compressors)
    index: DatasetIndex = _run(_write_zarr(_aio(store), prefix.strip("/"), objects, name, tier,
                                           overwrite))
    return index
