"""The store's read and write paths, replicas and moves, on local and S3 tiers."""

from __future__ import annotations

import io
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tierstore import (
    ChecksumMismatch,
    NoReadableReplica,
    ObjectExists,
    ObjectNotFound,
    SyncStore,
    TierstoreError,
)
from tierstore.checksum import checksum
from tierstore.errors import ReplicaError
from tierstore.sync import _run


def corrupt(store: SyncStore, key: str, tier: str) -> None:
    """Flip one byte of ``key``'s replica on ``tier``, on the backend itself."""
    record = store.aio.catalog.get(key)
    assert record is not None
    replica = record.on(tier)
    assert replica is not None
    backend = store.aio.tier(tier)
    data = bytearray(_run(backend.read(replica.path)))
    data[len(data) // 2] ^= 0xFF

    async def one() -> AsyncIterator[bytes]:
        yield bytes(data)

    _run(backend.write(replica.path, one()))


def test_put_cat_roundtrip_and_ranges(store: SyncStore) -> None:
    data = os.urandom(300_000)
    info = store.put("ds/shard-0.bin", data)
    assert (info.size, info.checksum, info.tiers) == (len(data), checksum(data), ["warm"])
    assert store.cat("ds/shard-0.bin") == data
    assert store.cat("ds/shard-0.bin", 100, 200) == data[100:200]
    assert store.cat("ds/shard-0.bin", -10) == data[-10:]
    assert store.cat("ds/shard-0.bin", 299_990, 10**9) == data[299_990:]
    assert store.cat("ds/shard-0.bin", 500, 400) == b""


def test_put_from_file_stream_and_file_object(store: SyncStore, tmp_path: Path) -> None:
    data = os.urandom(9 * 2**20 + 7)  # more than one part: streamed, multipart on S3
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    store.put("from-path", local)
    store.put("from-fileobj", io.BytesIO(data), tier="cold")

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 2**20):
            yield data[i:i + 2**20]

    _run(store.aio.put("from-async-iter", chunks(), tier="hot"))
    for key in ("from-path", "from-fileobj", "from-async-iter"):
        assert store.stat(key).checksum == checksum(data)
        store.get(key, tmp_path / "out")
        assert (tmp_path / "out").read_bytes() == data


def test_empty_object(store: SyncStore) -> None:
    store.put("empty", b"")
    assert store.cat("empty") == b""
    assert store.stat("empty").size == 0


def test_put_refuses_to_overwrite_unless_asked(store: SyncStore) -> None:
    store.put("k", b"one", tier="hot")
    store.add_replica("k", "cold")
    with pytest.raises(ObjectExists):
        store.put("k", b"two")
    info = store.put("k", b"two", tier="hot", overwrite=True)
    assert info.tiers == ["hot"]  # the old replicas go once the new one is committed
    assert store.cat("k") == b"two"
    assert store.audit(deep=True).ok


def test_move_keeps_one_verified_replica(store: SyncStore) -> None:
    data = os.urandom(50_000)
    store.put("m", data, tier="cold")
    for tier in ("warm", "hot", "cold", "hot"):
        assert store.move("m", tier).tiers == [tier]
        assert store.cat("m", verify=True) == data
    assert store.audit(deep=True).ok


def test_replicas_add_and_drop_but_never_the_last(store: SyncStore) -> None:
    store.put("r", b"replicated", tier="warm")
    assert sorted(store.add_replica("r", "hot").tiers) == ["hot", "warm"]
    assert store.ls("r")[0]["tiers"] == ["hot", "warm"]  # ranked: hot first
    assert store.drop_replica("r", "warm").tiers == ["hot"]
    with pytest.raises(ReplicaError, match="last"):
        store.drop_replica("r", "hot")
    assert store.cat("r") == b"replicated"


def test_pin_holds_an_object_on_its_tier(store: SyncStore) -> None:
    store.put("p", b"pinned", tier="cold")
    info = store.pin("p", "hot")
    assert info.pinned == "hot" and "hot" in info.tiers
    with pytest.raises(ReplicaError, match="pinned"):
        store.move("p", "cold")
    with pytest.raises(ReplicaError, match="pinned"):
        store.drop_replica("p", "hot")
    store.unpin("p")
    assert store.move("p", "cold").tiers == ["cold"]


def test_rm_removes_every_replica(store: SyncStore) -> None:
    store.put("gone", b"x", tier="hot")
    store.add_replica("gone", "cold")
    store.rm("gone")
    assert not store.exists("gone")
    with pytest.raises(ObjectNotFound):
        store.cat("gone")
    with pytest.raises(FileNotFoundError):  # also the built-in
        store.rm("gone")
    assert store.audit().ok


def test_a_key_cannot_also_be_a_folder(store: SyncStore) -> None:
    store.put("a/b", b"object")
    with pytest.raises(ObjectExists, match="folder"):
        store.put("a/b/c", b"under an object")
    with pytest.raises(ObjectExists, match="folder of objects"):
        store.put("a", b"over a folder")
    assert store.find() == ["a/b"]
    assert store.audit().ok


def test_listing(store: SyncStore) -> None:
    for key in ("a/x", "a/y", "a/b/z", "c"):
        store.put(key, key.encode())
    assert store.find() == ["a/b/z", "a/x", "a/y", "c"]
    assert store.find("a/") == ["a/b/z", "a/x", "a/y"]
    names = {(e["name"], e["type"]) for e in store.ls("")}
    assert names == {("a", "directory"), ("c", "file")}
    assert {e["name"] for e in store.ls("a")} == {"a/b", "a/x", "a/y"}
    with pytest.raises(FileNotFoundError):
        store.ls("nothing-here")


def test_reads_are_recorded_in_batches(store: SyncStore) -> None:
    store.put("hot-object", b"abc")
    for _ in range(5):
        store.cat("hot-object")
    assert store.aio.catalog.access(["hot-object"]) == {}  # not yet flushed: reads never wait
    access = store.stat("hot-object").access
    assert access is not None and access.count == 5 and access.score == pytest.approx(5, 0.01)


def test_flipped_byte_is_detected_good_replica_served_bad_reported(store: SyncStore) -> None:
    data = os.urandom(64_000)
    store.put("c", data, tier="warm")
    store.add_replica("c", "hot")
    corrupt(store, "c", "warm")
    corrupt(store, "c", "hot")  # both bad: the read fails, naming both
    with pytest.raises(NoReadableReplica) as failed:
        store.cat("c", verify=True)
    assert "hot" in str(failed.value) and "warm" in str(failed.value)
    store.aio.corrupt.clear()
    store.drop_replica("c", "hot")
    store.put("d", data, tier="cold")
    store.add_replica("d", "hot")
    corrupt(store, "d", "hot")
    assert store.cat("d", verify=True) == data  # failed over to the good replica
    assert store.aio.corrupt == [("d", "hot")]  # and the bad one is reported ...
    while store.aio.repairs:  # ... and replaced from the good one (locality.repair_on_read)
        time.sleep(0.05)
    assert store.cat("d", verify=True) == data and store.aio.corrupt == [("d", "hot")]
    report = store.audit(deep=True)  # c's replicas were both bad: nothing to repair from
    assert [(key, tier) for key, tier, _ in report.missing] == [("c", "warm")]


def test_a_corrupt_source_is_never_copied(store: SyncStore) -> None:
    store.put("src", os.urandom(10_000), tier="cold")
    corrupt(store, "src", "cold")
    with pytest.raises(NoReadableReplica) as failed:
        store.move("src", "hot")
    assert isinstance(failed.value.failures[0][1], ChecksumMismatch)
    assert store.stat("src").tiers == ["cold"]
    assert not store.audit().orphans


def test_a_corrupt_local_source_is_never_moved_to_another_tier(
        store: SyncStore, caplog: pytest.LogCaptureFixture) -> None:
    """From a local folder to S3 a source is read whole for one PUT, to another local folder
    the kernel copies it: either way a byte flipped in it is caught before anything is
    committed, and it stays where it was."""
    data = os.urandom(200_000)
    store.put("local-src", data, tier="hot")
    corrupt(store, "local-src", "hot")
    with pytest.raises(NoReadableReplica) as failed:
        store.move("local-src", "warm")
    assert isinstance(failed.value.failures[0][1], ChecksumMismatch)
    if store.aio.tier("warm").protocol == "s3":  # the whole read saw it first, then the stream
        assert "did not read back as its checksum; streaming it" in caplog.text
    assert store.stat("local-src").tiers == ["hot"]
    assert not store.audit().orphans and store.aio.catalog.pending() == []
    store.put("good", data, tier="hot")
    store.move("good", "warm")
    assert store.stat("good").tiers == ["warm"] and store.cat("good", verify=True) == data


def test_a_source_gone_from_its_local_folder_fails_as_the_sources(store: SyncStore) -> None:
    """The file behind a hot replica removed behind the store's back: moving it to another
    tier fails as the source's error (no replica readable), never as the destination's."""
    store.put("vanished", os.urandom(50_000), tier="hot")
    os.remove(store.aio.tier("hot").full_path("vanished"))
    with pytest.raises(NoReadableReplica) as failed:
        store.move("vanished", "warm")
    assert [tier for tier, _ in failed.value.failures] == ["hot"]
    assert store.stat("vanished").tiers == ["hot"] and not store.audit().orphans


def test_file_objects(store: SyncStore) -> None:
    with store.open("f", "wb") as out:
        out.write(b"0123456789" * 1000)
    with store.open("f") as handle:
        handle.seek(5)
        assert handle.read(5) == b"56789"
        handle.seek(-3, os.SEEK_END)
        assert handle.read() == b"789"
    with pytest.raises(RuntimeError), store.open("never", "wb") as out:
        out.write(b"half")
        raise RuntimeError("the writer fails")
    assert not store.exists("never")


def test_errors_share_one_root(local_store: SyncStore) -> None:
    with pytest.raises(TierstoreError):
        local_store.cat("missing")


@pytest.mark.parametrize("name", ["n" * 255, "é" * 127])  # 255 and 254 bytes of UTF-8
def test_a_key_with_the_longest_name_can_be_stored_moved_and_overwritten(
        store: SyncStore, name: str) -> None:
    """Review defect 4: a last segment of 223-255 bytes passed validation, but its temporary
    name did not fit a folder entry, and each attempt left a pending row behind for good."""
    key = f"d/{name}"
    store.put(key, b"first", tier="warm")
    store.move(key, "hot")
    store.put(key, b"second", tier="hot", overwrite=True)
    store.add_replica(key, "cold")
    assert store.cat(key) == b"second"
    report = store.audit(deep=True)
    assert (report.orphans, report.missing, report.pending) == ((), (), 0)


def test_recovery_clears_a_row_whose_temporary_name_could_never_exist(
        local_store: SyncStore) -> None:
    """Rows that tierstore 0.1 left behind with over-long temporary names: nothing can be
    there, so recovery forgets them instead of failing on them forever."""
    catalog = local_store.aio.catalog
    dead = f"{socket.gethostname()}:999999999"  # a process of this host that is gone
    catalog.begin_replica("d/k", "warm", tmp=".tierstore/partial/" + "x" * 288,
                          new_content=True, owner=dead)
    report = local_store.recover()
    assert report.rolled_back == (("d/k", "warm"),) and catalog.pending() == []
