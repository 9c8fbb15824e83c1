"""``tierstore catalog migrate [--check] [--json]`` on SQLite and PostgreSQL catalogs: an old
catalog is left alone by ``--check`` (exit 1) and brought to this tierstore's schema by
``migrate``; errors are one line and a password is never printed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg
import pytest
from pgfixtures import new_database_name
from pgserver import PgServer

from tierstore.catalog import SqliteCatalog, open_catalog
from tierstore.catalog import postgres as pg_catalog
from tierstore.catalog import sqlite as sqlite_catalog
from tierstore.cli import main

CURRENT = SqliteCatalog.schema_version


def _config(tmp_path: Path, catalog_url: str) -> Path:
    path = tmp_path / "tierstore.toml"
    path.write_text(f'home = "{tmp_path}"\ncatalog = "{catalog_url}"\n\n'
                    '[tiers.hot]\nclass = "hot"\nurl = "hot"\n')
    return path


def _run(capsys: pytest.CaptureFixture[str], config: Path, *args: str
         ) -> tuple[int, str, str]:
    status = main(["--config", str(config), "catalog", "migrate", *args])
    out, err = capsys.readouterr()
    return status, out, err


def _sqlite_v1(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(sqlite_catalog.MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    conn.execute("INSERT INTO objects (key, size, checksum, created) VALUES ('k', 1, 'x', 0)")
    conn.close()


def _sqlite_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def test_sqlite_check_then_migrate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "catalog.db"
    _sqlite_v1(db)
    config = _config(tmp_path, f"sqlite:///{db}")
    status, out, err = _run(capsys, config, "--check")
    assert status == 1 and err == ""
    assert f"schema:   1 (this tierstore: {CURRENT})" in out and "pending:" in out
    assert _sqlite_version(db) == 1  # --check changed nothing
    status, out, _ = _run(capsys, config, "--check", "--json")
    shown = json.loads(out)
    assert status == 1 and shown["pending"] == list(range(2, CURRENT + 1))
    assert shown["schema_version"] == 1 and shown["applied"] == [] and shown["check"] is True

    status, out, _ = _run(capsys, config, "--json")
    shown = json.loads(out)
    assert status == 0 and shown["applied"] == list(range(2, CURRENT + 1))
    assert (shown["previous_version"], shown["schema_version"]) == (1, CURRENT)
    assert _sqlite_version(db) == CURRENT
    catalog = SqliteCatalog(db)
    assert catalog.get("k") is not None  # the data survived
    catalog.close()
    status, out, _ = _run(capsys, config, "--check")
    assert status == 0 and "up to date" in out
    status, out, _ = _run(capsys, config)  # migrating an up-to-date catalog changes nothing
    assert status == 0 and "up to date" in out


def test_sqlite_check_does_not_create_a_catalog(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "sub" / "catalog.db"
    config = _config(tmp_path, f"sqlite:///{db}")
    status, out, _ = _run(capsys, config, "--check")
    assert status == 1 and "schema:   0" in out and not db.exists()
    status, out, _ = _run(capsys, config)
    assert status == 0 and f"migrated: 0 -> {CURRENT}" in out and db.exists()


def test_a_newer_catalog_is_a_one_line_error(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "catalog.db"
    SqliteCatalog(db).close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    for args in (("--check",), ()):
        status, out, err = _run(capsys, _config(tmp_path, f"sqlite:///{db}"), *args)
        assert status == 1 and out == ""
        assert err.count("\n") == 1 and err.startswith("tierstore: error: catalog sqlite:///")
        assert "schema 99, newer than this tierstore" in err
    assert _sqlite_version(db) == 99


def test_opening_without_migrating(tmp_path: Path) -> None:
    _sqlite_v1(tmp_path / "c.db")
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.db'}", migrate=False)
    assert catalog.schema_versions() == (1, CURRENT)
    assert catalog.pending_migrations() == list(range(2, CURRENT + 1))
    assert catalog.migrate() == list(range(2, CURRENT + 1))
    assert catalog.pending_migrations() == [] and catalog.migrate() == []
    catalog.close()


# -- PostgreSQL ----------------------------------------------------------------------------


@pytest.fixture
def pg_v1(pg_server: PgServer) -> str:
    """A database holding a version 1 catalog with one object; its URL (password in it)."""
    name = new_database_name("v1")
    pg_server.admin(f"CREATE DATABASE {name}")
    with psycopg.connect(pg_server.url(name), autocommit=True) as conn:
        conn.execute(pg_catalog.MIGRATIONS[0].encode())
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.execute("INSERT INTO objects (key, size, checksum, created) "
                     "VALUES ('k', 1, 'x', 0)")
    return pg_server.url(name)


def _pg_version(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        assert row is not None
        return int(row[0])


def test_postgres_check_then_migrate(pg_server: PgServer, pg_v1: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, pg_v1)
    status, out, err = _run(capsys, config, "--check")
    assert status == 1 and f"schema:   1 (this tierstore: {CURRENT})" in out
    assert f"catalog:  postgresql://{pg_server.user}@127.0.0.1:{pg_server.port}/" in out
    assert pg_server.password not in out + err
    assert _pg_version(pg_v1) == 1
    status, out, err = _run(capsys, config, "--json")
    shown = json.loads(out)
    assert status == 0 and shown["applied"] == list(range(2, CURRENT + 1))
    assert pg_server.password not in out + err
    assert _pg_version(pg_v1) == CURRENT
    catalog = open_catalog(pg_v1, migrate=False)
    assert catalog.pending_migrations() == [] and catalog.get("k") is not None
    catalog.close()
    status, out, _ = _run(capsys, config, "--check")
    assert status == 0 and "up to date" in out


def test_postgres_empty_database(pg_server: PgServer, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    name = new_database_name("empty")
    pg_server.admin(f"CREATE DATABASE {name}")
    config = _config(tmp_path, pg_server.url(name))
    status, out, _ = _run(capsys, config, "--check")
    assert status == 1 and "schema:   0" in out
    status, out, _ = _run(capsys, config)
    assert status == 0 and f"migrated: 0 -> {CURRENT}" in out
    pg_server.admin(f"DROP DATABASE {name} WITH (FORCE)")


def test_postgres_errors_are_one_line_without_the_password(
        pg_server: PgServer, pg_v1: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    wrong = "Wr0ng-s3cret/pa:ss@word"
    dbname = pg_v1.rsplit("/", 1)[1]
    config = _config(tmp_path, pg_server.url(dbname, password=wrong))
    for args in (("--check",), ()):
        status, out, err = _run(capsys, config, *args)
        assert status == 1 and out == "" and err.count("\n") == 1
        assert err.startswith("tierstore: error: ") and "password authentication failed" in err
        assert "Wr0ng" not in err and pg_server.password not in err
    assert _pg_version(pg_v1) == 1
