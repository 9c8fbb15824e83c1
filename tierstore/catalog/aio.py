"""The catalog's async face: what code on an event loop calls instead of the catalog itself.

Every :class:`~tierstore.catalog.Catalog` method blocks (a transaction; on PostgreSQL a network
round trip), so a coroutine that called one directly would stall every other task on its loop.
:class:`AsyncCatalog` has the methods the store's coroutines use, with the catalog's names,
arguments and results, each awaited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from .base import (
    AccessStats,
    Catalog,
    Fence,
    Lease,
    ObjectRecord,
    PreloadRecord,
    Replica,
    TierUsage,
)

__all__ = ["AsyncCatalog"]

T = TypeVar("T")


class AsyncCatalog:
    """A catalog's methods as coroutines, none of which blocks the event loop.

    The rule: every call runs in a worker thread (:func:`asyncio.to_thread`), except a point
    lookup (:meth:`get`) on a catalog whose reads never wait
    (:attr:`Catalog.inline_reads <tierstore.catalog.Catalog.inline_reads>`: SQLite in WAL
    mode, a local file whose readers never wait on its writer). That one runs inline: it
    takes tens of microseconds, less than the hop to a thread and back.

    Code off the loop (a loader's worker threads, a snapshot read in a thread) calls the
    catalog itself.

    Parameters
    ----------
    catalog : Catalog
        The catalog every call goes to.
    """

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def __repr__(self) -> str:
        return f"AsyncCatalog({self.catalog!r})"

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, key: str) -> ObjectRecord | None:
        """:meth:`Catalog.get <tierstore.catalog.Catalog.get>`, inline where reads never
        wait."""
        if self.catalog.inline_reads:
            return self.catalog.get(key)
        return await self._call(self.catalog.get, key)

    async def records(self, keys: Sequence[str]) -> dict[str, ObjectRecord]:
        """:meth:`Catalog.records <tierstore.catalog.Catalog.records>`."""
        return await self._call(self.catalog.records, keys)

    async def folders(self, keys: Sequence[str]) -> list[str]:
        """:meth:`Catalog.folders <tierstore.catalog.Catalog.folders>`."""
        return await self._call(self.catalog.folders, keys)

    async def objects(self, prefix: str = "", *, after: str = "", limit: int | None = None
                      ) -> list[ObjectRecord]:
        """:meth:`Catalog.objects <tierstore.catalog.Catalog.objects>`."""
        return await self._call(self.catalog.objects, prefix, after=after, limit=limit)

    async def access(self, keys: list[str], *, site: str | None = None
                     ) -> dict[str, AccessStats]:
        """:meth:`Catalog.access <tierstore.catalog.Catalog.access>`."""
        return await self._call(self.catalog.access, keys, site=site)

    async def usage(self, *, exclude_owner: str = "") -> list[TierUsage]:
        """:meth:`Catalog.usage <tierstore.catalog.Catalog.usage>`."""
        return await self._call(self.catalog.usage, exclude_owner=exclude_owner)

    async def pending(self) -> list[tuple[str, Replica]]:
        """:meth:`Catalog.pending <tierstore.catalog.Catalog.pending>`."""
        return await self._call(self.catalog.pending)

    async def next_uses(self, now: float, *, site: str | None = None) -> dict[str, float]:
        """:meth:`Catalog.next_uses <tierstore.catalog.Catalog.next_uses>`."""
        return await self._call(self.catalog.next_uses, now, site=site)

    async def preloads(self) -> list[PreloadRecord]:
        """:meth:`Catalog.preloads <tierstore.catalog.Catalog.preloads>`."""
        return await self._call(self.catalog.preloads)

    async def adoptions(self) -> list[tuple[str, str, bool]]:
        """:meth:`Catalog.adoptions <tierstore.catalog.Catalog.adoptions>`."""
        return await self._call(self.catalog.adoptions)

    async def clock(self) -> float:
        """:meth:`Catalog.clock <tierstore.catalog.Catalog.clock>`."""
        return await self._call(self.catalog.clock)

    async def leases(self) -> list[Lease]:
        """:meth:`Catalog.leases <tierstore.catalog.Catalog.leases>`."""
        return await self._call(self.catalog.leases)

    # -- the replica life ----------------------------------------------------------------------

    async def begin_replica(self, key: str, tier: str, *, tmp: str, new_content: bool,
                            owner: str, fence: Fence | None = None) -> Replica:
        """:meth:`Catalog.begin_replica <tierstore.catalog.Catalog.begin_replica>`."""
        return await self._call(self.catalog.begin_replica, key, tier, tmp=tmp,
                                new_content=new_content, owner=owner, fence=fence)

    async def begin_replicas(self, writes: Sequence[tuple[str, str]], tier: str, *,
                             new_content: bool, owner: str, fence: Fence | None = None
                             ) -> list[Replica]:
        """:meth:`Catalog.begin_replicas <tierstore.catalog.Catalog.begin_replicas>`."""
        return await self._call(self.catalog.begin_replicas, writes, tier,
                                new_content=new_content, owner=owner, fence=fence)

    async def commit_replica(self, replica_id: int, *, owner: str, size: int, checksum: str,
                             new_content: bool, retire: Collection[str] = (),
                             fence: Fence | None = None) -> list[Replica]:
        """:meth:`Catalog.commit_replica <tierstore.catalog.Catalog.commit_replica>`."""
        return await self._call(self.catalog.commit_replica, replica_id, owner=owner,
                                size=size, checksum=checksum, new_content=new_content,
                                retire=retire, fence=fence)

    async def commit_replicas(self, commits: Sequence[tuple[int, int, str]], *, owner: str,
                              new_content: bool, retire: Collection[str] = (),
                              fence: Fence | None = None) -> list[list[Replica]]:
        """:meth:`Catalog.commit_replicas <tierstore.catalog.Catalog.commit_replicas>`."""
        return await self._call(self.catalog.commit_replicas, commits, owner=owner,
                                new_content=new_content, retire=retire, fence=fence)

    async def mark_deleting(self, replica_id: int, *, owner: str, fence: Fence | None = None
                            ) -> Replica:
        """:meth:`Catalog.mark_deleting <tierstore.catalog.Catalog.mark_deleting>`."""
        return await self._call(self.catalog.mark_deleting, replica_id, owner=owner,
                                fence=fence)

    async def begin_delete(self, key: str, *, owner: str) -> list[Replica]:
        """:meth:`Catalog.begin_delete <tierstore.catalog.Catalog.begin_delete>`."""
        return await self._call(self.catalog.begin_delete, key, owner=owner)

    async def forget_replica(self, replica: Replica) -> bool:
        """:meth:`Catalog.forget_replica <tierstore.catalog.Catalog.forget_replica>`."""
        return await self._call(self.catalog.forget_replica, replica)

    async def take_over(self, replica: Replica, owner: str) -> Replica | None:
        """:meth:`Catalog.take_over <tierstore.catalog.Catalog.take_over>`."""
        return await self._call(self.catalog.take_over, replica, owner)

    async def set_pin(self, key: str, tier: str | None) -> None:
        """:meth:`Catalog.set_pin <tierstore.catalog.Catalog.set_pin>`."""
        await self._call(self.catalog.set_pin, key, tier)

    # -- adoption, announcements, pre-loads ----------------------------------------------------

    async def add_objects(self, objects: Iterable[tuple[str, int, str]], tier: str, *,
                          owner: str, versions: Mapping[str, str] | None = None) -> int:
        """:meth:`Catalog.add_objects <tierstore.catalog.Catalog.add_objects>`."""
        return await self._call(self.catalog.add_objects, objects, tier, owner=owner,
                                versions=versions)

    async def add_adoption(self, tier: str, prefix: str, *, whole: bool) -> None:
        """:meth:`Catalog.add_adoption <tierstore.catalog.Catalog.add_adoption>`."""
        await self._call(self.catalog.add_adoption, tier, prefix, whole=whole)

    async def readopt(self, replica_id: int, *, owner: str, size: int, checksum: str,
                      version: str) -> list[Replica]:
        """:meth:`Catalog.readopt <tierstore.catalog.Catalog.readopt>`."""
        return await self._call(self.catalog.readopt, replica_id, owner=owner, size=size,
                                checksum=checksum, version=version)

    async def announce(self, reader: str, uses: Mapping[str, float], *, expires: float,
                       site: str | None = None) -> None:
        """:meth:`Catalog.announce <tierstore.catalog.Catalog.announce>`."""
        await self._call(self.catalog.announce, reader, uses, expires=expires, site=site)

    async def add_preload(self, record: PreloadRecord) -> None:
        """:meth:`Catalog.add_preload <tierstore.catalog.Catalog.add_preload>`."""
        await self._call(self.catalog.add_preload, record)

    async def remove_preload(self, prefix: str, tier: str | None = None) -> int:
        """:meth:`Catalog.remove_preload <tierstore.catalog.Catalog.remove_preload>`."""
        return await self._call(self.catalog.remove_preload, prefix, tier)

    async def remove_expired_preloads(self, now: float) -> int:
        """:meth:`Catalog.remove_expired_preloads
        <tierstore.catalog.Catalog.remove_expired_preloads>`."""
        return await self._call(self.catalog.remove_expired_preloads, now)
