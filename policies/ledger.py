"""Where replicas and bytes will be once a plan's moves are made, move by move."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import replace

from .base import Move, ObjectState, Snapshot

__all__ = ["Ledger", "apply_plan"]


class Ledger:
    """A snapshot plus the moves accepted so far.

    It keeps each tier's bytes (:attr:`used`) and each object's replicas as they will be,
    and tells whether one more move is possible.

    Parameters
    ----------
    snapshot : Snapshot
        The catalog before any move.
    """

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot
        self.used: dict[str, int] = {tier.name: tier.used for tier in snapshot.tiers}
        self._replicas: dict[str, frozenset[str]] = {}

    def replicas(self, obj: ObjectState) -> frozenset[str]:
        """Tell where an object's replicas will be.

        Parameters
        ----------
        obj : ObjectState
            The object.

        Returns
        -------
        frozenset of str
            The tiers holding its replicas once the moves so far are made.
        """
        return self._replicas.get(obj.key, frozenset(obj.replicas))

    def is_promotion(self, move: Move) -> bool:
        """Tell whether a move is a promotion.

        Parameters
        ----------
        move : Move
            The move.

        Returns
        -------
        bool
            Whether it lands on a tier hotter than every replica the object will have (False
            for an object not in the snapshot).
        """
        obj = self.snapshot.get(move.key)
        rank = self.snapshot.rank
        return obj is not None and rank(move.dst) < min(map(rank, self.replicas(obj)))

    def check(self, move: Move) -> str | None:
        """Check whether a move can be made now.

        A move lands on ``dst`` before it drops ``src``, so one that names a configured
        ``dst`` and a real replica as ``src`` can never leave an object without a replica.
        Promotions stay under ``dst``'s high watermark; other moves under its capacity. A
        pinned replica is never dropped, and a copy to a tier already holding one is refused.

        Parameters
        ----------
        move : Move
            The move.

        Returns
        -------
        str or None
            Why it cannot be made; None if it can.
        """
        obj = self.snapshot.get(move.key)
        dst = self.snapshot.tier(move.dst)
        if obj is None or dst is None:
            return "no such object" if obj is None else f"no tier {move.dst!r} is configured"
        held = self.replicas(obj)
        if move.src == move.dst or (move.src is not None and move.src not in held):
            return f"no replica on {move.src} to move to {move.dst}"
        if move.src is not None and move.src == obj.pinned:
            return f"pinned to {obj.pinned}"
        if move.dst in held:
            return None if move.src is not None else f"already on {move.dst}"
        after = self.used[dst.name] + obj.size
        if self.is_promotion(move) and after > dst.high_bytes:
            return f"{dst.name} would pass its high watermark"
        return f"{dst.name} would pass its capacity" if after > dst.limit else None

    def apply(self, move: Move) -> None:
        """Account for a move.

        Parameters
        ----------
        move : Move
            A move :meth:`check` accepted: the bytes land on ``dst`` (unless a replica is
            there already) and leave ``src``.
        """
        obj = self.snapshot.get(move.key)
        assert obj is not None, move
        held = self.replicas(obj)
        if move.dst not in held:
            self.used[move.dst] += obj.size
        if move.src is not None:
            self.used[move.src] -= obj.size
        self._replicas[obj.key] = (held - {move.src}) | {move.dst}

    def view(self, exclude: Collection[str] = ()) -> Snapshot:
        """Show the snapshot as it will be once the moves so far are made.

        Parameters
        ----------
        exclude : collection of str, default ()
            Keys of objects to leave out.

        Returns
        -------
        Snapshot
            Each object's replicas (hottest first) and each tier's bytes as they will be.
        """
        rank = self.snapshot.rank
        objects = tuple(
            replace(obj, replicas=tuple(sorted(self._replicas[obj.key], key=rank)))
            if obj.key in self._replicas else obj
            for obj in self.snapshot.objects if obj.key not in exclude)
        tiers = tuple(replace(t, used=self.used[t.name]) for t in self.snapshot.tiers)
        return replace(self.snapshot, objects=objects, tiers=tiers)


def apply_plan(snapshot: Snapshot, moves: Iterable[Move]) -> Snapshot:
    """Show the snapshot as it will be once moves are made.

    Parameters
    ----------
    snapshot : Snapshot
        The catalog before the moves.
    moves : iterable of Move
        The moves, made in order.

    Returns
    -------
    Snapshot
        The catalog after them.

    Raises
    ------
    ValueError
        If a move cannot be made at its turn (see :meth:`Ledger.check`).
    """
    ledger = Ledger(snapshot)
    for move in moves:
        why = ledger.check(move)
        if why is not None:
            raise ValueError(f"{move.key}: {why}")
        ledger.apply(move)
    return ledger.view()
