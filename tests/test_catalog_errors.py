"""A catalog that fails answers with CatalogError, never with its driver's error: a corrupt
SQLite file (pages overwritten on disk), a PostgreSQL server stopped mid-session. The command
line then prints one line, and reads of objects read lately go on (:mod:`tierstore.readcache`).
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from pgserver import (
    PgServer,
    _run_as,
    find_bin_dir,
)
from storefixtures import make_config, toml_for

from tierstore import open_store
from tierstore.catalog import Catalog, PreloadRecord, Replica, SqliteCatalog, open_catalog
from tierstore.errors import CatalogError, ReplicaError

OWNER = "test-host:1"


def corrupt(db: Path) -> None:
    """Overwrite every page of ``db`` but the first (the header and the schema stay readable,
    so the file still opens) with garbage, after moving what the WAL holds into the file."""
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    with open(db, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        assert size > 2 * page, "too small a catalog to corrupt past its first page"
        f.seek(page)
        f.write(b"\xa5" * (size - page))


def committed(catalog: Catalog, key: str) -> Replica:
    replica = catalog.begin_replica(key, "hot", tmp=f"tmp/{key}", new_content=True,
                                    owner=OWNER)
    catalog.commit_replica(replica.id, owner=OWNER, size=3, checksum="c", new_content=True)
    return replica


# -- SQLite: a corrupt file ------------------------------------------------------------------


def test_the_command_line_names_a_corrupt_catalog_in_one_line(tmp_path: Path) -> None:
    config = make_config(tmp_path / "store", "local")
    with open_store(config) as store:
        for i in range(50):
            store.put(f"ds/{i:03d}", b"x" * 100)
    db = tmp_path / "store" / "catalog.db"
    corrupt(db)
    toml = tmp_path / "cli.toml"
    toml.write_text(toml_for(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERSTORE_")}
    done = subprocess.run([sys.executable, "-m", "tierstore.cli", "--config", str(toml), "ls"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tierstore: error: "), done.stderr
    assert str(db) in lines[0] and "malformed" in lines[0]


def test_reads_go_on_from_remembered_records_when_the_file_is_corrupted(tmp_path: Path
                                                                         ) -> None:
    store = open_store(make_config(tmp_path, "local"))
    try:
        store.put("read-lately", b"r" * 1000)
        for i in range(50):  # enough pages that the tables lie past the first
            store.put(f"never-read/{i}", b"n" * 100)
        assert store.cat("read-lately") == b"r" * 1000  # the catalog vouches for it now
        corrupt(tmp_path / "catalog.db")
        assert store.cat("read-lately") == b"r" * 1000
        assert store.aio.known.served == 1  # on the remembered record, verified
        with pytest.raises(CatalogError, match=re.escape(str(tmp_path / "catalog.db"))):
            store.cat("never-read/0")  # nothing remembered: the catalog's error, typed
    finally:
        store.close()


# Every method that reads or writes tables. schema_versions, pending_migrations and migrate
# (of an up-to-date catalog) read only the file's header, which stays intact here (a corrupt
# header fails at open: test_catalog's test_a_corrupt_catalog_file_is_a_clear_error).
CALLS: dict[str, Callable[[Catalog, Replica], Any]] = {
    "get": lambda c, r: c.get("k/0"),
    "objects": lambda c, r: c.objects(),
    "pending": lambda c, r: c.pending(),
    "access": lambda c, r: c.access(["k/0"]),
    "access of a site": lambda c, r: c.access(["k/0"], site="a"),
    "usage": lambda c, r: c.usage(),
    "leases": lambda c, r: c.leases(),
    "next_uses": lambda c, r: c.next_uses(0.0),
    "preloads": lambda c, r: c.preloads(),
    "begin_replica": lambda c, r: c.begin_replica("k/new", "cold", tmp="t", new_content=True,
                                                  owner=OWNER),
    "commit_replica": lambda c, r: c.commit_replica(r.id, owner=OWNER, size=3, checksum="c",
                                                    new_content=True),
    "mark_deleting": lambda c, r: c.mark_deleting(r.id, owner=OWNER),
    "begin_delete": lambda c, r: c.begin_delete("k/0", owner=OWNER),
    "forget_replica": lambda c, r: c.forget_replica(r),
    "take_over": lambda c, r: c.take_over(r, "other:2"),
    "heartbeat": lambda c, r: c.heartbeat([r.id], OWNER),
    "set_pin": lambda c, r: c.set_pin("k/0", "hot"),
    "record_access": lambda c, r: c.record_access({"k/0": (1, time.time())}, site="a"),
    "add_objects": lambda c, r: c.add_objects([("k/bulk", 1, "c")], "hot", owner=OWNER,
                                              versions={"k/bulk": "v1"}),
    "add_adoption": lambda c, r: c.add_adoption("hot", "k/", whole=True),
    "adoptions": lambda c, r: c.adoptions(),
    "readopt": lambda c, r: c.readopt(r.id, owner=OWNER, size=3, checksum="c", version="v2"),
    "acquire_lease": lambda c, r: c.acquire_lease("leader", "b", 30.0),
    "renew_lease": lambda c, r: c.renew_lease("leader", "a", 1, 30.0),
    "release_lease": lambda c, r: c.release_lease("leader", "a", 1),
    "announce": lambda c, r: c.announce("reader", {"k/0": 1.0}, expires=time.time() + 60),
    "add_preload": lambda c, r: c.add_preload(PreloadRecord("k/", "hot", 1.0, None, 1.0, 0.0)),
    "remove_preload": lambda c, r: c.remove_preload("k/"),
}


@pytest.fixture
def corrupt_catalog(tmp_path: Path) -> Iterator[tuple[SqliteCatalog, Replica]]:
    """A catalog with objects, statistics and a lease, its file corrupted; a replica of it."""
    db = tmp_path / "catalog.db"
    catalog = SqliteCatalog(db)
    replica = committed(catalog, "k/0")
    for i in range(1, 100):
        committed(catalog, f"k/{i}")
    catalog.record_access({"k/0": (1, time.time())}, site="a")
    catalog.acquire_lease("leader", "a", 30.0)
    catalog.close()
    corrupt(db)
    reopened = SqliteCatalog(db)  # the header is intact: it opens (and is up to date)
    yield reopened, replica
    reopened.close()


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_every_method_of_a_corrupt_sqlite_catalog_raises_catalog_error(
        corrupt_catalog: tuple[SqliteCatalog, Replica], call: Callable[..., Any]) -> None:
    catalog, replica = corrupt_catalog
    with pytest.raises(CatalogError, match=re.escape(str(catalog.path)) + ".*malformed"):
        call(catalog, replica)


# -- both backends: a unique index refusing a row is a replica conflict ---------------------



def test_a_replica_path_taken_is_a_replica_conflict(catalog: Catalog) -> None:
    committed(catalog, "k")
    # the key's own path is taken on that tier, and so is the temporary path asked for
    with pytest.raises(ReplicaError, match="conflicts with another replica"):
        catalog.begin_replica("k", "hot", tmp="k", new_content=True, owner=OWNER)
    record = catalog.get("k")  # and nothing of the refused write was kept
    assert record is not None and len(record.replicas) == 1 and catalog.pending() == []


# -- PostgreSQL: the server stopped mid-session -----------------------------------------------



def test_a_stopped_postgres_server_is_a_catalog_error(own_pg: PgServer) -> None:
    own_pg.admin("CREATE DATABASE catalog")
    catalog = open_catalog(own_pg.url("catalog"))
    replica = committed(catalog, "k")
    prefix, _ = _run_as()
    subprocess.run([*prefix, str(find_bin_dir() / "pg_ctl"), "-D",
                    str(own_pg.socket_dir / "data"), "-m", "immediate", "-w", "stop"],
                   check=True, capture_output=True, timeout=60, cwd=own_pg.socket_dir)
    where = re.escape(f"{own_pg.user}@{own_pg.host}:{own_pg.port}/catalog")
    for name in ("get", "objects", "leases", "set_pin", "commit_replica", "acquire_lease"):
        with pytest.raises(CatalogError, match=where) as failed:
            CALLS[name](catalog, replica)
        assert own_pg.password not in str(failed.value), name
    catalog.close()  # closing connections to a server that is gone is quiet
