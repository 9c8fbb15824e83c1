"""A scheduled pre-load ends: once past its deadline and hold the daemon removes it from the
catalog (it stages and holds nothing any more), and one scheduled again meanwhile stays."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from storefixtures import make_config

from tierstore import Config, open_store
from tierstore.catalog import Catalog, PreloadRecord
from tierstore.daemon import Daemon, DaemonOptions
from tierstore.store import Store

HOUR = 3600.0



def test_expired_preloads_are_removed_and_the_others_kept(catalog: Catalog) -> None:
    now = time.time()
    ended = PreloadRecord("a", "hot", now - 2 * HOUR, None, HOUR, now)
    holding = PreloadRecord("b", "hot", now - HOUR / 2, None, HOUR, now)  # within its hold
    ahead = PreloadRecord("c", "hot", now + HOUR, HOUR, HOUR, now)
    for record in (ended, holding, ahead):
        catalog.add_preload(record)
    assert catalog.remove_expired_preloads(now) == 1
    assert catalog.preloads() == [holding, ahead]
    again = PreloadRecord("b", "hot", now + 2 * HOUR, None, HOUR, now)  # scheduled again
    catalog.add_preload(again)
    assert catalog.remove_expired_preloads(now + 1.5 * HOUR) == 0  # the new one counts
    assert catalog.preloads() == [ahead, again]


def cycle(config: Config, *, dry_run: bool = False) -> dict[str, int]:
    async def run() -> dict[str, int]:
        store = Store(config)
        try:
            daemon = Daemon(store, DaemonOptions(once=True, metrics_port=None, dry_run=dry_run))
            assert await daemon.cycle()
            return dict(daemon.outcomes)
        finally:
            await store.close()

    return asyncio.run(run())


def test_the_daemon_removes_preloads_past_their_hold(tmp_path: Path) -> None:
    config = make_config(tmp_path, "local")
    now = time.time()
    with open_store(config) as store:
        store.schedule_preload("jobs/old", "hot", now - 2 * HOUR, hold=HOUR)
        store.schedule_preload("jobs/on", "hot", now - HOUR / 2, hold=HOUR)
        store.schedule_preload("jobs/next", "hot", now + HOUR, lead=HOUR / 2, hold=HOUR)
    assert "preloads_expired" not in cycle(config, dry_run=True)  # a dry run changes nothing
    with open_store(config) as store:
        assert len(store.preloads()) == 3
    assert cycle(config)["preloads_expired"] == 1
    with open_store(config) as store:
        assert [p.prefix for p in store.preloads()] == ["jobs/on", "jobs/next"]
