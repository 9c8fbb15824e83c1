"""``tierstore bench loader`` end to end against the moto server: the result document's
structure and that its counts add up (every sample once per epoch per loader, hit rates that
sum to 1, AU in [0, 1]); the plot and the saved result exist. No timing is asserted.

Also the pieces that can be checked exactly: the LRU bound, the shard-read sequence, the
config the daemon is given, the baselines' byte ranges."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from storefixtures import toml_for

from tierstore import Config, SyncStore, TierClass, TierConfig
from tierstore.cli import build_parser, main
from tierstore.cli.bench.loader.baselines import SampleReads, collate_payloads, sample_refs
from tierstore.cli.bench.loader.measure import lru_hit_rates, shard_reads
from tierstore.cli.bench.loader.stores import config_toml
from tierstore.config import config_from_toml
from tierstore.loader import OrderSpec, write_tar_shards
from tierstore.loader.runtime import LoopThread


@pytest.fixture
def s3_config(tmp_path: Path, s3_bucket: tuple[Any, str]) -> Path:
    """A store whose warm tier is a bucket of the moto fixture."""
    server, bucket = s3_bucket
    if server.name != "moto":
        pytest.skip("the benchmark check runs on moto only")
    config = Config(home=tmp_path / "user", catalog=f"sqlite:///{tmp_path / 'user.db'}",
                    tiers={"warm": TierConfig(name="warm", tier_class=TierClass.WARM,
                                              url=f"s3://{bucket}/warm",
                                              options=server.storage_options())},
                    default_tier="warm")
    path = tmp_path / "user.toml"
    path.write_text(toml_for(config))
    return path


def test_bench_loader_document(tmp_path: Path, s3_config: Path,
                               capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "result.json"
    argv = ["bench", "loader", "--config", str(s3_config), "--preset", "resnet50",
            "--samples", "60", "--sample-size", "8KiB", "--sample-stdev", "2KiB",
            "--shard-size", "64KiB", "--batch-size", "8", "--compute", "0.002",
            "--epochs", "2", "--workers", "2", "--json", str(out),
            "--results", str(tmp_path / "results"), "--workdir", str(tmp_path / "w"),
            "--daemon-tick", "0.5s"]
    monkeypatch.setattr("sys.argv", ["/venv/bin/tierstore", *argv])  # the command recorded
    status = main(argv)
    assert status == 0
    printed = capsys.readouterr().out
    assert "tierstore bench loader" in printed and "cold epoch samples/s" in printed
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "loader"
    assert doc["command"].startswith("tierstore bench loader --config")
    assert doc["machine"]["cores"] >= 1
    assert doc["dataset"]["samples"] == 60 and doc["dataset"]["format"] == "tar"
    assert doc["store"]["data_tier"] == "warm" and doc["store"]["hot_tier"] == "hot"
    assert doc["daemon"]["ran"] is True and doc["daemon"]["exit_status"] == 0
    entries = doc["results"]
    assert sorted((r["loader"], r["epoch"]) for r in entries) == sorted(
        (name, e) for name in ("tierstore", "plain", "filecache") for e in range(2))
    for r in entries:
        for field in ("samples_per_s", "mb_per_s", "au", "wait_p50_s", "wait_p99_s",
                      "hit_rate", "peak_rss_bytes"):
            assert field in r, field
        assert r["samples"] == 60, r  # every sample once per epoch
        assert r["bytes"] == doc["dataset"]["payload_bytes"]
        assert 0.0 <= r["au"] <= 1.0
        assert 0.0 <= r["wait_p50_s"] <= r["wait_p99_s"]
        assert sum(r["hit_rate"].values()) == pytest.approx(1.0)
        assert all(0.0 <= v <= 1.0 for v in r["hit_rate"].values())
        assert r["peak_rss_bytes"] >= r["peak_pss_bytes"] > 0
        idle = r["accelerator_idle"]  # each loader's waiting, as energy: an estimate
        assert idle["estimate"] and r["accelerator_wait_s"] == pytest.approx(r["wait_s"])
        assert idle["joules"] == pytest.approx(r["wait_s"] * 700.0, rel=1e-3, abs=1e-3)
        assert idle["grams_co2e"] == pytest.approx(idle["joules"] / 3.6e6 * 480, abs=1e-4)
    assert doc["energy"]["accelerator"] == "h100-sxm" and "estimates" in doc["energy"]["about"]
    assert "idle J/epoch" in printed
    plain = [r for r in entries if r["loader"] == "plain"]
    assert all(r["hit_rate"] == {"warm": 1.0} for r in plain)
    first_ts = next(r for r in entries if r["loader"] == "tierstore" and r["epoch"] == 0)
    assert set(first_ts["hit_rate"]) == {"hot", "warm"}
    assert 0.0 <= first_ts["lru_hot_hit_rate"] <= 1.0
    assert first_ts["lru_hot_hit_rate"] == 0.0  # nothing read before: LRU holds nothing
    # every sample's bytes read: a shard whole, or (staged on hot by the daemon before its
    # reader came) sample by sample from its hot file, which skips the tar's end blocks
    assert first_ts["bytes_read"] >= doc["dataset"]["payload_bytes"]
    filecache = sorted((r for r in entries if r["loader"] == "filecache"),
                       key=lambda r: r["epoch"])
    assert filecache[-1]["hit_rate"]["filecache"] == 1.0  # unbounded: all cached by epoch 2
    assert "tierstore_au_min" in doc["criteria"]
    assert len(doc["loader_metrics"]) == 2
    saved = list((tmp_path / "results").glob("loader-*.json"))
    assert len(saved) == 1 and saved[0].with_suffix(".png").stat().st_size > 0
    assert json.loads(saved[0].read_text())["results"] == entries


def test_bench_loader_needs_a_data_tier() -> None:
    assert main(["bench", "loader", "--samples", "4"]) == 1


def test_bench_loader_options_parse() -> None:
    args = build_parser().parse_args(["bench", "loader", "--s3", "moto", "--preset", "unet3d",
                                      "--scale", "0.01", "--no-daemon", "--loaders",
                                      "tierstore,plain"])
    assert args.daemon is False and args.loaders == ["tierstore", "plain"]
    from tierstore.cli.bench.loader.bench import workload_of

    work = workload_of(args)
    assert work.format == "raw" and work.batch_size == 7
    assert work.sample_bytes == round(146_600_628 * 0.01)
    assert work.compute_s == pytest.approx(0.323 * 0.01)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "loader", "--loaders", "tierstore,nope"])


def test_lru_thrashes_under_a_fresh_shuffle_and_holds_a_repeat() -> None:
    sizes = [10] * 10
    # capacity of half the data: reading 0..9 twice in the same order, LRU never hits
    assert lru_hit_rates(sizes, [list(range(10)), list(range(10))], 50) == [0.0, 0.0]
    # reading the last half again first: all of it is held
    assert lru_hit_rates(sizes, [list(range(10)), [9, 8, 7, 6, 5]], 50) == [0.0, 1.0]
    assert lru_hit_rates([100], [[0, 0]], 50) == [0.0]  # larger than the cache: never held


def test_shard_reads_cover_every_shard(local_store: SyncStore) -> None:
    index = write_tar_shards(local_store, "ds", ({"__key__": f"k{i:03d}", "bin": b"x" * 10}
                                                 for i in range(50)), samples_per_shard=4)
    spec = OrderSpec(seed=1, epoch=0, shuffle=True, buffer_size=8, equalize="none",
                     batch_size=4)
    reads = shard_reads(index, spec, 2)
    # every shard is read; one whose samples fall to both workers is read by each
    assert set(reads) == set(range(len(index.shards)))
    assert len(reads) <= 2 * len(index.shards)
    assert shard_reads(index, spec, 1) == list(dict.fromkeys(shard_reads(index, spec, 1)))


def test_config_toml_round_trips(tmp_path: Path) -> None:
    config = Config(home=tmp_path, catalog=f"sqlite:///{tmp_path / 'c.db'}",
                    tiers={"hot": TierConfig(name="hot", tier_class=TierClass.HOT,
                                             url=(tmp_path / "h").as_uri(), capacity=1234),
                           "warm": TierConfig(name="warm", tier_class=TierClass.WARM,
                                              url="s3://b/warm",
                                              options={"key": "k", "secret": 's"x',
                                                       "client_kwargs": {"endpoint_url":
                                                                         "http://h:1"}})},
                    default_tier="warm", policies={"promote_to": "hot"})
    back = config_from_toml(config_toml(config), source="t")
    assert back.tiers["hot"].capacity == 1234
    assert back.tiers["warm"].options == config.tiers["warm"].options
    assert back.default_tier == "warm" and back.policies == {"promote_to": "hot"}


def test_baseline_reads_each_sample_by_its_range(local_store: SyncStore,
                                                 tmp_path: Path) -> None:
    payloads = [bytes([i]) * (20 + i) for i in range(12)]
    index = write_tar_shards(local_store, "ds", ({"__key__": f"k{i:03d}", "bin": p}
                                                 for i, p in enumerate(payloads)),
                             samples_per_shard=5, tier="warm")
    config = local_store.config
    store = LoopThread.get().store(config)
    refs = LoopThread.get().submit(sample_refs(store, index, "warm")).result()
    url = config.tiers["warm"].url
    for cache in (None, str(tmp_path / "cache")):
        dataset = SampleReads(refs, "tar", url, {}, cache)
        batch = collate_payloads([dataset[i] for i in range(len(dataset))])
        assert batch["data"].numpy().tobytes() == b"".join(payloads)
        assert batch["lengths"].tolist() == [len(p) for p in payloads]
    assert bool(collate_payloads([dataset[0]])["cached"][0])  # filecache: read before


def test_without_compute_au_is_no_criterion() -> None:
    from tierstore.cli.bench.loader.bench import criteria, render_criteria

    def entry(loader: str, sps: float) -> dict[str, Any]:
        return {"loader": loader, "epoch": 0, "samples_per_s": sps, "au": 0.0,
                "hit_rate": {"hot": 0.1}, "peak_pss_bytes": 1, "peak_rss_bytes": 2}

    doc: dict[str, Any] = {"results": [entry("plain", 100.0), entry("tierstore", 700.0)],
                           "store": {"hot_share": 0.5, "hot_tier": "hot"},
                           "tierstore": {"prefetch_budget_bytes": 10},
                           "workload": {"compute_s": 0.0}}
    doc["criteria"] = criteria(doc)
    assert "tierstore_au_min" not in doc["criteria"]
    assert doc["criteria"]["cold_epoch_speedup_vs_plain"]["value"] == 7.0
    assert any(line.startswith("AU: not measured") for line in render_criteria(doc))
    doc["workload"]["compute_s"] = 0.05
    assert doc["criteria"] != criteria(doc) and criteria(doc)["tierstore_au_min"]["met"] is False


def test_a_short_read_in_a_baseline_is_a_clear_error(tmp_path: Path) -> None:
    from tierstore.cli.bench.loader.baselines import SampleReads, SampleRef

    path = tmp_path / "shard.bin"
    path.write_bytes(b"x" * 100)
    reads = SampleReads([SampleRef(str(path), 0, 100), SampleRef(str(path), 90, 150)], "raw",
                        "file://", {})
    assert reads[0]["data"] == b"x" * 100
    with pytest.raises(OSError, match=r"asked for bytes 90-150, got 10 twice"):
        reads[1]


def test_a_half_written_filecache_copy_is_read_from_the_tier(tmp_path: Path) -> None:
    """filecache has no lock between processes: a worker can open the copy another is still
    downloading. The baseline then reads the range from the tier itself (not cached)."""
    from tierstore.cli.bench.loader.baselines import CACHED, SampleReads, SampleRef

    data = bytes(range(256)) * 4
    (tmp_path / "shard.bin").write_bytes(data)
    cache = tmp_path / "cache"
    reads = SampleReads([SampleRef(str(tmp_path / "shard.bin"), 100, 900)], "raw", "file://",
                        {}, str(cache))
    first = reads[0]
    assert first["data"] == data[100:900] and first[CACHED] is False
    assert reads[0][CACHED] is True
    [copy] = [p for p in cache.iterdir() if p.name != "cache"]
    copy.write_bytes(data[:500])  # another worker's download, midway
    again = reads[0]
    assert again["data"] == data[100:900] and again[CACHED] is False


def test_bench_loader_with_two_accelerators(tmp_path: Path, s3_config: Path) -> None:
    """Two training processes (ranks of one job) with two workers each: every sample once
    per epoch across the ranks, each rank's own figures kept, the job's AU its lowest."""
    out = tmp_path / "result.json"
    argv = ["bench", "loader", "--config", str(s3_config), "--preset", "resnet50",
            "--samples", "60", "--sample-size", "8KiB", "--sample-stdev", "2KiB",
            "--shard-size", "64KiB", "--batch-size", "8", "--compute", "0.002",
            "--epochs", "2", "--workers", "2", "--accelerators", "2", "--loaders",
            "tierstore", "--no-daemon", "--json", str(out), "--results",
            str(tmp_path / "results"), "--workdir", str(tmp_path / "w")]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    entries = doc["results"]
    assert [(r["loader"], r["epoch"]) for r in entries] == [("tierstore", 0), ("tierstore", 1)]
    for r in entries:
        assert r["samples"] == 60 and r["exactly_once"], r  # across both ranks
        assert len(r["ranks"]) == 2 and sum(k["samples"] for k in r["ranks"]) == 60
        assert r["au"] == min(k["au"] for k in r["ranks"])
        assert r["first_batch_s"] == max(k["first_batch_s"] for k in r["ranks"])
        assert sum(r["hit_rate"].values()) == pytest.approx(1.0)
        assert r["accelerator_wait_s"] == pytest.approx(sum(k["wait_s"] for k in r["ranks"]))


def test_accelerators_refuse_the_baselines_that_do_not_split_by_rank(
        tmp_path: Path, s3_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "loader", "--config", str(s3_config), "--samples", "10",
            "--accelerators", "2", "--loaders", "plain,tierstore", "--workdir",
            str(tmp_path / "w")]
    assert main(argv) != 0
    assert "the plain and filecache baselines do not split by rank" in capsys.readouterr().err


def test_find_max_doubles_then_bisects_to_the_last_count_kept() -> None:
    from tierstore.cli.bench.loader.find_max import Trial, find_max

    def limit(kept: int) -> Callable[[int], Trial]:
        return lambda n: Trial(n, au=[0.95, 0.93] if n <= kept else [0.95, 0.6])

    found, trials = find_max(limit(5), 16)
    assert found == 5 and [t.accelerators for t in trials] == [1, 2, 4, 8, 6, 5]
    assert find_max(limit(0), 16)[0] == 0
    assert find_max(limit(99), 6)[0] == 6  # never short: the most tried
    failing = find_max(lambda n: Trial(n, au=[1.0], failure="crash" if n > 2 else None), 8)
    assert failing[0] == 2


def test_find_max_needs_compute(tmp_path: Path, s3_config: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "loader", "--config", str(s3_config), "--samples", "10", "--compute", "0",
            "--find-max", "--loaders", "tierstore", "--workdir", str(tmp_path / "w")]
    assert main(argv) != 0
    assert "--find-max needs --compute" in capsys.readouterr().err


def test_find_max_reports_the_most_accelerators_kept(tmp_path: Path, s3_config: Path) -> None:
    """A run with --find-max: tierstore's trials, each from cold, and the count it found."""
    out = tmp_path / "result.json"
    argv = ["bench", "loader", "--config", str(s3_config), "--samples", "40",
            "--sample-size", "8KiB", "--sample-stdev", "2KiB", "--shard-size", "64KiB",
            "--batch-size", "8", "--compute", "0.05", "--epochs", "1", "--workers", "1",
            "--loaders", "tierstore", "--no-daemon", "--find-max", "--max-accelerators", "2",
            "--json", str(out), "--results", str(tmp_path / "results"), "--workdir",
            str(tmp_path / "w")]
    assert main(argv) == 0
    found = json.loads(out.read_text())["find_max"]["tierstore"]
    counts = [t["accelerators"] for t in found["trials"]]
    assert counts[0] == 1 and set(counts) <= {1, 2}
    kept = [t["accelerators"] for t in found["trials"] if t["kept"]]
    assert found["max_accelerators"] == max(kept, default=0)
    assert all(len(t["au"]) == 1 for t in found["trials"] if t["failure"] is None)
