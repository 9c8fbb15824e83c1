"""PostgreSQL fixtures shared by every test module (imported by conftest.py): one server per
session with a migrated template database, and a fresh catalog database per test."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgserver import PgServer, PostgresStartError, PostgresUnavailable, start_postgres

from tierstore.catalog import Catalog, open_catalog

__all__ = ["TEMPLATE", "catalog", "new_database_name", "own_pg", "pg_server", "pg_url"]

TEMPLATE = "tierstore_template"  # a migrated catalog; each test gets a copy
_databases = itertools.count()


def new_database_name(prefix: str = "catalog") -> str:
    """A database name no other test of this run uses."""
    return f"{prefix}_{os.getpid()}_{next(_databases)}"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server for the whole session, with a migrated template database.

    Skips when PostgreSQL is not installed, unless TIERSTORE_REQUIRE_PG=1 (CI), which fails.
    """
    started = time.monotonic()
    try:
        server, stop = start_postgres()
    except PostgresUnavailable as exc:
        if os.environ.get("TIERSTORE_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL not installed and TIERSTORE_REQUIRE_PG=1: {exc}",
                        pytrace=False)
        pytest.skip(f"PostgreSQL not installed: {exc}")
    except PostgresStartError as exc:
        pytest.fail(f"PostgreSQL did not start: {exc}", pytrace=False)
    try:
        server.admin(f"CREATE DATABASE {TEMPLATE}")
        open_catalog(server.url(TEMPLATE)).close()
        print(f"PostgreSQL {server.version} ready in {time.monotonic() - started:.2f}s")
        yield server
    finally:
        stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh catalog database for one test, copied from the migrated template."""
    name = new_database_name()
    pg_server.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield pg_server.url(name)
    pg_server.admin(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def own_pg() -> Iterator[PgServer]:
    """A PostgreSQL server of this test's own, to stop (and start again)."""
    try:
        server, stop = start_postgres()
    except PostgresUnavailable as exc:
        if os.environ.get("TIERSTORE_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL not installed: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL not installed: {exc}")
    except PostgresStartError as exc:
        pytest.fail(f"PostgreSQL did not start: {exc}", pytrace=False)
    yield server
    stop()


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Catalog:
    """An empty catalog on each backend: a SQLite file, a fresh PostgreSQL database."""
    url = (f"sqlite:///{tmp_path / 'catalog.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    opened = open_catalog(url)
    request.addfinalizer(opened.close)
    return opened
