"""Blocking wrappers: each method runs the async store's coroutine on fsspec's IO thread.

Calling them from inside that loop would deadlock, so fsspec's ``sync`` refuses it; async code
uses :class:`~tierstore.store.Store` directly (``SyncStore.aio``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from fsspec.asyn import get_loop, sync

from .catalog import PreloadRecord
from .config import Config
from .files import ObjectReader, ObjectWriter
from .store import (
    AdoptReport,
    AuditReport,
    ObjectInfo,
    RecoveryReport,
    SiteHolding,
    Source,
    Store,
    TierReport,
)

__all__ = ["SyncStore", "open_store"]
T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    async def wrapped() -> T:
        return await coro

    result: T = sync(get_loop(), wrapped)
    return result


class SyncStore:
    """The store for blocking code; see :class:`~tierstore.store.Store` for each method."""

    def __init__(self, store: Store):
        self.aio = store

    def __repr__(self) -> str:
        return f"Sync{self.aio!r}"

    @property
    def config(self) -> Config:
        return self.aio.config

    def __enter__(self) -> SyncStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        _run(self.aio.close())

    def put(self, key: str, source: Source, *, tier: str | None = None,
            overwrite: bool = False) -> ObjectInfo:
        return _run(self.aio.put(key, source, tier=tier, overwrite=overwrite))

    def cat(self, key: str, start: int | None = None, end: int | None = None, *,
            verify: bool | None = None) -> bytes:
        return _run(self.aio.cat(key, start, end, verify=verify))

    def get(self, key: str, local_path: str | os.PathLike[str]) -> None:
        _run(self.aio.get(key, local_path))

    def open(self, key: str, mode: str = "rb", *, tier: str | None = None
             ) -> io.BufferedReader | ObjectWriter:
        """A seekable binary reader (``rb``) or a writer that commits on close (``wb``)."""
        if mode == "rb":
            info = self.stat(key)
            return io.BufferedReader(ObjectReader(self, info.key, info.size),
                                     buffer_size=1 << 20)
        if mode == "wb":
            return ObjectWriter(self, key, tier=tier)
        raise ValueError(f"mode must be 'rb' or 'wb', not {mode!r}")

    def stat(self, key: str) -> ObjectInfo:
        return _run(self.aio.stat(key))

    def exists(self, key: str) -> bool:
        return _run(self.aio.exists(key))

    def find(self, prefix: str = "") -> list[str]:
        return _run(self.aio.find(prefix))

    def ls(self, path: str = "") -> list[dict[str, Any]]:
        return _run(self.aio.ls(path))

    def rm(self, key: str) -> None:
        _run(self.aio.rm(key))

    def move(self, key: str, tier: str) -> ObjectInfo:
        return _run(self.aio.move(key, tier))

    def add_replica(self, key: str, tier: str) -> ObjectInfo:
        return _run(self.aio.add_replica(key, tier))

    def drop_replica(self, key: str, tier: str) -> ObjectInfo:
        return _run(self.aio.drop_replica(key, tier))

    def pin(self, key: str, tier: str | None = None) -> ObjectInfo:
        return _run(self.aio.pin(key, tier))

    def unpin(self, key: str) -> ObjectInfo:
        return _run(self.aio.unpin(key))

    def announce(self, reader: str, uses: Mapping[str, float], *, ttl: float = 3600.0
                 ) -> None:
        _run(self.aio.announce(reader, uses, ttl=ttl))

    def schedule_preload(self, prefix: str, tier: str, deadline: float, *,
                         lead: float | None = None, hold: float = 86400.0) -> PreloadRecord:
        return _run(self.aio.schedule_preload(prefix, tier, deadline, lead=lead, hold=hold))

    def preloads(self) -> list[PreloadRecord]:
        return _run(self.aio.preloads())

    def cancel_preload(self, prefix: str, tier: str | None = None) -> int:
        return _run(self.aio.cancel_preload(prefix, tier))

    def usage(self) -> list[TierReport]:
        return _run(self.aio.usage())

    def locate(self, prefix: str = "") -> list[SiteHolding]:
        return _run(self.aio.locate(prefix))

    def recover(self) -> RecoveryReport:
        return _run(self.aio.recover())

    def audit(self, *, deep: bool = False) -> AuditReport:
        return _run(self.aio.audit(deep=deep))

    def adopt(self, prefix: str, tier: str, *, jobs: int = 8) -> AdoptReport:
        return _run(self.aio.adopt(prefix, tier, jobs=jobs))


def open_store(config: Config | str | os.PathLike[str] | None = None, *,
               recover: bool = True) -> SyncStore:
    """Open a store for blocking code: the config's tiers and catalog, with interrupted work
    of dead processes recovered. ``config`` is a :class:`Config`, a TOML path, or None for
    ``$TIERSTORE_CONFIG`` / ``$TIERSTORE_HOME`` / the embedded default."""
    return SyncStore(_run(Store.connect(config, recover=recover)))
