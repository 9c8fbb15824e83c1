"""``tierstore daemon`` as a real process: cycles that move objects, the one-daemon lock, real
SIGTERMs mid-move, the metrics and health endpoints, JSON logs, and a warm tier on moto S3."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from storefixtures import make_config, toml_for

from tierstore import Config, Store, SyncStore, open_store
from tierstore.catalog import ObjectRecord
from tierstore.config import TierClass, redact
from tierstore.daemon import (
    Daemon,
    DaemonLock,
    DaemonLocked,
    DaemonOptions,
    TokenBucket,
    lock_path,
)
from tierstore.errors import ConfigError
from tierstore.locality.topology import Distance
from tierstore.policies import Move, Plan, PolicyEngine, Snapshot

DAY = 86400.0
MiB = 2**20


def with_hot_capacity(config: Config, capacity: int) -> Config:
    hot = dataclasses.replace(config.tiers["hot"], capacity=capacity)
    return dataclasses.replace(config, tiers={**config.tiers, "hot": hot})


def write_toml(config: Config, path: Path) -> Path:
    path.write_text(toml_for(config))
    return path


def secrets_of(config: Config) -> list[str]:
    out: list[str] = []
    for tier in config.tiers.values():
        shown = redact(tier.options)
        out += [str(v) for k, v in tier.options.items() if shown[k] == "***"]
    return out


def fill(config: Config, size: int = 250) -> dict[str, bytes]:
    """hot (capacity 4 x ``size``) full with p (pinned), h1 (never read), h2 and h3 (read now);
    w on warm, read now; old on warm, last read 100 days ago. The policies then want
    h1 hot -> warm (watermarks), w copied to hot (recency), old warm -> cold (recency)."""
    data = {key: os.urandom(size) for key in ("ds/p", "ds/h1", "ds/h2", "ds/h3")}
    data |= {"ds/w": os.urandom(size // 2), "ds/old": os.urandom(size // 2)}
    with open_store(config) as store:
        for key in ("ds/p", "ds/h1", "ds/h2", "ds/h3"):
            store.put(key, data[key], tier="hot")
        store.put("ds/w", data["ds/w"], tier="warm")
        store.put("ds/old", data["ds/old"], tier="warm")
        store.pin("ds/p", "hot")
        for key in ("ds/h2", "ds/h3", "ds/w"):
            store.cat(key)
        store.aio.catalog.record_access({"ds/old": (3, time.time() - 100 * DAY)})
    return data


def tiers_of(store: SyncStore, key: str) -> list[str]:
    return sorted(r.tier for r in store.stat(key).replicas if r.state == "ready")


def check_intact(config: Config, data: dict[str, bytes]) -> None:
    """Nothing lost, nothing pending, nothing orphaned; every object reads back verified."""
    with open_store(config) as store:
        report = store.audit(deep=True)
        assert report.ok and report.pending == 0, report
        for key, content in data.items():
            assert store.cat(key, verify=True) == content


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TIERSTORE_")}


def daemon_cmd(toml: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tierstore.cli", "--config", str(toml), "daemon", *args]


def run_daemon(toml: Path, *args: str, status: int = 0) -> list[str]:
    """``daemon ARGS`` to the end; its stderr lines."""
    done = subprocess.run(daemon_cmd(toml, *args), capture_output=True, text=True, env=_env(),
                          timeout=60)
    assert done.returncode == status, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr.splitlines()


class Running:
    """A daemon in the background, its stderr in a file (a pipe could fill and block it)."""

    def __init__(self, toml: Path, *args: str):
        self.err = toml.with_name(f"daemon-{time.monotonic_ns()}.err")
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(daemon_cmd(toml, *args), env=_env(),
                                         stdout=subprocess.DEVNULL, stderr=err)

    def lines(self) -> list[str]:
        return self.err.read_text().splitlines()

    def wait_for(self, pattern: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines() if re.search(pattern, line)]
            if found:
                return found[0]
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.text()}"
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r} in {timeout}s:\n{self.text()}")

    def text(self) -> str:
        return self.err.read_text()

    def stop(self, timeout: float, sig: signal.Signals = signal.SIGTERM) -> float:
        """Send ``sig``; the seconds it took to exit (status 0)."""
        began = time.monotonic()
        self.proc.send_signal(sig)
        assert self.proc.wait(timeout) == 0, self.text()
        return time.monotonic() - began

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def moves(lines: list[str]) -> list[dict[str, str]]:
    """The ``move`` lines of text logs as dicts."""
    out = []
    for line in lines:
        if " move key=" in line:
            pairs = re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line.split(" move ", 1)[1])
            out.append({k: json.loads(v) if v.startswith('"') else v for k, v in pairs})
    return out


@pytest.fixture
def small(tmp_path: Path) -> tuple[Config, Path, dict[str, bytes]]:
    config = with_hot_capacity(make_config(tmp_path / "store", "local"), 1000)
    data = fill(config)
    return config, write_toml(config, tmp_path / "store.toml"), data


# -- one cycle --------------------------------------------------------------------------------


def test_once_makes_the_plan_in_order(small: tuple[Config, Path, dict[str, bytes]]) -> None:
    config, toml, data = small
    planned = moves(run_daemon(toml, "--once", "--dry-run", "--no-metrics"))
    assert {(m["key"], m["from"], m["to"], m["outcome"]) for m in planned} == {
        ("ds/h1", "hot", "warm", "planned"), ("ds/w", "warm", "hot", "planned"),
        ("ds/old", "warm", "cold", "planned")}
    with open_store(config) as store:
        assert tiers_of(store, "ds/h1") == ["hot"]  # a dry run moves nothing

    lines = run_daemon(toml, "--once", "--no-metrics", "--max-moves", "4")
    assert "daemon started" in lines[0] and "daemon stopped" in lines[-1]
    done = moves(lines)
    assert {m["key"]: m["outcome"] for m in done} == {"ds/h1": "done", "ds/w": "done",
                                                      "ds/old": "done"}
    order = [m["key"] for m in done]
    assert order.index("ds/h1") < order.index("ds/w")  # room on hot is made before it is used
    h1 = next(m for m in done if m["key"] == "ds/h1")
    assert h1["bytes"] == "250" and h1["policy"] == "watermarks" and float(h1["seconds"]) >= 0
    assert "high watermark" in h1["reason"]
    with open_store(config) as store:
        assert tiers_of(store, "ds/h1") == ["warm"]
        assert tiers_of(store, "ds/w") == ["hot", "warm"]
        assert tiers_of(store, "ds/old") == ["cold"]
        assert tiers_of(store, "ds/p") == ["hot"]
    check_intact(config, data)
    assert not moves(run_daemon(toml, "--once", "--no-metrics"))  # nothing left to do


# -- one daemon per store, metrics and health -------------------------------------------------


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_second_daemon_refuses_and_metrics_are_served(
        small: tuple[Config, Path, dict[str, bytes]]) -> None:
    config, toml, data = small
    first = Running(toml, "--tick", "1h", "--metrics-port", "0")
    try:
        url = re.search(r"metrics=(\S+)", first.wait_for("daemon started")).group(1)
        first.wait_for("cycle done")
        second = subprocess.run(daemon_cmd(toml, "--once", "--no-metrics"), capture_output=True,
                                text=True, env=_env(), timeout=30)
        assert second.returncode == 1
        [line] = second.stderr.splitlines()
        assert line.startswith("tierstore: error: another daemon runs on this store")
        assert f" pid {first.proc.pid} on " in line and str(lock_path(config)) in line

        metrics = scrape(url)
        assert metrics[("tierstore_daemon_moves_total",
                        (("outcome", "done"), ("policy", "watermarks")))] == 1
        assert metrics[("tierstore_daemon_moves_total",
                        (("outcome", "done"), ("policy", "recency")))] == 2
        assert metrics[("tierstore_tier_bytes", (("tier", "hot"), ("tier_class", "hot")))] == 875
        assert metrics[("tierstore_tier_objects", (("tier", "cold"), ("tier_class", "cold")))] == 1
        assert metrics[("tierstore_daemon_moved_bytes_total",
                        (("dst", "warm"), ("src", "hot")))] == 250
        assert metrics[("tierstore_daemon_plan_moves", ())] == 3
        assert metrics[("tierstore_daemon_last_cycle_timestamp_seconds", ())] > time.time() - 60
        assert metrics[("tierstore_daemon_state", (("tierstore_daemon_state", "running"),))] == 1

        base = url.removesuffix("/metrics")
        with urllib.request.urlopen(base + "/healthz", timeout=5) as reply:
            health = json.loads(reply.read())
        assert health["state"] == "running" and health["cycles"] == 1
        assert health["last_cycle"]["ok"] and health["last_cycle"]["done"] == 3
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/nothing", timeout=5)
        assert missing.value.code == 404
        assert first.stop(timeout=10) < 5  # asleep between ticks: stops at once
        assert "daemon stopped" in first.lines()[-1]
    finally:
        first.kill()
    check_intact(config, data)


def test_metrics_host_serves_beyond_loopback(
        small: tuple[Config, Path, dict[str, bytes]]) -> None:
    """Metrics are served on 127.0.0.1 only by default; ``--metrics-host 0.0.0.0`` (what a
    container or pod needs) serves them on every address, here 127.0.0.2, which a socket bound
    to 127.0.0.1 does not answer."""
    _, toml, _ = small
    for host, reachable in (("127.0.0.1", False), ("0.0.0.0", True)):
        daemon = Running(toml, "--tick", "1h", "--dry-run", "--metrics-port", "0",
                         "--metrics-host", host)
        try:
            url = re.search(r"metrics=(\S+)", daemon.wait_for("daemon started")).group(1)
            assert url.startswith(f"http://{host}:") and url.endswith("/metrics")
            port = int(url.removesuffix("/metrics").rsplit(":", 1)[1])
            other = f"http://127.0.0.2:{port}/healthz"
            if reachable:
                with urllib.request.urlopen(other, timeout=5) as reply:
                    assert json.loads(reply.read())["state"] in ("starting", "running")
            else:
                with pytest.raises(urllib.error.URLError):
                    urllib.request.urlopen(other, timeout=5)
            daemon.stop(timeout=10)
        finally:
            daemon.kill()


def test_a_killed_daemon_leaves_no_lock_behind(
        small: tuple[Config, Path, dict[str, bytes]]) -> None:
    _, toml, _ = small
    first = Running(toml, "--tick", "1h", "--no-metrics", "--dry-run")
    try:
        first.wait_for("daemon started")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
    finally:
        first.kill()
    assert "daemon started" in run_daemon(toml, "--once", "--no-metrics")[0]


def test_cycles_follow_reads_of_another_process(
        small: tuple[Config, Path, dict[str, bytes]]) -> None:
    """A daemon ticking every 0.3 s copies to hot an object that another process writes to
    warm and reads."""
    config, toml, data = small
    daemon = Running(toml, "--tick", "0.3", "--metrics-port", "0")
    try:
        url = re.search(r"metrics=(\S+)", daemon.wait_for("daemon started")).group(1)
        daemon.wait_for("cycle done")
        data["ds/new"] = os.urandom(20)
        with open_store(config) as store:
            store.put("ds/new", data["ds/new"], tier="warm")
            store.cat("ds/new")
        line = daemon.wait_for(r"move key=ds/new ", timeout=20)
        assert "from=warm to=hot" in line and "outcome=done" in line
        with urllib.request.urlopen(url.replace("/metrics", "/healthz"), timeout=5) as reply:
            assert json.loads(reply.read())["cycles"] >= 2
        daemon.stop(timeout=10)
    finally:
        daemon.kill()
    with open_store(config) as store:
        assert tiers_of(store, "ds/new") == ["hot", "warm"]
    check_intact(config, data)


# -- SIGTERM mid-cycle ------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "sig", "how"), [
    ("local", signal.SIGINT, "finish"), ("local", signal.SIGTERM, "cancel"),
    ("moto", signal.SIGTERM, "cancel")])
def test_signal_mid_cycle(request: pytest.FixtureRequest, tmp_path: Path, kind: str,
                          sig: signal.Signals, how: str) -> None:
    """Four 16 MiB objects unread for 40 days leave hot at 8 MiB/s, two at a time: a signal
    lets the two in flight finish, or cancels them (an S3 multipart upload too) after a short
    shutdown timeout. Either way nothing is half-done and the rest never start."""
    if kind == "local":
        config = make_config(tmp_path / "store", kind)
    else:
        server = request.getfixturevalue(f"{kind}_server")
        bucket = server.new_bucket()
        request.addfinalizer(lambda: server.delete_bucket(bucket))
        config = make_config(tmp_path / "store", kind, server, bucket)
    data = {f"big/{i}": os.urandom(16 * MiB) for i in range(4)}
    with open_store(config) as store:
        for key, content in data.items():
            store.put(key, content, tier="hot")
        store.aio.catalog.record_access({key: (1, time.time() - 40 * DAY) for key in data})
    toml = write_toml(config, tmp_path / "store.toml")
    daemon = Running(toml, "--once", "--no-metrics", "--max-moves", "2", "--bandwidth",
                     "8MiB", "--shutdown-timeout", "30" if how == "finish" else "0.5")
    try:
        daemon.wait_for(r" plan moves=4")
        time.sleep(0.3)
        took = daemon.stop(timeout=20, sig=sig)
    finally:
        daemon.kill()
    assert took < (15 if how == "finish" else 5), daemon.text()
    lines = daemon.lines()
    assert f"stopping on {sig.name}" in daemon.text() and "daemon stopped" in lines[-1]
    outcomes = sorted(m["outcome"] for m in moves(lines))
    assert outcomes == (["done", "done"] if how == "finish" else ["cancelled", "cancelled"])
    assert re.search(r"cycle done .*not_started=2", daemon.text()), daemon.text()
    check_intact(config, data)
    with open_store(config) as store:
        where = sorted(tuple(tiers_of(store, key)) for key in data)
    moved = 2 if how == "finish" else 0
    assert where == [("hot",)] * (4 - moved) + [("warm",)] * moved
    if kind != "local":  # the cancelled multipart uploads were aborted, not left to bill
        uploads = server.client().list_multipart_uploads(Bucket=bucket)
        assert not uploads.get("Uploads"), uploads


# -- S3 and JSON logs -------------------------------------------------------------------------


@pytest.mark.parametrize("store_config", ["moto"], indirect=True)
def test_once_against_moto_with_json_logs(store_config: Config, tmp_path: Path) -> None:
    config = with_hot_capacity(store_config, 1000)
    data = fill(config)
    toml = write_toml(config, tmp_path / "store.toml")
    lines = run_daemon(toml, "--once", "--metrics-port", "0", "--log-format", "json")
    events = [json.loads(line) for line in lines]
    secrets = secrets_of(config)
    assert secrets and not any(s in line for s in secrets for line in lines)
    assert events[0]["message"] == "daemon started" and events[-1]["message"] == "daemon stopped"
    done = {e["key"]: (e["from"], e["to"], e["outcome"]) for e in events if e["message"] == "move"}
    assert done == {"ds/h1": ("hot", "warm", "done"), "ds/w": ("warm", "hot", "done"),
                    "ds/old": ("warm", "cold", "done")}
    with open_store(config) as store:
        assert tiers_of(store, "ds/h1") == ["warm"] and tiers_of(store, "ds/old") == ["cold"]
    check_intact(config, data)


# -- pieces, in process -----------------------------------------------------------------------


def test_lock_names_its_holder(tmp_path: Path) -> None:
    first, second = DaemonLock(tmp_path / "d.lock"), DaemonLock(tmp_path / "d.lock")
    first.acquire("node-1:123")
    try:
        with pytest.raises(DaemonLocked, match=r"pid 123 on node-1, started \S+ \(lock "):
            second.acquire("node-1:456")
    finally:
        first.release()
    second.acquire("node-1:456")  # free again once released (or its holder died)
    second.release()


def test_token_bucket_paces(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    monkeypatch.setattr(time, "monotonic", lambda: 100.0)  # no time passes
    bucket = TokenBucket(1000)

    async def take() -> None:
        for size in (1000, 500, 500):
            await bucket.take(size)

    asyncio.run(take())
    assert waits == [pytest.approx(0.5), pytest.approx(1.0)]


def test_bad_options(small: tuple[Config, Path, dict[str, bytes]]) -> None:
    with pytest.raises(ConfigError):
        DaemonOptions(max_moves=0)
    with pytest.raises(ConfigError):
        DaemonOptions(tick=0)
    with pytest.raises(ConfigError):
        DaemonOptions(bandwidth=0)
    _, toml, _ = small
    for args in (["--bandwidth", "fast"], ["--max-moves", "0"], ["--tick", "soon"],
                 ["--metrics-port", "70000"], ["--tick", "0"]):
        done = subprocess.run(daemon_cmd(toml, "--once", *args), capture_output=True,
                              text=True, env=_env(), timeout=30)
        assert done.returncode == 2, args
        assert len(done.stderr.splitlines()) == 1 and args[0] in done.stderr, done.stderr


class FixedPlan(PolicyEngine):
    def __init__(self, moves: list[Move]):
        super().__init__([])
        self.moves = moves

    def plan(self, snapshot: Snapshot) -> Plan:
        return Plan(tuple(self.moves), snapshot.now)


def test_a_move_whose_destination_got_a_ready_replica_meanwhile_is_done(
        small: tuple[Config, Path, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The race of the three-node test: the daemon looked (no replica on cold), then a
    reader's fill committed one there before the daemon's copy recorded its intent. The copy
    has nothing left to do, so the move is done (its source dropped), not failed."""
    config, _, data = small

    async def cycle() -> dict[str, int]:
        store = Store(config)
        try:
            looked = await store._ready("ds/w")  # what the daemon saw
            await store.add_replica("ds/w", "cold")  # the fill, meanwhile

            async def stale(key: str) -> ObjectRecord:
                return looked

            monkeypatch.setattr(store, "_ready", stale)
            plan = [Move("ds/w", "warm", "cold", 125, "recency", "test: planned before")]
            daemon = Daemon(store, DaemonOptions(once=True, metrics_port=None),
                            engine=FixedPlan(plan))
            await daemon.cycle()
            return dict(daemon.outcomes)
        finally:
            await store.close()

    assert asyncio.run(cycle()) == {"done": 1}
    with open_store(config) as store:
        assert tiers_of(store, "ds/w") == ["cold"]
    check_intact(config, data)


def test_a_move_waits_for_room_and_is_skipped_without_it(
        small: tuple[Config, Path, dict[str, bytes]]) -> None:
    """A move that should have made room on hot fails, so the promotion onto hot that counted
    on that room is skipped; a move onto an unbounded tier goes ahead."""
    config, _, data = small
    plan = [Move("ds/gone", "hot", "warm", 250, "watermarks", "test: fails"),
            Move("ds/w", None, "hot", 125, "recency", "test: needs the room"),
            Move("ds/old", "warm", "cold", 125, "recency", "test: independent")]

    async def cycle() -> tuple[bool, dict[str, int]]:
        store = Store(config)
        try:
            daemon = Daemon(store, DaemonOptions(once=True, metrics_port=None),
                            engine=FixedPlan(plan))
            return await daemon.cycle(), dict(daemon.outcomes)
        finally:
            await store.close()

    ok, outcomes = asyncio.run(cycle())
    assert ok and outcomes == {"failed": 1, "skipped": 1, "done": 1}
    with open_store(config) as store:
        assert tiers_of(store, "ds/w") == ["warm"] and tiers_of(store, "ds/old") == ["cold"]
    check_intact(config, data)


def test_the_next_copy_overlaps_a_move_making_its_copy_durable(
        small: tuple[Config, Path, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    """``max_moves`` bounds copies, not moves: with one copy at a time, the second move's
    bytes flow while the first's are being made durable (its sync, here held until the
    second copy begins) and committed; both land whole."""
    config, _, data = small
    plan = [Move("ds/w", "warm", "cold", 125, "recency", "test: first"),
            Move("ds/old", "warm", "cold", 125, "recency", "test: second")]

    async def cycle() -> tuple[dict[str, int], bool]:
        store = Store(config)
        try:
            cold = store.tier("cold")
            writes, second_copy = 0, asyncio.Event()
            overlapped: list[bool] = []
            write, sync = cold.write, cold.sync

            async def counted_write(*args: object, **kwargs: object) -> object:
                nonlocal writes
                writes += 1
                if writes == 2:
                    second_copy.set()
                return await write(*args, **kwargs)  # type: ignore[arg-type]

            async def held_sync(path: str) -> None:
                if not overlapped:  # the first move's: does the second copy start meanwhile?
                    try:
                        await asyncio.wait_for(second_copy.wait(), 10)
                        overlapped.append(True)
                    except TimeoutError:
                        overlapped.append(False)
                await sync(path)

            monkeypatch.setattr(cold, "write", counted_write)
            monkeypatch.setattr(cold, "sync", held_sync)
            daemon = Daemon(store, DaemonOptions(once=True, metrics_port=None, max_moves=1),
                            engine=FixedPlan(plan))
            await daemon.cycle()
            return dict(daemon.outcomes), overlapped[0]
        finally:
            await store.close()

    outcomes, overlapped = asyncio.run(cycle())
    assert outcomes == {"done": 2} and overlapped
    with open_store(config) as store:
        assert tiers_of(store, "ds/w") == ["cold"] and tiers_of(store, "ds/old") == ["cold"]
    check_intact(config, data)


def test_the_daemon_reports_storage_power_and_the_energy_of_its_moves(
        small: tuple[Config, Path, dict[str, bytes]]) -> None:
    """Estimated by the [energy] model: each tier's power from its bytes and class, what
    holding bytes off the hot class saves, and each move's energy (read, carried, written)
    and emissions at the model's intensity (no [carbon] source here)."""
    config, _, _ = small
    plan = [Move("ds/old", "warm", "cold", 125, "recency", "test: demote")]

    async def cycle() -> tuple[Daemon, list[Any]]:
        store = Store(config)
        try:
            daemon = Daemon(store, DaemonOptions(once=True, metrics_port=None),
                            engine=FixedPlan(plan))
            await daemon.cycle()
            return daemon, await store.usage()
        finally:
            await store.close()

    daemon, usage = asyncio.run(cycle())
    model, registry = daemon.energy, daemon.metrics.registry
    saved = 0.0
    for rep in usage:
        tier_class = TierClass[rep.tier_class.upper()]
        watts = registry.get_sample_value("tierstore_storage_watts", {
            "tier": rep.tier, "tier_class": rep.tier_class})
        assert watts == pytest.approx(model.storage_watts(tier_class, rep.bytes)) and rep.bytes
        saved += model.storage_watts(TierClass.HOT, rep.bytes) - watts
    assert registry.get_sample_value("tierstore_tiering_saved_watts") == pytest.approx(saved)
    joules = registry.get_sample_value("tierstore_daemon_move_joules_total",
                                       {"src": "warm", "dst": "cold"})
    assert joules == pytest.approx(model.move_joules(125, TierClass.WARM, TierClass.COLD,
                                                     Distance.NODE))
    grams = registry.get_sample_value("tierstore_daemon_move_grams_co2e_total",
                                      {"src": "warm", "dst": "cold"})
    assert grams == pytest.approx(model.estimate(joules).grams_co2e) and grams > 0
