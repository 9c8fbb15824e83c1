"""``tierstore simulate --intensity`` on the shipped week (policies/traces): carbon-aware moves
within 10% of the offline optimum, every deadline met, immediate shown beside them; the
shipped files are what their generator writes; a bad series is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tierstore.carbon import ForecastFile
from tierstore.config import load_config
from tierstore.policies import PolicyConfig, read_trace
from tierstore.policies.carbonsim import compare
from tierstore.policies.simulate import Simulation, simulation_tiers

TRACES = Path(__file__).parent.parent / "policies" / "traces"
MiB = 2**20


def simulate(*args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "tierstore.cli", "--config",
                           str(TRACES / "week.toml"), "simulate", "--trace",
                           str(TRACES / "week.jsonl"), "--policy", "configured", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == status, done.stderr
    return done


def test_the_shipped_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    sys.path.insert(0, str(TRACES))
    try:
        import make_carbon
    finally:
        sys.path.remove(str(TRACES))
    make_carbon.main([str(tmp_path)])
    for name in ("intensity-week.csv", "week.jsonl"):
        assert (tmp_path / name).read_bytes() == (TRACES / name).read_bytes(), name
    series = ForecastFile(TRACES / "intensity-week.csv").forecast(0, 0)
    assert series.end - series.start == 7 * 86400 and len(series.steps) == 168
    noon, night = series.at(series.start + 12.5 * 3600), series.at(series.start + 2.5 * 3600)
    assert noon is not None and night is not None and noon < night  # the solar dip


def test_carbon_aware_is_within_ten_percent_of_the_optimum_on_the_shipped_week() -> None:
    # a bandwidth that binds: the cleanest hours cannot take every move
    out = json.loads(simulate("--intensity", str(TRACES / "intensity-week.csv"),
                              "--bandwidth", "1MiB", "--tick", "10m", "--json").stdout)
    carbon = out["carbon"]
    by = {o["strategy"]: o for o in carbon["outcomes"]}
    moves = carbon["deferrable_moves"]
    assert moves > 100 and carbon["optimum_meets_every_deadline"]
    assert by["carbon-aware"]["deadlines_met"] == by["immediate"]["deadlines_met"] == moves
    best, aware, now = (by[s]["grams_co2e"] for s in ("optimum", "carbon-aware", "immediate"))
    assert best <= aware <= 1.10 * best
    assert carbon["carbon_aware_above_optimum"] == pytest.approx(aware / best - 1, abs=1e-3)
    assert now > 1.2 * aware  # shown beside it: waiting for the sun pays on this series
    assert all(o["estimate"] for o in carbon["outcomes"])


def test_without_a_bandwidth_limit_carbon_aware_is_the_optimum() -> None:
    config = load_config(TRACES / "week.toml")
    sim = Simulation(trace=read_trace(TRACES / "week.jsonl"),
                     tiers=simulation_tiers(config), config=PolicyConfig.from_config(config),
                     start="warm", tick=600.0)
    series = ForecastFile(TRACES / "intensity-week.csv").forecast(0, 0)
    result = compare(sim, series, max_deferral=86400.0)
    assert result.offset == 0  # the trace's times lie in the series'
    aware, best = result.outcome("carbon-aware"), result.outcome("optimum")
    assert aware.met == aware.moves == result.deferrable > 100
    assert aware.grams == pytest.approx(best.grams, rel=1e-9)
    assert result.outcome("immediate").grams > aware.grams


def test_a_bad_series_is_one_line_before_any_replay(tmp_path: Path) -> None:
    bad = tmp_path / "grid.csv"
    bad.write_text("time,gco2e_per_kwh\n2026-06-01T00:00Z,cloudy\n")
    done = simulate("--intensity", str(bad), status=1)
    assert done.stdout == "" and done.stderr.count("\n") == 1
    assert "grid.csv, line 2" in done.stderr
