"""Blocking wrappers: each method runs the async store's coroutine on fsspec's IO thread.

Calling them from inside that loop would deadlock, so fsspec's ``sync`` refuses it; async code
uses :class:`~tierstore.store.Store` directly (``SyncStore.aio``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Coroutine, Iterable, Mapping
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
    """The store for blocking code.

    Each method blocks on the :class:`~tierstore.store.Store` coroutine of the same name, run
    on fsspec's IO thread; see the ``Store`` method for the details. Calling them from inside
    that loop would deadlock, so fsspec refuses it: async code uses :attr:`aio`.

    Parameters
    ----------
    store : Store
        The async store it wraps (its :attr:`aio`).

    See Also
    --------
    open_store : Open one from a config.
    """

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
        """Flush access statistics, close client sessions and catalog connections.

        Blocks until :meth:`Store.close` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        See Also
        --------
        Store.close
        """
        _run(self.aio.close())

    def put(self, key: str, source: Source, *, tier: str | None = None,
            overwrite: bool = False) -> ObjectInfo:
        """Write an object to a tier.

        Blocks until :meth:`Store.put` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        key : str
            The object's key.
        source : bytes, str, os.PathLike, binary file object or async iterable of bytes
            The content.
        tier : str, optional
            The tier to write to; the config's ``default_tier`` if None.
        overwrite : bool, default False
            Replace an existing object of this key.

        Returns
        -------
        ObjectInfo
            What the object is now.

        See Also
        --------
        Store.put
        """
        return _run(self.aio.put(key, source, tier=tier, overwrite=overwrite))

    def put_many(self, items: Iterable[tuple[str, Source]], *, tier: str | None = None,
                 overwrite: bool = False, jobs: int = 8,
                 committed: Callable[[str, int], None] | None = None) -> None:
        """Write many objects to a tier, small ones in batches.

        Blocks until :meth:`Store.put_many` is done (on fsspec's IO thread); see it for the
        details and the errors it raises.

        Parameters
        ----------
        items : iterable of (str, source)
            Keys and their contents; no key twice.
        tier : str, optional
            The tier to write to; the config's ``default_tier`` if None.
        overwrite : bool, default False
            Replace existing objects of these keys.
        jobs : int, default 8
            Objects put at once outside the batches.
        committed : callable, optional
            Told each object's key and size once it is committed.

        See Also
        --------
        Store.put_many
        """
        _run(self.aio.put_many(items, tier=tier, overwrite=overwrite, jobs=jobs,
                               committed=committed))

    def cat(self, key: str, start: int | None = None, end: int | None = None, *,
            verify: bool | None = None) -> bytes:
        """Read bytes ``[start, end)`` of an object.

        Blocks until :meth:`Store.cat` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        key : str
            The object's key.
        start, end : int, optional
            The range, ``end`` exclusive; negative offsets count from the object's end.
        verify : bool, optional
            Check a whole-object read against the recorded checksum; defaults to
            ``config.verify_reads``.

        Returns
        -------
        bytes
            The bytes of the range.

        See Also
        --------
        Store.cat
        """
        return _run(self.aio.cat(key, start, end, verify=verify))

    def get(self, key: str, local_path: str | os.PathLike[str]) -> None:
        """Copy an object to a local file, verified.

        Blocks until :meth:`Store.get` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        key : str
            The object's key.
        local_path : str or os.PathLike
            The file to write.

        See Also
        --------
        Store.get
        """
        _run(self.aio.get(key, local_path))

    def open(self, key: str, mode: str = "rb", *, tier: str | None = None
             ) -> io.BufferedReader | ObjectWriter:
        """Open an object as a file: a seekable reader, or a writer that commits on close.

        Parameters
        ----------
        key : str
            The object's key.
        mode : {"rb", "wb"}, default "rb"
            ``rb``: a seekable binary reader; ``wb``: a writer that commits on close.
        tier : str, optional
            The tier a writer writes to; the config's ``default_tier`` if None.

        Returns
        -------
        io.BufferedReader or ObjectWriter
            The reader or the writer.

        Raises
        ------
        ValueError
            If ``mode`` is neither ``rb`` nor ``wb``.
        ObjectNotFound
            If a reader's object has no ready replica.
        InvalidKey
            If ``key`` is not a safe relative path.

        See Also
        --------
        Store.cat, Store.put
        """
        if mode == "rb":
            info = self.stat(key)
            return io.BufferedReader(ObjectReader(self, info.key, info.size),
                                     buffer_size=1 << 20)
        if mode == "wb":
            return ObjectWriter(self, key, tier=tier)
        raise ValueError(f"mode must be 'rb' or 'wb', not {mode!r}")

    def stat(self, key: str) -> ObjectInfo:
        """Describe an object.

        Blocks until :meth:`Store.stat` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        key : str
            The object's key.

        Returns
        -------
        ObjectInfo
            Its size, checksum, pin, replicas per tier and access statistics.

        See Also
        --------
        Store.stat
        """
        return _run(self.aio.stat(key))

    def exists(self, key: str) -> bool:
        """Tell whether an object has a ready replica.

        Blocks until :meth:`Store.exists` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        key : str
            The object's key.

        Returns
        -------
        bool
            True if the object exists with a ready replica.

        See Also
        --------
        Store.exists
        """
        return _run(self.aio.exists(key))

    def find(self, prefix: str = "") -> list[str]:
        """List every key that starts with a prefix.

        Blocks until :meth:`Store.find` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        prefix : str, default ""
            A plain string prefix; every key if empty.

        Returns
        -------
        list of str
            The keys, sorted.

        See Also
        --------
        Store.find
        """
        return _run(self.aio.find(prefix))

    def ls(self, path: str = "") -> list[dict[str, Any]]:
        """List the entries directly under a path: files and folders.

        Blocks until :meth:`Store.ls` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        path : str, default ""
            A folder of keys (or an object's key); the root if empty.

        Returns
        -------
        list of dict
            One fsspec entry per file or folder.

        See Also
        --------
        Store.ls
        """
        return _run(self.aio.ls(path))

    def rm(self, key: str) -> None:
        """Delete an object and all its replicas.

        Blocks until :meth:`Store.rm` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        key : str
            The object's key.

        See Also
        --------
        Store.rm
        """
        _run(self.aio.rm(key))

    def move(self, key: str, tier: str) -> ObjectInfo:
        """Leave an object with one replica, on ``tier``.

        Blocks until :meth:`Store.move` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        key : str
            The object's key.
        tier : str
            The tier to keep it on.

        Returns
        -------
        ObjectInfo
            What the object is now.

        See Also
        --------
        Store.move
        """
        return _run(self.aio.move(key, tier))

    def add_replica(self, key: str, tier: str) -> ObjectInfo:
        """Copy an object to one more tier.

        Blocks until :meth:`Store.add_replica` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        key : str
            The object's key.
        tier : str
            The tier to copy to.

        Returns
        -------
        ObjectInfo
            What the object is now.

        See Also
        --------
        Store.add_replica
        """
        return _run(self.aio.add_replica(key, tier))

    def drop_replica(self, key: str, tier: str) -> ObjectInfo:
        """Remove an object's replica on a tier; never its last one, never its pinned one.

        Blocks until :meth:`Store.drop_replica` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        key : str
            The object's key.
        tier : str
            The tier whose replica goes.

        Returns
        -------
        ObjectInfo
            What the object is now.

        See Also
        --------
        Store.drop_replica
        """
        return _run(self.aio.drop_replica(key, tier))

    def pin(self, key: str, tier: str | None = None) -> ObjectInfo:
        """Pin an object to a tier, copying it there first.

        Blocks until :meth:`Store.pin` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        key : str
            The object's key.
        tier : str, optional
            The tier to pin to; its best current tier if None.

        Returns
        -------
        ObjectInfo
            What the object is now.

        See Also
        --------
        Store.pin
        """
        return _run(self.aio.pin(key, tier))

    def unpin(self, key: str) -> ObjectInfo:
        """Unpin an object.

        Blocks until :meth:`Store.unpin` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        key : str
            The object's key.

        Returns
        -------
        ObjectInfo
            What the object is now.

        See Also
        --------
        Store.unpin
        """
        return _run(self.aio.unpin(key))

    def announce(self, reader: str, uses: Mapping[str, float], *, ttl: float = 3600.0
                 ) -> None:
        """Tell the daemon when a reader will read which keys.

        Blocks until :meth:`Store.announce` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        reader : str
            Who reads (a loader's name).
        uses : mapping of str to float
            Keys and when each will be read, in seconds since the epoch.
        ttl : float, default 3600.0
            Seconds the announcement counts for.

        See Also
        --------
        Store.announce
        """
        _run(self.aio.announce(reader, uses, ttl=ttl))

    def schedule_preload(self, prefix: str, tier: str, deadline: float, *,
                         lead: float | None = None, hold: float = 86400.0) -> PreloadRecord:
        """Have every object under a prefix on a tier by a deadline.

        Blocks until :meth:`Store.schedule_preload` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        prefix : str
            The objects' prefix.
        tier : str
            The tier to stage them to.
        deadline : float
            When the objects must be there, in seconds since the epoch.
        lead : float, optional
            Seconds before ``deadline`` to start staging; at once if None.
        hold : float, default 86400.0
            Seconds after ``deadline`` to keep them there.

        Returns
        -------
        PreloadRecord
            The scheduled pre-load.

        See Also
        --------
        Store.schedule_preload
        """
        return _run(self.aio.schedule_preload(prefix, tier, deadline, lead=lead, hold=hold))

    def preloads(self) -> list[PreloadRecord]:
        """List the scheduled pre-loads.

        Blocks until :meth:`Store.preloads` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Returns
        -------
        list of PreloadRecord
            The pre-loads, earliest deadline first.

        See Also
        --------
        Store.preloads
        """
        return _run(self.aio.preloads())

    def cancel_preload(self, prefix: str, tier: str | None = None) -> int:
        """Cancel the pre-loads of a prefix.

        Blocks until :meth:`Store.cancel_preload` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        prefix : str
            The pre-loads' prefix.
        tier : str, optional
            Cancel the pre-load to this tier only.

        Returns
        -------
        int
            How many were cancelled.

        See Also
        --------
        Store.cancel_preload
        """
        return _run(self.aio.cancel_preload(prefix, tier))

    def usage(self) -> list[TierReport]:
        """Count objects and bytes per configured tier (``du``).

        Blocks until :meth:`Store.usage` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Returns
        -------
        list of TierReport
            One per tier, against its capacity and watermarks.

        See Also
        --------
        Store.usage
        """
        return _run(self.aio.usage())

    def locate(self, prefix: str = "") -> list[SiteHolding]:
        """Say, per site with a tier, what it holds of the objects under a prefix.

        Blocks until :meth:`Store.locate` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        prefix : str, default ""
            The objects' prefix; every object if empty.

        Returns
        -------
        list of SiteHolding
            One per site.

        See Also
        --------
        Store.locate
        """
        return _run(self.aio.locate(prefix))

    def recover(self) -> RecoveryReport:
        """Finish or roll back the moves of processes that died mid-way.

        Blocks until :meth:`Store.recover` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Returns
        -------
        RecoveryReport
            What was rolled back, finished, skipped and failed.

        See Also
        --------
        Store.recover
        """
        return _run(self.aio.recover())

    def audit(self, *, deep: bool = False) -> AuditReport:
        """Check the catalog against the tiers.

        Blocks until :meth:`Store.audit` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        deep : bool, default False
            Read every replica back and check its checksum too.

        Returns
        -------
        AuditReport
            The orphan files, the missing or bad replicas, and the pending ones.

        See Also
        --------
        Store.audit
        """
        return _run(self.aio.audit(deep=deep))

    def adopt(self, prefix: str, tier: str, *, jobs: int = 8) -> AdoptReport:
        """Catalog the files other tools wrote under a prefix of a tier as objects, in place.

        Blocks until :meth:`Store.adopt` is done (on fsspec's IO thread); see it
        for the details and the errors it raises.

        Parameters
        ----------
        prefix : str
            The folder of the tier to adopt.
        tier : str
            The tier the files are on.
        jobs : int, default 8
            Files read at a time.

        Returns
        -------
        AdoptReport
            The files adopted, counted, refused and removed.

        See Also
        --------
        Store.adopt
        """
        return _run(self.aio.adopt(prefix, tier, jobs=jobs))


def open_store(config: Config | str | os.PathLike[str] | None = None, *,
               recover: bool = True) -> SyncStore:
    """Open a store for blocking code.

    The store has the config's tiers and catalog, with interrupted work of dead processes
    recovered.

    Parameters
    ----------
    config : Config, str, os.PathLike or None, optional
        A :class:`Config`, a TOML path, or None for ``$TIERSTORE_CONFIG`` /
        ``$TIERSTORE_HOME`` / the embedded default.
    recover : bool, default True
        Finish or roll back the moves of dead processes first.

    Returns
    -------
    SyncStore
        The open store; a context manager that closes it.

    Raises
    ------
    ConfigError
        If the config is malformed.
    CatalogError
        If the catalog is unusable.

    See Also
    --------
    Store.connect : The same, for async code.

    Examples
    --------
    >>> with open_store() as store:  # doctest: +SKIP
    ...     info = store.put("data/a.bin", b"hello")
    ...     data = store.cat("data/a.bin")
    """
    return SyncStore(_run(Store.connect(config, recover=recover)))
