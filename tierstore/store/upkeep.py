"""Recovery, audit and adoption: the catalog and the tiers kept true to each other."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Collection

from ..catalog import Replica, ReplicaState
from ..errors import InvalidKey, ObjectNotFound, TierstoreError
from ..inflight import IN_FLIGHT
from ..keys import RESERVED_PREFIX, validate_key, validate_prefix
from ..reports import AdoptReport, AuditReport, RecoveryReport
from ..tier import PROBE_DIR, RECYCLE_DIR
from .base import log
from .replicas import Replicas

__all__ = ["ADOPT_BATCH", "Upkeep"]


ADOPT_BATCH = 256  # objects adopted per catalog transaction

# Work owned by another host is presumed dead when its row has had no heartbeat this long
# (a live owner refreshes the rows of its pending replicas: tierstore.inflight).
STALE_OWNER_SECONDS = 3600.0


class Upkeep(Replicas):
    """Keeping the catalog and the tiers true to each other: recovery of dead
    processes' work, the audit, and adopting (and rescanning) files other tools wrote."""

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

        Parameters
        ----------
        dead : collection of str, optional
            Owners (``host:pid``) whose work to recover, on any host; None for the work of
            every process presumed dead.

        Returns
        -------
        RecoveryReport
            What was rolled back, finished, skipped and failed.
        """
        rolled_back: list[tuple[str, str]] = []
        finished: list[tuple[str, str]] = []
        skipped = failed = 0
        now = time.time()
        for key, pending in await self.db.pending():
            presumed_dead = (pending.owner in dead if dead is not None
                             else not self._owner_alive(pending, now))
            if not presumed_dead or pending.tier not in self.tiers:
                skipped += 1
                continue
            replica = await self.db.take_over(pending, self.owner)
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
        """Catalog the files other tools wrote under a prefix of a tier as objects, in place.

        Each file's path under the tier's root is its key and its replica; nothing is
        copied. Each file is read once to compute its checksum, and the objects are
        committed :data:`ADOPT_BATCH` to a catalog transaction, each replica with its file's
        version (an S3 ETag; a local file's modification time and inode). A path that is not
        a valid key, or whose key the store holds elsewhere or as a folder, is refused and
        reported.

        Run again, it is a rescan: a file adopted already is counted, not read again (an
        interrupted run resumes), unless its size or version changed (written over behind
        the store's back): then it is read again and the object takes its new content, its
        copies on other tiers (of what it held before) removed, so none is served stale; a
        file adopted before and gone now takes its object with it. The prefix is remembered
        (:meth:`rescan` goes over it again). From then on the objects are the store's: its
        policies move them like any other (pin them to keep them where they are).

        Parameters
        ----------
        prefix : str
            The folder of the tier to adopt.
        tier : str
            The tier the files are on.
        keys : collection of str, optional
            Those files only (one missing is refused); every file under ``prefix`` if None.
        jobs : int, default 8
            Files read at a time.
        planned : callable, optional
            Called as ``planned(bytes, files)`` with how much there is to read.
        hashed : callable, optional
            Called as ``hashed(nbytes)`` after each file is read.

        Returns
        -------
        AdoptReport
            The files adopted, counted, refused and removed.

        Raises
        ------
        InvalidKey
            If ``prefix`` is not a safe relative path.
        UnknownTier
            If ``tier`` is not configured.
        TierError
            If the tier cannot be listed or read.
        """
        dest = self.tier(tier)
        wanted = validate_prefix(prefix)

        def under(path: str) -> bool:
            return path.startswith(wanted) if wanted.endswith("/") or not wanted \
                else path == wanted or path.startswith(wanted + "/")

        tracked = await self._adopted(dest.name, wanted)
        await self.db.add_adoption(dest.name, wanted, whole=keys is None)
        refused: list[tuple[str, str]] = []
        fresh: list[tuple[str, int, str | None, int | None]] = []  # key, size, version, id
        known = 0
        seen: set[str] = set()
        missing = set(keys) if keys is not None else set()
        found_files = [found for found in await dest.walk(wanted[:wanted.rfind("/") + 1])
                       if found.path.split("/", 1)[0] != RESERVED_PREFIX and under(found.path)
                       and (keys is None or found.path in missing)]
        refusals: dict[str, TierstoreError] = {}
        valid: list[str] = []
        for found in found_files:
            try:
                valid.append(validate_key(found.path))
            except InvalidKey as exc:
                refusals[found.path] = exc
        refusals.update(await self._folder_clashes(valid))  # two catalog reads for them all
        for found in found_files:
            key = path = found.path
            missing.discard(path)
            if path in refusals:
                refused.append((path, str(refusals[path])))
                continue
            record = await self.db.get(key)
            if record is None:
                fresh.append((key, found.size, found.version, None))
            elif (mine := record.on(dest.name)) is not None and mine.path == key:
                seen.add(key)
                was = tracked.get(key)  # the adopted replica, as adopted
                if was is not None and found.version is not None and (
                        was.version != found.version or found.size != record.size):
                    fresh.append((key, found.size, found.version, was.id))  # written over
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
                await self._retire(key, await self.db.readopt(
                    rid, owner=self.owner, size=size, checksum=hasher.hexdigest(),
                    version=version))
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
            await self.db.add_objects(batch, dest.name, owner=self.owner,
                                      versions={key: versions[key] for key, _, _ in batch
                                                if key in versions})
            adopted.extend(batch)

        await asyncio.gather(*(one(*entry) for entry in fresh))
        if pending:
            await commit()
        for key in gone:  # its file went: so does the object, copies and all
            with contextlib.suppress(ObjectNotFound):
                await self._retire(key, await self.db.begin_delete(key, owner=self.owner))
        return AdoptReport(dest.name, tuple(sorted((k, n) for k, n, _ in adopted)), known,
                           tuple(sorted(refused)), tuple(sorted(changed)), tuple(gone))

    async def _adopted(self, tier: str, prefix: str) -> dict[str, Replica]:
        """The ready adopted replicas on ``tier`` of the keys under ``prefix``, by key: as
        the records read say (:attr:`Replica.version`)."""
        return {record.key: replica
                for record in await self.db.objects(prefix)
                if (replica := record.on(tier)) is not None and replica.version is not None}

    async def rescan(self, *, jobs: int = 8) -> list[AdoptReport]:
        """Adopt every prefix adopted before again, as it was adopted.

        A whole prefix takes new files too; named files, those only. So files written over
        or removed behind the store's back are taken in (see :meth:`adopt`).

        Parameters
        ----------
        jobs : int, default 8
            Files read at a time.

        Returns
        -------
        list of AdoptReport
            One per prefix looked at again.
        """
        reports = []
        for tier, prefix, whole in await self.db.adoptions():
            if tier not in self.tiers:
                continue  # a tier no longer configured: nothing to look at
            keys = None if whole else list(await self._adopted(tier, prefix))
            if keys == []:
                continue  # every file of it moved away or removed since
            reports.append(await self.adopt(prefix, tier, keys=keys, jobs=jobs))
        return reports

    async def audit(self, *, deep: bool = False) -> AuditReport:
        """Check the catalog against the tiers.

        Every file on every tier must be named by a replica, and every ready replica must be
        there with its size (and, with ``deep``, its checksum).

        Parameters
        ----------
        deep : bool, default False
            Read every replica back and check its checksum too.

        Returns
        -------
        AuditReport
            The orphan files, the missing or bad replicas, and the pending ones.

        Raises
        ------
        TierError
            If a tier cannot be listed.
        """
        records = await self.db.objects()
        named = {(r.tier, p) for rec in records for r in rec.replicas for p in (r.path, r.tmp)
                 if p}
        orphans: list[tuple[str, str]] = []
        sizes: dict[tuple[str, str], int] = {}
        for tier in self.tiers.values():
            for found in await tier.walk():
                sizes[(tier.name, found.path)] = found.size
                if (tier.name, found.path) not in named and not found.path.startswith(
                        (PROBE_DIR + "/", RECYCLE_DIR + "/")):  # a probe a killed process
                    orphans.append((tier.name, found.path))  # left, a file kept: not data
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
