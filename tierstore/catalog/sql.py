"""Every catalog transaction, written once, in the SQL that SQLite and PostgreSQL share.

:class:`SqlCatalog` holds the contract's transactions and the schema. A backend keeps only
what truly differs (:mod:`.sqlite`, :mod:`.postgres`): its connections, how one transaction
runs (``BEGIN IMMEDIATE`` and group commit; READ COMMITTED with retries), how the driver's
errors become tierstore's, how the schema's version is kept, and a :class:`Dialect`:

- statements are written with ``?`` placeholders (the driver's own are substituted);
- where PostgreSQL takes a row lock first (``lock``: every write locks the row of the object
  it changes, so writes to one object run one after another and writes to different objects
  never wait on each other), SQLite needs none (``BEGIN IMMEDIATE`` holds the one write lock);
- the catalog's clock (``now``: the server's, so that nodes whose clocks disagree still agree
  on a lease's expiry) and the column types of the schema.

Lists are bound as ``IN (?, ...)`` of at most :data:`BATCH` values. A statement over many
rows (a bulk load, a batch of reads) reads them from a table ``b(c0, c1, ...)``
(:meth:`SqlCatalog._each`), bound in one statement: on PostgreSQL as arrays (``unnest``), on
SQLite as a JSON array (``json_each``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from abc import abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..errors import CopyInFlight, ObjectNotFound, ReplicaError, ReplicaReady
from ..keys import MARK_DIR
from .base import (
    DEFAULT_HALF_LIFE,
    AccessStats,
    Catalog,
    Fence,
    Lease,
    ObjectRecord,
    PreloadRecord,
    Replica,
    ReplicaState,
    TierUsage,
    check_owned,
)

__all__ = ["BATCH", "Dialect", "Rows", "SqlCatalog", "Statements", "migrations"]

T = TypeVar("T")
BATCH = 500  # values bound in one IN (...) list


class Rows(Protocol):
    """What a statement returns (a sqlite3 or psycopg cursor)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Statements(Protocol):
    """What a transaction runs its statements on; ``?`` placeholders."""

    def execute(self, sql: str, args: Sequence[Any] = ...) -> Rows: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any: ...


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL of two databases, as far as the catalog is concerned."""

    name: str
    now: str  # an SQL expression: the catalog's clock, in seconds since the epoch
    lock: str | None  # the clause that locks rows read, None where writes lock everything
    share: str  # the clause that keeps a row read from changing until the commit
    arrays: bool  # binds a column of values as one array, else rows as JSON (SqlCatalog._each)
    types: Mapping[str, str]  # the schema's column types by role (see SCHEMA)


# -- the schema: each entry upgrades version i to i + 1 ---------------------------------------
# Types by role: {id} a row id, {int} a 64-bit integer, {real} a float, {bool} a boolean,
# {key} text that sorts by code point (like Python strings), whatever the locale. An entry
# that differs beyond types is given per dialect.

SCHEMA: list[str | Mapping[str, str]] = [
    """
    CREATE TABLE objects (
        id       {id},
        key      {key} NOT NULL UNIQUE,
        size     {int},
        checksum TEXT,
        created  {real} NOT NULL,
        pinned   TEXT
    );
    CREATE TABLE replicas (
        id        {id},
        object_id {int} NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
        tier      TEXT NOT NULL,
        path      TEXT NOT NULL,
        state     TEXT NOT NULL CHECK (state IN ('copying', 'ready', 'deleting')),
        tmp       TEXT,
        owner     TEXT NOT NULL,
        updated   {real} NOT NULL
    );
    CREATE INDEX replicas_object ON replicas(object_id);
    CREATE INDEX replicas_state ON replicas(state) WHERE state <> 'ready';
    CREATE UNIQUE INDEX replicas_one_ready ON replicas(object_id, tier) WHERE state = 'ready';
    CREATE UNIQUE INDEX replicas_path ON replicas(tier, path);
    CREATE TABLE access (
        object_id   {int} PRIMARY KEY REFERENCES objects(id) ON DELETE CASCADE,
        last_access {real} NOT NULL,
        count       {int} NOT NULL,
        score       {real} NOT NULL
    );
    """,
    """
    CREATE TABLE next_use (
        reader  TEXT NOT NULL,
        key     {key} NOT NULL,
        due     {real} NOT NULL,
        expires {real} NOT NULL,
        site    TEXT,
        PRIMARY KEY (reader, key)
    );
    CREATE INDEX next_use_expires ON next_use(expires);
    CREATE TABLE preloads (
        prefix   {key} NOT NULL,
        tier     TEXT NOT NULL,
        deadline {real} NOT NULL,
        lead     {real},
        hold     {real} NOT NULL,
        created  {real} NOT NULL,
        PRIMARY KEY (prefix, tier)
    );
    """,
    """
    CREATE TABLE leases (
        name     TEXT PRIMARY KEY,
        holder   TEXT NOT NULL,
        acquired {real} NOT NULL,
        expires  {real} NOT NULL,
        fence    {int} NOT NULL
    );
    """,
    """
    CREATE TABLE site_access (
        object_id   {int} NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
        site        TEXT NOT NULL,
        last_access {real} NOT NULL,
        count       {int} NOT NULL,
        score       {real} NOT NULL,
        PRIMARY KEY (object_id, site)
    );
    """,
    # Replica ids are never reused: a row a process remembers can only ever be its own
    # replica's, never a later replica that took a freed id. SQLite reuses the largest id
    # unless the table is AUTOINCREMENT; PostgreSQL's identity columns never reuse theirs.
    {
        "sqlite": """
    CREATE TABLE replicas_v5 (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        object_id INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
        tier      TEXT NOT NULL,
        path      TEXT NOT NULL,
        state     TEXT NOT NULL CHECK (state IN ('copying', 'ready', 'deleting')),
        tmp       TEXT,
        owner     TEXT NOT NULL,
        updated   REAL NOT NULL
    );
    INSERT INTO replicas_v5 SELECT id, object_id, tier, path, state, tmp, owner, updated
        FROM replicas;
    DROP TABLE replicas;
    ALTER TABLE replicas_v5 RENAME TO replicas;
    CREATE INDEX replicas_object ON replicas(object_id);
    CREATE INDEX replicas_state ON replicas(state) WHERE state <> 'ready';
    CREATE UNIQUE INDEX replicas_one_ready ON replicas(object_id, tier) WHERE state = 'ready';
    CREATE UNIQUE INDEX replicas_path ON replicas(tier, path);
    """,
        "postgresql": "SELECT 1",
    },
    # Adopted replicas: what the tier said of each file when it was read (see add_objects).
    """
    CREATE TABLE adopted (
        replica_id {int} PRIMARY KEY REFERENCES replicas(id) ON DELETE CASCADE,
        version    TEXT NOT NULL
    );
    CREATE TABLE adoptions (
        tier   TEXT NOT NULL,
        prefix {key} NOT NULL,
        whole  {bool} NOT NULL,
        PRIMARY KEY (tier, prefix)
    );
    """,
]
SCHEMA_VERSION = len(SCHEMA)


def migrations(dialect: Dialect) -> list[str]:
    """The schema's steps in ``dialect``'s SQL: entry ``i`` upgrades version ``i`` to ``i + 1``."""
    return [step[dialect.name] if isinstance(step, Mapping) else step.format(**dialect.types)
            for step in SCHEMA]


# -- statements more than one transaction runs ------------------------------------------------

_OBJECT_COLUMNS = "o.id, o.key, o.size, o.checksum, o.created, o.pinned"
_REPLICA_COLUMNS = "r.id, r.tier, r.path, r.state, r.tmp, r.owner, r.updated"
_RETURNING_REPLICAS = " RETURNING id, tier, path, state, tmp, owner, updated"
# Objects picked by {} (a SELECT of whole rows of objects), each with its replicas.
_RECORDS = (f"SELECT {_OBJECT_COLUMNS}, {_REPLICA_COLUMNS}, a.version FROM ({{}}) o "
            "LEFT JOIN replicas r ON r.object_id = o.id "
            "LEFT JOIN adopted a ON a.replica_id = r.id ORDER BY o.key, r.id")
# Per tier: ready replicas and their bytes, and the bytes of copies in flight there (a
# copying replica of an object with a committed size, not a fetch's mark:
# ``tierstore.keys.is_mark``) but those of owner ?.
_USAGE = ("SELECT r.tier, SUM(CASE WHEN r.state = 'ready' THEN 1 ELSE 0 END), "
          "COALESCE(SUM(CASE WHEN r.state = 'ready' THEN o.size ELSE 0 END), 0), "
          "COALESCE(SUM(CASE WHEN r.state = 'copying' AND r.owner <> ? AND "
          f"(r.tmp IS NULL OR substr(r.tmp, 1, {len(MARK_DIR) + 1}) <> '{MARK_DIR}/') "
          "THEN o.size ELSE 0 END), 0) FROM replicas r JOIN objects o ON o.id = r.object_id "
          "WHERE r.state IN ('ready', 'copying') GROUP BY r.tier ORDER BY r.tier")
# Take lease (name, holder, now, now, ttl) if it is free, expired or already holder's (then
# keeping its fence and acquisition time); the lease row, or none when another holds it.
_LEASE_UPSERT = (
    "INSERT INTO leases AS l (name, holder, acquired, expires, fence) "
    "VALUES (?, ?, ?, ? + ?, 1) ON CONFLICT (name) DO UPDATE SET "
    "fence = CASE WHEN l.holder = excluded.holder AND l.expires > excluded.acquired "
    "THEN l.fence ELSE l.fence + 1 END, "
    "acquired = CASE WHEN l.holder = excluded.holder AND l.expires > excluded.acquired "
    "THEN l.acquired ELSE excluded.acquired END, "
    "holder = excluded.holder, expires = excluded.expires "
    "WHERE l.expires <= excluded.acquired OR l.holder = excluded.holder "
    "RETURNING name, holder, fence, acquired, expires")
# Merge reads (at, n, n, key, half_life) into the statistics without reading them first, so
# that batches from many processes add up; the score decays on the database's side.
_MERGE_ACCESS = (
    "ON CONFLICT ({}) DO UPDATE SET "
    "last_access = GREATEST(a.last_access, excluded.last_access), "
    "count = a.count + excluded.count, "
    "score = a.score * power(0.5, GREATEST(0, excluded.last_access - a.last_access) / ?) "
    "+ excluded.count")


class SqlCatalog(Catalog):
    """The catalog contract as SQL transactions, over a backend's connections."""

    dialect: Dialect
    half_life: float = DEFAULT_HALF_LIFE

    @abstractmethod
    def _write(self, body: Callable[[Statements], T], *, durable: bool = False) -> T:
        """Run ``body`` in one write transaction; its result. ``durable``: the commit is on
        disk when this returns (the commits after which bytes are removed); the others may
        be lost to a power cut, never half-applied."""

    @abstractmethod
    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read statement (its own snapshot)."""

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: str) -> ObjectRecord | None:
        found = _records(self._read(_RECORDS.format("SELECT * FROM objects WHERE key = ?"),
                                    (key,)))
        return found[0] if found else None

    def records(self, keys: Sequence[str]) -> dict[str, ObjectRecord]:
        return {record.key: record for chunk in _batches(keys) for record in _records(
            self._read(_RECORDS.format(f"SELECT * FROM objects WHERE key IN {_marks(chunk)}"),
                       chunk))}

    def folders(self, keys: Sequence[str]) -> list[str]:
        # A key's folder is the range [key + "/", key + "/" + U+10FFFF) of the key index.
        found: list[str] = []
        for chunk in _batches(keys, BATCH // 3):  # three values bound per key
            rows = ", ".join(["(?, ?, ?)"] * len(chunk))
            found += [key for key, in self._read(
                f"SELECT b.column1 FROM (VALUES {rows}) AS b WHERE EXISTS (SELECT 1 FROM "
                "objects o JOIN replicas r ON r.object_id = o.id AND r.state = 'ready' "
                "WHERE o.key >= b.column2 AND o.key < b.column3)",
                [v for key in chunk for v in (key, key + "/", key + "/\U0010ffff")])]
        return found

    def objects(self, prefix: str = "", *, after: str = "", limit: int | None = None
                ) -> list[ObjectRecord]:
        # key >= prefix AND key < prefix + U+10FFFF is a range scan of the key index.
        page = "SELECT * FROM objects WHERE key >= ? AND key < ? AND key > ? ORDER BY key"
        args: list[Any] = [prefix, prefix + "\U0010ffff", after]
        if limit is not None:
            page += " LIMIT ?"
            args.append(limit)
        return _records(self._read(_RECORDS.format(page), args))

    def pending(self) -> list[tuple[str, Replica]]:
        rows = self._read(f"SELECT o.key, {_REPLICA_COLUMNS} FROM replicas r JOIN objects o "
                          "ON o.id = r.object_id WHERE r.state <> 'ready' ORDER BY r.id")
        return [(row[0], _replica(row[1:])) for row in rows]

    def access(self, keys: list[str], *, site: str | None = None) -> dict[str, AccessStats]:
        table, where = ("access", "") if site is None else ("site_access", " AND a.site = ?")
        out: dict[str, AccessStats] = {}
        for chunk in _batches(keys):
            for key, last, count, score in self._read(
                    f"SELECT o.key, a.last_access, a.count, a.score FROM {table} a JOIN "
                    f"objects o ON o.id = a.object_id WHERE o.key IN {_marks(chunk)}{where}",
                    [*chunk, *([] if site is None else [site])]):
                out[key] = AccessStats(key, last, count, score)
        return out

    def usage(self, *, exclude_owner: str = "") -> list[TierUsage]:
        return [TierUsage(tier, int(n), int(total), int(flying))
                for tier, n, total, flying in self._read(_USAGE, (exclude_owner,))]

    def adoptions(self) -> list[tuple[str, str, bool]]:
        return [(tier, prefix, bool(whole)) for tier, prefix, whole in self._read(
            "SELECT tier, prefix, whole FROM adoptions ORDER BY tier, prefix")]

    def leases(self) -> list[Lease]:
        return [Lease(*row) for row in self._read(
            "SELECT name, holder, fence, acquired, expires FROM leases ORDER BY name")]

    def next_uses(self, now: float, *, site: str | None = None) -> dict[str, float]:
        sql = "SELECT key, MIN(due) FROM next_use WHERE expires > ?"
        args: list[Any] = [now]
        if site is not None:
            sql += " AND site = ?"
            args.append(site)
        return {key: due for key, due in self._read(sql + " GROUP BY key", args)}

    def preloads(self) -> list[PreloadRecord]:
        return [PreloadRecord(*row) for row in self._read(
            "SELECT prefix, tier, deadline, lead, hold, created FROM preloads "
            "ORDER BY deadline, prefix, tier")]

    def clock(self) -> float:
        return float(self._read(f"SELECT {self.dialect.now}")[0][0])

    # -- what a write does first -------------------------------------------------------------

    def _lock_objects(self, tx: Statements, where: str, arg: Any) -> None:
        """Lock the object row(s) ``where`` picks, where this database locks rows."""
        if self.dialect.lock is not None:
            tx.execute(f"SELECT id FROM objects WHERE {where} {self.dialect.lock}", (arg,))

    def _locked_replica(self, tx: Statements, replica_id: int) -> tuple[int, Replica]:
        """Lock the object of a replica, then read the replica as it is now."""
        self._lock_objects(tx, "id = (SELECT object_id FROM replicas WHERE id = ?)", replica_id)
        row = tx.execute(f"SELECT r.object_id, {_REPLICA_COLUMNS} FROM replicas r "
                         "WHERE r.id = ?", (replica_id,)).fetchone()
        if row is None:
            raise ReplicaError(f"replica {replica_id} does not exist")
        return row[0], _replica(row[1:])

    def _check_fence(self, tx: Statements, fence: Fence | None) -> None:
        """Refuse a fenced write whose lease no longer holds by the catalog's clock (the
        lease row kept as read until the commit; taking a lease over commits before a new
        term's writes)."""
        if fence is not None and tx.execute(
                "SELECT 1 FROM leases WHERE name = ? AND fence = ? AND expires > "
                f"{self.dialect.now}{self.dialect.share}",
                (fence.name, fence.fence)).fetchone() is None:
            raise fence.refuse()

    def _each(self, tx: Statements, sql: str, rows: Sequence[Sequence[Any]],
              types: Sequence[str], *, before: Sequence[Any] = (),
              after: Sequence[Any] = ()) -> list[Any]:
        """Run ``sql`` once over ``rows``, where ``{rows}`` in it is a table ``b(c0, c1, ...)``
        of them (``types``: each column's type, as PostgreSQL names it) and ``before`` and
        ``after`` bind the placeholders before and after it; the rows it returns. The rows
        are bound as one array per column where the database takes arrays, else as one JSON
        array of rows (SQLite's ``json_each``)."""
        if self.dialect.arrays:
            names = ", ".join(f"c{i}" for i in range(len(types)))
            table = f"unnest({', '.join(f'?::{t}[]' for t in types)}) AS b({names})"
            bound: list[Any] = [list(column) for column in zip(*rows, strict=True)] if rows \
                else [[] for _ in types]
        else:
            columns = ", ".join(f"json_extract(value, '$[{i}]') AS c{i}"
                                for i in range(len(types)))
            table = f"(SELECT {columns} FROM json_each(?)) AS b"
            bound = [json.dumps([list(row) for row in rows])]
        done = tx.execute(sql.format(rows=table), (*before, *bound, *after))
        return done.fetchall() if "RETURNING" in sql else []

    # -- a replica's life ----------------------------------------------------------------------

    def begin_replica(self, key: str, tier: str, *, tmp: str, new_content: bool,
                      owner: str, fence: Fence | None = None) -> Replica:
        return self.begin_replicas([(key, tmp)], tier, new_content=new_content, owner=owner,
                                   fence=fence)[0]

    def begin_replicas(self, writes: Sequence[tuple[str, str]], tier: str, *,
                       new_content: bool, owner: str, fence: Fence | None = None
                       ) -> list[Replica]:
        now = _now()
        blocking = ("copying",) if new_content else ("copying", "ready")

        def begin(tx: Statements, key: str, tmp: str) -> Replica:
            # Creates the row or locks the existing one, atomically even under concurrency.
            oid, size = tx.execute(
                "INSERT INTO objects (key, created) VALUES (?, ?) ON CONFLICT (key) "
                "DO UPDATE SET created = objects.created RETURNING id, size",
                (key, now)).fetchone()
            busy = tx.execute(f"SELECT state FROM replicas WHERE object_id = ? AND tier = ? "
                              f"AND state IN {_marks(blocking)} LIMIT 1",
                              (oid, tier, *blocking)).fetchone()
            if busy is not None:
                error = CopyInFlight if busy[0] == "copying" else ReplicaReady
                raise error(f"{key!r} already has a {busy[0]} replica on tier {tier!r}")
            if not new_content and size is None:
                raise ReplicaError(f"{key!r} has no committed content to copy")
            taken = tx.execute("SELECT 1 FROM replicas WHERE tier = ? AND path = ?",
                               (tier, key)).fetchone()
            path = tmp if taken else key
            (rid,) = tx.execute(
                "INSERT INTO replicas (object_id, tier, path, state, tmp, owner, updated) "
                "VALUES (?, ?, ?, 'copying', ?, ?, ?) RETURNING id",
                (oid, tier, path, tmp, owner, now)).fetchone()
            return Replica(rid, tier, path, ReplicaState.COPYING, tmp, owner, now)

        def txn(tx: Statements) -> list[Replica]:
            self._check_fence(tx, fence)
            return [begin(tx, key, tmp) for key, tmp in writes]

        return self._write(txn)

    def commit_replica(self, replica_id: int, *, owner: str, size: int, checksum: str,
                       new_content: bool, retire: Collection[str] = (),
                       fence: Fence | None = None) -> list[Replica]:
        return self.commit_replicas([(replica_id, size, checksum)], owner=owner,
                                    new_content=new_content, retire=retire, fence=fence)[0]

    def commit_replicas(self, commits: Sequence[tuple[int, int, str]], *, owner: str,
                        new_content: bool, retire: Collection[str] = (),
                        fence: Fence | None = None) -> list[list[Replica]]:
        now = _now()

        def commit(tx: Statements, replica_id: int, size: int, checksum: str
                   ) -> list[Replica]:
            oid, replica = self._locked_replica(tx, replica_id)
            check_owned(replica, owner, ReplicaState.COPYING)
            superseded: list[Replica] = []
            if new_content:
                tx.execute("UPDATE objects SET size = ?, checksum = ? WHERE id = ?",
                           (size, checksum, oid))
                superseded = _sorted(tx.execute(
                    "UPDATE replicas SET state = 'deleting', owner = ?, updated = ? "
                    "WHERE object_id = ? AND id <> ? AND state = 'ready'"
                    + _RETURNING_REPLICAS, (replica.owner, now, oid, replica_id)))
            else:
                current = tx.execute(
                    "SELECT o.size, o.checksum, (SELECT COUNT(*) FROM replicas r WHERE "
                    "r.object_id = o.id AND r.state = 'ready') FROM objects o WHERE o.id = ?",
                    (oid,)).fetchone()
                if current is None or tuple(current[:2]) != (size, checksum) or not current[2]:
                    raise ReplicaError("the object was overwritten or removed while it was "
                                       "being copied; the copy is discarded")
                if retire:  # a move's source, in the commit's own transaction (never the
                    superseded = _sorted(tx.execute(  # tier the object is pinned to)
                        "UPDATE replicas SET state = 'deleting', owner = ?, updated = ? "
                        "WHERE object_id = ? AND id <> ? AND state = 'ready' AND tier IN "
                        f"{_marks(retire)} AND NOT EXISTS (SELECT 1 FROM objects o WHERE "
                        "o.id = replicas.object_id AND o.pinned = replicas.tier)"
                        + _RETURNING_REPLICAS, (replica.owner, now, oid, replica_id, *retire)))
            tx.execute("UPDATE replicas SET state = 'ready', tmp = NULL, updated = ? "
                       "WHERE id = ?", (now, replica_id))
            return superseded

        def txn(tx: Statements) -> list[list[Replica]]:
            self._check_fence(tx, fence)
            return [commit(tx, *one) for one in commits]

        return self._write(txn, durable=True)

    def mark_deleting(self, replica_id: int, *, owner: str, fence: Fence | None = None
                      ) -> Replica:
        now = _now()

        def txn(tx: Statements) -> Replica:
            self._check_fence(tx, fence)
            oid, replica = self._locked_replica(tx, replica_id)
            if replica.state is not ReplicaState.READY:
                raise ReplicaError(f"replica {replica_id} is {replica.state}, not ready")
            (ready,) = tx.execute("SELECT COUNT(*) FROM replicas WHERE object_id = ? "
                                  "AND state = 'ready'", (oid,)).fetchone()
            if ready <= 1:
                raise ReplicaError(f"tier {replica.tier!r} holds the last ready replica")
            tx.execute("UPDATE replicas SET state = 'deleting', owner = ?, updated = ? "
                       "WHERE id = ?", (owner, now, replica_id))
            return dataclasses.replace(replica, state=ReplicaState.DELETING, owner=owner,
                                       updated=now)

        return self._write(txn, durable=True)

    def begin_delete(self, key: str, *, owner: str) -> list[Replica]:
        now = _now()

        def txn(tx: Statements) -> list[Replica]:
            self._lock_objects(tx, "key = ?", key)
            replicas = _sorted(tx.execute(
                "UPDATE replicas SET state = 'deleting', owner = ?, updated = ? WHERE "
                "object_id = (SELECT id FROM objects WHERE key = ?) AND state = 'ready'"
                + _RETURNING_REPLICAS, (owner, now, key)))
            if not replicas:
                raise ObjectNotFound(key)
            return replicas

        return self._write(txn, durable=True)

    def forget_replica(self, replica: Replica) -> bool:
        def txn(tx: Statements) -> bool:
            # Locked first, so that NOT EXISTS sees every replica committed before the lock.
            self._lock_objects(tx, "id = (SELECT object_id FROM replicas WHERE id = ?)", replica.id)
            row = tx.execute("DELETE FROM replicas WHERE id = ? AND owner = ? AND state = ? "
                             "RETURNING object_id",
                             (replica.id, replica.owner, str(replica.state))).fetchone()
            if row is None:
                return False
            tx.execute("DELETE FROM objects WHERE id = ? AND NOT EXISTS "
                       "(SELECT 1 FROM replicas WHERE object_id = ?)", (row[0], row[0]))
            return True

        return self._write(txn)

    def take_over(self, replica: Replica, owner: str) -> Replica | None:
        now = _now()
        taken = self._write(lambda tx: tx.execute(
            "UPDATE replicas SET owner = ?, updated = ? WHERE id = ? AND owner = ? "
            "AND state = ? AND updated = ? AND state <> 'ready'",
            (owner, now, replica.id, replica.owner, str(replica.state), replica.updated)
        ).rowcount)
        return dataclasses.replace(replica, owner=owner, updated=now) if taken else None

    def heartbeat(self, replica_ids: list[int], owner: str) -> int:
        now = _now()

        def txn(tx: Statements) -> int:
            return sum(tx.execute(
                "UPDATE replicas SET updated = ? WHERE owner = ? AND state <> 'ready' AND id "
                f"IN {_marks(chunk)}", (now, owner, *chunk)).rowcount
                for chunk in _batches(replica_ids))

        return self._write(txn) if replica_ids else 0

    def set_pin(self, key: str, tier: str | None) -> None:
        self._write(lambda tx: tx.execute("UPDATE objects SET pinned = ? WHERE key = ?",
                                          (tier, key)))

    def record_access(self, reads: Mapping[str, tuple[int, float]], *,
                      site: str | None = None) -> None:
        """Each key's reads merged on the database's side (overlapping batches from many
        processes add up; keys in order, so that they lock rows in the same order), into
        the statistics of all sites and, given a site, into that site's."""
        if not reads:
            return
        rows = [(key, reads[key][0], float(reads[key][1])) for key in sorted(reads)]
        merge = ("INSERT INTO {table} AS a (object_id{site}, last_access, count, score) "
                 "SELECT o.id{mark}, b.c2, b.c1, b.c1 FROM {{rows}} JOIN objects o "
                 "ON o.key = b.c0 WHERE TRUE ORDER BY o.id " + _MERGE_ACCESS)
        types = ("text", "bigint", "float8")

        def txn(tx: Statements) -> None:
            self._each(tx, merge.format("object_id", table="access", site="", mark=""),
                       rows, types, after=(self.half_life,))
            if site is not None:
                self._each(tx, merge.format("object_id, site", table="site_access",
                                            site=", site", mark=", ?"),
                           rows, types, before=(site,), after=(self.half_life,))

        self._write(txn)

    # -- adoption --------------------------------------------------------------------------

    def add_objects(self, objects: Iterable[tuple[str, int, str]], tier: str, *, owner: str,
                    versions: Mapping[str, str] | None = None) -> int:
        rows = list({key: (key, size, checksum) for key, size, checksum in objects}.values())
        now = _now()

        def txn(tx: Statements) -> int:
            self._each(tx, "INSERT INTO objects (key, size, checksum, created) SELECT b.c0, "
                           "b.c1, b.c2, ? FROM {rows} WHERE TRUE ON CONFLICT (key) DO NOTHING",
                       rows, ("text", "bigint", "text"), before=(now,))
            added = self._each(  # objects just made have no replica (an object row never
                tx,  # outlives its last replica)
                "INSERT INTO replicas (object_id, tier, path, state, tmp, owner, updated) "
                "SELECT o.id, ?, o.key, 'ready', NULL, ?, ? FROM {rows} JOIN objects o ON "
                "o.key = b.c0 WHERE NOT EXISTS (SELECT 1 FROM replicas r WHERE r.object_id = "
                "o.id) RETURNING id, path", [(key,) for key, _, _ in rows], ("text",),
                before=(tier, owner, now))
            if versions:
                tx.executemany("INSERT INTO adopted (replica_id, version) VALUES (?, ?)",
                               [(rid, versions[path]) for rid, path in added
                                if path in versions])
            return len(added)

        return self._write(txn)

    def add_adoption(self, tier: str, prefix: str, *, whole: bool) -> None:
        self._write(lambda tx: tx.execute(
            "INSERT INTO adoptions (tier, prefix, whole) VALUES (?, ?, ?) ON CONFLICT "
            "(tier, prefix) DO UPDATE SET whole = CASE WHEN excluded.whole THEN excluded.whole "
            "ELSE adoptions.whole END", (tier, prefix, whole)))

    def readopt(self, replica_id: int, *, owner: str, size: int, checksum: str, version: str
                ) -> list[Replica]:
        now = _now()

        def txn(tx: Statements) -> list[Replica]:
            oid, replica = self._locked_replica(tx, replica_id)
            adopted = tx.execute("SELECT 1 FROM adopted WHERE replica_id = ?",
                                 (replica_id,)).fetchone()
            if replica.state is not ReplicaState.READY or adopted is None:
                raise ReplicaError(f"replica {replica_id} is not a ready adopted replica")
            tx.execute("UPDATE objects SET size = ?, checksum = ? WHERE id = ?",
                       (size, checksum, oid))
            tx.execute("UPDATE adopted SET version = ? WHERE replica_id = ?",
                       (version, replica_id))
            return _sorted(tx.execute(
                "UPDATE replicas SET state = 'deleting', owner = ?, updated = ? WHERE "
                "object_id = ? AND id <> ? AND state = 'ready'" + _RETURNING_REPLICAS,
                (owner, now, oid, replica_id)))

        return self._write(txn, durable=True)

    # -- leases: one statement each, on the catalog's clock ------------------------------------
    # ON CONFLICT DO UPDATE locks the row and re-checks its WHERE against the latest committed
    # version, so of holders racing for a free lease exactly one gets it (no home-made
    # consensus: the row lock and the database's clock are the whole protocol).

    def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        def txn(tx: Statements) -> Lease | None:
            (now,) = tx.execute(f"SELECT {self.dialect.now}").fetchone()
            row = tx.execute(_LEASE_UPSERT, (name, holder, now, now, float(ttl))).fetchone()
            return None if row is None else Lease(*row)

        return self._write(txn)

    def renew_lease(self, name: str, holder: str, fence: int, ttl: float) -> Lease | None:
        now = self.dialect.now
        row = self._write(lambda tx: tx.execute(
            f"UPDATE leases SET expires = {now} + ? WHERE name = ? AND holder = ? "
            f"AND fence = ? AND expires > {now} "
            "RETURNING name, holder, fence, acquired, expires",
            (float(ttl), name, holder, fence)).fetchone())
        return None if row is None else Lease(*row)

    def release_lease(self, name: str, holder: str, fence: int) -> bool:
        now = self.dialect.now
        return self._write(lambda tx: tx.execute(
            f"UPDATE leases SET expires = {now} WHERE name = ? AND holder = ? "
            f"AND fence = ? AND expires > {now}", (name, holder, fence)).rowcount > 0)

    # -- what readers will read next, and scheduled pre-loads --------------------------------

    def announce(self, reader: str, uses: Mapping[str, float], *, expires: float,
                 site: str | None = None) -> None:
        def txn(tx: Statements) -> None:
            tx.execute("DELETE FROM next_use WHERE reader = ? OR expires <= ?",
                       (reader, _now()))
            self._each(tx, "INSERT INTO next_use (reader, key, due, expires, site) SELECT ?, "
                           "b.c0, b.c1, ?, ? FROM {rows} WHERE TRUE ON CONFLICT DO NOTHING",
                       [(key, float(due)) for key, due in uses.items()], ("text", "float8"),
                       before=(reader, expires, site))

        self._write(txn)

    def add_preload(self, record: PreloadRecord) -> None:
        self._write(lambda tx: tx.execute(
            "INSERT INTO preloads (prefix, tier, deadline, lead, hold, created) VALUES "
            "(?, ?, ?, ?, ?, ?) ON CONFLICT (prefix, tier) DO UPDATE SET "
            "deadline = excluded.deadline, lead = excluded.lead, hold = excluded.hold, "
            "created = excluded.created", (record.prefix, record.tier, record.deadline,
                                           record.lead, record.hold, record.created)))

    def remove_preload(self, prefix: str, tier: str | None = None) -> int:
        sql, args = "DELETE FROM preloads WHERE prefix = ?", [prefix]
        if tier is not None:
            sql, args = sql + " AND tier = ?", [*args, tier]
        return self._write(lambda tx: tx.execute(sql, args).rowcount)

    def remove_expired_preloads(self, now: float) -> int:
        return self._write(lambda tx: tx.execute(
            "DELETE FROM preloads WHERE deadline + hold <= ?", (now,)).rowcount)


def _now() -> float:
    """The writer's clock: when it recorded a change (leases go by the catalog's)."""
    return time.time()


def _marks(values: Collection[Any]) -> str:
    """``(?, ?, ...)``, one placeholder per value."""
    return f"({', '.join('?' * len(values))})"


def _batches(values: Sequence[T], size: int = BATCH) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _replica(row: Sequence[Any], version: str | None = None) -> Replica:
    rid, tier, path, state, tmp, owner, updated = row
    return Replica(rid, tier, path, ReplicaState(state), tmp, owner, updated, version)


def _sorted(rows: Iterable[Sequence[Any]]) -> list[Replica]:
    """Replicas from rows of their columns, by id."""
    return sorted((_replica(row) for row in rows), key=lambda r: r.id)


def _records(rows: list[tuple[Any, ...]]) -> list[ObjectRecord]:
    """Objects from rows of (object columns, replica columns or NULLs), in key order."""
    out: list[ObjectRecord] = []
    replicas: list[Replica] = []
    for i, row in enumerate(rows):
        if row[6] is not None:
            replicas.append(_replica(row[6:13], version=row[13]))
        if i + 1 == len(rows) or rows[i + 1][0] != row[0]:
            out.append(ObjectRecord(row[1], row[2], row[3], row[4], row[5], tuple(replicas)))
            replicas = []
    return out
