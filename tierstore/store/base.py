"""The state the parts of the store share, and what each asks of another."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator
from typing import IO, Any, TypeVar

from ..access import AccessRecorder
from ..capacity import Capacity
from ..catalog import AsyncCatalog, Catalog, Fence, ObjectRecord, Replica, open_catalog
from ..config import Config, TierClass
from ..energy import EnergyModel
from ..errors import CatalogError, NoReadableReplica, ObjectNotFound, TierError, UnknownTier
from ..keys import validate_key
from ..locality.selector import Locality
from ..readcache import KnownRecords
from ..reports import ObjectInfo
from ..tier import Chunk, Tier

__all__ = ["FENCE", "Pace", "Source", "StoreBase", "finish", "once"]

log = logging.getLogger("tierstore.store")  # one logger for every part of the store
T = TypeVar("T")
Source = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes] | AsyncIterable[bytes]
Pace = Callable[[str, int], Awaitable[None]]  # (source tier, bytes about to be copied)

# The lease the current task's moves are made under (Store.fenced): their catalog writes
# carry it, and the catalog refuses them once the lease is lost.
FENCE: contextvars.ContextVar[Fence | None] = contextvars.ContextVar("fence", default=None)


class StoreBase(ABC):
    """What every part of the store shares: the config, the catalog, the tiers and
    the locality of replicas, who this process is, and the records it reads."""

    def __init__(self, config: Config, catalog: Catalog | None = None, *,
                 access_interval: float = 1.0):
        self.config = config
        self.catalog = catalog if catalog is not None else open_catalog(config.catalog)
        self.db = AsyncCatalog(self.catalog)  # the catalog, as coroutines call it
        self.tiers = {name: Tier(tier) for name, tier in config.tiers.items()}
        self.capacity = Capacity(self.db, {name: tier.capacity
                                           for name, tier in config.tiers.items()},
                                 owner=lambda: self.owner)
        self.recorder = AccessRecorder(self.catalog, interval=access_interval,
                                       site=config.site)
        self.fallbacks = 0  # reads served by a replica other than the first choice
        # Reads through cat() each tier served, and their bytes: hit rates per tier.
        self.reads_by_tier: Counter[str] = Counter()
        self.bytes_by_tier: Counter[str] = Counter()
        self.corrupt: list[tuple[str, str]] = []  # (key, tier) replicas found corrupt
        # Replacements of replicas found corrupt by a read (locality.repair_on_read).
        self.repairs: dict[tuple[str, str], asyncio.Task[None]] = {}
        # Replica ranking, endpoint health (EWMA, circuit breakers) and hedged reads.
        self.locality = Locality(config)
        self.energy = EnergyModel.from_config(config)  # what its bytes cost (estimates)
        self.known = KnownRecords()  # records read lately: reads while the catalog is away
        # Adopted objects whose files were last seen as adopted, and when (monotonic): a
        # copy of one is served without looking again for config.adopted_check seconds.
        self.adopted_seen: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"Store(tiers={list(self.tiers)}, catalog={self.catalog!r})"

    @staticmethod
    @contextlib.contextmanager
    def fenced(fence: Fence | None) -> Iterator[None]:
        """Make the moves started in this block run under a lease.

        The moves this task and the tasks it starts make in the block are made under the
        lease ``fence``: the catalog refuses their writes once it is lost.

        Parameters
        ----------
        fence : Fence or None
            The lease (a daemon's node or leader lease); None for no lease.

        Yields
        ------
        None
            Control, for the block's duration.

        Raises
        ------
        LeaseLost
            From a catalog write in the block, once the lease is lost.
        """
        token = FENCE.set(fence)
        try:
            yield
        finally:
            FENCE.reset(token)

    @property
    def owner(self) -> str:
        """Who this process is, as recorded on replicas it is working on."""
        return f"{socket.gethostname()}:{os.getpid()}"

    def tier(self, name: str) -> Tier:
        """The configured tier called ``name``.

        Parameters
        ----------
        name : str
            The tier's name in the config.

        Returns
        -------
        Tier
            Its backend.

        Raises
        ------
        UnknownTier
            If no tier of that name is configured.
        """
        try:
            return self.tiers[name]
        except KeyError:
            raise UnknownTier(name, list(self.tiers)) from None

    async def connect_tiers(self) -> None:
        """Make each tier's client now (:meth:`Tier.connect`).

        Processes forked afterwards inherit them made; a tier that cannot connect is left
        to its first request.
        """
        for tier in self.tiers.values():
            try:
                await tier.connect()
            except TierError as exc:
                log.debug("connecting tier %r ahead of its first request: %s", tier.name, exc)

    async def _ready(self, key: str) -> ObjectRecord:
        """The record of ``key``, an object with a ready replica (else ObjectNotFound)."""
        return _committed(key, await self.db.get(validate_key(key)))

    async def _readable(self, key: str) -> tuple[ObjectRecord, bool]:
        """The record a read goes by, and whether it is a remembered one: while the catalog
        cannot be reached, the one it gave lately (:mod:`tierstore.readcache`)."""
        try:
            return self._fresh(await self._ready(key))
        except CatalogError as exc:
            return self._recall(key, exc)

    def _readable_sync(self, key: str) -> tuple[ObjectRecord, bool]:
        """:meth:`_readable` for code off the event loop (a loader's worker threads)."""
        try:
            return self._fresh(_committed(key, self.catalog.get(validate_key(key))))
        except CatalogError as exc:
            return self._recall(key, exc)

    def _fresh(self, record: ObjectRecord) -> tuple[ObjectRecord, bool]:
        """A record the catalog just gave, remembered for when it cannot be reached."""
        self.known.put(record)
        return record, False

    def _recall(self, key: str, exc: CatalogError) -> tuple[ObjectRecord, bool]:
        """The record of ``key`` the catalog gave lately, while it fails with ``exc``."""
        remembered = self.known.get(key)
        if remembered is None:
            raise exc
        return remembered, True

    def _unreachable(self, record: ObjectRecord) -> NoReadableReplica:
        """The error of a read whose ready replicas are all on tiers this config does not
        list (other nodes' local disks)."""
        return NoReadableReplica(record.key, [
            (r.tier, TierError(r.tier, "read", f"not reachable from site "
                                               f"{self.config.site!r} (not in this config)"))
            for r in record.ready])

    def rank(self, record: ObjectRecord, nbytes: int | None = None) -> list[Replica]:
        """Rank an object's ready replicas, best first.

        The cost combines the static distance to each replica's site, its tier class and
        what this process measured of its endpoint; endpoints out of rotation come last
        (see :mod:`tierstore.locality`).

        Parameters
        ----------
        record : ObjectRecord
            The object's catalog record.
        nbytes : int, optional
            The bytes the read will take; the object's size if None.

        Returns
        -------
        list of Replica
            The ready replicas, best first.
        """
        size = (record.size or 0) if nbytes is None else nbytes
        return [s.replica for s in self.locality.rank(record.ready, size)]

    def hot_file(self, key: str) -> tuple[str, str] | None:
        """The local file of an object's best replica, when it is on a hot local tier.

        The file is that of ``key``'s best ready replica when that replica is on a hot tier
        in a local folder (the node's own disk); the access is recorded, as a read.

        It is for a reader that reads small ranges of an object straight from the file (a loader's
        samples, each when it is due): nothing vouches for the file after this returns, so
        that reader checks what it reads itself and reads through :meth:`cat` (which fails
        over) when the file is gone or its bytes do not match.

        Parameters
        ----------
        key : str
            The object's key.

        Returns
        -------
        tuple of (str, str) or None
            ``(tier, path)`` of the file, or None when the best replica is not a hot local
            one.

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        ObjectNotFound
            If no object with this key has a ready replica.
        CatalogError
            If the catalog cannot be reached and no record of ``key`` is remembered.
        """
        record, _ = self._readable_sync(key)  # it runs in a worker thread: no loop to spare
        ranked = self.rank(record)
        if not ranked or not (tier := self.tier(ranked[0].tier)).is_local \
                or tier.tier_class is not TierClass.HOT:
            return None
        self.recorder.record(record.key)
        return tier.name, tier.full_path(ranked[0].path)

    def count_read(self, tier: str, nbytes: int) -> None:
        """Count a read made outside :meth:`cat` (from a file :meth:`hot_file` named).

        It is counted in :attr:`reads_by_tier` and :attr:`bytes_by_tier`.

        Parameters
        ----------
        tier : str
            The tier read from.
        nbytes : int
            The bytes read.
        """
        self.reads_by_tier[tier] += 1
        self.bytes_by_tier[tier] += nbytes

    # -- what one part of the store asks of another ------------------------------------------

    @abstractmethod
    async def _transfer(self, record: ObjectRecord,
                        write: Callable[[AsyncIterable[Chunk]], Awaitable[T]],
                        pace: Pace | None = None, *, into: Tier | None = None) -> T:
        """Stream a whole verified object into ``write`` (:class:`.reads.ReadPath`)."""

    @abstractmethod
    def _repair_later(self, key: str, replica: Replica) -> None:
        """Replace, in the background, a replica a read found corrupt
        (:class:`.replicas.Replicas`)."""

    @abstractmethod
    async def stat(self, key: str) -> ObjectInfo:
        """What the store holds of ``key`` (:class:`tierstore.store.Store`).

        Parameters
        ----------
        key : str
            The object's key.

        Returns
        -------
        ObjectInfo
            Its size, checksum, pin, replicas and access statistics.
        """


def _committed(key: str, record: ObjectRecord | None) -> ObjectRecord:
    """``record``, when it is that of an object with a ready replica; else ObjectNotFound."""
    if record is None or not record.ready or record.size is None:
        raise ObjectNotFound(key)
    return record


async def finish(tasks: list[asyncio.Task[Any]], timeout: float) -> None:
    """Wait up to ``timeout`` for ``tasks``, then cancel what is left. A task may run on
    another thread's loop (a loader's reads share the caller's store): those are waited for
    by looking, and cancelled through their own loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := [t for t in tasks if not t.done()]) and loop.time() < deadline:
        here = [t for t in left if t.get_loop() is loop]
        if here:
            await asyncio.wait(here, timeout=0.05)
        else:
            await asyncio.sleep(0.01)
    for task in tasks:
        if not task.done():
            task.get_loop().call_soon_threadsafe(task.cancel)


def once(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn``, callable many times, run the first time only."""
    called = False

    def call() -> None:
        nonlocal called
        if not called:
            called = True
            fn()

    return call
