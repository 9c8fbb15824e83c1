"""Recency: demote what has not been read for a tier's age; promote what is read again."""

from __future__ import annotations

from collections.abc import Iterator

from .base import Move, ObjectState, Policy, Snapshot, demotion_dst, format_duration
from .config import PolicyConfig, Scoring
from .displace import Displacer, by_reads, coldest_by_reads

__all__ = ["RecencyPolicy"]


class RecencyPolicy(Policy):
    """Age thresholds per tier, like S3 Intelligent-Tiering's, at any granularity.

    An object unread for ``demote_after`` of the tier its best replica is on goes down, past
    every tier whose age it has also passed (unread for 100 days with the defaults: hot to
    cold). An object read within ``promote_within`` (and read ``promote_min_reads`` times in
    all) is copied to the promotion tier; its colder replica stays, so that demoting it later
    only drops the hot copy. When the promotion tier is at its high watermark a promotion
    displaces residents it outranks (:func:`~tierstore.policies.displace.by_reads`). Acts
    only on tiers whose scoring is ``recency``.

    Parameters
    ----------
    config : PolicyConfig, optional
        The thresholds; the defaults if None.
    """

    name = "recency"

    def __init__(self, config: PolicyConfig | None = None):
        self.config = config or PolicyConfig()

    def _governs(self, snapshot: Snapshot, tier: str) -> bool:
        state = snapshot.tier(tier)
        return state is not None and self.config.scoring_for(state) is Scoring.RECENCY

    def decide(self, snapshot: Snapshot) -> list[Move]:
        """Propose demotions, then promotions.

        Demotions come first (they make room), then promotions, most recently read first,
        with the displacements they need. Pinned and busy objects are left alone; an object
        demoted is not also promoted.

        Parameters
        ----------
        snapshot : Snapshot
            The catalog as the plan sees it.

        Returns
        -------
        list of Move
            The demotions (deferrable), then the promotions.
        """
        movable = [obj for obj in snapshot.objects if obj.pinned is None and not obj.busy]
        demotions = [m for obj in movable if (m := self._demotion(snapshot, obj))]
        demoted = {m.key for m in demotions}
        wanted = [obj for obj in movable if obj.key not in demoted]
        wanted.sort(key=lambda obj: (-(obj.last_access or 0.0), obj.key))
        return demotions + list(self._promotions(snapshot, wanted, demotions))

    def _promotions(self, snapshot: Snapshot, wanted: list[ObjectState],
                    demotions: list[Move]) -> Iterator[Move]:
        target = self.config.promote_to or (snapshot.hottest.name if snapshot.hottest else None)
        if target is None or not self._governs(snapshot, target):
            return
        demoted = {m.key for m in demotions}
        residents = coldest_by_reads((o for o in wanted if target in o.replicas
                                      and o.key not in demoted), snapshot.now)
        freed = sum(m.bytes for m in demotions if m.src == target)
        displacer = Displacer(snapshot, target, residents, self.name, freed=freed)
        outranks = by_reads(self.config.displace_ratio, snapshot.now)
        for obj in wanted:
            if (move := self._promotion(snapshot, obj, target)) is not None:
                yield from displacer.promote(obj, move, outranks)

    def _target(self, snapshot: Snapshot, src: str, idle: float) -> str | None:
        """The coldest tier whose hotter tiers' ages ``idle`` has all passed."""
        here, target = snapshot.tier(src), None
        while here is not None and self._governs(snapshot, here.name):
            age = self.config.demote_after_for(here)
            below = snapshot.next_colder(here.name)
            if age is None or idle < age or below is None:
                break
            target, here = below.name, below
        return target

    def _demotion(self, snapshot: Snapshot, obj: ObjectState) -> Move | None:
        src = snapshot.best(obj)
        idle = obj.idle(snapshot.now)
        target = self._target(snapshot, src, idle)
        dst = None if target is None else demotion_dst(snapshot, obj, src, target)
        if dst is None:
            return None
        state = snapshot.tier(src)
        assert state is not None
        age = format_duration(self.config.demote_after_for(state) or 0.0)
        return Move.of(obj, src, dst, self.name,
                       f"not read for {format_duration(idle)} (> {age} on {src})",
                       deferrable=True)

    def _promotion(self, snapshot: Snapshot, obj: ObjectState, target: str) -> Move | None:
        if obj.last_access is None:
            return None
        ago = max(0.0, snapshot.now - obj.last_access)
        if (ago > self.config.promote_within or obj.count < self.config.promote_min_reads
                or snapshot.rank(target) >= snapshot.rank(snapshot.best(obj))):
            return None
        return Move.of(obj, None, target, self.name,
                       f"read {format_duration(ago)} ago ({obj.count} "
                       f"read{'' if obj.count == 1 else 's'} in all)")
