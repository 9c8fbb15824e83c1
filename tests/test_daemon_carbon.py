"""The daemon, carbon-aware, against a local intensity server: a demotion is held during a
high-intensity hour and runs in the next low one while an urgent staging runs at once; a
server that is down holds nothing back; and `tierstore plan --json` says when and why."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from intensityserver import IntensityServer
from storefixtures import make_config, toml_for

from tierstore import Config, Store, open_store
from tierstore.carbon import CarbonSettings
from tierstore.carbonaware import CarbonAware
from tierstore.daemon import Daemon, DaemonOptions
from tierstore.policies import PolicyConfig, default_engine

T0 = 1780272000.0  # 2026-06-01T00:00Z
HOUR = 3600.0
DAY = 86400.0


def setup_store(config: Config) -> None:
    """ds/old on hot, never read (recency demotes it after a second); ds/next on warm, which
    a reader announced it reads in half a minute (next use stages it)."""
    with open_store(config) as store:
        store.put("ds/old", b"o" * 1000, tier="hot")
        store.put("ds/next", b"n" * 1000, tier="warm")
        now = time.time()
        store.aio.catalog.announce("reader-1", {"ds/next": now + 30}, expires=now + 600)
    time.sleep(1.2)  # ds/old unread past demote_after


def tiers_of(config: Config, key: str) -> list[str]:
    with open_store(config) as store:
        return sorted(r.tier for r in store.stat(key).replicas if r.state == "ready")


def cycles(config: Config, carbon: CarbonAware, clock: list[float],
           at: list[float], check: Callable[[int, Daemon], None]) -> None:
    """A daemon's cycles with its carbon clock at each of ``at``, ``check`` after each."""
    async def run() -> None:
        store = Store(config)
        try:
            engine = default_engine(PolicyConfig(demote_after={"hot": 1.0},
                                                 promote_within=0.5))
            daemon = Daemon(store, DaemonOptions(once=True, metrics_port=None),
                            engine=engine, carbon=carbon)
            for n, when in enumerate(at):
                clock[0] = when
                assert await daemon.cycle()
                await asyncio.to_thread(check, n, daemon)
        finally:
            await store.close()

    asyncio.run(run())


def metric(daemon: Daemon, name: str, labels: dict[str, str] | None = None) -> float | None:
    return daemon.metrics.registry.get_sample_value(name, labels or {})


def test_a_demotion_waits_for_the_low_hour_and_staging_does_not(
        tmp_path: Path, intensity_server: IntensityServer) -> None:
    # the grid, hour by hour: high until 02:00, then a clean (solar) hour
    intensity_server.points = [(T0, 600), (T0 + HOUR, 650), (T0 + 2 * HOUR, 120),
                               (T0 + 3 * HOUR, 500)]
    config = make_config(tmp_path, "local")
    setup_store(config)
    clock = [T0]
    source = CarbonSettings.from_table({"url": intensity_server.url, "location": "eastus",
                                        "cache_for": 0}).make_source()
    carbon = CarbonAware(source, max_deferral=DAY, clock=lambda: clock[0])

    def check(n: int, daemon: Daemon) -> None:
        if n == 0:  # 00:30, a high hour
            assert tiers_of(config, "ds/next") == ["hot", "warm"]  # staged at once
            assert tiers_of(config, "ds/old") == ["hot"]  # held
            assert daemon.outcomes["held"] == 1 and daemon.outcomes["done"] == 1
            assert metric(daemon, "tierstore_daemon_moves_held", {"why": "cleaner_hour"}) == 1
            assert metric(daemon, "tierstore_grid_intensity_gco2e_per_kwh") == 600
        elif n == 1:  # 01:30, still high: still held, its deadline remembered
            assert tiers_of(config, "ds/old") == ["hot"] and daemon.outcomes["held"] == 1
        else:  # 02:01, the low hour
            assert tiers_of(config, "ds/old") == ["warm"]
            assert daemon.outcomes.get("held", 0) == 0 and daemon.outcomes["done"] == 1
            assert metric(daemon, "tierstore_daemon_moves_held", {"why": "cleaner_hour"}) == 0

    cycles(config, carbon, clock, [T0 + 1800, T0 + 5400, T0 + 2 * HOUR + 60], check)
    assert "/emissions/forecasts/current" in intensity_server.requests


def test_a_server_that_is_down_holds_nothing_back(tmp_path: Path) -> None:
    config = make_config(tmp_path, "local")
    setup_store(config)
    source = CarbonSettings.from_table({"url": "http://127.0.0.1:9", "timeout": 2}
                                       ).make_source()
    carbon = CarbonAware(source, max_deferral=DAY, clock=lambda: T0)

    def check(n: int, daemon: Daemon) -> None:
        assert tiers_of(config, "ds/old") == ["warm"] and tiers_of(config, "ds/next") == [
            "hot", "warm"]
        assert metric(daemon, "tierstore_daemon_intensity_errors_total") == 1
        assert carbon.error is not None and "cannot reach" in carbon.error

    cycles(config, carbon, [T0], [T0], check)


def run_cli(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tierstore.cli", "--config", str(config_path),
                           *args], capture_output=True, text=True, timeout=60)


def test_plan_json_says_when_each_move_runs_and_why(
        tmp_path: Path, intensity_server: IntensityServer) -> None:
    now = time.time()
    hour = now - now % HOUR
    intensity_server.points = [(hour, 540), (hour + HOUR, 212), (hour + 2 * HOUR, 480)]
    config = make_config(tmp_path, "local")
    setup_store(config)
    path = tmp_path / "tierstore.toml"
    path.write_text(toml_for(config) + '[policies]\ndemote_after = { hot = "1s" }\n'
                    'promote_within = "0.5s"\n'
                    f'[carbon]\nurl = "{intensity_server.url}"\nmax_deferral = "12h"\n')
    result = run_cli(path, "--json", "plan")
    assert result.returncode == 0, result.stderr
    moves = {m["key"]: m for m in json.loads(result.stdout)["moves"]}
    old, staged = moves["ds/old"], moves["ds/next"]
    assert old["deferrable"] and old["when"] == hour + HOUR
    assert old["why"].startswith("deferred: 212 gCO2e/kWh at ") and "vs 540 now" in old["why"]
    assert not staged["deferrable"] and staged["why"] == "urgent: next-use staging"
    assert staged["when"] <= time.time()
    # the source down: one line, exit 1, nothing planned
    intensity_server.broken = True
    result = run_cli(path, "plan")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "the answer is not JSON" in result.stderr
