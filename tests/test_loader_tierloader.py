"""TierLoader against real stores, and the prefetcher's adaptive read-ahead.

A real DataLoader with workers over local folders and moto S3 reads every sample once in
batches collated in the workers; persistent workers follow set_epoch; a resumed loader yields
exactly the remaining batches in the same order (also after an elastic change of workers or
ranks); a worker error shuts the workers down at once. The read-ahead depth grows over a slow
tier and stays small when the consumer sets the pace; passing failures are retried.

Slow and flaky tiers are SIMULATED by :class:`SimulatedRemoteFileSystem` (local files read
after a real delay, or failing their first reads with a connection error): latency cannot be
had from a local server otherwise. Nothing here asserts a duration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
import torch
from fsspec.asyn import AsyncFileSystem
from fsspec.implementations.local import LocalFileSystem

from tierstore import Config, SyncStore, open_store
from tierstore.loader import (
    Backoff,
    CorruptShard,
    ShardError,
    TierDataset,
    TierLoader,
    merge_states,
    read_index,
    write_tar_shards,
)
from tierstore.loader.index import block_checksums
from tierstore.loader.prefetch import cost

N = 120
ALL = list(range(N))


def samples(n: int = N) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"__key__": f"s{i:04d}", "bin": bytes([i % 256]) * (50 + i % 200)}


def sample_id(sample: dict[str, Any]) -> torch.Tensor:
    """A decode to one small tensor: the sample's number."""
    return torch.tensor(int(sample["__key__"][1:]))


def key_of(sample: dict[str, Any]) -> str:
    return str(sample["__key__"])


def ids(batches: list[Any]) -> list[list[int]]:
    return [batch.tolist() for batch in batches]


@pytest.fixture
def local_ds(local_store: SyncStore) -> SyncStore:
    write_tar_shards(local_store, "ds", samples(), samples_per_shard=16)
    return local_store


def loader_over(store: Any, *, workers: int = 2, batch_size: int = 7, seed: int = 3,
                **options: Any) -> TierLoader:
    dataset = TierDataset(store, "ds", decode=sample_id, seed=seed, buffer_size=8)
    return TierLoader(dataset, batch_size=batch_size, num_workers=workers, **options)


# -- reading ----------------------------------------------------------------------------------


@pytest.mark.parametrize("store_config", ["local", "moto"], indirect=True)
def test_every_sample_once_in_batches_collated_by_workers(store_config: Config) -> None:
    with open_store(store_config) as store:
        write_tar_shards(store, "ds", samples(), samples_per_shard=16)
    loader = loader_over(store_config)
    batches = list(loader)
    assert all(isinstance(b, torch.Tensor) and b.is_shared() for b in batches)  # via shm
    got = [i for batch in ids(batches) for i in batch]
    assert sorted(got) == ALL and got != ALL
    assert len(batches) == len(loader) == 18  # each worker's block: whole batches of 7
    assert set(loader.stats.readers) == {"0/0", "0/1"}
    assert all(s.shards > 0 and s.depth_bytes > 0 for s in loader.stats.readers.values())
    assert loader.stats.samples == N and loader.stats.batches == 18


def test_persistent_workers_follow_set_epoch(local_ds: SyncStore, tmp_path: Path) -> None:
    started = tmp_path / "workers"

    def note_worker(worker: int) -> None:
        with started.open("a") as out:
            out.write(f"{os.getpid()}\n")

    loader = loader_over(local_ds, persistent_workers=True, worker_init_fn=note_worker)
    epoch0 = ids(list(loader))
    loader.set_epoch(1)
    epoch1 = ids(list(loader))
    loader.set_epoch(0)
    again0 = ids(list(loader))
    loader.shutdown()
    assert len(started.read_text().split()) == 2  # the same two workers throughout
    fresh = loader_over(local_ds)
    fresh.set_epoch(1)
    assert epoch1 == ids(list(fresh))  # as a loader that starts at epoch 1
    assert epoch1 != epoch0 and sorted(i for b in epoch1 for i in b) == ALL
    assert again0 == epoch0


# -- resumption -------------------------------------------------------------------------------


def check_loader_resume(make: Callable[[], TierLoader], stop: int, *,
                        resume: Callable[[], TierLoader] | None = None) -> None:
    """Stop after ``stop`` batches, save, load into a fresh loader: the batches that follow
    are exactly those the uninterrupted run had left, in the same order."""
    full = ids(list(make()))
    first = make()
    it = iter(first)
    head = ids([next(it) for _ in range(stop)])
    state = pickle.loads(pickle.dumps(first.state_dict()))
    first.shutdown()
    second = (resume or make)()
    second.load_state_dict(state)
    assert head + ids(list(second)) == full
    assert ids(list(second)) == full  # the pass after a resumed one is the whole epoch


@pytest.mark.parametrize("stop", [0, 1, 6, 17, 18])
def test_resume_yields_the_remaining_batches_in_order(local_ds: SyncStore, stop: int) -> None:
    def make() -> TierLoader:
        loader = loader_over(local_ds)
        loader.set_epoch(2)
        return loader

    check_loader_resume(make, stop)


def test_resume_into_running_persistent_workers(local_ds: SyncStore) -> None:
    resumed = loader_over(local_ds, persistent_workers=True)
    list(resumed)  # its workers run, holding the dataset as it was

    def make() -> TierLoader:
        return loader_over(local_ds, persistent_workers=True)

    check_loader_resume(make, 5, resume=lambda: resumed)
    resumed.shutdown()


def test_elastic_resume_from_two_workers_to_one_and_back(local_ds: SyncStore) -> None:
    first = loader_over(local_ds, workers=2)
    it = iter(first)
    read = [i for _ in range(5) for i in next(it).tolist()]
    second = loader_over(local_ds, workers=1)
    second.load_state_dict(first.state_dict())
    it = iter(second)
    read += [i for _ in range(4) for i in next(it).tolist()]
    third = loader_over(local_ds, workers=2)
    third.load_state_dict(second.state_dict())
    read += [i for batch in third for i in batch.tolist()]
    assert sorted(read) == ALL  # every sample once


def test_elastic_resume_of_merged_ranks(local_ds: SyncStore) -> None:
    read: list[int] = []
    states = []
    for rank, stop in ((0, 3), (1, 5)):
        dataset = TierDataset(local_ds, "ds", decode=sample_id, rank=rank, world_size=2)
        loader = TierLoader(dataset, batch_size=4, num_workers=2)
        it = iter(loader)
        read += [i for _ in range(stop) for i in next(it).tolist()]
        states.append(loader.state_dict())
    merged = merge_states(states)
    assert merged["next_worker"] == {"0": 1, "1": 1}
    dataset = TierDataset(local_ds, "ds", decode=sample_id, rank=0, world_size=1)
    resumed = TierLoader(dataset, batch_size=4, num_workers=1)
    resumed.load_state_dict(merged)
    read += [i for batch in resumed for i in batch.tolist()]
    assert sorted(read) == ALL


# -- faults -----------------------------------------------------------------------------------


def test_worker_error_shuts_the_workers_down_at_once(local_ds: SyncStore,
                                                     tmp_path: Path) -> None:
    index_key = local_ds.aio.catalog.get("ds/shard-000004.tar")
    assert index_key is not None
    replica = index_key.on("warm")
    assert replica is not None
    path = Path(local_ds.aio.tier("warm").full_path(replica.path))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    started = tmp_path / "workers"

    def note_worker(worker: int) -> None:
        with started.open("a") as out:
            out.write(f"{os.getpid()}\n")

    loader = loader_over(local_ds, worker_init_fn=note_worker, persistent_workers=True)
    with pytest.raises(CorruptShard, match=r"shard-000004\.tar") as caught:
        for _ in loader:
            pass
    assert caught.value is not None  # the traceback is alive, and still the workers are gone
    pids = [int(p) for p in started.read_text().split()]
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert loader.dataloader._iterator is None  # the next pass starts new workers


def _record_frozen(worker: int) -> None:
    """worker_init_fn: how many objects the forked worker's collector leaves alone."""
    import gc

    Path(os.environ["WORKER_LOG"], str(worker)).write_text(str(gc.get_freeze_count()))


def test_workers_collections_leave_the_inherited_heap_alone(local_ds: SyncStore,
                                                              tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    import gc

    monkeypatch.setenv("WORKER_LOG", str(tmp_path))
    loader = loader_over(local_ds, worker_init_fn=_record_frozen,
                         multiprocessing_context="fork")
    assert sorted(i for batch in ids(list(loader)) for i in batch) == ALL
    frozen = [int((tmp_path / str(w)).read_text()) for w in range(2)]
    assert all(n > 10_000 for n in frozen), frozen  # what was alive at the fork: torch, ...
    assert gc.get_freeze_count() == 0  # the training process collects as before


def _arenas_in_use(sample: dict[str, Any]) -> torch.Tensor:
    """decode: the sample's number; the first time in a worker, also writes how many malloc
    arenas the worker has (glibc's malloc_info) to WORKER_LOG/arenas-<pid>."""
    import ctypes

    out = Path(os.environ["WORKER_LOG"], f"arenas-{os.getpid()}")
    if not out.exists():
        libc = ctypes.CDLL(None)
        libc.fopen.restype = ctypes.c_void_p
        stream = libc.fopen(str(out).encode(), b"w")
        libc.malloc_info(0, ctypes.c_void_p(stream))
        libc.fclose(ctypes.c_void_p(stream))
    return sample_id(sample)


def test_a_workers_threads_share_two_malloc_arenas(local_ds: SyncStore, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # a spawned worker starts with one arena; a forked one inherits its parent's, all free
    # for its threads to take (pytest's process has a dozen)
    monkeypatch.setenv("WORKER_LOG", str(tmp_path))
    dataset = TierDataset(local_ds, "ds", decode=_arenas_in_use, seed=3, buffer_size=8)
    loader = TierLoader(dataset, batch_size=7, num_workers=1, persistent_workers=True,
                        multiprocessing_context="spawn")
    for epoch in range(2):  # counted in the second pass: the worker's threads all ran
        for stale in tmp_path.glob("arenas-*"):
            stale.unlink()
        loader.set_epoch(epoch)
        assert sorted(i for batch in ids(list(loader)) for i in batch) == ALL
    (report,) = [p.read_text() for p in tmp_path.glob("arenas-*")]
    assert 1 <= report.count("<heap nr=") <= 2, report.count("<heap nr=")


def test_batches_of_bytes_are_warned_about(local_ds: SyncStore) -> None:
    dataset = TierDataset(local_ds, "ds", decode=lambda s: s["bin"])
    with pytest.warns(UserWarning, match="Python bytes"):
        next(iter(TierLoader(dataset, batch_size=4)))


# -- adaptive read-ahead over a simulated slow tier ------------------------------------------


class SimulatedRemoteFileSystem(AsyncFileSystem):
    """A SIMULATION of a distant tier, for tests only: local files, each read answered after
    a real ``latency`` seconds, the first ``failures`` reads of each file refused with a
    connection error, and reads from byte ``hold_from`` on held until :attr:`held` is set."""

    protocol = "simremote"

    held = threading.Event()  # reads from ``hold_from`` on wait until this is set

    def __init__(self, *args: Any, latency: float = 0.0, failures: int = 0,
                 hold_from: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.latency, self.failures = float(latency), int(failures)
        self.hold_from = hold_from
        self._local = LocalFileSystem()
        self._failed: dict[str, int] = {}

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return path.removeprefix(f"{cls.protocol}://") or "/"

    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None,
                        **kwargs: Any) -> bytes:
        await asyncio.sleep(self.latency)
        while self.hold_from is not None and (start or 0) >= self.hold_from and \
                not self.held.is_set():
            await asyncio.sleep(0.01)
        if self._failed.get(path, 0) < self.failures:
            self._failed[path] = self._failed.get(path, 0) + 1
            raise ConnectionResetError(f"simulated: connection reset reading {path}")
        data: bytes = self._local.cat_file(path, start=start, end=end)
        return data


fsspec.register_implementation(SimulatedRemoteFileSystem.protocol, SimulatedRemoteFileSystem,
                               clobber=True)


def simulated(store: SyncStore, **options: Any) -> Config:
    """The store's configuration with its warm tier read through the simulation."""
    config = store.config
    warm = config.tiers["warm"]
    path = warm.url.removeprefix("file://")
    tiers = {**config.tiers, "warm": dataclasses.replace(
        warm, url=f"{SimulatedRemoteFileSystem.protocol}://{path}", options=options)}
    return dataclasses.replace(config, tiers=tiers)


@pytest.fixture
def small_shards(local_store: SyncStore) -> SyncStore:
    write_tar_shards(local_store, "ds", samples(96), samples_per_shard=4)  # 24 shards
    return local_store


def test_depth_grows_over_a_slow_tier(small_shards: SyncStore) -> None:
    budget = 600_000
    dataset = TierDataset(simulated(small_shards, latency=0.03), "ds", decode=key_of,
                          prefetch_bytes=budget, fill_hot=False)  # read from warm each time
    assert len(list(dataset)) == 96
    stats = dataset.stats
    assert stats.max_depth_bytes > stats.start_depth_bytes
    assert stats.peak_shards > 2 and stats.peak_bytes <= budget
    assert stats.latency_s > 0 and stats.consumption_bytes_per_s > 0
    fixed = TierDataset(simulated(small_shards, latency=0.03), "ds", decode=key_of,
                        prefetch_bytes=budget, read_ahead=1)
    assert len(list(fixed)) == 96
    assert fixed.stats.peak_shards == 1 and fixed.stats.depth_bytes == budget


def test_depth_stays_small_when_the_consumer_sets_the_pace(small_shards: SyncStore) -> None:
    def slow_decode(sample: dict[str, Any]) -> str:
        time.sleep(0.003)  # the consumer's own work, which the local tier easily outpaces
        return key_of(sample)

    dataset = TierDataset(small_shards, "ds", decode=slow_decode, shuffle=False)
    assert len(list(dataset)) == 96
    stats = dataset.stats
    shard = cost(dataset.index.shards[0])
    assert stats.max_depth_bytes == stats.start_depth_bytes  # never grew
    assert stats.depth_bytes < shard  # one shard ahead is plenty
    assert stats.peak_shards <= 2 and stats.busy_s > stats.stall_s


def test_passing_failures_are_retried(small_shards: SyncStore) -> None:
    dataset = TierDataset(simulated(small_shards, failures=1), "ds", decode=key_of,
                          retry=Backoff(attempts=3, base=0.001))
    assert len(list(dataset)) == 96
    assert dataset.stats.retries == 24  # each shard's first read


def test_a_failure_that_stays_surfaces_after_the_retries(small_shards: SyncStore) -> None:
    index = read_index(small_shards, "ds")  # read here: only shard reads fail
    dataset = TierDataset(simulated(small_shards, failures=5), index=index, decode=key_of,
                          retry=Backoff(attempts=2, base=0.001), shuffle=False)
    with pytest.raises(ShardError, match=r"shard-000000.tar.*simulated: connection reset"):
        list(dataset)
    assert dataset.stats.retries >= 1


def test_a_shard_is_taken_from_its_checked_blocks_while_the_rest_is_read(
        local_store: SyncStore) -> None:
    """With block checksums in the index, the first samples come out while the shard's later
    blocks cannot arrive; a block that does not match its checksum has the shard re-read
    through the verified path, which hands out the same samples."""
    index = write_tar_shards(local_store, "ds", samples(64), samples_per_shard=64)
    (entry,) = index.shards
    data = local_store.cat(entry.key)
    block = 2048

    def dataset(blocks: tuple[str, ...]) -> TierDataset:
        shard = dataclasses.replace(entry, block_size=block, blocks=blocks)
        return TierDataset(simulated(local_store, hold_from=3 * block), decode=key_of,
                           index=dataclasses.replace(index, shards=(shard,)), shuffle=False,
                           part_size=block, fill_hot=False)

    def first_of(dataset: TierDataset) -> tuple[threading.Thread, list[str]]:
        got: list[str] = []

        def take() -> None:
            try:
                got.extend(k for k in dataset)
            except BaseException as exc:  # shown by the assertion below
                got.append(repr(exc))

        taker = threading.Thread(target=take, daemon=True)
        taker.start()
        return taker, got

    SimulatedRemoteFileSystem.held.clear()
    try:
        taker, got = first_of(dataset(block_checksums(data, block)))
        for _ in range(3000):  # held reads never end: only checked blocks can give these
            if got:
                break
            time.sleep(0.01)
        assert got and got[0] == "s0000" and len(got) < 64
    finally:
        SimulatedRemoteFileSystem.held.set()
    taker.join(30)
    wrong = list(block_checksums(data, block))
    wrong[1] = wrong[0]
    mismatched = dataset(tuple(wrong))  # block 1 does not match: the shard is re-read whole
    got2 = list(mismatched)
    assert mismatched.stats.rereads == [entry.key]
    assert got == [f"s{i:04d}" for i in range(64)] and got2 == got


def test_a_read_ahead_smaller_than_a_block_still_ends_the_pass(local_store: SyncStore) -> None:
    """A read-ahead limit below one block admits one block at a time and never none: a pass
    ends as soon as its last sample is taken, with the blocks past it (a tar's end) read or
    left, not waited for (a shard's own slot once kept every block out, until the pass gave
    up waiting a minute later)."""
    index = write_tar_shards(local_store, "ds", samples(64), samples_per_shard=32)
    block = 2048
    shards = tuple(dataclasses.replace(s, block_size=block,
                                       blocks=block_checksums(local_store.cat(s.key), block))
                   for s in index.shards)
    dataset = TierDataset(local_store, index=dataclasses.replace(index, shards=shards),
                          decode=key_of, prefetch_bytes=block // 2, shuffle=False)
    got: list[str] = []
    taker = threading.Thread(target=lambda: got.extend(dataset), daemon=True)
    taker.start()
    taker.join(30)
    assert not taker.is_alive() and got == [f"s{i:04d}" for i in range(64)]
