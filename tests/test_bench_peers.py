"""``tierstore bench loader --baselines wds,mosaic,litdata`` against a moto server it starts:
each installed peer writes the samples with its own writer, reads them with its own loader,
and every epoch hands over every sample exactly once with its figures recorded; a peer that
crashes or hangs is recorded with its error and the run goes on. No timing is asserted.

The peers come with the optional extra ``tierstore[peers]``, which CI does not install: the
tests that need one skip, saying which package is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tierstore.cli import main
from tierstore.cli.bench.loader.measure import EpochRun, exactly_once
from tierstore.cli.bench.loader.options import PEERS
from tierstore.cli.bench.loader.peers import peer_class

SAMPLES = 48


def _missing(names: tuple[str, ...] | list[str]) -> dict[str, str]:
    return {n: why for n in names if (why := peer_class(n).missing()) is not None}


def _needs(*names: str) -> None:
    missing = _missing(names)
    if missing:
        pytest.skip("; ".join(f"{n}: {why}" for n, why in missing.items()))


def _bench(tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "result.json"
    argv = ["bench", "loader", "--s3", "moto", "--samples", str(SAMPLES), "--sample-size",
            "4KiB", "--sample-stdev", "1KiB", "--shard-size", "32KiB", "--batch-size", "8",
            "--compute", "0", "--epochs", "2", "--workers", "2", "--json", str(out),
            "--results", str(tmp_path / "results"), "--workdir", str(tmp_path / "w"), *extra]
    assert main(argv) == 0
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def test_installed_peers_read_every_sample_once_per_epoch(tmp_path: Path) -> None:
    installed = [n for n in PEERS if n not in _missing(PEERS)]
    if not installed:
        pytest.skip("no peer installed: " + "; ".join(f"{n}: {w}"
                                                       for n, w in _missing(PEERS).items()))
    # only the peers (tierstore left out of --loaders); caches unbounded
    doc = _bench(tmp_path, "--loaders", "plain", "--baselines", ",".join(installed),
                 "--hot-fraction", "1")
    assert doc["failures"] == []
    assert sorted((r["loader"], r["epoch"]) for r in doc["results"]) == sorted(
        (n, e) for n in installed for e in range(2))
    for r in doc["results"]:
        assert r["exactly_once"] is True, r
        assert r["samples"] == SAMPLES and r["missing"] == r["repeated"] == 0
        assert r["bytes"] == doc["dataset"]["payload_bytes"]  # each payload whole
        for field in ("samples_per_s", "mb_per_s", "first_batch_s", "wait_p50_s",
                      "wait_p99_s", "au", "peak_pss_bytes", "client_cpu_s",
                      "client_cpu_ms_per_sample", "server_cpu_s", "s3_bytes", "s3_gets"):
            assert field in r, field
        assert r["samples_per_s"] > 0 and r["client_cpu_s"] > 0 and r["peak_pss_bytes"] > 0
        assert 0.0 <= r["wait_p50_s"] <= r["wait_p99_s"]
        assert r["s3_counted_by"] is None  # moto keeps no counters
        assert r["stored_bytes"] >= doc["dataset"]["payload_bytes"]
    for name in installed:
        report = doc["peers"][name]
        assert report["stored"]["objects"] >= 2  # its own writer sharded the samples
        assert report["how"]["writer"] and report["how"]["reader"]
    assert [s["loader"] for s in doc["summary"]] == installed
    assert all(s["every_sample_once"] for s in doc["summary"])


def test_installed_peers_split_by_rank_under_two_accelerators(tmp_path: Path) -> None:
    """Two training processes, ranks of one job started as torchrun starts them: each peer
    splits the samples by rank its own way, and every sample comes once per epoch across
    both."""
    installed = [n for n in PEERS if n not in _missing(PEERS)]
    if not installed:
        pytest.skip("no peer installed")
    doc = _bench(tmp_path, "--loaders", "tierstore", "--no-daemon", "--baselines",
                 ",".join(installed), "--hot-fraction", "1", "--accelerators", "2")
    assert doc["failures"] == []
    for r in doc["results"]:
        assert len(r["ranks"]) == 2 and all(k["samples"] > 0 for k in r["ranks"]), r
        assert r["exactly_once"] is True, r


def test_find_max_searches_each_peer_on_the_data_it_wrote_once(tmp_path: Path) -> None:
    _needs("wds")
    doc = _bench(tmp_path, "--loaders", "tierstore", "--no-daemon", "--baselines", "wds",
                 "--compute", "0.02", "--find-max", "--max-accelerators", "2")
    assert doc["failures"] == [] and set(doc["find_max"]) == {"wds", "tierstore"}
    for found in doc["find_max"].values():
        assert found["trials"][0]["accelerators"] == 1
        kept = [t["accelerators"] for t in found["trials"] if t["kept"]]
        assert found["max_accelerators"] == max(kept, default=0)
        assert all(t["failure"] is None and len(t["au"]) == 2 for t in found["trials"])
    assert "find_max" not in doc["peers"]["wds"]


def test_a_peer_that_raises_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    _needs("mosaic")
    # a cache of 5% of the dataset: MosaicML Streaming refuses a cache_limit under four shards
    doc = _bench(tmp_path, "--loaders", "tierstore", "--no-daemon", "--baselines", "mosaic",
                 "--hot-fraction", "0.05")
    (failure,) = doc["failures"]
    assert failure["loader"] == "mosaic" and failure["kind"] == "crash"
    assert failure["phase"] == "open" and "cache_limit" in failure["error"]
    assert [r["loader"] for r in doc["results"]] == ["tierstore", "tierstore"]  # it went on
    assert all(r["exactly_once"] for r in doc["results"])


# the DataLoader iterator the alarm cuts off half-built complains as it is collected (the bench
# ends the workers it had started)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_peer_that_hangs_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    _needs("wds")
    # no loader hands over a batch within a millisecond: the peer counts as hung
    doc = _bench(tmp_path, "--loaders", "tierstore", "--no-daemon", "--baselines", "wds",
                 "--peer-timeout", "0.001")
    (failure,) = doc["failures"]
    assert failure["loader"] == "wds" and failure["kind"] == "hang"
    assert failure["phase"] == "epoch 1" and "no batch for 0.001 s" in failure["error"]
    assert [r["loader"] for r in doc["results"]] == ["tierstore", "tierstore"]


def test_exactly_once_counts_missing_and_repeated_samples() -> None:
    run = EpochRun(ids=[np.array([0, 1, 2]), np.array([2, 4])])
    assert exactly_once(run, 5) == {"exactly_once": False, "missing": 1, "repeated": 1,
                                    "unknown": 0}
    run = EpochRun(ids=[np.array([3, 1]), np.array([0, 2])])
    assert exactly_once(run, 4)["exactly_once"] is True
    assert exactly_once(EpochRun(ids=[np.array([0, -1])]), 1)["unknown"] == 1


def test_a_missing_peers_install_hint_is_printed_as_written() -> None:
    """rich read ``[peers]`` in the hint as a style and dropped it: the line said to
    ``pip install 'tierstore'``."""
    from rich.console import Console

    from tierstore.cli.bench.loader.bench import render_summary

    hint = "pip install 'tierstore[peers]'"
    document = {"summary": [], "failures": [
        {"loader": "mosaic", "phase": "import", "kind": "not installed", "error": hint}]}
    console = Console(record=True, width=300)
    console.print(render_summary(document))
    assert hint in console.export_text()
