"""``tierstore simulate``: traces read from CSV and JSON lines, hit rates worked out by hand on
tiny traces, one-line errors for malformed traces, and the shipped example traces."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tierstore import ConfigError, default_config
from tierstore.policies import PolicyConfig
from tierstore.policies.replay import Result
from tierstore.policies.simulate import POLICIES, Simulation, simulation_tiers
from tierstore.policies.trace import Read, Trace, TraceError, read_trace

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO / "bench" / "traces"

# a (130 B), b (60 B) and c (90 B) read at 0, 1, 2 and again at 11, 12, 13; then d (100 B)
# at 14 and a at 15. 8 reads, 790 bytes.
TINY = [(0, "a", 130), (1, "b", 60), (2, "c", 90), (11, "a", 130), (12, "b", 60),
        (13, "c", 90), (14, "d", 100), (15, "a", 130)]
TINY_CSV = "time,key,bytes\n" + "".join(f"{t},{k},{b}\n" for t, k, b in TINY)


def tiny_sim(tmp_path: Path, config: PolicyConfig | None = None, **fields: Any) -> Simulation:
    """hot holds 300 bytes (high watermark 270), warm and cold are unbounded; plans every
    10 s, at 0 and 10."""
    tiers = simulation_tiers(default_config(tmp_path), {"hot": 300})
    trace = Trace(tuple(Read(float(t), k, b) for t, k, b in TINY), "tiny")
    fields = {"start": "warm", "tick": 10.0} | fields
    return Simulation(trace=trace, tiers=tiers, config=config or PolicyConfig(), **fields)


def rates(result: Result, tier: str = "hot") -> tuple[float, float]:
    return result.read_hit_rate(tier), result.byte_hit_rate(tier)


# -- hit rates by hand ------------------------------------------------------------------------


def test_lru_baseline_by_hand(tmp_path: Path) -> None:
    [lru] = tiny_sim(tmp_path).run(["lru-baseline"])
    # a, b, c miss and fill 280 of 300 B; the second a, b, c hit; d evicts a (LRU) to fit;
    # the last a evicts b and c
    assert (lru.tiers["hot"].reads, lru.tiers["hot"].bytes) == (3, 280)
    assert (lru.tiers["warm"].reads, lru.tiers["warm"].bytes) == (5, 510)
    assert rates(lru) == (3 / 8, 280 / 790)
    assert (lru.moves, lru.promotions, lru.demotions, lru.bytes_moved) == (8, 5, 3, 510)
    assert lru.plans == 0


def test_recency_by_hand(tmp_path: Path) -> None:
    [recency] = tiny_sim(tmp_path).run(["recency"])
    # the plan at 10 promotes what was read, most recent first: c (90 B), b (60 B); a would
    # take hot to 280 B, over its high watermark (270 B). Then b and c are read from hot.
    assert (recency.tiers["hot"].reads, recency.tiers["hot"].bytes) == (2, 150)
    assert rates(recency) == (2 / 8, 150 / 790)
    assert rates(recency, "warm") == (6 / 8, 640 / 790)
    assert (recency.moves, recency.promotions, recency.demotions) == (2, 2, 0)
    assert recency.bytes_moved == 150 and recency.plans == 2


def test_frequency_and_lrfu_wait_for_a_score_of_two(tmp_path: Path) -> None:
    for result in tiny_sim(tmp_path).run(["frequency", "lrfu"]):
        assert rates(result) == (0.0, 0.0) and result.moves == 0
        assert rates(result, "warm") == (1.0, 1.0)


def test_configured_settings_and_sharing_a_replay(tmp_path: Path) -> None:
    default, recency = tiny_sim(tmp_path).run(["configured", "recency"])
    assert default.policy == "configured" and "what `tierstore daemon` runs" in \
        default.description
    assert rates(default) == rates(recency)  # the defaults score every tier by recency
    two_reads = PolicyConfig.from_toml({"promote_min_reads": 2})
    configured, recency = tiny_sim(tmp_path, two_reads).run(["configured", "recency"])
    assert rates(configured) == rates(recency) == (0.0, 0.0)  # nothing was read twice by 10 s


def test_pins_by_prefix_are_honoured(tmp_path: Path) -> None:
    pinned = PolicyConfig.from_toml({"pins": {"d": "hot"}})
    [result] = tiny_sim(tmp_path, pinned).run(["recency"])
    # the plan at 0 copies d to hot (100 B); at 10, c (90 B) and b (60 B) fit under 270 B,
    # a (130 B) does not
    assert (result.tiers["hot"].reads, result.tiers["hot"].bytes) == (3, 250)
    assert (result.moves, result.promotions, result.bytes_moved) == (3, 3, 250)


def test_json_report(tmp_path: Path) -> None:
    sim = tiny_sim(tmp_path)
    report = sim.to_json(sim.run(POLICIES))
    assert [p["policy"] for p in report["policies"]] == list(POLICIES)
    assert report["trace"] == {"path": "tiny", "reads": 8, "objects": 4, "bytes": 790,
                               "object_bytes": 380, "start": 0.0, "end": 15.0}
    assert report["tiers"][0] == {"tier": "hot", "class": "hot", "capacity": 300,
                                  "high_watermark": 0.9, "low_watermark": 0.75}
    lru = report["policies"][-1]
    assert lru["tiers"]["hot"] == {"reads": 3, "bytes": 280, "read_hit_rate": 3 / 8,
                                   "byte_hit_rate": 280 / 790}
    for policy in report["policies"]:
        assert sum(t["reads"] for t in policy["tiers"].values()) == 8
        assert sum(t["read_hit_rate"] for t in policy["tiers"].values()) == pytest.approx(1)


def test_bad_simulations(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="objects start on a tier colder than hot"):
        tiny_sim(tmp_path, start="hot")
    with pytest.raises(TraceError, match="pass a longer --tick"):
        tiny_sim(tmp_path, tick=1e-6)
    tiers = simulation_tiers(default_config(tmp_path), {"warm": 200, "cold": 200})
    sim = Simulation(trace=tiny_sim(tmp_path).trace, tiers=tiers, config=PolicyConfig(),
                     start="warm")
    with pytest.raises(TraceError, match="do not fit under the high watermarks of warm"):
        sim.run(["recency"])


# -- reading traces ---------------------------------------------------------------------------


def test_csv_and_json_lines_read_alike(tmp_path: Path) -> None:
    expected = tuple(Read(float(t), k, b) for t, k, b in TINY)
    (tmp_path / "t.csv").write_text(TINY_CSV)
    (tmp_path / "t.jsonl").write_text("".join(
        json.dumps({"time": t, "key": k, "bytes": b, "rank": 0}) + "\n" for t, k, b in TINY))
    (tmp_path / "bare.trace").write_text("# no header\n\n" + TINY_CSV.split("\n", 1)[1])
    (tmp_path / "sniffed").write_text((tmp_path / "t.jsonl").read_text())
    reordered = "rank,bytes,key,time\n" + "".join(f"0,{b},{k},{t}\n" for t, k, b in TINY)
    (tmp_path / "r.csv").write_text(reordered)
    with gzip.open(tmp_path / "t.csv.gz", "wt") as out:
        out.write(TINY_CSV)
    for name in ("t.csv", "t.jsonl", "bare.trace", "sniffed", "r.csv", "t.csv.gz"):
        trace = read_trace(tmp_path / name)
        assert trace.reads == expected, name
        assert trace.sizes == {"a": 130, "b": 60, "c": 90, "d": 100}


def test_times_sort_and_may_be_iso(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("2024-06-10T08:00:10+00:00,x,1KiB\n2024-06-10T08:00:00+00:00,y,5\n")
    trace = read_trace(path)
    assert [(r.key, r.time - trace.start, r.bytes) for r in trace.reads] == [
        ("y", 0.0, 5), ("x", 10.0, 1024)]


@pytest.mark.parametrize(("name", "text", "error"), [
    ("t.csv", "0,a,1\n1,b\n", "t.csv, line 2: expected time, key and bytes, got 2 fields"),
    ("t.csv", "0,a,1\nsoon,b,1\n", "t.csv, line 2: expected a time in seconds or ISO 8601, "
                                   "got 'soon'"),
    ("t.csv", "# c\n0,a,1\n1,b,-1\n", "t.csv, line 3: expected a byte count such as 4096"),
    ("t.csv", "0,a,1\n1,../b,1\n", "t.csv, line 2: invalid key '../b'"),
    ("t.csv", "0,a,1\ninf,b,1\n", "t.csv, line 2: expected a time"),
    ("t.csv", "time,object,bytes\n0,a,1\n", "t.csv, line 1: the header has no 'key' column"),
    ("t.csv", "0,\"a,1\n", "t.csv, line 1: "),
    ("t.jsonl", '{"time":0,"key":"a","bytes":1}\n{"time":1,"key":"b"}\n',
     "t.jsonl, line 2: no 'bytes' field"),
    ("t.jsonl", '{"time":0,"key":"a","bytes":1}\n{"time":1,\n', "t.jsonl, line 2: not valid "
                                                                 "JSON"),
    ("t.jsonl", '[0,"a",1]\n', "t.jsonl, line 1: expected a JSON object"),
    ("t.jsonl", '{"time":0,"key":5,"bytes":1}\n', "t.jsonl, line 1: invalid key 5"),
    ("t.jsonl", '{"time":true,"key":"a","bytes":1}\n', "t.jsonl, line 1: expected a time"),
    ("t.jsonl", '{"time":0,"key":"a","bytes":1.5}\n', "t.jsonl, line 1: expected a byte"),
    ("t.csv", "# only a comment\n", "t.csv: no reads in the trace"),
    ("t.csv.gz", "not gzip", "t.csv.gz: cannot read the trace"),
])
def test_malformed_traces(tmp_path: Path, name: str, text: str, error: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TraceError) as caught:
        read_trace(path)
    message = str(caught.value)
    assert message.startswith(f"{path}{error[len(name):]}"), message
    assert "\n" not in message


# -- the command ------------------------------------------------------------------------------


def simulate(tmp_path: Path, *args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERSTORE_")}
    done = subprocess.run([sys.executable, "-m", "tierstore.cli", "simulate", *args],
                          capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert done.returncode == status, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


def test_command_text_and_json(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(TINY_CSV)
    text = simulate(tmp_path, "--trace", "t.csv", "--hot-capacity", "300", "--tick", "10s")
    assert text.stderr == ""  # no progress bar off a terminal
    lines = text.stdout.splitlines()
    assert lines[0] == "t.csv: 8 reads of 4 objects (380 B) over 15s"
    assert lines[1] == ("tiers: hot 300 B, warm unbounded, cold unbounded; objects start on "
                        "warm; the policies plan every 10s")
    assert lines[3].split() == ["POLICY", "HOT", "READS", "HOT", "BYTES", "WARM", "READS",
                                "WARM", "BYTES", "MOVES", "MOVED"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[4:9]}
    assert list(rows) == list(POLICIES)
    assert rows["recency"] == ["25.0%", "19.0%", "75.0%", "81.0%", "2", "150", "B"]
    assert rows["lru-baseline"] == ["37.5%", "35.4%", "62.5%", "64.6%", "8", "510", "B"]

    done = simulate(tmp_path, "--trace", "t.csv", "--hot-capacity", "300", "--tick", "10s",
                    "--policy", "lrfu", "--policy", "lru-baseline", "--json")
    report = json.loads(done.stdout)
    assert [p["policy"] for p in report["policies"]] == ["lrfu", "lru-baseline"]
    assert report["tick"] == 10.0 and report["start_tier"] == "warm"


def test_command_reads_policies_and_tiers_from_the_config(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text("".join(
        json.dumps({"time": t, "key": k, "bytes": b}) + "\n" for t, k, b in TINY))
    (tmp_path / "ts.toml").write_text(
        'default_tier = "hot"\n[tiers.hot]\nclass = "hot"\nurl = "h"\ncapacity = 300\n'
        '[tiers.disk]\nclass = "warm"\nurl = "d"\n[policies]\npromote_min_reads = 2\n')
    report = json.loads(simulate(tmp_path, "--config", "ts.toml", "--trace", "t.jsonl",
                                 "--tick", "10s", "--json").stdout)
    assert report["start_tier"] == "disk"  # the default tier is the hottest: the next one
    by = {p["policy"]: p for p in report["policies"]}
    assert "[policies] of ts.toml" in by["configured"]["description"]
    assert by["configured"]["tiers"]["hot"]["reads"] == 0  # needs two reads to promote
    assert by["lru-baseline"]["tiers"]["hot"]["reads"] == 3


@pytest.mark.parametrize(("args", "error"), [
    (["--trace", "missing.csv"], "missing.csv: cannot read the trace (No such file"),
    (["--trace", "bad.csv"], "bad.csv, line 2: expected a byte count"),
    (["--trace", "bad.csv", "--start-tier", "hot"], "--start-tier: objects start on a tier "
                                                    "colder than hot"),
])
def test_command_errors_are_one_line(tmp_path: Path, args: list[str], error: str) -> None:
    (tmp_path / "bad.csv").write_text("0,a,1\n1,b,lots\n")
    done = simulate(tmp_path, *args, status=1)
    [line] = done.stderr.splitlines()
    assert line.startswith(f"tierstore: error: {error}"), line


@pytest.mark.parametrize("args", [["--tick", "0"], ["--tick", "soon"],
                                  ["--hot-capacity", "big"], ["--policy", "lfu"]])
def test_command_usage_errors(tmp_path: Path, args: list[str]) -> None:
    done = simulate(tmp_path, "--trace", "t.csv", *args, status=2)
    assert len(done.stderr.splitlines()) == 1 and args[0] in done.stderr


# -- the example traces -----------------------------------------------------------------------


def test_example_traces_are_what_the_script_writes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(TRACES / "make_traces.py"), str(tmp_path)],
                   check=True, capture_output=True, timeout=60)
    for name in ("training.csv", "zipf.jsonl"):
        assert (tmp_path / name).read_bytes() == (TRACES / name).read_bytes(), name


def test_example_traces_run(tmp_path: Path) -> None:
    training = json.loads(simulate(tmp_path, "--trace", str(TRACES / "training.csv"),
                                   "--hot-capacity", "16GiB", "--json").stdout)
    assert training["trace"]["reads"] == 2560 and training["trace"]["objects"] == 256
    hot = {p["policy"]: p["tiers"]["hot"]["read_hit_rate"] for p in training["policies"]}
    # a hot tier half the dataset: LRU thrashes on fresh shuffles, the default does not
    assert hot["configured"] > 2 * hot["lru-baseline"] > 0

    zipf = json.loads(simulate(tmp_path, "--trace", str(TRACES / "zipf.jsonl"),
                               "--hot-capacity", "2GiB", "--tick", "10m", "--policy",
                               "configured", "--policy", "lru-baseline", "--json").stdout)
    assert zipf["trace"]["reads"] == 12000
    for policy in zipf["policies"]:
        assert 0.3 < policy["tiers"]["hot"]["read_hit_rate"] < 0.8
    # the bar: the default is not worse than LRU on either trace (displacement)
    hot = {p["policy"]: p["tiers"]["hot"]["read_hit_rate"] for p in zipf["policies"]}
    assert hot["configured"] >= hot["lru-baseline"]
