"""The energy model: every figure an estimate, from documented defaults."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tierstore.config import Config, TierClass, default_config
from tierstore.energy import (
    ACCELERATOR_WATTS,
    DEFAULT_INTENSITY,
    LEDGER_GAP_MAX,
    MEDIA,
    NETWORK_JOULES_PER_GB,
    EnergyLedger,
    EnergyModel,
    Estimate,
    Media,
)
from tierstore.errors import ConfigError
from tierstore.locality.topology import Distance


def test_an_accelerators_wait_as_energy_and_emissions() -> None:
    model = EnergyModel.of("a100-sxm", intensity=100.0)
    assert model.accelerator_watts == ACCELERATOR_WATTS["a100-sxm"] == 400.0
    idle = model.idle(9.0, accelerators=2)
    assert idle.joules == 9.0 * 2 * 400.0
    assert idle.grams_co2e == pytest.approx(7200.0 / 3.6e6 * 100.0)
    assert idle.as_dict()["estimate"] is True and "estimates" in model.describe()
    assert EnergyModel.of().intensity == DEFAULT_INTENSITY


def test_an_unknown_accelerator_needs_its_watts() -> None:
    with pytest.raises(ConfigError, match="unknown accelerator 'tpu-v9'"):
        EnergyModel.of("tpu-v9")
    assert EnergyModel.of("tpu-v9", watts=200.0).idle(1.0).joules == 200.0
    with pytest.raises(ConfigError):
        EnergyModel.of("l4", watts=0.0)


def _config(tmp_path: Path, energy: str) -> Config:
    """The default store, with ``energy`` (TOML) as its [energy] table."""
    table = tomllib.loads(energy).get("energy", {})
    return dataclasses.replace(default_config(tmp_path), energy=table, source="store.toml")


def test_storage_and_moves_by_tier_class_and_distance() -> None:
    model = EnergyModel()
    assert model.storage_watts(TierClass.HOT, 2e12) == 2 * MEDIA[TierClass.HOT].watts_per_tb
    assert model.storage_watts(TierClass.COLD, 2e12) < model.storage_watts(TierClass.HOT, 2e12)
    near = model.move_joules(1e9, TierClass.HOT, TierClass.COLD, Distance.NODE)
    assert near == MEDIA[TierClass.HOT].joules_per_gb_read + \
        MEDIA[TierClass.COLD].joules_per_gb_written
    far = model.move_joules(1e9, TierClass.HOT, TierClass.COLD, Distance.REMOTE)
    assert far == near + NETWORK_JOULES_PER_GB[Distance.REMOTE]
    assert NETWORK_JOULES_PER_GB[Distance.REMOTE] == 0.004 * 3.6e6  # 0.004 kWh/GB
    assert model.estimate(3.6e6, 100.0).grams_co2e == pytest.approx(100.0)


def test_the_energy_table_replaces_defaults(tmp_path: Path) -> None:
    model = EnergyModel.from_config(_config(tmp_path, """
[energy]
accelerator = "l4"
intensity = 50
[energy.media.warm]
watts_per_tb = 3.5
[energy.network]
region = 2000
"""))
    assert (model.accelerator, model.accelerator_watts, model.intensity) == ("l4", 72.0, 50.0)
    assert model.media[TierClass.WARM] == Media(3.5, MEDIA[TierClass.WARM].joules_per_gb_read,
                                                MEDIA[TierClass.WARM].joules_per_gb_written)
    assert model.media[TierClass.HOT] == MEDIA[TierClass.HOT]
    assert model.network[Distance.REGION] == 2000.0
    assert EnergyModel.from_config(_config(tmp_path, "")) == EnergyModel()


@pytest.mark.parametrize("table, field", [
    ("[energy]\nwatts = 3", "energy"),
    ("[energy]\nintensity = -1", "energy.intensity"),
    ("[energy.media.lukewarm]\nwatts_per_tb = 1", "energy.media"),
    ("[energy.media.hot]\nwatts = 1", "energy.media.hot"),
    ("[energy.media.hot]\nwatts_per_tb = \"lots\"", "energy.media.hot.watts_per_tb"),
    ("[energy.network]\nplanet = 1", "energy.network"),
    ("[energy]\nnetwork = 3", "energy.network"),
])
def test_a_malformed_energy_table_is_refused_by_name(tmp_path: Path, table: str,
                                                     field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        EnergyModel.from_config(_config(tmp_path, table))
    assert caught.value.field == field and caught.value.source == "store.toml"


def test_the_ledger_sums_storage_and_moves_by_day(tmp_path: Path) -> None:
    ledger = EnergyLedger(tmp_path / "energy.jsonl")
    day1 = 1_780_000_000.0 - 1_780_000_000.0 % 86400  # a UTC midnight
    ledger.append(watts={"hot": 2.0, "cold": 0.5}, move_joules=10.0, move_grams=0.001,
                  intensity=360.0, at=day1 + 100)  # the first line counts no time yet
    ledger.append(watts={"hot": 2.0, "cold": 0.5}, move_joules=0.0, move_grams=0.0,
                  intensity=360.0, at=day1 + 3700)
    with open(ledger.path, "a") as out:
        out.write('{"time": 17')  # a line a crash cut short is skipped
    again = EnergyLedger(ledger.path)  # a restarted daemon counts from its last line,
    ledger.add_idle(Estimate(700.0, 0.1), rank=3, at=day1 + 3800)  # not from a loader's
    again.append(watts={"hot": 1.0}, move_joules=5.0, move_grams=0.0, intensity=100.0,
                 at=day1 + 86400 + 3700)
    first, second = again.days()
    assert first.day == datetime.fromtimestamp(day1, UTC).strftime("%Y-%m-%d")
    assert first.storage_joules == {"hot": 2.0 * 3600, "cold": 0.5 * 3600}
    assert first.move_joules == 10.0
    assert first.idle_joules == 700.0
    assert first.joules == 2.5 * 3600 + 10.0 + 700.0
    assert first.grams_co2e == pytest.approx(2.5 * 3600 / 3.6e6 * 360.0 + 0.001 + 0.1)
    assert second.storage_joules == {"hot": 1.0 * LEDGER_GAP_MAX}  # a long pause, capped
    assert second.as_dict()["estimate"] is True
    assert again.days(since=day1 + 86400) == [second]
    assert EnergyLedger(tmp_path / "none.jsonl").days() == []


def test_report_energy_from_a_daemons_ledger(tmp_path: Path) -> None:
    """Two daemon cycles write two ledger lines; ``tierstore report energy`` sums them as a
    table, JSON and a PNG."""
    import subprocess
    import sys

    from storefixtures import make_config, toml_for

    from tierstore import open_store
    from tierstore.daemon import Daemon, DaemonOptions
    from tierstore.store import Store

    config = make_config(tmp_path / "store", "local")
    with open_store(config) as store:
        store.put("k", b"x" * 1000)

    async def cycles() -> None:
        store = await Store.connect(config)
        try:
            daemon = Daemon(store, DaemonOptions(once=True, metrics_port=None))
            await daemon.cycle()
            await asyncio.sleep(0.05)
            await daemon.cycle()
        finally:
            await store.close()

    asyncio.run(cycles())
    lines = list(EnergyLedger.of(config).entries())
    assert len(lines) == 2 and lines[1]["seconds"] > 0 and lines[0]["seconds"] == 0
    assert lines[1]["watts"][config.default_tier] == pytest.approx(
        EnergyModel().storage_watts(config.tiers[config.default_tier].tier_class, 1000))
    toml = tmp_path / "store.toml"
    toml.write_text(toml_for(config))

    def report(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tierstore.cli", "--config", str(toml),
                               "report", "energy", *args], capture_output=True, text=True,
                              timeout=120)

    shown = report("--json", "--png", str(tmp_path / "energy.png"))
    assert shown.returncode == 0, shown.stderr
    [day] = json.loads(shown.stdout)
    assert day["estimate"] is True and day["joules"] > 0
    assert (tmp_path / "energy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "estimates" in report().stdout
    (tmp_path / "store" / "energy.jsonl").unlink()
    missing = report()
    assert missing.returncode == 1 and "no energy ledger" in missing.stderr


def test_reads_from_a_nearer_replica_count_what_locality_saved(tmp_path: Path) -> None:
    """A reader blind to sites would read the hottest replica, across the world here; the
    read path takes the copy on the reader's own node, and counts the bytes it kept from
    crossing sites and, priced by the [energy] model, their network energy."""
    from tierstore import TierConfig, open_store
    from tierstore.config import Config

    tiers = {name: TierConfig(name=name, tier_class=tier_class, url=(tmp_path / name).as_uri(),
                              site=site)
             for name, tier_class, site in [("far-hot", TierClass.HOT, "us/east/n9"),
                                            ("near-warm", TierClass.WARM, "eu/a/n1")]}
    config = Config(home=tmp_path, catalog=f"sqlite:///{tmp_path}/catalog.db", tiers=tiers,
                    default_tier="far-hot", site="eu/a/n1")
    data = bytes(range(256)) * 4000
    with open_store(config) as store:
        store.put("k", data)
        store.add_replica("k", "near-warm")
        assert store.cat("k") == data
        kept = store.aio.locality.not_carried
        assert kept == {(Distance.REMOTE, Distance.NODE): len(data)}
        assert store.aio.energy.not_carried(kept) == pytest.approx(
            len(data) / 1e9 * NETWORK_JOULES_PER_GB[Distance.REMOTE])
