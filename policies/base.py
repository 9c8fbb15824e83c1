"""What policies decide on, and what they decide.

A :class:`Snapshot` is the catalog as one moment saw it: each object with a ready replica
(:class:`ObjectState`), each configured tier with the bytes it holds (:class:`TierState`), and
the time. A :class:`Policy` turns a snapshot into :class:`Move` s. It reads nothing else and
writes nothing, so each policy is tested on plain data; the
:class:`~tierstore.policies.engine.PolicyEngine` composes them into one :class:`Plan`.

A move never drops the last replica of an object: it names the tier it copies to (``dst``) and
at most one tier whose replica goes once that copy is verified (``src``), the way
:meth:`Store.add_replica <tierstore.store.Store.add_replica>` then
:meth:`Store.drop_replica <tierstore.store.Store.drop_replica>` carry it out. When the object
already has a replica on ``dst`` the move copies nothing and only drops ``src``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from tierstore.config import TierClass

if TYPE_CHECKING:
    from .preload import PreloadRequest

__all__ = ["Move", "ObjectState", "Plan", "Policy", "Refusal", "Snapshot", "TierState",
           "demotion_dst", "format_duration", "under"]


@dataclass(frozen=True, kw_only=True)
class ObjectState:
    """One object as a policy sees it.

    Attributes
    ----------
    key : str
        The object's key.
    size : int
        Its size in bytes (0 or more).
    replicas : tuple of str
        The configured tiers holding a ready replica (at least one).
    pinned : str, optional
        The tier the catalog pins it to.
    last_access : float, optional
        When it was last read, in Unix seconds; None for an object never read.
    count : int, default 0
        How many times it was read.
    score : float, default 0.0
        The catalog's decayed read count, decayed to the snapshot's time.
    created : float, default 0.0
        When it was created, in Unix seconds.
    busy : bool, default False
        A copy or removal of it is in flight: policies leave it alone.
    next_use : float, optional
        The earliest time a reader announced it will read the object (None if none did).

    Raises
    ------
    ValueError
        If ``replicas`` is empty or ``size`` negative.
    """

    key: str
    size: int
    replicas: tuple[str, ...]
    pinned: str | None = None
    last_access: float | None = None
    count: int = 0
    score: float = 0.0
    created: float = 0.0
    busy: bool = False
    next_use: float | None = None

    def __post_init__(self) -> None:
        if not self.replicas:
            raise ValueError(f"{self.key!r}: an object in a snapshot has a ready replica")
        if self.size < 0:
            raise ValueError(f"{self.key!r}: negative size")

    def idle(self, now: float) -> float:
        """Measure how long the object has gone unread.

        Parameters
        ----------
        now : float
            The time, in Unix seconds.

        Returns
        -------
        float
            Seconds since the last read (since creation if never read); never negative, even
            when the clock went backwards.
        """
        touched = self.created if self.last_access is None else self.last_access
        return max(0.0, now - touched)


@dataclass(frozen=True, kw_only=True)
class TierState:
    """One tier as a policy sees it.

    Attributes
    ----------
    name : str
        The tier's name.
    tier_class : TierClass
        Its class.
    capacity : int, optional
        Its capacity in bytes; None for unbounded.
    high_watermark, low_watermark : float
        Fractions of capacity (0.9 and 0.75 by default; ``0 < low <= high <= 1``).
    used : int, default 0
        Bytes it holds.
    site : str, default "local"
        The site it lives at (``region/zone/node``; placement rules spread replicas over
        sites).

    Raises
    ------
    ValueError
        If the watermarks are not ``0 < low <= high <= 1``.
    """

    name: str
    tier_class: TierClass
    capacity: int | None = None
    high_watermark: float = 0.9
    low_watermark: float = 0.75
    used: int = 0
    site: str = "local"

    def __post_init__(self) -> None:
        if not 0.0 < self.low_watermark <= self.high_watermark <= 1.0:
            raise ValueError(f"tier {self.name}: expected 0 < low <= high <= 1 watermarks")

    @property
    def high_bytes(self) -> float:
        """Bytes above which the tier is over its high watermark (infinite if unbounded)."""
        return math.inf if self.capacity is None else self.capacity * self.high_watermark

    @property
    def low_bytes(self) -> float:
        """Bytes a tier over its high watermark is brought down to."""
        return math.inf if self.capacity is None else self.capacity * self.low_watermark

    @property
    def limit(self) -> float:
        """Capacity in bytes (infinite if unbounded)."""
        return math.inf if self.capacity is None else float(self.capacity)

    @property
    def fill(self) -> float | None:
        """Fraction of capacity used (None if unbounded)."""
        return None if not self.capacity else self.used / self.capacity


@dataclass(frozen=True)
class Snapshot:
    """The catalog as one moment saw it: what a plan is made for.

    Attributes
    ----------
    objects : tuple of ObjectState
        Each object with a ready replica.
    tiers : tuple of TierState
        Each configured tier, hottest first (by class, then name), whatever order they are
        given in.
    now : float
        The time the plan is made for, in Unix seconds.
    preloads : tuple of PreloadRequest, default ()
        The pre-loads scheduled in the catalog.
    copy_bytes_per_s : float, optional
        How fast the daemon's recent copies landed, in bytes per second (None: not
        measured): a staging copy that cannot land before its reader gets there is left to
        the reader.
    """

    objects: tuple[ObjectState, ...]
    tiers: tuple[TierState, ...]
    now: float
    preloads: tuple[PreloadRequest, ...] = ()
    # How fast the daemon's recent copies landed, bytes per second (None: not measured): a
    # staging copy that cannot land before its reader gets there is left to the reader.
    copy_bytes_per_s: float | None = None

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.tiers, key=lambda t: (t.tier_class, t.name)))
        object.__setattr__(self, "tiers", ordered)

    @cached_property
    def _rank(self) -> dict[str, int]:
        return {tier.name: i for i, tier in enumerate(self.tiers)}

    @cached_property
    def _by_key(self) -> dict[str, ObjectState]:
        return {obj.key: obj for obj in self.objects}

    def tier(self, name: str) -> TierState | None:
        """Look up a tier by name.

        Parameters
        ----------
        name : str
            The tier's name.

        Returns
        -------
        TierState or None
            The tier; None if no such tier is configured.
        """
        index = self._rank.get(name)
        return None if index is None else self.tiers[index]

    def get(self, key: str) -> ObjectState | None:
        """Look up an object by key.

        Parameters
        ----------
        key : str
            The object's key.

        Returns
        -------
        ObjectState or None
            The object; None if the snapshot has none of this key.
        """
        return self._by_key.get(key)

    def rank(self, tier: str) -> int:
        """Rank a tier by heat.

        Parameters
        ----------
        tier : str
            The tier's name.

        Returns
        -------
        int
            0 for the hottest tier; unknown tiers rank after every known one.
        """
        return self._rank.get(tier, len(self.tiers))

    @property
    def hottest(self) -> TierState | None:
        """The first tier of the hottest class (None without tiers)."""
        return self.tiers[0] if self.tiers else None

    def best(self, obj: ObjectState) -> str:
        """Find the tier reads of an object go to.

        Parameters
        ----------
        obj : ObjectState
            The object.

        Returns
        -------
        str
            The hottest tier holding a replica of ``obj``.
        """
        return min(obj.replicas, key=self.rank)

    def next_colder(self, tier: str) -> TierState | None:
        """Find the tier below another.

        Parameters
        ----------
        tier : str
            The tier's name.

        Returns
        -------
        TierState or None
            The hottest tier of a colder class than ``tier``; None if there is none, or
            ``tier`` is not configured.
        """
        here = self.tier(tier)
        if here is None:
            return None
        return next((t for t in self.tiers if t.tier_class > here.tier_class), None)

    def on(self, tier: str) -> Iterator[ObjectState]:
        """List the objects on a tier.

        Parameters
        ----------
        tier : str
            The tier's name.

        Returns
        -------
        iterator of ObjectState
            The objects with a ready replica on ``tier``, in the snapshot's order.
        """
        return (obj for obj in self.objects if tier in obj.replicas)


def demotion_dst(snapshot: Snapshot, obj: ObjectState, src: str,
                 target: str | None = None) -> str | None:
    """Where ``obj``'s replica on ``src`` goes when it is demoted.

    To the hottest replica it already has on a colder tier if any (a drop: nothing to copy),
    else to ``target``, else to the next colder tier; None when there is nowhere colder.
    """
    colder = [t for t in obj.replicas
              if snapshot.tier(t) is not None and snapshot.rank(t) > snapshot.rank(src)]
    if colder:
        return min(colder, key=snapshot.rank)
    if target is not None:
        return target
    below = snapshot.next_colder(src)
    return None if below is None else below.name


def under(key: str, prefix: str) -> bool:
    """Whether ``key`` is ``prefix`` itself or in the folder ``prefix/`` (all keys for "")."""
    name = prefix.strip("/")
    return not name or key == name or key.startswith(name + "/")


@dataclass(frozen=True)
class Move:
    """One move: copy an object to a tier, then perhaps drop its replica on another.

    ``deferrable`` is the policy's word that the move may wait for a cleaner hour of the grid
    (carbon-aware scheduling, :mod:`~tierstore.policies.deferral`): a demotion, the shedding
    below a high watermark, a pre-load with slack, a replica beyond the second. The others
    (staging for a reader, repairs, room needed now, promotions) never wait.

    Attributes
    ----------
    key : str
        The object's key.
    src : str or None
        The tier whose replica is dropped once the copy to ``dst`` is verified; None keeps
        every replica (a copy).
    dst : str
        The tier it is copied to.
    bytes : int
        The object's size.
    policy : str
        The policy that wanted the move.
    reason : str
        Why it wanted it.
    deferrable : bool, default False
        The move may wait for a cleaner hour (see above).
    due : float, optional
        Where the move has a deadline of its own (a pre-load's): when it must have landed,
        in Unix seconds.
    """

    key: str
    src: str | None
    dst: str
    bytes: int
    policy: str
    reason: str
    deferrable: bool = False
    due: float | None = None

    @classmethod
    def of(cls, obj: ObjectState, src: str | None, dst: str, policy: str, reason: str, *,
           deferrable: bool = False, due: float | None = None) -> Move:
        """Make a move of an object (its key and size).

        Parameters
        ----------
        obj : ObjectState
            The object.
        src : str or None
            The tier whose replica goes; None for a copy.
        dst : str
            The tier it is copied to.
        policy, reason : str
            Which policy wants the move, and why.
        deferrable : bool, default False
            The move may wait for a cleaner hour.
        due : float, optional
            When it must have landed.

        Returns
        -------
        Move
            The move.
        """
        return cls(obj.key, src, dst, obj.size, policy, reason, deferrable, due)

    @property
    def is_copy(self) -> bool:
        return self.src is None

    def to_json(self) -> dict[str, object]:
        """Describe the move as JSON.

        Returns
        -------
        dict
            ``key``, ``from``, ``to``, ``bytes``, ``copy``, ``policy``, ``reason``,
            ``deferrable``, and ``due`` where it has one.
        """
        return {"key": self.key, "from": self.src, "to": self.dst, "bytes": self.bytes,
                "copy": self.is_copy, "policy": self.policy, "reason": self.reason,
                "deferrable": self.deferrable, **({"due": self.due} if self.due else {})}


@dataclass(frozen=True)
class Refusal:
    """A move a policy proposed that the engine did not plan, and why.

    Attributes
    ----------
    move : Move
        The move proposed.
    why : str
        Why it was not planned.
    """

    move: Move
    why: str


@dataclass(frozen=True)
class Plan:
    """The moves to make now, in the order to make them, and the proposals refused.

    Iterating a plan gives its moves; its length is their number.

    Attributes
    ----------
    moves : tuple of Move
        The moves, in the order to make them.
    now : float
        The time the plan was made for, in Unix seconds.
    refused : tuple of Refusal, default ()
        The proposals not planned, and why.
    """

    moves: tuple[Move, ...]
    now: float
    refused: tuple[Refusal, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.moves)

    def __iter__(self) -> Iterator[Move]:
        return iter(self.moves)

    @property
    def bytes(self) -> int:
        """Bytes of the objects the plan moves or copies."""
        return sum(move.bytes for move in self.moves)

    def by_policy(self) -> dict[str, list[Move]]:
        """Group the moves by the policy that wanted them.

        Returns
        -------
        dict of str to list of Move
            Policy name to its moves, in plan order.
        """
        out: dict[str, list[Move]] = {}
        for move in self.moves:
            out.setdefault(move.policy, []).append(move)
        return out

    def to_json(self) -> dict[str, object]:
        """Describe the plan as JSON.

        Returns
        -------
        dict
            ``now``, ``moves`` (each :meth:`Move.to_json`), ``bytes``, and ``refused`` (each
            move's JSON with its ``why``).
        """
        return {"now": self.now, "moves": [m.to_json() for m in self.moves],
                "bytes": self.bytes,
                "refused": [{**r.move.to_json(), "why": r.why} for r in self.refused]}


class Policy(ABC):
    """A migration policy: a pure function from a snapshot to proposed moves.

    ``name`` is the policy's place in the engine's precedence
    (:data:`~tierstore.policies.engine.PRECEDENCE`). ``holds`` names objects the policy keeps
    where they are, so that no policy of lower precedence moves them.
    """

    name: str = "policy"

    @abstractmethod
    def decide(self, snapshot: Snapshot) -> list[Move]:
        """Propose the moves this policy wants.

        No I/O, no clock: only ``snapshot``.

        Parameters
        ----------
        snapshot : Snapshot
            The catalog as the plan sees it.

        Returns
        -------
        list of Move
            The moves, most wanted first.
        """

    def holds(self, snapshot: Snapshot) -> frozenset[str]:
        """Name the objects to leave where they are.

        No policy of lower precedence moves them.

        Parameters
        ----------
        snapshot : Snapshot
            The catalog as the plan sees it.

        Returns
        -------
        frozenset of str
            Their keys (none by default).
        """
        return frozenset()


def format_duration(seconds: float) -> str:
    """``90`` -> ``"1.5m"``, ``86400 * 45`` -> ``"45d"``: one unit, for reasons."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size or unit == "s":
            value = seconds / size
            text = f"{value:.0f}" if value >= 10 else f"{value:.1f}".removesuffix(".0")
            return text + unit
    raise AssertionError("unreachable")
