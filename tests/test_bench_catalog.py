"""``tierstore bench catalog``: a tiny run of every path (a given PostgreSQL, a temporary one,
SQLite alone) and the structure of its JSON result. Speed is never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from pgserver import PgServer

from tierstore.cli import main
from tierstore.cli.bench.catalog.bench import parse_counts
from tierstore.cli.bench.catalog.pgserver import find_postgres
from tierstore.cli.bench.common.errors import BenchError

SMALL = ["--objects", "1k,2k", "--lookups", "300", "--batch", "100", "--batches", "5"]
FIELDS = {"backend", "objects", "operation", "calls", "events", "seconds", "rate", "unit",
          "p50_ms", "p99_ms", "mean_ms", "max_ms"}


def _bench(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str,
           scratch: bool = True) -> tuple[dict, str, str]:
    """Run the bench; its scratch folder under ``tmp_path`` unless told otherwise (pytest's
    folders are private to root: a temporary server, run as postgres, cannot live there)."""
    out_file = tmp_path / "out.json"
    status = main(["bench", "catalog", *SMALL, "--results", str(tmp_path / "results"),
                   *(["--dir", str(tmp_path)] if scratch else []), "--json", str(out_file),
                   *args])
    out, err = capsys.readouterr()
    assert status == 0, err
    return json.loads(out_file.read_text()), out, err


def _check(document: dict, backends: list[str]) -> None:
    assert document["benchmark"] == "catalog" and document["sizes"] == [1000, 2000]
    assert set(document["backends"]) == set(backends)
    results = document["results"]
    assert {(r["backend"], r["objects"], r["operation"]) for r in results} == {
        (b, n, op) for b in backends for n in (1000, 2000)
        for op in ("load", "get", "record_access")}
    for r in results:
        assert set(r) == FIELDS and r["rate"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"]
        assert r["events"] == {"get": 300, "record_access": 500}.get(r["operation"], 1000)


def test_against_a_given_postgres(pg_server: PgServer, pg_url: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    document, out, err = _bench(capsys, tmp_path, "--postgres", pg_url)
    _check(document, ["sqlite", "postgresql"])
    assert "OBJECTS" in out and "PG/SQLITE" in out and "record_access" in out
    saved = list((tmp_path / "results").glob("catalog-*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["results"] == document["results"]
    shown = out + err + saved[0].read_text()
    assert pg_server.password not in shown
    postgres = document["backends"]["postgresql"]
    assert postgres["temporary_server"] is False and postgres["settings"]["fsync"] in ("on",
                                                                                       "off")
    # the bench worked in a schema of its own and dropped it: the catalog there is untouched
    with psycopg.connect(pg_url) as conn:
        schemas = conn.execute("SELECT nspname FROM pg_namespace "
                               "WHERE nspname LIKE 'tierstore_bench_%'").fetchall()
        objects = conn.execute("SELECT count(*) FROM objects").fetchone()
    assert schemas == [] and objects == (0,)
    assert [p.name for p in tmp_path.iterdir()] and not list(
        tmp_path.glob("tierstore-bench-catalog-*"))  # its scratch folder is gone


@pytest.mark.skipif(find_postgres() is None, reason="PostgreSQL's server is not installed")
def test_with_a_temporary_postgres(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document, _, _ = _bench(capsys, tmp_path, scratch=False)
    _check(document, ["sqlite", "postgresql"])
    postgres = document["backends"]["postgresql"]
    assert postgres["temporary_server"] is True and postgres["settings"]["fsync"] == "on"
    assert not Path(document["backends"]["sqlite"]["location"][len("sqlite:///"):]).exists()


def test_sqlite_alone_and_bad_arguments(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    document, out, _ = _bench(capsys, tmp_path, "--backends", "sqlite")
    _check(document, ["sqlite"])
    assert "POSTGRESQL" not in out
    for bad in (["--objects", "ten"], ["--backends", "mysql"], ["--lookups", "0"]):
        assert main(["bench", "catalog", *bad, "--results", "none"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("tierstore: error: --") and err.count("\n") == 1


def test_parse_counts() -> None:
    assert parse_counts("1m,10k, 100k,10k") == [10_000, 100_000, 1_000_000]
    assert parse_counts("2.5k") == [2500]
    with pytest.raises(BenchError):
        parse_counts("0")
