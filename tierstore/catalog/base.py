"""The catalog contract: objects, their replicas on tiers, and access statistics.

A catalog is the single source of truth of what exists where. Data on a tier that no replica
row names is garbage; a replica row is trusted only when ``ready``. Each method is one
transaction. Implementations: :mod:`.sql` writes each transaction once, over :mod:`.sqlite`
(embedded) and :mod:`.postgres` (a cluster's), which pass the same conformance tests.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import CatalogError, LeaseLost, ReplicaError

__all__ = [
    "DEFAULT_HALF_LIFE",
    "FETCHING",
    "AccessStats",
    "Catalog",
    "Fence",
    "Lease",
    "ObjectRecord",
    "PreloadRecord",
    "Replica",
    "ReplicaState",
    "TierUsage",
    "check_owned",
]

# An announced time that means "the reader fetches it itself": its read-ahead has begun, or
# it will fetch it this pass and keep it hot itself (read-through fill, while the hot tier has
# room): no staging copy could help, and one would fetch the same bytes a second time.
FETCHING = 0.0
DEFAULT_HALF_LIFE = 86400.0  # seconds for a read to count half as much in the frequency score


class ReplicaState(enum.StrEnum):
    """A replica's life: ``copying`` -> ``ready`` -> ``deleting`` -> gone.

    ``copying`` bytes are unverified and never read; ``ready`` bytes are verified and served;
    ``deleting`` bytes are superseded and removed by whoever marked them (or by recovery).
    """

    COPYING = "copying"
    READY = "ready"
    DELETING = "deleting"


@dataclass(frozen=True, slots=True)
class Replica:
    """One copy of an object on one tier. ``path`` is relative to the tier's root; ``tmp`` is
    where unverified bytes are written while the replica is ``copying``. ``version``: for a
    file the store adopted rather than wrote, what the tier said of it then (an S3 ETag; a
    local file's modification time and inode), as records read by :meth:`Catalog.get` and
    :meth:`Catalog.objects` carry it; None otherwise."""

    id: int
    tier: str
    path: str
    state: ReplicaState
    tmp: str | None
    owner: str
    updated: float
    version: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """An object: its key, its size and checksum (None until its first write commits), the
    tier it is pinned to (if any), and its replicas."""

    key: str
    size: int | None
    checksum: str | None
    created: float
    pinned: str | None
    replicas: tuple[Replica, ...]

    @property
    def ready(self) -> tuple[Replica, ...]:
        return tuple(r for r in self.replicas if r.state is ReplicaState.READY)

    def on(self, tier: str, state: ReplicaState = ReplicaState.READY) -> Replica | None:
        return next((r for r in self.replicas if r.tier == tier and r.state is state), None)


@dataclass(frozen=True, slots=True)
class AccessStats:
    """How an object has been read: last read time, total reads, and a decayed frequency
    score (each read adds 1; the score halves every ``half_life`` seconds)."""

    key: str
    last_access: float
    count: int
    score: float

    def score_at(self, now: float, half_life: float = DEFAULT_HALF_LIFE) -> float:
        return self.score * 0.5 ** (max(0.0, now - self.last_access) / half_life)


@dataclass(frozen=True, slots=True)
class TierUsage:
    """What one tier holds according to the catalog: objects and bytes of its ready
    replicas, and the bytes of copies to it in flight (``copying`` replicas of objects whose
    size is known, whoever writes them: what capacity checks must count besides)."""

    tier: str
    objects: int
    bytes: int
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class PreloadRecord:
    """A scheduled pre-load: have every object under ``prefix`` on ``tier`` by ``deadline``
    (seconds since the epoch), staging from ``deadline - lead`` (at once when ``lead`` is
    None) and keeping them there until ``deadline + hold``."""

    prefix: str
    tier: str
    deadline: float
    lead: float | None
    hold: float
    created: float


def check_owned(replica: Replica, owner: str, state: ReplicaState) -> None:
    """Refuse work on a replica that is not (any more) ``owner``'s, in ``state``: recovery
    may have taken over the work of an owner it presumed dead."""
    if replica.state is not state:
        raise ReplicaError(f"replica {replica.id} is {replica.state}, not {state}")
    if replica.owner != owner:
        raise ReplicaError(f"replica {replica.id} was taken over by {replica.owner} (its "
                           f"owner {owner} was presumed dead)")


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease some work is done under: lease ``name`` in its term ``fence``. A catalog
    write that carries it commits only while that lease is still in that term and unexpired,
    by the catalog's clock: a holder that stalled past its lease (another took over) cannot
    change what exists any more, whatever its own clock believes."""

    name: str
    fence: int

    def refuse(self) -> LeaseLost:
        return LeaseLost(f"lease {self.name!r} (term {self.fence}) has expired or passed to "
                         "another holder; the write is refused")


@dataclass(frozen=True, slots=True)
class Lease:
    """A named lease (``node:<site>``, ``leader``) held by ``holder`` until ``expires``.

    Times are the catalog's clock (the database server's for PostgreSQL, so that nodes whose
    clocks disagree still agree on expiry), in seconds since the epoch. ``fence`` grows by one
    each time the lease is taken afresh (free, released or expired before); renewing keeps it.
    Work done under a lease can carry its fence, and anything that sees a higher fence knows
    that work is stale. A holder should treat its lease as lost ``ttl`` seconds after it *sent*
    the request that took or renewed it (by its own monotonic clock), whatever ``expires``
    says, and holder names must be unique per process (``host:pid:...``)."""

    name: str
    holder: str
    fence: int
    acquired: float
    expires: float


class Catalog(ABC):
    """What the store needs from its metadata database."""

    schema_version: int
    # Whether a read never waits on a writer or the network, so that a point lookup can run
    # on an event loop (:class:`~tierstore.catalog.aio.AsyncCatalog`): False unless a backend
    # knows better.
    inline_reads: bool = False

    @property
    def location(self) -> str:
        """Where the catalog is, safe to print (never a password)."""
        return repr(self)

    @abstractmethod
    def schema_versions(self) -> tuple[int, int]:
        """(the schema version the catalog has, the one this tierstore writes); 0 for a
        catalog never migrated (an empty database or a file not created yet)."""

    def pending_migrations(self) -> list[int]:
        """The schema versions :meth:`migrate` would bring the catalog to, oldest first
        (empty when it is up to date). Raises CatalogError if the catalog is newer than this
        tierstore."""
        have, want = self.schema_versions()
        if have > want:
            raise CatalogError(f"catalog {self.location} has schema {have}, newer than this "
                               f"tierstore ({want}); upgrade tierstore")
        return list(range(have + 1, want + 1))

    @abstractmethod
    def migrate(self) -> list[int]:
        """Bring the schema up to this tierstore's version, in one transaction that waits for
        any other migration; returns the versions applied (empty when up to date). Opening a
        catalog migrates it unless opened with ``migrate=False``."""

    @abstractmethod
    def get(self, key: str) -> ObjectRecord | None:
        """The object with this key, committed or not, or None."""

    @abstractmethod
    def records(self, keys: Sequence[str]) -> dict[str, ObjectRecord]:
        """The objects with these keys, committed or not, by key (a key with none is left
        out)."""

    @abstractmethod
    def folders(self, keys: Sequence[str]) -> list[str]:
        """Those of ``keys`` that are a folder of committed objects (some object with a ready
        replica has a key that starts with ``key + "/"``)."""

    @abstractmethod
    def objects(self, prefix: str = "", *, after: str = "", limit: int | None = None
             ) -> list[ObjectRecord]:
        """Objects whose key starts with ``prefix`` and sorts after ``after``, in key order."""

    @abstractmethod
    def begin_replica(self, key: str, tier: str, *, tmp: str, new_content: bool,
                      owner: str, fence: Fence | None = None) -> Replica:
        """Record the intent to write a replica of ``key`` on ``tier`` (state ``copying``).

        Its path is the key itself when no replica on that tier uses that path, else ``tmp``
        (so an overwrite never touches the bytes it replaces before they are superseded).

        Creates the object row if it is new. With ``new_content`` (a put) any other copying
        replica of the key on that tier is a conflict; without it (a copy of committed
        bytes) a ready or copying replica there already is.
        ``owner`` names the process doing the work (``host:pid``) so that recovery leaves
        the work of live processes alone. With ``fence``, refused (LeaseLost) unless that
        lease holds (:class:`Fence`); likewise in :meth:`commit_replica` and
        :meth:`mark_deleting`.
        Raises :class:`~tierstore.errors.ReplicaError` on conflict.
        """

    @abstractmethod
    def begin_replicas(self, writes: Sequence[tuple[str, str]], tier: str, *,
                       new_content: bool, owner: str, fence: Fence | None = None
                       ) -> list[Replica]:
        """:meth:`begin_replica` for each ``(key, tmp)`` of ``writes``, all in one transaction
        (one conflict refuses them all); the replicas in that order."""

    @abstractmethod
    def commit_replica(self, replica_id: int, *, owner: str, size: int, checksum: str,
                       new_content: bool, retire: Collection[str] = (),
                       fence: Fence | None = None) -> list[Replica]:
        """Mark a verified replica ``ready``, all in one transaction, durably (the commit is
        on disk before this returns: the caller removes bytes next).

        Refused (ReplicaError) unless the replica is still ``copying`` and ``owner``'s.

        With ``new_content`` (a put) the object takes ``size`` and ``checksum`` and every
        other replica of it becomes ``deleting``, owned now by the committing process; those
        are returned for the caller to remove. Without it (a copy) the object must still have
        exactly that content and a ready replica, or the copy is stale (an overwrite or an rm
        won the race) and ReplicaError is raised; its ready replicas on the tiers named in
        ``retire`` (a move's source) become ``deleting`` in the same transaction, and are
        returned, except one on the tier the object is pinned to (kept: the caller finds it
        missing from what is returned).
        """

    @abstractmethod
    def commit_replicas(self, commits: Sequence[tuple[int, int, str]], *, owner: str,
                        new_content: bool, retire: Collection[str] = (),
                        fence: Fence | None = None) -> list[list[Replica]]:
        """:meth:`commit_replica` for each ``(replica_id, size, checksum)`` of ``commits``,
        all in one durable transaction (one refusal refuses them all); per commit, in that
        order, the replicas it made ``deleting``."""

    @abstractmethod
    def mark_deleting(self, replica_id: int, *, owner: str, fence: Fence | None = None
                      ) -> Replica:
        """Move a ready replica to ``deleting``, durably; refuse (ReplicaError) if it is the
        object's last ready replica."""

    @abstractmethod
    def begin_delete(self, key: str, *, owner: str) -> list[Replica]:
        """Mark every replica of ``key`` ``deleting`` at once (removing the object), durably;
        returns them for the caller to remove. Raises ObjectNotFound if the key has no
        replica."""

    @abstractmethod
    def forget_replica(self, replica: Replica) -> bool:
        """Delete the row of exactly ``replica``: only while it has that id (ids are never
        reused), owner and state, so a process can only ever forget its own work. An object
        left with no replica row is deleted too. Whether the row was deleted."""

    @abstractmethod
    def take_over(self, replica: Replica, owner: str) -> Replica | None:
        """Recovery's claim on a pending replica whose owner it presumes dead: make ``owner``
        its owner, only if the row is still exactly as ``replica`` shows it (owner, state and
        ``updated``), so that a heartbeat since (the owner is alive after all) or another
        recovery wins. The replica as claimed, or None."""

    @abstractmethod
    def heartbeat(self, replica_ids: list[int], owner: str) -> int:
        """Refresh ``updated`` of these pending replicas, where ``owner`` still owns them: a
        long copy shows it is alive. How many rows it refreshed."""

    @abstractmethod
    def pending(self) -> list[tuple[str, Replica]]:
        """Every replica in ``copying`` or ``deleting`` state, with its key (for recovery)."""

    @abstractmethod
    def set_pin(self, key: str, tier: str | None) -> None:
        """Pin ``key`` to ``tier`` (None unpins)."""

    @abstractmethod
    def record_access(self, reads: Mapping[str, tuple[int, float]], *,
                      site: str | None = None) -> None:
        """Merge a batch of reads: key -> (number of reads, time of the last one). With
        ``site`` (where the reads happened) they count for that site's statistics too, in the
        same transaction: a node's daemon promotes to its hot tier what its own node reads."""

    @abstractmethod
    def access(self, keys: list[str], *, site: str | None = None) -> dict[str, AccessStats]:
        """Access statistics of the given keys (keys never read are absent): of reads on every
        site, or only of those recorded for ``site``."""

    @abstractmethod
    def usage(self, *, exclude_owner: str = "") -> list[TierUsage]:
        """Objects and bytes of ready replicas per tier, and bytes being copied there by
        owners other than ``exclude_owner`` (a process counts its own writes itself)."""

    @abstractmethod
    def announce(self, reader: str, uses: Mapping[str, float], *, expires: float,
                 site: str | None = None) -> None:
        """Replace everything ``reader`` announced with ``uses``: key -> the time it expects
        to read the key next (:data:`FETCHING`: it fetches it itself). The announcement
        counts until ``expires``; an empty ``uses``
        withdraws it. ``site`` is where the reader runs (for per-site staging). Expired
        announcements of every reader are dropped in the same transaction."""

    @abstractmethod
    def next_uses(self, now: float, *, site: str | None = None) -> dict[str, float]:
        """The earliest announced next read of each key, among announcements still valid at
        ``now`` (of readers at ``site`` only, when given)."""

    @abstractmethod
    def add_preload(self, record: PreloadRecord) -> None:
        """Schedule a pre-load; one with the same prefix and tier is replaced."""

    @abstractmethod
    def preloads(self) -> list[PreloadRecord]:
        """Scheduled pre-loads, earliest deadline first."""

    @abstractmethod
    def remove_preload(self, prefix: str, tier: str | None = None) -> int:
        """Cancel the pre-loads of ``prefix`` (to ``tier`` only, when given); returns how
        many there were."""

    @abstractmethod
    def remove_expired_preloads(self, now: float) -> int:
        """Remove the pre-loads whose hold ended by ``now`` (``deadline + hold <= now``), in
        one statement: one scheduled again meanwhile is kept. Returns how many."""

    @abstractmethod
    def add_objects(self, objects: Iterable[tuple[str, int, str]], tier: str, *, owner: str,
                    versions: Mapping[str, str] | None = None) -> int:
        """The bulk-load path: record committed objects, each ``(key, size, checksum)`` with
        one ready replica on ``tier`` at the key's own path, in one transaction; keys that
        exist already are left as they are. Returns how many objects were added.

        For adopting data already in place (a dataset copied into a bucket by other tools)
        and for benchmarks: the caller vouches that the bytes are there and match, and keys
        are not validated here (:func:`tierstore.keys.validate_key` does that). ``versions``:
        key -> what the tier said of the file when it was read (an S3 ETag; a local file's
        modification time and inode), kept with the new replica as an *adopted* one, so that
        a change made to it behind the store's back can be told (:attr:`Replica.version`).
        """

    @abstractmethod
    def add_adoption(self, tier: str, prefix: str, *, whole: bool) -> None:
        """Remember that files under ``prefix`` on ``tier`` were adopted, for rescans:
        ``whole``, the prefix's every file (a rescan adopts new ones too), else only those
        named (a rescan checks those). Adopting a prefix again only widens it."""

    @abstractmethod
    def adoptions(self) -> list[tuple[str, str, bool]]:
        """The adopted prefixes: ``(tier, prefix, whole)`` each, in order."""

    @abstractmethod
    def readopt(self, replica_id: int, *, owner: str, size: int, checksum: str, version: str
                ) -> list[Replica]:
        """An adopted replica's file changed in place, behind the store's back, and was read
        again: the object takes its ``size`` and ``checksum``, the replica its ``version``,
        and every other ready replica of the object (copies of what it held before) becomes
        ``deleting``, owned by ``owner``, returned for the caller to remove; one transaction,
        durably. ReplicaError if the replica is no longer a ready adopted one."""

    @abstractmethod
    def clock(self) -> float:
        """The catalog's time now (what lease expiry is measured against)."""

    @abstractmethod
    def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Take lease ``name`` for ``ttl`` seconds if it is free, released or expired (a new
        term: the fence grows), or extend it if ``holder`` holds it still (same fence).
        Atomic: of holders racing for a free lease exactly one gets it. None when another
        holder has it."""

    @abstractmethod
    def renew_lease(self, name: str, holder: str, fence: int, ttl: float) -> Lease | None:
        """Extend a lease ``holder`` holds, in the term ``fence``, to ``ttl`` seconds from
        now; None if it was lost (expired, released or taken by another): then stop the
        work it guarded, and :meth:`acquire_lease` again to start a new term."""

    @abstractmethod
    def release_lease(self, name: str, holder: str, fence: int) -> bool:
        """Give a lease up at once (if ``holder`` holds it in term ``fence``); whether it
        did. The fence is kept, so the next holder's is higher."""

    @abstractmethod
    def leases(self) -> list[Lease]:
        """Every lease ever taken, valid or not (compare ``expires`` with :meth:`clock`),
        by name."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
