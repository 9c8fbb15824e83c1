"""``tierstore bench put`` (real processes, real tiers, no timings asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from storefixtures import make_config, toml_for
from test_bench_migrate import bench

from tierstore import open_store


def check_document(doc: dict, tier: str, count: int, rounds: int) -> None:
    assert doc["benchmark"] == "put" and doc["rounds"] == rounds and doc["objects"] == count
    entries = {e["path"]: e for e in doc["results"]}
    assert set(entries) == {"put_many", "put", "fsspec"}
    for entry in entries.values():
        assert entry["tier"] == tier and len(entry["rounds_objects_per_s"]) == rounds
        assert entry["objects_per_s"] > 0 and entry["cpu_ms_per_object"] > 0
        assert entry["ratio"] == pytest.approx(
            entry["objects_per_s"] / entries["fsspec"]["objects_per_s"], rel=0.01)
    assert doc["ratio"] == entries["put_many"]["ratio"]


def test_scratch_store_on_local_folders(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    done = bench("bench", "put", "--count", "40", "--size", "3KiB", "--rounds", "2", "--json",
                 str(out), "--results", str(tmp_path / "results"), "--dir", str(tmp_path),
                 cwd=tmp_path)
    doc = json.loads(out.read_text())
    check_document(doc, "hot", 40, 2)
    assert doc["object_bytes"] == 3 * 1024
    [saved] = (tmp_path / "results").glob("put-*.json")
    assert json.loads(saved.read_text())["ratio"] == doc["ratio"]
    assert "put_many" in done.stdout and "fsspec" in done.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("tierstore-")]


def test_scratch_store_on_moto(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    bench("bench", "put", "--s3", "moto", "--count", "12", "--size", "2KiB", "--rounds", "1",
          "--json", str(out), "--results", "none", "--dir", str(tmp_path), cwd=tmp_path)
    check_document(json.loads(out.read_text()), "warm", 12, 1)


def test_a_store_of_ones_own_is_left_as_it_was(tmp_path: Path) -> None:
    config = make_config(tmp_path / "store", "local")
    toml = tmp_path / "store.toml"
    toml.write_text(toml_for(config))
    with open_store(config) as store:
        store.put("keep/me.bin", b"x" * 1000, tier="cold")
    out = tmp_path / "r.json"
    bench("--config", str(toml), "bench", "put", "--tier", "cold", "--count", "10", "--rounds",
          "1", "--json", str(out), "--results", "none", "--dir", str(tmp_path), cwd=tmp_path)
    check_document(json.loads(out.read_text()), "cold", 10, 1)
    with open_store(config) as store:
        assert store.find("") == ["keep/me.bin"]
        report = store.audit(deep=True)
        assert report.ok, report  # no bench files left on the tier


@pytest.mark.parametrize("args", [["--count", "0"], ["--size", "lots"], ["--tier", "nowhere"]])
def test_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    done = bench("bench", "put", *args, "--results", "none", cwd=tmp_path, status=2)
    assert done.stderr.startswith("tierstore: error: "), done.stderr
