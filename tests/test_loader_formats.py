"""Shard formats and the dataset index: every format round-trips through a store, byte for
byte; the tar parser reads what tarfile writes; the index is validated."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tierstore import SyncStore
from tierstore.loader import (
    DatasetIndex,
    InvalidIndex,
    ParquetFormat,
    ShardFormatError,
    TarFormat,
    TierDataset,
    index_zarr_array,
    read_index,
    write_index,
    write_parquet_shards,
    write_raw_files,
    write_tar_shards,
    write_zarr_array,
)
from tierstore.loader.formats.tar import iter_members, pack_tar
from tierstore.loader.ingest import _zarr_objects


def tar_samples(n: int) -> list[dict[str, object]]:
    return [{"__key__": f"part{i % 3}/s{i:04d}", "bin": bytes([i % 251]) * (i * 7 % 300),
             "cls": str(i)} for i in range(n)]


def read_all(store: SyncStore, prefix: str, **options: Any) -> list[Any]:
    """Every raw sample, in index order (no shuffle, no decode)."""
    dataset = TierDataset(store, prefix, shuffle=False, decode=None, **options)
    return list(dataset)


def test_tar_round_trip(store: SyncStore) -> None:
    samples = tar_samples(70)
    index = write_tar_shards(store, "ds/tar", samples, samples_per_shard=16)
    assert [s.samples for s in index.shards] == [16, 16, 16, 16, 6]
    for shard in index.shards:
        info = store.stat(shard.key)
        assert (shard.size, shard.checksum) == (info.size, info.checksum)
    assert read_index(store, "ds/tar") == index
    got = read_all(store, "ds/tar")
    assert [g["__key__"] for g in got] == [s["__key__"] for s in samples]
    for g, s in zip(got, samples, strict=True):
        assert g["bin"] == s["bin"] and g["cls"] == str(s["cls"]).encode()
        assert g["__shard__"].startswith("ds/tar/shard-")


def test_parquet_round_trip_with_row_groups_and_columns(store: SyncStore) -> None:
    n = 250
    table = pa.table({"id": np.arange(n), "label": [f"l{i}" for i in range(n)],
                      "blob": [bytes([i % 256]) * (i % 50) for i in range(n)]})
    index = write_parquet_shards(store, "ds/pq", table, rows_per_shard=100, row_group_rows=30)
    assert [s.samples for s in index.shards] == [100, 100, 50]
    assert [g[0] for g in index.shards[0].meta["row_groups"]] == [0, 30, 60, 90]
    got = read_all(store, "ds/pq")
    assert got == table.to_pylist()
    narrow = read_all(store, "ds/pq", columns=["id", "blob"])
    assert narrow == table.select(["id", "blob"]).to_pylist()


@pytest.mark.parametrize("compressors", ["auto", None])
def test_zarr_round_trip(store: SyncStore, compressors: object) -> None:
    array = np.arange(23 * 3 * 4, dtype="float32").reshape(23, 3, 4)
    index = write_zarr_array(store, "ds/zarr", array, chunk_rows=5, compressors=compressors)
    assert [s.samples for s in index.shards] == [5, 5, 5, 5, 3]
    got = read_all(store, "ds/zarr")
    assert len(got) == 23
    for row, expected in zip(got, array, strict=True):
        assert isinstance(row, np.ndarray) and row.dtype == array.dtype
        np.testing.assert_array_equal(row, expected)


def test_zarr_chunk_never_written_reads_as_fill(local_store: SyncStore) -> None:
    array = np.ones((6, 2), dtype="int16")
    objects = _zarr_objects(array, 2, None)
    del objects["c/1/0"]  # as zarr leaves a chunk that is all fill value
    for key, data in objects.items():
        local_store.put(f"arr/{key}", data)
    index = index_zarr_array(local_store, "ds", "arr")
    assert index.shards[1].size == 0
    got = read_all(local_store, "ds")
    np.testing.assert_array_equal(np.stack(got), np.array([[1, 1]] * 2 + [[0, 0]] * 2
                                                          + [[1, 1]] * 2))


def test_zarr_chunked_across_other_axes_is_refused(local_store: SyncStore) -> None:
    import zarr
    from zarr.storage import MemoryStore

    memory = MemoryStore()
    zarr.create_array(memory, shape=(4, 6), chunks=(2, 3), dtype="u1")
    meta = json.loads(memory._store_dict["zarr.json"].to_bytes())
    local_store.put("arr2/zarr.json", json.dumps(meta).encode())
    with pytest.raises(ShardFormatError, match="chunked along the first axis only"):
        index_zarr_array(local_store, "ds2", "arr2")


def test_raw_round_trip(store: SyncStore) -> None:
    files = [(f"img/{i:03d}.bin", bytes([i]) * i) for i in range(12)]
    index = write_raw_files(store, "ds/raw", files)
    assert [s.samples for s in index.shards] == [1] * 12
    got = read_all(store, "ds/raw")
    assert [(g["__key__"], g["data"]) for g in got] == [
        (f"ds/raw/{name}", data) for name, data in files]


def test_write_index_over_existing_shards_matches_ingest(local_store: SyncStore) -> None:
    samples = tar_samples(20)
    for n in range(2):
        local_store.put(f"pre/shard-{n}.tar", pack_tar(samples[n * 10:(n + 1) * 10]))
    table = pa.table({"x": list(range(40))})
    sink = io.BytesIO()
    import pyarrow.parquet as pq

    pq.write_table(table, sink, row_group_size=7)
    local_store.put("pre/t.parquet", sink.getvalue())
    index = write_index(local_store, "pre")
    assert [(s.format, s.samples) for s in index.shards] == [("tar", 10), ("tar", 10),
                                                             ("parquet", 40)]
    assert index == read_index(local_store, "pre")
    assert ParquetFormat().scan(sink.getvalue(), "t").meta == index.shards[2].meta


def test_parquet_scan_reads_only_the_footer() -> None:
    table = pa.table({"x": np.arange(200_000), "y": np.arange(200_000) * 2.0})
    sink = io.BytesIO()
    import pyarrow.parquet as pq

    pq.write_table(table, sink, row_group_size=50_000)
    data = sink.getvalue()
    asked: list[tuple[int, int]] = []

    async def read(start: int, end: int) -> bytes:
        asked.append((start, end))
        return data[start:end]

    layout = asyncio.run(ParquetFormat().scan_ranged(read, len(data), "t"))
    assert layout == ParquetFormat().scan(data, "t")
    assert sum(e - s for s, e in asked) < len(data) // 10


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_tar_parser_reads_what_tarfile_writes(fmt: int) -> None:
    long_dir = "d" * 120 if fmt != tarfile.USTAR_FORMAT else "d" * 60
    names = [f"{long_dir}/a.jpg", f"{long_dir}/a.json", "b.txt", "dir/", "c.x.y", "noext"]
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w", format=fmt) as tar:
        for i, name in enumerate(names):
            info = tarfile.TarInfo(name.rstrip("/"))
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            payload = f"payload {i}".encode() * (i + 1)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    data = sink.getvalue()
    members = list(iter_members(data))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        expected = [(m.name, m.offset_data, m.size) for m in tar.getmembers() if m.isfile()]
    assert [(m.name, m.start, m.size) for m in members] == expected
    layout = TarFormat().scan(data, "t")
    assert layout.samples == 3  # a (jpg + json), b, c; "noext" has no extension


def test_tar_damage_is_a_format_error() -> None:
    data = bytearray(pack_tar(tar_samples(3)))
    data[100] ^= 0xFF  # inside the first header
    with pytest.raises(ShardFormatError, match="damaged tar header at byte 0"):
        TarFormat().scan(bytes(data), "t")
    with pytest.raises(ShardFormatError, match="truncated"):
        TarFormat().scan(pack_tar(tar_samples(3))[:700], "t")


def test_index_validation_names_the_field() -> None:
    good = DatasetIndex(prefix="p", shards=()).to_json()
    with pytest.raises(InvalidIndex, match="not JSON"):
        DatasetIndex.from_json("{", source="p/index.json")
    raw = json.loads(good)
    raw["shards"] = [{"key": "p/a.tar", "format": "tar", "samples": 2, "size": 10,
                      "checksum": "x", "offsets": [0, 5]}]
    with pytest.raises(InvalidIndex, match=r"shards\[0\].offsets"):
        DatasetIndex.from_json(json.dumps(raw))
    raw["shards"][0].update(offsets=[0, 5, 10], format="rar")
    with pytest.raises(InvalidIndex, match="unknown format 'rar'"):
        DatasetIndex.from_json(json.dumps(raw))
    raw["shards"][0].update(format="tar", key="../escape")
    with pytest.raises(InvalidIndex, match=r"shards\[0\].key"):
        DatasetIndex.from_json(json.dumps(raw))


def test_missing_index_is_a_clear_error(local_store: SyncStore) -> None:
    from tierstore import ObjectNotFound

    with pytest.raises(ObjectNotFound, match=r"nothing/index\.json"):
        TierDataset(local_store, "nothing")


def test_an_empty_dataset_yields_nothing(local_store: SyncStore) -> None:
    from tierstore.loader import save_index

    save_index(local_store, DatasetIndex(prefix="empty", shards=()))
    dataset = TierDataset(local_store, "empty")
    assert list(dataset) == [] and len(dataset) == 0


def test_zarr_dataset_pickles_after_reading(local_store: SyncStore) -> None:
    import pickle

    write_zarr_array(local_store, "z", np.arange(12).reshape(6, 2), chunk_rows=4)
    dataset = TierDataset(local_store, "z", shuffle=False, decode=None)
    first = list(dataset)
    assert [r.tolist() for r in pickle.loads(pickle.dumps(dataset))] == [r.tolist()
                                                                         for r in first]
