"""No catalog call blocks the event loop: the store's coroutines reach the catalog through its
async face (:class:`tierstore.catalog.AsyncCatalog`), which runs every call in a worker thread
except a point lookup on a catalog whose reads never wait (SQLite in WAL mode).

Each test runs the store's operations on a real catalog and real local tiers, on a running
loop, and notes which thread each call of the catalog's methods ran on."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from storefixtures import make_config

from tierstore.catalog import AsyncCatalog, Catalog, SqliteCatalog, open_catalog
from tierstore.daemon import Daemon, DaemonOptions
from tierstore.scrub import scrub
from tierstore.store import Store

# The catalog's public methods, as the contract names them.
METHODS = sorted(name for name, value in vars(Catalog).items()
                 if callable(value) and not name.startswith("_"))


def watch(catalog: Catalog) -> list[tuple[str, int]]:
    """Wrap each public method of ``catalog`` (the instance's, the real one underneath) to
    note ``(method, thread)`` of every call; the list it fills."""
    calls: list[tuple[str, int]] = []

    def noted(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, threading.get_ident()))
            return method(*args, **kwargs)
        return call

    for name in METHODS:
        setattr(catalog, name, noted(name, getattr(catalog, name)))
    return calls


async def exercise(store: Store, tmp_path: Path) -> None:
    """Every kind of thing the store does, once: writes, reads, listings, replicas, pins,
    fills, pre-loads, upkeep, a scrub and a daemon cycle."""
    await store.put("ds/a", b"a" * 1000)
    await store.put("ds/b", b"b" * 2000, tier="cold")
    await store.put("ds/a", b"A" * 1000, overwrite=True)
    assert await store.cat("ds/a") == b"A" * 1000
    await store.get("ds/b", str(tmp_path / "b.out"))
    assert (await store.stat("ds/a")).size == 1000
    assert await store.exists("ds/a") and not await store.exists("ds/none")
    assert await store.find("ds/") == ["ds/a", "ds/b"]
    assert {e["name"] for e in await store.ls("ds")} == {"ds/a", "ds/b"}
    await store.locate("ds/")
    await store.usage()
    await store.add_replica("ds/a", "cold")
    await store.replicate("ds/b", "warm")
    await store.repair("ds/a", "cold")
    await store.move("ds/b", "cold")
    await store.drop_replica("ds/a", "cold")
    await store.pin("ds/a", "warm")
    await store.unpin("ds/a")
    claim = await store.claim_fill("ds/b")
    assert claim is not None
    await claim.commit(b"b" * 2000)
    assert await store.wait_for_copy("ds/b", "hot", timeout=1.0)
    await store.announce("reader", {"ds/a": 0.0})
    await store.schedule_preload("ds/", "hot", 1e10)
    assert len(await store.preloads()) == 1
    assert await store.cancel_preload("ds/") == 1
    await store.snapshot()
    (tmp_path / "tiers" / "warm" / "adopted").mkdir(parents=True)
    (tmp_path / "tiers" / "warm" / "adopted" / "x").write_bytes(b"x" * 10)
    assert (await store.adopt("adopted", "warm")).adopted
    await store.rescan()
    await store.audit()
    assert not (await scrub(store)).bad
    await store.recover()
    await Daemon(store, DaemonOptions(once=True, metrics_port=None)).cycle()
    await store.rm("ds/b")


def on_the_loop(catalog: Catalog, tmp_path: Path) -> tuple[Counter[str], Counter[str]]:
    """Run :func:`exercise` on a store over ``catalog``: the catalog methods called on the
    loop's thread, and those called anywhere, with how many times. (Closing the store is left
    out: it closes the catalog on the loop, on purpose, so that no task starts a call then.)"""
    calls = watch(catalog)

    async def run() -> tuple[int, list[tuple[str, int]]]:
        store = Store(make_config(tmp_path, "local"), catalog)
        try:
            await exercise(store, tmp_path)
            return threading.get_ident(), calls[:]
        finally:
            await store.close()

    loop_thread, seen = asyncio.run(run())
    return (Counter(name for name, thread in seen if thread == loop_thread),
            Counter(name for name, _ in seen))


@pytest.fixture(params=["sqlite", "postgres"])
def watched(request: pytest.FixtureRequest, tmp_path: Path) -> Catalog:
    """A fresh catalog on each backend (the store closes it)."""
    if request.param == "sqlite":
        return SqliteCatalog(tmp_path / "catalog.db")
    return open_catalog(request.getfixturevalue("pg_url"))


def test_only_point_lookups_on_a_catalog_whose_reads_never_wait_run_on_the_loop(
        watched: Catalog, tmp_path: Path) -> None:
    on_loop, everywhere = on_the_loop(watched, tmp_path)
    # the exercise reaches the catalog in every way the store's coroutines do
    assert {"get", "objects", "access", "usage", "begin_replica", "commit_replica",
            "mark_deleting", "begin_delete", "forget_replica", "pending", "set_pin",
            "announce", "next_uses", "add_preload", "preloads", "remove_preload",
            "add_objects", "add_adoption", "adoptions"} <= set(everywhere)
    if watched.inline_reads:  # SQLite in WAL mode
        assert set(on_loop) == {"get"}, on_loop
    else:
        assert not on_loop, on_loop


def test_nothing_runs_on_the_loop_where_reads_may_wait(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    catalog.inline_reads = False  # as if readers waited on the writer (no WAL)
    on_loop, everywhere = on_the_loop(catalog, tmp_path)
    assert not on_loop and everywhere["get"] > 10, on_loop


def test_the_face_answers_as_the_catalog_does(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    db = AsyncCatalog(catalog)
    catalog.add_objects([("k", 3, "c")], "warm", owner="me")

    async def looks() -> tuple[Any, ...]:
        return (await db.get("k"), await db.objects(), await db.usage(), await db.get("no"))

    try:
        assert asyncio.run(looks()) == (catalog.get("k"), catalog.objects(), catalog.usage(),
                                        None)
    finally:
        catalog.close()
