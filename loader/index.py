"""The dataset index: one object, ``<prefix>/index.json``, that says everything a loader needs.

For each shard: its key, format, sample count, size and checksum (the store's own, from
``stat`` at ingest), per-sample byte ranges where the format has them, and, where the writer
had the shard's bytes, the checksums of its 4 MiB blocks (a reader starts on a shard's first
samples once their blocks are checked, before the rest arrives: :mod:`.landing`) and of each
sample's byte range (a reader of a shard on its node's own disk reads each sample on its own
when it is due, checked against its own checksum: :mod:`.samples`). A loader
reads this one object at start-up and then only ranged reads of known sizes: it never lists
the store, never asks an object's size (the HEAD an S3 client would otherwise send before each
read), and verifies every shard it reads against the checksums recorded here. The index
itself is not trusted: before anything is read, every size it claims is bounded by the size
the catalog records for that object, and a Zarr array's chunk shapes by what a reader can hold, so a
damaged or hostile index is an :class:`InvalidIndex`, never a flood of reads or an allocation
that cannot succeed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
from fsspec.asyn import get_loop, sync

from tierstore.checksum import ALGORITHM, checksum
from tierstore.keys import validate_key
from tierstore.store import Store
from tierstore.sync import SyncStore

from .errors import InvalidIndex, ShardFormatError
from .formats import FORMATS, format_for_key, resolve_formats
from .formats.base import Buffer, Layout
from .formats.zarrarray import META_KEY, ZarrFormat, check_chunks, chunk_layouts

__all__ = [
    "BLOCK_SIZE",
    "INDEX_NAME",
    "DatasetIndex",
    "ShardEntry",
    "block_checksums",
    "index_key",
    "index_zarr_array",
    "range_checksums",
    "read_index",
    "save_index",
    "write_index",
]

INDEX_NAME = "index.json"
KIND = "tierstore-dataset-index"
VERSION = 1
BLOCK_SIZE = 4 * 2**20  # shards are checked in blocks of this size as they arrive (.landing):
# a reader can start on a shard's first samples before the rest is read; 16 checksums for a
# shard of 64 MiB keep the index small
AnyStore = SyncStore | Store


@dataclass(frozen=True, slots=True)
class ShardEntry:
    """One shard as the index records it.

    Attributes
    ----------
    key : str
        The shard's key.
    format : str
        Its format's name (``tar``, ``parquet``, ``zarr``, ``raw``).
    samples : int
        How many samples it holds.
    size : int
        Its size in bytes.
    checksum : str
        The store's own checksum of it, from ``stat`` at ingest.
    offsets : tuple of int, optional
        Per-sample byte ranges where the format has them (see :class:`Layout`).
    meta : mapping, default {}
        Anything else the format needs to read it (JSON-compatible).
    block_size : int, default 0
        The shard's bytes are also checked in blocks of this size, as they arrive (0: only
        as a whole).
    blocks : tuple of str, default ()
        The checksums of those blocks (none: only as a whole).
    sample_checksums : tuple of str, default ()
        The checksum of each sample's range ``[offsets[i], offsets[i + 1])``.
    """

    key: str
    format: str
    samples: int
    size: int
    checksum: str
    offsets: tuple[int, ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    block_size: int = 0  # the shard's bytes are also checked in blocks of this size...
    blocks: tuple[str, ...] = ()  # ...whose checksums these are (none: only as a whole)
    sample_checksums: tuple[str, ...] = ()  # of each sample's range [offsets[i], offsets[i+1])

    @classmethod
    def of(cls, key: str, fmt: str, layout: Layout, size: int, checksum: str,
           data: Buffer | None = None, block_size: int = BLOCK_SIZE) -> ShardEntry:
        """Make the index entry of a shard.

        Parameters
        ----------
        key : str
            The shard's key.
        fmt : str
            Its format's name.
        layout : Layout
            What it holds.
        size : int
            Its size in bytes.
        checksum : str
            The store's checksum of it.
        data : bytes, bytearray or memoryview, optional
            Its bytes: with them the entry records its blocks' checksums and (for a format
            whose samples each lie in their own byte range) its samples'.
        block_size : int, default BLOCK_SIZE
            The size of the blocks checked (4 MiB); a shard of one block or less has only
            its whole checksum.

        Returns
        -------
        ShardEntry
            The entry.
        """
        blocks = block_checksums(data, block_size) if data is not None else ()
        samples = range_checksums(data, layout.offsets) \
            if data is not None and layout.offsets is not None else ()
        return cls(key, fmt, layout.samples, size, checksum, layout.offsets, dict(layout.meta),
                   block_size if blocks else 0, blocks, samples)

    def to_json(self) -> dict[str, Any]:
        """Describe the entry as the index's JSON holds it.

        Returns
        -------
        dict
            ``key``, ``format``, ``samples``, ``size`` and ``checksum``; ``offsets``,
            ``meta``, ``blocks`` (``size`` and ``checksums``) and ``sample_checksums`` where
            the entry has them.
        """
        out: dict[str, Any] = {"key": self.key, "format": self.format, "samples": self.samples,
                               "size": self.size, "checksum": self.checksum}
        if self.offsets is not None:
            out["offsets"] = list(self.offsets)
        if self.meta:
            out["meta"] = dict(self.meta)
        if self.blocks:
            out["blocks"] = {"size": self.block_size, "checksums": list(self.blocks)}
        if self.sample_checksums:
            out["sample_checksums"] = list(self.sample_checksums)
        return out


def block_checksums(data: Buffer, block_size: int = BLOCK_SIZE) -> tuple[str, ...]:
    """Checksums of ``data``'s consecutive blocks of ``block_size`` bytes (the last may be
    shorter); none for data of one block or less, which its whole checksum covers."""
    if len(data) <= block_size:
        return ()
    view = memoryview(data).cast("B")
    return tuple(checksum(view[lo:lo + block_size]) for lo in range(0, len(view), block_size))


def range_checksums(data: Buffer, offsets: Sequence[int]) -> tuple[str, ...]:
    """Checksums of ``data``'s ranges between consecutive ``offsets`` (a shard's samples)."""
    view = memoryview(data).cast("B")
    return tuple(checksum(view[lo:hi]) for lo, hi in pairwise(offsets))


@dataclass(frozen=True)
class DatasetIndex:
    """The shards of a dataset, in their canonical order, and dataset-level metadata.

    ``len(index)`` is the number of samples in the dataset.

    Attributes
    ----------
    prefix : str
        The dataset's folder of keys; the index lives at ``<prefix>/index.json``.
    shards : tuple of ShardEntry
        The shards, in their canonical order.
    meta : mapping, default {}
        Dataset-level metadata (a Zarr array's, say).
    created : float, default the time now
        When the index was made, in Unix seconds.
    starts : numpy.ndarray
        Computed, not given: the global id of each shard's first sample, and the number of
        samples after the last (``len(shards) + 1`` int64 values).
    """

    prefix: str
    shards: tuple[ShardEntry, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    starts: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counts = np.fromiter((s.samples for s in self.shards), dtype=np.int64,
                             count=len(self.shards))
        starts = np.zeros(len(self.shards) + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        object.__setattr__(self, "starts", starts)

    def __len__(self) -> int:
        """The number of samples in the dataset."""
        return int(self.starts[-1])

    @property
    def counts(self) -> np.ndarray:
        """Samples per shard."""
        return np.diff(self.starts)

    @property
    def total_bytes(self) -> int:
        return sum(s.size for s in self.shards)

    @property
    def formats(self) -> set[str]:
        return {s.format for s in self.shards}

    def locate(self, sample: int) -> tuple[int, int]:
        """Find which shard holds a sample.

        Parameters
        ----------
        sample : int
            The global sample id.

        Returns
        -------
        tuple of (int, int)
            ``(shard position, sample within shard)``.
        """
        shard = int(np.searchsorted(self.starts, sample, side="right")) - 1
        return shard, sample - int(self.starts[shard])

    def to_json(self) -> str:
        """Serialise the index as ``index.json`` holds it.

        Returns
        -------
        str
            Compact JSON: the kind and version, ``prefix``, ``created``, the checksum
            algorithm, ``samples``, ``meta`` and ``shards`` (each :meth:`ShardEntry.to_json`).
        """
        return json.dumps({"kind": KIND, "version": VERSION, "prefix": self.prefix,
                           "created": self.created, "checksum": ALGORITHM,
                           "samples": len(self), "meta": dict(self.meta),
                           "shards": [s.to_json() for s in self.shards]},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "index") -> DatasetIndex:
        """Parse and validate an index.

        Parameters
        ----------
        text : str or bytes
            The JSON.
        source : str, default "index"
            Where it came from, for messages.

        Returns
        -------
        DatasetIndex
            The index.

        Raises
        ------
        InvalidIndex
            Naming the field, for every problem: not JSON, not an index, another version or
            checksum algorithm, a malformed shard entry, a sample count its shards do not
            add up to, or Zarr chunks a reader cannot hold.
        """
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidIndex(f"{source}: not JSON ({exc})") from None
        if not isinstance(raw, dict) or raw.get("kind") != KIND:
            raise InvalidIndex(f"{source}: not a tierstore dataset index")
        if raw.get("version") != VERSION:
            raise InvalidIndex(f"{source}: index version {raw.get('version')!r}; this "
                               f"tierstore reads version {VERSION}")
        if raw.get("checksum", ALGORITHM) != ALGORITHM:
            raise InvalidIndex(f"{source}: checksums are {raw.get('checksum')!r}, this "
                               f"tierstore verifies {ALGORITHM}")
        shards = raw.get("shards")
        if not isinstance(shards, list):
            raise InvalidIndex(f"{source}: 'shards' must be a list")
        entries = tuple(_entry(s, f"{source}: shards[{i}]") for i, s in enumerate(shards))
        index = cls(prefix=str(raw.get("prefix", "")), shards=entries,
                    meta=_expect(raw.get("meta", {}), dict, f"{source}: meta"),
                    created=float(raw.get("created", 0.0)))
        if "samples" in raw and raw["samples"] != len(index):
            raise InvalidIndex(f"{source}: says {raw['samples']} samples, its shards hold "
                               f"{len(index)}")
        zarr_shards = [s for s in entries if s.format == ZarrFormat.name]
        if zarr_shards:
            try:
                check_chunks(index.meta, zarr_shards)
            except ShardFormatError as exc:
                raise InvalidIndex(f"{source}: {exc}") from None
        return index


def _expect(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidIndex(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def _entry(raw: Any, where: str) -> ShardEntry:
    raw = _expect(raw, dict, where)
    for name in ("key", "format", "checksum"):
        _expect(raw.get(name), str, f"{where}.{name}")
    for name in ("samples", "size"):
        if _expect(raw.get(name), int, f"{where}.{name}") < 0:
            raise InvalidIndex(f"{where}.{name}: negative")
    if raw["format"] not in FORMATS:
        raise InvalidIndex(f"{where}.format: unknown format {raw['format']!r}")
    try:
        validate_key(raw["key"])
    except ValueError as exc:
        raise InvalidIndex(f"{where}.key: {exc}") from None
    offsets = raw.get("offsets")
    if offsets is not None:
        offsets = _expect(offsets, list, f"{where}.offsets")
        if len(offsets) != raw["samples"] + 1 or not all(
                isinstance(o, int) and 0 <= o <= raw["size"] for o in offsets) or any(
                a > b for a, b in pairwise(offsets)):
            raise InvalidIndex(f"{where}.offsets: expected {raw['samples'] + 1} byte offsets "
                               f"in order, within the shard's {raw['size']} bytes")
        offsets = tuple(offsets)
    block_size: int = 0
    blocks: tuple[str, ...] = ()
    if "blocks" in raw:
        spec = _expect(raw["blocks"], dict, f"{where}.blocks")
        block_size = _expect(spec.get("size"), int, f"{where}.blocks.size")
        blocks = tuple(_expect(spec.get("checksums"), list, f"{where}.blocks.checksums"))
        if block_size <= 0 or len(blocks) != -(-raw["size"] // block_size) or not all(
                isinstance(b, str) for b in blocks):
            raise InvalidIndex(f"{where}.blocks: expected the checksums of the shard's "
                               f"{raw['size']} bytes in blocks of a positive size")
    samples: tuple[str, ...] = ()
    if "sample_checksums" in raw:
        samples = tuple(_expect(raw["sample_checksums"], list, f"{where}.sample_checksums"))
        if offsets is None or len(samples) != raw["samples"] or not all(
                isinstance(c, str) for c in samples):
            raise InvalidIndex(f"{where}.sample_checksums: expected one checksum per sample "
                               f"({raw['samples']}), beside the samples' offsets")
    return ShardEntry(raw["key"], raw["format"], raw["samples"], raw["size"], raw["checksum"],
                      offsets, _expect(raw.get("meta", {}), dict, f"{where}.meta"),
                      block_size, blocks, samples)


def index_key(prefix: str) -> str:
    """Where the index of the dataset under ``prefix`` lives."""
    return validate_key(f"{prefix.strip('/')}/{INDEX_NAME}")


def _aio(store: AnyStore) -> Store:
    return store.aio if isinstance(store, SyncStore) else store


def _run(coro: Any) -> Any:
    """Run a coroutine of the async store on fsspec's IO thread (where SyncStore runs it)."""
    async def wrapped() -> Any:
        return await coro

    return sync(get_loop(), wrapped)


async def aread_index(store: Store, prefix: str) -> DatasetIndex:
    """Read and validate ``<prefix>/index.json``: the one object a loader reads at start-up."""
    key = index_key(prefix)
    index = DatasetIndex.from_json(await store.cat(key), source=key)
    await asyncio.to_thread(_check_sizes, store, index, key)
    return index


def _check_sizes(store: Store, index: DatasetIndex, source: str) -> None:
    """Refuse an index that claims more bytes of a shard than the catalog records for it (or
    any bytes of an object the store does not hold): a reader plans its ranged reads and its
    memory by those sizes. One catalog lookup per shard, as each of its reads makes anyway;
    nothing is listed, nothing read from a tier."""
    for shard in index.shards:
        if not shard.size:  # nothing to read (a Zarr chunk never written)
            continue
        record = store.catalog.get(shard.key)
        held = record.size if record is not None and record.ready else None
        if held is None:
            raise InvalidIndex(f"{source}: shard {shard.key!r} ({shard.size} bytes) is not in "
                               "the store; rewrite the index")
        if shard.size > held:
            raise InvalidIndex(f"{source}: shard {shard.key!r} claims {shard.size} bytes, the "
                               f"store holds {held}; the index is damaged or the shard was "
                               "replaced (rewrite the index)")


def read_index(store: AnyStore, prefix: str) -> DatasetIndex:
    """Read and validate the index of a dataset.

    Every size the index claims is bounded by the size the catalog records for that object
    (one catalog lookup per shard; nothing is listed, nothing read from a tier).

    Parameters
    ----------
    store : SyncStore or Store
        A :class:`~tierstore.SyncStore` (or a :class:`~tierstore.Store`, run on fsspec's IO
        thread).
    prefix : str
        The dataset's folder of keys.

    Returns
    -------
    DatasetIndex
        The index in ``<prefix>/index.json``.

    Raises
    ------
    InvalidIndex
        If the index is malformed, names a shard the store does not hold, or claims more
        bytes of a shard than the store holds.
    ObjectNotFound
        If there is no index.
    """
    index: DatasetIndex = _run(aread_index(_aio(store), prefix))
    return index


async def asave_index(store: Store, index: DatasetIndex, *, tier: str | None = None,
                      overwrite: bool = False) -> str:
    key = index_key(index.prefix)
    await store.put(key, index.to_json().encode(), tier=tier, overwrite=overwrite)
    return key


def save_index(store: AnyStore, index: DatasetIndex, *, tier: str | None = None,
               overwrite: bool = False) -> str:
    """Write an index to ``<prefix>/index.json``.

    Parameters
    ----------
    store : SyncStore or Store
        A :class:`~tierstore.SyncStore` (or a :class:`~tierstore.Store`, run on fsspec's IO
        thread).
    index : DatasetIndex
        The index.
    tier : str, optional
        The tier the index object goes to; the config's default if None.
    overwrite : bool, default False
        Whether it may replace an existing index.

    Returns
    -------
    str
        The index's key.

    Raises
    ------
    ObjectExists
        If an index exists and ``overwrite`` is False.
    """
    key: str = _run(asave_index(_aio(store), index, tier=tier, overwrite=overwrite))
    return key


async def _scan(store: Store, key: str, fmt_name: str, jobs: asyncio.Semaphore) -> ShardEntry:
    fmt = resolve_formats({fmt_name})[fmt_name]
    if not fmt.self_describing:
        raise InvalidIndex(f"{key!r}: {fmt_name} shards are indexed as a whole array "
                           "(index_zarr_array)")
    async with jobs:
        info = await store.stat(key)

        async def read(start: int, end: int) -> bytes:
            return await store.cat(key, start, end)

        layout = await fmt.scan_ranged(read, info.size, key)
    return ShardEntry.of(key, fmt_name, layout, info.size, info.checksum)


async def awrite_index(store: Store, prefix: str, keys: Sequence[str] | None = None, *,
                       format: str | None = None, tier: str | None = None,
                       overwrite: bool = False, jobs: int = 8) -> DatasetIndex:
    """Index shards already in the store and save the index; see :func:`write_index`."""
    prefix = prefix.strip("/")
    if keys is None:
        own = index_key(prefix)
        keys = [k for k in await store.find(prefix + "/") if k != own]
    if not keys:
        raise InvalidIndex(f"no shards to index under {prefix!r}")
    limit = asyncio.Semaphore(jobs)
    entries = await asyncio.gather(*(_scan(store, k, format or format_for_key(k), limit)
                                     for k in keys))
    index = DatasetIndex(prefix=prefix, shards=tuple(entries))
    await asave_index(store, index, tier=tier, overwrite=overwrite)
    return index


def write_index(store: AnyStore, prefix: str, keys: Sequence[str] | None = None, *,
                format: str | None = None, tier: str | None = None, overwrite: bool = False,
                jobs: int = 8) -> DatasetIndex:
    """Index shards that are already in the store and write ``<prefix>/index.json``.

    Parameters
    ----------
    store : SyncStore or Store
        A :class:`~tierstore.SyncStore` (or a :class:`~tierstore.Store`, run on fsspec's IO
        thread).
    prefix : str
        The dataset's folder of keys; the index is written under it.
    keys : sequence of str, optional
        The shards, in their canonical order. None lists ``prefix`` (at ingest, never at load
        time) and takes every object but the index, sorted.
    format : str, optional
        ``tar``, ``parquet`` or ``raw`` for every shard; None guesses from each key's
        extension (``.tar``, ``.parquet``, else raw). Zarr arrays: :func:`index_zarr_array`.
    tier : str, optional
        Where the index object goes; the config's default if None.
    overwrite : bool, default False
        Whether it may replace an existing index.
    jobs : int, default 8
        Shards scanned at once (a Parquet scan reads only the footer; tar reads the shard).

    Returns
    -------
    DatasetIndex
        The index written.

    Raises
    ------
    InvalidIndex
        If there are no shards to index, or one is of a format indexed as a whole array
        (Zarr).
    ShardFormatError
        If a shard is not a valid shard of its format.
    ObjectExists
        If an index exists and ``overwrite`` is False.
    """
    index: DatasetIndex = _run(awrite_index(_aio(store), prefix, keys, format=format,
                                            tier=tier, overwrite=overwrite, jobs=jobs))
    return index


async def aindex_zarr_array(store: Store, prefix: str, array: str, *, tier: str | None = None,
                            overwrite: bool = False) -> DatasetIndex:
    metadata = json.loads(await store.cat(f"{array.strip('/')}/zarr.json"))
    entries = []
    for key, layout in chunk_layouts(metadata, array.strip("/")):
        if await store.exists(key):
            info = await store.stat(key)
            entries.append(ShardEntry.of(key, ZarrFormat.name, layout, info.size,
                                         info.checksum))
        else:  # never written: all fill value, no bytes to read
            entries.append(ShardEntry.of(key, ZarrFormat.name, layout, 0, checksum(b"")))
    index = DatasetIndex(prefix=prefix.strip("/"), shards=tuple(entries),
                         meta={META_KEY: {"array": array.strip("/"), "metadata": metadata}})
    await asave_index(store, index, tier=tier, overwrite=overwrite)
    return index


def index_zarr_array(store: AnyStore, prefix: str, array: str, *, tier: str | None = None,
                     overwrite: bool = False) -> DatasetIndex:
    """Index a Zarr v3 array already in the store as a dataset.

    The dataset's samples are the array's first-axis slices, its shards the chunk objects;
    a chunk never written (all fill value) is recorded with no bytes to read.

    Parameters
    ----------
    store : SyncStore or Store
        A :class:`~tierstore.SyncStore` (or a :class:`~tierstore.Store`, run on fsspec's IO
        thread).
    prefix : str
        The dataset's folder of keys; the index goes to ``<prefix>/index.json``.
    array : str
        The key the array is stored under (its ``zarr.json`` and chunk objects).
    tier : str, optional
        Where the index object goes; the config's default if None.
    overwrite : bool, default False
        Whether it may replace an existing index.

    Returns
    -------
    DatasetIndex
        The index written.

    Raises
    ------
    ShardFormatError
        If the array's metadata is not a layout this loader reads.
    ObjectExists
        If an index exists and ``overwrite`` is False.
    """
    index: DatasetIndex = _run(aindex_zarr_array(_aio(store), prefix, array, tier=tier,
                                                 overwrite=overwrite))
    return index
