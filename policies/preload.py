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
    """Have every object under a prefix on a tier (or a hotter one) by a time.

    The request is active from ``by - lead`` (at once when ``lead`` is None) until
    ``by + hold``; while active it stages what is missing and keeps what is staged from being
    demoted by recency or frequency (watermarks still win).

    Attributes
    ----------
    prefix : str
        The objects: the key itself, or those in the folder ``prefix/`` (all for ``""``).
    tier : str
        The tier to stage them on.
    by : float
        The deadline, in Unix seconds (finite).
    lead : float, optional
        Seconds before ``by`` the request becomes active; at once if None.
    hold : float, default one day
        Seconds after ``by`` it stays active.

    Raises
    ------
    ValueError
        If ``by`` is not finite, or ``lead`` or ``hold`` is negative or infinite.
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
        """Make the request a catalog's scheduled pre-load stands for.

        Parameters
        ----------
        record : PreloadRecord
            The catalog's record.

        Returns
        -------
        PreloadRequest
            The request (its deadline as ``by``).
        """
        return cls(prefix=record.prefix, tier=record.tier, by=record.deadline,
                   lead=record.lead, hold=record.hold)

    def active(self, now: float) -> bool:
        """Tell whether the request is active.

        Parameters
        ----------
        now : float
            The time, in Unix seconds.

        Returns
        -------
        bool
            Whether ``by - lead <= now < by + hold`` (no lower bound when ``lead`` is None).
        """
        start = -math.inf if self.lead is None else self.by - self.lead
        return start <= now < self.by + self.hold


class PreloadPolicy(Policy):
    """Stage the objects of active pre-load requests, earliest deadline first.

    The requests are those given here and those in the snapshot (scheduled with
    ``tierstore preload``), of :class:`PreloadRequest`. Each missing object is copied to the
    request's tier (its other replicas stay); what is already there, or on a hotter tier, is
    held.

    Parameters
    ----------
    requests : iterable of PreloadRequest, default ()
        Requests beside those scheduled in the catalog.
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
        """Propose the copies that stage the active requests' missing objects.

        Requests on a tier not configured are skipped; busy objects are left alone; an
        object wanted by two requests is copied for the earlier deadline.

        Parameters
        ----------
        snapshot : Snapshot
            The catalog as the plan sees it.

        Returns
        -------
        list of Move
            The copies, earliest deadline first, then by key; each deferrable, due at the
            request's deadline.
        """
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
        """Hold what the active requests have staged already.

        Parameters
        ----------
        snapshot : Snapshot
            The catalog as the plan sees it.

        Returns
        -------
        frozenset of str
            The keys of the objects under an active request's prefix that are on its tier or
            a hotter one.
        """
        return frozenset(obj.key for request in self._active(snapshot)
                         for obj in snapshot.objects
                         if under(obj.key, request.prefix) and self._staged(snapshot, obj,
                                                                             request))
