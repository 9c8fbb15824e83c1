"""The read path: ``cat``, ``cat_into``, ``get``, and the verified stream a copy reads."""

from __future__ import annotations

import functools
import math
import os
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiofiles

from ..catalog import ObjectRecord, Replica
from ..checksum import Hasher, checksum
from ..errors import ChecksumMismatch, ObjectChanged, TierError, TierstoreError
from ..localcopy import LocalFile
from ..tier import Chunk, Tier
from .base import Pace, StoreBase, T, log

__all__ = ["ReadPath"]


class _DestinationFailed(Exception):
    """Carries an error of a stream's destination through the failover between sources,
    which tries the next source only on a source's error."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


class _SourceFailed(Exception):
    """Raised through a destination write when the replica being read from fails."""

    def __init__(self, tier: str, cause: BaseException):
        super().__init__(f"{tier}: {cause}")
        self.tier = tier
        self.cause = cause


class ReadPath(StoreBase):
    """Reads: the best replica first, failing over to the next (deadlines, breakers,
    hedging: :mod:`tierstore.locality`), verified against the catalog's checksum; whole
    objects streamed to a copy or a local file the same way."""

    def _fallback(self, key: str, replica: Replica, exc: BaseException) -> None:
        self.fallbacks += 1
        if isinstance(exc, ChecksumMismatch):
            self.corrupt.append((key, replica.tier))
        log.warning("read of %r from tier %r failed, trying the next replica: %s",
                    key, replica.tier, exc)

    async def cat(self, key: str, start: int | None = None, end: int | None = None, *,
                  verify: bool | None = None) -> bytes:
        """Read bytes ``[start, end)`` of an object.

        Reads the best ready replica and fails over to the next on an error, a timeout or
        (for whole-object reads with ``verify``) a checksum mismatch. The read is recorded
        as an access.

        Parameters
        ----------
        key : str
            The object's key.
        start, end : int, optional
            The range, ``end`` exclusive; negative offsets count from the object's end.
            None reads from the start or to the end.
        verify : bool, optional
            Check a whole-object read against the recorded checksum; defaults to
            ``config.verify_reads``.

        Returns
        -------
        bytes
            The bytes of the range.

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        ObjectNotFound
            If no object with this key has a ready replica.
        NoReadableReplica
            If every replica failed; the message names what each one answered.
        ObjectChanged
            If the replica is an adopted file written over or removed since it was adopted.
        CatalogError
            If the catalog cannot be reached and no record of ``key`` is remembered.
        ChecksumMismatch
            Only within the failures of a :class:`NoReadableReplica`: a corrupt replica
            is failed over.
        """
        return bytes(await self._read(key, start, end, verify, None))

    async def cat_into(self, key: str, into: memoryview, start: int = 0) -> int:
        """Read like :meth:`cat`, into given memory instead of new memory.

        Reads ``len(into)`` bytes of ``key`` from ``start`` (fewer at the object's end).
        Partial reads are not verified (the caller checks what it assembles), and a failed
        read may leave ``into`` partly written.

        Parameters
        ----------
        key : str
            The object's key.
        into : memoryview
            Where the bytes go; its length is how many are asked for.
        start : int, default 0
            The offset of the first byte.

        Returns
        -------
        int
            How many bytes were read.

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        ObjectNotFound
            If no object with this key has a ready replica.
        NoReadableReplica
            If every replica failed; the message names what each one answered.
        ObjectChanged
            If the replica is an adopted file written over or removed since it was adopted.
        CatalogError
            If the catalog cannot be reached and no record of ``key`` is remembered.
        """
        return len(await self._read(key, start, start + len(into), False, into))

    async def _read(self, key: str, start: int | None, end: int | None, verify: bool | None,
                    into: memoryview | None) -> bytes | memoryview:
        record, remembered = await self._readable(key)
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
        await self._refuse_stale(record, served.replica)
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
        if replica.version is not None and (isinstance(
                exc, ChecksumMismatch | FileNotFoundError) or (
                isinstance(exc, TierError) and "short read" in str(exc))):
            await self._check_adopted(record, replica, every=0.0)

    async def _refuse_stale(self, record: ObjectRecord, served: Replica) -> None:
        """Before bytes of an adopted object go out from a copy (a replica other than its
        adopted file): raise :class:`ObjectChanged` unless the file is as it was adopted,
        looked at once per ``config.adopted_check`` seconds per object. A file that cannot
        be looked at (its tier is away) lets the copy serve: it is what there is."""
        adopted = next((r for r in record.ready if r.version is not None), None)
        if adopted is not None and adopted.id != served.id:
            await self._check_adopted(record, adopted, every=self.config.adopted_check)

    async def _check_adopted(self, record: ObjectRecord, adopted: Replica, *,
                             every: float) -> None:
        now = time.monotonic()
        if now - self.adopted_seen.get(record.key, -math.inf) < every:
            return
        try:
            seen = await self.tier(adopted.tier).version(adopted.path)
        except (TierstoreError, OSError):
            return  # cannot tell
        if seen is None:
            raise ObjectChanged(record.key, adopted.tier, record.key, "its file is gone")
        size, version = seen
        if size != record.size or (version is not None and version != adopted.version):
            raise ObjectChanged(record.key, adopted.tier, record.key,
                                f"{size} bytes now, {record.size} then" if size != record.size
                                else "written over since")
        self.adopted_seen[record.key] = now

    async def _transfer(self, record: ObjectRecord,
                        write: Callable[[AsyncIterable[Chunk]], Awaitable[T]],
                        pace: Pace | None = None, *, into: Tier | None = None) -> T:
        """Stream a whole verified object into ``write``, failing over between replicas by
        the read path's one rule (:meth:`Locality.read <tierstore.locality.Locality.read>`:
        the best replica first, a tier out of rotation last, its breaker told how each
        source answered; a stream is never hedged and has no deadline of its own).

        The stream raises :class:`_SourceFailed` at its end if the bytes do not match the
        catalog, so ``write`` never commits a corrupt copy; errors of ``write`` itself (the
        destination) propagate at once: no other source would help. When ``write`` writes
        to the tier ``into`` from a local replica, the stream comes as that replica's
        :class:`LocalFile`, which a local ``into`` copies in the kernel and S3 reads whole
        for one PUT (where what it gets does not hash to the checksum, it streams).
        """
        ranked = self.locality.rank(record.ready, record.size or 0)
        if not ranked:
            raise self._unreachable(record)

        async def fetch(replica: Replica) -> T:
            await self._refuse_stale(record, replica)  # never a stale copy copied on
            stream: AsyncIterable[Chunk] = self._verified_stream(record, replica, pace)
            source = self.tier(replica.tier)
            if into is not None and source.is_local:
                stream = LocalFile(source.full_path(replica.path), record.size or 0,
                                   str(record.checksum), stream,
                                   None if pace is None else functools.partial(pace, source.name))
            try:
                return await write(stream)
            except _SourceFailed as failed:  # the source's: the next replica is tried
                await self._refuse_if_changed(record, replica, failed.cause)
                raise failed.cause from None
            except (TierstoreError, OSError) as exc:  # the destination's
                raise _DestinationFailed(exc) from exc

        try:
            _, result = await self.locality.read(
                record.key, ranked, fetch, record.size or 0,
                lambda replica, exc: self._fallback(record.key, replica, exc), stream=True)
        except _DestinationFailed as failed:
            raise failed.cause from failed.cause.__cause__
        return result

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
        """Copy an object to a local file, verified.

        The bytes are written to a hidden file beside the target and replace the target only
        when complete and verified.

        Parameters
        ----------
        key : str
            The object's key.
        local_path : str or os.PathLike
            The file to write.

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        ObjectNotFound
            If no object with this key has a ready replica.
        NoReadableReplica
            If every replica failed; the message names what each one answered.
        ObjectChanged
            If the replica is an adopted file written over or removed since it was adopted.
        CatalogError
            If the catalog cannot be reached and no record of ``key`` is remembered.
        OSError
            If the local file cannot be written (the error names ``local_path``).
        """
        record, _ = await self._readable(key)
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


def _clamp(start: int | None, end: int | None, size: int) -> tuple[int, int]:
    lo = 0 if start is None else (max(0, size + start) if start < 0 else min(start, size))
    hi = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
    return lo, max(lo, hi)
