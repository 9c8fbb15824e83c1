"""Batched access recording: a read notes its key in memory and never waits on the catalog.

A background thread merges the notes into the catalog every ``interval`` seconds (and when
``max_pending`` keys are waiting, and at close), so a loader doing thousands of reads a second
costs the catalog one transaction a second.

A process that forks (a DataLoader starting its workers) waits for a flush in progress to
finish first (:func:`os.register_at_fork`): a child forked while the thread was inside SQLite
would inherit SQLite's locks held by a thread it does not have, and hang in its first
``sqlite3.connect``. The child starts each recorder afresh: new locks (one may have been held
by a parent's thread that is not in the child), no thread, and none of the parent's notes
(the parent flushes those).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref

from .catalog import Catalog

__all__ = ["AccessRecorder"]

log = logging.getLogger(__name__)
_RECORDERS: weakref.WeakSet[AccessRecorder] = weakref.WeakSet()
_FORKING: list[AccessRecorder] = []  # recorders whose catalog lock a fork holds


def _before_fork() -> None:
    _FORKING[:] = list(_RECORDERS)
    for recorder in _FORKING:
        recorder._in_catalog.acquire()


def _after_fork_in_parent() -> None:
    for recorder in _FORKING:
        recorder._in_catalog.release()
    _FORKING.clear()


def _after_fork_in_child() -> None:
    for recorder in _FORKING:
        recorder._forked()
    _FORKING.clear()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


class AccessRecorder:
    """Collects reads per key and flushes them to a catalog in batches."""

    def __init__(self, catalog: Catalog, *, interval: float = 1.0, max_pending: int = 10_000,
                 site: str | None = None):
        self.catalog = catalog
        self.site = site  # where the reads happen: they count for that site's statistics too
        self.interval = interval
        self.max_pending = max_pending
        self._pending: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._in_catalog = threading.Lock()  # held while a batch is written; forks wait on it
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        ref = weakref.ref(self)

        def close_at_exit() -> None:
            recorder = ref()
            if recorder is not None:
                recorder.close()

        atexit.register(close_at_exit)
        _RECORDERS.add(self)

    def record(self, key: str, now: float | None = None) -> None:
        """Note one read of ``key``: a dictionary update, no I/O."""
        at = time.time() if now is None else now
        with self._lock:
            count, _ = self._pending.get(key, (0, at))
            self._pending[key] = (count + 1, at)
            full = len(self._pending) >= self.max_pending
        self._ensure_thread()
        if full:
            self._wake.set()

    def _forked(self) -> None:
        """Start afresh in a forked child: the parent's thread and notes are not ours, and
        a lock the parent's threads held at the fork would stay held for ever."""
        self._pid, self._thread, self._pending = os.getpid(), None, {}
        self._lock, self._in_catalog = threading.Lock(), threading.Lock()
        self._wake = threading.Event()

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._run, name="tierstore-access",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Merge what is pending into the catalog now; on failure keep it for the next try."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            with self._in_catalog:
                self.catalog.record_access(batch, site=self.site)
        except Exception as exc:  # a busy or vanished catalog must never fail a read
            log.warning("access statistics not recorded yet (%d keys): %s", len(batch), exc)
            with self._lock:
                for key, (count, at) in batch.items():
                    old_count, old_at = self._pending.get(key, (0, at))
                    self._pending[key] = (count + old_count, max(at, old_at))

    def close(self) -> None:
        """Flush and stop the background thread."""
        self._stopped = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None
        if os.getpid() == self._pid:
            self.flush()
