"""Pins: pinned objects, and objects under pinned prefixes, stay on their tier."""

from __future__ import annotations

from .base import Move, ObjectState, Policy, Snapshot, under
from .config import PolicyConfig

__all__ = ["PinPolicy"]


class PinPolicy(Policy):
    """Holds every pinned object where it is, so that no other policy moves it.

    An object is pinned by the catalog (``tierstore pin``) or by the longest prefix of
    ``config.pins`` it is under; the catalog wins. A pinned object without a replica on its
    tier is copied there (its other replicas stay).

    Parameters
    ----------
    config : PolicyConfig, optional
        The thresholds; the defaults if None.
    """

    name = "pins"

    def __init__(self, config: PolicyConfig | None = None):
        self.config = config or PolicyConfig()
        # longest first, so the most specific prefix wins
        self._prefixes = sorted(self.config.pins.items(), key=lambda kv: -len(kv[0]))

    def pinned_to(self, obj: ObjectState) -> tuple[str, str] | None:
        """Find where an object is pinned.

        The catalog's pin wins over ``config.pins``; of those, the longest prefix the key is
        under.

        Parameters
        ----------
        obj : ObjectState
            The object.

        Returns
        -------
        tuple of (str, str) or None
            ``(tier, why)`` for a pinned object, else None.
        """
        if obj.pinned is not None:
            return obj.pinned, f"pinned to {obj.pinned}"
        for prefix, tier in self._prefixes:
            if under(obj.key, prefix):
                return tier, f"under {prefix!r}, pinned to {tier}"
        return None

    def decide(self, snapshot: Snapshot) -> list[Move]:
        """Copy each pinned object to its tier where it has no replica there.

        Busy objects, and pins to a tier not configured, are left alone; the other replicas
        stay.

        Parameters
        ----------
        snapshot : Snapshot
            The catalog as the plan sees it.

        Returns
        -------
        list of Move
            The copies, in the snapshot's order.
        """
        moves = []
        for obj in snapshot.objects:
            pin = self.pinned_to(obj)
            if pin is None or obj.busy or pin[0] in obj.replicas or not snapshot.tier(pin[0]):
                continue
            moves.append(Move.of(obj, None, pin[0], self.name, pin[1]))
        return moves

    def holds(self, snapshot: Snapshot) -> frozenset[str]:
        """Hold every pinned object, so that no other policy moves it.

        Parameters
        ----------
        snapshot : Snapshot
            The catalog as the plan sees it.

        Returns
        -------
        frozenset of str
            The keys of the pinned objects.
        """
        return frozenset(obj.key for obj in snapshot.objects if self.pinned_to(obj))
