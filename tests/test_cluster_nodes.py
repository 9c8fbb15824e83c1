"""Nodes as sites: several nodes on one PostgreSQL catalog, each with its own hot tier and
site, sharing the warm and cold tiers.

First what a node reads and what its daemon owns, in one process; then nodes as separate
process groups (their own configs, hot folders, sites; one daemon each, readers and loader
ranks in processes of their own): three nodes on one PostgreSQL and one Ceph RGW; the leader
killed with SIGKILL in the middle of bandwidth-capped warm -> cold moves; PostgreSQL stopped
and started again under load. Network namespaces are not used: each node's isolation is its
processes, config and folders. The bounds waited for are liveness limits, not speeds.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pgserver import (
    _run_as,
    find_bin_dir,
)
from s3servers import S3Server, free_port

from tierstore import Store, open_store
from tierstore.catalog import Catalog, Lease, ReplicaState, open_catalog
from tierstore.cluster import LEADER, ClusterMember, node_lease
from tierstore.config import Config, config_from_toml
from tierstore.daemon import Daemon, DaemonOptions
from tierstore.errors import NoReadableReplica
from tierstore.loader import write_tar_shards
from tierstore.policies import Move, Plan

DAY = 86400.0
TTL = 3.0
NODE = Path(__file__).resolve().parent / "cluster_node.py"


# -- configs ------------------------------------------------------------------------------------


def _local(name: str, cls: str, folder: Path, site: str | None = None) -> str:
    where = f'site = "{site}"\n' if site else ""
    return f'[tiers.{name}]\nclass = "{cls}"\nurl = "{folder.as_uri()}"\n{where}\n'


def _s3(name: str, cls: str, server: S3Server, bucket: str) -> str:
    return (f'[tiers.{name}]\nclass = "{cls}"\nurl = "s3://{bucket}/{name}"\ntimeout = 20.0\n'
            f'[tiers.{name}.options]\nkey = "{server.access_key}"\n'
            f'secret = "{server.secret_key}"\n'
            f'client_kwargs = {{ endpoint_url = "{server.endpoint_url}" }}\n\n')


def node_config(root: Path, site: str, catalog: str, shared: str = "",
                reachable: tuple[str, ...] = (), policies: str = "") -> Path:
    """Node ``site``'s config: its own hot tier ``hot-<site>`` in its own folder, the shared
    tiers (local folders under ``root/shared`` unless given), and other nodes' hot tiers it
    lists as reachable (in their sites)."""
    home = root / site
    home.mkdir(parents=True, exist_ok=True)
    text = (f'home = "{home}"\ncatalog = "{catalog}"\nsite = "{site}"\n'
            'default_tier = "warm"\n\n' + _local(f"hot-{site}", "hot", home / "hot"))
    text += shared or (_local("warm", "warm", root / "shared" / "warm")
                       + _local("cold", "cold", root / "shared" / "cold"))
    for other in reachable:
        text += _local(f"hot-{other}", "hot", root / other / "hot", site=other)
    text += f"[policies]\n{policies}\n" if policies else ""
    path = home / "tierstore.toml"
    path.write_text(text)
    return path


def load(path: Path) -> Config:
    return config_from_toml(path.read_text(), source=str(path))


def tiers_of(catalog: Catalog, key: str, state: ReplicaState = ReplicaState.READY) -> set[str]:
    record = catalog.get(key)
    return set() if record is None else {r.tier for r in record.replicas if r.state is state}


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return str(request.getfixturevalue("pg_url"))


# -- what a node reads, what its daemon owns (one process) ------------------------------------


def test_reads_are_counted_per_site_too(catalog_url: str, tmp_path: Path) -> None:
    """Access statistics of every site together (for cluster-wide work) and of each site (for
    its node's hot tier), merged in the same batch."""
    with open_store(load(node_config(tmp_path, "a", catalog_url))) as store:
        store.put("k1", b"1")
        store.put("k2", b"2")
    catalog = open_catalog(catalog_url)
    catalog.record_access({"k1": (2, 100.0)}, site="a")
    catalog.record_access({"k1": (1, 200.0), "k2": (1, 150.0)}, site="b")
    catalog.record_access({"k2": (1, 50.0), "gone": (1, 1.0)})
    every = catalog.access(["k1", "k2"])
    assert (every["k1"].count, every["k1"].last_access) == (3, 200.0)
    assert (every["k2"].count, every["k2"].last_access) == (2, 150.0)
    assert {k: (s.count, s.last_access) for k, s in catalog.access(["k1", "k2"],
                                                                   site="a").items()} \
        == {"k1": (2, 100.0)}
    assert {k: (s.count, s.last_access) for k, s in catalog.access(["k1", "k2"],
                                                                   site="b").items()} \
        == {"k1": (1, 200.0), "k2": (1, 150.0)}
    assert catalog.access(["k1"], site="c") == {}
    catalog.close()


def test_a_node_reads_its_own_hot_replica_or_the_shared_tiers_never_another_nodes_disk(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    a, b = load(node_config(tmp_path, "a", url)), load(node_config(tmp_path, "b", url))
    with open_store(a) as on_a:
        on_a.put("both", b"x" * 100)
        on_a.add_replica("both", "hot-a")
        on_a.put("only-a", b"y" * 100, tier="hot-a")
        assert on_a.aio.rank(on_a.aio.catalog.get("both"))[0].tier == "hot-a"
        assert on_a.cat("only-a") == b"y" * 100
    with open_store(b) as on_b:
        record = on_b.aio.catalog.get("both")
        assert [r.tier for r in on_b.aio.rank(record)] == ["warm"]  # hot-a is not a candidate
        assert on_b.cat("both") == b"x" * 100
        assert dict(on_b.aio.reads_by_tier) == {"warm": 1} and on_b.aio.fallbacks == 0
        with pytest.raises(NoReadableReplica, match=r"'only-a'.*hot-a.*not reachable from "
                                                    r"site 'b'"):
            on_b.cat("only-a")
        with pytest.raises(NoReadableReplica, match="not reachable"):
            on_b.get("only-a", tmp_path / "copy")
        assert on_b.aio.fallbacks == 0  # nothing was tried
    # node c lists node a's disk as reachable (say, exported to it): it reads it, and its
    # daemon still owns only its own hot tier
    c = load(node_config(tmp_path, "c", url, reachable=("a",)))
    with open_store(c) as on_c:
        assert on_c.cat("only-a") == b"y" * 100
        assert dict(on_c.aio.reads_by_tier) == {"hot-a": 1}
        member = ClusterMember(on_c.aio.catalog, c, ttl=30.0, holder="h:1:c")
        assert member.hot == {"hot-c"} and member.foreign == {"hot-a"}
        member.join()
        plan = Plan((Move("x", None, "hot-a", 1, "recency", "read"),
                     Move("y", "hot-a", "warm", 1, "watermarks", "full"),
                     Move("z", None, "hot-c", 1, "recency", "read")), 0.0)
        assert [m.key for m in member.mine(plan)[0]] == ["z"]
        # its daemon's plan never names node a's disk, though it is in the config
        planned, _ = asyncio.run(_plan(c, member))
        assert all("hot-a" not in (m.src, m.dst) for m in planned)
        member.leave()


async def _plan(config: Config, member: ClusterMember) -> tuple[Plan, int]:
    store = Store(config)
    try:
        daemon = Daemon(store, DaemonOptions(metrics_port=None, dry_run=True), cluster=member)
        _, plan, left = await asyncio.to_thread(member.plan, store, daemon.engine)
        return plan, left
    finally:
        await store.close()


def test_each_nodes_daemon_promotes_and_stages_for_its_own_site(pg_url: str,
                                                                 tmp_path: Path) -> None:
    """What node a reads is promoted to hot-a, what a's loaders announce is staged on hot-a;
    the same for b; neither daemon touches the other's tier, and only the leader demotes."""
    configs = {s: load(node_config(tmp_path, s, pg_url)) for s in ("a", "b")}
    keys = ["read-a", "read-b", "next-a", "next-b", "old"]
    with open_store(configs["a"]) as store:
        for key in keys:
            store.put(key, key.encode() * 10)
        store.aio.catalog.record_access({"old": (1, time.time() - 100 * DAY)})

    async def node(site: str, work: Callable[[Store], Any]) -> None:
        store = Store(configs[site])
        try:
            await work(store)
        finally:
            await store.close()

    async def reads_and_announcements() -> None:
        async def on_a(store: Store) -> None:
            await store.cat("read-a")
            await store.announce("loader-a", {"next-a": time.time() + 60})

        async def on_b(store: Store) -> None:
            await store.cat("read-b")
            await store.announce("loader-b", {"next-b": time.time() + 60})

        await node("a", on_a)
        await node("b", on_b)

    asyncio.run(reads_and_announcements())

    async def cycles() -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        stores = {s: Store(c) for s, c in configs.items()}
        try:
            members = {s: ClusterMember(stores[s].catalog, configs[s], ttl=30.0,
                                        holder=f"h:{i}:{s}") for i, s in enumerate("ab")}
            for member in members.values():
                await asyncio.to_thread(member.join)
            assert members["a"].is_leader and not members["b"].is_leader
            for s in ("b", "a"):
                daemon = Daemon(stores[s], DaemonOptions(metrics_port=None),
                                cluster=members[s])
                assert await daemon.cycle()
                out[s] = dict(daemon.outcomes)
            for member in members.values():
                await asyncio.to_thread(member.leave)
        finally:
            for store in stores.values():
                await store.close()
        return out

    outcomes = asyncio.run(cycles())
    catalog = open_catalog(pg_url)
    assert {k: tiers_of(catalog, k) for k in keys} == {
        "read-a": {"warm", "hot-a"}, "next-a": {"warm", "hot-a"},
        "read-b": {"warm", "hot-b"}, "next-b": {"warm", "hot-b"},
        "old": {"cold"}}  # demoted by the leader (a) alone
    assert outcomes["b"].get("done") == 2 and outcomes["a"].get("done") == 3
    catalog.close()


# -- nodes as process groups --------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TIERSTORE_")}


class NodeDaemon:
    """A node's daemon: its own process group, JSON log lines in a file."""

    def __init__(self, toml: Path, *extra: str, name: str = "daemon"):
        self.err = toml.with_name(f"{name}.err")
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tierstore.cli", "--config", str(toml), "daemon",
                 "--tick", "0.5", "--lease-ttl", str(TTL), "--no-metrics", "--log-format",
                 "json", *extra], env=_env(), stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.err.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"message": line})
        return out

    def moved(self) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("outcome") == "done"]

    def kill(self) -> None:
        """SIGKILL, to the whole process group: the node is gone, whatever it was doing."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def run_on(toml: Path, *args: str, timeout: float = 120) -> subprocess.Popen[bytes]:
    """A process of node ``toml`` (its own process group) running tests/cluster_node.py."""
    return subprocess.Popen([sys.executable, str(NODE), args[0], str(toml), *args[1:]],
                            env=_env(), start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen[bytes], timeout: float = 120) -> str:
    out, _ = proc.communicate(timeout=timeout)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-4000:]
    return text


def wait_for(what: str, check: Callable[[], bool], timeout: float,
             nodes: list[NodeDaemon]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    logs = "\n".join(f"--- {n.err}\n" + "\n".join(n.err.read_text().splitlines()[-40:])
                     for n in nodes)
    raise AssertionError(f"{what}: not within {timeout}s\n{logs}")


def valid_lease(catalog: Catalog, name: str) -> Lease | None:
    now = catalog.clock()
    return next((lease for lease in catalog.leases()
                 if lease.name == name and lease.expires > now), None)


def held_by(catalog: Catalog, name: str, node: NodeDaemon) -> bool:
    lease = valid_lease(catalog, name)
    return lease is not None and f":{node.proc.pid}:" in lease.holder


@pytest.fixture
def nodes() -> Iterator[list[NodeDaemon]]:
    started: list[NodeDaemon] = []
    yield started
    for node in started:
        node.stop()


N, PER_SHARD = 60, 5
SITES = ("a", "b", "c")


def test_three_nodes_on_one_postgresql_and_one_ceph(pg_url: str, ceph_server: S3Server,
                                                     tmp_path: Path,
                                                     nodes: list[NodeDaemon]) -> None:
    """Objects read on a node are promoted to that node's hot tier and nowhere else; the
    loader on three ranks, one per node, reads each sample exactly once, and each node's
    daemon stages what its own rank announced."""
    bucket = ceph_server.new_bucket()
    shared = _s3("warm", "warm", ceph_server, bucket) + _s3("cold", "cold", ceph_server, bucket)
    tomls = {s: node_config(tmp_path, s, pg_url, shared) for s in SITES}
    catalog = open_catalog(pg_url)
    try:
        with open_store(load(tomls["a"])) as store:
            write_tar_shards(store, "ds", ({"__key__": f"s{i:04d}", "cls": str(i).encode()}
                                           for i in range(N)), samples_per_shard=PER_SHARD)
            for i in range(6):
                store.put(f"obj/{i}", bytes([i]) * 4096)
        for site in SITES:
            nodes.append(NodeDaemon(tomls[site]))
        wait_for("every node holds its lease", lambda: all(
            held_by(catalog, node_lease(s), n) for s, n in zip(SITES, nodes, strict=True)),
            60, nodes)

        # reads on each node, in processes of that node
        reads = {"a": ["obj/0", "obj/1"], "b": ["obj/2", "obj/3"], "c": ["obj/4"]}
        for proc in [run_on(tomls[s], "read", *keys) for s, keys in reads.items()]:
            finish(proc)
        want = {f"obj/{i}": {"warm"} for i in range(6)}
        for site, keys in reads.items():
            want.update({k: {"warm", f"hot-{site}"} for k in keys})
        wait_for("each object promoted on the node that read it", lambda: {
            k: tiers_of(catalog, k) for k in want} == want, 60, nodes)

        # the loader: three ranks of one gloo group, one on each node
        port = free_port()
        ranks = [run_on(tomls[s], "rank", str(r), "3", str(port), str(tmp_path / f"r{r}.json"))
                 for r, s in enumerate(SITES)]
        for proc in ranks:
            finish(proc, timeout=180)
        got = [json.loads((tmp_path / f"r{r}.json").read_text())["got"] for r in range(3)]
        assert sorted(i for g in got for i in g) == list(range(N))  # each sample once
        assert all(got)

        # each rank announced its next reads (the next epoch's shards) as its node's site, so
        # that node's daemon stages them (test_each_nodes_daemon_promotes_and_stages_...)
        announced = {s: set(catalog.next_uses(0.0, site=s)) for s in SITES}
        shards = [r.key for r in catalog.objects("ds/") if r.key.endswith(".tar")]
        assert all(announced.values()) and set().union(*announced.values()) == set(shards)
        assert catalog.next_uses(0.0, site="elsewhere") == {}
        read_on = {s: set(catalog.access(shards + list(want), site=s)) for s in SITES}
        for key in shards + list(want):
            hot = {t for t in tiers_of(catalog, key) if t.startswith("hot-")}
            # on a node's hot tier only if that node read or announced it
            assert all(key in read_on[t[4:]] | announced[t[4:]] for t in hot), (key, hot)
        for node in nodes:
            assert node.proc.poll() is None
            failed = [e for e in node.events() if e.get("outcome") == "failed"]
            assert not failed, [(e.get("key"), e.get("error")) for e in failed]
        assert catalog.pending() == []
    finally:
        catalog.close()
        for node in nodes:
            node.stop()
        try:
            ceph_server.delete_bucket(bucket)
        except Exception as exc:  # never mask the test's own result
            print(f"warning: could not delete bucket {bucket}: {exc}")


class CopyWatch:
    """Polls the catalog in a thread: the most ``copying`` replicas one object ever had on one
    tier (never more than one: no object is moved twice at once)."""

    def __init__(self, url: str):
        self.catalog = open_catalog(url)
        self.most = 0
        self.seen: set[tuple[str, str, str]] = set()  # (key, tier, owner) of copies seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            counts: dict[tuple[str, str], int] = {}
            for key, replica in self.catalog.pending():
                if replica.state is ReplicaState.COPYING:
                    counts[(key, replica.tier)] = counts.get((key, replica.tier), 0) + 1
                    self.seen.add((key, replica.tier, replica.owner))
            self.most = max([self.most, *counts.values()])
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.catalog.close()


def test_the_leader_killed_mid_moves(pg_url: str, tmp_path: Path,
                                     nodes: list[NodeDaemon]) -> None:
    """SIGKILL the leader while it demotes big objects warm -> cold under a bandwidth cap:
    another daemon leads within the lease time, rolls back or finishes what the old one left,
    and moves the rest; nothing is lost and no object is ever copied twice at once."""
    tomls = {s: node_config(tmp_path, s, pg_url) for s in SITES}
    size, count = 2 * 2**20, 4
    catalog = open_catalog(pg_url)
    watch = CopyWatch(pg_url)
    keys = [f"big/{i}" for i in range(count)]
    try:
        cap = ("--bandwidth", "2MiB", "--max-moves", "2")
        nodes.append(NodeDaemon(tomls["a"], *cap))
        wait_for("a leads", lambda: held_by(catalog, LEADER, nodes[0]), 60, nodes)
        nodes += [NodeDaemon(tomls[s], *cap) for s in ("b", "c")]
        # every daemon past its start-up recovery: a's work is left to the leader's recovery
        wait_for("every daemon started", lambda: all(
            any(e.get("message") == "daemon started" for e in n.events()) for n in nodes),
            60, nodes)
        first = valid_lease(catalog, LEADER)
        assert first is not None
        a = nodes[0]
        with open_store(load(tomls["a"])) as store:  # cluster-wide work appears
            for i, key in enumerate(keys):
                store.put(key, bytes([i]) * size)
            store.aio.catalog.record_access({k: (1, time.time() - 100 * DAY) for k in keys})
        wait_for("a copies to cold", lambda: any(
            owner.endswith(f":{a.proc.pid}") for _, tier, owner in watch.seen), 60, nodes)
        time.sleep(0.3)  # bytes on their way
        in_flight = [(k, r.tier) for k, r in catalog.pending()]
        assert in_flight  # the kill lands mid-move (the cap makes each copy take a second)
        a.kill()
        killed = time.monotonic()
        wait_for("another daemon leads", lambda: any(held_by(catalog, LEADER, n)
                                                     for n in nodes[1:]), 10 * TTL, nodes)
        took_over = time.monotonic() - killed
        second = valid_lease(catalog, LEADER)
        assert second is not None and second.fence > first.fence
        leader = next(n for n in nodes[1:] if held_by(catalog, LEADER, n))
        wait_for("every object demoted, nothing pending", lambda: all(
            tiers_of(catalog, k) == {"cold"} for k in keys) and not catalog.pending(),
            120, nodes)
        assert watch.most == 1  # never two copies of one object to one tier
        # the new leader finished or rolled back a's work, then moved what was left
        assert any(e.get("message") == "recovered the work of crashed daemons"
                   for e in leader.events()), took_over
        moved = {e["key"] for e in leader.moved()} | {e["key"] for e in a.moved()}
        assert moved == set(keys)
        assert not any(e.get("key") for n in nodes[1:] if n is not leader
                       for e in n.moved())  # the follower made no cluster-wide move
        with open_store(load(tomls["b"])) as store:
            report = store.audit(deep=True)
            assert report.ok, report
            for i, key in enumerate(keys):
                assert store.cat(key) == bytes([i]) * size
    finally:
        watch.close()
        catalog.close()



def pg_ctl(server: Any, *args: str) -> None:
    prefix, _ = _run_as()
    done = subprocess.run([*prefix, str(find_bin_dir() / "pg_ctl"), "-D",
                           str(server.socket_dir / "data"), *args], capture_output=True,
                          text=True, timeout=60, cwd=server.socket_dir, check=False)
    assert done.returncode == 0, done.stderr + done.stdout


def test_postgresql_restarted_under_load(own_pg: Any, tmp_path: Path,
                                         nodes: list[NodeDaemon]) -> None:
    """The catalog's server stopped (immediate: connections cut) and started again while two
    nodes' daemons run and a reader on each node reads: reads of objects whose replicas the
    readers know go on while it is down, the reads made meanwhile are counted once it is
    back, and the daemons reconnect and carry on (leases, promotions, the leader's moves)."""
    own_pg.admin("CREATE DATABASE catalog")
    url = own_pg.url("catalog")
    tomls = {s: node_config(tmp_path, s, url) for s in ("a", "b")}
    keys = [f"k/{i}" for i in range(6)]
    catalog = open_catalog(url)
    readers: list[subprocess.Popen[bytes]] = []
    stop = tmp_path / "stop"
    try:
        with open_store(load(tomls["a"])) as store:
            for i, key in enumerate(keys):
                store.put(key, bytes([i]) * 1000)
        nodes += [NodeDaemon(tomls[s]) for s in ("a", "b")]
        wait_for("both nodes hold their leases", lambda: all(
            held_by(catalog, node_lease(s), n) for s, n in zip("ab", nodes, strict=True)),
            60, nodes)
        out = {s: tmp_path / f"load-{s}.json" for s in ("a", "b")}
        split = {"a": keys[:3], "b": keys[3:]}
        readers = [run_on(tomls[s], "load", str(out[s]), str(stop), *split[s]) for s in "ab"]

        def progress(site: str) -> dict[str, Any]:
            try:
                return dict(json.loads(out[site].read_text()))
            except (OSError, ValueError):
                return {"ok": 0}

        wait_for("both readers read", lambda: all(progress(s)["ok"] > 20 for s in "ab"), 60,
                 nodes)
        before = {s: progress(s)["ok"] for s in "ab"}
        pg_ctl(own_pg, "-m", "immediate", "-w", "stop")
        time.sleep(2 * TTL)  # down: reads go on, the leases lapse
        during = {s: progress(s)["ok"] for s in "ab"}
        pg_ctl(own_pg, "-w", "-t", "60", "-l", str(own_pg.socket_dir / "server.log"),
               "restart")  # started again, with the options it had
        assert all(during[s] > before[s] for s in "ab"), (before, during)
        # the daemons take their leases again (the leader's in a new term)
        wait_for("leases taken again", lambda: all(
            held_by(catalog, node_lease(s), n) for s, n in zip("ab", nodes, strict=True))
            and valid_lease(catalog, LEADER) is not None, 60, nodes)
        # and carry on: each promotes what its node reads, the leader demotes what is old
        wait_for("reads promoted on each node", lambda: all(
            f"hot-{s}" in tiers_of(catalog, k) for s in "ab" for k in split[s]), 60, nodes)
        with open_store(load(tomls["b"])) as store:
            store.put("old", b"o" * 100)
            store.aio.catalog.record_access({"old": (1, time.time() - 100 * DAY)})
        wait_for("the leader demotes", lambda: tiers_of(catalog, "old") == {"cold"}, 60, nodes)
        stop.touch()
        logs = [finish(proc, timeout=60) for proc in readers]
        # the batches that failed while the catalog was down were kept and written later
        assert all("access statistics not recorded yet" in log for log in logs)
        results = {s: json.loads(out[s].read_text()) for s in "ab"}
        assert all(r["failed"] == 0 for r in results.values()), results
        assert all(r["remembered"] > 0 for r in results.values()), results
        assert all(r["unflushed"] == 0 for r in results.values()), results
        # every read was counted, those made while the catalog was down too
        stats = catalog.access(keys)
        assert sum(stats[k].count for k in keys) == sum(r["ok"] for r in results.values())
        for site in "ab":
            per_site = catalog.access(keys, site=site)
            assert sum(s.count for s in per_site.values()) == results[site]["ok"]
        for node in nodes:
            assert node.proc.poll() is None
    finally:
        stop.touch()
        for proc in readers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        catalog.close()
