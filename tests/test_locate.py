"""``locate``: which sites hold every object of a prefix, so a job can be placed where its
data already is (a carbon-aware scheduler's question). Local folders standing for the tiers
of two sites, real files and catalog; the command line as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tierstore import Config, TierClass, TierConfig, open_store
from tierstore.config import config_from_toml
from tierstore.reports import SiteHolding

NORTH, SOUTH = "eu-north/a/n1", "eu-south/b"


def _config(home: Path) -> Config:
    tiers = {name: TierConfig(name=name, tier_class=tier_class, url=(home / name).as_uri(),
                              site=site)
             for name, tier_class, site in [("hot-n1", TierClass.HOT, NORTH),
                                            ("south", TierClass.WARM, SOUTH),
                                            ("cold", TierClass.COLD, SOUTH)]}
    return Config(home=home, catalog=f"sqlite:///{home}/catalog.db", tiers=tiers,
                  default_tier="south", site=NORTH)


def test_locate_counts_what_each_site_holds_and_misses(tmp_path: Path) -> None:
    with open_store(_config(tmp_path)) as store:
        for i in range(3):
            store.put(f"ds/train/{i}", bytes(100 + i), tier="south")
        store.put("ds/other", b"x" * 50, tier="south")
        store.put("elsewhere/k", b"y", tier="south")
        store.add_replica("ds/train/0", "hot-n1")
        store.add_replica("ds/other", "hot-n1")
        store.move("ds/other", "cold")  # still at SOUTH, through another tier
        found = {h.site: h for h in store.locate("ds/")}
    assert found[SOUTH] == SiteHolding(SOUTH, ("south", "cold"), 4, 353, 0, 0)
    assert found[SOUTH].complete
    assert found[NORTH] == SiteHolding(NORTH, ("hot-n1",), 1, 100, 3, 253)
    assert not found[NORTH].complete


def test_locate_on_the_command_line(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with open_store(config) as store:
        store.put("ds/a", b"abc", tier="hot-n1")
    toml = tmp_path / "store.toml"
    toml.write_text(f'home = "{tmp_path}"\ncatalog = "{config.catalog}"\nsite = "{NORTH}"\n'
                    + "".join(f'[tiers.{t.name}]\nclass = "{t.tier_class.name.lower()}"\n'
                              f'url = "{t.url}"\nsite = "{t.site}"\n'
                              for t in config.tiers.values()))
    assert config_from_toml(toml.read_text(), source=str(toml)).tiers.keys() == \
        config.tiers.keys()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tierstore.cli", "--config", str(toml),
                               "locate", *args], capture_output=True, text=True, timeout=60)

    done = run("ds/", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["site"]: row for row in json.loads(done.stdout)}
    assert rows[NORTH]["complete"] is True and rows[NORTH]["objects"] == 1
    assert rows[SOUTH] == {"site": SOUTH, "tiers": ["south", "cold"], "objects": 0, "bytes": 0,
                           "missing": 1, "missing_bytes": 3, "complete": False}
    table = run("ds/").stdout
    assert "COMPLETE" in table and NORTH in table
    refused = run("../x")
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1
