"""How hot an object is, by each :class:`~tierstore.policies.config.Scoring`."""

from __future__ import annotations

from collections.abc import Iterable

from .base import ObjectState
from .config import PolicyConfig, Scoring

__all__ = ["coldest_first", "score"]


def score(obj: ObjectState, scoring: Scoring, now: float, config: PolicyConfig) -> float:
    """Higher is hotter: minus the idle seconds (recency), the decayed read count
    (frequency), or that count weighted by ``0.5 ** (idle / recency_half_life)`` (lrfu)."""
    if scoring is Scoring.RECENCY:
        return -obj.idle(now)
    if scoring is Scoring.FREQUENCY:
        return obj.score
    return obj.score * 0.5 ** (obj.idle(now) / config.recency_half_life)


def coldest_first(objects: Iterable[ObjectState], scoring: Scoring, now: float,
                  config: PolicyConfig) -> list[ObjectState]:
    """Objects no reader announced, by ``score`` ascending (ties go to the longest idle,
    then to key order); then announced ones, the furthest next use first (Belady's order)."""
    return sorted(objects, key=lambda o: (o.next_use is not None, -(o.next_use or 0.0),
                                          score(o, scoring, now, config), -o.idle(now), o.key))
