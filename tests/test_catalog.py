"""Catalog conformance: every catalog backend passes these (SQLite today)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from tierstore.catalog import Catalog, ReplicaState, SqliteCatalog, open_catalog
from tierstore.errors import CatalogError, ObjectNotFound, ReplicaError

OWNER = "test-host:1"


@pytest.fixture(params=["sqlite"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Catalog:
    opened = open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    request.addfinalizer(opened.close)
    return opened


def committed(catalog: Catalog, key: str, tier: str = "hot", data: bytes = b"abc") -> int:
    replica = catalog.begin_replica(key, tier, tmp=f".tierstore/partial/{key}",
                                    new_content=True, owner=OWNER)
    catalog.commit_replica(replica.id, size=len(data), checksum=f"sum-{data!r}",
                           new_content=True)
    return replica.id


def test_put_is_invisible_until_committed(catalog: Catalog) -> None:
    replica = catalog.begin_replica("k", "hot", tmp="t", new_content=True, owner=OWNER)
    record = catalog.get("k")
    assert record is not None and record.ready == () and record.size is None
    assert replica.path == "k" and replica.state is ReplicaState.COPYING
    catalog.commit_replica(replica.id, size=3, checksum="c", new_content=True)
    record = catalog.get("k")
    assert record is not None and [r.tier for r in record.ready] == ["hot"]


def test_overwrite_on_the_same_tier_uses_a_new_path(catalog: Catalog) -> None:
    committed(catalog, "k")
    second = catalog.begin_replica("k", "hot", tmp="tmp-2", new_content=True, owner="new:2")
    assert second.path == "tmp-2"  # the old bytes at "k" stay untouched until superseded
    superseded = catalog.commit_replica(second.id, size=5, checksum="new", new_content=True)
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
        catalog.commit_replica(copy.id, size=3, checksum="sum-b'old'", new_content=False)


def test_the_last_ready_replica_cannot_be_marked_deleting(catalog: Catalog) -> None:
    first = committed(catalog, "k")
    with pytest.raises(ReplicaError, match="last"):
        catalog.mark_deleting(first, owner=OWNER)
    second = catalog.begin_replica("k", "cold", tmp="c", new_content=False, owner=OWNER)
    catalog.commit_replica(second.id, size=3, checksum="sum-b'abc'", new_content=False)
    assert catalog.mark_deleting(first, owner=OWNER).state is ReplicaState.DELETING
    assert [key for key, _ in catalog.pending()] == ["k"]
    catalog.forget_replica(first)
    assert catalog.pending() == []


def test_delete_marks_everything_then_forgets_the_object(catalog: Catalog) -> None:
    committed(catalog, "k")
    replicas = catalog.begin_delete("k", owner=OWNER)
    assert [r.state for r in replicas] == [ReplicaState.DELETING]
    for replica in replicas:
        catalog.forget_replica(replica.id)
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


def test_pins(catalog: Catalog) -> None:
    committed(catalog, "k")
    catalog.set_pin("k", "hot")
    assert catalog.get("k").pinned == "hot"  # type: ignore[union-attr]
    catalog.set_pin("k", None)
    assert catalog.get("k").pinned is None  # type: ignore[union-attr]


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


def test_a_corrupt_catalog_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "c.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CatalogError, match=r"c\.db: file is not a database"):
        SqliteCatalog(tmp_path / "c.db")


def test_unsupported_catalog_url() -> None:
    with pytest.raises(CatalogError, match="unsupported catalog 'mysql'"):
        open_catalog("mysql://db/tierstore")
