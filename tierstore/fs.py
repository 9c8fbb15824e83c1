"""The ``tier://`` fsspec filesystem: pandas, pyarrow, zarr and ``fsspec.open`` over the store.

Registered by the ``fsspec.specs`` entry point in ``pyproject.toml``. A path is an object key
(``tier://datasets/x.parquet`` is the key ``datasets/x.parquet``); folders are implied by the
``/`` in keys, as on S3. Reads go through the store's read path (best replica, failover, access
recorded); writes through its write path (verified, then committed).
"""

from __future__ import annotations

import asyncio
import errno
import os
import tempfile
from typing import Any

from fsspec.asyn import AsyncFileSystem, _run_coros_in_chunks, get_loop, sync
from fsspec.spec import AbstractBufferedFile, _Cached

from .config import load_config
from .errors import ObjectExists, ObjectNotFound
from .keys import validate_key
from .store import Source, Store
from .sync import SyncStore

__all__ = ["TierFileSystem"]

SPOOL_BYTES = 64 * 2**20  # a file being written stays in memory up to this, then on local disk


class _CachedUnlessEmbedded(_Cached):
    """fsspec caches instances by the text of their arguments. Two store objects over one
    catalog print alike, so an instance made with ``store=`` is never cached: it would hand a
    later caller an earlier (perhaps closed) store."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("store") is not None:
            kwargs["skip_instance_cache"] = True
        return super().__call__(*args, **kwargs)


class TierFileSystem(AsyncFileSystem, metaclass=_CachedUnlessEmbedded):
    """The store as an fsspec filesystem, for any library that takes ``tier://`` URLs.

    Parameters
    ----------
    config : str or os.PathLike, optional
        A TOML configuration file; None means :func:`tierstore.load_config`'s choice
        (``$TIERSTORE_CONFIG``, ``$TIERSTORE_HOME``, the embedded default).
    store : Store or SyncStore, optional
        An open store to use instead of ``config`` (tests, embedding). Such a filesystem is
        not cached by fsspec and cannot be pickled.
    tier : str, optional
        The tier writes go to; default the configuration's ``default_tier``.
    verify : bool, optional
        Check the checksum of whole-object reads; default the configuration's
        ``verify_reads``.
    asynchronous, loop, batch_size
        As for every :class:`fsspec.asyn.AsyncFileSystem`.

    Notes
    -----
    Only the configuration is read here; the store (its catalog and tiers) is opened on the
    first operation, on whichever event loop runs it, so an instance is cheap to create and
    pickles by its arguments (a DataLoader worker reopens the store itself). Writes are
    whole-object puts: a file opened ``"wb"`` is spooled locally and put when it closes, and
    nothing is visible before then. ``mkdir`` and ``makedirs`` do nothing, as on S3. Each
    block an open file fetches is one ranged read of the store, so one access.

    zarr v3 (``zarr.open_array("tier://...")``, ``FsspecStore``) makes its instance with
    ``asynchronous=True``; a blocking instance works there too (zarr only warns), since the
    store runs on whichever loop awaits it. pyarrow wants the names a listing yields to start
    with the folder as it was given, and fsspec names carry no protocol: with
    ``filesystem=fs``, name a folder ``"datasets/t"``, not ``"tier://datasets/t"``.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.read_parquet("tier://datasets/train.parquet")  # doctest: +SKIP
    >>> fs = TierFileSystem(config="tierstore.toml", tier="hot")  # doctest: +SKIP
    >>> fs.pipe("scratch/x.bin", b"...")  # doctest: +SKIP
    """

    protocol = "tier"
    cachable = True
    root_marker = ""
    _pid: int  # set by AsyncFileSystem.__init__, like _loop
    _loop: asyncio.AbstractEventLoop | None

    def __init__(self, config: str | os.PathLike[str] | None = None, *,
                 store: Store | SyncStore | None = None, tier: str | None = None,
                 verify: bool | None = None, asynchronous: bool = False,
                 loop: asyncio.AbstractEventLoop | None = None, batch_size: int | None = None):
        super().__init__(asynchronous=asynchronous, loop=loop, batch_size=batch_size)
        if store is not None and config is not None:
            raise ValueError("pass either config or store to TierFileSystem, not both")
        self._embedded = store is not None
        self._store = store.aio if isinstance(store, SyncStore) else store
        self.config = self._store.config if self._store is not None else load_config(config)
        self.write_tier = self.config.tier(tier or self.config.default_tier).name
        self.verify = verify
        # Concurrent first operations (zarr sends many at once) must open one store, not one
        # each; the lock binds to a loop only while contended, so it is safe to create here.
        self._opening = asyncio.Lock()

    def __repr__(self) -> str:
        where = "store=..." if self._embedded else f"config={self.config.source!r}"
        return f"TierFileSystem({where}, tier={self.write_tier!r})"

    def _portable(self) -> None:
        if self._embedded:
            raise TypeError(
                "a TierFileSystem made with store=... cannot be pickled or serialised: the "
                "store's catalog connections and threads belong to this process. Make it with "
                "config=<path to a TOML file> and each process opens the store itself.")

    def __reduce__(self) -> Any:
        self._portable()
        return super().__reduce__()

    def to_dict(self, *, include_password: bool = True) -> dict[str, Any]:
        self._portable()
        result: dict[str, Any] = super().to_dict(include_password=include_password)
        return result

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return super()._strip_protocol(path).strip("/")

    def _after_fork(self) -> None:
        # fsspec refuses an instance used across a fork; a DataLoader worker forked with one
        # in its dataset should just work. The child has a fresh fsspec IO loop (fsspec resets
        # it at fork); a store this instance opened is reopened there, while a store passed in
        # handles the fork itself (its tiers, catalog and access recorder are fork-aware).
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._loop = None if self.asynchronous else get_loop()
            self._opening = asyncio.Lock()
            if not self._embedded:
                self._store = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        self._after_fork()
        return self._loop

    async def _connect(self) -> Store:
        self._after_fork()
        if self._store is None:
            async with self._opening:
                if self._store is None:
                    self._store = await Store.connect(self.config)
        return self._store

    async def _put_object(self, path: str, source: Source, *, overwrite: bool = True) -> None:
        store = await self._connect()
        await store.put(self._strip_protocol(path), source, tier=self.write_tier,
                        overwrite=overwrite)

    # -- reads -------------------------------------------------------------------------------

    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None,
                        **kwargs: Any) -> bytes:
        store = await self._connect()
        return await store.cat(self._strip_protocol(path), start, end, verify=self.verify)

    async def _get_file(self, rpath: str, lpath: str, **kwargs: Any) -> None:
        if os.path.isdir(lpath):  # fsspec's get() makes local folders for remote ones
            return
        store = await self._connect()
        await store.get(self._strip_protocol(rpath), lpath)

    # -- writes ------------------------------------------------------------------------------

    async def _pipe_file(self, path: str, value: bytes, mode: str = "overwrite",
                         **kwargs: Any) -> None:
        # memoryview refuses str, which the store would otherwise take for a local file name
        await self._put_object(path, memoryview(value), overwrite=mode == "overwrite")

    async def _put_file(self, lpath: str, rpath: str, mode: str = "overwrite",
                        **kwargs: Any) -> None:
        if os.path.isdir(lpath):  # folders are implied by keys
            return
        await self._put_object(rpath, os.fspath(lpath), overwrite=mode == "overwrite")

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        store = await self._connect()
        # The copy gets a fresh checksum, so the source must be verified first; the object is
        # held in memory, which suits the small files copied through fsspec.
        data = await store.cat(self._strip_protocol(path1), verify=True)
        await self._put_object(path2, data)

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        store = await self._connect()
        await store.rm(self._strip_protocol(path))

    async def _rm(self, path: str | list[str], recursive: bool = False,
                  maxdepth: int | None = None, **kwargs: Any) -> None:
        store = await self._connect()
        keys = []
        for name in await self._expand_path(path, recursive=recursive, maxdepth=maxdepth):
            if name and await store.exists(name):
                keys.append(name)
            elif recursive:  # a folder: it goes with its objects
                continue
            elif await self._isdir(name):
                raise IsADirectoryError(errno.EISDIR, "a folder (pass recursive=True)", name)
            else:
                raise ObjectNotFound(name)
        await _run_coros_in_chunks([store.rm(key) for key in keys], batch_size=self.batch_size)

    # -- metadata ----------------------------------------------------------------------------

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any
                  ) -> list[dict[str, Any]] | list[str]:
        store = await self._connect()
        entries = await store.ls(self._strip_protocol(path))
        return entries if detail else [entry["name"] for entry in entries]

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        if path:
            store = await self._connect()
            entries = await store.ls(path)  # [its entry] for an object, else its children
            if entries[0]["name"] == path:
                return entries[0]
        return {"name": path, "size": 0, "type": "directory"}

    async def _find(self, path: str, maxdepth: int | None = None, withdirs: bool = False,
                    **kwargs: Any) -> list[str] | dict[str, dict[str, Any]]:
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        path = self._strip_protocol(path)
        store = await self._connect()
        try:
            level = await store.ls(path)
        except FileNotFoundError:
            level = []
        found: dict[str, dict[str, Any]] = {}
        if level and level[0]["name"] == path:  # an object: find() of a file is the file
            found[path] = level[0]
            level = []
        elif level and path and withdirs:  # fsspec lists the folder itself too
            found[path] = {"name": path, "size": 0, "type": "directory"}
        depth = 1
        while level:  # one listing per folder, level by level, down to maxdepth
            folders = []
            for entry in level:
                if entry["type"] == "file" or withdirs:
                    found[entry["name"]] = entry
                if entry["type"] == "directory" and (maxdepth is None or depth < maxdepth):
                    folders.append(entry["name"])
            level = [entry for folder in folders for entry in await store.ls(folder)]
            depth += 1
        names = sorted(found)
        return {name: found[name] for name in names} if kwargs.get("detail") else names

    # -- file objects ------------------------------------------------------------------------

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None,
              autocommit: bool = True, cache_options: dict[str, Any] | None = None,
              **kwargs: Any) -> TierBufferedFile:
        path = self._strip_protocol(path)
        info = None
        if mode == "rb":
            info = self.info(path)
            if info["type"] != "file":
                raise IsADirectoryError(errno.EISDIR, "a folder, not an object", path)
            kwargs["size"] = info["size"]  # known now, so the file need not ask again
        elif mode in ("wb", "xb"):
            validate_key(path)  # a bad name fails here, not after the bytes are written
            if mode == "xb" and self.exists(path):
                raise ObjectExists(path)
        else:
            raise ValueError(f"mode must be 'rb', 'wb' or 'xb', not {mode!r} (objects are "
                             "written whole; they cannot be appended to or updated)")
        file = TierBufferedFile(self, path, mode, block_size=block_size, autocommit=autocommit,
                                cache_options=cache_options, **kwargs)
        if info is not None:
            file.details = info
        return file


class TierBufferedFile(AbstractBufferedFile):
    """An object opened through ``tier://``.

    Read: each block the cache fetches is one ranged read of the store (recorded as an
    access). Write: bytes collect in a spooled temporary file and are put when the file
    closes (or, inside an fsspec transaction, when it commits); leaving a ``with`` block by
    an exception discards them, so a failed write never leaves a partial object.
    """

    fs: TierFileSystem

    def _fetch_range(self, start: int, end: int) -> bytes:
        data: bytes = self.fs.cat_file(self.path, start=start, end=end)
        return data

    def _initiate_upload(self) -> None:
        # It outlives this call (until commit or discard), so no with block.
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115

    def _upload_chunk(self, final: bool = False) -> bool:
        with self.buffer.getbuffer() as view:
            self._spool.write(view)
        if final and self.autocommit:
            self.commit()
        return True

    def commit(self) -> None:
        try:
            self._spool.seek(0)
            sync(self.fs.loop, self.fs._put_object, self.path, self._spool,
                 overwrite=self.mode == "wb")
        finally:
            self._spool.close()

    def discard(self) -> None:
        self.forced = True  # so that close() has nothing left to flush and put
        spool = getattr(self, "_spool", None)
        if spool is not None:
            spool.close()

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None and self.writable():
            self.discard()
        self.close()
