"""The ``[policies]`` section of the config: parsed into PolicyConfig with errors that name
the file and the field, and honoured by ``tierstore plan`` and ``tierstore daemon``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from storefixtures import make_config, toml_for

from tierstore import Config, ConfigError, TierClass, open_store
from tierstore.config import config_from_toml, load_config
from tierstore.policies import DAY, HOUR, PolicyConfig, Scoring
from tierstore.policies.config import parse_duration

TIERS = {"hot": TierClass.HOT, "ssd": TierClass.HOT, "warm": TierClass.WARM,
         "cold": TierClass.COLD}
BASE = """
home = "{home}"
[tiers.hot]
class = "hot"
url = "hot"
[tiers.warm]
class = "warm"
url = "warm"
"""


def parse(table: dict[str, Any]) -> PolicyConfig:
    return PolicyConfig.from_toml(table, source="/etc/ts.toml", tiers=TIERS)


# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("5m", 300.0), ("12h", 12 * HOUR), ("30d", 30 * DAY), ("2w", 14 * DAY),
    ("1.5h", 1.5 * HOUR), (" 45 ", 45.0), ("0.5", 0.5), (".5m", 30.0), (7, 7.0), (2.5, 2.5),
    ("10D", 10 * DAY), ("0s", 0.0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "5 days", "-1s", "1y", "inf", "nan", True, -3,
                                  float("inf"), [5], "5m3s"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ConfigError, match=r"^f\.toml: policies\.min_idle: expected a "
                                          r"duration such as 90s"):
        parse_duration(text, source="f.toml", field="policies.min_idle")


def test_every_setting_parses() -> None:
    config = parse({
        "demote_after": {"hot": "7d", "ssd": "12h", "warm": "90d"},
        "promote_within": "1h", "promote_min_reads": 2, "promote_to": "ssd",
        "scoring": {"hot": "lrfu", "cold": "frequency"}, "default_scoring": "frequency",
        "promote_score": 3, "demote_score": 0.25, "min_idle": "30m",
        "recency_half_life": "2h", "pins": {"datasets/eval": "hot", "models/": "warm"},
    })
    assert dict(config.demote_after) == {"hot": 7 * DAY, "ssd": 12 * HOUR, "warm": 90 * DAY}
    assert (config.promote_within, config.promote_min_reads, config.promote_to) == (
        HOUR, 2, "ssd")
    assert dict(config.scoring) == {"hot": Scoring.LRFU, "cold": Scoring.FREQUENCY}
    assert config.default_scoring is Scoring.FREQUENCY
    assert (config.promote_score, config.demote_score) == (3.0, 0.25)
    assert (config.min_idle, config.recency_half_life) == (30 * 60, 2 * HOUR)
    assert dict(config.pins) == {"datasets/eval": "hot", "models/": "warm"}


def test_empty_table_is_the_defaults_and_a_given_table_replaces_its_default() -> None:
    assert parse({}) == PolicyConfig()
    assert dict(parse({"demote_after": {"warm": "60d"}}).demote_after) == {"warm": 60 * DAY}
    assert dict(parse({"demote_after": {}}).demote_after) == {}  # recency never demotes


@pytest.mark.parametrize(("table", "field", "message"), [
    ({"demote_afte": {"hot": "1d"}}, "policies", "unknown option 'demote_afte' (expected "
                                                 "one of default_scoring, demote_after"),
    ({"demote_after": "30d"}, "policies.demote_after", "expected a table, got '30d'"),
    ({"demote_after": {"hot": "30 days"}}, "policies.demote_after.hot",
     "expected a duration such as 90s"),
    ({"demote_after": {"hott": "30d"}}, "policies.demote_after.hott",
     "'hott' is neither a configured tier (hot, ssd, warm, cold) nor a class"),
    ({"demote_after": {"hot": "0s"}}, "policies.demote_after.hot",
     "expected a positive number of seconds"),
    ({"promote_within": "2d", "demote_after": {"hot": "1d"}}, "policies.promote_within",
     "must be shorter than every demote_after age"),
    ({"promote_min_reads": 1.5}, "policies.promote_min_reads", "expected a whole number"),
    ({"promote_min_reads": 0}, "policies", "expected promote_min_reads >= 1"),
    ({"promote_to": "nvme"}, "policies.promote_to", "'nvme' is not a configured tier"),
    ({"scoring": {"hot": "lfu"}}, "policies.scoring.hot",
     "expected one of recency, frequency, lrfu, got 'lfu'"),
    ({"default_scoring": 1}, "policies.default_scoring", "expected one of recency"),
    ({"promote_score": "high"}, "policies.promote_score", "expected a number"),
    ({"demote_score": True}, "policies.demote_score", "expected a number, got True"),
    ({"demote_score": 5.0}, "policies", "demote_score <= promote_score"),
    ({"min_idle": "soon"}, "policies.min_idle", "expected a duration"),
    ({"recency_half_life": 0}, "policies.recency_half_life", "positive number of seconds"),
    ({"pins": ["a"]}, "policies.pins", "expected a table"),
    ({"pins": {"ds/../x": "hot"}}, 'policies.pins."ds/../x"', "not a key prefix"),
    ({"pins": {"ds": "hot-tier"}}, 'policies.pins."ds"', "'hot-tier' is not a configured"),
    ({"pins": {"ds": "warm"}, "promote_within": "1y"}, "policies.promote_within",
     "expected a duration"),
])
def test_errors_name_the_file_and_the_field(table: dict[str, Any], field: str,
                                            message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(table)
    text = str(caught.value)
    assert text.startswith(f"/etc/ts.toml: {field}: "), text
    assert message in text
    assert "\n" not in text


def test_a_class_names_no_tier_but_is_accepted_for_per_tier_tables() -> None:
    config = PolicyConfig.from_toml({"demote_after": {"cold": "52w"}},
                                    tiers={"hot": TierClass.HOT})
    assert dict(config.demote_after) == {"cold": 364 * DAY}


def test_the_core_keeps_the_section_as_written(tmp_path: Path) -> None:
    text = BASE.format(home=tmp_path) + '[policies]\ndemote_after = { hot = "2h" }\n' \
        'promote_within = "1h"\n'
    path = tmp_path / "ts.toml"
    path.write_text(text)
    config = load_config(path)
    assert dict(config.policies) == {"demote_after": {"hot": "2h"}, "promote_within": "1h"}
    assert dict(PolicyConfig.from_config(config).demote_after) == {"hot": 2 * HOUR}

    plain = config_from_toml(BASE.format(home=tmp_path), source="plain.toml")
    assert dict(plain.policies) == {}
    assert PolicyConfig.from_config(plain) == PolicyConfig()

    with pytest.raises(ConfigError, match=r"^bad\.toml: policies: expected a table"):
        config_from_toml('policies = "fast"\n' + BASE.format(home=tmp_path), source="bad.toml")


def test_from_config_checks_tier_names_against_the_store(tmp_path: Path) -> None:
    text = BASE.format(home=tmp_path) + '[policies]\ndemote_after = { cold = "1d" }\n' \
        'pins = { "ds" = "cold" }\n'
    config = config_from_toml(text, source="ts.toml")
    with pytest.raises(ConfigError, match=r'^ts\.toml: policies\.pins\."ds": \'cold\' is not '
                                          r"a configured tier \(configured: hot, warm\)"):
        PolicyConfig.from_config(config)


# -- plan and daemon honour the section -------------------------------------------------------


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TIERSTORE_")}


def cli(toml: Path, *args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "tierstore.cli", "--config", str(toml), *args],
                          capture_output=True, text=True, env=_env(), timeout=60)
    assert done.returncode == status, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture
def store(tmp_path: Path) -> Config:
    """ds/a on hot, last read ten minutes ago; ds/b on warm, never read."""
    config = make_config(tmp_path / "store", "local")
    with open_store(config) as opened:
        opened.put("ds/a", b"a" * 100, tier="hot")
        opened.put("ds/b", b"b" * 50, tier="warm")
        opened.aio.catalog.record_access({"ds/a": (2, time.time() - 600)})
    return config


def write(config: Config, path: Path, policies: str = "") -> Path:
    path.write_text(toml_for(config) + (f"\n[policies]\n{policies}\n" if policies else ""))
    return path


SHORT = 'demote_after = { hot = "5m" }\npromote_within = "1m"'


def test_plan_honours_the_section(store: Config, tmp_path: Path) -> None:
    default = json.loads(cli(write(store, tmp_path / "default.toml"), "plan", "--json").stdout)
    assert default["moves"] == []  # read ten minutes ago: far from 30 days

    short = write(store, tmp_path / "short.toml", SHORT)
    plan = json.loads(cli(short, "plan", "--json").stdout)
    assert [(m["key"], m["from"], m["to"], m["policy"]) for m in plan["moves"]] == [
        ("ds/a", "hot", "warm", "recency")]
    assert "> 5m on hot" in plan["moves"][0]["reason"]
    # ds/b was never read: its age counts from its creation, a moment ago; warm's default
    # age is gone because the table replaces the default one
    later = json.loads(cli(short, "plan", "--json", "--now", str(time.time() + 200 * DAY)
                           ).stdout)
    assert {m["key"] for m in later["moves"]} == {"ds/a"}


def test_daemon_honours_the_section(store: Config, tmp_path: Path) -> None:
    assert " move " not in cli(write(store, tmp_path / "default.toml"), "daemon", "--once",
                               "--no-metrics", "--dry-run").stderr
    short = write(store, tmp_path / "short.toml", SHORT)
    done = cli(short, "daemon", "--once", "--no-metrics", "--log-format", "json")
    moves = [json.loads(line) for line in done.stderr.splitlines()
             if json.loads(line).get("message") == "move"]
    assert [(m["key"], m["from"], m["to"], m["policy"], m["outcome"]) for m in moves] == [
        ("ds/a", "hot", "warm", "recency", "done")], done.stderr
    with open_store(store) as opened:
        assert [r.tier for r in opened.stat("ds/a").replicas] == ["warm"]


@pytest.mark.parametrize("command", [["plan"], ["daemon", "--once", "--no-metrics"],
                                     ["simulate", "--trace", "t.csv"]])
def test_a_bad_section_is_one_line_naming_file_and_field(store: Config, tmp_path: Path,
                                                         command: list[str]) -> None:
    bad = write(store, tmp_path / "bad.toml", 'demote_after = { hott = "1d" }')
    (tmp_path / "t.csv").write_text("0,ds/a,100\n")
    done = subprocess.run([sys.executable, "-m", "tierstore.cli", "--config", str(bad),
                           *command], capture_output=True, text=True, env=_env(), timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"tierstore: error: {bad}: policies.demote_after.hott: 'hott' is neither a configured "
        "tier (hot, warm, cold) nor a class (hot, warm, cold)"]
