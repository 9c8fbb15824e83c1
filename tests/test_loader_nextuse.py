"""The loader and the tiers together: readers announce their order, the daemon (a real
process) stages what is read soonest into a hot tier half the dataset's size, and a fresh
shuffle each epoch does not make it thrash."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from storefixtures import make_config, toml_for

from tierstore import Config, open_store
from tierstore.loader import DatasetIndex, TierDataset, write_tar_shards
from tierstore.loader.announce import expected_times

SHARDS, PER_SHARD, SAMPLE = 24, 4, 4096


def samples() -> Any:
    for i in range(SHARDS * PER_SHARD):
        yield {"__key__": f"s{i:04d}", "bin": os.urandom(SAMPLE)}


def key_only(sample: dict[str, Any]) -> str:
    return str(sample["__key__"])


def daemon_once(toml: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERSTORE_")}
    done = subprocess.run([sys.executable, "-m", "tierstore.cli", "--config", str(toml),
                           "daemon", "--once", "--no-metrics"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr


def shard_of(sample_key: str) -> str:
    return f"ds/shard-{int(sample_key[1:]) // PER_SHARD:06d}.tar"


def wait_announced(catalog: Any, seen: set[str], timeout: float = 10.0) -> None:
    """Until the reader has re-announced since reading ``seen``: those shards are then due
    next epoch, after the soonest of those it has not read yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        uses = catalog.next_uses(time.time())
        ahead = [uses[k] for k in uses if k not in seen]
        if all(k in uses for k in seen) and ahead and min(uses[k] for k in seen) > min(ahead):
            return
        time.sleep(0.05)
    raise AssertionError("the reader never re-announced what it has read")


@pytest.fixture
def s3_dataset(tmp_path: Path, moto_server: Any) -> tuple[Config, Path, DatasetIndex]:
    """Shards on warm (moto S3); hot, a local folder, holds half the dataset's bytes."""
    bucket = moto_server.new_bucket()
    config = make_config(tmp_path / "store", "moto", moto_server, bucket)
    with open_store(config) as store:
        index = write_tar_shards(store, "ds", samples(), samples_per_shard=PER_SHARD,
                                 tier="warm")
    total = sum(s.size for s in index.shards)
    hot = dataclasses.replace(config.tiers["hot"], capacity=total // 2)
    config = dataclasses.replace(config, tiers={**config.tiers, "hot": hot})
    toml = tmp_path / "store.toml"
    toml.write_text(toml_for(config))
    return config, toml, index


def test_expected_times_follow_the_order_at_the_rate() -> None:
    from tierstore.loader.index import ShardEntry

    shards = [ShardEntry(k, "tar", 1, size, "x") for k, size in (("a", 100), ("b", 300),
                                                                  ("a", 100), ("c", 50))]
    assert expected_times(shards, 10.0, 100.0) == {"a": 10.0, "b": 11.0, "c": 15.0}


def test_what_the_read_ahead_fetches_is_announced_as_fetching() -> None:
    """Shards the read-ahead has begun and the reader has not opened yet: FETCHING (nobody
    else should fetch them); the rest at the times they will be fetched, the read-ahead's
    depth before they are opened."""
    from tierstore.catalog import FETCHING
    from tierstore.loader.announce import Announcer
    from tierstore.loader.index import ShardEntry

    shards = [ShardEntry(f"s{i}", "tar", 1, 100, "x") for i in range(5)]
    store: Any = None  # uses() reads nothing from the store
    announcer = Announcer(store, "r", shards, started=lambda: 3, ahead=lambda: 200,
                          clock=lambda: 1000.0)
    announcer.opened = 1  # s0 was opened; s1 and s2 are being fetched
    rate = announcer.rate()
    assert announcer.uses(1000.0) == pytest.approx({
        "s1": FETCHING, "s2": FETCHING, "s3": 1000.0 - 200 / rate,
        "s4": 1000.0 + (100 - 200) / rate})


def test_a_reader_that_keeps_its_reads_hot_announces_its_epoch_as_fetching() -> None:
    """While its read-through fills have room on the hot tier, a reader brings this epoch's
    shards itself: all of them are FETCHING (no staging copy fetches them a second time);
    the next epoch's shards it does not read in this one keep their times. Once the hot
    tier is full, it announces times again, for the daemon to stage by displacement."""
    from tierstore.catalog import FETCHING
    from tierstore.loader.announce import Announcer
    from tierstore.loader.index import ShardEntry

    shards = [ShardEntry(f"s{i}", "tar", 1, 100, "x") for i in range(5)]
    room = [True]
    store: Any = None  # uses() reads nothing from the store
    announcer = Announcer(store, "r", shards[:3], [shards[4], shards[0]], started=lambda: 2,
                          filling=lambda: room[0], clock=lambda: 1000.0)
    announcer.opened = 1
    rate = announcer.rate()
    assert announcer.uses(1000.0) == pytest.approx({
        "s1": FETCHING, "s2": FETCHING, "s4": 1000.0 + 100 / rate, "s0": 1000.0 + 200 / rate})
    room[0] = False
    assert announcer.uses(1000.0) == pytest.approx({
        "s1": FETCHING, "s2": 1000.0, "s4": 1000.0 + 100 / rate, "s0": 1000.0 + 200 / rate})


def test_readers_announce_this_epoch_then_the_next(s3_dataset: tuple[Config, Path,
                                                                     DatasetIndex]) -> None:
    config, _, index = s3_dataset
    with open_store(config) as store:
        ds = TierDataset(store, index=index, decode=key_only, seed=3, buffer_size=0)
        it = iter(ds)
        next(it)
        time.sleep(0.2)
        uses = store.aio.catalog.next_uses(time.time())
        assert set(uses) == {s.key for s in index.shards}  # this epoch's rest + the next's
        list(it)  # the pass ends: what stays announced is the next epoch, in its order
        uses = store.aio.catalog.next_uses(time.time())
        nxt = TierDataset(store, index=index, decode=key_only, seed=3, announce=False,
                          buffer_size=0)
        nxt.set_epoch(1)
        order = list(dict.fromkeys(f"ds/shard-{int(k[1:]) // PER_SHARD:06d}.tar"
                                   for k in nxt))
        assert sorted(uses, key=uses.__getitem__) == order
        quiet = TierDataset(store, index=index, decode=key_only, seed=4, announce=False)
        before = store.aio.catalog.next_uses(time.time())
        list(quiet)
        assert store.aio.catalog.next_uses(time.time()) == before  # announce=False: silent


def test_hot_tier_half_the_dataset_does_not_thrash(s3_dataset: tuple[Config, Path,
                                                                     DatasetIndex]) -> None:
    """Three epochs, a fresh shuffle each; the daemon runs one cycle between epochs and one
    halfway through each. Hot holds at most its 90% high watermark of half the dataset, so
    it can serve at most 45% of an epoch's reads. It must serve at least 90% of that in
    every later epoch (the issue's no-thrash bound) without fetching anything twice: no
    shard leaves the hot tier once the tier is full (a shard displaced for one its reader
    would fetch once anyway is fetched again), LRU on the same order, computed beside it,
    thrashes."""
    config, toml, index = s3_dataset
    hot_share = 0.9 * config.tiers["hot"].capacity / sum(s.size for s in index.shards)
    total = SHARDS * PER_SHARD
    rates, lru_rates, held = [], [], []
    lru: list[str] = []  # most recent last; the hot tier's bytes as an LRU cache
    with open_store(config) as store:
        ds = TierDataset(store, index=index, decode=key_only, seed=11, read_ahead=1,
                         buffer_size=0)
        for epoch in range(3):
            ds.set_epoch(epoch)
            before = dict(store.aio.reads_by_tier)
            it = iter(ds)
            keys = [next(it) for _ in range(total // 2)]
            wait_announced(store.aio.catalog, set(map(shard_of, keys)))
            daemon_once(toml)
            keys += list(it)
            assert sorted(keys) == sorted(f"s{i:04d}" for i in range(total))
            reads = {t: n - before.get(t, 0) for t, n in store.aio.reads_by_tier.items()}
            rates.append(reads.get("hot", 0) / sum(reads.values()))
            order = list(dict.fromkeys(map(shard_of, keys)))
            hits = 0
            for key in order:
                hits += key in lru
                lru = [*[k for k in lru if k != key][-int(hot_share * SHARDS) + 1:], key]
            lru_rates.append(hits / len(order))
            daemon_once(toml)
            held.append({k for k in store.find("ds/")
                         if store.aio.catalog.get(k).on("hot") is not None})  # type: ignore[union-attr]
        audit = store.audit(deep=True)
    assert audit.ok
    for rate in rates[1:]:
        assert rate >= 0.9 * hot_share, (rates, lru_rates)
    assert held[0] <= held[1] <= held[2], held  # nothing left hot to be fetched again
    assert max(lru_rates[1:]) < 0.9 * hot_share, lru_rates
