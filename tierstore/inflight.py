"""The replicas this process is working on, and the heartbeat that shows it is alive.

Recovery leaves a pending replica alone while its owner may still be working on it: in this
process, while it is registered here; on this host, while the owner's process runs; from
another host, while the row's ``updated`` time is fresh, which this module's thread refreshes
for every registered replica (:meth:`Catalog.heartbeat`), however long a copy takes.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .catalog import Catalog, Replica

__all__ = ["IN_FLIGHT", "InFlight"]

log = logging.getLogger(__name__)


class InFlight:
    """A registry of (catalog, replica) work in progress, with a heartbeat thread that runs
    while anything is registered."""

    def __init__(self, interval: float = 60.0):
        self.interval = interval
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a child owns none of this work

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._work: dict[int, tuple[Catalog, Replica]] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, catalog: Catalog, replica: Replica) -> int:
        with self._lock:
            token = next(self._tokens)
            self._work[token] = (catalog, replica)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tierstore-heartbeat",
                                                daemon=True)
                self._thread.start()
        return token

    def discard(self, token: int) -> None:
        with self._lock:
            self._work.pop(token, None)

    def holds(self, catalog: Catalog, replica: Replica) -> bool:
        """Whether this process is working on ``replica`` of ``catalog`` now."""
        with self._lock:
            return any(c.location == catalog.location and r.id == replica.id
                       for c, r in self._work.values())

    def beat(self) -> int:
        """Refresh the rows of every registered replica now; how many were refreshed."""
        with self._lock:
            work = list(self._work.values())
        groups: dict[tuple[int, str], tuple[Catalog, list[int]]] = {}
        for catalog, replica in work:
            groups.setdefault((id(catalog), replica.owner), (catalog, []))[1].append(replica.id)
        beaten = 0
        for (_, owner), (catalog, ids) in groups.items():
            try:
                beaten += catalog.heartbeat(ids, owner)
            except Exception as exc:  # a closed or unreachable catalog: the next beat retries
                log.debug("heartbeat of %d replicas failed: %s", len(ids), exc)
        return beaten

    def _run(self) -> None:
        pid = os.getpid()
        event = threading.Event()
        while os.getpid() == pid:
            event.wait(self.interval)
            self.beat()


IN_FLIGHT = InFlight()
