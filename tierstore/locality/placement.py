"""Placement rules: how many replicas an object keeps on a tier class, and how they spread.

The ``[locality.placement]`` table of the config names a rule per tier class::

    [locality.placement]
    warm = { replicas = 2, spread = "zone" }   # two warm replicas, in different zones
    cold = { replicas = 1 }                    # spread defaults to "node"

``replicas`` (>= 1) is how many ready replicas the object keeps on tiers of that class;
``spread`` is the failure domain they are spread over: ``"node"`` (different sites),
``"zone"`` (different region/zone) or ``"region"`` (different regions). A tier's domain is its
site (``region/zone/node``) cut to that many parts, so a zone-wide site ``"eu/a"`` and a node
``"eu/a/n1"`` share the zone ``eu/a``. A class without a rule keeps what it has.

Who honours it:

- ``Store.put`` writes the object to its tier and then, as that tier's class's rule asks, the
  extra replicas on tiers of the same class in other domains, nearest to the writer first
  (:func:`place_after_put`); one that cannot be written is logged and left to the daemon;
- the daemon's placement policy (``policies/placement.py``) tops up the replicas of the
  object's *coldest* class (where it lives: replicas on hotter classes are caches that the
  migration policies manage) and drops surplus replicas in every class with a rule, duplicates
  in one domain first; never the last replica, never a pinned one.

When there are not enough domains for the spread asked, the replicas go to other tiers of the
class in domains already used (as many replicas as possible, spread as far as the tiers allow).
:func:`placement` is the one decision both use.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError, TierstoreError
from .topology import parse_site

if TYPE_CHECKING:
    from ..store.replicas import Replicas

__all__ = ["SPREADS", "PlacementRule", "domain", "parse_placement", "place_after_put",
           "placement"]

log = logging.getLogger(__name__)
SPREADS = {"region": 1, "zone": 2, "node": 3}  # spread -> site parts that name the domain
_CLASSES = ("hot", "warm", "cold")


@dataclass(frozen=True, slots=True)
class PlacementRule:
    """``replicas`` ready replicas on a class, in different ``spread`` domains."""

    replicas: int = 1
    spread: str = "node"

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.spread not in SPREADS:
            raise ConfigError(f"expected replicas >= 1 and spread one of "
                              f"{', '.join(SPREADS)}, got {self.replicas!r}, {self.spread!r}",
                              field="locality.placement")

    def domain(self, site: str) -> tuple[str, ...]:
        return domain(site, self.spread)


def domain(site: str, spread: str) -> tuple[str, ...]:
    """The failure domain of ``site`` at ``spread``: its first 1 (region), 2 (zone) or 3
    (node) parts."""
    return parse_site(site).parts[:SPREADS[spread]]


def parse_placement(raw: object, *, source: str | None,
                    where: str = "locality.placement") -> dict[str, PlacementRule]:
    """The ``[locality.placement]`` table: tier class -> rule; errors name the field."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"expected a table, got {raw!r}", source=source, field=where)
    rules: dict[str, PlacementRule] = {}
    for name, table in raw.items():
        field = f"{where}.{name}"
        if name not in _CLASSES:
            raise ConfigError(f"expected a tier class ({', '.join(_CLASSES)}), got {name!r}",
                              source=source, field=where)
        if not isinstance(table, Mapping):
            raise ConfigError(f"expected a table such as {{ replicas = 2, spread = \"zone\" }}"
                              f", got {table!r}", source=source, field=field)
        unknown = sorted(set(table) - {"replicas", "spread"})
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r} (expected replicas, spread)",
                              source=source, field=field)
        replicas = table.get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise ConfigError(f"expected an integer >= 1, got {replicas!r}", source=source,
                              field=f"{field}.replicas")
        spread = table.get("spread", "node")
        if spread not in SPREADS:
            raise ConfigError(f"expected one of {', '.join(SPREADS)}, got {spread!r}",
                              source=source, field=f"{field}.spread")
        rules[name] = PlacementRule(replicas, spread)
    return rules


def placement(rule: PlacementRule, held: Sequence[tuple[str, str]],
              candidates: Sequence[tuple[str, str]], *, pinned: str | None = None
              ) -> tuple[list[str], list[str]]:
    """What to add and what to drop so that the replicas ``held`` on a class follow ``rule``.

    ``held`` and ``candidates`` are ``(tier, site)`` pairs of the class: the tiers holding a
    ready replica (preferred to keep first), and the other tiers that could take one
    (preferred first). Returns ``(add, drop)``: tiers to copy to, then tiers whose replica is
    surplus once those copies exist. One replica per domain is kept (the pinned one first),
    copies go to domains not yet covered, and only when the domains run out do replicas share
    one. The pinned replica and the last one are never dropped.
    """
    order = sorted(held, key=lambda pair: pair[0] != pinned)
    want = rule.replicas
    keep: list[str] = []
    add: list[str] = []
    covered: set[tuple[str, ...]] = set()
    for tier, site in order:
        if len(keep) < want and rule.domain(site) not in covered:
            keep.append(tier)
            covered.add(rule.domain(site))
    holding = {tier for tier, _ in held}
    spare = [(tier, site) for tier, site in candidates if tier not in holding]
    for tier, site in spare:
        if len(keep) + len(add) < want and rule.domain(site) not in covered:
            add.append(tier)
            covered.add(rule.domain(site))
    # not enough domains: share them, with replicas already there first
    for tier, _ in order:
        if len(keep) + len(add) < want and tier not in keep:
            keep.append(tier)
    for tier, _ in spare:
        if len(keep) + len(add) < want and tier not in add:
            add.append(tier)
    if pinned in holding and pinned not in keep:
        keep.append(pinned)
    drop = [tier for tier, _ in order if tier not in keep]
    return add, drop


async def place_after_put(store: Replicas, key: str, tier: str) -> list[str]:
    """After ``put`` wrote ``key`` to ``tier``: the extra replicas its class's rule asks for,
    on tiers of the class in other domains, nearest to this reader first. Returns the tiers
    written; one that fails is logged and left to the daemon's placement repair."""
    config = store.config
    home = config.tiers[tier]
    rule = config.locality.placement.get(home.tier_class.name.lower())
    if rule is None or rule.replicas <= 1:
        return []
    distances = store.locality.distances
    candidates = sorted(((t.name, t.site) for t in config.tiers.values()
                         if t.tier_class == home.tier_class and t.name != tier),
                        key=lambda pair: (distances.get(pair[0], 0), pair[0]))
    add, _ = placement(rule, [(tier, home.site)], candidates)
    written = []
    for target in add:
        try:
            await store.replicate(key, target)
            written.append(target)
        except (TierstoreError, OSError) as exc:  # the object is committed: the daemon
            # repairs it later
            log.warning("put %r: its placement rule asks for a replica on tier %r, which "
                        "could not be written (left to the daemon's repair): %s",
                        key, target, exc)
    return written
