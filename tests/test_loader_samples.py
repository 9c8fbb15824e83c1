"""Shards on the hot tier are not read ahead: each sample is read from the shard's file when it
is due, checked against its own checksum; a sample that does not match comes from another
replica; a replica removed while its file is open is still read."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tierstore import SyncStore
from tierstore.direct import open_for_reads, pread
from tierstore.loader import DatasetIndex, TierDataset, write_tar_shards
from tierstore.loader.errors import InvalidIndex
from tierstore.loader.index import _entry

N = 96


def samples(n: int = N) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"__key__": f"s{i:04d}", "bin": os.urandom(3000 + 37 * i)}


def hot_file(store: SyncStore, key: str) -> Path:
    record = store.aio.catalog.get(key)
    assert record is not None
    replica = record.on("hot")
    assert replica is not None
    return Path(store.aio.tier("hot").full_path(replica.path))


def read_all(dataset: TierDataset) -> dict[str, bytes]:
    got = {s["__key__"]: s["bin"] for s in dataset}
    assert len(got) == N
    return got


@pytest.fixture
def on_hot(local_store: SyncStore) -> tuple[SyncStore, DatasetIndex, dict[str, bytes]]:
    """A dataset on warm whose shards a first pass kept on hot too (read-through fill)."""
    expected = {s["__key__"]: s["bin"] for s in samples()}
    index = write_tar_shards(local_store, "ds", ({"__key__": k, "bin": v}
                                                 for k, v in expected.items()),
                             samples_per_shard=16)
    assert all(s.sample_checksums for s in index.shards)
    first = TierDataset(local_store, "ds", decode=None, announce=False)
    assert read_all(first) == expected and first.fills.shards == len(index.shards)
    return local_store, index, expected


def test_samples_of_hot_shards_are_read_when_due(
        on_hot: tuple[SyncStore, DatasetIndex, dict[str, bytes]]) -> None:
    store, index, expected = on_hot
    dataset = TierDataset(store, "ds", decode=None, announce=False, seed=3)
    before = dict(store.aio.bytes_by_tier)  # after the index's read
    assert read_all(dataset) == expected
    assert dataset.stats.reads == 0 and dataset.stats.peak_bytes == 0  # nothing read ahead
    read = {t: n - before.get(t, 0) for t, n in store.aio.bytes_by_tier.items()}
    assert read.get("warm", 0) == 0
    assert read["hot"] == sum(s.offsets[-1] - s.offsets[0] for s in index.shards if s.offsets)


def test_a_hot_sample_that_does_not_match_comes_from_another_replica(
        on_hot: tuple[SyncStore, DatasetIndex, dict[str, bytes]]) -> None:
    store, index, expected = on_hot
    shard = index.shards[2]
    assert shard.offsets is not None
    path = hot_file(store, shard.key)
    data = bytearray(path.read_bytes())
    data[(shard.offsets[5] + shard.offsets[6]) // 2] ^= 0xFF  # inside sample 5
    path.write_bytes(bytes(data))
    dataset = TierDataset(store, "ds", decode=None, announce=False)
    assert read_all(dataset) == expected  # nothing wrong handed over
    assert dataset.stats.rereads == [shard.key]  # the shard, once, verified, from warm


def test_a_hot_replica_removed_while_open_is_still_read(
        on_hot: tuple[SyncStore, DatasetIndex, dict[str, bytes]]) -> None:
    store, index, expected = on_hot
    dataset = TierDataset(store, "ds", decode=None, announce=False, shuffle=False)
    it = iter(dataset)
    first = next(it)
    got = {first["__key__"]: first["bin"]}
    for shard in index.shards:  # every shard's file is open by now: removed (evicted)
        hot_file(store, shard.key).unlink()
    got.update((s["__key__"], s["bin"]) for s in it)
    assert got == expected and dataset.stats.rereads == []


def test_the_index_keeps_each_samples_checksum(
        on_hot: tuple[SyncStore, DatasetIndex, dict[str, bytes]]) -> None:
    _, index, _ = on_hot
    shard = index.shards[0]
    raw = shard.to_json()
    assert _entry(raw, "shards[0]") == shard
    with pytest.raises(InvalidIndex, match="one checksum per sample"):
        _entry({**raw, "sample_checksums": raw["sample_checksums"][1:]}, "shards[0]")
    without = {k: v for k, v in raw.items() if k != "offsets"}
    with pytest.raises(InvalidIndex, match="beside the samples' offsets"):
        _entry(without, "shards[0]")
    plain = dataclasses.replace(shard, sample_checksums=())
    assert "sample_checksums" not in plain.to_json()
    assert DatasetIndex("ds", (plain,)).shards[0].sample_checksums == ()


@pytest.mark.parametrize(("start", "end"), [(0, 1), (1000, 9000), (4096, 8192),
                                            (70_000, 200_000), (199_999, 250_000)])
def test_pread_reads_any_range_of_a_file(tmp_path: Path, start: int, end: int) -> None:
    data = os.urandom(200_000)
    (tmp_path / "f").write_bytes(data)
    fd, direct = open_for_reads(str(tmp_path / "f"))
    try:
        assert pread(fd, direct, start, end) == data[start:end]
    finally:
        os.close(fd)
