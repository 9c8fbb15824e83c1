"""Frequency: move by the decayed read count, or by a recency-weighted count (LRFU)."""

from __future__ import annotations

from .base import Move, ObjectState, Policy, Snapshot, demotion_dst, format_duration
from .config import PolicyConfig, Scoring
from .scores import score

__all__ = ["FrequencyPolicy"]


class FrequencyPolicy(Policy):
    """Scores objects by reads, not only by the last one.

    On a tier whose scoring is ``frequency`` (the catalog's decayed count) or ``lrfu`` (that
    count weighted again by recency): an object scoring under ``demote_score`` and unread for
    ``min_idle`` goes one tier down; one scoring at least ``promote_score`` by the promotion
    tier's scoring is copied there, highest score first.

    Parameters
    ----------
    config : PolicyConfig, optional
        The thresholds; the defaults if None.
    """

    name = "frequency"

    def __init__(self, config: PolicyConfig | None = None):
        self.config = config or PolicyConfig()

    def _scoring(self, snapshot: Snapshot, tier: str) -> Scoring | None:
        """The tier's scoring if this policy governs it."""
        state = snapshot.tier(tier)
        scoring = None if state is None else self.config.scoring_for(state)
        return None if scoring is Scoring.RECENCY else scoring

    def decide(self, snapshot: Snapshot) -> list[Move]:
        """Propose demotions, then promotions.

        Demotions come first (they make room), then promotions, highest score first. Pinned
        and busy objects are left alone; an object demoted is not also promoted.

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
        ranked = [p for obj in movable
                  if obj.key not in demoted and (p := self._promotion(snapshot, obj))]
        ranked.sort(key=lambda pair: (-pair[0], pair[1].key))
        return demotions + [move for _, move in ranked]

    def _demotion(self, snapshot: Snapshot, obj: ObjectState) -> Move | None:
        src = snapshot.best(obj)
        scoring = self._scoring(snapshot, src)
        if scoring is None or obj.idle(snapshot.now) < self.config.min_idle:
            return None
        value = score(obj, scoring, snapshot.now, self.config)
        dst = demotion_dst(snapshot, obj, src)
        if value >= self.config.demote_score or dst is None:
            return None
        return Move.of(obj, src, dst, self.name,
                       f"{scoring} {value:.3g} < {self.config.demote_score:g} and not read "
                       f"for {format_duration(obj.idle(snapshot.now))}", deferrable=True)

    def _promotion(self, snapshot: Snapshot, obj: ObjectState) -> tuple[float, Move] | None:
        target = self.config.promote_to or (snapshot.hottest.name if snapshot.hottest else None)
        scoring = None if target is None else self._scoring(snapshot, target)
        if target is None or scoring is None:
            return None
        value = score(obj, scoring, snapshot.now, self.config)
        if (value < self.config.promote_score
                or snapshot.rank(target) >= snapshot.rank(snapshot.best(obj))):
            return None
        return value, Move.of(obj, None, target, self.name,
                              f"{scoring} {value:.3g} >= {self.config.promote_score:g}")
