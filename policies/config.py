"""Policy settings: one frozen dataclass with the defaults tierstore ships.

These will be read from a ``[policies]`` section of the TOML config when the daemon lands (it
is the daemon's to load and validate at its entry point); until then ``tierstore plan`` uses
the defaults. Per-tier settings are mappings keyed by a tier's name or its class
(``hot``, ``warm``, ``cold``); a name wins over a class.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from tierstore.errors import ConfigError

from .base import TierState

__all__ = ["DAY", "HOUR", "PolicyConfig", "Scoring"]

T = TypeVar("T")

HOUR = 3600.0
DAY = 86400.0


class Scoring(enum.StrEnum):
    """How a tier ranks its objects: which are coldest, and which policy moves them.

    ``recency``: time since the last read (LRU-like; the recency policy's day thresholds).
    ``frequency``: the catalog's decayed read count (LFU with ageing).
    ``lrfu``: the decayed count weighted again by recency, ``score * 0.5 ** (idle / h)``, so
    ``recency_half_life`` ``h`` slides it from LRU-like (small) to LFU-like (large), as LRFU's
    lambda does.
    """

    RECENCY = "recency"
    FREQUENCY = "frequency"
    LRFU = "lrfu"


def _frozen(mapping: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, kw_only=True)
class PolicyConfig:
    """Every policy setting; times are seconds.

    Parameters
    ----------
    demote_after
        Per tier: how long an object goes unread before the recency policy demotes it off
        that tier (in the spirit of S3 Intelligent-Tiering's 30 and 90 days). A tier absent
        here is never demoted by recency.
    promote_within, promote_min_reads
        The recency policy promotes an object read within ``promote_within`` seconds and at
        least ``promote_min_reads`` times in all.
    promote_to
        The tier promotions go to (default: the hottest tier).
    scoring, default_scoring
        Per tier: :class:`Scoring` used to order the tier's objects (which are demoted first
        when it passes its high watermark) and to pick the policy that moves them, recency
        for ``recency``, frequency for the others.
    promote_score, demote_score, min_idle
        The frequency policy promotes an object whose score reaches ``promote_score`` and
        demotes one whose score is under ``demote_score`` once unread for ``min_idle``.
    recency_half_life
        The ``lrfu`` score's recency weight.
    pins
        Prefix -> tier: objects under a prefix stay on that tier, as if pinned one by one (a
        pin in the catalog wins).
    """

    demote_after: Mapping[str, float] = field(
        default_factory=lambda: {"hot": 30 * DAY, "warm": 90 * DAY})
    promote_within: float = DAY
    promote_min_reads: int = 1
    promote_to: str | None = None
    scoring: Mapping[str, Scoring] = field(default_factory=dict)
    default_scoring: Scoring = Scoring.RECENCY
    promote_score: float = 2.0
    demote_score: float = 0.5
    min_idle: float = HOUR
    recency_half_life: float = HOUR
    pins: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for tier, seconds in self.demote_after.items():
            _positive(seconds, f"demote_after.{tier}")
        _positive(self.promote_within, "promote_within")
        _positive(self.min_idle, "min_idle")
        _positive(self.recency_half_life, "recency_half_life")
        if self.demote_after and self.promote_within >= min(self.demote_after.values()):
            raise ConfigError("must be shorter than every demote_after age, or objects would "
                              "be promoted and demoted in turn", field="policies.promote_within")
        if self.promote_min_reads < 1 or self.demote_score > self.promote_score:
            raise ConfigError("expected promote_min_reads >= 1 and demote_score <= "
                              "promote_score", field="policies")
        object.__setattr__(self, "scoring", _frozen(
            {tier: _scoring(value, tier) for tier, value in self.scoring.items()}))
        object.__setattr__(self, "default_scoring", _scoring(self.default_scoring, "default"))
        object.__setattr__(self, "demote_after", _frozen(self.demote_after))
        object.__setattr__(self, "pins", _frozen(self.pins))

    def demote_after_for(self, tier: TierState) -> float | None:
        """Seconds unread before recency demotes off ``tier`` (None: never)."""
        return _lookup(self.demote_after, tier)

    def scoring_for(self, tier: TierState) -> Scoring:
        found = _lookup(self.scoring, tier)
        return self.default_scoring if found is None else found


def _lookup(mapping: Mapping[str, T], tier: TierState) -> T | None:
    if tier.name in mapping:
        return mapping[tier.name]
    return mapping.get(tier.tier_class.name.lower())


def _positive(seconds: float, name: str) -> None:
    if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"expected a positive number of seconds, got {seconds!r}",
                          field=f"policies.{name}")


def _scoring(value: object, tier: str) -> Scoring:
    try:
        return Scoring(str(value))
    except ValueError:
        raise ConfigError(f"expected one of {', '.join(Scoring)}, got {value!r}",
                          field=f"policies.scoring.{tier}") from None
