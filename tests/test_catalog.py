"""Catalog conformance: every catalog backend passes these (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pgfixtures import new_database_name
from pgserver import PgServer
from s3servers import free_port
from storefixtures import make_config

from tierstore import open_store
from tierstore.catalog import (
    Catalog,
    Fence,
    PostgresCatalog,
    PreloadRecord,
    ReplicaState,
    SqliteCatalog,
    open_catalog,
)
from tierstore.errors import (
    CatalogError,
    CopyInFlight,
    LeaseLost,
    ObjectNotFound,
    ReplicaError,
    ReplicaReady,
)
from tierstore.keys import MARK_DIR
from tierstore.tier import PARTIAL_DIR as PARTIAL

OWNER = "test-host:1"



def committed(catalog: Catalog, key: str, tier: str = "hot", data: bytes = b"abc") -> int:
    replica = catalog.begin_replica(key, tier, tmp=f".tierstore/partial/{key}",
                                    new_content=True, owner=OWNER)
    catalog.commit_replica(replica.id, owner=OWNER, size=len(data),
                           checksum=f"sum-{data!r}", new_content=True)
    return replica.id


def test_put_is_invisible_until_committed(catalog: Catalog) -> None:
    replica = catalog.begin_replica("k", "hot", tmp="t", new_content=True, owner=OWNER)
    record = catalog.get("k")
    assert record is not None and record.ready == () and record.size is None
    assert replica.path == "k" and replica.state is ReplicaState.COPYING
    catalog.commit_replica(replica.id, owner=OWNER, size=3, checksum="c", new_content=True)
    record = catalog.get("k")
    assert record is not None and [r.tier for r in record.ready] == ["hot"]


def test_overwrite_on_the_same_tier_uses_a_new_path(catalog: Catalog) -> None:
    committed(catalog, "k")
    second = catalog.begin_replica("k", "hot", tmp="tmp-2", new_content=True, owner="new:2")
    assert second.path == "tmp-2"  # the old bytes at "k" stay untouched until superseded
    superseded = catalog.commit_replica(second.id, owner="new:2", size=5, checksum="new",
                                        new_content=True)
    assert [(r.tier, r.path, r.state) for r in superseded] == [("hot", "k", "deleting")]
    # the committer owns the clean-up now, not whoever wrote the old bytes
    assert [r.owner for _, r in catalog.pending()] == ["new:2"]
    record = catalog.get("k")
    assert record is not None and record.checksum == "new"


def test_conflicting_copies_are_refused(catalog: Catalog) -> None:
    committed(catalog, "k")
    with pytest.raises(ReplicaError, match="ready"):
        catalog.begin_replica("k", "hot", tmp="x", new_content=False, owner=OWNER)
    catalog.begin_replica("k", "warm", tmp="y", new_content=False, owner=OWNER)
    with pytest.raises(ReplicaError, match="copying"):
        catalog.begin_replica("k", "warm", tmp="z", new_content=False, owner=OWNER)
    with pytest.raises(ReplicaError, match="no committed content"):
        catalog.begin_replica("fresh", "warm", tmp="w", new_content=False, owner=OWNER)


@pytest.mark.parametrize("race", ["overwrite", "rm"])
def test_a_copy_of_stale_content_is_refused(catalog: Catalog, race: str) -> None:
    committed(catalog, "k", data=b"old")
    copy = catalog.begin_replica("k", "cold", tmp="c", new_content=False, owner=OWNER)
    if race == "overwrite":
        committed(catalog, "k", tier="warm", data=b"new")
    else:
        catalog.begin_delete("k", owner=OWNER)
    with pytest.raises(ReplicaError, match="overwritten or removed"):
        catalog.commit_replica(copy.id, owner=OWNER, size=3, checksum="sum-b'old'",
                               new_content=False)


def test_the_last_ready_replica_cannot_be_marked_deleting(catalog: Catalog) -> None:
    first = committed(catalog, "k")
    with pytest.raises(ReplicaError, match="last"):
        catalog.mark_deleting(first, owner=OWNER)
    second = catalog.begin_replica("k", "cold", tmp="c", new_content=False, owner=OWNER)
    catalog.commit_replica(second.id, owner=OWNER, size=3, checksum="sum-b'abc'",
                           new_content=False)
    marked = catalog.mark_deleting(first, owner=OWNER)
    assert marked.state is ReplicaState.DELETING
    assert [key for key, _ in catalog.pending()] == ["k"]
    assert catalog.forget_replica(marked)
    assert catalog.pending() == []


def test_a_batch_of_puts_begins_and_commits_in_one_transaction_each(catalog: Catalog) -> None:
    """``begin_replicas``/``commit_replicas``: each batch all or nothing; a commit's
    superseded replicas come back per commit, in order."""
    committed(catalog, "b/old")
    catalog.begin_replica("b/busy", "hot", tmp="busy", new_content=True, owner="other:9")
    with pytest.raises(CopyInFlight):  # the third conflicts: none of the three is begun
        catalog.begin_replicas([("b/1", "t1"), ("b/2", "t2"), ("b/busy", "t3")], "hot",
                               new_content=True, owner=OWNER)
    assert catalog.get("b/1") is None and catalog.get("b/2") is None
    replicas = catalog.begin_replicas([("b/1", "t1"), ("b/old", "t-old"), ("b/2", "t2")],
                                      "hot", new_content=True, owner=OWNER)
    assert [r.path for r in replicas] == ["b/1", "t-old", "b/2"]  # the old holds its key
    assert all(r.state is ReplicaState.COPYING and r.owner == OWNER for r in replicas)
    commits = [(r.id, 10 + n, f"c{n}") for n, r in enumerate(replicas)]
    with pytest.raises(ReplicaError):  # not its owner's: none of the three is committed
        catalog.commit_replicas(commits, owner="other:9", new_content=True)
    assert all(not record.ready for record in catalog.records(["b/1", "b/2"]).values())
    retired = catalog.commit_replicas(commits, owner=OWNER, new_content=True)
    assert [[r.path for r in superseded] for superseded in retired] == [[], ["b/old"], []]
    records = catalog.records(["b/1", "b/2", "b/old", "nothing"])
    assert sorted(records) == ["b/1", "b/2", "b/old"]
    assert [(records[k].size, records[k].checksum) for k in ("b/1", "b/old", "b/2")] == [
        (10, "c0"), (11, "c1"), (12, "c2")]


def test_folders_of_committed_objects(catalog: Catalog) -> None:
    """``folders``: the keys that are a folder of objects with a ready replica (a copy
    still in flight makes none), found among more keys than one statement binds."""
    committed(catalog, "f/a/x")
    committed(catalog, "f/b")
    catalog.begin_replica("f/c/y", "hot", tmp="t", new_content=True, owner=OWNER)
    keys = [f"f/z{i:04d}" for i in range(1200)] + ["f/c", "f/a", "f", "f/b", "f/a/x", "f/a/"]
    assert sorted(catalog.folders(keys)) == ["f", "f/a"]
    assert len(catalog.records([f"f/z{i:04d}" for i in range(1200)] + ["f/b"])) == 1


def test_a_move_retires_its_source_in_the_copys_commit(catalog: Catalog) -> None:
    """A move's copy is committed and its source marked ``deleting`` in one transaction;
    a source on the tier the object is pinned to is kept (the caller sees it missing)."""
    first = committed(catalog, "k")
    copy = catalog.begin_replica("k", "cold", tmp="c", new_content=False, owner=OWNER)
    retired = catalog.commit_replica(copy.id, owner=OWNER, size=3, checksum="sum-b'abc'",
                                     new_content=False, retire=["hot", "warm"])
    assert [(r.id, r.tier, r.state, r.owner) for r in retired] == [
        (first, "hot", ReplicaState.DELETING, OWNER)]
    record = catalog.get("k")
    assert record is not None and [r.tier for r in record.ready] == ["cold"]
    assert [(key, r.id) for key, r in catalog.pending()] == [("k", first)]
    committed(catalog, "p")
    catalog.set_pin("p", "hot")
    pinned = catalog.begin_replica("p", "cold", tmp="c2", new_content=False, owner=OWNER)
    assert catalog.commit_replica(pinned.id, owner=OWNER, size=3, checksum="sum-b'abc'",
                                  new_content=False, retire=["hot"]) == []
    record = catalog.get("p")
    assert record is not None and sorted(r.tier for r in record.ready) == ["cold", "hot"]


def test_adopted_replicas_keep_their_version_and_take_a_change_in(catalog: Catalog) -> None:
    """add_objects records each adopted replica's version (records read carry it); readopt
    gives the object the file's new content and version and retires the object's other
    (stale) replicas."""
    catalog.add_objects([("ds/a", 3, "old"), ("ds/b", 1, "b"), ("other", 1, "o")], "warm",
                        owner=OWNER, versions={"ds/a": "v1", "other": "v9"})
    adopted = {r.key: r.ready[0] for r in catalog.objects("ds/") if r.ready[0].version}
    assert {key: replica.version for key, replica in adopted.items()} == {"ds/a": "v1"}
    rid = adopted["ds/a"].id
    copy = catalog.begin_replica("ds/a", "hot", tmp="h", new_content=False, owner=OWNER)
    catalog.commit_replica(copy.id, owner=OWNER, size=3, checksum="old", new_content=False)
    stale = catalog.readopt(rid, owner=OWNER, size=4, checksum="new", version="v2")
    assert [(r.id, r.tier, r.state) for r in stale] == [(copy.id, "hot", ReplicaState.DELETING)]
    record = catalog.get("ds/a")
    assert record is not None and (record.size, record.checksum) == (4, "new")
    assert [r.tier for r in record.ready] == ["warm"]
    assert [(r.id, r.version) for r in record.ready] == [(rid, "v2")]
    with pytest.raises(ReplicaError, match="adopted"):
        catalog.readopt(copy.id, owner=OWNER, size=1, checksum="x", version="v3")
    catalog.add_adoption("warm", "ds/", whole=False)
    catalog.add_adoption("warm", "ds/", whole=True)
    catalog.add_adoption("warm", "ds/", whole=False)  # only widens
    catalog.add_adoption("cold", "x", whole=False)
    assert catalog.adoptions() == [("cold", "x", False), ("warm", "ds/", True)]


def test_a_forget_touches_only_the_exact_replica_it_names(catalog: Catalog) -> None:
    """Review defect 1: a rollback forgot its replica by id alone, and SQLite reused the id of
    a row recovery had removed, so a failed writer deleted an unrelated object's replica."""
    mine = catalog.begin_replica("slow", "hot", tmp="t1", new_content=True, owner=OWNER)
    taken = catalog.take_over(mine, "recovery:2")  # recovery presumed its owner dead
    assert taken is not None and taken.owner == "recovery:2"
    assert catalog.forget_replica(taken)
    other = catalog.begin_replica("other", "hot", tmp="t2", new_content=True, owner="other:3")
    assert other.id > mine.id  # ids are never reused
    catalog.commit_replica(other.id, owner="other:3", size=1, checksum="c", new_content=True)
    assert not catalog.forget_replica(mine)  # the slow writer's late rollback: a no-op
    assert not catalog.forget_replica(dataclasses.replace(other, owner=OWNER))
    record = catalog.get("other")
    assert record is not None and [r.id for r in record.ready] == [other.id]


def test_a_second_copy_to_one_tier_is_a_copy_in_flight(catalog: Catalog) -> None:
    """A reader's read-through fill and a daemon's staging copy can meet: the second one is
    told it is redundant (CopyInFlight), not that something failed."""
    committed(catalog, "k")
    catalog.begin_replica("k", "cold", tmp="c1", new_content=False, owner=OWNER)
    with pytest.raises(CopyInFlight):
        catalog.begin_replica("k", "cold", tmp="c2", new_content=False, owner="other:2")
    with pytest.raises(ReplicaReady):  # already there: not a copy in flight
        catalog.begin_replica("k", "hot", tmp="h", new_content=False, owner=OWNER)


def test_a_taken_over_copy_cannot_commit(catalog: Catalog) -> None:
    mine = catalog.begin_replica("k", "hot", tmp="t", new_content=True, owner=OWNER)
    assert catalog.take_over(mine, "recovery:2") is not None
    with pytest.raises(ReplicaError, match="taken over"):
        catalog.commit_replica(mine.id, owner=OWNER, size=1, checksum="c", new_content=True)


def test_a_heartbeat_wins_over_a_take_over_that_read_the_row_before(catalog: Catalog) -> None:
    mine = catalog.begin_replica("k", "hot", tmp="t", new_content=True, owner=OWNER)
    (_, seen), = catalog.pending()
    time.sleep(0.01)  # the clock moves on, so the heartbeat changes `updated`
    assert catalog.heartbeat([mine.id], OWNER) == 1
    assert catalog.heartbeat([mine.id], "someone-else:9") == 0
    assert catalog.take_over(seen, "recovery:2") is None  # the owner showed it is alive
    (_, now), = catalog.pending()
    assert now.owner == OWNER and now.updated > seen.updated
    assert catalog.take_over(now, "recovery:2") is not None
    assert catalog.take_over(now, "recovery:3") is None  # only one recovery acts on it


def test_fenced_writes_commit_only_while_their_lease_holds(catalog: Catalog) -> None:
    """Review defect 5: no catalog write carried the fence, so a stalled leader kept moving
    after another took over. Each write of a move refuses a lost lease's fence."""
    first = committed(catalog, "k")
    lease = catalog.acquire_lease("leader", "a:1:x", 30.0)
    assert lease is not None
    fence = Fence("leader", lease.fence)
    copy = catalog.begin_replica("k", "cold", tmp="c", new_content=False, owner=OWNER,
                                 fence=fence)
    catalog.commit_replica(copy.id, owner=OWNER, size=3, checksum="sum-b'abc'",
                           new_content=False, fence=fence)
    assert catalog.release_lease("leader", "a:1:x", lease.fence)  # lost (expired, released)
    with pytest.raises(LeaseLost, match="'leader'"):
        catalog.mark_deleting(first, owner=OWNER, fence=fence)
    with pytest.raises(LeaseLost):
        catalog.begin_replica("k", "warm", tmp="w", new_content=False, owner=OWNER,
                              fence=fence)
    other = catalog.acquire_lease("leader", "b:2:y", 30.0)  # another holder, a new term
    assert other is not None and other.fence > lease.fence
    late = catalog.begin_replica("k", "warm", tmp="w", new_content=False, owner=OWNER,
                                 fence=Fence("leader", other.fence))
    with pytest.raises(LeaseLost):  # the old term's commit, even with the lease held again
        catalog.commit_replica(late.id, owner=OWNER, size=3, checksum="sum-b'abc'",
                               new_content=False, fence=fence)
    record = catalog.get("k")
    assert record is not None and sorted(r.tier for r in record.ready) == ["cold", "hot"]


def test_delete_marks_everything_then_forgets_the_object(catalog: Catalog) -> None:
    committed(catalog, "k")
    replicas = catalog.begin_delete("k", owner=OWNER)
    assert [r.state for r in replicas] == [ReplicaState.DELETING]
    for replica in replicas:
        assert catalog.forget_replica(replica)
    assert catalog.get("k") is None
    with pytest.raises(ObjectNotFound):
        catalog.begin_delete("k", owner=OWNER)


def test_listing_by_prefix_in_key_order(catalog: Catalog) -> None:
    for key in ("b/2", "a/1", "b/1", "ba", "c"):
        committed(catalog, key)
    assert [r.key for r in catalog.objects("b/")] == ["b/1", "b/2"]
    assert [r.key for r in catalog.objects("b")] == ["b/1", "b/2", "ba"]
    assert [r.key for r in catalog.objects(after="b/1", limit=2)] == ["b/2", "ba"]


def test_access_statistics_decay(catalog: Catalog) -> None:
    committed(catalog, "k")
    catalog.record_access({"k": (4, 1000.0), "unknown": (1, 1000.0)})
    catalog.record_access({"k": (1, 1000.0 + 86400.0)})  # one half-life later
    stats = catalog.access(["k", "unknown"])
    assert list(stats) == ["k"]
    assert (stats["k"].count, stats["k"].last_access) == (5, 87400.0)
    assert stats["k"].score == pytest.approx(4 * 0.5 + 1)
    assert stats["k"].score_at(87400.0 + 86400.0) == pytest.approx(1.5)


def test_usage_counts_ready_replicas(catalog: Catalog) -> None:
    committed(catalog, "a", data=b"12345")
    committed(catalog, "b", tier="cold", data=b"12")
    catalog.begin_replica("c", "hot", tmp="t", new_content=True, owner=OWNER)
    assert [(u.tier, u.objects, u.bytes) for u in catalog.usage()] == [("cold", 1, 2),
                                                                      ("hot", 1, 5)]


def test_usage_counts_copies_in_flight_but_not_marks(catalog: Catalog) -> None:
    """A copying replica takes room for its object's committed size, for every owner but its
    own; a fetch's mark (its temporary name under MARK_DIR) writes nothing and takes none."""
    committed(catalog, "a", tier="warm", data=b"12345")
    committed(catalog, "b", tier="warm", data=b"123")
    catalog.begin_replica("a", "hot", tmp=f"{MARK_DIR}/x-a", new_content=False, owner=OWNER)
    catalog.begin_replica("b", "hot", tmp=f"{PARTIAL}/x-b", new_content=False, owner=OWNER)
    hot = {u.tier: u for u in catalog.usage(exclude_owner="someone else")}["hot"]
    assert (hot.objects, hot.bytes, hot.in_flight) == (0, 0, 3)
    assert {u.tier: u for u in catalog.usage(exclude_owner=OWNER)}["hot"].in_flight == 0


def test_pins(catalog: Catalog) -> None:
    committed(catalog, "k")
    catalog.set_pin("k", "hot")
    assert catalog.get("k").pinned == "hot"  # type: ignore[union-attr]
    catalog.set_pin("k", None)
    assert catalog.get("k").pinned is None  # type: ignore[union-attr]


def test_announcements_replace_expire_and_merge(catalog: Catalog) -> None:
    now = time.time()
    catalog.announce("rank0", {"a": now + 5, "b": now + 1}, expires=now + 60, site="n1")
    catalog.announce("rank1", {"a": now + 2, "c": now + 9}, expires=now + 60, site="n2")
    assert catalog.next_uses(now) == pytest.approx({"a": now + 2, "b": now + 1, "c": now + 9})
    assert catalog.next_uses(now, site="n1") == pytest.approx({"a": now + 5, "b": now + 1})
    catalog.announce("rank0", {"d": now + 3}, expires=now + 60, site="n1")  # replaces rank0's
    assert set(catalog.next_uses(now)) == {"a", "c", "d"}
    assert catalog.next_uses(now + 61) == {}  # expired: no longer counts
    catalog.announce("rank1", {}, expires=now + 60)  # withdrawn
    assert set(catalog.next_uses(now)) == {"d"}


def test_scheduled_preloads(catalog: Catalog) -> None:
    late = PreloadRecord("datasets/b", "hot", 2000.0, None, 3600.0, 1.0)
    early = PreloadRecord("datasets/a", "hot", 1000.0, 600.0, 60.0, 1.0)
    catalog.add_preload(late)
    catalog.add_preload(early)
    assert catalog.preloads() == [early, late]
    moved = dataclasses.replace(late, deadline=500.0)
    catalog.add_preload(moved)  # same prefix and tier: replaced
    assert catalog.preloads() == [moved, early]
    catalog.add_preload(dataclasses.replace(early, tier="warm"))
    assert catalog.remove_preload("datasets/a", "hot") == 1
    assert catalog.remove_preload("datasets/a") == 1
    assert catalog.remove_preload("datasets/a") == 0
    assert catalog.preloads() == [moved]


def test_bulk_load_adds_ready_objects_and_skips_existing_keys(catalog: Catalog) -> None:
    committed(catalog, "ds/b", data=b"old")
    rows = [(f"ds/{name}", 10 + i, f"sum{i}") for i, name in enumerate("abc")]
    assert catalog.add_objects(rows, "warm", owner=OWNER) == 2  # ds/b exists: left alone
    assert catalog.add_objects([], "warm", owner=OWNER) == 0
    a = catalog.get("ds/a")
    assert a is not None and (a.size, a.checksum) == (10, "sum0")
    assert [(r.tier, r.path, r.state) for r in a.replicas] == [("warm", "ds/a",
                                                                ReplicaState.READY)]
    b = catalog.get("ds/b")
    assert b is not None and [r.tier for r in b.replicas] == ["hot"] and b.size == 3
    assert {u.tier: u.objects for u in catalog.usage()} == {"hot": 1, "warm": 2}
    catalog.record_access({"ds/c": (2, 5.0)})
    assert catalog.access(["ds/c"])["ds/c"].count == 2


# -- SQLite specifics ----------------------------------------------------------------------


def _hammer(path: str, worker: int, count: int) -> None:
    catalog = SqliteCatalog(path)
    for i in range(count):
        committed(catalog, f"w{worker}/k{i}")
        catalog.record_access({f"w{worker}/k{i}": (1, float(i))})
    catalog.close()


def test_many_processes_write_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "catalog.db")
    SqliteCatalog(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(path, w, 100)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    catalog = SqliteCatalog(path)
    assert len(catalog.objects()) == 400
    assert sum(s.count for s in catalog.access([r.key for r in catalog.objects()]).values()) \
        == 400


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    SqliteCatalog(tmp_path / "c.db").close()
    conn = sqlite3.connect(tmp_path / "c.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SqliteCatalog.schema_version
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(CatalogError, match="newer than this tierstore"):
        SqliteCatalog(tmp_path / "c.db")


def test_a_version_1_catalog_is_migrated_in_place(tmp_path: Path) -> None:
    from tierstore.catalog.sqlite import MIGRATIONS

    conn = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    conn.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    conn.execute("INSERT INTO objects (key, size, checksum, created) VALUES ('k', 1, 'x', 0)")
    conn.close()
    catalog = SqliteCatalog(tmp_path / "c.db")
    assert catalog.get("k") is not None
    catalog.announce("r", {"k": 5.0}, expires=time.time() + 60)
    assert catalog.next_uses(0.0) == {"k": 5.0}


def test_a_corrupt_catalog_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "c.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CatalogError, match=r"c\.db: file is not a database"):
        SqliteCatalog(tmp_path / "c.db")


def test_unsupported_catalog_url() -> None:
    with pytest.raises(CatalogError, match="unsupported catalog 'mysql'"):
        open_catalog("mysql://db/tierstore")


# -- PostgreSQL specifics ------------------------------------------------------------------


def _pg_hammer(url: str, worker: int, count: int) -> None:
    catalog = open_catalog(url)
    for i in range(count):
        committed(catalog, f"w{worker}/k{i}")
        # every worker also reads one shared key: the upserts must merge, not overwrite
        catalog.record_access({f"w{worker}/k{i}": (1, float(i)), "shared": (1, float(i))})
    catalog.close()


def test_postgres_many_processes_write_at_once(pg_url: str) -> None:
    catalog = open_catalog(pg_url)
    committed(catalog, "shared")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_pg_hammer, args=(pg_url, w, 100)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    keys = [r.key for r in catalog.objects()]
    assert len(keys) == 401
    stats = catalog.access(keys)
    assert sum(s.count for s in stats.values()) == 800
    assert stats["shared"].count == 400
    catalog.close()


def _mark_deleting_at_once(catalog: Catalog, replica_ids: list[int]) -> list[str]:
    """Each replica marked deleting by its own thread (its own session), all at once."""
    barrier, outcomes = threading.Barrier(len(replica_ids)), []

    def drop(replica_id: int) -> None:
        barrier.wait()
        try:
            catalog.mark_deleting(replica_id, owner=OWNER)
            outcomes.append("dropped")
        except ReplicaError:
            outcomes.append("refused")

    threads = [threading.Thread(target=drop, args=(rid,)) for rid in replica_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return sorted(outcomes)


def test_postgres_concurrent_writers_never_drop_the_last_replica(pg_url: str) -> None:
    """Two sessions each try to drop one of two ready replicas at once: exactly one may."""
    catalog = open_catalog(pg_url)  # one connection per thread: real concurrent sessions
    for round_ in range(15):
        key = f"k{round_}"
        first = committed(catalog, key)
        copy = catalog.begin_replica(key, "cold", tmp="c", new_content=False, owner=OWNER)
        catalog.commit_replica(copy.id, owner=OWNER, size=3, checksum="sum-b'abc'",
                               new_content=False)
        assert _mark_deleting_at_once(catalog, [first, copy.id]) == ["dropped", "refused"]
        assert len(catalog.get(key).ready) == 1  # type: ignore[union-attr]
    catalog.close()


def _use_in_child(catalog: Catalog, queue: multiprocessing.Queue) -> None:
    committed(catalog, "from-child")
    queue.put(len(catalog.objects()))
    catalog.close()


def test_postgres_catalog_survives_a_fork(pg_url: str) -> None:
    catalog = open_catalog(pg_url)
    committed(catalog, "from-parent")
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue = ctx.Queue()
    child = ctx.Process(target=_use_in_child, args=(catalog, queue))
    child.start()
    child.join(30)
    assert child.exitcode == 0 and queue.get(timeout=5) == 2
    # the child neither used nor closed the parent's connection
    assert [r.key for r in catalog.objects()] == ["from-child", "from-parent"]
    catalog.close()


def test_postgres_schema_version_is_recorded_and_checked(pg_url: str) -> None:
    import psycopg

    open_catalog(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        (version,) = conn.execute("SELECT version FROM schema_version").fetchall()
        assert version == (PostgresCatalog.schema_version,)
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(CatalogError, match="schema 99, newer than this tierstore"):
        open_catalog(pg_url)


def test_postgres_migrates_once_when_many_open_at_once(pg_server: PgServer) -> None:
    name = new_database_name("empty")
    pg_server.admin(f"CREATE DATABASE {name}")
    opened: list[Catalog] = []
    threads = [threading.Thread(target=lambda: opened.append(open_catalog(pg_server.url(name))))
               for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(opened) == 6
    committed(opened[0], "k")
    assert [r.key for r in opened[-1].objects()] == ["k"]
    for catalog in opened:
        catalog.close()
    pg_server.admin(f"DROP DATABASE {name} WITH (FORCE)")


def test_postgres_one_schema_per_store(pg_server: PgServer, pg_url: str) -> None:
    """Stores can share a database, each in its own schema (``options=-csearch_path=...``)."""
    dbname = pg_url.rsplit("/", 1)[1]
    for schema in ("store_a", "store_b"):
        pg_server.admin(f"CREATE SCHEMA {schema}", dbname)
    a, b = (open_catalog(f"{pg_url}?options=-csearch_path%3D{schema}")
            for schema in ("store_a", "store_b"))
    committed(a, "only-in-a")
    assert [r.key for r in a.objects()] == ["only-in-a"] and b.objects() == []
    a.close()
    b.close()


def test_postgres_password_never_shown(pg_server: PgServer, pg_url: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = open_catalog(pg_url)
    assert pg_server.password not in repr(catalog) and "tierstore@127.0.0.1" in repr(catalog)
    catalog.close()
    dbname = pg_url.rsplit("/", 1)[1]
    wrong = "Wr0ng-s3cret/pa:ss@word"
    with pytest.raises(CatalogError, match="password authentication failed") as failed:
        open_catalog(pg_server.url(dbname, password=wrong))
    shown = str(failed.value) + repr(failed.value) + str(failed.value.__cause__ or "")
    assert wrong not in shown and "Wr0ng" not in shown
    assert f"127.0.0.1:{pg_server.port}" in shown
    # the password from the environment, as libpq reads it, and never shown either
    bare = f"postgresql://{pg_server.user}@{pg_server.host}:{pg_server.port}/{dbname}"
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    open_catalog(bare).close()
    monkeypatch.setenv("PGPASSWORD", wrong)
    with pytest.raises(CatalogError) as failed:
        open_catalog(bare)
    assert "Wr0ng" not in str(failed.value)


def test_postgres_password_file(pg_server: PgServer, pg_url: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{pg_server.host}:{pg_server.port}:*:{pg_server.user}:"
                        f"{pg_server.password}\n")
    passfile.chmod(0o600)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    dbname = pg_url.rsplit("/", 1)[1]
    catalog = open_catalog(f"postgresql://{pg_server.user}@{pg_server.host}:{pg_server.port}/"
                           f"{dbname}?passfile={passfile}")
    assert catalog.objects() == []
    catalog.close()


def test_postgres_server_down_is_a_clear_error() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(CatalogError, match=f"cannot connect to the catalog at "
                                           f"u@127.0.0.1:{port}/db: .*refused") as failed:
        open_catalog(f"postgresql://u:hunter2@127.0.0.1:{port}/db")
    assert "hunter2" not in str(failed.value) and failed.value.__cause__ is None


def test_postgres_reconnects_after_the_server_drops_connections(pg_server: PgServer,
                                                                pg_url: str) -> None:
    catalog = open_catalog(pg_url)
    committed(catalog, "a")
    dbname = pg_url.rsplit("/", 1)[1]
    pg_server.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{dbname}' AND pid <> pg_backend_pid()")
    assert [r.key for r in catalog.objects()] == ["a"]  # a read retries on a new connection
    pg_server.admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{dbname}' AND pid <> pg_backend_pid()")
    committed(catalog, "b")  # so does a write that had not reached its commit
    assert [r.key for r in catalog.objects()] == ["a", "b"]
    catalog.close()


def test_store_on_a_postgres_catalog(pg_server: PgServer, pg_url: str, tmp_path: Path
                                     ) -> None:
    config = dataclasses.replace(make_config(tmp_path, "local"), catalog=pg_url)
    with open_store(config) as store:
        assert pg_server.password not in repr(store)
        store.put("ds/a.bin", b"x" * 1000, tier="hot")
        store.put("ds/b.bin", b"y" * 10)
        assert store.move("ds/a.bin", "cold").tiers == ["cold"]
        assert store.cat("ds/a.bin") == b"x" * 1000
        store.rm("ds/b.bin")
        assert store.find("ds/") == ["ds/a.bin"]
        assert store.stat("ds/a.bin").access.count == 1  # type: ignore[union-attr]
        assert store.audit(deep=True).ok
    store.aio.catalog.close()


# -- leases (both backends) ------------------------------------------------------------------


def test_a_lease_is_taken_only_when_free_or_expired(catalog: Catalog) -> None:
    a = catalog.acquire_lease("leader", "a", 30.0)
    assert a is not None and (a.name, a.holder, a.fence) == ("leader", "a", 1)
    assert a.expires - a.acquired == pytest.approx(30.0, abs=1.0)
    assert catalog.acquire_lease("leader", "b", 30.0) is None  # held: refused
    again = catalog.acquire_lease("leader", "a", 60.0)  # the holder asking again: extended
    assert again is not None and again.fence == 1 and again.expires > a.expires
    assert again.acquired == a.acquired
    renewed = catalog.renew_lease("leader", "a", 1, 30.0)
    assert renewed is not None and renewed.fence == 1
    assert catalog.renew_lease("leader", "b", 1, 30.0) is None  # not the holder
    assert catalog.renew_lease("leader", "a", 2, 30.0) is None  # not that term
    assert not catalog.release_lease("leader", "b", 1)
    assert catalog.release_lease("leader", "a", 1)
    assert not catalog.release_lease("leader", "a", 1)  # released already
    assert catalog.renew_lease("leader", "a", 1, 30.0) is None  # a released lease is gone
    b = catalog.acquire_lease("leader", "b", 30.0)
    assert b is not None and b.holder == "b" and b.fence == 2  # a new term
    node = catalog.acquire_lease("node:site-a", "a", 30.0)
    assert node is not None and node.fence == 1  # leases are independent
    assert [(lease.name, lease.holder, lease.fence) for lease in catalog.leases()] == [
        ("leader", "b", 2), ("node:site-a", "a", 1)]
    assert abs(catalog.clock() - time.time()) < 5


def test_an_expired_lease_goes_to_the_next_holder(catalog: Catalog) -> None:
    a = catalog.acquire_lease("leader", "a", 0.2)
    assert a is not None
    while catalog.clock() <= a.expires:
        time.sleep(0.05)
    assert catalog.renew_lease("leader", "a", a.fence, 30.0) is None  # expired: lost
    b = catalog.acquire_lease("leader", "b", 30.0)
    assert b is not None and b.fence == a.fence + 1
    assert catalog.renew_lease("leader", "a", a.fence, 30.0) is None
    assert not catalog.release_lease("leader", "a", a.fence)  # cannot release b's lease
    # the old holder coming back takes a new term too, once b's has expired or been released
    assert catalog.release_lease("leader", "b", b.fence)
    back = catalog.acquire_lease("leader", "a", 30.0)
    assert back is not None and back.fence == b.fence + 1


def _lease_racer(url: str, worker: int, rounds: int, start: float, out: Any) -> None:
    catalog = open_catalog(url)
    holder = f"racer-{worker}:{os.getpid()}"
    while time.time() < start:  # all start together
        time.sleep(0.001)
    for _ in range(rounds):
        lease = catalog.acquire_lease("contended", holder, 30.0)
        if lease is not None:
            entered = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process
            time.sleep(0.002)
            left = time.monotonic()
            assert catalog.release_lease("contended", holder, lease.fence)
            out.put((lease.fence, holder, entered, left))
            time.sleep(0.004)  # give the others a turn: a race, not one winner throughout
        else:
            time.sleep(0.001)
    catalog.close()
    out.put(None)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_processes_racing_for_a_lease_never_hold_it_together(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    open_catalog(url).close()  # migrated before the race
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start = time.time() + 3.0
    procs = [ctx.Process(target=_lease_racer, args=(url, w, 40, start, out)) for w in range(4)]
    for proc in procs:
        proc.start()
    held, done = [], 0
    while done < len(procs):
        item = out.get(timeout=120)
        if item is None:
            done += 1
        else:
            held.append(item)
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    fences = sorted(fence for fence, *_ in held)
    assert fences == list(range(1, len(held) + 1))  # every term once: never two at once
    spans = sorted((entered, left) for _, _, entered, left in held)
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(spans))
    assert len({holder for _, holder, *_ in held}) > 1  # a real race, several winners


CLOSE_RACE = """
import sys, threading
from tierstore.catalog.sqlite import SqliteCatalog

for round_ in range(30):
    catalog = SqliteCatalog(f"{sys.argv[1]}/c{round_}.db")
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                catalog.schema_versions()
                catalog.get("nothing/here")
            except Exception:
                pass

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(50):
        catalog.close()
    stop.set()
    for thread in threads:
        thread.join()
"""


def test_closing_a_sqlite_catalog_waits_for_statements_in_other_threads(tmp_path: Path
                                                                        ) -> None:
    """close() while other threads run statements: it waits for them (or leaves their
    connections open), never frees a connection under a running statement. It did: a store
    closed while a reader's claim ran in a thread killed CI's pytest with a segfault. In a
    child process, since the failure is one."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", CLOSE_RACE, str(tmp_path)], timeout=300,
                          capture_output=True, text=True)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
