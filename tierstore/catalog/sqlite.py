"""The embedded catalog: SQLite in WAL mode, one file per store.

WAL lets one writer (a daemon, a put) and many readers (loader processes) work at once; each
thread opens its own connection and a forked child opens fresh ones. Write transactions are
``BEGIN IMMEDIATE`` so concurrent writers queue on the busy timeout instead of failing
half-way. The transactions themselves are :mod:`.sql`'s, shared with PostgreSQL.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..errors import CatalogError, ReplicaError
from .base import DEFAULT_HALF_LIFE
from .sql import SCHEMA_VERSION, Dialect, SqlCatalog, Statements, migrations

__all__ = ["SqliteCatalog"]

T = TypeVar("T")
DIALECT = Dialect(
    "sqlite", now="((julianday('now') - 2440587.5) * 86400.0)", lock=None, share="", arrays=False,
    types={"id": "INTEGER PRIMARY KEY", "int": "INTEGER", "real": "REAL", "bool": "INTEGER",
           "key": "TEXT"})
MIGRATIONS = migrations(DIALECT)
# What a unique index refusing a row is called (a replica path or a ready replica taken).
_UNIQUE_VIOLATIONS = {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}
CLOSE_WAIT = 30.0  # seconds close() waits for the methods under way in other threads


class SqliteCatalog(SqlCatalog):
    """A catalog in one SQLite file (``sqlite:///path/to/catalog.db``)."""

    schema_version = SCHEMA_VERSION
    dialect = DIALECT
    # A local file in WAL mode: its readers never wait on the writer, and a point lookup takes
    # tens of microseconds, less than the hop to a thread (without WAL, see _conn, they wait).
    inline_reads = True

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
                    self.inline_reads = False  # and its readers wait on the writer
                conn.execute("PRAGMA foreign_keys=ON")
                # what the shared SQL calls that SQLite may lack (math functions are optional)
                conn.create_function("greatest", -1, max, deterministic=True)
                conn.create_function("power", 2, math.pow, deterministic=True)
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
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for the reads of one method (each statement its own snapshot)."""
        with self._translated("a read"), self._using() as conn:
            yield conn

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._reading() as conn:
            return conn.execute(sql, args).fetchall()

    @contextmanager
    def _writing(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
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

    def _write(self, body: Callable[[Statements], T], *, durable: bool = False) -> T:
        with self._writing(durable=durable) as conn:
            return body(conn)

    def schema_versions(self) -> tuple[int, int]:
        if not self.path.exists():  # never created: looking must not create it
            return 0, SCHEMA_VERSION
        with self._reading() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        return int(version), SCHEMA_VERSION

    def migrate(self) -> list[int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._writing() as conn:
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
