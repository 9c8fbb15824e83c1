"""``tierstore plan`` as a real process against a local store: what it shows, and that it
changes nothing."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from storefixtures import make_config, toml_for

from tierstore import Config, open_store

DAY = 86400


def run_cli(config: Path, *args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERSTORE_")}
    done = subprocess.run([sys.executable, "-m", "tierstore.cli", "--config", str(config),
                           *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == status, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


def state(config: Config) -> dict[str, Any]:
    """Everything a plan must leave alone: catalog rows, access statistics, tier files."""
    with open_store(config) as store:
        catalog = store.aio.catalog
        records = catalog.objects()
        rows = {r.key: (r.pinned, sorted((p.tier, p.path, str(p.state)) for p in r.replicas))
                for r in records}
        access = catalog.access([r.key for r in records])
    files = {str(p.relative_to(config.home)): (p.stat().st_size, p.stat().st_mtime_ns)
             for p in (config.home / "tiers").rglob("*") if p.is_file()}
    return {"rows": rows, "access": access, "files": files}


@pytest.fixture
def store_toml(tmp_path: Path) -> tuple[Config, Path]:
    """hot holds 1000 bytes: p (pinned) and h1..h3, 250 bytes each, so it is at 100%; w
    (100 bytes) is on warm. h2, h3 and w have been read; h1 never."""
    config = make_config(tmp_path / "store", "local")
    hot = dataclasses.replace(config.tiers["hot"], capacity=1000)
    config = dataclasses.replace(config, tiers={**config.tiers, "hot": hot})
    with open_store(config) as store:
        for key in ("ds/p", "ds/h1", "ds/h2", "ds/h3"):
            store.put(key, os.urandom(250), tier="hot")
        store.put("ds/w", os.urandom(100), tier="warm")
        store.pin("ds/p", "hot")
        for key in ("ds/h2", "ds/h3", "ds/w"):
            store.cat(key)
    path = tmp_path / "store.toml"
    path.write_text(toml_for(config))
    return config, path


def test_plan_shows_moves_and_changes_nothing(store_toml: tuple[Config, Path]) -> None:
    config, path = store_toml
    before = state(config)
    now = time.time() + 60
    plan = json.loads(run_cli(path, "plan", "--json", "--now", str(now)).stdout)
    got = {(m["key"], m["from"], m["to"], m["policy"]) for m in plan["moves"]}
    # over the high watermark, the coldest (never read) goes down to 75%; that leaves room
    # under 90% for the object read a minute ago
    assert got == {("ds/h1", "hot", "warm", "watermarks"), ("ds/w", None, "hot", "recency")}
    assert plan["now"] == pytest.approx(now) and plan["bytes"] == 350
    hot = next(t for t in plan["tiers"] if t["tier"] == "hot")
    assert (hot["bytes_now"], hot["bytes_after"]) == (1000, 850)

    text = run_cli(path, "plan", "--now", str(now)).stdout.splitlines()
    assert text[0].split() == ["OBJECT", "FROM", "TO", "BYTES", "REASON"]
    assert any(line.startswith("ds/h1") and "watermarks: hot at 100%" in line for line in text)
    assert any(line.split()[:4] == ["ds/w", "warm", "(kept)", "hot"] for line in text)  # a copy
    assert text[-1] == "2 moves (350 B) planned, nothing changed"

    later = json.loads(run_cli(path, "plan", "--json", "--now", str(now + 100 * DAY)).stdout)
    assert {(m["key"], m["from"], m["to"]) for m in later["moves"]} == {
        ("ds/h1", "hot", "warm"), ("ds/h2", "hot", "cold"), ("ds/h3", "hot", "cold"),
        ("ds/w", "warm", "cold")}  # the pinned object stays
    assert "ISO 8601" in run_cli(path, "plan", "--now", "soon", status=2).stderr
    assert state(config) == before


def test_preload_is_kept_in_the_catalog_and_staged_by_the_daemon(tmp_path: Path) -> None:
    config = make_config(tmp_path / "store", "local")
    with open_store(config) as store:
        for i in range(3):
            store.put(f"job/{i}", os.urandom(100), tier="warm")
        store.put("other", os.urandom(100), tier="warm")
    path = tmp_path / "store.toml"
    path.write_text(toml_for(config))
    later = run_cli(path, "preload", "job", "--tier", "hot", "--by", "+2h", "--lead", "1h")
    assert "staging from" in later.stdout
    assert json.loads(run_cli(path, "plan", "--json").stdout)["moves"] == []  # not yet
    listed = json.loads(run_cli(path, "preload", "--list", "--json").stdout)
    assert [(p["prefix"], p["tier"], p["lead"]) for p in listed] == [("job", "hot", 3600.0)]
    run_cli(path, "preload", "job", "--tier", "hot", "--by", "+10m")  # replaces it: due now
    plan = json.loads(run_cli(path, "plan", "--json").stdout)
    assert sorted(m["key"] for m in plan["moves"]) == ["job/0", "job/1", "job/2"]
    run_cli(path, "daemon", "--once", "--no-metrics")
    with open_store(config) as store:
        assert all("hot" in [r.tier for r in store.stat(f"job/{i}").replicas if r.state ==
                             "ready"] for i in range(3))
        assert [r.tier for r in store.stat("other").replicas] == ["warm"]
    assert "cancelled 1 pre-load" in run_cli(path, "preload", "job", "--cancel").stdout
    assert run_cli(path, "preload", "--json").stdout.strip() == "[]"
    bad = run_cli(path, "preload", "job", "--tier", "hot", "--by", "soon", status=2)
    assert "expected Unix seconds" in bad.stderr
