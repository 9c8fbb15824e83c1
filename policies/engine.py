"""The policy engine: policies composed by precedence into one safe plan."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .base import Move, Plan, Policy, Refusal, Snapshot
from .config import PolicyConfig
from .frequency import FrequencyPolicy
from .ledger import Ledger
from .nextuse import NextUsePolicy
from .pins import PinPolicy
from .placement import PlacementPolicy
from .preload import PreloadPolicy, PreloadRequest
from .recency import RecencyPolicy
from .watermarks import WatermarkPolicy

__all__ = ["PRECEDENCE", "PolicyEngine", "default_engine"]

# Highest first. Placement shares the pins' level and goes before them: pins hold pinned
# objects from every later policy, and placement still keeps their replica counts (it never
# drops a pinned replica, and leaves an object whose pin is not met yet to the pins policy).
# Both come before watermarks, so a rule's copies are placed before usage is brought down.
# Recency and frequency share a level: they govern different tiers (each
# tier's scoring picks one), and where both propose a move for one object the first wins.
# Pre-load and next-use share one too: both stage what is known to be read, and a scheduled
# pre-load comes first.
PRECEDENCE: dict[str, int] = {"placement": 0, "pins": 0, "watermarks": 1, "preload": 2,
                              "next_use": 2, "recency": 3, "frequency": 3}


class PolicyEngine:
    """Runs policies in order of precedence and keeps what is safe of what they propose.

    Each policy sees the snapshot as the moves accepted so far leave it: tier usage
    projected, and without the objects already decided (moved, or held by a policy of
    higher precedence, or with work in flight). A proposal is refused when its object is
    already decided (one move per object per plan: a later policy cannot undo an earlier
    decision), when it drops a pinned replica or names no real replica, when a promotion
    would take its tier over the high watermark, or when any move would take its tier over
    capacity. Moves keep the order they were accepted in, which is the order to make them:
    the usage each was checked against is the usage the moves before it leave.

    Parameters
    ----------
    policies : iterable of Policy
        The policies, run in order of :data:`PRECEDENCE` (those of one level in the order
        given).

    Raises
    ------
    ValueError
        If a policy's name has no precedence.
    """

    def __init__(self, policies: Iterable[Policy]):
        policies = list(policies)
        unknown = [p.name for p in policies if p.name not in PRECEDENCE]
        if unknown:
            raise ValueError(f"policies without a precedence: {unknown}")
        self.policies: Sequence[Policy] = sorted(policies, key=lambda p: PRECEDENCE[p.name])

    def plan(self, snapshot: Snapshot) -> Plan:
        """Plan what to move now.

        Parameters
        ----------
        snapshot : Snapshot
            The catalog as the plan sees it.

        Returns
        -------
        Plan
            The moves accepted, in the order to make them, and those proposed but refused.
        """
        ledger = Ledger(snapshot)
        decided = {obj.key: "work in flight" for obj in snapshot.objects if obj.busy}
        moves: list[Move] = []
        refused: list[Refusal] = []
        for policy in self.policies:
            view = ledger.view(decided)
            for move in policy.decide(view):
                why = self._refusal(ledger, decided, move)
                if why is not None:
                    refused.append(Refusal(move, why))
                    continue
                ledger.apply(move)
                decided[move.key] = f"moved by {policy.name}"
                moves.append(move)
            for key in policy.holds(view):
                decided.setdefault(key, f"held by {policy.name}")
        return Plan(tuple(moves), snapshot.now, tuple(refused))

    @staticmethod
    def _refusal(ledger: Ledger, decided: dict[str, str], move: Move) -> str | None:
        if move.key in decided:
            return f"already decided ({decided[move.key]})"
        return ledger.check(move)


def default_engine(config: PolicyConfig | None = None,
                   preloads: Iterable[PreloadRequest] = ()) -> PolicyEngine:
    """Make the engine of every policy.

    Parameters
    ----------
    config : PolicyConfig, optional
        The settings; ``PolicyConfig()`` if None. The placement rules are
        ``config.placement`` (:meth:`PolicyConfig.from_config` brings the config's
        ``[locality.placement]``).
    preloads : iterable of PreloadRequest, default ()
        Pre-loads beside those scheduled in the catalog.

    Returns
    -------
    PolicyEngine
        Placement, pins, watermarks, pre-load, next use, recency and frequency.
    """
    config = config or PolicyConfig()
    return PolicyEngine([PlacementPolicy(config=config), PinPolicy(config),
                         WatermarkPolicy(config), PreloadPolicy(preloads),
                         NextUsePolicy(config), RecencyPolicy(config), FrequencyPolicy(config)])
