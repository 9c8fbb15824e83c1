"""Readers write their next-use announcements only when they moved materially (or to renew
them before they lapse), not every few seconds: a catalog shared by many ranks is spared most
writes, and what it holds stays within the tolerance of what the readers would announce.

The readers' progress and the announcer's checks are simulated on a clock of the test's own
(every ``interval``, and when a sixteenth more shards are open, as the announcer's loop does);
the announcements go through a real store into a real SQLite catalog, whose rows are counted
with SQLite's ``total_changes`` and read back.
"""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
import time
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

from storefixtures import make_config

from tierstore.catalog import SqliteCatalog
from tierstore.loader.announce import Announcer
from tierstore.loader.index import ShardEntry
from tierstore.store import Store

SIZE = 100_000_000  # bytes per shard


class CountingCatalog(SqliteCatalog):
    """A SQLite catalog that counts its announcements and the rows they change."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.writes = self.rows_changed = 0

    def announce(self, reader: str, uses: Mapping[str, float], *, expires: float,
                 site: str | None = None) -> None:
        before = self._conn().total_changes  # the connection of this thread, used below
        super().announce(reader, uses, expires=expires, site=site)
        self.writes += 1
        self.rows_changed += self._conn().total_changes - before


def rows_of(db: Path, reader: str) -> dict[str, float]:
    with closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT key, due FROM next_use WHERE reader = ?", (reader,)))


def simulate(tmp_path: Path, *, shards: int, readers: int, rate: float, ttl: float = 120.0
             ) -> tuple[int, CountingCatalog]:
    """``readers`` read ``shards`` (a fresh shuffle per epoch) at ``rate`` bytes/s, each two
    shards ahead, through one epoch and 30 s more; each check of each announcer is followed
    by a look at its rows in the catalog. The number of checks, and the catalog."""
    catalog = CountingCatalog(tmp_path / "catalog.db")
    entries = [ShardEntry(f"ds/shard-{i:06d}.tar", "tar", 100, SIZE, "x")
               for i in range(shards)]
    this, following = entries[:], entries[:]
    random.Random(0).shuffle(this)
    random.Random(1).shuffle(following)
    t0 = time.time()
    clock = [t0]

    async def run() -> int:
        store = Store(make_config(tmp_path, "local"), catalog=catalog)
        def started(r: int) -> int:  # the read-ahead is two shards ahead
            return min(len(announcers[r].shards), announcers[r].opened + 2)

        announcers = [Announcer(store, f"host:1:rank{r}", this[r::readers],
                                following[r::readers], ttl=ttl, clock=lambda: clock[0],
                                started=lambda r=r: started(r))
                      for r in range(readers)]
        checked = [-math.inf] * readers
        checks, per_shard = 0, SIZE / rate
        for tick in range(int((len(announcers[0].shards) * per_shard + 30) / 0.1)):
            now = clock[0] = t0 + tick * 0.1
            for r, a in enumerate(announcers):
                while a.opened < min(len(a.shards), int((now - t0) / per_shard) + 1):
                    a.advance(a.shards[a.opened])
                if now - checked[r] < a.interval and a.opened - a.announced < a._step:
                    continue
                checks, checked[r], opened = checks + 1, now, a.opened
                await a.refresh()
                a.announced = opened
                # What the daemon reads is what the reader last wrote, within the tolerance
                # of what it would announce now, and renewed before it lapses.
                assert rows_of(catalog.path, a.reader) == a._written
                assert a.moved(a.uses(now), now) < a._step
                assert now - a._written_at < a.ttl / 2 + a.interval
        await store.close()
        return checks

    return asyncio.run(run()), catalog


def test_a_thousand_shards_eight_readers_write_a_fraction_of_the_rows(tmp_path: Path) -> None:
    """Before, every check rewrote the reader's rows: its 230-odd keys deleted and inserted
    again, at each of the 1120 checks of this simulation (some 530,000 rows changed)."""
    checks, catalog = simulate(tmp_path, shards=1000, readers=8, rate=50e6)
    assert checks > 1000
    assert catalog.writes * 4 < checks
    assert catalog.rows_changed * 4 < checks * 2 * 200  # each announcement: 200 keys or more
    with closing(sqlite3.connect(catalog.path)) as conn:  # and the daemon sees every reader
        assert conn.execute("SELECT COUNT(DISTINCT reader) FROM next_use").fetchone() == (8,)
    assert len(catalog.next_uses(time.time())) == 1000  # the next epoch, every shard


def test_a_slow_reader_renews_its_announcement_before_it_lapses(tmp_path: Path) -> None:
    """Forty seconds a shard: its announcement moves materially less often than half its
    ttl, so it is renewed in between (the simulation checks its age at every check)."""
    checks, catalog = simulate(tmp_path, shards=32, readers=1, rate=SIZE / 40, ttl=60.0)
    assert catalog.writes * 4 < checks
