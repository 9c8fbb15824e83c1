"""Per-process machinery of a reader: one asyncio loop in a daemon thread, and the store
opened on it. Both are created on first use in each process and re-created in a forked
DataLoader worker (which inherits the parent's objects but not its threads); nothing here is
ever pickled."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import logging
import os
import pickle
import threading
from collections.abc import Callable, Coroutine
from multiprocessing import util as mp_util
from typing import Any, ClassVar, TypeVar

from tierstore.config import Config
from tierstore.store import Store

from .buffers import ShardBuffers

__all__ = ["LoopThread", "StoreHandle", "share_arenas", "trim_heap"]

log = logging.getLogger(__name__)
T = TypeVar("T")
BLOCKS_KEPT = 2  # idle block buffers a process keeps for the next blocks
WORKER_ARENAS = 2  # malloc arenas the threads of a DataLoader worker share (glibc)
_M_ARENA_MAX = -8  # glibc's mallopt parameter


def share_arenas(arenas: int = WORKER_ARENAS) -> None:
    """Let this process's threads share at most ``arenas`` malloc arenas from now on (glibc's
    ``M_ARENA_MAX``; where the C library has no ``mallopt``, nothing).

    glibc gives each thread that allocates an arena of its own, up to 8 per core, and an
    arena keeps what it grew to. A worker's threads (the loader loop, the readers of due
    samples, the fill's writer) each kept a few MiB of samples long freed; sharing two arenas
    took the peak PSS of the full-cache Ceph run from 593 to 569 MiB, at the same samples/s.
    This limits the arenas made from now on: a forked worker's threads first take the arenas
    it inherited (free in the child), as many as its parent had made. Called in DataLoader
    workers only: the training process's allocator is its own."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, arenas)


def trim_heap() -> None:
    """Give the memory the allocator holds free back to the system (glibc's
    ``malloc_trim``; elsewhere nothing).

    A persistent worker's heap stays as large as its busiest moment made it: the samples a
    reader held for its shuffle buffer (all of a shard's that had no hot copy to be read back
    from), batches being collated. Trimmed at the start of each pass, the next pass starts
    from what is in use: the full-cache Ceph run's second epoch peaked at 510-516 MiB of PSS
    instead of 522-544, and one trim per pass costs nothing measurable."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


class LoopThread:
    """The process's loader loop: an asyncio loop running forever in a daemon thread."""

    _current: ClassVar[LoopThread | None] = None
    _inherited: ClassVar[list[LoopThread]] = []  # kept, never used: see get()
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _lock_pid: ClassVar[int] = os.getpid()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._stores: dict[bytes, Store] = {}
        self._stores_lock = threading.Lock()
        self.buffers = ShardBuffers()  # whole shards' memory, reused (used on the loop)
        self.blocks = ShardBuffers(keep=BLOCKS_KEPT)  # parted shards' blocks, the same
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever,
                                       name="tierstore-loader-io", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> LoopThread:
        """This process's loop thread, started on first use (and again after a fork)."""
        if cls._lock_pid != os.getpid():  # the parent's lock may have been held at the fork
            cls._lock, cls._lock_pid = threading.Lock(), os.getpid()
        with cls._lock:
            current = cls._current
            if current is None or current.pid != os.getpid():
                if current is not None:  # the parent's, forked: its thread is not here, and
                    cls._inherited.append(current)  # collecting it would tear down copies
                    # of the parent's client sessions from here (aiohttp warns of each)
                current = cls._current = cls()
            return current

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop; refuses to be called from the loop itself (it would
        deadlock whoever waits on the result)."""
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("submit() called from the loader's own loop thread")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def store(self, config: Config) -> Store:
        """The store of ``config`` in this process, opened on this loop once and shared by
        every dataset over the same configuration; closed when the process exits (a
        DataLoader worker skips ``atexit``, so through multiprocessing's finalizers)."""
        key = pickle.dumps(config)
        with self._stores_lock:
            store = self._stores.get(key)
            if store is None:
                store = self.submit(Store.connect(config, recover=False)).result()
                mp_util.Finalize(self, _close, args=(self, store), exitpriority=10)
                self._stores[key] = store
            return store

    def flush_access(self) -> None:
        """Write the access statistics this process's stores have noted, now, from this
        thread.

        A store notes reads in memory and a background thread writes them to the catalog a
        second later. A process forked while that thread is inside SQLite inherits SQLite's
        locks held, and the child hangs the first time it opens the catalog; so a reader
        flushes before DataLoader workers are forked, leaving that thread nothing to write.
        """
        with self._stores_lock:
            stores = list(self._stores.values())
        for store in stores:
            store.recorder.flush()


class StoreHandle:
    """The store a reader reads through, opened lazily once per process on the loop thread.

    A store handed in by the caller is used as is in the process that created the handle; a
    forked or spawned worker uses its process's store of the same configuration.
    """

    def __init__(self, config: Config, store: Store | None = None):
        self.config = config
        self._store = store
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    def get(self) -> Store:
        if self._pid != os.getpid():
            self._store, self._pid = None, os.getpid()
        if self._store is None:
            self._store = LoopThread.get().store(self.config)
        return self._store


def _close(loop: LoopThread, store: Store) -> None:
    try:
        loop.submit(store.close()).result(timeout=5)
    except Exception as exc:  # exiting anyway; the statistics are best effort
        log.debug("closing the loader's store at exit: %s", exc)
