"""Read-through fill (issue 12, item 1): a shard a reader fetched from a slower tier becomes
its hot replica from the reader's own bytes, so it crosses from S3 once; a real moto server,
real local folders, no daemon."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from storefixtures import make_config, toml_for

from tierstore import Config, open_store
from tierstore.errors import ChecksumMismatch, CopyInFlight
from tierstore.loader import DatasetIndex, TierDataset, TierLoader, write_tar_shards
from tierstore.loader import dataset as dataset_module
from tierstore.loader.index import block_checksums
from tierstore.sync import _run

SHARDS, PER_SHARD, SAMPLE = 12, 4, 8192


def _dataset(tmp_path: Path, moto_server: Any, hot_share: float | None
             ) -> tuple[Config, DatasetIndex]:
    bucket = moto_server.new_bucket()
    config = make_config(tmp_path, "moto", moto_server, bucket)
    with open_store(config) as store:
        index = write_tar_shards(
            store, "ds", ({"__key__": f"s{i:04d}", "bin": os.urandom(SAMPLE)}
                          for i in range(SHARDS * PER_SHARD)),
            samples_per_shard=PER_SHARD, tier="warm")
    if hot_share is not None:
        total = sum(s.size for s in index.shards)
        hot = dataclasses.replace(config.tiers["hot"], capacity=int(total * hot_share))
        config = dataclasses.replace(config, tiers={**config.tiers, "hot": hot})
    return config, index


def samples_bytes(index: DatasetIndex) -> int:
    """The bytes of the samples of ``index`` (a shard on the hot tier has its samples read
    each on its own, the tar's end not)."""
    return sum(s.offsets[-1] - s.offsets[0] for s in index.shards if s.offsets)


def _epoch(dataset: TierDataset, epoch: int) -> dict[str, int]:
    """One pass; the bytes each tier served the reader in it."""
    store = dataset.store.get()
    before = dict(store.bytes_by_tier)
    dataset.set_epoch(epoch)
    keys = [sample["__key__"] for sample in dataset]
    assert sorted(keys) == [f"s{i:04d}" for i in range(SHARDS * PER_SHARD)]
    return {t: n - before.get(t, 0) for t, n in store.bytes_by_tier.items()}


def test_a_cold_epoch_fetches_each_shard_from_s3_once_and_keeps_it_hot(
        tmp_path: Path, moto_server: Any) -> None:
    config, index = _dataset(tmp_path, moto_server, None)
    total = sum(s.size for s in index.shards)
    dataset = TierDataset(config, "ds", decode=None, buffer_size=8, announce=False)
    first = _epoch(dataset, 0)
    assert first.get("warm") == total and dataset.fills.shards == SHARDS
    assert dataset.fills.bytes == total and dataset.fills.failed == 0
    second = _epoch(dataset, 1)  # all hot now: each sample read from its file when due
    assert second.get("warm", 0) == 0 and second.get("hot") == samples_bytes(index)
    assert dataset.stats.reads == 0
    with open_store(config) as store:
        for shard in index.shards:
            assert sorted(r.tier for r in store.aio.catalog.get(shard.key).ready) == [
                "hot", "warm"]
        report = store.audit(deep=True)
    assert (report.orphans, report.missing, report.pending) == ((), (), 0)


def test_fills_stop_at_the_hot_tiers_high_watermark(tmp_path: Path, moto_server: Any) -> None:
    config, _ = _dataset(tmp_path, moto_server, 0.5)
    hot = config.tiers["hot"]
    dataset = TierDataset(config, "ds", decode=None, buffer_size=8, announce=False)
    _epoch(dataset, 0)
    assert 0 < dataset.fills.shards < SHARDS and dataset.fills.failed == 0
    with open_store(config) as store:
        (usage,) = [u for u in store.usage() if u.tier == "hot"]
        assert usage.bytes <= hot.high_watermark * (hot.capacity or 0)
        assert usage.objects == dataset.fills.shards


def test_no_fill_when_turned_off(tmp_path: Path, moto_server: Any) -> None:
    config, _ = _dataset(tmp_path, moto_server, None)
    dataset = TierDataset(config, "ds", decode=None, buffer_size=8, announce=False,
                          fill_hot=False)
    _epoch(dataset, 0)
    assert dataset.fills.shards == 0
    with open_store(config) as store:
        assert store.find("ds/") and all(
            [r.tier for r in store.aio.catalog.get(k).ready] == ["warm"]
            for k in store.find("ds/") if k.endswith(".tar"))


def test_a_copy_in_flight_is_waited_for_not_fetched_again(tmp_path: Path,
                                                          moto_server: Any) -> None:
    """Another reader of the node (or the daemon) is copying a shard to the hot tier: the
    reader finds its claim, waits for the copy and reads the hot replica; a claim is taken
    once, so the daemon's staging copy would meet CopyInFlight the same way."""
    config, index = _dataset(tmp_path, moto_server, None)
    total, shard = sum(s.size for s in index.shards), index.shards[5]
    with open_store(config) as other:
        claim = _run(other.aio.claim_fill(shard.key))
        assert claim is not None
        with pytest.raises(CopyInFlight):
            _run(other.aio.claim_fill(shard.key))
        data = other.cat(shard.key)

        def commit_later() -> None:
            time.sleep(0.3)
            _run(claim.commit(data))

        committer = threading.Thread(target=commit_later)
        committer.start()
        dataset = TierDataset(config, "ds", decode=None, buffer_size=8, announce=False)
        first = _epoch(dataset, 0)
        committer.join()
    assert first.get("warm") == total - shard.size and first.get("hot") == shard.size
    assert dataset.fills.shards == SHARDS - 1
    with open_store(config) as store:
        report = store.audit(deep=True)
    assert (report.orphans, report.missing, report.pending) == ((), (), 0)


def test_a_released_claim_leaves_nothing_behind(tmp_path: Path, moto_server: Any) -> None:
    config, index = _dataset(tmp_path, moto_server, None)
    shard = index.shards[0]
    with open_store(config) as store:
        claim = _run(store.aio.claim_fill(shard.key))
        assert claim is not None
        with pytest.raises(ChecksumMismatch):
            _run(claim.commit(b"x" * shard.size))  # a reader's bytes that are not the shard
        assert [r.tier for r in store.aio.catalog.get(shard.key).replicas] == ["warm"]
        again = _run(store.aio.claim_fill(shard.key))  # the claim went with the bad bytes
        assert again is not None
        _run(again.release())
        report = store.audit(deep=True)
        assert (report.orphans, report.pending) == ((), 0)
        assert not list((tmp_path / "tiers" / "hot").rglob("*.tar*"))


def test_workers_of_one_node_fetch_each_shard_once(tmp_path: Path, moto_server: Any) -> None:
    """Two DataLoader workers whose samples share shards: every shard crosses from S3 once
    in the cold epoch, whichever worker gets to a shared one first."""
    config, index = _dataset(tmp_path, moto_server, None)
    total = sum(s.size for s in index.shards)
    loader = TierLoader(TierDataset(config, "ds", decode=None, announce=False),
                        batch_size=5, num_workers=2)
    assert sum(len(batch["__key__"]) for batch in loader) == SHARDS * PER_SHARD
    assert loader.metrics().bytes_by_tier.get("warm") == total


CLAIMER = """
import asyncio, sys
from tierstore import Store, load_config

async def main():
    store = Store(load_config(sys.argv[1]))
    claims = [await store.claim_fill(key) for key in sys.argv[2:]]
    print("claimed", sum(c is not None for c in claims), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    for claim in claims:
        await claim.release()
    await store.close()

asyncio.run(main())
"""


def test_fills_of_two_processes_count_each_others_copies_in_flight(
        tmp_path: Path, moto_server: Any) -> None:
    """Room on the hot tier counts every copy in flight there, each once: another process's
    claims (a reader's fills, the daemon's staging copies) keep this one's reader from taking
    the same room (they overshot the high watermark by what each had in flight), and a
    process counts its own claims once, not also as rows of the catalog."""
    config, index = _dataset(tmp_path, moto_server, None)
    size = index.shards[0].size
    hot = dataclasses.replace(config.tiers["hot"], capacity=int(2.5 * size / 0.9))
    config = dataclasses.replace(config, tiers={**config.tiers, "hot": hot})
    toml = tmp_path / "store.toml"
    toml.write_text(toml_for(config))
    with open_store(config) as store:
        assert _run(store.aio.fill_room(size))
        mine = _run(store.aio.claim_fill(index.shards[0].key))
        assert mine is not None and _run(store.aio.fill_room(size))  # 2 of 2.5: room
        other = subprocess.Popen([sys.executable, "-c", CLAIMER, str(toml),
                                  index.shards[1].key], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout is not None and other.stdout.readline() == "claimed 1\n"
            assert not _run(store.aio.fill_room(size))  # 3 of 2.5: the other's claim counts
        finally:
            other.communicate("\n", timeout=60)
        assert other.returncode == 0
        assert _run(store.aio.fill_room(size))
        _run(mine.release())
        assert [u.in_flight for u in store.aio.catalog.usage() if u.tier == "hot"] in ([], [0])


def test_a_claim_without_room_takes_no_room(tmp_path: Path, moto_server: Any) -> None:
    """A reader's claim without room under the high watermark only marks its fetch and
    writes nothing: other processes and the daemon's policies must not count it as bytes
    on the way (counted, two workers' marks drove a half-size hot tier's usage to "100%",
    and the daemon shed real replicas that the next epoch fetched again)."""
    from tierstore.policies.snapshot import tier_states

    config, index = _dataset(tmp_path, moto_server, None)
    size = index.shards[0].size
    hot = dataclasses.replace(config.tiers["hot"], capacity=int(1.5 * size / 0.9))
    config = dataclasses.replace(config, tiers={**config.tiers, "hot": hot})
    with open_store(config) as store:
        fill = _run(store.aio.claim_fill(index.shards[0].key))
        mark = _run(store.aio.claim_fill(index.shards[1].key))
        assert fill is not None and fill.fills and mark is not None and not mark.fills
        others = {u.tier: u.in_flight for u in store.aio.catalog.usage(exclude_owner="other")}
        assert others["hot"] == size  # the fill's bytes on the way, not the mark's
        records = [store.aio.catalog.get(s.key) for s in index.shards[:2]]
        states = {t.name: t.used for t in tier_states(config, store.aio.catalog.usage(),
                                                      [r for r in records if r])}
        assert states["hot"] == size
        with pytest.raises(CopyInFlight):  # the mark still tells the daemon and readers
            _run(store.aio.claim_fill(index.shards[1].key))
        _run(mark.release())
        _run(fill.release())


def _in_blocks(config: Config, index: DatasetIndex, block: int, *,
               wrong: str | None = None) -> DatasetIndex:
    """``index`` with its shards' checksums in blocks of ``block`` bytes (block 1 of shard
    ``wrong`` given block 0's checksum: not what the store holds)."""
    with open_store(config) as store:
        shards = []
        for shard in index.shards:
            blocks = list(block_checksums(store.cat(shard.key), block))
            if shard.key == wrong:
                blocks[1] = blocks[0]
            shards.append(dataclasses.replace(shard, block_size=block, blocks=tuple(blocks)))
    return dataclasses.replace(index, shards=tuple(shards))


def test_a_shard_read_in_blocks_is_kept_hot_block_by_block(tmp_path: Path,
                                                          moto_server: Any) -> None:
    """A shard read in blocks (tar, with block checksums) is written to the hot tier as its
    blocks are checked and each block is let go once written and passed: the reader holds
    blocks, never a whole shard, and the replica is the shard's bytes, verified."""
    config, index = _dataset(tmp_path, moto_server, None)
    total, size = sum(s.size for s in index.shards), index.shards[0].size
    block = 4096
    dataset = TierDataset(config, index=_in_blocks(config, index, block), decode=None,
                          buffer_size=8, announce=False, prefetch_bytes=4 * block)
    first = _epoch(dataset, 0)
    assert first.get("warm") == total and dataset.fills.shards == SHARDS
    assert dataset.fills.bytes == total and dataset.fills.failed == 0
    assert dataset.stats.shards == SHARDS and dataset.stats.reads == SHARDS * -(-size // block)
    assert dataset.stats.peak_bytes < size  # blocks held, not whole shards (whole: >= size)
    second = _epoch(dataset, 1)
    assert second.get("warm", 0) == 0 and second.get("hot") == samples_bytes(index)
    with open_store(config) as store:
        report = store.audit(deep=True)  # every replica's bytes against its checksum
    assert (report.orphans, report.missing, report.pending) == ((), (), 0)


def test_a_block_that_does_not_match_leaves_no_hot_replica(tmp_path: Path,
                                                           moto_server: Any) -> None:
    """A block that does not match the index has the shard re-read whole (the samples come
    from the verified bytes) and its fill rolled back: nothing unverified is kept."""
    config, index = _dataset(tmp_path, moto_server, None)
    bad = index.shards[3].key
    dataset = TierDataset(config, index=_in_blocks(config, index, 4096, wrong=bad),
                          decode=None, buffer_size=8, announce=False)
    _epoch(dataset, 0)
    assert dataset.stats.rereads == [bad] and dataset.fills.shards == SHARDS - 1
    with open_store(config) as store:
        assert [r.tier for r in store.aio.catalog.get(bad).replicas] == ["warm"]
        report = store.audit(deep=True)
    assert (report.orphans, report.pending) == ((), 0)
    assert not list((tmp_path / "tiers" / "hot").rglob("*.tmp*"))


@pytest.mark.parametrize("read_back_after", [0, 10_000])
def test_a_cold_epoch_reads_its_samples_back_from_the_file_its_fill_writes(
        tmp_path: Path, moto_server: Any, monkeypatch: pytest.MonkeyPatch,
        read_back_after: int) -> None:
    """With blocks of a MiB and more, a cold epoch's reader takes the samples that are due
    long after it takes them (``READ_BACK_AFTER`` samples or more: here all, or none) from
    the file its fill writes the shard to on the hot tier, each when it is due, rather than
    hold their bytes. What it reads back is checked (nothing was re-read) and not counted as a
    hot read: those bytes were counted as they were fetched."""
    monkeypatch.setattr(dataset_module, "READ_BACK_AFTER", read_back_after)
    config = make_config(tmp_path, "moto", moto_server, moto_server.new_bucket())
    expected = {f"s{i:04d}": os.urandom(300_000) for i in range(36)}
    with open_store(config) as store:
        index = write_tar_shards(store, "big", ({"__key__": k, "bin": v}
                                                for k, v in expected.items()),
                                 samples_per_shard=12, tier="warm")
    dataset = TierDataset(config, index=_in_blocks(config, index, 2**20), decode=None,
                          buffer_size=8, announce=False)
    store = dataset.store.get()
    before = dict(store.bytes_by_tier)
    got = {sample["__key__"]: sample["bin"] for sample in dataset}
    read = {t: n - before.get(t, 0) for t, n in store.bytes_by_tier.items()}
    assert got == expected
    assert dataset.fills.shards == 3 and dataset.stats.rereads == []
    assert read.get("hot", 0) == 0 and read["warm"] == sum(s.size for s in index.shards)
    assert dataset.stats.due_samples == (len(expected) if read_back_after == 0 else 0)
