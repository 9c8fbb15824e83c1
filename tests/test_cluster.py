"""One daemon per node, one leader per cluster, through catalog leases.

The roles on both catalog backends, then two real daemon processes (two sites, their own hot
folders, shared warm and cold folders) on one PostgreSQL catalog: only the leader makes
cluster-wide moves, and when it is killed with SIGKILL the other daemon takes over once its
lease has expired. The bound waited for is a liveness limit, not a measured speed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tierstore import Store, open_store
from tierstore.catalog import Catalog, Lease, open_catalog
from tierstore.cluster import LEADER, ClusterMember, NodeTaken, node_lease
from tierstore.config import config_from_toml
from tierstore.policies import Move, Plan

DAY = 86400.0
TTL = 3.0


def _toml(home: Path, shared: Path, catalog: str, site: str) -> str:
    return (f'home = "{home}"\ncatalog = "{catalog}"\nsite = "{site}"\n'
            'default_tier = "warm"\n\n'
            f'[tiers.hot-{site}]\nclass = "hot"\nurl = "{(home / "hot").as_uri()}"\n\n'
            f'[tiers.warm]\nclass = "warm"\nurl = "{(shared / "warm").as_uri()}"\n\n'
            f'[tiers.cold]\nclass = "cold"\nurl = "{(shared / "cold").as_uri()}"\n')


def _node(tmp_path: Path, catalog: str, site: str) -> Path:
    home = tmp_path / site
    home.mkdir(parents=True, exist_ok=True)
    path = home / "tierstore.toml"
    path.write_text(_toml(home, tmp_path / "shared", catalog, site))
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_one_leader_and_one_daemon_per_node(catalog_url: str, tmp_path: Path) -> None:
    catalog = open_catalog(catalog_url)
    configs = {site: config_from_toml(_node(tmp_path, catalog_url, site).read_text(),
                                      source=site) for site in ("a", "b")}
    a = ClusterMember(catalog, configs["a"], ttl=30.0, holder="host:1:a")
    b = ClusterMember(catalog, configs["b"], ttl=30.0, holder="host:2:b")
    a.join()
    b.join()
    assert a.is_leader and not b.is_leader and a.node.held and b.node.held
    plan = Plan((Move("x", "warm", "cold", 1, "recency", "old"),
                 Move("y", "hot-b", "warm", 1, "watermarks", "full"),
                 Move("z", None, "hot-b", 1, "recency", "read")), 0.0)
    mine, left = b.mine(plan)
    assert [m.key for m in mine] == ["y", "z"] and left == 1  # warm -> cold: the leader's
    assert [m.key for m in a.mine(plan)[0]] == ["x", "y", "z"]
    # a second daemon for site a is refused while the first one renews its lease
    with pytest.raises(NodeTaken, match="another daemon holds site 'a': host:1:a"):
        ClusterMember(catalog, configs["a"], ttl=30.0, holder="host:3:c").join(wait=0.0)
    b.refresh()
    assert not b.is_leader
    a.leave()  # a clean stop hands leadership over at the next renewal
    b.refresh()
    assert b.is_leader and b.leader.fence == 2
    held = {lease.name: lease.holder for lease in catalog.leases()
            if lease.expires > catalog.clock()}
    assert held == {LEADER: "host:2:b", node_lease("b"): "host:2:b"}
    catalog.close()


def test_a_lease_is_counted_lost_locally_at_its_ttl(catalog_url: str, tmp_path: Path) -> None:
    """Even when the catalog would still say so, a holder that could not renew in time stops
    counting itself as leader (its own clock, from when it sent the request)."""
    catalog = open_catalog(catalog_url)
    config = config_from_toml(_node(tmp_path, catalog_url, "a").read_text(), source="a")
    now = [0.0]
    member = ClusterMember(catalog, config, ttl=30.0, holder="h")
    for keeper in (member.node, member.leader):
        keeper._clock = lambda: now[0]
    member.join()
    assert member.is_leader
    now[0] = 31.0  # 31 s later by the holder's clock, no renewal in between
    assert not member.is_leader and member.mine(Plan((Move("y", "hot-a", "warm", 1, "p", "r"),),
                                                      0.0))[0].moves == ()
    member.refresh()  # renewing again makes it leader again (the same term: nobody took it)
    assert member.is_leader and member.leader.fence == 1
    catalog.close()


# -- two daemon processes on one PostgreSQL catalog -------------------------------------------


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TIERSTORE_")}


class Node:
    """A daemon process for one site, its JSON log lines in a file."""

    def __init__(self, toml: Path, *options: str):
        self.err = toml.with_name("daemon.err")
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tierstore.cli", "--config", str(toml), "daemon",
                 "--tick", "0.5", "--lease-ttl", str(TTL), "--metrics-host", "127.0.0.1",
                 "--metrics-port", "0", "--log-format", "json", *options], env=_env(),
                stdout=subprocess.DEVNULL, stderr=err)

    def leader_gauge(self) -> float | None:
        """``tierstore_daemon_leader`` as its metrics endpoint serves it now."""
        urls = [e["metrics"] for e in self.events() if e.get("message") == "daemon started"]
        if not urls:
            return None
        with urllib.request.urlopen(urls[0], timeout=5) as reply:
            text = reply.read().decode()
        return next((s.value for family in text_string_to_metric_families(text)
                     for s in family.samples if s.name == "tierstore_daemon_leader"), None)

    def events(self) -> list[dict]:
        out = []
        for line in self.err.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not a JSON log line: {line}") from None
        return out

    def moved(self) -> set[str]:
        return {e["key"] for e in self.events() if e.get("outcome") == "done"}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait(what: str, check: object, timeout: float, nodes: list[Node]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    logs = "\n".join(n.err.read_text() for n in nodes)
    raise AssertionError(f"{what}: not within {timeout}s\n{logs}")


def _lease(catalog: Catalog, name: str) -> Lease | None:
    found = [lease for lease in catalog.leases()
             if lease.name == name and lease.expires > catalog.clock()]
    return found[0] if found else None


def _held_by(catalog: Catalog, name: str, node: Node) -> bool:
    lease = _lease(catalog, name)
    return lease is not None and f":{node.proc.pid}:" in lease.holder


def _old_object(config_path: Path, key: str) -> None:
    """An object on warm, last read 100 days ago: recency wants it on cold."""
    config = config_from_toml(config_path.read_text(), source=str(config_path))
    with open_store(config) as store:
        store.put(key, b"x" * 1000, tier="warm")
        store.aio.catalog.record_access({key: (1, time.time() - 100 * DAY)})


def _tiers(catalog: Catalog, key: str) -> list[str]:
    record = catalog.get(key)
    return [] if record is None else sorted(r.tier for r in record.ready)


def test_the_leader_killed_another_daemon_takes_over(pg_url: str, tmp_path: Path) -> None:
    catalog = open_catalog(pg_url)
    a_toml, b_toml = _node(tmp_path, pg_url, "a"), _node(tmp_path, pg_url, "b")
    nodes: list[Node] = []
    try:
        a = Node(a_toml)
        nodes.append(a)
        _wait("a leads", lambda: _held_by(catalog, LEADER, a), 60, nodes)
        b = Node(b_toml)
        nodes.append(b)
        _wait("b holds its node", lambda: _held_by(catalog, node_lease("b"), b), 60, nodes)
        first = _lease(catalog, LEADER)
        assert first is not None

        _old_object(a_toml, "ds/one")  # cluster-wide work: the leader (a) demotes it
        _wait("ds/one demoted", lambda: _tiers(catalog, "ds/one") == ["cold"], 60, nodes)
        # the daemon logs a move once it is done, a moment after the catalog shows it
        _wait("a logged moving ds/one", lambda: "ds/one" in a.moved(), 30, nodes)
        assert "ds/one" not in b.moved()
        assert _held_by(catalog, LEADER, a)  # b never took over while a renewed
        _wait("each daemon's gauge says who leads",
              lambda: (a.leader_gauge(), b.leader_gauge()) == (1.0, 0.0), 30, nodes)

        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        # b takes over once a's lease expires: within TTL plus one renewal interval; the
        # bound below only keeps a broken build from hanging
        _wait("b leads", lambda: _held_by(catalog, LEADER, b), 10 * TTL, nodes)
        second = _lease(catalog, LEADER)
        assert second is not None and second.fence > first.fence
        assert any(e.get("message") == "became leader" for e in b.events())
        _wait("b's gauge says it leads", lambda: b.leader_gauge() == 1.0, 30, nodes)

        _old_object(b_toml, "ds/two")  # and it does the cluster-wide work now
        _wait("ds/two demoted", lambda: _tiers(catalog, "ds/two") == ["cold"], 60, nodes)
        _wait("b logged moving ds/two", lambda: "ds/two" in b.moved(), 30, nodes)
        record = catalog.get("ds/two")
        assert record is not None and len(record.replicas) == 1  # moved once, nothing pending
        assert catalog.pending() == []
    finally:
        for node in nodes:
            node.stop()
        catalog.close()


def test_a_leader_frozen_past_its_lease_changes_nothing_when_it_resumes(
        pg_url: str, tmp_path: Path) -> None:
    """Review defect 5: a leader stalled mid-move (SIGSTOP) past its lease, while another
    daemon took over, recovered its copy and made the move itself; resumed (SIGCONT), the
    stalled one's writes carry its old fence and are refused: it commits nothing, removes
    nothing but its own temporary bytes, and the object ends with one verified replica."""
    catalog = open_catalog(pg_url)
    a_toml, b_toml = _node(tmp_path, pg_url, "a"), _node(tmp_path, pg_url, "b")
    config = config_from_toml(a_toml.read_text(), source="a")
    with open_store(config) as store:  # 2 MB to copy at 400 kB/s: a's move takes ~5 s
        store.put("ds/big", os.urandom(2_000_000), tier="warm")
        store.aio.catalog.record_access({"ds/big": (1, time.time() - 100 * DAY)})
    nodes: list[Node] = []
    try:
        a = Node(a_toml, "--bandwidth", "400kB")
        nodes.append(a)
        _wait("a copies ds/big", lambda: any(
            r.owner == f"{socket.gethostname()}:{a.proc.pid}" for _, r in catalog.pending()),
            60, nodes)
        a.proc.send_signal(signal.SIGSTOP)
        first = _lease(catalog, LEADER)
        b = Node(b_toml)
        nodes.append(b)
        # b leads once a's leases expire, rolls back a's copy and makes the move itself
        _wait("b leads", lambda: _held_by(catalog, LEADER, b), 10 * TTL, nodes)
        _wait("b moved ds/big", lambda: "ds/big" in b.moved(), 60, nodes)
        second = _lease(catalog, LEADER)
        assert second is not None and (first is None or second.fence > first.fence)
        a.proc.send_signal(signal.SIGCONT)
        _wait("a's stalled move ended", lambda: any(
            e.get("key") == "ds/big" and e.get("outcome") in ("failed", "skipped")
            for e in a.events()), 60, nodes)
        failed = [e for e in a.events() if e.get("key") == "ds/big" and "outcome" in e]
        assert [e["outcome"] for e in failed] != ["done"] and "ds/big" not in a.moved()
    finally:
        for node in nodes:
            node.proc.send_signal(signal.SIGCONT)
            node.stop()
    assert _tiers(catalog, "ds/big") == ["cold"] and catalog.pending() == []
    with open_store(config) as store:
        report = store.audit(deep=True)
    assert (report.orphans, report.missing) == ((), ())
    catalog.close()


def test_the_leader_recovers_the_work_of_a_crashed_daemon(catalog_url: str,
                                                           tmp_path: Path) -> None:
    """A daemon of site b died mid-move (its lease expired): the leader rolls back its copy
    and finishes its removal; the work of live processes, with or without a lease, stays."""
    config = config_from_toml(_node(tmp_path, catalog_url, "a").read_text(), source="a")
    dead, alive, cli = "far-host:4242", "far-host:4343", "far-host:777"
    with open_store(config) as sync:
        for key in ("ds/copying", "ds/deleting", "ds/cli", "ds/alive"):
            sync.put(key, b"x" * 100, tier="warm")
        sync.add_replica("ds/deleting", "cold")
    catalog = open_catalog(catalog_url)
    gone = catalog.acquire_lease(node_lease("b"), f"{dead}:t0", 0.2)
    assert gone is not None
    assert catalog.acquire_lease(node_lease("c"), f"{alive}:t1", 60.0) is not None
    copying = catalog.begin_replica("ds/copying", "cold", tmp=".tierstore/partial/c1",
                                    new_content=False, owner=dead)
    tmp = tmp_path / "shared" / "cold" / ".tierstore" / "partial" / "c1"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(b"x" * 50)  # half-written bytes of the dead daemon
    record = catalog.get("ds/deleting")
    on_warm = record.on("warm") if record is not None else None
    assert on_warm is not None
    catalog.mark_deleting(on_warm.id, owner=dead)
    # a put from a command line (no lease), and the move of a node that renews its lease
    catalog.begin_replica("ds/cli", "cold", tmp=".tierstore/partial/c2", new_content=False,
                          owner=cli)
    catalog.begin_replica("ds/alive", "cold", tmp=".tierstore/partial/c3", new_content=False,
                          owner=alive)
    while catalog.clock() <= gone.expires:
        time.sleep(0.05)
    other = config_from_toml(_node(tmp_path, catalog_url, "d").read_text(), source="d")

    async def recover() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        store = Store(config)
        try:
            leader = ClusterMember(store.catalog, config, ttl=30.0, holder="here:1:l")
            follower = ClusterMember(store.catalog, other, ttl=30.0, holder="here:2:f")
            await asyncio.to_thread(leader.join)
            await asyncio.to_thread(follower.join)
            assert leader.is_leader and not follower.is_leader
            not_leading = await follower.recover_crashed(store)  # not the leader: nothing
            return not_leading, await leader.recover_crashed(store)
        finally:
            await store.close()

    not_leading, handled = asyncio.run(recover())
    assert not_leading == []
    assert sorted(handled) == [("ds/copying", "cold"), ("ds/deleting", "warm")]
    assert not tmp.exists()
    assert copying.id not in {r.id for r in catalog.get("ds/copying").replicas}  # type: ignore[union-attr]
    assert _tiers(catalog, "ds/copying") == ["warm"] and _tiers(catalog, "ds/deleting") == ["cold"]
    assert sorted(r.owner for _, r in catalog.pending()) == [alive, cli]
    catalog.close()
