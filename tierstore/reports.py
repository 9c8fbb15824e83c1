"""What the store reports: object details, tier usage, recovery and audit results."""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import AccessStats, ReplicaState

__all__ = ["AuditReport", "ObjectInfo", "RecoveryReport", "ReplicaInfo", "SiteHolding",
           "TierReport"]


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    """A replica as a user sees it in ``stat``."""

    tier: str
    tier_class: str
    site: str
    state: str
    path: str
    # How this process ranks it now (tierstore.locality): distance class from the reader,
    # cost in ms (lower reads first), its place in the ranking (1 = first; None when not
    # ready), what was measured of its endpoint, and the endpoint's circuit breaker.
    distance: str = "-"
    score_ms: float | None = None
    rank: int | None = None
    latency_ms: float | None = None
    p95_ms: float | None = None
    health: str = "closed"


@dataclass(frozen=True, slots=True)
class SiteHolding:
    """What one site holds of a prefix's objects (``locate``): ``objects`` of them have a
    ready replica on a tier at the site (``bytes`` in all), ``missing`` have none there
    (``missing_bytes``); ``complete`` when none is missing. A job placed at a complete site
    reads the dataset without carrying it from elsewhere."""

    site: str
    tiers: tuple[str, ...]
    objects: int
    bytes: int
    missing: int
    missing_bytes: int

    @property
    def complete(self) -> bool:
        return self.missing == 0


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What ``stat`` returns: an object, its replicas per tier and its access statistics.

    Attributes
    ----------
    key : str
        The object's key.
    size : int
        Its size in bytes.
    checksum : str
        The checksum recorded at ingest.
    created : float
        When it was written, in seconds since the epoch.
    pinned : str or None
        The tier it is pinned to, if any.
    replicas : tuple of ReplicaInfo
        Its replicas, one per tier, as :class:`ReplicaInfo`.
    access : AccessStats or None
        Its access statistics; None if it was never read.
    """

    key: str
    size: int
    checksum: str
    created: float
    pinned: str | None
    replicas: tuple[ReplicaInfo, ...]
    access: AccessStats | None

    @property
    def tiers(self) -> list[str]:
        """The tiers that hold a ready replica."""
        return [r.tier for r in self.replicas if r.state == ReplicaState.READY]


@dataclass(frozen=True, slots=True)
class TierReport:
    """A tier's usage against its capacity (``du``)."""

    tier: str
    tier_class: str
    url: str
    objects: int
    bytes: int
    capacity: int | None
    high_watermark: float
    low_watermark: float

    @property
    def fill(self) -> float | None:
        return None if not self.capacity else self.bytes / self.capacity


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What :meth:`Store.recover` did with interrupted work."""

    rolled_back: tuple[tuple[str, str], ...]  # (key, tier) copies that never committed
    finished: tuple[tuple[str, str], ...]  # (key, tier) removals completed
    skipped: int  # work of processes still alive
    failed: int = 0  # work that could not be undone or finished now (a tier is down)


@dataclass(frozen=True, slots=True)
class AdoptReport:
    """What :meth:`Store.adopt` did with the files it found under a prefix of a tier."""

    tier: str
    adopted: tuple[tuple[str, int], ...]  # (key, size) cataloged now
    known: int  # files cataloged already as that key's replica on the tier, unchanged
    refused: tuple[tuple[str, str], ...]  # (path, why): not a valid key, or the key is taken
    changed: tuple[tuple[str, int], ...] = ()  # (key, size) adopted before, written over since
    vanished: tuple[str, ...] = ()  # keys adopted before whose files are gone (removed now)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.adopted)


@dataclass(frozen=True, slots=True)
class AuditReport:
    """How the tiers and the catalog agree (:meth:`Store.audit`)."""

    orphans: tuple[tuple[str, str], ...]  # (tier, path): on a tier, named by no replica
    missing: tuple[tuple[str, str, str], ...]  # (key, tier, why): ready replica not intact
    pending: int  # replicas still copying or deleting

    @property
    def ok(self) -> bool:
        return not (self.orphans or self.missing or self.pending)
