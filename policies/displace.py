"""Displacement: a promotion into a full tier may push out objects that deserve it less.

Without it a bounded hot tier fills to its high watermark once and then freezes until the
objects on it age out, so a skewed workload gets less from it than a plain LRU cache would.
With it, each promotion is weighed against the coldest objects already there: a policy says
which of them the candidate outranks (:class:`Displacer` ``outranks``), and only those are
pushed down to make room, coldest first. What is pushed down keeps a replica: an eviction
drops the tier's copy when a colder tier holds one, else moves it to the next colder tier
(copied and verified before the hot copy goes, as every move).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from .base import Move, ObjectState, Snapshot, demotion_dst

__all__ = ["Displacer", "by_reads", "coldest_by_reads"]

Outranks = Callable[[ObjectState, ObjectState], bool]  # (candidate, resident) -> push it out?


def by_reads(ratio: float, now: float) -> Outranks | None:
    """The admission test of recency and frequency promotions: the candidate was read more
    recently than the resident and at least ``ratio`` times as often (decayed read counts);
    None (displace nobody) when ``ratio`` is 0."""
    if not ratio:
        return None

    def outranks(candidate: ObjectState, resident: ObjectState) -> bool:
        return (candidate.score > 0 and candidate.score >= ratio * resident.score
                and resident.idle(now) > candidate.idle(now))

    return outranks


def coldest_by_reads(objects: Iterable[ObjectState], now: float) -> list[ObjectState]:
    """Fewest decayed reads first, then longest idle: the order :func:`by_reads` victims
    are taken in."""
    return sorted(objects, key=lambda o: (o.score, -o.idle(now), o.key))


class Displacer:
    """Plans promotions onto one ``target`` tier within its high watermark, displacing
    residents that a candidate ``outranks``.

    ``residents`` are the target's movable objects, coldest first (the order victims are
    taken in). The room is the tier's high watermark less what the snapshot shows used;
    each accepted promotion takes room, each eviction gives it back.
    """

    def __init__(self, snapshot: Snapshot, target: str, residents: Iterable[ObjectState],
                 policy: str, *, freed: int = 0):
        tier = snapshot.tier(target)
        assert tier is not None, target
        self.snapshot = snapshot
        self.target = target
        self.policy = policy
        self.room = tier.high_bytes - tier.used + freed  # freed: by moves planned before
        self._residents = list(residents)
        self._gone: set[str] = set()
        self._next = 0  # residents before this one are gone or cannot leave

    def promote(self, candidate: ObjectState, move: Move, outranks: Outranks | None
                ) -> Iterator[Move]:
        """``move`` (a copy of ``candidate`` onto the target) preceded by the evictions that
        make room for it. Without room enough even after every resident the candidate
        outranks (``None``: displace nobody) was pushed out, ``move`` alone, which the engine
        then refuses, so that the plan shows it."""
        if candidate.size > self.room:
            victims = self._victims(candidate, outranks) if outranks else None
            if victims is None:
                yield move
                return
            for victim, dst in victims:
                self._gone.add(victim.key)
                self.room += victim.size
                yield Move.of(victim, self.target, dst, self.policy,
                              f"displaced by {candidate.key} ({move.reason})")
        self.room -= candidate.size
        yield move

    def _victims(self, candidate: ObjectState, outranks: Outranks
                 ) -> list[tuple[ObjectState, str]] | None:
        """The coldest residents, in order, until there is room: stops at the first one the
        candidate does not outrank (what follows is warmer), so planning stays linear."""
        chosen: list[tuple[ObjectState, str]] = []
        freed, at = 0.0, self._next
        while self.room + freed < candidate.size and at < len(self._residents):
            resident = self._residents[at]
            at += 1
            if resident.key in self._gone:
                continue
            if not outranks(candidate, resident):
                return None
            dst = demotion_dst(self.snapshot, resident, self.target)
            if dst is not None:
                chosen.append((resident, dst))
                freed += resident.size
        if self.room + freed < candidate.size:
            return None
        self._next = at
        return chosen
