"""Telling the store what this reader reads next, and when.

A reader's order is known before the epoch starts (:mod:`.order`), so each reader announces
it (:meth:`Store.announce <tierstore.store.Store.announce>`): every shard left in this epoch,
then every shard of the next, each with the time it expects to open it. The daemon's
next-use policy stages the soonest into the hot tier and displaces what is read later, which
is what keeps a hot tier smaller than the dataset from thrashing under a fresh shuffle each
epoch. The times come from the bytes still ahead at the rate this reader has consumed so
far (a guess of :data:`DEFAULT_RATE` until it has consumed something). They are looked at
again every ``interval`` seconds, and sooner once the reader has opened a sixteenth of its
shards since (shards it has read are due next epoch: the daemon may displace them), but
written again only when they moved materially (:meth:`Announcer.moved`): a sixteenth of the
keys added, dropped, or due at a time that moved by more than a quarter of how far ahead it
is, more than :data:`TOLERANCE` (the daemon plans every minute or so) and more than two shards
take to read (a time is known to within one). A reader that keeps its pace thus rewrites its
rows (some 240 of them for a thousand shards read by eight) about twenty times an epoch, not
every ``interval``: a catalog shared by many ranks is spared most of those writes. An
announcement lapses after ``ttl`` seconds, so a reader that dies stops counting soon; a live
one writes it again when it is half that old.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence

from tierstore.catalog import FETCHING
from tierstore.errors import TierstoreError
from tierstore.store import Store

from .index import ShardEntry
from .runtime import LoopThread

__all__ = ["DEFAULT_RATE", "TOLERANCE", "Announcer", "expected_times", "reader_id"]

log = logging.getLogger(__name__)
DEFAULT_RATE = 100e6  # bytes/s assumed before a reader has measured its own
TOLERANCE = 10.0  # seconds a due time may move by and still be the same to the daemon


def reader_id(placement_name: str) -> str:
    """``host:pid:rank/worker``: one announcement per reader process and placement."""
    return f"{socket.gethostname()}:{os.getpid()}:{placement_name}"


def expected_times(shards: Sequence[ShardEntry], now: float, rate: float
                   ) -> dict[str, float]:
    """When each shard will be opened, reading ``shards`` in order at ``rate`` bytes/s from
    ``now``; a shard read twice keeps its first time."""
    out: dict[str, float] = {}
    ahead = 0
    for shard in shards:
        out.setdefault(shard.key, now + ahead / rate)
        ahead += shard.size
    return out


class Announcer:
    """Announces one reader's remaining shards of this epoch and the next epoch's, on the
    reader's loop, until :meth:`close`.

    The reader calls :meth:`advance` as it opens each shard of ``shards``; ``started``
    tells how many its read-ahead has begun to read, ``filling`` whether it keeps what it
    fetches hot itself (read-through fill, with room). ``clock`` is the wall clock the times
    are announced in (a test passes a simulated one).
    """

    def __init__(self, store: Store, reader: str, shards: Sequence[ShardEntry],
                 following: Sequence[ShardEntry] = (), *, interval: float = 2.0,
                 ttl: float = 120.0, started: Callable[[], int] = lambda: 0,
                 ahead: Callable[[], int] = lambda: 0,
                 filling: Callable[[], bool] = lambda: False,
                 tolerance: float = TOLERANCE, clock: Callable[[], float] = time.time):
        self.store, self.reader = store, reader
        self.started = started  # how many of ``shards`` the reader's read-ahead has begun
        self.ahead = ahead  # bytes its read-ahead reads ahead of what it opens
        self.filling = filling  # whether it keeps what it fetches hot itself, now
        self.shards, self.following = list(shards), list(following)
        self.interval, self.ttl = interval, max(ttl, 3 * interval)
        self.tolerance, self.clock = tolerance, clock
        self.opened = 0  # shards of ``shards`` opened so far (written by the reader)
        self.announced = 0  # ``opened`` as of the last look at the announcement
        self._step = max(1, len(self.shards) // 16)
        every = self.shards + self.following
        self._shard_size = sum(s.size for s in every) / max(1, len(every))  # the mean
        self._bytes = 0
        self._started = clock()
        self._written: dict[str, float] = {}  # what the catalog holds, written at:
        self._written_at = -math.inf
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._loop: LoopThread | None = None
        self._future: concurrent.futures.Future[None] | None = None

    def start(self, loop: LoopThread) -> Announcer:
        """Announce now and every ``interval`` on ``loop``."""
        self._loop, self._future = loop, loop.submit(self._run())
        return self

    def advance(self, shard: ShardEntry) -> None:
        """The reader opened ``shard``."""
        self.opened += 1
        self._bytes += shard.size
        if self.opened - self.announced == self._step and self._loop is not None:
            self._loop.loop.call_soon_threadsafe(self._wake.set)

    def rate(self) -> float:
        """Bytes per second this reader has consumed (the default guess before any)."""
        elapsed = self.clock() - self._started
        return self._bytes / elapsed if self._bytes and elapsed > 0 else DEFAULT_RATE

    def uses(self, now: float) -> dict[str, float]:
        """The keys this reader reads next, and when it will fetch them: left of this epoch,
        then the next epoch's. A shard is fetched as far ahead of its opening as the
        read-ahead reads (``ahead``), so that is when a staged copy must have landed (a time
        already past: the reader is about to fetch it; the order stays as it reads). What it
        fetches itself is announced :data:`FETCHING` (nobody else should fetch it too): what
        its read-ahead has begun to read, and, while it keeps what it reads hot itself
        (``filling``: read-through fill with room on the hot tier), the rest of this epoch."""
        rate, filling = self.rate(), self.filling()
        started = max(self.opened, self.started())
        left = self.shards[started:]
        times = {} if filling else expected_times(left, now, rate)
        later = now + sum(s.size for s in left) / rate
        for key, at in expected_times(self.following, later, rate).items():
            times.setdefault(key, at)
        lead = self.ahead() / rate
        uses = {key: at - lead for key, at in times.items()} if lead else times
        mine = self.shards[self.opened:] if filling else self.shards[self.opened:started]
        uses.update(dict.fromkeys((s.key for s in mine), FETCHING))
        return uses

    def moved(self, uses: Mapping[str, float], now: float) -> int:
        """How many keys ``uses`` announces otherwise than the catalog holds: added, dropped,
        or due at a time that moved by more than a quarter of how far ahead it was, more than
        ``tolerance``, and more than two shards take to read (a time is known to within one:
        the read-ahead begins the next shard at some time before the current one is read)."""
        written = self._written
        floor = max(self.tolerance, 2 * self._shard_size / self.rate())
        moved = len(uses.keys() ^ written.keys())
        for key, due in uses.items():
            was = written.get(key)
            if was is not None and abs(due - was) > max(floor, (was - now) / 4):
                moved += 1
        return moved

    async def refresh(self, *, force: bool = False) -> bool:
        """Announce what this reader reads next when it moved materially (a sixteenth of
        the shards :meth:`moved`), when the last announcement is half its ``ttl`` old, or with
        ``force``; whether it was written."""
        now = self.clock()
        uses = self.uses(now)
        renew = not 0 <= now - self._written_at < self.ttl / 2  # or the clock went back
        if not (force or renew or self.moved(uses, now) >= self._step):
            return False
        try:
            await self.store.announce(self.reader, uses, ttl=self.ttl)
        except (TierstoreError, OSError) as exc:  # staging is a help, never a failure
            log.warning("could not announce the next reads of %s: %s", self.reader, exc)
            return False
        self._written, self._written_at = uses, now
        return True

    async def _run(self) -> None:
        while True:
            opened, stopping = self.opened, self._stop.is_set()
            await self.refresh(force=stopping)  # the last one is always written
            self.announced = opened
            if stopping:
                return
            self._wake.clear()
            if self.opened - self.announced >= self._step or self._stop.is_set():
                continue
            wake = asyncio.ensure_future(self._wake.wait())
            stop = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait((wake, stop), timeout=self.interval,
                               return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
            stop.cancel()

    def close(self, timeout: float = 5.0) -> None:
        """Stop, after a last announcement (of what is left: the next epoch's shards)."""
        future, self._future = self._future, None
        if future is None or self._loop is None:
            return
        self._loop.loop.call_soon_threadsafe(self._stop.set)
        try:
            future.result(timeout)
        except Exception as exc:  # never let staging break a training loop
            future.cancel()
            log.warning("announcer of %s did not stop cleanly: %s", self.reader, exc)
