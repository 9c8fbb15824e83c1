"""Pre-load: stage a prefix on a tier before a scheduled job reads it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from tierstore.catalog import PreloadRecord

from .base import Move, ObjectState, Policy, Snapshot, format_duration, under
from .config import DAY

__all__ = ["PreloadPolicy", "PreloadRequest"]


@dataclass(frozen=True, kw_only=True)
class PreloadRequest:
    """Have every object under ``prefix`` on ``tier`` (or a hotter one) by time ``by``.

    The request is active from ``by - lead`` (at once when ``lead`` is None) until
    ``by + hold``; while active it stages what is missing and keeps what is staged from being
    demoted by recency or frequency (watermarks still win).
    """

    prefix: str
    tier: str
    by: float
    lead: float | None = None
    hold: float = DAY

    def __post_init__(self) -> None:
        spans = (self.hold, 0.0 if self.lead is None else self.lead)
        if not math.isfinite(self.by) or not all(0 <= s < math.inf for s in spans):
            raise ValueError(f"preload {self.prefix!r}: expected a finite time, and lead and "
                             "hold of zero or more seconds")

    @classmethod
    def of(cls, record: PreloadRecord) -> PreloadRequest:
        """The request a catalog's scheduled pre-load makes."""
        return cls(prefix=record.prefix, tier=record.tier, by=record.deadline,
                   lead=record.lead, hold=record.hold)

    def active(self, now: float) -> bool:
        start = -math.inf if self.lead is None else self.by - self.lead
        return start <= now < self.by + self.hold


class PreloadPolicy(Policy):
    """Stages the objects of active :class:`PreloadRequest` s, earliest deadline first:
    those given here and those in the snapshot (scheduled with ``tierstore preload``).

    Each missing object is copied to the request's tier (its other replicas stay); what is
    already there, or on a hotter tier, is held.
    """

    name = "preload"

    def __init__(self, requests: Iterable[PreloadRequest] = ()):
        self.requests = tuple(sorted(requests, key=lambda r: (r.by, r.prefix, r.tier)))

    def _active(self, snapshot: Snapshot) -> list[PreloadRequest]:
        """Requests given here and those scheduled in the catalog, earliest deadline
        first."""
        requests = sorted({*self.requests, *snapshot.preloads},
                          key=lambda r: (r.by, r.prefix, r.tier))
        return [r for r in requests
                if r.active(snapshot.now) and snapshot.tier(r.tier) is not None]

    def _staged(self, snapshot: Snapshot, obj: ObjectState, request: PreloadRequest) -> bool:
        return snapshot.rank(snapshot.best(obj)) <= snapshot.rank(request.tier)

    def decide(self, snapshot: Snapshot) -> list[Move]:
        moves: list[Move] = []
        wanted: set[str] = set()
        for request in self._active(snapshot):
            when = datetime.fromtimestamp(request.by, UTC).strftime("%Y-%m-%dT%H:%MZ")
            left = request.by - snapshot.now
            due = f"in {format_duration(left)}" if left > 0 else "now"
            for obj in sorted(snapshot.objects, key=lambda o: o.key):
                if (obj.key in wanted or obj.busy or not under(obj.key, request.prefix)
                        or self._staged(snapshot, obj, request)):
                    continue
                wanted.add(obj.key)
                moves.append(Move.of(obj, None, request.tier, self.name,
                                     f"preload {request.prefix or '/'} by {when} ({due})",
                                     deferrable=True, due=request.by))
        return moves

    def holds(self, snapshot: Snapshot) -> frozenset[str]:
        return frozenset(obj.key for request in self._active(snapshot)
                         for obj in snapshot.objects
                         if under(obj.key, request.prefix) and self._staged(snapshot, obj,
                                                                             request))
