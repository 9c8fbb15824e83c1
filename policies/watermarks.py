"""Watermarks: a tier over its high watermark sheds its coldest objects to its low one (what
readers announced they will read, only to get under the high one)."""

from __future__ import annotations

import math

from .base import Move, ObjectState, Policy, Snapshot, TierState, demotion_dst
from .config import PolicyConfig
from .ledger import Ledger
from .scores import coldest_first

__all__ = ["WatermarkPolicy"]


class WatermarkPolicy(Policy):
    """Keep each bounded tier under its high watermark.

    A tier holding more than ``high_watermark`` of its capacity demotes objects, coldest first
    by the tier's scoring, until it holds at most ``low_watermark``; objects a reader
    announced come last, the furthest next use first, and only as far as the high watermark:
    shedding them to the low one would have their readers fetch them again, or the next-use
    policy stage them back, to no gain. Tiers are relieved
    hottest first, so the bytes a tier sheds count against the tier that takes them, which
    may then shed too. A demotion drops the replica if the object has one further down,
    else goes to the nearest colder tier with capacity left. Pinned objects stay; if they
    alone keep a tier over its watermark, it stays over. Never promotes.

    Parameters
    ----------
    config : PolicyConfig, optional
        The thresholds; the defaults if None.
    """

    name = "watermarks"

    def __init__(self, config: PolicyConfig | None = None):
        self.config = config or PolicyConfig()

    def decide(self, snapshot: Snapshot) -> list[Move]:
        """Propose the demotions that bring each tier over its high watermark down.

        Tiers are relieved hottest first (see the class). The demotions that bring a tier
        under its high watermark are room needed now; those from there to the low one may
        wait for a cleaner hour (deferrable).

        Parameters
        ----------
        snapshot : Snapshot
            The catalog as the plan sees it.

        Returns
        -------
        list of Move
            The demotions, tier by tier, coldest object first.
        """
        ledger = Ledger(snapshot)
        moved: set[str] = set()
        moves: list[Move] = []
        for tier in snapshot.tiers:
            moves += self._relieve(snapshot, ledger, tier, moved)
        return moves

    def _relieve(self, snapshot: Snapshot, ledger: Ledger, tier: TierState,
                 moved: set[str]) -> list[Move]:
        if ledger.used[tier.name] <= tier.high_bytes:
            return []
        fill = ledger.used[tier.name] / tier.limit if tier.limit else math.inf
        reason = f"{tier.name} at {fill:.0%} > high watermark {tier.high_watermark:.0%}"
        scoring = self.config.scoring_for(tier)
        candidates = [obj for obj in snapshot.on(tier.name)
                      if obj.pinned is None and not obj.busy and obj.key not in moved]
        out: list[Move] = []
        for obj in coldest_first(candidates, scoring, snapshot.now, self.config):
            floor = tier.low_bytes if obj.next_use is None else tier.high_bytes
            if ledger.used[tier.name] <= floor:
                break
            # what brings the tier under its high watermark is room needed now; the shedding
            # from there to the low one is slack that may wait for a cleaner hour
            urgent = ledger.used[tier.name] > tier.high_bytes
            move = self._demotion(snapshot, ledger, obj, tier.name, f"{reason} ({scoring})",
                                  deferrable=not urgent)
            if move is not None:
                ledger.apply(move)
                moved.add(obj.key)
                out.append(move)
        return out

    def _demotion(self, snapshot: Snapshot, ledger: Ledger, obj: ObjectState, src: str,
                  reason: str, *, deferrable: bool) -> Move | None:
        """To a colder replica (a drop), else to the nearest colder tier with room."""
        first = demotion_dst(snapshot, obj, src)
        colder = [t.name for t in snapshot.tiers if snapshot.rank(t.name) > snapshot.rank(src)]
        for dst in dict.fromkeys([first, *colder] if first else colder):
            move = Move.of(obj, src, dst, self.name, reason, deferrable=deferrable)
            if ledger.check(move) is None:
                return move
        return None
