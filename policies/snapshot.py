"""How policies see a store: a :class:`Snapshot` built from what its catalog holds.

The store reads its catalog (:meth:`Store.snapshot`, :meth:`Store.read_snapshot`) and builds
the snapshot with :func:`build_snapshot`; policies only ever see the snapshot."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING

from tierstore.catalog import AccessStats, ObjectRecord, PreloadRecord, ReplicaState, TierUsage
from tierstore.catalog.base import DEFAULT_HALF_LIFE
from tierstore.config import Config
from tierstore.keys import is_mark

if TYPE_CHECKING:
    from tierstore.store import Store
    from tierstore.sync import SyncStore

from .base import ObjectState, Snapshot, TierState
from .preload import PreloadRequest

__all__ = ["build_snapshot", "object_state", "snapshot_from_store", "tier_states"]


def snapshot_from_store(store: Store | SyncStore, now: float | None = None, *,
                        site: str | None = None, tiers: Collection[str] | None = None,
                        copy_bytes_per_s: float | None = None) -> Snapshot:
    """Read a snapshot of a store's catalog.

    Asks the store (:meth:`Store.read_snapshot`, which blocks; from a coroutine, ``await
    store.snapshot()``): every object, its access statistics, when readers announced they
    will read it next, the pre-loads scheduled, and the tiers' usage (replicas being copied or
    removed count: they take space until they are done). Reads this process has not yet
    handed to the catalog are flushed first. An object with no ready replica on a tier kept
    is left out.

    Parameters
    ----------
    store : Store or SyncStore
        The store.
    now : float, optional
        The time the plan is for, in Unix seconds (default: the clock); scores are decayed
        to it.
    site : str, optional
        A node's daemon in a cluster: the statistics and announcements are those of reads
        and readers on that site only.
    tiers : collection of str, optional
        The tiers the plan may touch (default: every configured tier); the others are left
        out as if not configured.
    copy_bytes_per_s : float, optional
        The daemon's measured copy rate (:attr:`Snapshot.copy_bytes_per_s`).

    Returns
    -------
    Snapshot
        The catalog as of ``now``.
    """
    from tierstore.sync import SyncStore as Blocking  # the store imports this module

    aio = store.aio if isinstance(store, Blocking) else store
    return aio.read_snapshot(now, site=site, tiers=tiers, copy_bytes_per_s=copy_bytes_per_s)


def build_snapshot(config: Config, records: list[ObjectRecord],
                   stats: Mapping[str, AccessStats], due: Mapping[str, float],
                   preloads: Iterable[PreloadRecord], usage: list[TierUsage], at: float, *,
                   tiers: Collection[str] | None = None,
                   half_life: float = DEFAULT_HALF_LIFE,
                   copy_bytes_per_s: float | None = None) -> Snapshot:
    """Build the snapshot of what a catalog holds.

    Parameters
    ----------
    config : Config
        The store's config (its tiers).
    records : list of ObjectRecord
        Every object, with its replicas.
    stats : Mapping[str, AccessStats]
        Access statistics by key.
    due : Mapping[str, float]
        When readers announced they read each key next.
    preloads : iterable of PreloadRecord
        The scheduled pre-loads.
    usage : list of TierUsage
        The tiers' usage.
    at : float
        The time the plan is for, in Unix seconds; scores are decayed to it.
    tiers : collection of str, optional
        The tiers a plan may touch (default: every configured tier); the others are left
        out as if not configured.
    half_life : float, optional
        Seconds for a read to count half as much in the frequency score.
    copy_bytes_per_s : float, optional
        The daemon's measured copy rate (:attr:`Snapshot.copy_bytes_per_s`).

    Returns
    -------
    Snapshot
        What the policies see.
    """
    known = set(config.tiers) if tiers is None else set(config.tiers) & set(tiers)
    objects = [state for r in records
               if (state := object_state(r, stats.get(r.key), at, known, half_life,
                                         due.get(r.key)))]
    states = tuple(t for t in tier_states(config, usage, records) if t.name in known)
    return Snapshot(tuple(objects), states, at, tuple(PreloadRequest.of(p) for p in preloads),
                    copy_bytes_per_s)


def object_state(record: ObjectRecord, stats: AccessStats | None, now: float,
                 tiers: set[str], half_life: float = DEFAULT_HALF_LIFE,
                 next_use: float | None = None) -> ObjectState | None:
    """A catalog record as a policy sees it; None if it has no ready replica on a
    configured tier (not committed yet, being removed, or only on a tier since dropped)."""
    ready = tuple(r.tier for r in record.ready if r.tier in tiers)
    if not ready or record.size is None:
        return None
    return ObjectState(
        key=record.key, size=record.size, replicas=ready, pinned=record.pinned,
        last_access=stats.last_access if stats else None, count=stats.count if stats else 0,
        score=stats.score_at(now, half_life) if stats else 0.0, created=record.created,
        busy=any(r.state is not ReplicaState.READY for r in record.replicas),
        next_use=next_use)


def tier_states(config: Config, usage: list[TierUsage],
                records: list[ObjectRecord]) -> tuple[TierState, ...]:
    """Configured tiers with their bytes: ready replicas, plus replicas being copied or
    removed (they take space until they are done)."""
    used = {u.tier: u.bytes for u in usage}
    for record in records:
        for replica in record.replicas:
            if replica.state is not ReplicaState.READY and not is_mark(replica.tmp):
                used[replica.tier] = used.get(replica.tier, 0) + (record.size or 0)
    return tuple(TierState(name=t.name, tier_class=t.tier_class, capacity=t.capacity,
                           high_watermark=t.high_watermark, low_watermark=t.low_watermark,
                           used=used.get(t.name, 0), site=t.site)
                 for t in config.tiers.values())
