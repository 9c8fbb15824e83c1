"""Policy settings: one frozen dataclass with the defaults tierstore ships, and its
``[policies]`` section of the TOML config.

The core keeps that section as written (:attr:`Config.policies
<tierstore.config.Config.policies>`); :meth:`PolicyConfig.from_config` parses and validates it
where a plan is made (``tierstore plan``, ``daemon``, ``simulate``), and errors name the file
and the field. Per-tier settings are mappings keyed by a tier's name or its class (``hot``,
``warm``, ``cold``); a name wins over a class.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from tierstore.config import TierClass
from tierstore.errors import ConfigError
from tierstore.keys import validate_key
from tierstore.locality.placement import PlacementRule
from tierstore.units import DAY, HOUR, parse_duration  # re-exported: where callers found them

from .base import TierState

if TYPE_CHECKING:
    from tierstore.config import Config

__all__ = ["DAY", "HOUR", "PolicyConfig", "Scoring", "parse_duration"]

T = TypeVar("T")



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

    In the TOML config each parameter is a key of the ``[policies]`` table; durations are
    ``"90s"``, ``"5m"``, ``"12h"``, ``"30d"``, ``"2w"`` or a number of seconds, and per-tier
    tables are keyed by a tier's name or class (a given table replaces the default one)::

        [policies]
        demote_after = { hot = "7d", warm = "90d" }   # tiers absent: never demoted by age
        promote_within = "1h"
        promote_min_reads = 2
        promote_to = "hot"
        scoring = { hot = "lrfu" }                    # recency | frequency | lrfu
        default_scoring = "recency"
        promote_score = 2.0
        demote_score = 0.5
        min_idle = "1h"
        recency_half_life = "1h"
        displace_ratio = 2.0                          # 0: promotions never displace
        next_use_horizon = "1h"
        next_use_lead = "0s"
        pins = { "datasets/eval" = "hot" }            # prefix -> tier name

    An unknown key, a value of the wrong kind, or a tier that is not configured is a
    :class:`~tierstore.errors.ConfigError` naming the file and the field
    (:meth:`from_toml`).

    Attributes
    ----------
    demote_after : mapping of str to float, default {"hot": 30 days, "warm": 90 days}
        Per tier: how long an object goes unread before the recency policy demotes it off
        that tier (in the spirit of S3 Intelligent-Tiering's 30 and 90 days). A tier absent
        here is never demoted by recency.
    promote_within : float, default one day
    promote_min_reads : int, default 1
        The recency policy promotes an object read within ``promote_within`` seconds and at
        least ``promote_min_reads`` times in all.
    promote_to : str, optional
        The tier promotions go to (default: the hottest tier).
    scoring : mapping of str to Scoring, default {}
    default_scoring : Scoring, default Scoring.RECENCY
        Per tier (``default_scoring`` for a tier absent from ``scoring``): the
        :class:`Scoring` used to order the tier's objects (which are demoted first when it
        passes its high watermark) and to pick the policy that moves them, recency for
        ``recency``, frequency for the others.
    promote_score : float, default 2.0
    demote_score : float, default 0.5
    min_idle : float, default one hour
        The frequency policy promotes an object whose score reaches ``promote_score`` and
        demotes one whose score is under ``demote_score`` once unread for ``min_idle``.
    recency_half_life : float, default one hour
        The ``lrfu`` score's recency weight.
    displace_ratio : float, default 2.0
        A promotion into a tier at its high watermark may push out (to a colder tier) an
        object that was read less recently than the candidate and whose decayed read count is
        at most ``1 / displace_ratio`` of the candidate's, coldest first (an admission test in
        the spirit of TinyLFU: one recent read does not displace a popular object). 0 turns
        displacement off: promotions then stop at the high watermark.
    next_use_horizon : float, default one hour
    next_use_lead : float, default 0.0
        The next-use policy stages objects that readers announced they will read within
        ``next_use_horizon``, soonest first, displacing what is read later or never; but not
        those due within ``next_use_lead``: a reader gets to them before a copy would land.
    pins : mapping of str to str, default {}
        Prefix -> tier: objects under a prefix stay on that tier, as if pinned one by one (a
        pin in the catalog wins).
    placement : mapping of str to PlacementRule, default {}
        Not of the ``[policies]`` table: the config's ``[locality.placement]`` rules (tier
        class -> rule), which :meth:`from_config` brings along for the placement policy.

    Raises
    ------
    ConfigError
        If a duration is not positive, ``next_use_lead`` is not under ``next_use_horizon``,
        ``displace_ratio`` is neither 0 nor at least 1, ``promote_within`` is not shorter
        than every ``demote_after`` age (objects would be promoted and demoted in turn),
        ``promote_min_reads`` is under 1, ``demote_score`` is over ``promote_score``, or a
        scoring is unknown.
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
    displace_ratio: float = 2.0
    next_use_horizon: float = HOUR
    next_use_lead: float = 0.0
    pins: Mapping[str, str] = field(default_factory=dict)
    # Not of the [policies] table: the config's [locality.placement] rules, which
    # :meth:`from_config` brings along for the placement policy (tier class -> rule).
    placement: Mapping[str, PlacementRule] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for tier, seconds in self.demote_after.items():
            _positive(seconds, f"demote_after.{tier}")
        _positive(self.promote_within, "promote_within")
        _positive(self.min_idle, "min_idle")
        _positive(self.recency_half_life, "recency_half_life")
        _positive(self.next_use_horizon, "next_use_horizon")
        if not 0 <= self.next_use_lead < self.next_use_horizon:
            raise ConfigError("expected 0 or more seconds, less than next_use_horizon",
                              field="policies.next_use_lead")
        if not (math.isfinite(self.displace_ratio) and (self.displace_ratio == 0
                                                        or self.displace_ratio >= 1)):
            raise ConfigError(f"expected 0 (off) or a ratio of at least 1, got "
                              f"{self.displace_ratio!r}", field="policies.displace_ratio")
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
        object.__setattr__(self, "placement", _frozen(self.placement))

    @classmethod
    def from_config(cls, config: Config) -> PolicyConfig:
        """Parse a config's ``[policies]`` table, checked against its tiers.

        Parameters
        ----------
        config : Config
            The config.

        Returns
        -------
        PolicyConfig
            The table's settings (the defaults where absent), with the config's
            ``[locality.placement]`` rules as :attr:`placement`.

        Raises
        ------
        ConfigError
            As :meth:`from_toml`, naming the config's file.
        """
        tiers = {name: tier.tier_class for name, tier in config.tiers.items()}
        parsed = cls.from_toml(config.policies, source=config.source, tiers=tiers)
        return replace(parsed, placement=config.locality.placement)

    @classmethod
    def from_toml(cls, table: Mapping[str, Any], *, source: str | None = None,
                  tiers: Mapping[str, TierClass] | None = None) -> PolicyConfig:
        """Parse a ``[policies]`` table as TOML gives it.

        Parameters
        ----------
        table : mapping
            The table.
        source : str, optional
            The file it came from, for messages.
        tiers : mapping of str to TierClass, optional
            Name -> class: the tiers a per-tier key, ``promote_to`` or a pin may name (any,
            if None); a per-tier key may also name a class.

        Returns
        -------
        PolicyConfig
            The settings (the defaults where absent); no placement rules.

        Raises
        ------
        ConfigError
            Naming ``source`` and the field: an unknown key, a value of the wrong kind, a tier
            that is not configured, or the settings inconsistent (see the class).
        """
        return _from_toml(cls, table, _Where(source, tiers))

    def demote_after_for(self, tier: TierState) -> float | None:
        """Look up how long an object may go unread on a tier before recency demotes it.

        A setting for the tier's name wins over one for its class.

        Parameters
        ----------
        tier : TierState
            The tier.

        Returns
        -------
        float or None
            Seconds unread before recency demotes off ``tier``; None: never.
        """
        return _lookup(self.demote_after, tier)

    def scoring_for(self, tier: TierState) -> Scoring:
        """Look up how a tier ranks its objects.

        A setting for the tier's name wins over one for its class, and either over
        ``default_scoring``.

        Parameters
        ----------
        tier : TierState
            The tier.

        Returns
        -------
        Scoring
            The tier's scoring.
        """
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


# -- the [policies] table ---------------------------------------------------------------------



@dataclass(frozen=True)
class _Where:
    """The file a table came from and the tiers its fields may name."""

    source: str | None
    tiers: Mapping[str, TierClass] | None

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(message, source=self.source, field=f"policies.{name}")

    def table(self, value: object, name: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(name, f"expected a table, got {value!r}")
        return value

    def tier(self, value: object, name: str, *, classes: bool = False) -> str:
        """A configured tier's name (or, with ``classes``, a class name)."""
        if not isinstance(value, str):
            raise self.error(name, f"expected a tier name, got {value!r}")
        if (self.tiers is None or value in self.tiers
                or (classes and value.upper() in TierClass.__members__)):
            return value
        known = ", ".join(self.tiers)
        if classes:
            raise self.error(name, f"{value!r} is neither a configured tier ({known}) nor a "
                                   "class (hot, warm, cold)")
        raise self.error(name, f"{value!r} is not a configured tier (configured: {known})")

    def per_tier(self, value: object, name: str,
                 parse: Callable[[object, str], Any]) -> dict[str, Any]:
        return {self.tier(tier, f"{name}.{tier}", classes=True): parse(item, f"{name}.{tier}")
                for tier, item in self.table(value, name).items()}

    def duration(self, value: object, name: str) -> float:
        return parse_duration(value, source=self.source, field=f"policies.{name}")

    def number(self, value: object, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"expected a number, got {value!r}")
        return float(value)

    def count(self, value: object, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected a whole number, got {value!r}")
        return value

    def scoring(self, value: object, name: str) -> Scoring:
        try:
            return Scoring(str(value))
        except ValueError:
            raise self.error(name, f"expected one of {', '.join(Scoring)}, got {value!r}"
                             ) from None

    def pins(self, value: object, name: str) -> dict[str, str]:
        out = {}
        for prefix, tier in self.table(value, name).items():
            where = f'{name}."{prefix}"'
            if prefix.strip("/"):
                try:
                    validate_key(prefix.strip("/"))
                except ValueError as exc:
                    raise self.error(where, f"not a key prefix ({exc})") from None
            out[prefix] = self.tier(tier, where)
        return out


# field -> how its TOML value is parsed
_PARSERS: dict[str, Callable[[_Where, object, str], Any]] = {
    "demote_after": lambda w, v, n: w.per_tier(v, n, w.duration),
    "promote_within": _Where.duration,
    "promote_min_reads": _Where.count,
    "promote_to": lambda w, v, n: w.tier(v, n),
    "scoring": lambda w, v, n: w.per_tier(v, n, w.scoring),
    "default_scoring": _Where.scoring,
    "promote_score": _Where.number,
    "demote_score": _Where.number,
    "min_idle": _Where.duration,
    "recency_half_life": _Where.duration,
    "displace_ratio": _Where.number,
    "next_use_horizon": _Where.duration,
    "next_use_lead": _Where.duration,
    "pins": _Where.pins,
}


def _from_toml(cls: type[PolicyConfig], table: Mapping[str, Any], where: _Where
               ) -> PolicyConfig:
    assert set(_PARSERS) == {f.name for f in fields(cls)} - {"placement"}, \
        "a PolicyConfig field has no parser"
    unknown = sorted(set(table) - set(_PARSERS))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} (expected one of "
                          f"{', '.join(sorted(_PARSERS))})", source=where.source,
                          field="policies")
    values = {name: _PARSERS[name](where, value, name) for name, value in table.items()}
    try:
        return cls(**values)
    except ConfigError as exc:  # a check across fields, which names no file
        raise ConfigError(str(exc), source=where.source) from None
