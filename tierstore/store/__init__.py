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

:class:`Store` is a facade over the parts, each a module named for what it does: the state they
share (:mod:`.base`), the read path (:mod:`.reads`), the replica life (:mod:`.replicas`: puts,
copies, moves, drops, repairs, the readers' fills) and upkeep (:mod:`.upkeep`: recovery, audit,
adoption). The parts reach the catalog through its async face (``Store.db``, an
:class:`~tierstore.catalog.AsyncCatalog`), so that no catalog call blocks the event loop."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Collection, Mapping
from typing import Any

from ..catalog import AccessStats, ObjectRecord, PreloadRecord
from ..catalog.base import DEFAULT_HALF_LIFE
from ..config import Config, load_config
from ..errors import ObjectNotFound
from ..keys import validate_key, validate_prefix
from ..policies.base import Snapshot
from ..policies.snapshot import build_snapshot
from ..reports import (
    AdoptReport,
    AuditReport,
    ObjectInfo,
    RecoveryReport,
    ReplicaInfo,
    SiteHolding,
    TierReport,
)
from .base import Pace, Source, StoreBase, finish
from .reads import ReadPath
from .replicas import FillClaim, Replicas
from .upkeep import ADOPT_BATCH, Upkeep

__all__ = ["ADOPT_BATCH", "AdoptReport", "AuditReport", "FillClaim", "ObjectInfo", "Pace",
           "ReadPath", "RecoveryReport", "Replicas", "SiteHolding", "Source", "Store",
           "StoreBase", "TierReport", "Upkeep"]


class Store(Upkeep):
    """Objects on tiers, as one namespace of keys.

    Every method is a coroutine; :class:`tierstore.SyncStore` wraps them for blocking code.
    The parts: :class:`.reads.ReadPath`, :class:`.replicas.Replicas`, :class:`.upkeep.Upkeep`
    over :class:`.base.StoreBase`.
    """

    @classmethod
    async def connect(cls, config: Config | str | os.PathLike[str] | None = None, *,
                      recover: bool = True) -> Store:
        """Open the store a config describes and recover interrupted work of dead processes.

        Parameters
        ----------
        config : Config, str, os.PathLike or None, optional
            A :class:`Config`, a TOML path, or None for ``$TIERSTORE_CONFIG`` /
            ``$TIERSTORE_HOME`` / the embedded default.
        recover : bool, default True
            Finish or roll back the moves of dead processes (:meth:`recover`) first.

        Returns
        -------
        Store
            The open store.

        Raises
        ------
        ConfigError
            If the config is malformed.
        CatalogError
            If the catalog is unusable.

        Examples
        --------
        >>> store = await Store.connect("tierstore.toml")  # doctest: +SKIP
        >>> await store.put("data/a.bin", b"...")  # doctest: +SKIP
        """
        store = cls(config if isinstance(config, Config) else load_config(config))
        if recover:
            await store.recover()
        return store

    async def close(self) -> None:
        """Flush access statistics, close client sessions and catalog connections."""
        if self.repairs:  # replacements of corrupt replicas: a while to finish
            await finish(list(self.repairs.values()), timeout=30.0)
        self.recorder.close()
        for tier in self.tiers.values():
            await tier.close()
        # On the loop, not in a thread: no task may start a catalog call while it closes (a
        # cancelled move's roll-back would find it closed under it; recovery does that work).
        self.catalog.close()

    async def announce(self, reader: str, uses: Mapping[str, float], *,
                       ttl: float = 3600.0) -> None:
        """Tell the daemon when a reader will read which keys.

        The announcement replaces what ``reader`` announced before. The daemon's next-use
        policy stages what is read soonest into the hot tier.

        Parameters
        ----------
        reader : str
            Who reads (a loader's name).
        uses : mapping of str to float
            Keys and when each will be read, in seconds since the epoch; an empty mapping
            withdraws the announcement.
        ttl : float, default 3600.0
            Seconds the announcement counts for.

        Raises
        ------
        InvalidKey
            If a key is not a safe relative path.
        """
        for key in uses:
            validate_key(key)
        await self.db.announce(reader, dict(uses), expires=time.time() + ttl,
                               site=self.config.site)

    async def schedule_preload(self, prefix: str, tier: str, deadline: float, *,
                               lead: float | None = None, hold: float = 86400.0
                               ) -> PreloadRecord:
        """Have every object under a prefix on a tier by a deadline.

        The daemon stages them from ``deadline - lead`` and keeps them there until
        ``deadline + hold``. The pre-load replaces one of the same prefix and tier.

        Parameters
        ----------
        prefix : str
            The objects' prefix.
        tier : str
            The tier to stage them to.
        deadline : float
            When they must be there, in seconds since the epoch.
        lead : float, optional
            Seconds before ``deadline`` to start staging; at once if None.
        hold : float, default 86400.0
            Seconds after ``deadline`` to keep them there.

        Returns
        -------
        PreloadRecord
            The scheduled pre-load.

        Raises
        ------
        UnknownTier
            If ``tier`` is not configured.
        InvalidKey
            If ``prefix`` is not a safe relative path.
        ValueError
            If ``deadline``, ``lead`` or ``hold`` is not finite or is negative.
        """
        self.tier(tier)
        name = validate_prefix(prefix)
        if not (math.isfinite(deadline) and hold >= 0 and (lead is None or lead >= 0)):
            raise ValueError("expected a finite deadline and lead and hold of 0 s or more")
        record = PreloadRecord(name, tier, deadline, lead, hold, time.time())
        await self.db.add_preload(record)
        return record

    async def preloads(self) -> list[PreloadRecord]:
        """List the scheduled pre-loads.

        Returns
        -------
        list of PreloadRecord
            The pre-loads, earliest deadline first.
        """
        return await self.db.preloads()

    async def cancel_preload(self, prefix: str, tier: str | None = None) -> int:
        """Cancel the pre-loads of a prefix.

        Parameters
        ----------
        prefix : str
            The pre-loads' prefix.
        tier : str, optional
            Cancel the pre-load to this tier only.

        Returns
        -------
        int
            How many were cancelled.

        Raises
        ------
        InvalidKey
            If ``prefix`` is not a safe relative path.
        """
        return await self.db.remove_preload(validate_prefix(prefix), tier)

    async def stat(self, key: str) -> ObjectInfo:
        """Describe an object.

        Parameters
        ----------
        key : str
            The object's key.

        Returns
        -------
        ObjectInfo
            Its size, checksum, pin, replicas per tier and access statistics.

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        ObjectNotFound
            If no object with this key has a ready replica.
        """
        record = await self._ready(key)
        await asyncio.to_thread(self.recorder.flush)
        return self._info(record, (await self.db.access([record.key])).get(record.key))

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
        """Tell whether an object has a ready replica.

        Parameters
        ----------
        key : str
            The object's key.

        Returns
        -------
        bool
            True if the object exists with a ready replica.

        Raises
        ------
        InvalidKey
            If ``key`` is not a safe relative path.
        """
        record = await self.db.get(validate_key(key))
        return record is not None and bool(record.ready)

    async def find(self, prefix: str = "") -> list[str]:
        """List every key that starts with a prefix.

        Parameters
        ----------
        prefix : str, default ""
            A plain string prefix; every key if empty.

        Returns
        -------
        list of str
            The keys, sorted.

        Raises
        ------
        InvalidKey
            If ``prefix`` is not a safe relative path.
        """
        if prefix:
            validate_prefix(prefix)
        return [r.key for r in await self.db.objects(prefix) if r.ready]

    async def ls(self, path: str = "") -> list[dict[str, Any]]:
        """List the entries directly under a path, as fsspec lists them: files and folders.

        Parameters
        ----------
        path : str, default ""
            A folder of keys (or an object's key); the root if empty.

        Returns
        -------
        list of dict
            One fsspec entry (``name``, ``size``, ``type``, ...) per file or folder.

        Raises
        ------
        ObjectNotFound
            If nothing is under ``path``.
        InvalidKey
            If ``path`` is not a safe relative path.
        """
        if path and await self.exists(path.rstrip("/")):
            return [self._entry(await self._ready(path.rstrip("/")))]
        prefix = validate_prefix(path.rstrip("/") + "/") if path.strip("/") else ""
        entries: dict[str, dict[str, Any]] = {}
        for record in await self.db.objects(prefix):
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

    async def locate(self, prefix: str = "") -> list[SiteHolding]:
        """Say, per site with a tier, what it holds of the objects under a prefix.

        It tells whether a job there would find them all without carrying bytes from
        elsewhere.

        Parameters
        ----------
        prefix : str, default ""
            The objects' prefix; every object if empty.

        Returns
        -------
        list of SiteHolding
            One per site.

        Raises
        ------
        InvalidKey
            If ``prefix`` is not a safe relative path.
        """
        if prefix:
            validate_prefix(prefix)
        sites: dict[str, list[str]] = {}
        for name, tier in self.tiers.items():
            sites.setdefault(tier.config.site, []).append(name)
        held = dict.fromkeys(sites, (0, 0))
        total = (0, 0)
        for record in await self.db.objects(prefix):
            if not record.ready:
                continue
            size = record.size or 0
            total = (total[0] + 1, total[1] + size)
            for site in {self.tiers[r.tier].config.site for r in record.ready
                         if r.tier in self.tiers}:
                held[site] = (held[site][0] + 1, held[site][1] + size)
        return [SiteHolding(site, tuple(names), *held[site], total[0] - held[site][0],
                            total[1] - held[site][1]) for site, names in sites.items()]

    def read_snapshot(self, now: float | None = None, *, site: str | None = None,
                      tiers: Collection[str] | None = None,
                      copy_bytes_per_s: float | None = None) -> Snapshot:
        """Read what the policies plan from, from the catalog.

        Every object, its access statistics, when readers announced they read it next, the
        pre-loads and the tiers' usage. Blocks on the catalog (from a coroutine, ``await``
        :meth:`snapshot`). Reads this process has not yet handed to the catalog are flushed
        first.

        Parameters
        ----------
        now : float, optional
            The time the plan is for, in seconds since the epoch (default: the clock);
            scores are decayed to it.
        site : str, optional
            A node's daemon in a cluster: the statistics and announcements of reads and
            readers on that site only.
        tiers : Collection[str], optional
            The tiers the plan may touch (default: every configured tier).
        copy_bytes_per_s : float, optional
            The daemon's measured copy rate.

        Returns
        -------
        Snapshot
            What the policies see.
        """
        self.recorder.flush()
        at = time.time() if now is None else now
        records = self.catalog.objects()
        keys = [r.key for r in records]
        stats = (self.catalog.access(keys) if site is None
                 else self.catalog.access(keys, site=site))
        return build_snapshot(
            self.config, records, stats, self.catalog.next_uses(at, site=site),
            self.catalog.preloads(), self.catalog.usage(), at, tiers=tiers,
            half_life=float(getattr(self.catalog, "half_life", DEFAULT_HALF_LIFE)),
            copy_bytes_per_s=copy_bytes_per_s)

    async def snapshot(self, now: float | None = None, *, site: str | None = None,
                       tiers: Collection[str] | None = None,
                       copy_bytes_per_s: float | None = None) -> Snapshot:
        """:meth:`read_snapshot`, its catalog reads off the event loop.

        Parameters
        ----------
        now : float, optional
            The time the plan is for (default: the clock).
        site : str, optional
            Only the reads and readers of this site.
        tiers : Collection[str], optional
            The tiers the plan may touch (default: all).
        copy_bytes_per_s : float, optional
            The daemon's measured copy rate.

        Returns
        -------
        Snapshot
            What the policies see.
        """
        return await asyncio.to_thread(self.read_snapshot, now, site=site, tiers=tiers,
                                       copy_bytes_per_s=copy_bytes_per_s)

    async def usage(self) -> list[TierReport]:
        """Count objects and bytes per configured tier (``du``).

        Returns
        -------
        list of TierReport
            One per tier, against its capacity and watermarks.
        """
        held = {u.tier: u for u in await self.db.usage()}
        return [TierReport(name, tier.tier_class.name.lower(), tier.config.url,
                           held[name].objects if name in held else 0,
                           held[name].bytes if name in held else 0, tier.config.capacity,
                           tier.config.high_watermark, tier.config.low_watermark)
                for name, tier in self.tiers.items()]
