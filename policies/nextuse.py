"""Next use: keep on the hot tier what readers will read soonest (Belady's rule, with the
future the loaders announce instead of a guess from the past)."""

from __future__ import annotations

from tierstore.catalog import FETCHING

from .base import Move, ObjectState, Policy, Snapshot, format_duration
from .config import PolicyConfig
from .displace import Displacer, coldest_by_reads

__all__ = ["NextUsePolicy"]


class NextUsePolicy(Policy):
    """Stage what readers announced they will read soon.

    What readers announced they will read within ``next_use_horizon`` is staged, but not
    what they will read within ``next_use_lead``, nor what a copy at the measured rate
    (:attr:`Snapshot.copy_bytes_per_s`), behind the copies planned before it, would land
    after its reader got there: the reader fetches it anyway, and its read-through fill keeps
    it hot, so its bytes cross once. This is Belady's rule, with the future the loaders
    announce instead of a guess from the past.

    A loader knows its order in advance and announces when it will read each shard
    (:meth:`Catalog.announce <tierstore.catalog.Catalog.announce>`). Each announced object
    not yet on the promotion tier is copied there, soonest first; when the tier is at its
    high watermark it displaces residents no reader announced within the horizon (those not
    announced first, fewest reads first; then the furthest next use first), never one a
    reader will read: that one would be fetched again, while the staged shard is fetched
    once by its reader anyway. So with a dataset larger than the hot tier and a fresh shuffle
    every epoch the tier keeps serving as many reads as it holds shards, each shard crossing
    from the slower tier at most once an epoch, instead of thrashing as LRU does. Announced
    objects are held where they are, so recency and frequency do not demote what is about to
    be read.

    Parameters
    ----------
    config : PolicyConfig, optional
        The thresholds; the defaults if None.
    """

    name = "next_use"

    def __init__(self, config: PolicyConfig | None = None):
        self.config = config or PolicyConfig()

    def _target(self, snapshot: Snapshot) -> str | None:
        return self.config.promote_to or (snapshot.hottest.name if snapshot.hottest else None)

    def _soon(self, snapshot: Snapshot, obj: ObjectState) -> bool:
        return (obj.next_use is not None
                and obj.next_use <= snapshot.now + self.config.next_use_horizon)

    def _stageable(self, snapshot: Snapshot, obj: ObjectState) -> bool:
        """Due within the horizon, but not so soon that the reader gets there first."""
        lead = self.config.next_use_lead
        return (self._soon(snapshot, obj) and obj.next_use is not None
                and obj.next_use != FETCHING  # a reader is fetching it: no second fetch
                and (not lead or obj.next_use >= snapshot.now + lead))

    def decide(self, snapshot: Snapshot) -> list[Move]:
        """Propose the copies that stage announced objects, with their displacements.

        Soonest next use first; objects a reader is fetching already, busy ones, and those
        pinned elsewhere are left alone. Only residents no reader will read within the
        horizon are displaced (see the class).

        Parameters
        ----------
        snapshot : Snapshot
            The catalog as the plan sees it.

        Returns
        -------
        list of Move
            Each copy to the promotion tier, after the displacements that make room for it.
        """
        target = self._target(snapshot)
        if target is None:
            return []
        rank = snapshot.rank(target)
        movable = [obj for obj in snapshot.objects if not obj.busy]
        wanted = sorted((obj for obj in movable if obj.pinned is None or obj.pinned == target),
                        key=lambda o: (o.next_use or 0.0, o.key))
        wanted = _in_time([obj for obj in wanted if self._stageable(snapshot, obj)
                           and snapshot.rank(snapshot.best(obj)) > rank], snapshot)
        if not wanted:
            return []
        # Only what no reader will read within the horizon is displaced: a resident a reader
        # will read would be fetched again for it, while the shard staged in its place is
        # one its reader fetches once anyway, staged or not (Belady's rule where a miss may
        # bypass the tier: the tier keeps the reads it has; a fresh shuffle changes which
        # shards are read when, not how many of them the tier can serve)
        on_target = [obj for obj in movable if target in obj.replicas and obj.pinned is None
                     and not self._soon(snapshot, obj)]
        unannounced = coldest_by_reads((o for o in on_target if o.next_use is None),
                                       snapshot.now)
        later = sorted((o for o in on_target if o.next_use is not None),
                       key=lambda o: (-(o.next_use or 0.0), o.key))
        displacer = Displacer(snapshot, target, unannounced + later, self.name)
        moves: list[Move] = []
        for obj in wanted:
            assert obj.next_use is not None
            due = obj.next_use - snapshot.now
            when = f"in {format_duration(due)}" if due > 0 else "now"
            move = Move.of(obj, None, target, self.name, f"announced read {when}")
            moves += displacer.promote(obj, move, _read_later)
        return moves

    def holds(self, snapshot: Snapshot) -> frozenset[str]:
        """Hold what readers will read within the horizon where it is (no demotion).

        Parameters
        ----------
        snapshot : Snapshot
            The catalog as the plan sees it.

        Returns
        -------
        frozenset of str
            The keys of the objects announced within ``next_use_horizon``.
        """
        return frozenset(obj.key for obj in snapshot.objects if self._soon(snapshot, obj))


def _in_time(wanted: list[ObjectState], snapshot: Snapshot) -> list[ObjectState]:
    """Of ``wanted`` (soonest first), those whose copy lands before their next use, each
    copy queued behind the ones kept before it, at the measured copy rate."""
    rate = snapshot.copy_bytes_per_s
    if not rate:
        return wanted
    landed, kept = snapshot.now, []
    for obj in wanted:
        assert obj.next_use is not None
        if landed + obj.size / rate <= obj.next_use:
            landed += obj.size / rate
            kept.append(obj)
    return kept


def _read_later(candidate: ObjectState, resident: ObjectState) -> bool:
    """Whether ``resident`` is read after ``candidate`` (never, if not announced)."""
    assert candidate.next_use is not None
    return resident.next_use is None or resident.next_use > candidate.next_use
