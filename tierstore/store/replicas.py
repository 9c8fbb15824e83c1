"""The replica life: every write, copy, move, drop and repair goes through one path."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Sequence,
)

import aiofiles

from ..capacity import Reservation
from ..catalog import ObjectRecord, Replica, ReplicaState
from ..checksum import Hasher, checksum
from ..config import TierClass
from ..errors import (
    ChecksumMismatch,
    CopyInFlight,
    InvalidKey,
    ObjectExists,
    ReplicaError,
    ReplicaReady,
    TierError,
    TierFull,
    TierstoreError,
)
from ..inflight import IN_FLIGHT
from ..keys import validate_key
from ..localcopy import LocalFile
from ..locality.placement import place_after_put
from ..locality.topology import Distance
from ..reports import ObjectInfo
from ..tasks import bounded
from ..tier import PART_SIZE, Chunk, Tier
from .base import FENCE, Pace, Source, log, once
from .reads import ReadPath

__all__ = ["FillClaim", "Replicas"]


# fill_room reads the catalog afresh when fewer than this many fills of room are left (others
# may have claimed some since the count it holds, at most Capacity.max_age old: two workers
# reading from Ceph claim ~6 shards of 64 MiB a second, and with 4 the hot tier overshot its
# high watermark to 92-100% and the daemon shed the excess, to be fetched again next epoch)
FILL_MARGIN = 16
# put_many's batches: objects of at most SMALL_OBJECT bytes, BATCH_OBJECTS and BATCH_BYTES at
# most each (one catalog transaction to begin them and one to commit them)
SMALL_OBJECT = 1 << 20
BATCH_OBJECTS = 1024
BATCH_BYTES = 64 << 20
DISCARD_JOBS = 8  # a refused batch's replicas rolled back at once


class Replicas(ReadPath):
    """The life of a replica: intent, write, verify, commit or discard; puts, copies,
    moves, drops, pins, removals and repairs, and the reads' fills of the hot tier."""

    async def put(self, key: str, source: Source, *, tier: str | None = None,
                  overwrite: bool = False) -> ObjectInfo:
        """Write an object to a tier.

        The source is streamed, never held whole in memory. The checksum is computed on the
        way in and the written bytes are checked (see ``_verify_written``) before the object
        exists. Replacing an existing key needs ``overwrite=True``; its old replicas go only
        after the new one is committed.

        Parameters
        ----------
        key : str
            The object's key.
        source : bytes, str, os.PathLike, binary file object or async iterable of bytes
            The content: bytes, a local file path, a binary file object or an async
            iterable of bytes.
        tier : str, optional
            The tier to write to; the config's ``default_tier`` if None.
        overwrite : bool, default False
            Replace an existing object of this key.

        Returns
        -------
        ObjectInfo
            What the object is now (:meth:`stat`).

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        ObjectExists
            If the key exists and ``overwrite`` is False, or the key is an object's folder
            or lies under an object.
        UnknownTier
            If ``tier`` is not configured.
        TierFull
            If the write would take the tier past its capacity.
        TierError
            If the tier fails, or fewer bytes landed than were sent.
        ChecksumMismatch
            If bytes read back to verify the write differ from those sent.
        """
        validate_key(key)
        dest = self.tier(tier or self.config.default_tier)
        existing = await self.db.get(key)
        if existing is not None and existing.ready and not overwrite:
            raise ObjectExists(key)
        if clash := (await self._folder_clashes([key])).get(key):
            raise clash
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

    async def put_many(self, items: Iterable[tuple[str, Source]], *, tier: str | None = None,
                       overwrite: bool = False, jobs: int = 8,
                       committed: Callable[[str, int], None] | None = None) -> None:
        """Write many objects to a tier, small ones in batches.

        Each batch is one catalog transaction to begin its objects and one to commit them.
        A batch holds up to 1,024 objects of at most 1 MiB each, given as bytes or as local
        file paths, up to 64 MiB in all. Its objects are checked as :meth:`put` checks one,
        written (on a local folder in a few threads, each file fsynced and renamed, then
        each folder fsynced once; on S3 ``jobs`` at a time, then the server's receipts
        checked against one listing, not a HEAD each) and proven as a put's are, then
        committed at once: an
        error refuses its whole batch, which leaves nothing behind. Batches go one after
        another; the ones before an error stay committed, those after it are not begun.
        Other objects (larger, or streams) are put one by one, ``jobs`` at a time.

        Parameters
        ----------
        items : iterable of (str, source)
            Keys and their contents, each as :meth:`put` takes it; no key twice.
        tier : str, optional
            The tier to write to; the config's ``default_tier`` if None.
        overwrite : bool, default False
            Replace existing objects of these keys.
        jobs : int, default 8
            Objects put at once, outside the batches (and within a batch, where the tier
            has no batched write).
        committed : callable, optional
            Told each object's key and size once it is committed (a progress bar's feed).

        Raises
        ------
        InvalidKey
            If a key is not a safe relative path, or is given twice.
        ObjectExists, UnknownTier, TierFull, TierError, ChecksumMismatch
            As :meth:`put`.
        """
        items = list(items)
        seen: set[str] = set()
        for key, _ in items:
            if validate_key(key) in seen:
                raise InvalidKey(key, "given twice")
            seen.add(key)
        dest = self.tier(tier or self.config.default_tier)
        sizes = await asyncio.to_thread(lambda: [_size_of(source) for _, source in items])
        small = [(item, size) for item, size in zip(items, sizes, strict=True)
                 if size is not None and size <= SMALL_OBJECT
                 and isinstance(item[1], bytes | bytearray | memoryview | str | os.PathLike)]
        tell = committed or (lambda _key, _size: None)
        for batch in _batches(small):
            await self._put_batch(dest, batch, overwrite=overwrite, jobs=jobs)
            for (key, _), size in batch:
                tell(key, size)

        async def put(item: tuple[str, Source]) -> None:
            info = await self.put(*item, tier=dest.name, overwrite=overwrite)
            tell(info.key, info.size)

        batched = {key for (key, _), _ in small}
        await bounded([item for item in items if item[0] not in batched], put, jobs)

    async def _put_batch(self, dest: Tier, batch: list[tuple[tuple[str, Source], int]], *,
                         overwrite: bool, jobs: int) -> None:
        """One batch of :meth:`put_many`: checked, begun, written, proven, committed."""
        keys = [key for (key, _), _ in batch]
        for key in keys:
            dest.full_path(key)  # a local tier refuses a path through a link planted in it
        datas = await asyncio.to_thread(lambda: [_whole(source) for (_, source), _ in batch])
        digests = [checksum(data) for data in datas]
        freed = await self._refuse_batch_clashes(dest, keys, overwrite=overwrite)
        what = keys[0] if len(keys) == 1 else f"a batch of {len(keys)} objects from {keys[0]}"
        async with self.capacity.reserve(dest.name, what, sum(map(len, datas)), freed=freed):
            begin = asyncio.ensure_future(self.db.begin_replicas(
                [(key, Tier.partial_path(key)) for key in keys], dest.name, new_content=True,
                owner=self.owner, fence=FENCE.get()))
            try:
                replicas = await asyncio.shield(begin)
            except asyncio.CancelledError:  # the intents may commit anyway: take them back
                with contextlib.suppress(Exception):
                    await self._discard_all(keys, await begin)
                raise
            with contextlib.ExitStack() as working:
                for replica in replicas:
                    working.enter_context(self._working(replica))
                try:
                    if not await dest.write_files([(str(r.tmp), r.path, data) for r, data
                                                   in zip(replicas, datas, strict=True)]):
                        await self._land_batch(dest, list(zip(
                            keys, replicas, datas, digests, strict=True)), jobs)
                    retired = await self.db.commit_replicas(
                        [(r.id, len(data), digest) for r, data, digest
                         in zip(replicas, datas, digests, strict=True)],
                        owner=self.owner, new_content=True, fence=FENCE.get())
                except BaseException:
                    await asyncio.shield(self._discard_all(keys, replicas))
                    raise
        for key, old in zip(keys, retired, strict=True):
            await self._retire(key, old)
            await place_after_put(self, key, dest.name)  # [locality.placement]

    async def _land_batch(self, dest: Tier, work: list[tuple[str, Replica, bytes, str]],
                          jobs: int) -> None:
        """:meth:`_land` for each ``(key, replica, data, digest)`` of a batch, ``jobs`` at a
        time; where writes need no temporary name (S3), every object is written first and
        then all are proven together (:meth:`Tier.written_sizes`: one listing, not a HEAD
        each)."""
        if not dest.atomic_writes:
            await bounded(work, lambda one: self._land(one[0], dest, one[1], _chunks(one[2]),
                                                       lambda: (len(one[2]), one[3])), jobs)
            return
        await bounded(work, lambda one: dest.write(one[1].path, _chunks(one[2])), jobs)
        landed = await dest.written_sizes([replica.path for _, replica, _, _ in work],
                                          [digest for _, _, _, digest in work])
        await bounded(list(zip(work, landed, strict=True)), lambda one: self._check_landed(
            dest, one[0][0], one[0][1].path, len(one[0][2]), one[0][3], *one[1]), jobs)
        await bounded([replica.path for _, replica, _, _ in work], dest.sync, jobs)

    async def _refuse_batch_clashes(self, dest: Tier, keys: list[str], *, overwrite: bool
                                    ) -> int:
        """:meth:`put`'s refusals for a batch of keys, and one key of the batch under another;
        the bytes their overwrites free on ``dest``."""
        among = set(keys)
        for key in keys:
            for parent in _parents(key):
                if parent in among:
                    raise ObjectExists(parent, f"it is an object, so {key!r} cannot be put "
                                               "under it as a folder")
        records = await self.db.records(keys)
        freed = 0
        for key in keys:
            record = records.get(key)
            if record is not None and record.ready:
                if not overwrite:
                    raise ObjectExists(key)
                freed += (record.size or 0) if record.on(dest.name) else 0
        if clashes := await self._folder_clashes(keys):
            raise next(iter(clashes.values()))
        return freed

    async def _discard_all(self, keys: list[str], replicas: list[Replica]) -> None:
        await bounded(list(zip(keys, replicas, strict=True)),
                      lambda one: self._discard(*one), DISCARD_JOBS)

    async def _folder_clashes(self, keys: Sequence[str]) -> dict[str, ObjectExists]:
        """Why each of ``keys`` that clashes with the catalog cannot be an object: a key cannot
        also be a folder of keys (local tiers could not hold both), so none may lie under a
        committed object or have committed objects under it. Two catalog reads for all."""
        records = await self.db.records(list({p for key in keys for p in _parents(key)}))
        clashes: dict[str, ObjectExists] = {}
        for key in keys:
            for parent in _parents(key):
                record = records.get(parent)
                if record is not None and record.ready:
                    clashes[key] = ObjectExists(record.key, f"it is an object, so {key!r} "
                                                            "cannot be put under it as a folder")
                    break
        for key in await self.db.folders([key for key in keys if key not in clashes]):
            clashes[key] = ObjectExists(key, "it is a folder of objects, so it cannot be one too")
        return clashes

    async def _write_replica(self, key: str, dest: Tier, chunks: AsyncIterable[Chunk],
                             expected: Callable[[], tuple[int, str]], *, new_content: bool,
                             size: int | None = None, freed: int = 0,
                             retire: Collection[str] = (),
                             copied: Callable[[], None] | None = None) -> list[Replica]:
        """The one way bytes become a replica: room within the tier's capacity (``size``
        bytes, None if unknown, freeing ``freed``), intent, temp write, verify, rename,
        commit. A name or size the tier refuses is refused before the intent is recorded.
        Returns the replicas the commit made ``deleting`` (see :meth:`_fill_replica`)."""
        async with self._intent(key, dest, new_content=new_content, size=size,
                                freed=freed) as (replica, room):
            if room is not None and not isinstance(chunks, LocalFile):  # its size is reserved
                chunks = room.counted(chunks)
            return await self._fill_replica(key, dest, replica, chunks, expected,
                                            new_content=new_content, retire=retire,
                                            copied=copied, size=size)

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
            begin = asyncio.ensure_future(self.db.begin_replica(
                key, dest.name, tmp=tmp, new_content=new_content, owner=self.owner,
                fence=FENCE.get()))
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
                            retire: Collection[str] = (),
                            copied: Callable[[], None] | None = None,
                            size: int | None = None) -> list[Replica]:
        """Write, verify and commit ``replica`` (``size`` bytes, where known); the replicas
        its commit made ``deleting``, for the caller to :meth:`_retire`: a put's old ones, a
        copy's on the tiers named in ``retire`` (a move's source; see
        :meth:`Catalog.commit_replica`). ``copied`` is told once the bytes are written and
        proven, before they are made durable and committed."""
        try:
            size, digest = await self._land(key, dest, replica, chunks, expected, copied,
                                            size=size)
            return await self.db.commit_replica(replica.id, owner=replica.owner, size=size,
                                                checksum=digest, new_content=new_content,
                                                retire=retire, fence=FENCE.get())
        except BaseException:
            await asyncio.shield(self._discard(key, replica))
            raise

    async def _land(self, key: str, dest: Tier, replica: Replica, chunks: AsyncIterable[Chunk],
                    expected: Callable[[], tuple[int, str]],
                    copied: Callable[[], None] | None = None, *, size: int | None = None
                    ) -> tuple[int, str]:
        """Write ``replica``'s bytes (``size``, where known), prove them, put them in place
        and make them durable, short of the commit; their size and checksum (see
        :meth:`_fill_replica`)."""
        tmp = str(replica.tmp)
        # Where a write shows all or nothing (S3), the bytes go to their final name at once
        # (no rename, which S3 does as a server-side copy): the copying row names that path,
        # so readers never see it and recovery removes it, as it would the temporary name.
        target = replica.path if dest.atomic_writes else tmp
        await dest.write(target, chunks, size=size)
        size, digest = expected()
        await self._verify_written(dest, key, target, size, digest)
        if copied is not None:
            copied()
        if replica.path != target:
            await dest.rename(target, replica.path)
            if (landed := await dest.size(replica.path)) != size:
                raise TierError(dest.name, "rename", f"{landed} bytes after rename, "
                                                     f"expected {size}")
        await dest.sync(replica.path)  # durable before a commit lets old bytes go
        return size, digest

    async def _verify_written(self, dest: Tier, key: str, path: str, size: int,
                              digest: str) -> None:
        """Check what was just written: the size first, then every byte. The bytes are read
        back, unless the tier vouches for them (S3: the server's MD5 ETag of what it received
        is the MD5 of the bytes sent, which ``digest`` was checked against as they streamed;
        a local folder: what was handed to the kernel hashes to ``digest``; see
        :meth:`Tier.written_size`)."""
        await self._check_landed(dest, key, path, size, digest,
                                 *await dest.written_size(path, digest))

    async def _check_landed(self, dest: Tier, key: str, path: str, size: int, digest: str,
                            landed: int | None, vouched: bool) -> None:
        """:meth:`_verify_written` given what the tier said of the file."""
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
            await self.db.forget_replica(replica)
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
        await self.db.forget_replica(replica)

    async def _owned(self, key: str, replica: Replica) -> bool:
        """Whether the catalog still holds ``replica`` as it is: same id, owner and state."""
        record = await self.db.get(key)
        return record is not None and any(
            (r.id, r.owner, r.state) == (replica.id, replica.owner, replica.state)
            for r in record.replicas)

    async def add_replica(self, key: str, tier: str, *, pace: Pace | None = None,
                          retire: Collection[str] = ()) -> ObjectInfo:
        """Copy an object to one more tier, as :meth:`replicate` does.

        Parameters
        ----------
        key : str
            The object's key.
        tier : str
            The tier to copy to.
        pace : Pace, optional
            Awaited as ``pace(source_tier, nbytes)`` before each chunk is written.
        retire : collection of str, default ()
            Tiers whose replicas go once the copy is there (a move).

        Returns
        -------
        ObjectInfo
            What the object is now (:meth:`stat`).

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        ObjectNotFound
            If no object with this key has a ready replica.
        UnknownTier
            If ``tier`` is not configured.
        TierFull
            If the copy would take ``tier`` past its capacity.
        CopyInFlight
            If another copy of the object to ``tier`` is under way.
        TierError
            If a tier fails (the written bytes are checked: a short copy is one).
        NoReadableReplica
            If no replica can be read to copy from.
        """
        await self.replicate(key, tier, pace=pace, retire=retire)
        return await self.stat(key)

    async def replicate(self, key: str, tier: str, *, pace: Pace | None = None,
                        retire: Collection[str] = (),
                        copied: Callable[[], None] | None = None) -> None:
        """Copy an object to one more tier, verified.

        There is nothing to copy when a ready replica is there already, also one that landed
        meanwhile (a reader's read-through fill committed between this copy's look and its
        intent).

        Parameters
        ----------
        key : str
            The object's key.
        tier : str
            The tier to copy to.
        pace : Pace, optional
            Awaited as ``pace(source_tier, nbytes)`` before each chunk is written: a rate
            limit (the daemon's bandwidth cap) or a progress hook.
        retire : collection of str, default ()
            Tiers whose replicas go once the copy is there (a move), as
            :meth:`drop_replica` would drop them, but marked ``deleting`` in the copy's own
            commit (one durable transaction, not two).
        copied : callable, optional
            Called once, as soon as the copy's bytes have landed and been verified (before
            they are made durable and committed, which wait on the disk and the catalog
            rather than move bytes: a caller may start its next copy meanwhile), or as soon
            as there turns out to be nothing to copy.

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        ObjectNotFound
            If no object with this key has a ready replica.
        UnknownTier
            If ``tier`` is not configured.
        TierFull
            If the copy would take ``tier`` past its capacity.
        CopyInFlight
            If another copy of the object to ``tier`` is under way.
        TierError
            If a tier fails (the written bytes are checked: a short copy is one).
        NoReadableReplica
            If no replica can be read to copy from.
        """
        tell = once(copied or (lambda: None))
        record = await self._ready(key)
        dest = self.tier(tier)
        retire = [name for name in retire if self.tier(name).name != dest.name]
        retired: list[Replica] = []
        if record.on(dest.name) is None:
            expected = (record.size or 0, str(record.checksum))

            async def write(chunks: AsyncIterable[Chunk]) -> None:
                retired[:] = await self._write_replica(
                    record.key, dest, chunks, lambda: expected, new_content=False,
                    size=record.size, retire=retire, copied=tell)

            with contextlib.suppress(ReplicaReady):
                await self._transfer(record, write, pace, into=dest)
        tell()
        await self._retire(key, retired)
        for name in set(retire) - {replica.tier for replica in retired}:
            if (current := await self._ready(key)).on(name) is not None:  # the copy was there
                await self.drop_replica(current.key, name)  # already, or the tier is pinned

    @property
    def fill_tier(self) -> str | None:
        """Where readers' bytes are kept (read-through fill): this node's hot tier."""
        local = sorted(name for name, t in self.tiers.items() if t.tier_class is TierClass.HOT
                       and self.locality.distances.get(name) == Distance.NODE)
        return local[0] if local else None

    async def claim_fill(self, key: str) -> FillClaim | None:
        """Claim a read-through fill, before a reader fetches a whole object.

        Taken before a reader fetches the whole of ``key`` from a slower tier, the claim
        makes the fetched bytes its replica on :attr:`fill_tier` too
        (:meth:`FillClaim.commit`), so that they cross from the slower tier once. The claim
        is the catalog's ``copying`` row there: the daemon's staging copy and the node's
        other readers find the copy in flight instead of fetching the same bytes (they
        :meth:`wait_for_copy`). Without room for the bytes under the high watermark
        (:meth:`fill_room`) the claim only marks the fetch (:attr:`FillClaim.fills` False),
        and is released after it.

        Parameters
        ----------
        key : str
            The object's key.

        Returns
        -------
        FillClaim or None
            The claim; None when there is nothing to claim: no fill tier, a replica there
            already, or the room for a fill went.

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        CopyInFlight
            If another copy there is under way.
        """
        tier = self.fill_tier
        record = await self.db.get(validate_key(key))
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
        """Tell whether :attr:`fill_tier` has room for more bytes under its high watermark.

        Every process's copies in flight there count: the catalog is read afresh when the
        count this process holds leaves less than a few such fills of room.

        Parameters
        ----------
        nbytes : int
            The bytes to fit.

        Returns
        -------
        bool
            True if they fit (always, on a tier without a capacity); False without a fill
            tier.
        """
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
        """Wait while a copy of an object to a tier is in flight.

        Parameters
        ----------
        key : str
            The object's key.
        tier : str
            The tier copied to.
        timeout : float
            The most seconds to wait.
        poll : float, default 0.02
            Seconds between looks at the catalog.

        Returns
        -------
        bool
            Whether a ready replica is there now.

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        """
        deadline = time.monotonic() + timeout
        while True:
            record = await self.db.get(validate_key(key))
            if record is None or record.on(tier) is not None:
                return record is not None
            if record.on(tier, ReplicaState.COPYING) is None or time.monotonic() > deadline:
                return False
            await asyncio.sleep(poll)

    async def drop_replica(self, key: str, tier: str) -> ObjectInfo:
        """Remove an object's replica on a tier; never its last one, never its pinned one.

        Parameters
        ----------
        key : str
            The object's key.
        tier : str
            The tier whose replica goes.

        Returns
        -------
        ObjectInfo
            What the object is now (:meth:`stat`).

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        ObjectNotFound
            If no object with this key has a ready replica.
        UnknownTier
            If ``tier`` is not configured.
        ReplicaError
            If there is no ready replica on ``tier``, it is the object's pinned one, or the
            last ready one.
        """
        record = await self._ready(key)
        replica = record.on(self.tier(tier).name)
        if replica is None:
            raise ReplicaError(f"{key!r} has no ready replica on tier {tier!r}")
        if record.pinned == tier:
            raise ReplicaError(f"{key!r} is pinned to tier {tier!r}; unpin it first")
        marked = await self.db.mark_deleting(replica.id, owner=self.owner, fence=FENCE.get())
        await self._retire(key, [marked])
        return await self.stat(key)

    async def move(self, key: str, tier: str) -> ObjectInfo:
        """Leave an object with one replica, on ``tier``: copy, verify, commit, then delete.

        Parameters
        ----------
        key : str
            The object's key.
        tier : str
            The tier to keep it on.

        Returns
        -------
        ObjectInfo
            What the object is now (:meth:`stat`).

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        ObjectNotFound
            If no object with this key has a ready replica.
        UnknownTier
            If ``tier`` is not configured.
        ReplicaError
            If the object is pinned to another tier.
        TierFull
            If the copy would take ``tier`` past its capacity.
        CopyInFlight
            If another copy of the object to ``tier`` is under way.
        TierError
            If a tier fails (the written bytes are checked: a short copy is one).
        NoReadableReplica
            If no replica can be read to copy from.
        """
        record = await self._ready(key)
        self.tier(tier)
        if record.pinned is not None and record.pinned != tier:
            raise ReplicaError(f"{key!r} is pinned to tier {record.pinned!r}; unpin it first")
        return await self.add_replica(key, tier, retire=[r.tier for r in record.ready])

    async def pin(self, key: str, tier: str | None = None) -> ObjectInfo:
        """Pin an object to a tier, copying it there first.

        Parameters
        ----------
        key : str
            The object's key.
        tier : str, optional
            The tier to pin to; its best current tier if None.

        Returns
        -------
        ObjectInfo
            What the object is now (:meth:`stat`).

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        ObjectNotFound
            If no object with this key has a ready replica.
        UnknownTier
            If ``tier`` is not configured.
        TierFull
            If the copy would take ``tier`` past its capacity.
        CopyInFlight
            If another copy of the object to ``tier`` is under way.
        TierError
            If a tier fails (the written bytes are checked: a short copy is one).
        NoReadableReplica
            If no replica can be read to copy from.
        """
        record = await self._ready(key)
        target = tier or self.rank(record)[0].tier
        await self.replicate(key, target)
        await self.db.set_pin(record.key, target)
        return await self.stat(key)

    async def unpin(self, key: str) -> ObjectInfo:
        """Unpin an object: the daemon's policies may move it again.

        Parameters
        ----------
        key : str
            The object's key.

        Returns
        -------
        ObjectInfo
            What the object is now (:meth:`stat`).

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        ObjectNotFound
            If no object with this key has a ready replica.
        """
        record = await self._ready(key)
        await self.db.set_pin(record.key, None)
        return await self.stat(key)

    async def rm(self, key: str) -> None:
        """Delete an object and all its replicas.

        Parameters
        ----------
        key : str
            The object's key.

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        ObjectNotFound
            If no object with this key exists.
        """
        validate_key(key)
        await self._retire(key, await self.db.begin_delete(key, owner=self.owner))

    async def repair(self, key: str, tier: str, *, replica_id: int | None = None
                     ) -> ObjectInfo:
        """Replace a bad replica (missing, short or corrupt) by a verified copy of a good one.

        The replica is dropped (even a pinned one: the pin stays), then copied again from
        the best other replica. Never an object's only replica.

        Parameters
        ----------
        key : str
            The object's key.
        tier : str
            The tier of the bad replica.
        replica_id : int, optional
            Repair only if the replica there is still that one (another process may have
            replaced it).

        Returns
        -------
        ObjectInfo
            What the object is now (:meth:`stat`).

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        ObjectNotFound
            If no object with this key has a ready replica.
        UnknownTier
            If ``tier`` is not configured.
        ReplicaError
            If there is no such ready replica on ``tier``, or no other replica to repair
            it from.
        TierFull
            If the copy would take ``tier`` past its capacity.
        CopyInFlight
            If another copy of the object to ``tier`` is under way.
        TierError
            If a tier fails (the written bytes are checked: a short copy is one).
        NoReadableReplica
            If no replica can be read to copy from.
        """
        record = await self._ready(key)
        replica = record.on(self.tier(tier).name)
        if replica is None or (replica_id is not None and replica.id != replica_id):
            raise ReplicaError(f"{key!r} has no such ready replica on tier {tier!r}")
        if len(record.ready) < 2:
            raise ReplicaError(f"{key!r} has no other replica to repair tier {tier!r} from")
        marked = await self.db.mark_deleting(replica.id, owner=self.owner)
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

    def __init__(self, store: Replicas, record: ObjectRecord, dest: Tier, replica: Replica,
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
        if not self.dest.is_local or self.replica.tmp is None:
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
                                           lambda: expected, new_content=False,
                                           size=self.record.size)
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


async def _remove_partial(tier: Tier, tmp: str) -> None:
    """Remove a temporary name and any unfinished upload to it. A name the tier refuses
    (an over-long one that tierstore 0.1 could give) can hold nothing: nothing to remove."""
    try:
        await tier.abort_uploads(tmp)
        await tier.remove(tmp)
    except InvalidKey:
        pass


def _parents(key: str) -> list[str]:
    """The folders ``key`` lies under, outermost first (``a/b/c``: ``a``, ``a/b``)."""
    parts = key.split("/")
    return ["/".join(parts[:depth]) for depth in range(1, len(parts))]


def _batches(small: list[tuple[tuple[str, Source], int]]
             ) -> Iterator[list[tuple[tuple[str, Source], int]]]:
    """:meth:`Replicas.put_many`'s batches, in order: at most BATCH_OBJECTS objects and
    BATCH_BYTES bytes each."""
    batch: list[tuple[tuple[str, Source], int]] = []
    nbytes = 0
    for item, size in small:
        if batch and (len(batch) == BATCH_OBJECTS or nbytes + size > BATCH_BYTES):
            yield batch
            batch, nbytes = [], 0
        batch.append((item, size))
        nbytes += size
    if batch:
        yield batch


def _whole(source: Source) -> bytes:
    """A small source's bytes (blocking: a path is read)."""
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as f:
            return f.read()
    return bytes(source)  # type: ignore[arg-type]  # bytes, bytearray or memoryview


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
