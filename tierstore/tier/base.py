"""What every tier is: a configured fsspec filesystem plus a root, the guard that no path
escapes the root, one client per event loop, the concurrency limit, and the one edge where a
backend's errors become :mod:`tierstore.errors`.

``Tier(config)`` returns the backend for the config's URL (as ``pathlib.Path`` returns a
``PosixPath``): :class:`~.local.LocalTier` for local folders, :class:`~.s3.S3Tier` for S3,
:class:`~.fsspec.FsspecTier` for any other fsspec filesystem. Each declares what it can do
(:attr:`Tier.atomic_writes`, :attr:`Tier.atomic_rename`, :attr:`Tier.receipts`,
:attr:`Tier.multipart`, :attr:`Tier.is_local`) and overrides the operations it does better
than fsspec's generic ones, which this base class implements.

Async filesystems (s3fs) are used natively, one instance per event loop and process, so the
store can run on any loop (the sync wrappers' IO thread, a DataLoader worker's own loop) and
survive a fork. Blocking filesystems (local folders) run in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import os
import posixpath
import time
import uuid
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import fsspec
from fsspec.core import split_protocol

from ..checksum import Hasher
from ..config import TierClass, TierConfig
from ..errors import InvalidKey, TierError, TierUnavailable
from ..keys import MARK_DIR, MAX_SEGMENT_BYTES, RESERVED_PREFIX, validate_key
from ..locality.health import in_thread, queued
from ..redaction import redact
from ..tasks import bounded

__all__ = ["PARTIAL_DIR", "PART_SIZE", "Chunk", "Tier", "TierFile"]

Chunk = bytes | memoryview  # a piece of a stream; a view is lent until the next is asked for

PART_SIZE = 8 * 2**20  # streamed copies and multipart uploads move 8 MiB at a time
PARTIAL_DIR = f"{RESERVED_PREFIX}/partial"

_UNAVAILABLE_NAMES = ("ClientConnectorError", "EndpointConnectionError", "ConnectTimeoutError",
                      "ServerDisconnectedError", "ReadTimeoutError", "ClientOSError",
                      "ConnectionClosedError", "NoSuchBucket")


@dataclass(frozen=True, slots=True)
class TierFile:
    """A file found on a tier: its path relative to the root, its size, and its version:
    what tells this file from one written over it (an S3 ETag; a local file's modification
    time and inode), None where the backend says nothing of it."""

    path: str
    size: int
    version: str | None = None


class Tier:
    """One configured tier.

    Paths given to a tier are relative to its root: object keys, or tierstore's own files
    under ``.tierstore/``. Nothing outside the root can be named. ``Tier(config)`` returns
    the backend the config's URL names (a local folder, S3, any other fsspec filesystem).

    Parameters
    ----------
    config : TierConfig
        The tier's configuration.
    """

    atomic_writes: ClassVar[bool] = False
    """A write shows the whole file at its path or nothing (an S3 object appears when its
    PUT or multipart upload completes), so it needs no temporary name."""
    atomic_rename: ClassVar[bool] = False
    """A rename replaces its target in one step (a local folder's; S3 copies, then deletes)."""
    receipts: ClassVar[bool] = False
    """The backend can prove what a write landed without reading it back (see
    :meth:`written_size`: a local folder's hash of what it handed the kernel, S3's answers)."""
    multipart: ClassVar[bool] = False
    """Large writes go as parts sent at once, not as one request held in memory."""
    is_local: ClassVar[bool] = False
    """Its files are this machine's: :meth:`full_path` is a path the kernel opens."""

    _backends: ClassVar[dict[str, type[Tier]]] = {}
    _fallback: ClassVar[type[Tier] | None] = None

    def __init_subclass__(cls, *, protocols: tuple[str, ...] = (), fallback: bool = False,
                          **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for protocol in protocols:
            Tier._backends[protocol] = cls
        if fallback:
            Tier._fallback = cls

    def __new__(cls, config: TierConfig | None = None) -> Tier:
        if cls is Tier and config is not None:  # the backend for the URL's protocol (no
            protocol = split_protocol(config.url)[0] or "file"  # config: unpickling)
            backend = Tier._backends.get(protocol, Tier._fallback)
            assert backend is not None, "tierstore.tier registers the backends"
            return super().__new__(backend)
        return super().__new__(cls)

    def __init__(self, config: TierConfig):
        self.config = config
        protocol, _ = split_protocol(config.url)
        self.protocol = protocol or "file"
        cls = fsspec.get_filesystem_class(self.protocol)
        self.is_async = bool(getattr(cls, "async_impl", False))
        self.root = cls._strip_protocol(config.url).rstrip("/")
        self._options = self._configure(dict(config.options))
        self._pid = os.getpid()
        self._sync_fs: fsspec.AbstractFileSystem | None = None
        self._loop_fs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = \
            weakref.WeakKeyDictionary()
        self._connecting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                    asyncio.Task[Any]] = weakref.WeakKeyDictionary()
        self._limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = \
            weakref.WeakKeyDictionary()
        # Full path -> the receipt for bytes this process just wrote there, where the
        # backend gives one (see written_size()).
        self._vouched: dict[str, str] = {}

    def _configure(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options the filesystem is made with: the config's, and the backend's
        defaults."""
        return options

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def tier_class(self) -> TierClass:
        return self.config.tier_class

    def __repr__(self) -> str:
        return f"Tier({self.name!r}, {self.tier_class.name.lower()}, {redact(self.config.url)!r})"

    # -- paths -------------------------------------------------------------------------------

    def full_path(self, path: str) -> str:
        """The backend path of ``path``, refusing anything that would leave the root.

        Parameters
        ----------
        path : str
            Relative to the tier's root.

        Returns
        -------
        str
            The path the backend opens.

        Raises
        ------
        InvalidKey
            If ``path`` is not a safe relative path or leaves the root.
        """
        if path.startswith(RESERVED_PREFIX + "/"):
            inner = path[len(RESERVED_PREFIX) + 1:]
            validate_key(inner)
        else:
            validate_key(path)
        full = posixpath.normpath(f"{self.root}/{path}")
        if not full.startswith(self.root + "/"):
            raise InvalidKey(path, f"escapes the root of tier {self.name!r}")
        self._check_path(path, full)
        return full

    def _check_path(self, path: str, full: str) -> None:
        """Refuse a path the backend could be led astray by (a local folder's links)."""

    @staticmethod
    def partial_path(key: str, *, mark: bool = False) -> str:
        """Make a fresh temporary name for bytes of ``key`` that are not yet verified.

        The name is a unique prefix and as much of the key's last segment as a name may hold
        (any valid key's).

        Parameters
        ----------
        key : str
            The object's key.
        mark : bool, default False
            Name a claim that only marks a fetch and writes nothing
            (:func:`tierstore.keys.is_mark`).

        Returns
        -------
        str
            The temporary path, relative to the root.
        """
        prefix = f"{uuid.uuid4().hex}-"
        room = MAX_SEGMENT_BYTES - len(prefix)
        name = posixpath.basename(key).encode()[:room].decode(errors="ignore")
        return f"{MARK_DIR if mark else PARTIAL_DIR}/{prefix}{name}"

    # -- filesystem instances ----------------------------------------------------------------

    def _after_fork(self) -> None:
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._forget_clients()

    def _forget_clients(self) -> None:
        """Drop what belongs to the parent process after a fork (its clients, its loops)."""
        self._sync_fs = None
        self._loop_fs = weakref.WeakKeyDictionary()
        self._connecting = weakref.WeakKeyDictionary()
        self._limits = weakref.WeakKeyDictionary()
        self._vouched = {}

    async def connect(self) -> None:
        """Make this loop's client now rather than at the first request: nothing is sent."""
        await self._guard("connect", self._fs())

    async def _fs(self) -> Any:
        self._after_fork()
        if not self.is_async:
            if self._sync_fs is None:
                self._sync_fs = fsspec.filesystem(self.protocol, skip_instance_cache=True,
                                                  **self._options)
            return self._sync_fs
        loop = asyncio.get_running_loop()
        fs = self._loop_fs.get(loop)
        if fs is not None:
            return fs
        # One client per loop: the concurrent first calls (a shard's ranged reads) wait for
        # the one being made instead of each making its own (a botocore client costs tens
        # of ms of CPU: eight at once delayed a loader worker's first read by ~1 s)
        connecting = self._connecting.get(loop)
        if connecting is None:
            connecting = self._connecting[loop] = loop.create_task(self._connect(loop))
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done():
                self._connecting.pop(loop, None)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> Any:
        """This loop's async filesystem, made."""
        # a copy all the way down: botocore rewrites the ``retries`` it is given in place
        options = copy.deepcopy(self._options)
        retries = options.pop("retries", 2)  # s3fs's own retry count is an attribute
        fs = fsspec.filesystem(self.protocol, asynchronous=True, loop=loop,
                               skip_instance_cache=True, **options)
        if hasattr(fs, "retries"):
            fs.retries = retries
        await self._opened(fs)
        self._loop_fs[loop] = fs
        return fs

    async def _opened(self, fs: Any) -> None:
        """What a backend does with a new async filesystem before its first request."""

    @contextlib.asynccontextmanager
    async def _limit(self) -> AsyncIterator[None]:
        """One of the tier's ``max_concurrency`` request slots on this loop; the wait for it
        is queueing in this process, not the tier's time (:func:`~.locality.health.queued`)."""
        loop = asyncio.get_running_loop()
        sem = self._limits.get(loop)
        if sem is None:
            sem = self._limits[loop] = asyncio.Semaphore(self.config.max_concurrency)
        began = time.perf_counter()
        async with sem:
            queued(time.perf_counter() - began)
            yield

    async def close(self) -> None:
        """Close what this tier opened, on every loop it ran on."""
        self._loop_fs = weakref.WeakKeyDictionary()

    # -- the one edge: backend errors become tierstore's -------------------------------------

    def _translate(self, op: str, exc: BaseException) -> TierError:
        names = {type(e).__name__ for e in _chain(exc)}
        text = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError | asyncio.TimeoutError):
            return TierUnavailable(self.name, op, f"timed out after {self.config.timeout:g}s")
        if names & set(_UNAVAILABLE_NAMES) or isinstance(exc, ConnectionError) or (
                isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED,
                                                            errno.EHOSTUNREACH)):
            return TierUnavailable(self.name, op, _one_line(text))
        if missing_bucket(exc):
            return TierUnavailable(self.name, op, f"bucket missing: {_one_line(text)}")
        return TierError(self.name, op, _one_line(text))

    async def _guard(self, op: str, coro: Any) -> Any:
        """Await ``coro`` within the tier's timeout, its errors translated. The deadline is
        this task's own (``asyncio.timeout``, as ``wait_for`` itself is from Python 3.12):
        ``wait_for`` on 3.11 runs each awaitable in a task of its own, ~12 us against ~4,
        paid for every piece of every S3 response body read."""
        try:
            async with asyncio.timeout(self.config.timeout):
                return await coro
        except (InvalidKey, TierError):
            raise
        except Exception as exc:
            raise self._translate(op, exc) from exc

    async def _call(self, op: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``fs.<method>`` (or its async ``_<method>``) bounded by max_concurrency."""
        async with self._limit():
            fs = await self._fs()
            if self.is_async:
                return await self._guard(op, getattr(fs, "_" + method)(*args, **kwargs))
            return await self._guard(op, in_thread(getattr(fs, method), *args, **kwargs))

    def _missing(self, path: str) -> FileNotFoundError:
        """What a read of a file that is not there raises."""
        return FileNotFoundError(errno.ENOENT, f"{self.name}: missing", path)

    # -- operations, as any fsspec filesystem does them ----------------------------------------

    async def read(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        """Read bytes ``[start, end)`` of a file.

        Parameters
        ----------
        path : str
            Relative to the tier's root.
        start, end : int, optional
            The range, ``end`` exclusive; None reads from the start or to the end.

        Returns
        -------
        bytes
            The bytes.

        Raises
        ------
        FileNotFoundError
            If the file is missing.
        InvalidKey
            If ``path`` is not a safe relative path or leaves the root.
        TierError
            If the backend fails (TierUnavailable when its server cannot be reached).
        """
        try:
            data: bytes = await self._call("read", "cat_file", self.full_path(path),
                                           start=start, end=end)
        except TierError as exc:
            if gone(exc):
                raise self._missing(path) from exc
            raise
        return data

    async def read_into(self, path: str, start: int, view: memoryview) -> int:
        """Read a file's bytes from an offset into given memory.

        As many bytes as fit are read (fewer at the file's end). Every copy is made on the
        calling loop, never by another thread, so a read cancelled midway writes no more
        into ``view`` after it is cancelled.

        Parameters
        ----------
        path : str
            Relative to the tier's root.
        start : int
            The offset of the first byte.
        view : memoryview
            Where the bytes go.

        Returns
        -------
        int
            How many bytes were read.

        Raises
        ------
        FileNotFoundError
            If the file is missing.
        TierError
            If the backend fails (TierUnavailable when its server cannot be reached).
        """
        if not len(view):
            return 0
        data = await self.read(path, start, start + len(view))
        view[:len(data)] = data
        return len(data)

    async def _file_info(self, full: str) -> dict[str, Any] | None:
        """What the backend says of the file ``full`` (fsspec's ``info``); None when there
        is no such file (nothing, or a folder)."""
        try:
            info = await self._call("stat", "info", full)
        except TierError as exc:
            if gone(exc):
                return None
            raise
        return None if info.get("type") == "directory" else dict(info)

    async def size(self, path: str) -> int | None:
        """The size of a file.

        Parameters
        ----------
        path : str
            Relative to the tier's root.

        Returns
        -------
        int or None
            Its size in bytes, or None when there is no such file.
        """
        info = await self._file_info(self.full_path(path))
        return None if info is None else int(info["size"])

    async def written_size(self, path: str, digest: str | None = None
                           ) -> tuple[int | None, bool]:
        """The size of a file this process has just written, and whether its bytes are vouched for.

        Where the backend cannot vouch for the bytes (see the backends'; this generic one
        never does), the caller reads them back.

        Parameters
        ----------
        path : str
            Relative to the tier's root.
        digest : str, optional
            The checksum of the bytes sent, for a backend's receipt to be checked against.

        Returns
        -------
        tuple of (int or None, bool)
            The size (None: no such file) and whether the backend vouches for the bytes.
        """
        self._vouched.pop(self.full_path(path), None)
        return await self.size(path), False

    async def written_sizes(self, paths: Sequence[str], digests: Sequence[str]
                            ) -> list[tuple[int | None, bool]]:
        """:meth:`written_size` of many files this process has just written, in order.

        Parameters
        ----------
        paths : sequence of str
            Relative to the tier's root.
        digests : sequence of str
            The checksum of the bytes sent to each.

        Returns
        -------
        list of (int or None, bool)
            Each file's size (None: no such file) and whether the backend vouches for its
            bytes.
        """
        return await bounded(list(zip(paths, digests, strict=True)),
                             lambda one: self.written_size(*one), self.config.max_concurrency)

    async def version(self, path: str) -> tuple[int, str | None] | None:
        """A file's size and version now (see :class:`TierFile`).

        Parameters
        ----------
        path : str
            Relative to the tier's root.

        Returns
        -------
        tuple of (int, str or None) or None
            The size and version; None if the file is gone.
        """
        info = await self._file_info(self.full_path(path))
        return None if info is None else (int(info.get("size") or 0), file_version(info))

    async def hash(self, path: str, size: int) -> Hasher:
        """Read a file whole and hash it, as :meth:`iter_read` streams it.

        Parameters
        ----------
        path : str
            Relative to the tier's root.
        size : int
            Its expected size.

        Returns
        -------
        Hasher
            The hash of the bytes read, and their count.
        """
        hasher = Hasher()
        async for chunk in self.iter_read(path, size):
            hasher.update(chunk)
        return hasher

    async def iter_read(self, path: str, size: int, part: int = PART_SIZE
                        ) -> AsyncIterator[Chunk]:
        """Stream a file as ranged reads of ``part`` bytes, one read ahead.

        Parameters
        ----------
        path : str
            Relative to the tier's root.
        size : int
            Its size.
        part : int, default PART_SIZE
            The bytes of each read.

        Yields
        ------
        Chunk
            The file's bytes in order; each chunk lent only until the next is asked for,
            where a backend streams views: copy what you keep.
        """
        if size <= 0:
            return  # a ranged read of nothing is an error on some servers (HTTP 416)
        offsets = list(range(0, size, part))
        pending = asyncio.ensure_future(self.read(path, 0, min(part, size)))
        try:
            for i in range(len(offsets)):
                data = await pending
                if i + 1 < len(offsets):
                    nxt = offsets[i + 1]
                    pending = asyncio.ensure_future(self.read(path, nxt, min(nxt + part, size)))
                yield data
        finally:
            if not pending.done():
                pending.cancel()

    async def write(self, path: str, chunks: AsyncIterable[Chunk], *,
                    size: int | None = None) -> int:
        """Stream chunks into a file, replacing it.

        Parameters
        ----------
        path : str
            Relative to the tier's root.
        chunks : async iterable of Chunk
            The bytes.
        size : int, optional
            How many bytes ``chunks`` will yield, where the caller knows: a hint (a local
            tier writes over a kept file of about that size; see
            :mod:`tierstore.tier.recycle`), never a check.

        Returns
        -------
        int
            The bytes written.

        Raises
        ------
        InvalidKey
            If ``path`` is not a safe relative path or leaves the root.
        TierError
            If the backend fails (TierUnavailable when its server cannot be reached).
        """
        full = self.full_path(path)
        self._vouched.pop(full, None)
        fs = await self._fs()
        if self.is_async:  # an async fs without multipart: one request, held in memory
            data = b"".join([c async for c in chunks])
            await self._call("write", "pipe_file", full, data)
            return len(data)
        return await self._write_blocking(lambda: fs.open(full, "wb"), chunks)

    async def write_files(self, files: Sequence[tuple[str, str, bytes]]) -> bool:
        """Write small files whole, where the backend can do it in a few calls.

        Only a backend that vouches for every byte it writes does (this generic one does
        not). Each ``(tmp, path, data)`` is written to ``tmp``, renamed to ``path`` (unless they are
        the same) and made durable, as :meth:`write`, :meth:`rename` and :meth:`sync` would.

        Parameters
        ----------
        files : sequence of (str, str, bytes)
            Each file's temporary path, final path (relative to the tier's root) and bytes.

        Returns
        -------
        bool
            True when every file is in place, durable and vouched for; False when nothing
            was done (the caller writes each file as a stream and verifies it).

        Raises
        ------
        TierError
            If the backend fails; the files may be partly written (the caller removes them).
        """
        return False

    async def _write_blocking(self, open_file: Callable[[], Any], chunks: AsyncIterable[Chunk],
                              hasher: Hasher | None = None) -> int:
        """A blocking backend's file (``open_file()``) written chunk by chunk in threads,
        one write under way while the next chunk comes (when it is the writer's own),
        each chunk hashed into ``hasher`` as it is handed over."""
        async with self._limit():
            handle = await self._guard("write", asyncio.to_thread(open_file))
            written = 0
            pending: asyncio.Future[None] | None = None  # a write under way
            try:
                async for chunk in chunks:
                    if pending is not None:
                        await pending
                    write = self._guard("write", asyncio.to_thread(_write_hashed, handle,
                                                                   chunk, hasher))
                    if type(chunk) is bytes:  # its own: written while the next one comes
                        pending = asyncio.ensure_future(write)
                    else:  # lent until the next one is asked for: written first
                        pending = None
                        await write
                    written += len(chunk)
                if pending is not None:
                    await pending
            finally:
                if pending is not None and not pending.done():  # never close under a write
                    with contextlib.suppress(BaseException):
                        await asyncio.wait([pending])
                await asyncio.to_thread(handle.close)
        return written

    async def remove(self, path: str) -> None:
        """Delete a file; deleting what is already gone is not an error.

        Parameters
        ----------
        path : str
            Relative to the tier's root.

        Raises
        ------
        TierError
            If the backend fails (TierUnavailable when its server cannot be reached).
        """
        full = self.full_path(path)
        self._vouched.pop(full, None)
        try:
            await self._call("delete", "rm_file", full)
        except TierError as exc:
            if missing_bucket(exc):
                return  # nothing can exist in a bucket that does not
            if not gone(exc):
                raise

    async def abort_uploads(self, path: str) -> None:
        """Abort unfinished multipart uploads of a file (where a backend has them).

        Parameters
        ----------
        path : str
            Relative to the tier's root.
        """

    async def rename(self, src: str, dst: str) -> None:
        """Move a file on this tier (see :attr:`atomic_rename`).

        Parameters
        ----------
        src, dst : str
            The paths from and to, relative to the root.

        Raises
        ------
        TierError
            If the backend fails (TierUnavailable when its server cannot be reached).
        """
        await self._call("rename", "mv_file" if self.is_async else "mv", self.full_path(src),
                         self.full_path(dst))

    async def sync(self, path: str) -> None:
        """Make a file's bytes and its name durable.

        A backend's write that is durable when it is acknowledged needs nothing more.

        Parameters
        ----------
        path : str
            Relative to the tier's root.
        """

    async def walk(self, folder: str = "") -> list[TierFile]:
        """List every file under the root, tierstore's own included.

        In a local folder, the regular files reached without following a link (see
        :meth:`full_path`).

        Parameters
        ----------
        folder : str, default ""
            List only under this folder of the root.

        Returns
        -------
        list of TierFile
            The files, sorted by path.

        Raises
        ------
        TierError
            If the backend fails (TierUnavailable when its server cannot be reached).
        """
        fs = await self._fs()
        if hasattr(fs, "invalidate_cache"):
            fs.invalidate_cache()
        top = self.full_path(folder.rstrip("/")) if folder.strip("/") else self.root
        try:
            found = await self._call("list", "find", top, detail=True)
        except TierError as exc:
            if gone(exc):
                return []
            raise
        prefix = self.root + "/"
        return sorted(
            (TierFile(name[len(prefix):], int(info.get("size") or 0), file_version(info))
             for name, info in found.items()
             if name.startswith(prefix) and info.get("type") != "directory"
             and not info.get("islink")),
            key=lambda f: f.path,
        )


def file_version(info: Mapping[str, Any]) -> str | None:
    """What tells a file from one written over it, from an fsspec listing or info: an S3
    object's ETag, a local file's modification time and inode."""
    if (etag := etag_of(info.get("ETag") or info.get("etag"))) is not None:
        return etag
    if info.get("mtime") is not None and info.get("ino") is not None:
        return f"{info['mtime']!r}:{info['ino']}"
    return None


def etag_of(etag: object) -> str | None:
    """An S3 ETag without its quotes, in lower case (an MD5 in hex, ``-N`` after it for a
    multipart upload, where it is one); None if there is none."""
    text = etag.strip().strip('"').lower() if isinstance(etag, str) else ""
    return text or None


def gone(exc: TierError) -> bool:
    """The backend said the file is not there (and not that the whole tier is away)."""
    return isinstance(exc.__cause__, FileNotFoundError) and not isinstance(exc, TierUnavailable)


def missing_bucket(exc: BaseException) -> bool:
    """The error says a bucket does not exist."""
    return any("NoSuchBucket" in type(e).__name__ or (
        isinstance(e, FileNotFoundError) and "bucket does not exist" in str(e).lower())
        for e in _chain(exc))


def past_end(exc: BaseException) -> bool:
    """The server said a range starts past the file's end (S3's ``InvalidRange``, 416)."""
    return any(getattr(e, "response", {}).get("Error", {}).get("Code") == "InvalidRange"
               for e in _chain(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in out:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def _write_hashed(handle: Any, chunk: Chunk, hasher: Hasher | None) -> None:
    if hasher is not None:
        hasher.update(chunk)
    handle.write(chunk)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
