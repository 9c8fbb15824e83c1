"""The store: tierstore's async core, its read path, write path and crash-safe moves.

Every replica goes through one life (see :class:`~tierstore.catalog.ReplicaState`): its intent
is committed to the catalog before a byte is written, the bytes land under a temporary name,
are checked against size and checksum (hashed as they are handed to the kernel), take their
final name, are made durable, and only then are committed ``ready`` (on S3, whose writes are
all-or-nothing, they land under their final name and the server's MD5 ETag of what it received
vouches for them; where nothing vouches, they are read back: see ``_verify_written``); a
superseded replica is marked ``deleting`` before its bytes are removed.
So a process killed at any instant leaves every object with at least one verified replica, and
:meth:`Store.recover` finishes or rolls back what it was doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import math
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
)
from pathlib import Path
from typing import IO, Any, TypeVar

import aiofiles

from .access import AccessRecorder
from .capacity import Capacity, Reservation
from .catalog import (
    AccessStats,
    Catalog,
    Fence,
    ObjectRecord,
    PreloadRecord,
    Replica,
    ReplicaState,
    open_catalog,
)
from .checksum import Hasher, checksum
from .config import Config, TierClass, load_config
from .errors import (
    CatalogError,
    ChecksumMismatch,
    CopyInFlight,
    InvalidKey,
    NoReadableReplica,
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    ReplicaError,
    ReplicaReady,
    TierError,
    TierFull,
    TierstoreError,
    UnknownTier,
)
from .inflight import IN_FLIGHT
from .keys import RESERVED_PREFIX, validate_key, validate_prefix
from .localcopy import LocalFile
from .locality.placement import place_after_put
from .locality.selector import Locality
from .locality.topology import Distance
from .readcache import KnownRecords
from .reports import (
    AdoptReport,
    AuditReport,
    ObjectInfo,
    RecoveryReport,
    ReplicaInfo,
    TierReport,
)
from .tier import PART_SIZE, PROBE_DIR, Chunk, Tier

__all__ = ["AdoptReport", "AuditReport", "FillClaim", "ObjectInfo", "RecoveryReport",
           "ReplicaInfo", "Store", "TierReport"]

log = logging.getLogger(__name__)
T = TypeVar("T")
ADOPT_BATCH = 256  # objects adopted per catalog transaction
Source = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes] | AsyncIterable[bytes]
Pace = Callable[[str, int], Awaitable[None]]  # (source tier, bytes about to be copied)
# fill_room reads the catalog afresh when fewer than this many fills of room are left (others
# may have claimed some since the count it holds, at most Capacity.max_age old: two workers
# reading from Ceph claim ~6 shards of 64 MiB a second, and with 4 the hot tier overshot its
# high watermark to 92-100% and the daemon shed the excess, to be fetched again next epoch)
FILL_MARGIN = 16
# Work owned by another host is presumed dead when its row has had no heartbeat this long
# (a live owner refreshes the rows of its pending replicas: tierstore.inflight).
STALE_OWNER_SECONDS = 3600.0
# The lease the current task's moves are made under (Store.fenced): their catalog writes
# carry it, and the catalog refuses them once the lease is lost.
_FENCE: contextvars.ContextVar[Fence | None] = contextvars.ContextVar("fence", default=None)


class _SourceFailed(Exception):
    """Raised through a destination write when the replica being read from fails."""

    def __init__(self, tier: str, cause: BaseException):
        super().__init__(f"{tier}: {cause}")
        self.tier = tier
        self.cause = cause


class Store:
    """Objects on tiers, as one namespace of keys.

    Every method is a coroutine; :class:`tierstore.SyncStore` wraps them for blocking code.
    """

    def __init__(self, config: Config, catalog: Catalog | None = None, *,
                 access_interval: float = 1.0):
        self.config = config
        self.catalog = catalog if catalog is not None else open_catalog(config.catalog)
        self.tiers = {name: Tier(tier) for name, tier in config.tiers.items()}
        self.capacity = Capacity(self.catalog, {name: tier.capacity
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
        self.known = KnownRecords()  # records read lately: reads while the catalog is away

    @classmethod
    async def connect(cls, config: Config | str | os.PathLike[str] | None = None, *,
                      recover: bool = True) -> Store:
        """Open the store a config describes and recover interrupted work of dead processes."""
        store = cls(config if isinstance(config, Config) else load_config(config))
        if recover:
            await store.recover()
        return store

    def __repr__(self) -> str:
        return f"Store(tiers={list(self.tiers)}, catalog={self.catalog!r})"

    @staticmethod
    @contextlib.contextmanager
    def fenced(fence: Fence | None) -> Iterator[None]:
        """Make the moves started in this block (this task and the tasks it starts) under
        the lease ``fence``: the catalog refuses their writes (LeaseLost) once it is lost."""
        token = _FENCE.set(fence)
        try:
            yield
        finally:
            _FENCE.reset(token)

    @property
    def owner(self) -> str:
        """Who this process is, as recorded on replicas it is working on."""
        return f"{socket.gethostname()}:{os.getpid()}"

    def tier(self, name: str) -> Tier:
        try:
            return self.tiers[name]
        except KeyError:
            raise UnknownTier(name, list(self.tiers)) from None

    async def connect_tiers(self) -> None:
        """Make each tier's client now (:meth:`Tier.connect`), so that processes forked
        afterwards inherit them made; a tier that cannot is left to its first request."""
        for tier in self.tiers.values():
            try:
                await tier.connect()
            except TierError as exc:
                log.debug("connecting tier %r ahead of its first request: %s", tier.name, exc)

    async def close(self) -> None:
        """Flush access statistics, close client sessions and catalog connections."""
        if self.repairs:  # replacements of corrupt replicas: a while to finish
            await _finish(list(self.repairs.values()), timeout=30.0)
        self.recorder.close()
        for tier in self.tiers.values():
            await tier.close()
        self.catalog.close()

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Catalog writes wait on other writers, so they leave the event loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    # -- the read path ---------------------------------------------------------------------

    def _ready(self, key: str) -> ObjectRecord:
        record = self.catalog.get(validate_key(key))
        if record is None or not record.ready or record.size is None:
            raise ObjectNotFound(key)
        return record

    def _readable(self, key: str) -> tuple[ObjectRecord, bool]:
        """The record a read goes by, and whether it is a remembered one: while the catalog
        cannot be reached, the one it gave lately (:mod:`tierstore.readcache`)."""
        try:
            record = self._ready(key)
        except CatalogError:
            remembered = self.known.get(key)
            if remembered is None:
                raise
            return remembered, True
        self.known.put(record)
        return record, False

    def _unreachable(self, record: ObjectRecord) -> NoReadableReplica:
        """The error of a read whose ready replicas are all on tiers this config does not
        list (other nodes' local disks)."""
        return NoReadableReplica(record.key, [
            (r.tier, TierError(r.tier, "read", f"not reachable from site "
                                               f"{self.config.site!r} (not in this config)"))
            for r in record.ready])

    def rank(self, record: ObjectRecord, nbytes: int | None = None) -> list[Replica]:
        """Ready replicas, best first, by a cost combining the static distance to each
        replica's site, its tier class and what this process measured of its endpoint;
        endpoints out of rotation last (see :mod:`tierstore.locality`)."""
        size = (record.size or 0) if nbytes is None else nbytes
        return [s.replica for s in self.locality.rank(record.ready, size)]

    def hot_file(self, key: str) -> tuple[str, str] | None:
        """``(tier, path)`` of the file of ``key``'s best ready replica, when that replica is
        on a hot tier in a local folder (the node's own disk), else None; the access is
        recorded, as a read.

        For a reader that reads small ranges of an object straight from the file (a loader's
        samples, each when it is due): nothing vouches for the file after this returns, so
        that reader checks what it reads itself and reads through :meth:`cat` (which fails
        over) when the file is gone or its bytes do not match.
        """
        record, _ = self._readable(key)
        ranked = self.rank(record)
        if not ranked or (tier := self.tier(ranked[0].tier)).protocol != "file" \
                or tier.tier_class is not TierClass.HOT:
            return None
        self.recorder.record(record.key)
        return tier.name, tier.full_path(ranked[0].path)

    def count_read(self, tier: str, nbytes: int) -> None:
        """Count a read of ``nbytes`` from ``tier`` made outside :meth:`cat` (from a file
        :meth:`hot_file` named) in :attr:`reads_by_tier` and :attr:`bytes_by_tier`."""
        self.reads_by_tier[tier] += 1
        self.bytes_by_tier[tier] += nbytes

    def _fallback(self, key: str, replica: Replica, exc: BaseException) -> None:
        self.fallbacks += 1
        if isinstance(exc, ChecksumMismatch):
            self.corrupt.append((key, replica.tier))
        log.warning("read of %r from tier %r failed, trying the next replica: %s",
                    key, replica.tier, exc)

    async def cat(self, key: str, start: int | None = None, end: int | None = None, *,
                  verify: bool | None = None) -> bytes:
        """Bytes ``[start, end)`` of ``key`` (negative offsets count from the end).

        Reads the best ready replica and fails over to the next on an error, a timeout or
        (for whole-object reads with ``verify``, default ``config.verify_reads``) a checksum
        mismatch. The read is recorded as an access.
        """
        return bytes(await self._read(key, start, end, verify, None))

    async def cat_into(self, key: str, into: memoryview, start: int = 0) -> int:
        """:meth:`cat` of ``key`` from ``start`` into ``into`` (``len(into)`` bytes, fewer
        at the object's end) instead of new memory; how many. Partial reads are not
        verified (the caller checks what it assembles), and a failed read may leave
        ``into`` partly written."""
        return len(await self._read(key, start, start + len(into), False, into))

    async def _read(self, key: str, start: int | None, end: int | None, verify: bool | None,
                    into: memoryview | None) -> bytes | memoryview:
        record, remembered = self._readable(key)
        size = record.size or 0
        lo, hi = _clamp(start, end, size)
        check = lo == 0 and hi == size and (remembered or (
            self.config.verify_reads if verify is None else verify))

        async def fetch(replica: Replica) -> bytes | memoryview:
            tier = self.tier(replica.tier)
            data: bytes | memoryview
            try:
                if hi <= lo:
                    data = b""
                elif into is None:
                    data = await tier.read(replica.path, lo, hi)
                else:
                    data = into[:await tier.read_into(replica.path, lo, into[:hi - lo])]
                if len(data) != hi - lo:
                    raise TierError(replica.tier, "read", f"short read ({len(data)} of "
                                                          f"{hi - lo} bytes)")
                if check and (actual := checksum(data)) != record.checksum:
                    raise ChecksumMismatch(key, replica.tier, str(record.checksum), actual)
            except (ChecksumMismatch, FileNotFoundError, TierError) as exc:
                await self._refuse_if_changed(record, replica, exc)
                raise
            return data

        # The best replica, failover, a deadline and hedging: tierstore.locality.
        ranked = self.locality.rank(record.ready, hi - lo)
        if not ranked:
            raise self._unreachable(record)
        corrupt: list[Replica] = []

        def failed(replica: Replica, exc: BaseException) -> None:
            if isinstance(exc, ChecksumMismatch):
                corrupt.append(replica)
            self._fallback(key, replica, exc)

        served, data = await self.locality.read(key, ranked, fetch, hi - lo, failed)
        if self.config.locality.repair_on_read:  # served verified: a good source is known
            for replica in corrupt:
                self._repair_later(key, replica)
        self.recorder.record(record.key)
        self.reads_by_tier[served.tier] += 1
        self.bytes_by_tier[served.tier] += len(data)
        return data

    async def _refuse_if_changed(self, record: ObjectRecord, replica: Replica,
                                 exc: BaseException) -> None:
        """Raise :class:`ObjectChanged` if ``replica`` failed to read whole or true (``exc``)
        because it is an adopted file written over or removed behind the store's back: then
        the object's other replicas hold what it was, and failing over to them would serve
        stale bytes. Any other failure (corruption, an outage) returns, to fail over."""
        if not isinstance(exc, ChecksumMismatch | FileNotFoundError) and not (
                isinstance(exc, TierError) and "short read" in str(exc)):
            return
        tracked = (await self._db(self.catalog.adopted, replica.tier, record.key)).get(
            record.key)
        if tracked is None or tracked[0] != replica.id:
            return
        try:
            now = await self.tier(replica.tier).version(replica.path)
        except (TierstoreError, OSError):
            return  # cannot tell: an outage, failed over as any
        if now is None:
            raise ObjectChanged(record.key, replica.tier, record.key, "its file is gone")
        size, version = now
        if size != record.size or (version is not None and version != tracked[1]):
            raise ObjectChanged(record.key, replica.tier, record.key,
                                f"{size} bytes now, {record.size} then")

    async def _transfer(self, record: ObjectRecord,
                        write: Callable[[AsyncIterable[Chunk]], Awaitable[T]],
                        pace: Pace | None = None, *, into: Tier | None = None) -> T:
        """Stream a whole verified object into ``write``, failing over between replicas.

        The stream raises :class:`_SourceFailed` at its end if the bytes do not match the
        catalog, so ``write`` never commits a corrupt copy; errors of ``write`` itself (the
        destination) propagate at once. When ``write`` writes to the local tier ``into``
        from a local replica, the stream comes as that replica's :class:`LocalFile`, which
        ``into`` copies in the kernel (where the copy does not land the checksum, it streams).
        """
        failures: list[tuple[str, BaseException]] = []
        for replica in self.rank(record):
            stream: AsyncIterable[Chunk] = self._verified_stream(record, replica, pace)
            source = self.tier(replica.tier)
            if into is not None and into.protocol == source.protocol == "file":
                stream = LocalFile(source.full_path(replica.path), record.size or 0,
                                   str(record.checksum), stream,
                                   None if pace is None else functools.partial(pace, source.name))
            try:
                return await write(stream)
            except _SourceFailed as failed:
                await self._refuse_if_changed(record, replica, failed.cause)
                failures.append((failed.tier, failed.cause))
                self._fallback(record.key, replica, failed.cause)
        raise NoReadableReplica(record.key, failures) if failures else self._unreachable(record)

    async def _verified_stream(self, record: ObjectRecord, replica: Replica,
                               pace: Pace | None = None) -> AsyncIterator[Chunk]:
        hasher = Hasher()
        try:
            tier = self.tier(replica.tier)
            async for chunk in tier.iter_read(replica.path, record.size or 0):
                hasher.update(chunk)
                if pace is not None:
                    await pace(replica.tier, len(chunk))
                yield chunk
            if hasher.size != record.size:
                raise TierError(replica.tier, "read", f"{hasher.size} bytes, expected "
                                                      f"{record.size}")
            if hasher.hexdigest() != record.checksum:
                raise ChecksumMismatch(record.key, replica.tier, str(record.checksum),
                                       hasher.hexdigest())
        except (TierstoreError, OSError) as exc:
            raise _SourceFailed(replica.tier, exc) from exc

    async def get(self, key: str, local_path: str | os.PathLike[str]) -> None:
        """Copy ``key`` to a local file, verified, replacing the file only when complete."""
        record, _ = self._readable(key)
        target = Path(local_path)
        partial = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")

        async def write(chunks: AsyncIterable[Chunk]) -> None:
            async with aiofiles.open(partial, "wb") as out:
                async for chunk in chunks:
                    await out.write(chunk)

        try:
            await self._transfer(record, write)
            os.replace(partial, target)
        except OSError as exc:
            if exc.filename not in (str(partial), partial):
                raise
            # the error is the destination's: name it, not the hidden file it is written as
            raise type(exc)(exc.errno, exc.strerror, str(target)) from None
        finally:
            partial.unlink(missing_ok=True)
        self.recorder.record(record.key)

    # -- the write path --------------------------------------------------------------------

    async def put(self, key: str, source: Source, *, tier: str | None = None,
                  overwrite: bool = False) -> ObjectInfo:
        """Write an object to ``tier`` (default: the config's ``default_tier``).

        ``source`` is bytes, a local file path, a binary file object or an async iterable of
        bytes; it is streamed, never held whole in memory. The checksum is computed on the
        way in and the written bytes are checked (see ``_verify_written``) before the object
        exists.
        Replacing an existing key needs ``overwrite=True``; its old replicas go only after the
        new one is committed.
        """
        validate_key(key)
        dest = self.tier(tier or self.config.default_tier)
        existing = self.catalog.get(key)
        if existing is not None and existing.ready and not overwrite:
            raise ObjectExists(key)
        self._refuse_folder_clash(key)
        hasher = Hasher()

        async def hashed() -> AsyncIterator[bytes]:
            async for chunk in _chunks(source):
                hasher.update(chunk)
                yield chunk

        replaced = existing.size if existing is not None and existing.on(dest.name) else None
        await self._retire(key, await self._write_replica(
            key, dest, hashed(), lambda: (hasher.size, hasher.hexdigest()), new_content=True,
            size=_size_of(source), freed=replaced or 0))
        await place_after_put(self, key, dest.name)  # [locality.placement]: extra replicas
        return await self.stat(key)

    def _refuse_folder_clash(self, key: str) -> None:
        """A key cannot also be a folder of keys: local tiers could not hold both."""
        parts = key.split("/")
        for depth in range(1, len(parts)):
            parent = self.catalog.get("/".join(parts[:depth]))
            if parent is not None and parent.ready:
                raise ObjectExists(parent.key, f"it is an object, so {key!r} cannot be put "
                                               "under it as a folder")
        if any(r.ready for r in self.catalog.objects(key + "/")):
            raise ObjectExists(key, "it is a folder of objects, so it cannot be one too")

    async def _write_replica(self, key: str, dest: Tier, chunks: AsyncIterable[Chunk],
                             expected: Callable[[], tuple[int, str]], *, new_content: bool,
                             size: int | None = None, freed: int = 0,
                             retire: Collection[str] = ()) -> list[Replica]:
        """The one way bytes become a replica: room within the tier's capacity (``size``
        bytes, None if unknown, freeing ``freed``), intent, temp write, verify, rename,
        commit. A name or size the tier refuses is refused before the intent is recorded.
        Returns the replicas the commit made ``deleting`` (see :meth:`_fill_replica`)."""
        async with self._intent(key, dest, new_content=new_content, size=size,
                                freed=freed) as (replica, room):
            if room is not None and not isinstance(chunks, LocalFile):  # its size is reserved
                chunks = room.counted(chunks)
            return await self._fill_replica(key, dest, replica, chunks, expected,
                                            new_content=new_content, retire=retire)

    @contextlib.asynccontextmanager
    async def _intent(self, key: str, dest: Tier, *, new_content: bool, size: int | None,
                      freed: int = 0, mark: bool = False
                      ) -> AsyncIterator[tuple[Replica, Reservation | None]]:
        """Room on ``dest`` and the catalog's ``copying`` row of a replica about to be
        written there, held as this process's work while the block runs (the block commits
        or discards the row). :class:`CopyInFlight` if another copy there is under way.
        With ``mark``, a row that writes nothing and counts no room (a fetch's mark)."""
        dest.full_path(key)  # a local tier refuses a path through a link planted in it
        async with self.capacity.reserve(dest.name, key, size, freed=freed) as room:
            tmp = Tier.partial_path(key, mark=mark)
            begin = asyncio.ensure_future(self._db(
                self.catalog.begin_replica, key, dest.name, tmp=tmp, new_content=new_content,
                owner=self.owner, fence=_FENCE.get()))
            try:
                replica = await asyncio.shield(begin)
            except asyncio.CancelledError:  # the intent may commit anyway: take it back now
                with contextlib.suppress(Exception):
                    await self._discard(key, await begin)
                raise
            with self._working(replica):
                yield replica, room

    @contextlib.contextmanager
    def _working(self, replica: Replica) -> Iterator[None]:
        """Mark ``replica`` as this process's work in progress: recovery in this process
        leaves it alone, and its row's heartbeat tells other hosts its owner is alive."""
        token = IN_FLIGHT.add(self.catalog, replica)
        try:
            yield
        finally:
            IN_FLIGHT.discard(token)

    async def _fill_replica(self, key: str, dest: Tier, replica: Replica,
                            chunks: AsyncIterable[Chunk],
                            expected: Callable[[], tuple[int, str]], *, new_content: bool,
                            retire: Collection[str] = ()) -> list[Replica]:
        """Write, verify and commit ``replica``; the replicas its commit made ``deleting``,
        for the caller to :meth:`_retire`: a put's old ones, a copy's on the tiers named in
        ``retire`` (a move's source; see :meth:`Catalog.commit_replica`)."""
        tmp = str(replica.tmp)
        # Where a write shows all or nothing (S3), the bytes go to their final name at once
        # (no rename, which S3 does as a server-side copy): the copying row names that path,
        # so readers never see it and recovery removes it, as it would the temporary name.
        target = replica.path if dest.atomic_writes else tmp
        try:
            await dest.write(target, chunks)
            size, digest = expected()
            await self._verify_written(dest, key, target, size, digest)
            if replica.path != target:
                await dest.rename(target, replica.path)
                if (landed := await dest.size(replica.path)) != size:
                    raise TierError(dest.name, "rename", f"{landed} bytes after rename, "
                                                         f"expected {size}")
            await dest.sync(replica.path)  # durable before a commit lets old bytes go
            return await self._db(self.catalog.commit_replica, replica.id,
                                  owner=replica.owner, size=size, checksum=digest,
                                  new_content=new_content, retire=retire, fence=_FENCE.get())
        except BaseException:
            await asyncio.shield(self._discard(key, replica))
            raise

    async def _verify_written(self, dest: Tier, key: str, path: str, size: int,
                              digest: str) -> None:
        """Check what was just written: the size first, then every byte. The bytes are read
        back, unless the tier vouches for them (S3: the server's MD5 ETag of what it received
        is the MD5 of the bytes sent, which ``digest`` was checked against as they streamed;
        a local folder: what was handed to the kernel hashes to ``digest``; see
        :meth:`Tier.written_size`)."""
        landed, vouched = await dest.written_size(path, digest)
        if landed != size:
            raise TierError(dest.name, "verify", f"{landed} bytes landed, expected {size}")
        if not vouched:
            await self._read_back(dest, key, path, size, digest)

    async def _read_back(self, dest: Tier, key: str, path: str, size: int, digest: str
                         ) -> None:
        """Read every byte of ``path`` and check it against ``digest``."""
        hasher = await dest.hash(path, size)
        if hasher.size != size:
            raise TierError(dest.name, "verify", f"{hasher.size} bytes read back, expected "
                                                 f"{size}")
        if hasher.hexdigest() != digest:
            raise ChecksumMismatch(key, dest.name, digest, hasher.hexdigest())

    async def _discard(self, key: str, replica: Replica) -> bool:
        """Roll back an uncommitted replica; if the tier refuses, recovery will.

        Only this replica's own row and paths are touched: its temporary name is its alone
        (a fresh one per write); its final name only while the catalog still says the row is
        exactly ``replica`` (if recovery took the work over, that path may since be another
        replica's)."""
        try:
            tier = self.tier(replica.tier)
            if replica.tmp:
                await _remove_partial(tier, replica.tmp)
            if replica.path != replica.tmp and await self._owned(key, replica):
                await tier.abort_uploads(replica.path)  # S3 writes go to the path directly
                await tier.remove(replica.path)
            await self._db(self.catalog.forget_replica, replica)
        except Exception as exc:
            log.warning("could not roll back replica of %r on %r (recovery will): %s",
                        key, replica.tier, exc)
            return False
        return True

    async def _retire(self, key: str, replicas: Iterable[Replica]) -> None:
        """Remove replicas this process marked ``deleting``, each as its work in flight."""
        for replica in replicas:
            with self._working(replica):
                await self._remove(key, replica)

    async def _remove(self, key: str, replica: Replica) -> None:
        """Remove a ``deleting`` replica's bytes, then its row (only while it is exactly
        ``replica``, as :meth:`_discard`)."""
        if not await self._owned(key, replica):
            return
        tier = self.tier(replica.tier)
        await tier.remove(replica.path)
        if replica.tmp and replica.tmp != replica.path:
            await tier.remove(replica.tmp)
        await self._db(self.catalog.forget_replica, replica)

    async def _owned(self, key: str, replica: Replica) -> bool:
        """Whether the catalog still holds ``replica`` as it is: same id, owner and state."""
        record = await self._db(self.catalog.get, key)
        return record is not None and any(
            (r.id, r.owner, r.state) == (replica.id, replica.owner, replica.state)
            for r in record.replicas)

    # -- replicas and moves ----------------------------------------------------------------

    async def add_replica(self, key: str, tier: str, *, pace: Pace | None = None,
                          retire: Collection[str] = ()) -> ObjectInfo:
        """Copy ``key`` to ``tier`` too, as :meth:`replicate` does; what it is now."""
        await self.replicate(key, tier, pace=pace, retire=retire)
        return await self.stat(key)

    async def replicate(self, key: str, tier: str, *, pace: Pace | None = None,
                        retire: Collection[str] = (),
                        copied: Callable[[], None] | None = None) -> None:
        """Copy ``key`` to ``tier`` too (verified); nothing to copy when a ready replica is
        there already, also one that landed meanwhile (a reader's read-through fill committed
        between this copy's look and its intent).

        ``pace(source_tier, nbytes)`` is awaited before each chunk is written: a rate limit
        (the daemon's bandwidth cap) or a progress hook. ``retire``: tiers whose replicas go
        once the copy is there (a move), as :meth:`drop_replica` would drop them, but marked
        ``deleting`` in the copy's own commit (one durable transaction, not two). ``copied``
        is called once the copy is committed, before those replicas are removed.
        """
        record = self._ready(key)
        dest = self.tier(tier)
        retire = [name for name in retire if self.tier(name).name != dest.name]
        retired: list[Replica] = []
        if record.on(dest.name) is None:
            expected = (record.size or 0, str(record.checksum))

            async def write(chunks: AsyncIterable[Chunk]) -> None:
                retired[:] = await self._write_replica(
                    record.key, dest, chunks, lambda: expected, new_content=False,
                    size=record.size, retire=retire)

            with contextlib.suppress(ReplicaReady):
                await self._transfer(record, write, pace, into=dest)
        if copied is not None:
            copied()
        await self._retire(key, retired)
        for name in set(retire) - {replica.tier for replica in retired}:
            if (current := self._ready(key)).on(name) is not None:  # the copy was there
                await self.drop_replica(current.key, name)  # already, or the tier is pinned

    @property
    def fill_tier(self) -> str | None:
        """Where readers' bytes are kept (read-through fill): this node's hot tier."""
        local = sorted(name for name, t in self.tiers.items() if t.tier_class is TierClass.HOT
                       and self.locality.distances.get(name) == Distance.NODE)
        return local[0] if local else None

    async def claim_fill(self, key: str) -> FillClaim | None:
        """Read-through fill, before a reader fetches the whole of ``key`` from a slower
        tier: a claim that makes the fetched bytes its replica on :attr:`fill_tier` too
        (:meth:`FillClaim.commit`), so that they cross from the slower tier once. Taken
        before the fetch, the claim is the catalog's ``copying`` row there: the daemon's
        staging copy and the node's other readers find the copy in flight instead of
        fetching the same bytes (they :meth:`wait_for_copy`). Without room for the bytes
        under the high watermark (:meth:`fill_room`) the claim only marks the fetch
        (:attr:`FillClaim.fills` False), and is released after it. None when there is
        nothing to claim: no fill tier, a replica there already, or the room for a fill
        went. :class:`CopyInFlight` when another copy there is under way."""
        tier = self.fill_tier
        record = self.catalog.get(validate_key(key))
        if tier is None or record is None or not record.ready or record.on(tier) is not None:
            return None
        dest, size = self.tier(tier), record.size or 0
        fill = await self.fill_room(size)
        stack = contextlib.AsyncExitStack()
        try:
            replica, _ = await stack.enter_async_context(
                self._intent(record.key, dest, new_content=False, size=size if fill else None,
                             mark=not fill))
        except CopyInFlight:
            raise
        except (ReplicaError, TierFull):  # the object changed meanwhile, or the room went
            return None
        return FillClaim(self, record, dest, replica, stack, fills=fill)

    async def fill_room(self, nbytes: int) -> bool:
        """Whether :attr:`fill_tier` has room for ``nbytes`` more under its high watermark,
        counting every process's copies in flight there: the catalog is read afresh when the
        count this process holds leaves less than a few such fills of room."""
        tier = self.fill_tier
        if tier is None:
            return False
        config = self.tier(tier).config
        if config.capacity is None:
            return True
        limit = config.high_watermark * config.capacity
        used = await self.capacity.used(tier)
        if limit - used < FILL_MARGIN * nbytes:
            used = await self.capacity.used(tier, fresh=True)
        return used + nbytes <= limit

    async def wait_for_copy(self, key: str, tier: str, timeout: float, *,
                            poll: float = 0.02) -> bool:
        """Wait, ``timeout`` seconds at most, while a copy of ``key`` to ``tier`` is in
        flight; whether a ready replica is there now."""
        deadline = time.monotonic() + timeout
        while True:
            record = await self._db(self.catalog.get, validate_key(key))
            if record is None or record.on(tier) is not None:
                return record is not None
            if record.on(tier, ReplicaState.COPYING) is None or time.monotonic() > deadline:
                return False
            await asyncio.sleep(poll)

    async def drop_replica(self, key: str, tier: str) -> ObjectInfo:
        """Remove ``key``'s replica on ``tier``; never its last one, never its pinned one."""
        record = self._ready(key)
        replica = record.on(self.tier(tier).name)
        if replica is None:
            raise ReplicaError(f"{key!r} has no ready replica on tier {tier!r}")
        if record.pinned == tier:
            raise ReplicaError(f"{key!r} is pinned to tier {tier!r}; unpin it first")
        marked = await self._db(self.catalog.mark_deleting, replica.id, owner=self.owner,
                                fence=_FENCE.get())
        await self._retire(key, [marked])
        return await self.stat(key)

    async def move(self, key: str, tier: str) -> ObjectInfo:
        """Leave ``key`` with one replica, on ``tier``: copy, verify, commit, then delete."""
        record = self._ready(key)
        self.tier(tier)
        if record.pinned is not None and record.pinned != tier:
            raise ReplicaError(f"{key!r} is pinned to tier {record.pinned!r}; unpin it first")
        return await self.add_replica(key, tier, retire=[r.tier for r in record.ready])

    async def pin(self, key: str, tier: str | None = None) -> ObjectInfo:
        """Pin ``key`` to ``tier`` (default: its best current tier), copying it there first."""
        record = self._ready(key)
        target = tier or self.rank(record)[0].tier
        await self.replicate(key, target)
        await self._db(self.catalog.set_pin, record.key, target)
        return await self.stat(key)

    async def unpin(self, key: str) -> ObjectInfo:
        record = self._ready(key)
        await self._db(self.catalog.set_pin, record.key, None)
        return await self.stat(key)

    # -- what will be read: next-use announcements and scheduled pre-loads ---------------

    async def announce(self, reader: str, uses: Mapping[str, float], *,
                       ttl: float = 3600.0) -> None:
        """Tell the daemon that ``reader`` will read these keys at these times (seconds since
        the epoch), replacing what it announced before; it counts for ``ttl`` seconds. The
        daemon's next-use policy stages what is read soonest into the hot tier. An empty
        ``uses`` withdraws the announcement."""
        for key in uses:
            validate_key(key)
        await self._db(self.catalog.announce, reader, dict(uses), expires=time.time() + ttl,
                       site=self.config.site)

    async def schedule_preload(self, prefix: str, tier: str, deadline: float, *,
                               lead: float | None = None, hold: float = 86400.0
                               ) -> PreloadRecord:
        """Have every object under ``prefix`` on ``tier`` by ``deadline`` (the daemon stages
        them from ``deadline - lead``, at once if ``lead`` is None, and keeps them there
        until ``deadline + hold``); replaces a pre-load of the same prefix and tier."""
        self.tier(tier)
        name = validate_prefix(prefix)
        if not (math.isfinite(deadline) and hold >= 0 and (lead is None or lead >= 0)):
            raise ValueError("expected a finite deadline and lead and hold of 0 s or more")
        record = PreloadRecord(name, tier, deadline, lead, hold, time.time())
        await self._db(self.catalog.add_preload, record)
        return record

    async def preloads(self) -> list[PreloadRecord]:
        """Scheduled pre-loads, earliest deadline first."""
        return await self._db(self.catalog.preloads)

    async def cancel_preload(self, prefix: str, tier: str | None = None) -> int:
        """Cancel the pre-loads of ``prefix`` (to ``tier`` only, if given); how many."""
        return await self._db(self.catalog.remove_preload, validate_prefix(prefix), tier)

    async def rm(self, key: str) -> None:
        """Delete ``key`` and all its replicas."""
        validate_key(key)
        await self._retire(key, await self._db(self.catalog.begin_delete, key,
                                               owner=self.owner))

    # -- listing and metadata --------------------------------------------------------------

    async def stat(self, key: str) -> ObjectInfo:
        """An object's size, checksum, pin, replicas per tier and access statistics."""
        record = self._ready(key)
        await asyncio.to_thread(self.recorder.flush)
        return self._info(record, self.catalog.access([record.key]).get(record.key))

    def _info(self, record: ObjectRecord, access: AccessStats | None) -> ObjectInfo:
        replicas = []
        ranked = {s.replica.id: (n, s) for n, s in enumerate(
            self.locality.rank(record.ready, record.size or 0), 1)}
        for replica in record.replicas:
            tier = self.tiers.get(replica.tier)
            place, scored = ranked.get(replica.id, (None, None))
            health = self.locality.snapshot(replica.tier)
            replicas.append(ReplicaInfo(
                replica.tier, tier.tier_class.name.lower() if tier else "unknown",
                tier.config.site if tier else "unknown", str(replica.state), replica.path,
                distance=str(self.locality.distances.get(replica.tier, "-")),
                score_ms=None if scored is None else round(scored.cost_ms, 3),
                rank=place,
                latency_ms=None if health is None or health.latency_ms is None
                else round(health.latency_ms, 3),
                p95_ms=None if health is None or health.p95_ms is None
                else round(health.p95_ms, 3),
                health=health.state if health else "unknown"))
        return ObjectInfo(record.key, record.size or 0, str(record.checksum), record.created,
                          record.pinned, tuple(replicas), access)

    async def exists(self, key: str) -> bool:
        record = self.catalog.get(validate_key(key))
        return record is not None and bool(record.ready)

    async def find(self, prefix: str = "") -> list[str]:
        """Every key that starts with ``prefix`` (a plain string prefix), sorted."""
        if prefix:
            validate_prefix(prefix)
        return [r.key for r in self.catalog.objects(prefix) if r.ready]

    async def ls(self, path: str = "") -> list[dict[str, Any]]:
        """The entries directly under ``path``, as fsspec lists them: files and folders."""
        if path and await self.exists(path.rstrip("/")):
            return [self._entry(self._ready(path.rstrip("/")))]
        prefix = validate_prefix(path.rstrip("/") + "/") if path.strip("/") else ""
        entries: dict[str, dict[str, Any]] = {}
        for record in self.catalog.objects(prefix):
            if not record.ready:
                continue
            head, sep, _ = record.key[len(prefix):].partition("/")
            if sep:
                folder = entries.setdefault(prefix + head, {"name": prefix + head, "size": 0,
                                                            "type": "directory"})
                if folder["type"] == "directory":  # not an object of the same name
                    folder["size"] += record.size or 0
            else:
                entries[record.key] = self._entry(record)
        if path.strip("/") and not entries:
            raise ObjectNotFound(path)
        return list(entries.values())

    def _entry(self, record: ObjectRecord) -> dict[str, Any]:
        return {"name": record.key, "size": record.size, "type": "file",
                "checksum": record.checksum, "created": record.created,
                "tiers": [r.tier for r in self.rank(record)]}

    async def usage(self) -> list[TierReport]:
        """Objects and bytes per configured tier, against capacity and watermarks (``du``)."""
        held = {u.tier: u for u in self.catalog.usage()}
        return [TierReport(name, tier.tier_class.name.lower(), tier.config.url,
                           held[name].objects if name in held else 0,
                           held[name].bytes if name in held else 0, tier.config.capacity,
                           tier.config.high_watermark, tier.config.low_watermark)
                for name, tier in self.tiers.items()]

    # -- recovery and audit ----------------------------------------------------------------

    def _owner_alive(self, replica: Replica, now: float) -> bool:
        """Whether the process that owns ``replica`` may still be working on it: on this
        host, while it runs (however long its copy takes); on another, while the row's
        heartbeat is fresh."""
        host, _, pid = replica.owner.rpartition(":")
        if host != socket.gethostname():
            return now - replica.updated <= STALE_OWNER_SECONDS
        if not pid.isdigit():
            return False
        if int(pid) == os.getpid():
            return IN_FLIGHT.holds(self.catalog, replica)
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    async def recover(self, *, dead: Collection[str] | None = None) -> RecoveryReport:
        """Finish or roll back the moves of processes that died mid-way.

        A ``copying`` replica never committed, so its bytes are removed (rolled back); a
        ``deleting`` replica was already superseded, so its removal is finished. Work of
        live processes is left alone; work presumed dead is first taken over in the catalog
        (:meth:`Catalog.take_over`), so that its owner, if it lives after all, cannot touch
        it again, and two recoveries never both act on it. With ``dead``: the work of exactly
        these owners (``host:pid``), on any host (a cluster's leader names the daemons whose
        node lease expired).
        """
        rolled_back: list[tuple[str, str]] = []
        finished: list[tuple[str, str]] = []
        skipped = failed = 0
        now = time.time()
        for key, pending in await self._db(self.catalog.pending):
            presumed_dead = (pending.owner in dead if dead is not None
                             else not self._owner_alive(pending, now))
            if not presumed_dead or pending.tier not in self.tiers:
                skipped += 1
                continue
            replica = await self._db(self.catalog.take_over, pending, self.owner)
            if replica is None:  # a heartbeat or another recovery came first
                skipped += 1
                continue
            with self._working(replica):
                done = await self._recover_one(key, replica)
            if done is None:
                failed += 1
            else:
                (rolled_back if done else finished).append((key, replica.tier))
        if rolled_back or finished:
            log.info("recovered interrupted work: %d copies rolled back, %d removals finished",
                     len(rolled_back), len(finished))
        return RecoveryReport(tuple(rolled_back), tuple(finished), skipped, failed)

    async def _recover_one(self, key: str, replica: Replica) -> bool | None:
        """Roll back a copy (True) or finish a removal (False); None if the tier refused."""
        if replica.state is ReplicaState.COPYING:
            return True if await self._discard(key, replica) else None
        try:
            await self._remove(key, replica)
        except (TierstoreError, OSError) as exc:
            log.warning("could not finish removing %r from %r: %s", key, replica.tier, exc)
            return None
        return False

    async def adopt(self, prefix: str, tier: str, *, keys: Collection[str] | None = None,
                    jobs: int = 8, planned: Callable[[int, int], None] | None = None,
                    hashed: Callable[[int], None] | None = None) -> AdoptReport:
        """Catalog the files already under ``prefix`` on ``tier`` (written there by other
        tools) as objects, in place: each file's path under the tier's root is its key and
        its replica; nothing is copied. Each file is read once to compute its checksum
        (``jobs`` at a time; ``planned(bytes, files)`` tells how much that is, and
        ``hashed(nbytes)`` follows each file), and the objects are committed
        :data:`ADOPT_BATCH` to a catalog transaction, each replica with its file's version
        (an S3 ETag; a local file's modification time and inode). A path that is not a valid
        key, or whose key the store holds elsewhere or as a folder, is refused and reported.
        With ``keys``, those files only (one missing is refused).

        Run again, it is a rescan: a file adopted already is counted, not read again (an
        interrupted run resumes), unless its size or version changed (written over behind
        the store's back): then it is read again and the object takes its new content, its
        copies on other tiers (of what it held before) removed, so none is served stale; a
        file adopted before and gone now takes its object with it. The prefix is remembered
        (:meth:`rescan` goes over it again). From then on the objects are the store's: its
        policies move them like any other (pin them to keep them where they are)."""
        dest = self.tier(tier)
        wanted = validate_prefix(prefix)

        def under(path: str) -> bool:
            return path.startswith(wanted) if wanted.endswith("/") or not wanted \
                else path == wanted or path.startswith(wanted + "/")

        tracked = await self._db(self.catalog.adopted, dest.name, wanted)
        await self._db(self.catalog.add_adoption, dest.name, wanted, whole=keys is None)
        refused: list[tuple[str, str]] = []
        fresh: list[tuple[str, int, str | None, int | None]] = []  # key, size, version, id
        known = 0
        seen: set[str] = set()
        missing = set(keys) if keys is not None else set()
        for found in await dest.walk(wanted[:wanted.rfind("/") + 1]):
            path = found.path
            if path.split("/", 1)[0] == RESERVED_PREFIX or not under(path):
                continue
            if keys is not None:
                if path not in missing:
                    continue
                missing.discard(path)
            try:
                key = validate_key(path)
                self._refuse_folder_clash(key)
            except (InvalidKey, ObjectExists) as exc:
                refused.append((path, str(exc)))
                continue
            record = self.catalog.get(key)
            if record is None:
                fresh.append((key, found.size, found.version, None))
            elif (mine := record.on(dest.name)) is not None and mine.path == key:
                seen.add(key)
                rid, version = tracked.get(key, (None, None))
                if rid is not None and found.version is not None and (
                        version != found.version or found.size != record.size):
                    fresh.append((key, found.size, found.version, rid))  # written over
                else:
                    known += 1
            else:
                refused.append((path, f"the store holds {key!r} already (on "
                                      f"{', '.join(r.tier for r in record.ready) or 'no tier'})"))
        refused += [(path, f"no such file on tier {dest.name!r}") for path in missing
                    if path not in tracked]
        gone = sorted(key for key in tracked if under(key) and key not in seen
                      and (keys is None or key in missing))
        if planned is not None:
            planned(sum(size for _, size, _, _ in fresh), len(fresh))
        adopted: list[tuple[str, int, str]] = []
        changed: list[tuple[str, int]] = []
        pending: list[tuple[str, int, str]] = []
        versions: dict[str, str] = {}
        gate = asyncio.Semaphore(jobs)

        async def one(key: str, size: int, version: str | None, rid: int | None) -> None:
            async with gate:
                hasher = await dest.hash(key, size)
            if hasher.size != size:
                refused.append((key, f"{hasher.size} bytes read, {size} listed: it changed "
                                     "while it was being adopted"))
                return
            if rid is not None:  # the store's object: it takes the file's new content
                assert version is not None
                await self._retire(key, await self._db(
                    self.catalog.readopt, rid, owner=self.owner, size=size,
                    checksum=hasher.hexdigest(), version=version))
                changed.append((key, size))
            else:
                pending.append((key, size, hasher.hexdigest()))
                if version is not None:
                    versions[key] = version
            if hashed is not None:
                hashed(size)
            if len(pending) >= ADOPT_BATCH:
                await commit()

        async def commit() -> None:
            batch = pending[:]
            pending.clear()
            await self._db(self.catalog.add_objects, batch, dest.name, owner=self.owner,
                           versions={key: versions[key] for key, _, _ in batch
                                     if key in versions})
            adopted.extend(batch)

        await asyncio.gather(*(one(*entry) for entry in fresh))
        if pending:
            await commit()
        for key in gone:  # its file went: so does the object, copies and all
            with contextlib.suppress(ObjectNotFound):
                await self._retire(key, await self._db(self.catalog.begin_delete, key,
                                                       owner=self.owner))
        return AdoptReport(dest.name, tuple(sorted((k, n) for k, n, _ in adopted)), known,
                           tuple(sorted(refused)), tuple(sorted(changed)), tuple(gone))

    async def rescan(self, *, jobs: int = 8) -> list[AdoptReport]:
        """:meth:`adopt` every prefix adopted before again, as it was adopted (a whole
        prefix: new files too; named files: those), so that files written over or removed
        behind the store's back are taken in (see :meth:`adopt`)."""
        reports = []
        for tier, prefix, whole in await self._db(self.catalog.adoptions):
            if tier not in self.tiers:
                continue  # a tier no longer configured: nothing to look at
            keys = None if whole else list(await self._db(self.catalog.adopted, tier, prefix))
            if keys == []:
                continue  # every file of it moved away or removed since
            reports.append(await self.adopt(prefix, tier, keys=keys, jobs=jobs))
        return reports

    async def audit(self, *, deep: bool = False) -> AuditReport:
        """Check that every file on every tier is named by a replica and every ready replica
        is there with its size (and, with ``deep``, its checksum)."""
        records = self.catalog.objects()
        named = {(r.tier, p) for rec in records for r in rec.replicas for p in (r.path, r.tmp)
                 if p}
        orphans: list[tuple[str, str]] = []
        sizes: dict[tuple[str, str], int] = {}
        for tier in self.tiers.values():
            for found in await tier.walk():
                sizes[(tier.name, found.path)] = found.size
                if (tier.name, found.path) not in named and not found.path.startswith(
                        PROBE_DIR + "/"):  # a probe a killed process left: not data
                    orphans.append((tier.name, found.path))
        missing: list[tuple[str, str, str]] = []
        for record in records:
            for replica in record.ready:
                size = sizes.get((replica.tier, replica.path))
                if size is None:
                    missing.append((record.key, replica.tier, "no such file"))
                elif size != record.size:
                    missing.append((record.key, replica.tier, f"{size} bytes, expected "
                                                              f"{record.size}"))
                elif deep:
                    try:
                        await self._read_back(self.tier(replica.tier), record.key,
                                              replica.path, size, str(record.checksum))
                    except (TierstoreError, OSError) as exc:
                        missing.append((record.key, replica.tier, str(exc)))
        pending = sum(1 for rec in records for r in rec.replicas if r.state != "ready")
        return AuditReport(tuple(orphans), tuple(missing), pending)

    async def repair(self, key: str, tier: str, *, replica_id: int | None = None
                     ) -> ObjectInfo:
        """Replace ``key``'s replica on ``tier`` (missing, short or corrupt) by a verified
        copy of a good one: drop it (even a pinned one: the pin stays), then copy it again
        from the best other replica. Never an object's only replica. ``replica_id``: only if
        the replica there is still that one (another process may have replaced it)."""
        record = self._ready(key)
        replica = record.on(self.tier(tier).name)
        if replica is None or (replica_id is not None and replica.id != replica_id):
            raise ReplicaError(f"{key!r} has no such ready replica on tier {tier!r}")
        if len(record.ready) < 2:
            raise ReplicaError(f"{key!r} has no other replica to repair tier {tier!r} from")
        marked = await self._db(self.catalog.mark_deleting, replica.id, owner=self.owner)
        await self._retire(key, [marked])
        log.warning("replacing %r's bad replica on tier %r with a copy of a good one", key,
                    tier)
        return await self.add_replica(key, tier)

    def _repair_later(self, key: str, replica: Replica) -> None:
        """Repair a replica a read found corrupt, in the background (the read goes on)."""
        token = (key, replica.tier)
        if token in self.repairs:
            return

        async def repair() -> None:
            try:
                await self.repair(key, replica.tier, replica_id=replica.id)
            except (TierstoreError, OSError) as exc:
                log.warning("could not repair %r on tier %r: %s", key, replica.tier, exc)
            finally:
                self.repairs.pop(token, None)

        self.repairs[token] = asyncio.get_running_loop().create_task(repair())


class FillClaim:
    """A reader's claim on an object's replica on the fill tier (:meth:`Store.claim_fill`),
    taken before it fetches the bytes: :meth:`commit` them, or :meth:`release` it."""

    def __init__(self, store: Store, record: ObjectRecord, dest: Tier, replica: Replica,
                 held: contextlib.AsyncExitStack, *, fills: bool = True):
        self.store, self.record, self.dest, self.replica = store, record, dest, replica
        self.fills = fills  # False: it only marks a fetch, to be released after it
        self._held: contextlib.AsyncExitStack | None = held  # the room and the row's work

    @property
    def key(self) -> str:
        return self.record.key

    @property
    def local_path(self) -> str | None:
        """The file :meth:`write` writes the replica's bytes to, where the fill tier is a
        local folder (it exists once the writer asks for its first chunk, and keeps its
        name until they are all written); None elsewhere."""
        if self.dest.protocol != "file" or self.replica.tmp is None:
            return None
        return self.dest.full_path(self.replica.tmp)

    async def commit(self, data: bytes | bytearray | memoryview,
                     checksum_: str | None = None) -> None:
        """Make ``data`` the replica: checked against the catalog's size and checksum
        (``checksum_``: as the caller already computed it), written through the crash-safe
        replica path as any copy."""
        actual = checksum_ or checksum(data)
        if len(data) != self.record.size or actual != self.record.checksum:
            await self.release()
            raise ChecksumMismatch(self.key, "a reader's bytes", str(self.record.checksum),
                                   actual)
        await self.write(_chunks(data))

    async def write(self, chunks: AsyncIterable[bytes]) -> None:
        """Make the bytes ``chunks`` yields the replica, as they come (a reader's verified
        blocks, in order): written through the crash-safe replica path and checked against
        the catalog's size and checksum before they count, as any copy. A writer is done
        with a chunk when it asks for the next one."""
        expected = (self.record.size or 0, str(self.record.checksum))
        try:
            await self.store._fill_replica(self.key, self.dest, self.replica, chunks,
                                           lambda: expected, new_content=False)
        except BaseException as exc:  # the replica was rolled back
            await self._end(exc)
            raise
        await self._end(None)

    async def release(self) -> None:
        """Give the claim up: its row (and any bytes) rolled back."""
        if self._held is not None:
            await asyncio.shield(self.store._discard(self.key, self.replica))
            await self._end(ReplicaError("fill released"))

    async def _end(self, exc: BaseException | None) -> None:
        held, self._held = self._held, None
        if held is not None:
            await held.__aexit__(type(exc) if exc else None, exc, None)


async def _finish(tasks: list[asyncio.Task[Any]], timeout: float) -> None:
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


async def _remove_partial(tier: Tier, tmp: str) -> None:
    """Remove a temporary name and any unfinished upload to it. A name the tier refuses
    (an over-long one that tierstore 0.1 could give) can hold nothing: nothing to remove."""
    try:
        await tier.abort_uploads(tmp)
        await tier.remove(tmp)
    except InvalidKey:
        pass


def _clamp(start: int | None, end: int | None, size: int) -> tuple[int, int]:
    lo = 0 if start is None else (max(0, size + start) if start < 0 else min(start, size))
    hi = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
    return lo, max(lo, hi)


def _size_of(source: Source) -> int | None:
    """The size of a put source when it is known before it is read: bytes, a file path."""
    if isinstance(source, bytes | bytearray | memoryview):
        return memoryview(source).nbytes
    if isinstance(source, str | os.PathLike):
        with contextlib.suppress(OSError):  # no such file: reading it says so
            return os.stat(source).st_size
    return None


async def _chunks(source: Source) -> AsyncIterator[bytes]:
    """The bytes of any put source, PART_SIZE at a time (async iterables pass through)."""
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)  # its parts as views: a writer copies what it must keep
        for start in range(0, len(view), PART_SIZE):
            yield view[start:start + PART_SIZE]  # type: ignore[misc]  # writers take buffers
    elif isinstance(source, str | os.PathLike):
        async with aiofiles.open(source, "rb") as handle:
            while chunk := await handle.read(PART_SIZE):
                yield chunk
    elif hasattr(source, "read"):
        while chunk := await asyncio.to_thread(source.read, PART_SIZE):
            yield bytes(chunk)
    elif isinstance(source, AsyncIterable):
        async for chunk in source:
            yield bytes(chunk)
    else:
        raise TypeError(f"cannot put a {type(source).__name__}: expected bytes, a path, a "
                        "binary file or an async iterable of bytes")
