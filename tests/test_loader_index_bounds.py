"""A damaged or hostile ``index.json`` is bounded before anything is read: the size it claims
for a shard by what the catalog records for that object, a Zarr array's chunks by what a
reader can hold. The timeouts only turn a hang into a failure."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from tierstore import SyncStore
from tierstore.loader import (
    InvalidIndex,
    ShardFormatError,
    TierDataset,
    index_zarr_array,
    read_index,
    write_tar_shards,
    write_zarr_array,
)
from tierstore.loader.formats.zarrarray import MAX_CHUNK_BYTES, MAX_CHUNKS
from tierstore.loader.index import BLOCK_SIZE, block_checksums


def tar_dataset(store: SyncStore) -> None:
    write_tar_shards(store, "ds", ({"__key__": f"s{i:03d}", "bin": bytes([i]) * 700}
                                   for i in range(12)), samples_per_shard=4)


def rewrite_index(store: SyncStore, prefix: str, change: Any) -> None:
    """Overwrite ``<prefix>/index.json`` with ``change(document)`` applied to it."""
    document = json.loads(store.cat(f"{prefix}/index.json"))
    change(document)
    store.put(f"{prefix}/index.json", json.dumps(document).encode(), overwrite=True)


def tier_reads(store: SyncStore) -> int:
    return sum(store.aio.reads_by_tier.values())


@pytest.mark.parametrize("claim", [10**12, 10**15])
def test_a_size_beyond_the_catalog_is_refused_before_any_read(local_store: SyncStore,
                                                              claim: int) -> None:
    tar_dataset(local_store)
    shard = read_index(local_store, "ds").shards[1]

    def inflate(document: dict[str, Any]) -> None:
        document["shards"][1]["size"] = claim

    rewrite_index(local_store, "ds", inflate)
    before = tier_reads(local_store)
    with pytest.raises(InvalidIndex, match=rf"shard '{shard.key}' claims {claim} bytes, the "
                                           rf"store holds {shard.size}"):
        TierDataset(local_store, "ds")
    assert tier_reads(local_store) == before + 1  # the index, and no shard
    with pytest.raises(InvalidIndex, match=shard.key):
        read_index(local_store, "ds")


def test_a_shard_the_store_does_not_hold_is_refused(local_store: SyncStore) -> None:
    tar_dataset(local_store)

    def ghost(document: dict[str, Any]) -> None:
        document["shards"][0]["key"] = "elsewhere/ghost.tar"

    rewrite_index(local_store, "ds", ghost)
    with pytest.raises(InvalidIndex, match=r"shard 'elsewhere/ghost\.tar' .* not in the store"):
        read_index(local_store, "ds")


def test_a_shard_outside_the_prefix_is_bounded_too(local_store: SyncStore) -> None:
    tar_dataset(local_store)
    local_store.put("other/small.tar", local_store.cat("ds/shard-000000.tar")[:1024])

    def move(document: dict[str, Any]) -> None:
        document["shards"][0]["key"] = "other/small.tar"

    rewrite_index(local_store, "ds", move)
    with pytest.raises(InvalidIndex, match=r"'other/small\.tar' claims \d+ bytes, the store "
                                           r"holds 1024"):
        read_index(local_store, "ds")


def test_offsets_out_of_order_are_refused(local_store: SyncStore) -> None:
    tar_dataset(local_store)

    def swap(document: dict[str, Any]) -> None:
        offsets = document["shards"][0]["offsets"]
        offsets[1], offsets[2] = offsets[2], offsets[1]

    rewrite_index(local_store, "ds", swap)
    with pytest.raises(InvalidIndex, match=r"shards\[0\]\.offsets: .* in order"):
        read_index(local_store, "ds")


def test_block_checksums_are_written_and_a_wrong_count_is_refused(local_store: SyncStore
                                                                  ) -> None:
    big = 3 * BLOCK_SIZE // 2  # a shard of two blocks: its blocks are checked as they land
    write_tar_shards(local_store, "ds", ({"__key__": f"s{i}", "bin": bytes([i]) * big}
                                         for i in range(2)), samples_per_shard=1)
    (first, _) = read_index(local_store, "ds").shards
    assert first.block_size == BLOCK_SIZE
    assert first.blocks == block_checksums(local_store.cat(first.key), BLOCK_SIZE)
    assert len(first.blocks) == 2

    def drop(document: dict[str, Any]) -> None:
        document["shards"][1]["blocks"]["checksums"].pop()

    rewrite_index(local_store, "ds", drop)
    with pytest.raises(InvalidIndex, match=r"shards\[1\]\.blocks: expected the checksums"):
        read_index(local_store, "ds")


# -- Zarr ------------------------------------------------------------------------------------


def zarr_dataset(store: SyncStore) -> None:
    write_zarr_array(store, "za", np.arange(24, dtype="f8").reshape(12, 2), chunk_rows=4)


def test_zarr_chunk_shape_beyond_what_a_reader_holds_is_refused(local_store: SyncStore
                                                                ) -> None:
    zarr_dataset(local_store)
    rows = MAX_CHUNK_BYTES  # rows of two float64: 16 bytes each

    def widen(document: dict[str, Any]) -> None:
        metadata = document["meta"]["zarr"]["metadata"]
        metadata["shape"][0] = metadata["chunk_grid"]["configuration"]["chunk_shape"][0] = rows

    rewrite_index(local_store, "za", widen)
    with pytest.raises(InvalidIndex, match=rf"za/index\.json: 'za/data': chunks \({rows}, 2\) "
                                           rf"of .* decode to {rows * 16} bytes.*rechunk"):
        read_index(local_store, "za")


def test_zarr_chunk_claiming_more_rows_than_a_chunk_holds_is_refused(local_store: SyncStore
                                                                     ) -> None:
    zarr_dataset(local_store)

    def inflate(document: dict[str, Any]) -> None:
        document["shards"][2]["samples"] = 10**12
        document.pop("samples")

    rewrite_index(local_store, "za", inflate)
    with pytest.raises(InvalidIndex, match=r"chunk 'za/data/c/2/0' .* claims 1000000000000 "
                                           r"rows; a chunk holds 4"):
        read_index(local_store, "za")


def zarr_json(shape: list[int], chunks: list[int]) -> bytes:
    return json.dumps({
        "zarr_format": 3, "node_type": "array", "shape": shape, "data_type": "uint8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0, "codecs": [{"name": "bytes"}], "attributes": {},
    }).encode()


@pytest.mark.timeout(20, method="thread")  # indexing runs on fsspec's IO thread
@pytest.mark.parametrize(("shape", "chunks", "error"), [
    ([10**15], [1], rf"1000000000000000 chunks, more than the {MAX_CHUNKS}"),
    ([10**13], [10**13], rf"decode to 10000000000000 bytes each, more than the "
                         rf"{MAX_CHUNK_BYTES}"),
])
def test_absurd_zarr_metadata_is_refused_at_indexing(local_store: SyncStore, shape: list[int],
                                                     chunks: list[int], error: str) -> None:
    local_store.put("huge/zarr.json", zarr_json(shape, chunks))
    with pytest.raises(ShardFormatError, match=error):
        index_zarr_array(local_store, "zh", "huge")
    assert not local_store.exists("zh/index.json")
