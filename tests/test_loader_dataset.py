"""TierDataset against real stores: a real DataLoader with workers reads every sample once
(local folders, moto S3), resumption yields exactly the rest, corrupt and missing shards are
named and never decoded, and start-up reads the index without listing or probing."""

from __future__ import annotations

import pickle
import random
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import s3fs
from torch.utils.data import DataLoader

from tierstore import Config, SyncStore, open_store
from tierstore.catalog.sqlite import SqliteCatalog
from tierstore.loader import (
    CorruptShard,
    DatasetIndex,
    Placement,
    SampleError,
    ShardError,
    TierDataset,
    merge_states,
    worker_order,
    write_tar_shards,
)
from tierstore.loader.prefetch import cost
from tierstore.store import Store
from tierstore.tier import Tier

N = 120


def samples(n: int = N) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"__key__": f"s{i:04d}", "bin": bytes([i % 256]) * (50 + i % 200),
               "cls": str(i % 10)}


def key_of(sample: dict[str, Any]) -> str:
    """A decode that keeps only the key: cheap to send from workers, enough to count."""
    return str(sample["__key__"])


ALL = [s["__key__"] for s in samples()]


@pytest.fixture
def dataset_store(store: SyncStore) -> tuple[SyncStore, DatasetIndex]:
    return store, write_tar_shards(store, "ds", samples(), samples_per_shard=16)


@pytest.fixture
def local_ds(local_store: SyncStore) -> tuple[SyncStore, DatasetIndex]:
    return local_store, write_tar_shards(local_store, "ds", samples(), samples_per_shard=16)


def backing_file(store: SyncStore, key: str, tier: str = "warm") -> Path:
    """The local file holding ``key``'s replica on ``tier`` (local tiers only)."""
    record = store.aio.catalog.get(key)
    assert record is not None
    replica = record.on(tier)
    assert replica is not None
    return Path(store.aio.tier(tier).full_path(replica.path))


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# -- a real DataLoader ------------------------------------------------------------------------


@pytest.mark.parametrize("store_config", ["local", "moto"], indirect=True)
def test_dataloader_with_workers_reads_every_sample_once(
        dataset_store: tuple[SyncStore, DatasetIndex], store_config: Config) -> None:
    dataset = TierDataset(store_config, "ds", decode=key_of, seed=5, buffer_size=8)
    loader = DataLoader(dataset, batch_size=4, num_workers=2)
    got = [key for batch in loader for key in batch]
    assert sorted(got) == ALL
    assert got != ALL  # shuffled
    again = [key for batch in DataLoader(dataset, batch_size=4, num_workers=2) for key in batch]
    assert again == got  # same seed, same epoch: same order
    dataset.set_epoch(1)
    other = [key for batch in DataLoader(dataset, batch_size=4, num_workers=2) for key in batch]
    assert sorted(other) == ALL and other != got


def test_ranks_and_workers_partition_the_epoch(local_ds: tuple[SyncStore, DatasetIndex]
                                               ) -> None:
    store, _ = local_ds
    got: list[str] = []
    for rank in range(3):
        dataset = TierDataset(store, "ds", decode=key_of, rank=rank, world_size=3)
        mine = [k for batch in DataLoader(dataset, batch_size=5, num_workers=2) for k in batch]
        assert len(mine) == len(dataset) == N // 3
        got += mine
    assert sorted(got) == ALL


def test_pad_gives_equal_batches_and_reports_padding(local_store: SyncStore) -> None:
    write_tar_shards(local_store, "ds", samples(50), samples_per_shard=16)
    counts = Counter[str]()
    for rank in range(4):
        dataset = TierDataset(local_store, "ds", decode=key_of, rank=rank, world_size=4,
                              equalize="pad", batch_size=4)
        batches = list(DataLoader(dataset, batch_size=4, num_workers=2))
        assert len(batches) == 4 and all(len(b) == 4 for b in batches)  # 64 = 50 + 14
        counts.update(k for b in batches for k in b)
        assert dataset.padding == (14 if rank == 3 else 0)
    assert set(counts) == {f"s{i:04d}" for i in range(50)} and counts.total() == 64


def test_dataset_pickles_without_its_store(local_ds: tuple[SyncStore, DatasetIndex]) -> None:
    store, _ = local_ds
    dataset = TierDataset(store, "ds", decode=key_of)
    clone = pickle.loads(pickle.dumps(dataset))  # what a spawned worker receives
    assert list(clone) == list(dataset)


# -- resumption -------------------------------------------------------------------------------


def check_resume(make: Callable[[], TierDataset], midpoint: int) -> None:
    """Stop after ``midpoint`` samples, save, resume in a fresh dataset: the rest comes in
    exactly the order the uninterrupted run had."""
    full = list(make())
    first = make()
    it = iter(first)
    head = [next(it) for _ in range(midpoint)]
    state = pickle.loads(pickle.dumps(first.state_dict()))
    second = make()
    second.load_state_dict(state)
    assert head + list(second) == full
    again = list(second)  # a resumed pass is one pass: the next starts the epoch afresh
    assert again == full


@pytest.mark.parametrize("midpoint", [0, 1, 37, N - 1, N])
def test_resume_mid_epoch_yields_exactly_the_rest(local_ds: tuple[SyncStore, DatasetIndex],
                                                  midpoint: int) -> None:
    store, _ = local_ds

    def make() -> TierDataset:
        dataset = TierDataset(store, "ds", decode=key_of, seed=9, buffer_size=10)
        dataset.set_epoch(4)
        return dataset

    check_resume(make, midpoint)


def test_resume_a_dataloader_with_workers_twice_then_with_one_worker(
        local_ds: tuple[SyncStore, DatasetIndex]) -> None:
    store, _ = local_ds

    def make() -> TierDataset:
        return TierDataset(store, "ds", decode=key_of, seed=2, buffer_size=6)

    def run(dataset: TierDataset, workers: int, batches: int | None) -> list[str]:
        loader = iter(DataLoader(dataset, batch_size=3, num_workers=workers))
        if batches is None:
            return [k for batch in loader for k in batch]
        return [k for _ in range(batches) for k in next(loader)]

    first = make()
    read = run(first, 2, 13)
    second = make()
    second.load_state_dict(first.loader_state_dict(13, num_workers=2, batch_size=3))
    read += run(second, 2, 5)  # same layout: the same order goes on
    third = make()  # one worker now: the rest is partitioned afresh
    third.load_state_dict(second.loader_state_dict(5, num_workers=2, batch_size=3))
    read += run(third, 1, None)
    assert sorted(read) == ALL


def test_elastic_resume_from_two_ranks_to_three(local_ds: tuple[SyncStore, DatasetIndex]
                                                ) -> None:
    store, _ = local_ds
    rng = random.Random(0)
    read: list[str] = []
    states = []
    for rank in range(2):
        dataset = TierDataset(store, "ds", decode=key_of, rank=rank, world_size=2)
        it = iter(dataset)
        read += [next(it) for _ in range(rng.randrange(0, N // 2))]
        states.append(dataset.state_dict())
    merged = merge_states(states)
    for rank in range(3):
        dataset = TierDataset(store, "ds", decode=key_of, rank=rank, world_size=3)
        dataset.load_state_dict(merged)
        read += list(dataset)
    assert sorted(read) == ALL


def test_elastic_resume_needs_every_rank(local_ds: tuple[SyncStore, DatasetIndex]) -> None:
    store, _ = local_ds
    dataset = TierDataset(store, "ds", decode=key_of, rank=0, world_size=2)
    next(iter(dataset))
    resumed = TierDataset(store, "ds", decode=key_of, rank=0, world_size=3)
    resumed.load_state_dict(dataset.state_dict())
    with pytest.raises(ValueError, match="merge the states of all ranks"):
        list(resumed)


# -- faults -----------------------------------------------------------------------------------


def test_corrupt_shard_is_named_and_never_decoded(local_ds: tuple[SyncStore, DatasetIndex]
                                                  ) -> None:
    store, index = local_ds
    bad = index.shards[3].key
    flip_byte(backing_file(store, bad))
    decoded: list[str] = []

    def record(sample: dict[str, Any]) -> str:
        decoded.append(sample["__shard__"])
        return key_of(sample)

    dataset = TierDataset(store, "ds", decode=record, shuffle=False)
    with pytest.raises(CorruptShard, match=rf"shard '{bad}' is corrupt.*checksum mismatch") \
            as caught:
        list(dataset)
    assert caught.value.shard == bad and caught.value.sample == 0
    assert "global sample 48" in str(caught.value)
    assert bad not in decoded and len(decoded) == 48  # the three shards before it


def test_corrupt_shard_reaches_the_training_loop(local_ds: tuple[SyncStore, DatasetIndex]
                                                 ) -> None:
    store, index = local_ds
    bad = index.shards[5].key
    flip_byte(backing_file(store, bad))
    dataset = TierDataset(store, "ds", decode=key_of)
    error = loader_error(DataLoader(dataset, batch_size=4, num_workers=2))
    assert isinstance(error, CorruptShard) and bad in str(error)


def loader_error(loader: DataLoader[Any]) -> BaseException:
    """The error iterating ``loader`` raises, with the loader's workers already shut down.

    The traceback would keep the DataLoader iterator alive until a garbage collection, and a
    DataLoader iterator collected as garbage waits 5 s per worker for workers that never
    hear from it; dropping the traceback lets it shut down at once.
    """
    it = iter(loader)
    try:
        for _ in it:
            pass
    except Exception as exc:
        exc.__traceback__ = None
        del it
        return exc
    raise AssertionError("the loader raised nothing")


def test_corrupt_hot_replica_fails_over(local_ds: tuple[SyncStore, DatasetIndex]) -> None:
    store, index = local_ds
    key = index.shards[1].key
    store.add_replica(key, "hot")
    flip_byte(backing_file(store, key, "hot"))
    dataset = TierDataset(store, "ds", decode=key_of)
    assert sorted(dataset) == ALL
    assert dataset.stats.rereads == [key]


def test_shard_replaced_after_indexing(local_ds: tuple[SyncStore, DatasetIndex]) -> None:
    store, index = local_ds
    key = index.shards[0].key
    dataset = TierDataset(store, "ds", decode=key_of)
    store.put(key, b"something else entirely", overwrite=True)
    with pytest.raises(CorruptShard, match="does not match the dataset index"):
        list(dataset)


def test_missing_shard_is_named(local_ds: tuple[SyncStore, DatasetIndex]) -> None:
    store, index = local_ds
    key = index.shards[2].key
    backing_file(store, key).unlink()
    with pytest.raises(ShardError, match=rf"cannot read shard '{key}'"):
        list(TierDataset(store, "ds", decode=key_of, shuffle=False))


def test_decode_error_names_shard_and_sample(local_ds: tuple[SyncStore, DatasetIndex]
                                             ) -> None:
    store, _ = local_ds

    def fussy(sample: dict[str, Any]) -> str:
        if sample["__key__"] == "s0042":
            raise ValueError("not a JPEG")
        return key_of(sample)

    with pytest.raises(SampleError, match=r"decode failed on sample 10 \('s0042'\) of shard "
                                          r"'ds/shard-000002.tar'.*not a JPEG"):
        list(TierDataset(store, "ds", decode=fussy))


def test_budget_smaller_than_a_shard_still_reads_everything(
        local_ds: tuple[SyncStore, DatasetIndex]) -> None:
    store, index = local_ds
    biggest = max(cost(s) for s in index.shards)
    dataset = TierDataset(store, "ds", decode=key_of, prefetch_bytes=100, part_size=1024,
                          fill_hot=False)  # read ahead from warm each time
    assert sorted(dataset) == ALL
    assert dataset.stats.peak_bytes == biggest  # one shard at a time
    assert dataset.stats.reads == sum(-(-s.size // 1024) for s in index.shards)
    roomy = TierDataset(store, "ds", decode=key_of, prefetch_bytes=3 * biggest,
                        read_ahead="budget")  # as far as the budget allows
    assert sorted(roomy) == ALL and biggest < roomy.stats.peak_bytes <= 3 * biggest


# -- start-up reads one object, and nothing is listed or probed --------------------------------


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("store_config", ["moto"], indirect=True)
def test_start_up_reads_the_index_and_never_lists_or_probes(
        store_config: Config, workers: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store(store_config) as store:
        index = write_tar_shards(store, "ds", samples(), samples_per_shard=16)
    log = tmp_path / "calls.log"  # appended to by this process and by forked workers

    def note(line: str) -> None:
        with log.open("a") as out:
            out.write(line + "\n")

    def counting(cls: type, name: str) -> None:
        original = getattr(cls, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            note(f"{cls.__name__}.{name}")
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    for cls, names in ((Store, ("find", "ls", "stat", "exists", "recover", "audit")),
                       (SqliteCatalog, ("objects", "pending")), (Tier, ("size", "walk"))):
        for name in names:
            counting(cls, name)
    original_call = s3fs.S3FileSystem._call_s3

    async def call_s3(self: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        note(f"s3 {method} {'ranged' if 'Range' in kwargs else 'whole'}")
        return await original_call(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", call_s3)
    # (no read-through fill: its writes to the hot tier are not the read path counted here)
    dataset = TierDataset(store_config, "ds", decode=key_of, fill_hot=False)
    got = [k for batch in DataLoader(dataset, batch_size=4, num_workers=workers) for k in batch]
    assert sorted(got) == ALL
    calls = Counter(log.read_text().splitlines())
    # The index once, then each shard once per worker that needs samples of it (a shard
    # straddling two workers' blocks is read whole by both, to verify it): ranged GETs of
    # known sizes only. Nothing listed, no size asked (no HEAD), no catalog listing.
    readers = [Placement(0, 1, w, max(workers, 1)) for w in range(max(workers, 1))]
    shard_reads = sum(len({index.locate(int(i))[0] for i in worker_order(
        index.starts, dataset.spec, p).samples}) for p in readers)
    assert len(index.shards) <= shard_reads <= len(index.shards) + len(readers) - 1
    assert calls == {"s3 get_object ranged": 1 + shard_reads}
