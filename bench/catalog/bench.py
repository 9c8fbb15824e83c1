"""``tierstore bench catalog``: lookups and access recording on SQLite and PostgreSQL, side by side.

For each catalog size (``--objects 10k,100k,1m``) both catalogs are filled to that many objects
through the bulk-load path (:meth:`Catalog.add_objects`, one ready replica each), then measured
in turn, one client thread each, as the store uses them:

* ``get``: one object with its replicas by key (what every read that is not cached asks), at
  random keys; lookups per second and the p50/p99 latency of one call;
* ``record_access``: batches of ``--batch`` reads of distinct random keys, merged into the
  access statistics (what the store's access recorder sends); events per second and the
  p50/p99 latency of one batch.

PostgreSQL is ``--postgres URL`` (tables go into a schema of their own, dropped afterwards, so
the bench never touches a catalog there) or, when PostgreSQL's binaries are installed, a
temporary server with its default, durable settings. The SQLite file (WAL, ``synchronous=NORMAL``
as the store runs it) and the temporary server live under ``--dir`` (default: the temporary
folder), on the same disk. Nothing is asserted about speed: the table and the JSON result show
the figures and the PostgreSQL/SQLite ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tierstore.catalog import Catalog, open_catalog
from tierstore.cli.progress import Steps
from tierstore.quantiles import percentile

from ..common.errors import BenchError
from ..common.machine import block_device
from ..common.results import result_document, save_and_say, write_json
from .pgserver import find_postgres, temporary_postgres

__all__ = ["BenchSettings", "parse_counts", "run_catalog"]

EXIT_USAGE = 2
BACKENDS = ("sqlite", "postgresql")
LOAD_CHUNK = 10_000
WARMUP = 500
OWNER = f"bench-catalog:{os.getpid()}"
_UNITS = {"get": "lookups/s", "record_access": "events/s", "load": "objects/s"}


def parse_counts(text: str) -> list[int]:
    """``"10k,100k,1m"`` -> ``[10000, 100000, 1000000]`` (k = 1000, m = 1000000), ascending."""
    counts = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([km]?)", part.lower())
        if match is None:
            raise BenchError(f"--objects: expected counts such as 10k,100k,1m, got {part!r}")
        value = int(float(match[1]) * {"": 1, "k": 1000, "m": 1_000_000}[match[2]])
        if value < 1:
            raise BenchError(f"--objects: a catalog needs at least one object, got {part!r}")
        counts.append(value)
    if not counts:
        raise BenchError("--objects: no counts given")
    return sorted(set(counts))


def _label(count: int) -> str:
    for unit, size in (("m", 1_000_000), ("k", 1000)):
        if count >= size and count % size == 0:
            return f"{count // size}{unit}"
    return str(count)


def key_of(index: int) -> str:
    return f"datasets/bench/shard-{index:08d}.tar"


@dataclass(frozen=True)
class BenchSettings:
    sizes: list[int]
    backends: list[str]
    lookups: int
    batch: int
    batches: int
    seed: int = 0


def _figures(backend: str, count: int, operation: str, latencies_ns: np.ndarray,
             seconds: float, events: int) -> dict[str, Any]:
    ms = latencies_ns / 1e6
    return {"backend": backend, "objects": count, "operation": operation,
            "calls": len(ms), "events": events, "seconds": round(seconds, 4),
            "rate": round(events / seconds, 1) if seconds > 0 else None,
            "unit": _UNITS[operation],
            "p50_ms": round(percentile(ms, 50), 4),
            "p99_ms": round(percentile(ms, 99), 4),
            "mean_ms": round(float(ms.mean()), 4), "max_ms": round(float(ms.max()), 4)}


def load(catalog: Catalog, backend: str, start: int, stop: int,
         advance: Callable[[int], None]) -> dict[str, Any]:
    """Add objects ``start`` .. ``stop - 1`` in chunks through the bulk-load path."""
    latencies = []
    began = time.perf_counter()
    for first in range(start, stop, LOAD_CHUNK):
        last = min(stop, first + LOAD_CHUNK)
        rows = [(key_of(i), 1 << 20, f"sha256:{i:064x}") for i in range(first, last)]
        t = time.perf_counter_ns()
        added = catalog.add_objects(rows, "warm", owner=OWNER)
        latencies.append(time.perf_counter_ns() - t)
        if added != last - first:
            raise BenchError(f"{backend}: the catalog was not empty ({last - first - added} of "
                             "the bench's keys existed already)")
        advance(last - first)
    return _figures(backend, stop, "load", np.array(latencies, dtype=np.float64),
                    time.perf_counter() - began, stop - start)


def lookups(catalog: Catalog, backend: str, count: int, n: int, rng: np.random.Generator,
            advance: Callable[[int], None]) -> dict[str, Any]:
    """``n`` gets of random keys, each timed; a few unmeasured ones first."""
    for i in rng.integers(0, count, WARMUP):
        catalog.get(key_of(int(i)))
    picks = [key_of(int(i)) for i in rng.integers(0, count, n)]
    latencies = np.empty(n, dtype=np.float64)
    missing = 0
    began = time.perf_counter()
    for j, key in enumerate(picks):
        t = time.perf_counter_ns()
        record = catalog.get(key)
        latencies[j] = time.perf_counter_ns() - t
        missing += record is None
        if j % 1000 == 999:
            advance(1000)
    seconds = time.perf_counter() - began
    advance(n % 1000)
    if missing:
        raise BenchError(f"{backend}: {missing} of {n} lookups found no object")
    return _figures(backend, count, "get", latencies, seconds, n)


def record_batches(catalog: Catalog, backend: str, count: int, batch: int, batches: int,
                   rng: np.random.Generator, advance: Callable[[int], None]) -> dict[str, Any]:
    """``batches`` batches of ``batch`` reads of distinct random keys, each batch timed."""
    size = min(batch, count)
    now = time.time()
    work = [{key_of(int(i)): (1, now + b) for i in rng.choice(count, size, replace=False)}
            for b in range(batches)]
    latencies = np.empty(batches, dtype=np.float64)
    began = time.perf_counter()
    for b, reads in enumerate(work):
        t = time.perf_counter_ns()
        catalog.record_access(reads)
        latencies[b] = time.perf_counter_ns() - t
        advance(1)
    return _figures(backend, count, "record_access", latencies, time.perf_counter() - began,
                    size * batches)


@contextlib.contextmanager
def _postgres_catalog(url: str | None, folder: str) -> Iterator[tuple[Catalog, dict[str, Any]]]:
    """A PostgreSQL catalog in a schema of its own: on ``url``, else on a temporary server."""
    with contextlib.ExitStack() as stack:
        temporary = url is None
        if url is None:
            bin_dir = find_postgres()
            if bin_dir is None:
                raise BenchError("no PostgreSQL: pass --postgres URL, or install PostgreSQL's "
                                 "server (Debian: apt-get install postgresql), or leave "
                                 "postgresql out of --backends")
            url = stack.enter_context(temporary_postgres(bin_dir, folder))
        from tierstore.catalog.postgres import PostgresCatalog

        admin = PostgresCatalog(url, migrate=False)  # connects as the catalog would
        stack.callback(admin.close)
        schema = f"tierstore_bench_{os.getpid()}_{int(time.time())}"
        admin._write(lambda cur: cur.execute(f"CREATE SCHEMA {schema}"))
        stack.callback(lambda: admin._write(
            lambda cur: cur.execute(f"DROP SCHEMA {schema} CASCADE")))
        sep = "&" if "?" in url else "?"
        catalog = open_catalog(f"{url}{sep}options=-csearch_path%3D{schema}")
        stack.callback(catalog.close)
        settings = {name: admin._read(f"SHOW {name}")[0][0] for name in
                    ("server_version", "fsync", "synchronous_commit", "shared_buffers")}
        yield catalog, {"location": admin.location, "temporary_server": temporary,
                        "schema": schema, "settings": settings}


@contextlib.contextmanager
def _catalogs(settings: BenchSettings, postgres: str | None, folder: str
              ) -> Iterator[dict[str, tuple[Catalog, dict[str, Any]]]]:
    with contextlib.ExitStack() as stack:
        out: dict[str, tuple[Catalog, dict[str, Any]]] = {}
        if "sqlite" in settings.backends:
            path = Path(folder) / "catalog.db"
            catalog = open_catalog(f"sqlite:///{path}")
            stack.callback(catalog.close)
            out["sqlite"] = (catalog, {"location": f"sqlite:///{path}", "settings": {
                "journal_mode": "wal", "synchronous": "normal"}})
        if "postgresql" in settings.backends:
            out["postgresql"] = stack.enter_context(_postgres_catalog(postgres, folder))
        yield out


def measure(settings: BenchSettings, postgres: str | None, folder: str
            ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every size, every backend: load, then lookups, then access batches, interleaved per
    size so that both backends are measured side by side on the same machine state."""
    rng = np.random.default_rng(settings.seed)
    results: list[dict[str, Any]] = []
    with _catalogs(settings, postgres, folder) as catalogs, Steps(label_width=34) as bar:
        loaded = dict.fromkeys(catalogs, 0)
        for count in settings.sizes:
            for name, (catalog, _) in catalogs.items():
                bar.task(f"{name}: load to {_label(count)}", count - loaded[name])
                results.append(load(catalog, name, loaded[name], count, bar.advance))
                loaded[name] = count
            for name, (catalog, _) in catalogs.items():
                bar.task(f"{name} {_label(count)}: get", settings.lookups)
                results.append(lookups(catalog, name, count, settings.lookups, rng, bar.advance))
            for name, (catalog, _) in catalogs.items():
                bar.task(f"{name} {_label(count)}: record_access", settings.batches)
                results.append(record_batches(catalog, name, count, settings.batch,
                                              settings.batches, rng, bar.advance))
        described = {name: info for name, (_, info) in catalogs.items()}
    return results, described


def format_table(results: Sequence[dict[str, Any]], settings: BenchSettings) -> str:
    """One row per size and operation, the backends side by side, and their ratio."""
    by = {(r["objects"], r["operation"], r["backend"]): r for r in results}
    backends = [b for b in BACKENDS if b in settings.backends]
    headers = ["OBJECTS", "OPERATION", "UNIT"]
    for name in backends:
        headers += [f"{name.upper()} RATE", "P50 MS", "P99 MS"]
    if len(backends) == 2:
        headers.append("PG/SQLITE")
    rows = []
    for count in settings.sizes:
        for operation in ("get", "record_access", "load"):
            row = [_label(count), operation, _UNITS[operation]]
            rates = []
            for name in backends:
                r = by[(count, operation, name)]
                rates.append(r["rate"])
                row += [f"{r['rate']:,.0f}", f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}"]
            if len(backends) == 2:
                row.append(f"{rates[1] / rates[0]:.2f}x" if rates[0] else "-")
            rows.append(row)
    widths = [max(len(c) for c in col) for col in zip(headers, *rows, strict=True)]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()
             for cells in (headers, *rows)]
    note = (f"get: one object with its replicas by key, {settings.lookups} random keys; "
            f"record_access: batches of {settings.batch} reads of distinct keys "
            f"({settings.batches} batches, p50/p99 per batch); load: bulk inserts of "
            f"{LOAD_CHUNK} (p50/p99 per chunk). One client thread.")
    return "\n".join([*lines, note]) + "\n"


def _settings(args: argparse.Namespace) -> BenchSettings:
    backends = [b.strip().lower() for b in args.backends.split(",") if b.strip()]
    backends = ["postgresql" if b in ("postgres", "pg") else b for b in backends]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown or not backends:
        raise BenchError(f"--backends: expected sqlite and/or postgresql, got {args.backends!r}")
    for name in ("lookups", "batch", "batches"):
        if getattr(args, name) < 1:
            raise BenchError(f"--{name}: expected a positive count")
    if args.postgres and "postgresql" not in backends:
        raise BenchError("--postgres given but postgresql is not in --backends")
    return BenchSettings(parse_counts(args.objects), [b for b in BACKENDS if b in backends],
                         args.lookups, args.batch, args.batches)


def run_catalog(args: argparse.Namespace) -> int:
    """``tierstore bench catalog``: measure, print the table, save the result."""
    try:
        settings = _settings(args)
    except BenchError as exc:
        print(f"tierstore: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    folder = tempfile.mkdtemp(prefix="tierstore-bench-catalog-", dir=args.dir)
    disk = block_device(folder)
    try:
        results, backends = measure(settings, args.postgres, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    document = result_document(
        "catalog", results, sizes=settings.sizes, lookups=settings.lookups,
        batch=settings.batch, batches=settings.batches, load_chunk=LOAD_CHUNK,
        backends=backends, clients=1, disks=[disk] if disk else [])
    text = json.dumps(document, indent=2) + "\n"
    if getattr(args, "json", False):
        sys.stdout.write(text)
    else:
        sys.stdout.write(format_table(results, settings))
    write_json(document, args.json_file)
    save_and_say(document, args.results)
    return 0
