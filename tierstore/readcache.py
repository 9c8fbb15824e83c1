"""What the read path falls back on while the catalog cannot be reached.

Each lookup the read path makes (:meth:`Store.cat <tierstore.store.Store.cat>`,
:meth:`Store.get <tierstore.store.Store.get>`) leaves the object's record here, the most
recently read ``size`` of them. When the catalog fails (a PostgreSQL server restarting, a
network blip), a read of an object looked up within the last ``max_age`` seconds goes ahead on
that record instead of failing: its replicas were ready then, and while the catalog is down no
one can commit a change to them (an overwrite, a move and a removal all commit to the
catalog first). A replica removed before the outage began fails its read and the next one is
tried, as after any failed read; whole-object reads of a remembered record are verified
against its checksum. Only reads use it: every write, move and listing still needs the
catalog, and fails clearly without it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from .catalog import ObjectRecord

__all__ = ["KnownRecords"]


class KnownRecords:
    """An LRU of the records of objects read lately, each trusted ``max_age`` seconds after
    the catalog last vouched for it."""

    def __init__(self, size: int = 16_384, max_age: float = 120.0):
        self.size, self.max_age = size, max_age
        self._records: OrderedDict[str, tuple[ObjectRecord, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.served = 0  # reads that went ahead on a remembered record

    def put(self, record: ObjectRecord) -> None:
        """The catalog answered ``record`` just now."""
        with self._lock:
            self._records[record.key] = (record, time.monotonic())
            self._records.move_to_end(record.key)
            while len(self._records) > self.size:
                self._records.popitem(last=False)

    def get(self, key: str) -> ObjectRecord | None:
        """The record of ``key`` if the catalog vouched for it within ``max_age`` seconds."""
        with self._lock:
            found = self._records.get(key)
            if found is None or time.monotonic() - found[1] > self.max_age:
                return None
            self.served += 1
            return found[0]

    def __len__(self) -> int:
        return len(self._records)
