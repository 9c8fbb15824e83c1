"""The embedded catalog: SQLite in WAL mode, one file per store.

WAL lets one writer (a daemon, a put) and many readers (loader processes) work at once; each
thread opens its own connection and a forked child opens fresh ones. Write transactions are
``BEGIN IMMEDIATE`` so concurrent writers queue on the busy timeout instead of failing
half-way.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ..errors import CatalogError, CopyInFlight, ObjectNotFound, ReplicaError, ReplicaReady
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
    fence_holds,
    lease_upsert,
    take_over_sql,
    usage_sql,
)

__all__ = ["SqliteCatalog"]

_LEASE_UPSERT = lease_upsert("?")
_FENCE_HOLDS = fence_holds("?", "?")
_TAKE_OVER = take_over_sql("?")
# What a unique index refusing a row is called (a replica path or a ready replica taken).
_UNIQUE_VIOLATIONS = {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}
CLOSE_WAIT = 30.0  # seconds close() waits for the methods under way in other threads

# Each entry upgrades the schema from version i to i + 1.
MIGRATIONS = [
    """
    CREATE TABLE objects (
        id       INTEGER PRIMARY KEY,
        key      TEXT NOT NULL UNIQUE,
        size     INTEGER,
        checksum TEXT,
        created  REAL NOT NULL,
        pinned   TEXT
    );
    CREATE TABLE replicas (
        id        INTEGER PRIMARY KEY,
        object_id INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
        tier      TEXT NOT NULL,
        path      TEXT NOT NULL,
        state     TEXT NOT NULL CHECK (state IN ('copying', 'ready', 'deleting')),
        tmp       TEXT,
        owner     TEXT NOT NULL,
        updated   REAL NOT NULL
    );
    CREATE INDEX replicas_object ON replicas(object_id);
    CREATE INDEX replicas_state ON replicas(state) WHERE state != 'ready';
    CREATE UNIQUE INDEX replicas_one_ready ON replicas(object_id, tier) WHERE state = 'ready';
    CREATE UNIQUE INDEX replicas_path ON replicas(tier, path);
    CREATE TABLE access (
        object_id   INTEGER PRIMARY KEY REFERENCES objects(id) ON DELETE CASCADE,
        last_access REAL NOT NULL,
        count       INTEGER NOT NULL,
        score       REAL NOT NULL
    );
    """,
    """
    CREATE TABLE next_use (
        reader  TEXT NOT NULL,
        key     TEXT NOT NULL,
        due     REAL NOT NULL,
        expires REAL NOT NULL,
        site    TEXT,
        PRIMARY KEY (reader, key)
    );
    CREATE INDEX next_use_expires ON next_use(expires);
    CREATE TABLE preloads (
        prefix   TEXT NOT NULL,
        tier     TEXT NOT NULL,
        deadline REAL NOT NULL,
        lead     REAL,
        hold     REAL NOT NULL,
        created  REAL NOT NULL,
        PRIMARY KEY (prefix, tier)
    );
    """,
    """
    CREATE TABLE leases (
        name     TEXT PRIMARY KEY,
        holder   TEXT NOT NULL,
        acquired REAL NOT NULL,
        expires  REAL NOT NULL,
        fence    INTEGER NOT NULL
    );
    """,
    """
    CREATE TABLE site_access (
        object_id   INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
        site        TEXT NOT NULL,
        last_access REAL NOT NULL,
        count       INTEGER NOT NULL,
        score       REAL NOT NULL,
        PRIMARY KEY (object_id, site)
    );
    """,
    # Replica ids are never reused (AUTOINCREMENT): a row a process remembers can only ever
    # be its own replica's, never a later replica that took a freed id.
    """
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
    CREATE INDEX replicas_state ON replicas(state) WHERE state != 'ready';
    CREATE UNIQUE INDEX replicas_one_ready ON replicas(object_id, tier) WHERE state = 'ready';
    CREATE UNIQUE INDEX replicas_path ON replicas(tier, path);
    """,
    # Adopted replicas: what the tier said of each file when it was read (see add_objects).
    """
    CREATE TABLE adopted (
        replica_id INTEGER PRIMARY KEY REFERENCES replicas(id) ON DELETE CASCADE,
        version    TEXT NOT NULL
    );
    CREATE TABLE adoptions (
        tier   TEXT NOT NULL,
        prefix TEXT NOT NULL,
        whole  INTEGER NOT NULL,
        PRIMARY KEY (tier, prefix)
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class SqliteCatalog(Catalog):
    """A catalog in one SQLite file (``sqlite:///path/to/catalog.db``)."""

    schema_version = SCHEMA_VERSION

    def __init__(self, path: str | os.PathLike[str], *, half_life: float = DEFAULT_HALF_LIFE,
                 busy_timeout: float = 30.0, migrate: bool = True):
        self.path = Path(path)
        self.half_life = half_life
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._pid = os.getpid()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._busy: dict[sqlite3.Connection, int] = {}  # connections in a method's span now
        self._idle = threading.Condition(self._lock)
        self._log: _LogSync | None = _LogSync(Path(f"{self.path}-wal"))
        if migrate:
            self.migrate()

    @classmethod
    def from_url(cls, url: str, *, migrate: bool = True) -> SqliteCatalog:
        if not url.startswith("sqlite:///"):
            raise CatalogError(f"not a SQLite catalog URL: {url!r} (expected sqlite:///PATH)")
        return cls(url[len("sqlite:///"):], migrate=migrate)

    def __repr__(self) -> str:
        return f"SqliteCatalog({str(self.path)!r})"

    @property
    def location(self) -> str:
        return f"sqlite:///{self.path}"

    # -- connections ---------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:  # a forked child never reuses its parent's connections
            self._pid, self._local, self._all, self._busy = os.getpid(), threading.local(), [], {}
            self._log = _LogSync(Path(f"{self.path}-wal"))
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout,
                                       isolation_level=None, check_same_thread=False)
                (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
                conn.execute("PRAGMA synchronous=NORMAL")
                if str(mode).lower() != "wal":  # a filesystem without shared memory: every
                    conn.execute("PRAGMA synchronous=FULL")  # commit synced by SQLite itself
                    self._log = None
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.DatabaseError as exc:
                raise CatalogError(f"cannot open catalog {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """The one edge where the driver's errors become tierstore's: a unique index refusing
        a row is a replica conflict (as on PostgreSQL), anything else (a corrupt page, a full
        disk, a lock) the catalog failing. Errors of our own pass through unchanged."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            if exc.sqlite_errorname not in _UNIQUE_VIOLATIONS:
                raise CatalogError(f"catalog {self.path}: {doing} failed: {exc}") from exc
            raise ReplicaError(f"conflicts with another replica: {exc}") from exc
        except sqlite3.Error as exc:
            raise CatalogError(f"catalog {self.path}: {doing} failed: {exc}") from exc

    @contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection for the span of one method. :meth:`close` waits for the
        spans under way and never closes a connection in one: a connection closed while
        another thread runs a statement on it is freed under that statement (a segfault,
        seen when a store closed while a reader's claim still ran in a thread)."""
        conn = self._conn()
        with self._lock:
            self._busy[conn] = self._busy.get(conn, 0) + 1
        try:
            yield conn
        finally:
            with self._idle:
                if (left := self._busy.pop(conn, 1) - 1) > 0:
                    self._busy[conn] = left
                else:
                    self._idle.notify_all()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A connection for the reads of one method (each statement its own snapshot)."""
        with self._translated("a read"), self._using() as conn:
            yield conn

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``durable``: its commit is on disk when this returns, for
        the commits after which bytes are removed (the write-ahead log synced after the
        COMMIT, see :class:`_LogSync`); the others may be lost to a power cut, never
        corrupted (``synchronous=NORMAL``: SQLite syncs the log only at checkpoints)."""
        with self._translated("a write"), self._using() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise CatalogError(f"catalog {self.path} is busy: {exc}") from exc
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # SQLite rolls back by itself after some errors
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        if durable and self._log is not None:
            try:
                self._log.sync()
            except OSError as exc:
                raise CatalogError(f"catalog {self.path}: a commit could not be made durable: "
                                   f"{exc}") from exc

    def schema_versions(self) -> tuple[int, int]:
        if not self.path.exists():  # never created: looking must not create it
            return 0, SCHEMA_VERSION
        with self._read() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        return int(version), SCHEMA_VERSION

    def migrate(self) -> list[int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CatalogError(
                    f"catalog {self.path} has schema {version}, newer than this tierstore "
                    f"({SCHEMA_VERSION}); upgrade tierstore")
            for step in MIGRATIONS[version:]:
                for statement in filter(str.strip, step.split(";")):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return list(range(version + 1, SCHEMA_VERSION + 1))

    def close(self) -> None:
        """Close every connection, once no thread is in a method on it (waiting up to
        :data:`CLOSE_WAIT`; one still busy then is left to be closed when it is collected)."""
        with self._idle, self._translated("closing"):
            self._idle.wait_for(lambda: not self._busy, timeout=CLOSE_WAIT)
            for conn in self._all:
                if conn not in self._busy:
                    conn.close()
            self._all = []
        self._local = threading.local()

    # -- reads ----------------------------------------------------------------------------------

    _OBJECT_COLUMNS = "o.id, o.key, o.size, o.checksum, o.created, o.pinned"
    _REPLICA_COLUMNS = "r.id, r.tier, r.path, r.state, r.tmp, r.owner, r.updated"

    def _records(self, conn: sqlite3.Connection, rows: list[tuple]) -> list[ObjectRecord]:
        if not rows:
            return []
        ids = [row[0] for row in rows]
        replicas: dict[int, list[Replica]] = {i: [] for i in ids}
        marks = ",".join("?" * len(ids))
        for row in conn.execute(
                f"SELECT r.object_id, {self._REPLICA_COLUMNS}, a.version FROM replicas r "
                f"LEFT JOIN adopted a ON a.replica_id = r.id "
                f"WHERE r.object_id IN ({marks}) ORDER BY id", ids):
            replicas[row[0]].append(_replica(row[1:8], version=row[8]))
        return [ObjectRecord(key, size, checksum, created, pinned, tuple(replicas[oid]))
                for oid, key, size, checksum, created, pinned in rows]

    def get(self, key: str) -> ObjectRecord | None:
        with self._read() as conn:
            rows = conn.execute(f"SELECT {self._OBJECT_COLUMNS} FROM objects o WHERE key = ?",
                                (key,)).fetchall()
            found = self._records(conn, rows)
        return found[0] if found else None

    def objects(self, prefix: str = "", *, after: str = "", limit: int | None = None
             ) -> list[ObjectRecord]:
        # key >= prefix AND key < prefix + U+10FFFF uses the key index, unlike LIKE.
        sql = (f"SELECT {self._OBJECT_COLUMNS} FROM objects o WHERE key >= ? AND key < ? "
               f"AND key > ? ORDER BY key")
        args: list[object] = [prefix, prefix + "\U0010ffff", after]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        out: list[ObjectRecord] = []
        with self._read() as conn:
            rows = conn.execute(sql, args).fetchall()
            for start in range(0, len(rows), 500):  # bounded IN (...) lists
                out.extend(self._records(conn, rows[start:start + 500]))
        return out

    def pending(self) -> list[tuple[str, Replica]]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT o.key, {self._REPLICA_COLUMNS} FROM replicas r "
                "JOIN objects o ON o.id = r.object_id WHERE r.state != 'ready' ORDER BY r.id"
            ).fetchall()
        return [(row[0], _replica(row[1:])) for row in rows]

    def access(self, keys: list[str], *, site: str | None = None) -> dict[str, AccessStats]:
        out: dict[str, AccessStats] = {}
        table, where = ("access a", "") if site is None else ("site_access a", " AND a.site = ?")
        with self._read() as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                for key, last, count, score in conn.execute(
                        f"SELECT o.key, a.last_access, a.count, a.score FROM {table} JOIN "
                        f"objects o ON o.id = a.object_id WHERE o.key IN "
                        f"({','.join('?' * len(chunk))})" + where,
                        [*chunk, *([] if site is None else [site])]):
                    out[key] = AccessStats(key, last, count, score)
        return out

    def usage(self, *, exclude_owner: str = "") -> list[TierUsage]:
        with self._read() as conn:
            rows = conn.execute(usage_sql("?"), (exclude_owner,)).fetchall()
        return [TierUsage(tier, n, total, flying) for tier, n, total, flying in rows]

    # -- writes ---------------------------------------------------------------------------------

    @staticmethod
    def _check_fence(conn: sqlite3.Connection, fence: Fence | None) -> None:
        if fence is not None and conn.execute(
                _FENCE_HOLDS, (fence.name, fence.fence, time.time())).fetchone() is None:
            raise fence.refuse()

    def begin_replica(self, key: str, tier: str, *, tmp: str, new_content: bool,
                      owner: str, fence: Fence | None = None) -> Replica:
        now = time.time()
        with self._write() as conn:
            self._check_fence(conn, fence)
            conn.execute("INSERT INTO objects (key, created) VALUES (?, ?) "
                         "ON CONFLICT (key) DO NOTHING", (key, now))
            oid, size = conn.execute("SELECT id, size FROM objects WHERE key = ?",
                                     (key,)).fetchone()
            blocking = ("copying",) if new_content else ("copying", "ready")
            busy = conn.execute(
                f"SELECT state FROM replicas WHERE object_id = ? AND tier = ? AND state IN "
                f"({','.join('?' * len(blocking))})", (oid, tier, *blocking)).fetchone()
            if busy is not None:
                error = CopyInFlight if busy[0] == "copying" else ReplicaReady
                raise error(f"{key!r} already has a {busy[0]} replica on tier {tier!r}")
            if not new_content and size is None:
                raise ReplicaError(f"{key!r} has no committed content to copy")
            taken = conn.execute("SELECT 1 FROM replicas WHERE tier = ? AND path = ?",
                                 (tier, key)).fetchone()
            path = tmp if taken else key
            cur = conn.execute(
                "INSERT INTO replicas (object_id, tier, path, state, tmp, owner, updated) "
                "VALUES (?, ?, ?, 'copying', ?, ?, ?)", (oid, tier, path, tmp, owner, now))
            rid = cur.lastrowid
            assert rid is not None
        return Replica(rid, tier, path, ReplicaState.COPYING, tmp, owner, now)

    def _replica(self, conn: sqlite3.Connection, replica_id: int) -> tuple[int, Replica]:
        row = conn.execute(f"SELECT r.object_id, {self._REPLICA_COLUMNS} FROM replicas r "
                           "WHERE r.id = ?", (replica_id,)).fetchone()
        if row is None:
            raise ReplicaError(f"replica {replica_id} does not exist")
        return row[0], _replica(row[1:])

    def commit_replica(self, replica_id: int, *, owner: str, size: int, checksum: str,
                       new_content: bool, retire: Collection[str] = (),
                       fence: Fence | None = None) -> list[Replica]:
        now = time.time()
        superseded: list[Replica] = []
        with self._write(durable=True) as conn:
            self._check_fence(conn, fence)
            oid, replica = self._replica(conn, replica_id)
            check_owned(replica, owner, ReplicaState.COPYING)
            if new_content:
                conn.execute("UPDATE objects SET size = ?, checksum = ? WHERE id = ?",
                             (size, checksum, oid))
                superseded = [
                    _replica((*row[:5], replica.owner, now), state=ReplicaState.DELETING)
                    for row in conn.execute(
                        f"SELECT {self._REPLICA_COLUMNS} FROM replicas r WHERE r.object_id = ? "
                        "AND r.id != ? AND r.state = 'ready'", (oid, replica_id)).fetchall()]
                conn.execute("UPDATE replicas SET state = 'deleting', owner = ?, updated = ? "
                             "WHERE object_id = ? AND id != ? AND state = 'ready'",
                             (replica.owner, now, oid, replica_id))
            else:
                current = conn.execute(
                    "SELECT o.size, o.checksum, (SELECT COUNT(*) FROM replicas r WHERE "
                    "r.object_id = o.id AND r.state = 'ready') FROM objects o WHERE o.id = ?",
                    (oid,)).fetchone()
                if current is None or tuple(current[:2]) != (size, checksum) or not current[2]:
                    raise ReplicaError("the object was overwritten or removed while it was "
                                       "being copied; the copy is discarded")
                if retire:  # a move's source, in the commit's own transaction
                    superseded = sorted((_replica(row) for row in conn.execute(
                        "UPDATE replicas SET state = 'deleting', owner = ?, updated = ? "
                        "WHERE object_id = ? AND id != ? AND state = 'ready' AND tier IN "
                        f"({','.join('?' * len(retire))}) AND tier IS NOT (SELECT pinned "
                        "FROM objects WHERE id = ?) RETURNING id, tier, path, state, tmp, "
                        "owner, updated", (replica.owner, now, oid, replica_id, *retire, oid)
                    ).fetchall()), key=lambda r: r.id)
            conn.execute("UPDATE replicas SET state = 'ready', tmp = NULL, updated = ? "
                         "WHERE id = ?", (now, replica_id))
        return superseded

    def mark_deleting(self, replica_id: int, *, owner: str, fence: Fence | None = None
                      ) -> Replica:
        now = time.time()
        with self._write(durable=True) as conn:
            self._check_fence(conn, fence)
            oid, replica = self._replica(conn, replica_id)
            if replica.state is not ReplicaState.READY:
                raise ReplicaError(f"replica {replica_id} is {replica.state}, not ready")
            (ready,) = conn.execute("SELECT COUNT(*) FROM replicas WHERE object_id = ? "
                                    "AND state = 'ready'", (oid,)).fetchone()
            if ready <= 1:
                raise ReplicaError(f"tier {replica.tier!r} holds the last ready replica")
            conn.execute("UPDATE replicas SET state = 'deleting', owner = ?, updated = ? "
                         "WHERE id = ?", (owner, now, replica_id))
        return _replica((replica.id, replica.tier, replica.path, "deleting", replica.tmp,
                         owner, now))

    def begin_delete(self, key: str, *, owner: str) -> list[Replica]:
        now = time.time()
        with self._write(durable=True) as conn:
            rows = conn.execute(
                f"SELECT {self._REPLICA_COLUMNS} FROM replicas r JOIN objects o "
                "ON o.id = r.object_id WHERE o.key = ? AND r.state = 'ready'", (key,)).fetchall()
            if not rows:
                raise ObjectNotFound(key)
            conn.executemany("UPDATE replicas SET state = 'deleting', owner = ?, updated = ? "
                             "WHERE id = ?", [(owner, now, row[0]) for row in rows])
        return [_replica((*row[:3], "deleting", row[4], owner, now)) for row in rows]

    def forget_replica(self, replica: Replica) -> bool:
        with self._write() as conn:
            row = conn.execute("DELETE FROM replicas WHERE id = ? AND owner = ? AND state = ? "
                               "RETURNING object_id",
                               (replica.id, replica.owner, str(replica.state))).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM objects WHERE id = ? AND NOT EXISTS "
                         "(SELECT 1 FROM replicas WHERE object_id = ?)", (row[0], row[0]))
        return True

    def take_over(self, replica: Replica, owner: str) -> Replica | None:
        now = time.time()
        with self._write() as conn:
            taken = conn.execute(_TAKE_OVER, (owner, now, replica.id, replica.owner,
                                              str(replica.state), replica.updated)).rowcount
        return dataclasses.replace(replica, owner=owner, updated=now) if taken else None

    def heartbeat(self, replica_ids: list[int], owner: str) -> int:
        if not replica_ids:
            return 0
        with self._write() as conn:
            return conn.execute(
                f"UPDATE replicas SET updated = ? WHERE owner = ? AND state != 'ready' AND id "
                f"IN ({','.join('?' * len(replica_ids))})",
                (time.time(), owner, *replica_ids)).rowcount

    def set_pin(self, key: str, tier: str | None) -> None:
        with self._write() as conn:
            conn.execute("UPDATE objects SET pinned = ? WHERE key = ?", (tier, key))

    def record_access(self, reads: Mapping[str, tuple[int, float]], *,
                      site: str | None = None) -> None:
        if not reads:
            return
        with self._write() as conn:
            self._merge_access(conn, reads, None)
            if site is not None:
                self._merge_access(conn, reads, site)

    def _merge_access(self, conn: sqlite3.Connection, reads: Mapping[str, tuple[int, float]],
                      site: str | None) -> None:
        """Merge ``reads`` into ``access`` (all sites), or into ``site_access`` for ``site``."""
        keys = list(reads)
        table = "access" if site is None else "site_access"
        on = "" if site is None else " AND a.site = ?"
        known: dict[str, tuple[int, float | None, int, float]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            for oid, key, last, count, score in conn.execute(
                    f"SELECT o.id, o.key, a.last_access, a.count, a.score FROM objects o "
                    f"LEFT JOIN {table} a ON a.object_id = o.id{on} "
                    f"WHERE o.key IN ({','.join('?' * len(chunk))})",
                    [*([] if site is None else [site]), *chunk]):
                known[key] = (oid, last, count or 0, score or 0.0)
        rows = []
        for key, (oid, last, count, score) in known.items():
            reads_now, at = reads[key]
            decayed = 0.0 if last is None else score * 0.5 ** (
                max(0.0, at - last) / self.half_life)
            rows.append((oid, max(at, last or at), count + reads_now, decayed + reads_now))
        if site is None:
            conn.executemany(
                "INSERT INTO access (object_id, last_access, count, score) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (object_id) DO UPDATE SET last_access = excluded.last_access, "
                "count = excluded.count, score = excluded.score", rows)
        else:
            conn.executemany(
                "INSERT INTO site_access (object_id, site, last_access, count, score) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (object_id, site) DO UPDATE SET "
                "last_access = excluded.last_access, count = excluded.count, "
                "score = excluded.score", [(oid, site, *rest) for oid, *rest in rows])

    def add_objects(self, objects: Iterable[tuple[str, int, str]], tier: str, *, owner: str,
                    versions: Mapping[str, str] | None = None) -> int:
        now = time.time()
        with self._write() as conn:  # the only writer: new rows are those after the last id
            (last,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM objects").fetchone()
            conn.executemany("INSERT INTO objects (key, size, checksum, created) "
                             "VALUES (?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                             ((key, size, checksum, now) for key, size, checksum in objects))
            added = conn.execute(
                "INSERT INTO replicas (object_id, tier, path, state, tmp, owner, updated) "
                "SELECT id, ?, key, 'ready', NULL, ?, ? FROM objects WHERE id > ? "
                "RETURNING id, path", (tier, owner, now, last)).fetchall()
            if versions:
                conn.executemany("INSERT INTO adopted (replica_id, version) VALUES (?, ?)",
                                 [(rid, versions[path]) for rid, path in added
                                  if path in versions])
            return len(added)

    def add_adoption(self, tier: str, prefix: str, *, whole: bool) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO adoptions (tier, prefix, whole) VALUES (?, ?, ?) "
                         "ON CONFLICT (tier, prefix) DO UPDATE SET whole = max(whole, "
                         "excluded.whole)", (tier, prefix, int(whole)))

    def adoptions(self) -> list[tuple[str, str, bool]]:
        with self._read() as conn:
            return [(tier, prefix, bool(whole)) for tier, prefix, whole in conn.execute(
                "SELECT tier, prefix, whole FROM adoptions ORDER BY tier, prefix")]

    def readopt(self, replica_id: int, *, owner: str, size: int, checksum: str, version: str
                ) -> list[Replica]:
        now = time.time()
        with self._write(durable=True) as conn:
            row = conn.execute(
                "SELECT r.object_id FROM replicas r JOIN adopted a ON a.replica_id = r.id "
                "WHERE r.id = ? AND r.state = 'ready'", (replica_id,)).fetchone()
            if row is None:
                raise ReplicaError(f"replica {replica_id} is not a ready adopted replica")
            (oid,) = row
            conn.execute("UPDATE objects SET size = ?, checksum = ? WHERE id = ?",
                         (size, checksum, oid))
            conn.execute("UPDATE adopted SET version = ? WHERE replica_id = ?",
                         (version, replica_id))
            return sorted((_replica(row) for row in conn.execute(
                "UPDATE replicas SET state = 'deleting', owner = ?, updated = ? WHERE "
                "object_id = ? AND id != ? AND state = 'ready' RETURNING id, tier, path, "
                "state, tmp, owner, updated", (owner, now, oid, replica_id)).fetchall()),
                key=lambda r: r.id)

    # -- leases (one writer at a time: BEGIN IMMEDIATE makes each of these atomic) ----------

    def clock(self) -> float:
        return time.time()

    def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        now = time.time()
        with self._write() as conn:
            row = conn.execute(_LEASE_UPSERT, (name, holder, now, now, ttl)).fetchone()
        return None if row is None else Lease(*row)

    def renew_lease(self, name: str, holder: str, fence: int, ttl: float) -> Lease | None:
        now = time.time()
        with self._write() as conn:
            row = conn.execute(
                "UPDATE leases SET expires = ? WHERE name = ? AND holder = ? AND fence = ? "
                "AND expires > ? RETURNING name, holder, fence, acquired, expires",
                (now + ttl, name, holder, fence, now)).fetchone()
        return None if row is None else Lease(*row)

    def release_lease(self, name: str, holder: str, fence: int) -> bool:
        now = time.time()
        with self._write() as conn:
            return conn.execute(
                "UPDATE leases SET expires = ? WHERE name = ? AND holder = ? AND fence = ? "
                "AND expires > ?", (now, name, holder, fence, now)).rowcount > 0

    def leases(self) -> list[Lease]:
        with self._read() as conn:
            rows = conn.execute("SELECT name, holder, fence, acquired, expires FROM leases "
                                "ORDER BY name").fetchall()
        return [Lease(*row) for row in rows]

    # -- what readers will read next, and scheduled pre-loads --------------------------------

    def announce(self, reader: str, uses: Mapping[str, float], *, expires: float,
                 site: str | None = None) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM next_use WHERE reader = ? OR expires <= ?",
                         (reader, time.time()))
            conn.executemany(
                "INSERT INTO next_use (reader, key, due, expires, site) VALUES (?, ?, ?, ?, ?)",
                [(reader, key, float(due), expires, site) for key, due in uses.items()])

    def next_uses(self, now: float, *, site: str | None = None) -> dict[str, float]:
        sql = "SELECT key, MIN(due) FROM next_use WHERE expires > ?"
        args: list[object] = [now]
        if site is not None:
            sql += " AND site = ?"
            args.append(site)
        with self._read() as conn:
            return dict(conn.execute(sql + " GROUP BY key", args).fetchall())

    def add_preload(self, record: PreloadRecord) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO preloads (prefix, tier, deadline, lead, hold, created) "
                "VALUES (?, ?, ?, ?, ?, ?)", (record.prefix, record.tier, record.deadline,
                                              record.lead, record.hold, record.created))

    def preloads(self) -> list[PreloadRecord]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT prefix, tier, deadline, lead, hold, created FROM preloads "
                "ORDER BY deadline, prefix, tier").fetchall()
        return [PreloadRecord(*row) for row in rows]

    def remove_preload(self, prefix: str, tier: str | None = None) -> int:
        with self._write() as conn:
            cur = conn.execute("DELETE FROM preloads WHERE prefix = ? AND (? IS NULL OR "
                               "tier = ?)", (prefix, tier, tier))
            return cur.rowcount

    def remove_expired_preloads(self, now: float) -> int:
        with self._write() as conn:
            return conn.execute("DELETE FROM preloads WHERE deadline + hold <= ?",
                                (now,)).rowcount


class _LogSync:
    """Group commit: durable commits share fsyncs of the write-ahead log.

    A durable write commits as any other (``synchronous=NORMAL``: SQLite writes the log's
    frames, the commit's last, without syncing them) and then waits until a ``fdatasync`` of
    the log that began after its COMMIT has returned: its frames are on disk then, with every
    frame before them. The write lock is not held meanwhile, so the other threads' writes go
    on, and the commits of threads that arrive while a sync runs share the next one (instead
    of one ``synchronous=FULL`` sync each, taken in turn under the lock). A checkpoint in
    between is no harm: SQLite syncs the log before it copies frames into the database and
    the database before it starts the log over. The log is opened afresh for each sync: its
    file is made anew when the last connection to the database closed it."""

    def __init__(self, path: Path):
        self.path = path
        self._cond = threading.Condition()
        self._committed = 0  # tickets: commits that asked for a sync
        self._synced = 0  # every ticket up to this one is on disk
        self._syncing = False

    def sync(self) -> None:
        """Return once the commits this thread made are on disk."""
        with self._cond:
            self._committed += 1
            ticket = self._committed
            while self._synced < ticket:
                if self._syncing:  # it may have begun before this commit: wait for the next
                    self._cond.wait()
                    continue
                self._syncing, upto = True, self._committed
                try:
                    self._cond.release()
                    try:
                        _fdatasync(self.path)
                    finally:
                        self._cond.acquire()
                    self._synced = max(self._synced, upto)
                finally:
                    self._syncing = False
                    self._cond.notify_all()


def _fdatasync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _replica(row: tuple, state: ReplicaState | None = None, version: str | None = None
             ) -> Replica:
    rid, tier, path, raw_state, tmp, owner, updated = row
    return Replica(rid, tier, path, state or ReplicaState(raw_state), tmp, owner, updated,
                   version)
