"""TierLoader's live metrics: per-tier reads gathered from the worker processes, waits and
compute per step, live AU, and the Prometheus export. Nothing here asserts a duration: the
times checked are only ordered (a wait recorded, compute counted when the loop sleeps)."""

from __future__ import annotations

import gc
import json
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from prometheus_client import CollectorRegistry, generate_latest

from tierstore import SyncStore
from tierstore.energy import EnergyLedger, EnergyModel
from tierstore.loader import ShardEntry, TierDataset, TierLoader, write_tar_shards
from tierstore.loader.metrics import LoaderMeter, TierCounters, percentile, register_prometheus
from tierstore.telemetry import LoaderFiles

N = 96


def samples(n: int = N) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"__key__": f"s{i:04d}", "bin": bytes([i % 256]) * (100 + i)}


def sample_id(sample: dict[str, Any]) -> torch.Tensor:
    return torch.tensor(int(sample["__key__"][1:]))


def make_loader(store: SyncStore, workers: int, **options: Any) -> TierLoader:
    dataset = TierDataset(store, "ds", decode=sample_id, seed=1, buffer_size=8)
    return TierLoader(dataset, batch_size=8, num_workers=workers, **options)


@pytest.mark.parametrize("workers", [0, 2])
def test_all_on_hot_is_a_hot_hit_rate_of_one(local_store: SyncStore, workers: int) -> None:
    index = write_tar_shards(local_store, "ds", samples(), samples_per_shard=12, tier="hot")
    loader = make_loader(local_store, workers)
    seen = 0
    for batch in loader:
        seen += len(batch)
        time.sleep(0.002)  # the "compute" of a step
    m = loader.metrics()
    assert seen == m.samples == N
    assert m.batches == len(loader)
    assert m.hit_rate["hot"] == 1.0 and m.hot_hit_rate == 1.0
    assert m.hit_rate["warm"] == 0.0 and m.hit_rate["cold"] == 0.0
    # every sample read once, each from its shard's file when due (the tar's end not)
    assert m.bytes_by_tier["hot"] == sum(s.offsets[-1] - s.offsets[0] for s in index.shards)
    assert m.reads_by_tier["hot"] == N
    assert m.bytes_per_s_by_tier["hot"] > 0
    assert m.compute_s > 0 and 0.0 < m.au <= 1.0 and 0.0 <= m.au_recent <= 1.0
    assert 0.0 <= m.wait_p50_s <= m.wait_p99_s <= m.wait_max_s
    assert m.wait_s > 0
    assert m.in_flight_bytes == 0  # the pass is over: nothing is held
    assert m.tier_classes["hot"] == "hot"
    doc = json.loads(m.to_json())
    assert doc["samples"] == N and doc["hit_rate"]["hot"] == 1.0


def test_hit_rates_follow_where_the_shards_are(local_store: SyncStore) -> None:
    index = write_tar_shards(local_store, "ds", samples(), samples_per_shard=12, tier="warm")
    moved = [s.key for s in index.shards[: len(index.shards) // 2]]
    for key in moved:
        local_store.move(key, "hot")
    def read(shards: list[ShardEntry]) -> tuple[int, int]:
        """Bytes read from hot (each sample on its own) and warm (whole shards)."""
        return (sum(s.offsets[-1] - s.offsets[0] for s in shards if s.key in moved),
                sum(s.size for s in shards if s.key not in moved))

    hot_bytes, warm_bytes = read(index.shards)
    loader = make_loader(local_store, 2, persistent_workers=True)
    for epoch in range(2):  # persistent workers: the second pass counts from zero again
        loader.set_epoch(epoch)
        assert sum(len(b) for b in loader) == N
        m = loader.metrics()
        assert m.epoch == epoch
        assert m.bytes_by_tier["hot"] == hot_bytes
        assert m.bytes_by_tier.get("warm", 0) == warm_bytes
        assert m.hit_rate["hot"] == pytest.approx(hot_bytes / (hot_bytes + warm_bytes))
        moved = [s.key for s in index.shards]  # the readers kept what they fetched
        hot_bytes, warm_bytes = read(index.shards)
        assert sum(m.hit_rate.values()) == pytest.approx(1.0)
        assert sum(m.read_hit_rate.values()) == pytest.approx(1.0)
    loader.shutdown()


def test_metrics_are_live_mid_pass(local_store: SyncStore) -> None:
    write_tar_shards(local_store, "ds", samples(), samples_per_shard=12, tier="cold")
    loader = make_loader(local_store, 2)
    it = iter(loader)
    next(it)
    m = loader.metrics()
    assert m.samples == 8 and m.batches == 1
    assert m.bytes_by_tier["cold"] > 0  # the worker that made the batch published its reads
    assert m.au == 0.0  # one step: the first is left out
    next(it)
    assert loader.metrics().samples == 16
    loader.shutdown()


def test_prometheus_export(local_store: SyncStore) -> None:
    write_tar_shards(local_store, "ds", samples(), samples_per_shard=12, tier="hot")
    loader = make_loader(local_store, 0)
    for _ in loader:
        pass
    registry = register_prometheus(loader, CollectorRegistry())
    text = generate_latest(registry).decode()
    assert 'tierstore_loader_samples{rank="0"} 96.0' in text
    assert 'tierstore_loader_tier_hit_ratio{rank="0",tier="hot"} 1.0' in text
    assert "tierstore_loader_accelerator_utilisation{" in text
    assert "tierstore_loader_wait_p99_seconds{" in text
    m = loader.metrics()  # the waits as the accelerator's idle energy, by the [energy] model
    model = EnergyModel.from_config(local_store.config)
    assert m.idle_joules == pytest.approx(m.wait_s * model.accelerator_watts) and m.wait_s > 0
    assert m.idle_grams_co2e == pytest.approx(model.idle(m.wait_s).grams_co2e)
    assert 'tierstore_loader_accelerator_idle_joules{rank="0"}' in text
    assert 'tierstore_loader_accelerator_idle_grams_co2e{rank="0"}' in text
    [line] = EnergyLedger.of(local_store.config).entries()  # the pass's line: report energy
    assert (line["rank"], line["idle_joules"]) == (0, pytest.approx(m.idle_joules, rel=0.05))


def test_meter_leaves_the_first_step_out_of_au() -> None:
    meter = LoaderMeter()
    t = time.perf_counter()
    meter.step(t - 5.0, 4)  # a long start-up wait
    assert meter.au() == 0.0 and meter.first_wait >= 5.0 and meter.wait_s == 0.0
    meter.step(time.perf_counter(), 4)  # asked at once: no compute, almost no wait
    assert meter.steps == 2 and meter.samples == 8
    assert len(meter.waits) == 2 and max(meter.waits) >= 5.0


def test_counters_sum_rows_and_reset() -> None:
    counters = TierCounters(["hot", "warm"], 3)
    counters.write(0, {"hot": 2}, {"hot": 200}, 10, 1)
    counters.write(2, {"hot": 1, "warm": 4}, {"hot": 100, "warm": 400}, 5, 2)
    reads, nbytes, held, shards = counters.read()
    assert reads == {"hot": 3, "warm": 4} and nbytes == {"hot": 300, "warm": 400}
    assert (held, shards) == (15, 3)
    counters.reset()
    assert counters.read()[1] == {"hot": 0, "warm": 0}
    assert percentile([], 99) == 0.0 and percentile([1.0, 3.0], 50) == 2.0


def test_failovers_are_counted_where_the_loop_can_see_them(local_store: SyncStore) -> None:
    """A shard's hot replica vanishes behind the store's back: its reads go to warm, no error
    reaches the loop, and each fallback shows in the metrics (and is logged)."""
    index = write_tar_shards(local_store, "ds", samples(), samples_per_shard=12, tier="warm")
    for shard in index.shards[:3]:
        local_store.add_replica(shard.key, "hot")
        record = local_store.aio.catalog.get(shard.key)
        replica = record.on("hot") if record else None
        assert replica is not None
        os.remove(local_store.aio.tier("hot").full_path(replica.path))
    loader = make_loader(local_store, 2)
    assert sorted(int(i) for batch in loader for i in batch) == list(range(N))
    m = loader.metrics()
    assert m.failovers >= 3 and m.hedged_reads >= 0
    registry = register_prometheus(loader)
    assert "tierstore_loader_failovers" in generate_latest(registry).decode()


# -- served by the node's daemon --------------------------------------------------------------


def test_the_daemon_serves_the_loaders_metrics(local_store: SyncStore, tmp_path: Path) -> None:
    """A real daemon over the same store serves a training process's loader metrics on its
    own endpoint, labelled with the process; they leave when the loader does."""
    from test_daemon import Running, scrape, write_toml

    write_tar_shards(local_store, "ds", samples(), samples_per_shard=12, tier="hot")
    toml = write_toml(local_store.config, tmp_path / "store.toml")
    daemon = Running(toml, "--tick", "1h", "--dry-run", "--metrics-port", "0")
    try:
        url = re.search(r"metrics=(\S+)", daemon.wait_for("daemon started")).group(1)
        loader = make_loader(local_store, 2, metrics_every=0.1)
        batches = iter(loader)
        for _ in range(4):
            next(batches)
        deadline = time.monotonic() + 30
        while not any(name == "tierstore_loader_samples" and value == 32.0
                      for (name, _), value in scrape(url).items()):
            assert time.monotonic() < deadline, "the loader's metrics never reached the daemon"
            time.sleep(0.05)
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        assert re.search(r'tierstore_loader_samples\{process="loader-[^"]+",rank="0"\} 32', text)
        assert re.search(r'tierstore_loader_tier_hit_ratio\{process="loader-[^"]+",rank="0",'
                         r'tier="hot"\} 1\.0', text)
        assert "tierstore_daemon_state" in text  # the daemon's own, beside them
        files = list((local_store.config.home / "metrics").glob("*.prom"))
        assert len(files) == 1
        del batches
        loader.shutdown()
        del loader
        gc.collect()  # the file goes when the loader is collected: at once, or once its
        deadline = time.monotonic() + 10  # writer thread, mid-write, lets go of it
        while files[0].exists():
            assert time.monotonic() < deadline, "the loader's metrics file stayed"
            time.sleep(0.05)
        assert "tierstore_loader_" not in urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        daemon.kill()


def test_loader_files_skip_stale_and_broken_ones_and_merge(tmp_path: Path) -> None:
    def family(process_value: float) -> str:
        return ("# HELP tierstore_loader_samples Samples\n# TYPE tierstore_loader_samples gauge\n"
                f'tierstore_loader_samples{{rank="0"}} {process_value}\n')

    (tmp_path / "a.prom").write_text(family(5))
    (tmp_path / "b.prom").write_text(family(7))
    (tmp_path / "old.prom").write_text(family(9))
    os.utime(tmp_path / "old.prom", (time.time() - 3600, time.time() - 3600))
    (tmp_path / "broken.prom").write_text("tierstore_loader_samples{rank= 5 garbage\n")
    registry = CollectorRegistry()
    registry.register(LoaderFiles(tmp_path))
    text = generate_latest(registry).decode()
    assert text.count("# TYPE tierstore_loader_samples gauge") == 1
    assert 'tierstore_loader_samples{process="a",rank="0"} 5.0' in text
    assert 'tierstore_loader_samples{process="b",rank="0"} 7.0' in text
    assert "9.0" not in text and "broken" not in text


def test_str_of_the_metrics_is_one_readable_line() -> None:
    from tierstore.loader.metrics import LoaderMetrics

    m = LoaderMetrics(rank=1, world_size=2, epoch=3, batches=10, samples=640, wall_s=2.0,
                      samples_per_s=320.0, bytes_per_s=35e6, bytes_by_tier={"hot": 3, "warm": 1},
                      reads_by_tier={"hot": 3, "warm": 1}, bytes_per_s_by_tier={},
                      hit_rate={"hot": 0.75, "warm": 0.25}, read_hit_rate={}, hot_hit_rate=0.75,
                      wait_s=0.1, wait_p50_s=0.0007, wait_p99_s=0.0053, wait_max_s=0.01,
                      compute_s=1.9, au=0.981, au_recent=0.98, in_flight_bytes=0,
                      in_flight_shards=0, prefetch_budget_bytes=1, peak_in_flight_bytes=0)
    assert str(m) == ("rank 1/2, epoch 3: 640 samples, 320 samples/s (35.0 MB/s), AU 98%, "
                      "wait p50 0.7 ms p99 5.3 ms, bytes from hot 75%, warm 25%")
