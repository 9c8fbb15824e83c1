"""tierstore's own paths: a ``tier://`` key through the store (best replica, failover, access
recording: what a training job's reads go through), or a configured tier by name through
its :class:`~tierstore.tier.Tier` object (the raw tier, no catalog).

A benchmark leaves a store as it found it: objects it had to create to read, and every
object its writes created (named ``<file>_<offset>_<len>``, like fio's S3 engine), are
removed after the run. On a tier, the files live under ``.tierstore/bench/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from tierstore.config import Config, load_config
from tierstore.errors import ObjectNotFound, TierstoreError
from tierstore.keys import RESERVED_PREFIX
from tierstore.redaction import redact
from tierstore.store import Store
from tierstore.tier import Tier

from ..common.errors import TargetError
from .target import Target, filler

__all__ = ["StoreTarget", "TierTarget"]

BENCH_DIR = f"{RESERVED_PREFIX}/bench"


async def _stream(size: int) -> AsyncIterator[bytes]:
    for chunk in filler(size):
        yield chunk


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


class _Written:
    """Names of objects the writes created, removed when the job closes."""

    def __init__(self) -> None:
        self.names: set[str] = set()


class StoreTarget(Target):
    """Keys of the store, read and written through its read and write paths."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.keys = [p.removeprefix("tier://").lstrip("/") for p in self.paths]
        self._created: list[str] = []
        self._store: Store | None = None
        self._written = _Written()

    def _config(self) -> Config:
        return load_config(self.options.config)

    async def _connect(self) -> Store:
        try:
            return await Store.connect(self._config(), recover=False)
        except TierstoreError:
            raise
        except Exception as exc:
            raise TargetError(f"cannot open the store: {exc}") from exc

    async def existing_size(self, index: int) -> int | None:
        store = await self._connect()
        try:
            return (await store.stat(self.keys[index])).size
        except ObjectNotFound:
            return None
        finally:
            await store.close()

    async def layout(self, size: int, *, fill: bool) -> None:
        if not fill:
            return
        store = await self._connect()
        try:
            for key in self.keys:
                if await store.exists(key) and (await store.stat(key)).size >= size:
                    continue
                await store.put(key, _stream(size), overwrite=True)
                self._created.append(key)
        finally:
            await store.close()

    async def cleanup(self) -> None:
        if not (self._created or self.options.unlink):
            return
        store = await self._connect()
        try:
            for key in self._created or self.keys:
                await store.rm(key)
        finally:
            await store.close()

    async def open(self) -> None:
        self._store = await self._connect()

    async def read(self, index: int, offset: int, length: int) -> int:
        assert self._store is not None
        return len(await self._store.cat(self.keys[index], offset, offset + length))

    async def write(self, index: int, offset: int, data: memoryview) -> int:
        assert self._store is not None
        key = f"{self.keys[index]}_{offset}_{len(data)}"
        await self._store.put(key, bytes(data), overwrite=True)
        self._written.names.add(key)
        return len(data)

    async def close(self) -> None:
        if self._store is None:
            return
        try:
            for key in sorted(self._written.names):
                await self._store.rm(key)
        finally:
            await self._store.close()
            self._store = None

    def describe(self) -> dict[str, Any]:
        config = self._config()
        return {"kind": "store", "files": self.paths, "config": config.source,
                "tiers": {name: redact(t.url) for name, t in config.tiers.items()}}


class TierTarget(Target):
    """Files under ``.tierstore/bench/`` of one configured tier, through its Tier object."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.files = [f"{BENCH_DIR}/{p.lstrip('/')}" for p in self.paths]
        self._tier: Tier | None = None
        self._written = _Written()

    def _make_tier(self) -> Tier:
        config = load_config(self.options.config)
        return Tier(config.tier(str(self.options.tier)))

    async def _with_tier(self, work: Any) -> Any:
        tier = self._make_tier()
        try:
            return await work(tier)
        finally:
            await tier.close()

    async def existing_size(self, index: int) -> int | None:
        async def size(tier: Tier) -> int | None:
            return await tier.size(self.files[index])

        found: int | None = await self._with_tier(size)
        return found

    async def layout(self, size: int, *, fill: bool) -> None:
        if not fill:  # writes create objects of their own
            return

        async def lay(tier: Tier) -> None:
            for path in self.files:
                have = await tier.size(path)
                if have is None or have < size:
                    await tier.write(path, _stream(size))

        await self._with_tier(lay)

    async def cleanup(self) -> None:
        async def remove(tier: Tier) -> None:
            for path in self.files:
                await tier.remove(path)

        await self._with_tier(remove)

    async def open(self) -> None:
        self._tier = self._make_tier()

    async def read(self, index: int, offset: int, length: int) -> int:
        assert self._tier is not None
        return len(await self._tier.read(self.files[index], offset, offset + length))

    async def write(self, index: int, offset: int, data: memoryview) -> int:
        assert self._tier is not None
        path = f"{self.files[index]}_{offset}_{len(data)}"
        self._written.names.add(path)
        return await self._tier.write(path, _one(bytes(data)))

    async def close(self) -> None:
        if self._tier is None:
            return
        try:
            await asyncio.gather(*(self._tier.remove(p) for p in sorted(self._written.names)))
        finally:
            await self._tier.close()
            self._tier = None

    def describe(self) -> dict[str, Any]:
        tier = self._make_tier()
        return {"kind": "tier", "tier": tier.name, "class": tier.tier_class.name.lower(),
                "url": redact(tier.config.url), "files": self.files,
                "storage_options": redact(tier.config.options)}
