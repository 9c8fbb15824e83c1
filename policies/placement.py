"""Placement repair: objects keep the replicas their tier class's rule asks for.

The rules are the config's ``[locality.placement]`` table (:mod:`tierstore.locality.placement`):
per tier class, how many replicas and over which failure domain (node, zone, region) they
spread. For each object this policy:

- tops up its *coldest* class (the class it lives in; replicas on hotter classes are caches
  that the other policies manage, and topping them up would fight their demotions): a copy
  to a tier of that class in a domain not yet covered (the emptiest such tier first), or, when
  a replica shares a domain with another while a domain is free, a move from the duplicate to
  the free domain;
- drops surplus replicas in every class with a rule (duplicates in one domain first), as a
  move whose ``dst`` is a replica it keeps: nothing is copied, one replica goes.

It never drops the last replica nor a pinned one, and it leaves an object whose pin is not
met yet to the pins policy. One move per object per plan (the engine's rule): an object short
of two replicas gets them over two cycles. A tier that the copy would take over its high
watermark is not chosen.
"""

from __future__ import annotations

from collections.abc import Mapping

from tierstore.config import TierClass
from tierstore.locality.placement import PlacementRule, placement

from .base import Move, ObjectState, Policy, Snapshot
from .config import PolicyConfig
from .pins import PinPolicy

__all__ = ["PlacementPolicy"]


class PlacementPolicy(Policy):
    """Keep the replica counts and spread each tier class's rule asks for.

    See the module for what it tops up, what it drops, and what it leaves alone.

    Parameters
    ----------
    rules : mapping of str to PlacementRule, optional
        Tier class name (``"hot"``, ``"warm"``, ``"cold"``) to its rule; ``config.placement``
        if None.
    config : PolicyConfig, optional
        The config (its pins and placement rules); the defaults if None.
    """

    name = "placement"

    def __init__(self, rules: Mapping[str, PlacementRule] | None = None,
                 config: PolicyConfig | None = None):
        self.config = config or PolicyConfig()
        self.rules = dict(self.config.placement if rules is None else rules)
        self._pins = PinPolicy(self.config)

    def rule(self, tier_class: TierClass) -> PlacementRule | None:
        """Look up a tier class's placement rule.

        Parameters
        ----------
        tier_class : TierClass
            The class.

        Returns
        -------
        PlacementRule or None
            Its rule; None if it has none.
        """
        return self.rules.get(tier_class.name.lower())

    def decide(self, snapshot: Snapshot) -> list[Move]:
        """Propose at most one repair per object.

        Busy objects, and those whose pin is not met yet (left to the pins policy), are left
        alone. A copy that adds a third replica or beyond is deferrable; a second is not.

        Parameters
        ----------
        snapshot : Snapshot
            The catalog as the plan sees it.

        Returns
        -------
        list of Move
            The repairs, in the snapshot's order (none without rules).
        """
        if not self.rules:
            return []
        moves = []
        for obj in snapshot.objects:
            pin = self._pins.pinned_to(obj)
            if obj.busy or (pin is not None and pin[0] not in obj.replicas
                            and snapshot.tier(pin[0]) is not None):
                continue
            move = self._repair(snapshot, obj, None if pin is None else pin[0])
            if move is not None:
                moves.append(move)
        return moves

    def _repair(self, snapshot: Snapshot, obj: ObjectState, pinned: str | None
                ) -> Move | None:
        classes = sorted({t.tier_class for name in obj.replicas
                          if (t := snapshot.tier(name)) is not None}, reverse=True)
        for n, tier_class in enumerate(classes):  # coldest first
            rule = self.rule(tier_class)
            if rule is None:
                continue
            held = [(t.name, t.site) for t in snapshot.tiers
                    if t.tier_class == tier_class and t.name in obj.replicas]
            # candidates: the emptiest first, and only where the copy stays under the high
            # watermark
            room = sorted((t for t in snapshot.tiers if t.tier_class == tier_class
                           and t.name not in obj.replicas and t.used + obj.size <= t.high_bytes),
                          key=lambda t: (t.fill or 0.0, t.used, t.name))
            # a hotter class: only its surplus is the rule's business (no candidates)
            add, drop = placement(rule, held, [(t.name, t.site) for t in room] if n == 0
                                  else [], pinned=pinned)
            label = tier_class.name.lower()
            have = f"{len(held)} {label} replica{'s' if len(held) != 1 else ''}"
            want = f"{rule.replicas} over {rule.spread}s"
            if add and drop:
                return Move.of(obj, drop[0], add[0], self.name,
                               f"{have} share a {rule.spread}; the rule asks {want}")
            if add:  # a third replica and beyond may wait for a cleaner hour; a second not
                return Move.of(obj, None, add[0], self.name,
                               f"{have}; the rule asks {want}",
                               deferrable=len(obj.replicas) >= 2)
            if drop:
                kept = next(t for t, _ in held if t not in drop)
                return Move.of(obj, drop[0], kept, self.name,
                               f"{have}, surplus to the rule's {want}")
        return None
