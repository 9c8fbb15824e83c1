"""A tier: an fsspec filesystem plus a root, with a guard that no path escapes the root.

Async filesystems (s3fs) are used natively, one instance per event loop and process, so the
store can run on any loop (the sync wrappers' IO thread, a DataLoader worker's own loop) and
survive a fork. Blocking filesystems (local folders) run in threads. Every backend error is
translated here, at the edge, into :mod:`tierstore.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import hashlib
import logging
import os
import posixpath
import stat
import time
import urllib.parse
import uuid
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.core import split_protocol

from .checksum import Hasher, checksum_file
from .config import TierClass, TierConfig
from .direct import (
    DIRECT_READ_MAX,
    DIRECT_READ_MIN,
    DirectWriter,
    read_direct,
    read_direct_into,
    stream_file,
)
from .errors import InvalidKey, TierError, TierUnavailable
from .keys import MARK_DIR, MAX_SEGMENT_BYTES, RESERVED_PREFIX, validate_key
from .localcopy import COPY_PIECE, KernelCopy, LocalFile
from .locality.health import in_thread, queued
from .redaction import redact
from .s3get import FastPathRefused, RangeReader, behind_proxy

__all__ = ["PART_SIZE", "Chunk", "Tier", "TierFile"]

Chunk = bytes | memoryview  # a piece of a stream; a view is lent until the next is asked for

_LOADERS: dict[str | None, Any] = {}  # botocore's data loaders, by data path: one per process,
# so botocore's models (the S3 service's, ``endpoints``: ~15 MiB of objects, 70-150 ms to
# parse on 2 cores) are parsed once for every session here, and not again in a DataLoader
# worker forked after (each loop's client has a session of its own: credentials that refresh
# hold an asyncio lock, which no two loops may share)

PART_SIZE = 8 * 2**20  # streamed copies and multipart uploads move 8 MiB at a time
STREAM_CHUNK = 4 * 2**20  # a streamed S3 read hands on about this much at a time
STREAM_READ = 2**20  # ...read from the response body in pieces of at most this
# S3: an object up to this size is one PUT (held in memory meanwhile, as s3fs does up to
# 100 MiB); larger ones are multipart uploads of PART_SIZE parts. On moto here, a 16 MiB
# object went up at 211 MB/s as one PUT and 131 MB/s as two parts.
SINGLE_PUT_MAX = 4 * PART_SIZE
FAST_PATH_REFUSALS = 3  # direct ranged reads refused in a row before a tier stops trying them
PARTS_IN_FLIGHT = 4  # parts of one multipart upload sent at once (boto3's transfers send 10)
log = logging.getLogger(__name__)

PARTIAL_DIR = f"{RESERVED_PREFIX}/partial"
PROBE_DIR = f"{RESERVED_PREFIX}/probe"
_PROBE_SHA256 = hashlib.sha256(b"0").hexdigest()
_PAYLOAD_REFUSED = ("XAmzContentSHA256Mismatch", "BadDigest")

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


def _s3_defaults(options: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Fail fast against a dead server: the read path fails over, it does not wait."""
    options.setdefault("use_listings_cache", False)
    config = dict(options.get("config_kwargs") or {})
    # Third-party S3 servers (Ceph RGW 16, older MinIO) reject botocore's default trailing
    # CRC checksums; tierstore verifies content with its own checksum anyway.
    config.setdefault("request_checksum_calculation", "when_required")
    config.setdefault("response_checksum_validation", "when_required")
    config.setdefault("connect_timeout", min(5.0, timeout))
    config.setdefault("read_timeout", timeout)
    config.setdefault("retries", {"max_attempts": 1})
    options["config_kwargs"] = config
    return options


class Tier:
    """One configured tier.

    Paths given to a tier are relative to its root: object keys, or tierstore's own files
    under ``.tierstore/``. Nothing outside the root can be named.
    """

    def __init__(self, config: TierConfig):
        self.config = config
        protocol, _ = split_protocol(config.url)
        self.protocol = protocol or "file"
        cls = fsspec.get_filesystem_class(self.protocol)
        self.is_async = bool(getattr(cls, "async_impl", False))
        self.root = cls._strip_protocol(config.url).rstrip("/")
        self._options = dict(config.options)
        if self.protocol == "s3":
            _s3_defaults(self._options, config.timeout)
        if self.protocol == "file":
            self._options.setdefault("auto_mkdir", True)
        self._pid = os.getpid()
        self._sync_fs: fsspec.AbstractFileSystem | None = None
        self._loop_fs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = \
            weakref.WeakKeyDictionary()
        self._connecting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                    asyncio.Task[Any]] = weakref.WeakKeyDictionary()
        self._limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = \
            weakref.WeakKeyDictionary()
        self.single_put_max = SINGLE_PUT_MAX
        # Full path -> the receipt for bytes this process just wrote there: on S3 the ETag
        # the server returned for them, once proven (see _write_s3); on a local folder the
        # checksum of what was handed to the kernel: see written_size().
        self._vouched: dict[str, str] = {}
        self._checks_payload: bool | None = None  # S3: see _server_checks_payload()
        self._probing: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                 asyncio.Task[bool]] = weakref.WeakKeyDictionary()
        self._direct_reads = True  # until the filesystem refuses O_DIRECT
        self._ranges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RangeReader] = \
            weakref.WeakKeyDictionary()  # S3: ranged reads straight into buffers (s3get)
        self._ranges_refused = 0  # in a row: from FAST_PATH_REFUSALS on, reads go as before

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def tier_class(self) -> TierClass:
        return self.config.tier_class

    @property
    def atomic_writes(self) -> bool:
        """Whether a write shows the whole file at its path or nothing (S3: an object
        appears when its PUT or multipart upload completes), so it needs no temporary name."""
        return self.protocol == "s3"

    def __repr__(self) -> str:
        return f"Tier({self.name!r}, {self.tier_class.name.lower()}, {redact(self.config.url)!r})"

    # -- paths -------------------------------------------------------------------------------

    def full_path(self, path: str) -> str:
        """The backend path of ``path``, refusing anything that would leave the root."""
        if path.startswith(RESERVED_PREFIX + "/"):
            inner = path[len(RESERVED_PREFIX) + 1:]
            validate_key(inner)
        else:
            validate_key(path)
        full = posixpath.normpath(f"{self.root}/{path}")
        if not full.startswith(self.root + "/"):
            raise InvalidKey(path, f"escapes the root of tier {self.name!r}")
        if self.protocol == "file":
            self._refuse_links(path, full)
        return full

    def _refuse_links(self, path: str, full: str) -> None:
        """Refuse a local path that passes through a symbolic link below the root: one
        planted there (a hot folder shared with other pods) would lead writes, reads and
        removals out of the tier. Links above the root (``/data -> /mnt/nvme``) are the
        operator's and fine. One ``lstat`` per name below the root, up to the first that
        does not exist (what an operation then creates is a folder or a file, not a link).
        A link put in place between this check and the operation is not seen."""
        here = self.root
        for name in full[len(self.root) + 1:].split("/"):
            here = f"{here}/{name}"
            try:
                if not stat.S_ISLNK(os.lstat(here).st_mode):
                    continue
            except OSError:  # missing (or unreadable): the operation itself finds out
                return
            link = here[len(self.root) + 1:]
            with contextlib.suppress(OSError):
                link += f" (to {os.readlink(here)})"
            raise TierError(self.name, f"access to {path!r}", f"{link} is a symbolic link "
                            "inside the tier's root; tierstore follows no links there")

    @staticmethod
    def partial_path(key: str, *, mark: bool = False) -> str:
        """A fresh temporary name for bytes of ``key`` that are not yet verified: a unique
        prefix and as much of the key's last segment as a name may hold (any valid key's).
        With ``mark``, the name of a claim that only marks a fetch and writes nothing
        (:func:`tierstore.keys.is_mark`)."""
        prefix = f"{uuid.uuid4().hex}-"
        room = MAX_SEGMENT_BYTES - len(prefix)
        name = posixpath.basename(key).encode()[:room].decode(errors="ignore")
        return f"{MARK_DIR if mark else PARTIAL_DIR}/{prefix}{name}"

    # -- filesystem instances ----------------------------------------------------------------

    def _after_fork(self) -> None:
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._sync_fs = None
            self._loop_fs = weakref.WeakKeyDictionary()
            self._connecting = weakref.WeakKeyDictionary()
            self._limits = weakref.WeakKeyDictionary()
            self._vouched = {}
            self._probing = weakref.WeakKeyDictionary()
            self._ranges = weakref.WeakKeyDictionary()

    async def connect(self) -> None:
        """Make this loop's client now rather than at the first request: nothing is sent.
        For an S3 tier that parses botocore's models (the service's and ``endpoints``: ~15
        MiB of objects) into the process's loader, which DataLoader workers forked afterwards
        inherit parsed."""
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
        # a copy all the way down: botocore rewrites the ``retries`` it is given in place
        options = copy.deepcopy(self._options)
        retries = options.pop("retries", 2)  # s3fs's own retry count is an attribute
        fs = fsspec.filesystem(self.protocol, asynchronous=True, loop=loop,
                               skip_instance_cache=True, **options)
        if hasattr(fs, "retries"):
            fs.retries = retries
        if hasattr(fs, "set_session"):
            if getattr(fs, "session", None) is None and isinstance(getattr(fs, "kwargs", None),
                                                                    dict):
                fs.session = _session(fs.kwargs)  # as s3fs makes it, with the shared loader
            await self._guard("connect", fs.set_session())
        self._loop_fs[loop] = fs
        return fs

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
        """Close the client sessions this tier opened, on every loop it ran on (s3fs keeps
        an aiohttp session per instance; zarr, for one, runs a loop of its own)."""
        current = asyncio.get_running_loop()
        for loop, fs in list(self._loop_fs.items()):
            s3 = getattr(fs, "_s3", None)
            if s3 is None:
                continue
            if loop is current:
                await s3.__aexit__(None, None, None)
            elif loop.is_running():  # another thread's loop (a loader's): close it there
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
                        s3.__aexit__(None, None, None), loop)), 2.0)
            else:  # a loop that is gone: close the sockets (s3fs's close_session would
                # start the close on *this* loop, where the session's futures do not belong)
                with contextlib.suppress(AttributeError):
                    s3._client._endpoint.http_session._connector._close()
        self._loop_fs = weakref.WeakKeyDictionary()
        for loop, reader in list(self._ranges.items()):  # their kept-alive connections
            if loop is not current and loop.is_running():
                loop.call_soon_threadsafe(reader.close)
            else:
                reader.close()
        self._ranges = weakref.WeakKeyDictionary()

    # -- error translation -------------------------------------------------------------------

    def _translate(self, op: str, exc: BaseException) -> TierError:
        names = {type(e).__name__ for e in _chain(exc)}
        text = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError | asyncio.TimeoutError):
            return TierUnavailable(self.name, op, f"timed out after {self.config.timeout:g}s")
        if names & set(_UNAVAILABLE_NAMES) or isinstance(exc, ConnectionError) or (
                isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED,
                                                            errno.EHOSTUNREACH)):
            return TierUnavailable(self.name, op, _one_line(text))
        if _missing_bucket(exc):
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

    # -- operations --------------------------------------------------------------------------

    async def read(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of ``path``; a missing file raises FileNotFoundError."""
        full = self.full_path(path)
        try:
            if start is not None and end is not None and start >= 0 \
                    and self._reads_direct(end - start):
                with contextlib.suppress(_DirectRefused):
                    data: bytes = await self._direct(path, in_thread(
                        read_direct, full, start, end))
                    return data
            data = await self._call("read", "cat_file", full, start=start, end=end)
        except TierError as exc:
            if _gone(exc):
                raise FileNotFoundError(errno.ENOENT, f"{self.name}: missing", path) from exc
            raise
        return data

    async def read_into(self, path: str, start: int, view: memoryview) -> int:
        """Bytes of ``path`` from ``start`` into ``view``, as many as fit (fewer at its end);
        how many. On S3 the response is copied into ``view`` as it arrives (no whole part
        held and joined first); elsewhere a :meth:`read` is copied in. Every copy is made on
        the calling loop, never by another thread, so a read cancelled midway writes no more
        into ``view`` after it is cancelled."""
        if not len(view):
            return 0
        if self._reads_direct(len(view)):
            with contextlib.suppress(_DirectRefused):
                n: int = await self._direct(path, read_direct_into(
                    self.full_path(path), start, view))
                return n
        fs = await self._fs()
        if not (self.is_async and hasattr(fs, "_call_s3")):
            data = await self.read(path, start, start + len(view))
            view[:len(data)] = data
            return len(data)
        if self._ranges_refused < FAST_PATH_REFUSALS:
            with contextlib.suppress(FastPathRefused):
                got: int = await self._read_range(fs, path, start, view)
                return got
        async with self._s3_body(fs, path, Range=f"bytes={start}-{start + len(view) - 1}") \
                as body:
            got = 0
            while got < len(view):
                data = await self._guard("read", body.read(min(STREAM_READ, len(view) - got)))
                if not data:
                    break
                view[got:got + len(data)] = data
                got += len(data)
            return got

    async def _read_range(self, fs: Any, path: str, start: int, view: memoryview) -> int:
        """:meth:`read_into` on S3 straight into ``view`` (:mod:`tierstore.s3get`), within
        the tier's concurrency limit and timeout; :class:`FastPathRefused` where the answer
        is not the whole range (the usual read then says why). A range past the object's
        end is read the usual way, which returns what there is."""
        loop = asyncio.get_running_loop()
        reader = self._ranges.get(loop)
        if reader is None:
            if behind_proxy(fs.s3, fs.s3.meta.endpoint_url):
                self._ranges_refused = FAST_PATH_REFUSALS
                raise FastPathRefused("requests go through a proxy")
            reader = self._ranges[loop] = RangeReader(
                fs.s3, connect_timeout=min(5.0, self.config.timeout))
        bucket, key, _ = fs.split_path(self.full_path(path))
        try:
            async with self._limit(), asyncio.timeout(self.config.timeout):
                got = await reader.read_into(bucket, key, start, view)
        except FastPathRefused as exc:
            self._ranges_refused += 1
            log.debug("tier %r: a direct ranged read was refused (%s); reading as usual",
                      self.name, exc)
            raise
        except (OSError, TimeoutError) as exc:
            raise self._translate("read", exc) from exc
        self._ranges_refused = 0
        return got

    def _reads_direct(self, nbytes: int) -> bool:
        """Whether a read of ``nbytes`` goes past the page cache (:mod:`tierstore.direct`)."""
        return (self.protocol == "file" and self._direct_reads
                and DIRECT_READ_MIN <= nbytes <= DIRECT_READ_MAX)

    async def _direct(self, path: str, read: Coroutine[Any, Any, Any]) -> Any:
        """Await a local read past the page cache (:mod:`tierstore.direct`); raises
        :class:`_DirectRefused` (and reads never try again) where the filesystem refuses."""
        async with self._limit():
            try:
                return await self._guard("read", read)
            except TierError as exc:
                if _gone(exc):
                    raise FileNotFoundError(errno.ENOENT, f"{self.name}: missing",
                                            path) from exc
                if not isinstance(exc.__cause__, OSError) or exc.__cause__.errno != errno.EINVAL:
                    raise
        self._direct_reads = False
        raise _DirectRefused

    async def _file_info(self, full: str) -> dict[str, Any] | None:
        """What the backend says of the file ``full`` (fsspec's ``info``); None when there
        is no such file (nothing, or a folder)."""
        try:
            info = await self._call("stat", "info", full)
        except TierError as exc:
            if _gone(exc):
                return None
            raise
        return None if info.get("type") == "directory" else dict(info)

    async def size(self, path: str) -> int | None:
        """The size of ``path``, or None when there is no such file."""
        info = await self._file_info(self.full_path(path))
        return None if info is None else int(info["size"])

    async def written_size(self, path: str, digest: str | None = None
                           ) -> tuple[int | None, bool]:
        """The size of a file this process has just written (None: no such file), and
        whether the backend vouches for its bytes: on S3, when the server proved it received
        the bytes :meth:`write` sent (see :meth:`_write_s3`) and the object at ``path``
        still has the ETag it returned then; on a local folder, when the
        bytes :meth:`write` handed the kernel hash to ``digest`` and the file is still the
        one written (inode and modification time; reading the bytes back would read the page
        cache they were just copied into, not the disk). Otherwise (no proof: an ETag that
        is not the MD5 of the bytes, as with SSE-KMS, on a server that does not check signed
        bodies; other backends) False: the caller reads the bytes back."""
        full = self.full_path(path)
        expected = self._vouched.pop(full, None)
        info = await self._file_info(full)
        if info is None:
            return None, False
        if self.protocol == "file":  # the file written, unchanged since (inode, mtime)
            return int(info["size"]), expected == _receipt(info, digest)
        etag = _etag(info.get("ETag") or info.get("etag"))
        return int(info["size"]), expected is not None and etag == expected

    async def version(self, path: str) -> tuple[int, str | None] | None:
        """``path``'s size and version now (see :class:`TierFile`); None if it is gone."""
        info = await self._file_info(self.full_path(path))
        return None if info is None else (int(info.get("size") or 0), _version(info))

    async def hash(self, path: str, size: int) -> Hasher:
        """Read ``path`` whole and hash it: a local file in one thread call (one reused
        buffer, no bytes objects), anything else as :meth:`iter_read` streams it."""
        if self.protocol == "file":
            async with self._limit():
                try:
                    return await self._guard("read", asyncio.to_thread(
                        checksum_file, self.full_path(path)))
                except TierError as exc:
                    if _gone(exc):
                        raise FileNotFoundError(errno.ENOENT, f"{self.name}: missing",
                                                path) from exc
                    raise
        hasher = Hasher()
        async for chunk in self.iter_read(path, size):
            hasher.update(chunk)
        return hasher

    async def iter_read(self, path: str, size: int, part: int = PART_SIZE
                        ) -> AsyncIterator[Chunk]:
        """Stream ``path``: on S3 one GET read as it arrives (in chunks of about
        :data:`STREAM_CHUNK`); a local file as :func:`~tierstore.direct.stream_file` reads
        it, several reads ahead, each chunk lent only until the next is asked for (copy
        what you keep); elsewhere ranged reads of ``part`` bytes, one read ahead."""
        if size <= 0:
            return  # a ranged read of nothing is an error on some servers (HTTP 416)
        if self.protocol == "file":
            async with self._limit():
                try:
                    async for view in stream_file(self.full_path(path), size):
                        yield view
                except FileNotFoundError:
                    raise
                except OSError as exc:
                    raise self._translate("read", exc) from exc
            return
        fs = await self._fs()
        if self.is_async and hasattr(fs, "_call_s3"):
            async for chunk in self._stream_s3(fs, path):
                yield chunk
            return
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

    async def _stream_s3(self, fs: Any, path: str) -> AsyncIterator[bytes]:
        """The object at ``path`` as one GET, its body read as it arrives: no ranged
        requests, and no whole part held and joined before the first byte moves on. Each
        chunk waits at most the tier's timeout."""
        async with self._s3_body(fs, path) as body:
            held: list[bytes] = []
            have = 0
            while True:
                data = await self._guard("read", body.read(STREAM_READ))
                if data:
                    held.append(data)
                    have += len(data)
                if have >= STREAM_CHUNK or (not data and held):
                    yield held[0] if len(held) == 1 else b"".join(held)
                    held, have = [], 0
                if not data:
                    return

    @contextlib.asynccontextmanager
    async def _s3_body(self, fs: Any, path: str, **get: Any) -> AsyncIterator[Any]:
        """The body of a GET of ``path`` (``get``: more of its parameters, a Range) within
        the tier's concurrency limit, closed after; a missing object is FileNotFoundError."""
        bucket, key, _ = fs.split_path(self.full_path(path))
        async with self._limit():
            try:
                response = await self._guard("read", fs._call_s3("get_object", Bucket=bucket,
                                                                 Key=key, **get))
            except TierError as exc:
                if _gone(exc):
                    raise FileNotFoundError(errno.ENOENT, f"{self.name}: missing",
                                            path) from exc
                raise
            body = response["Body"]
            try:
                yield body
            finally:
                body.close()

    async def write(self, path: str, chunks: AsyncIterable[Chunk]) -> int:
        """Stream ``chunks`` into ``path`` (replacing it); returns the bytes written."""
        full = self.full_path(path)
        fs = await self._fs()
        if self.is_async and hasattr(fs, "_call_s3"):
            return await self._write_s3(fs, full, chunks)
        if self.is_async:  # an async fs without multipart: one request, held in memory
            data = b"".join([c async for c in chunks])
            await self._call("write", "pipe_file", full, data)
            return len(data)
        return await self._write_blocking(fs, full, chunks)

    async def _write_blocking(self, fs: Any, full: str, chunks: AsyncIterable[Chunk]) -> int:
        """A local file (or another blocking backend's) written chunk by chunk in threads; on
        a local folder past the page cache where it can (:mod:`tierstore.direct`), each chunk
        hashed as it is handed to the kernel, the receipt :meth:`written_size` checks. A
        :class:`~tierstore.localcopy.LocalFile` a local folder copies in the kernel instead,
        where that lands its checksum."""
        self._vouched.pop(full, None)
        local = self.protocol == "file"
        if local and isinstance(chunks, LocalFile):
            copied = await self._copy_local(full, chunks)
            if copied is not None:
                return copied
        hasher = Hasher() if local else None
        async with self._limit():
            handle = await self._guard("write", asyncio.to_thread(_open_local, full) if local
                                       else asyncio.to_thread(fs.open, full, "wb"))
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
        if hasher is not None:
            info = await self._call("stat", "info", full)
            self._vouched[full] = _receipt(info, hasher.hexdigest())
        return written

    async def _copy_local(self, full: str, source: LocalFile) -> int | None:
        """``source`` copied to ``full`` by the kernel (:mod:`tierstore.localcopy`), its
        bytes durable and vouched for as a streamed write's are; None when they did not
        land as ``source.checksum`` says or the kernel would not copy (nothing vouched)."""
        hasher = Hasher()
        try:
            async with self._limit():
                copy = await self._guard("write", asyncio.to_thread(KernelCopy, source.path,
                                                                    full))
                try:
                    for start in range(0, source.size, COPY_PIECE):
                        want = min(COPY_PIECE, source.size - start)
                        got = await self._guard("write", asyncio.to_thread(
                            copy.piece, start, want, hasher))
                        if got < want:
                            break
                        if source.pace is not None:
                            await source.pace(got)
                finally:
                    landed = hasher.size == source.size and hasher.hexdigest() == source.checksum
                    await self._guard("write", asyncio.to_thread(copy.close))
        except (TierError, OSError) as exc:  # the stream decides what was wrong
            log.debug("tier %r: a kernel copy of %s failed (%s); streaming it", self.name,
                      source.path, exc)
            return None
        if not landed:
            log.warning("tier %r: a kernel copy of %s did not land its checksum; streaming it",
                        self.name, source.path)
            return None
        info = await self._call("stat", "info", full)
        self._vouched[full] = _receipt(info, hasher.hexdigest())
        return hasher.size

    async def _write_s3(self, fs: Any, full: str, chunks: AsyncIterable[Chunk]) -> int:
        """One PUT up to ``single_put_max`` bytes, else a multipart upload with up to
        :data:`PARTS_IN_FLIGHT` parts sent at once.

        What the server received is proven, without reading it back, by one of two receipts:
        where the server refuses a request body that does not match the SHA-256 its request
        was signed with (:meth:`_server_checks_payload`; botocore signs every body it sends
        over plain HTTP), its acceptance of each request; elsewhere the ETag it returns, the
        MD5 of what it received (of each part's MD5s, for a multipart upload), compared with
        the MD5 of the bytes sent, computed in a thread on the way. See :meth:`written_size`.
        """
        self._vouched.pop(full, None)
        bucket, key, _ = fs.split_path(full)
        md5 = _md5 if not await self._server_checks_payload(fs) else None
        held: list[bytes] = []  # chunks not yet sent; joined only when a request needs it
        written = 0
        sent: dict[int, tuple[str, bytes]] = {}  # part number: its ETag and MD5
        sending: list[asyncio.Task[None]] = []  # every part's send, in order
        upload_id: str | None = None

        async def request(method: str, data: bytes, **params: Any) -> tuple[Any, bytes]:
            """The server's answer to sending ``data``, and their MD5 where it is needed."""
            call = self._call_s3(fs, method, Bucket=bucket, Key=key, Body=data, **params)
            if md5 is None:
                return await call, b""
            out, digest = await asyncio.gather(call, asyncio.to_thread(md5, data))
            return out, digest

        async def send(number: int, data: bytes) -> None:
            out, digest = await request("upload_part", data, UploadId=upload_id,
                                        PartNumber=number)
            sent[number] = (out["ETag"], digest)

        async def flush(data: bytes) -> None:
            nonlocal upload_id
            if upload_id is None:
                created = await self._call_s3(fs, "create_multipart_upload", Bucket=bucket,
                                              Key=key)
                upload_id = created["UploadId"]
            while len(busy := [t for t in sending if not t.done()]) >= PARTS_IN_FLIGHT:
                await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)
            for task in sending:
                if task.done():
                    task.result()  # a part that failed fails the upload now
            sending.append(asyncio.ensure_future(send(len(sending) + 1, data)))

        try:
            async for chunk in chunks:
                held.append(chunk if type(chunk) is bytes else bytes(chunk))
                written += len(chunk)
                if upload_id is not None or written > self.single_put_max:
                    while sum(map(len, held)) >= PART_SIZE:
                        await flush(_take(held, PART_SIZE))
            if upload_id is None:
                data = held[0] if len(held) == 1 else b"".join(held)
                held.clear()
                out, digest = await request("put_object", data)
                expected = digest.hex()
            else:
                if held:
                    await flush(b"".join(held))
                for task in sending:
                    await task
                numbers = sorted(sent)
                parts = [{"PartNumber": n, "ETag": sent[n][0]} for n in numbers]
                out = await self._call_s3(fs, "complete_multipart_upload", Bucket=bucket,
                                          Key=key, UploadId=upload_id,
                                          MultipartUpload={"Parts": parts})
                upload_id = None
                expected = "" if md5 is None else \
                    f"{md5(b''.join(sent[n][1] for n in numbers)).hex()}-{len(numbers)}"
            etag = _etag(out.get("ETag"))
            if etag is not None and (md5 is None or etag == expected):
                self._vouched[full] = etag
            return written
        finally:
            for task in sending:
                task.cancel()  # done ones: nothing happens
            await asyncio.gather(*sending, return_exceptions=True)
            if upload_id is not None:  # an interrupted upload leaves no parts billed behind
                await asyncio.shield(self._abort(fs, bucket, key, upload_id))

    async def _server_checks_payload(self, fs: Any) -> bool:
        """Whether this S3 server refuses a request whose body does not match the SHA-256
        it was signed with, and this client signs bodies (botocore does over plain HTTP; over
        HTTPS it sends them unsigned). Found once, by a probe (:func:`_probe_payload_check`),
        at the first write; until then, and where the probe cannot tell, False."""
        if self._checks_payload is None:
            loop = asyncio.get_running_loop()
            if (probing := self._probing.get(loop)) is None:
                probing = self._probing[loop] = loop.create_task(
                    _probe_payload_check(self, fs))
            self._checks_payload = await asyncio.shield(probing)
        return self._checks_payload

    async def _abort(self, fs: Any, bucket: str, key: str, upload_id: str) -> None:
        with contextlib.suppress(Exception):  # best effort; a lifecycle rule reaps the rest
            await fs._call_s3("abort_multipart_upload", Bucket=bucket, Key=key,
                              UploadId=upload_id)

    async def _call_s3(self, fs: Any, method: str, **kwargs: Any) -> Any:
        async with self._limit():
            return await self._guard(f"write ({method})", fs._call_s3(method, **kwargs))

    async def remove(self, path: str) -> None:
        """Delete ``path``; deleting what is already gone is not an error."""
        full = self.full_path(path)
        self._vouched.pop(full, None)
        if self.protocol == "file":
            await self._guard("delete", asyncio.to_thread(_remove_file, full, self.root))
            return
        try:
            await self._call("delete", "rm_file", full)
        except TierError as exc:
            if _missing_bucket(exc):
                return  # nothing can exist in a bucket that does not
            if not _gone(exc):
                raise

    async def abort_uploads(self, path: str) -> None:
        """Abort unfinished multipart uploads of ``path`` (S3 keeps their parts, billed and
        invisible to listings, until someone does)."""
        fs = await self._fs()
        if not hasattr(fs, "_call_s3"):
            return
        bucket, key, _ = fs.split_path(self.full_path(path))
        try:
            found = await self._call_s3(fs, "list_multipart_uploads", Bucket=bucket, Prefix=key)
        except TierError as exc:
            if _missing_bucket(exc):
                return  # no bucket, no uploads
            raise
        for upload in found.get("Uploads", []):
            if upload["Key"] == key:
                await self._abort(fs, bucket, key, upload["UploadId"])

    async def rename(self, src: str, dst: str) -> None:
        """Move ``src`` to ``dst`` on this tier (atomic on local folders, a copy on S3)."""
        if self.protocol == "file":
            src_full, dst_full = self.full_path(src), self.full_path(dst)
            await self._guard("rename", asyncio.to_thread(_replace_file, src_full, dst_full))
            return
        await self._call("rename", "mv_file" if self.is_async else "mv", self.full_path(src),
                         self.full_path(dst))

    async def sync(self, path: str) -> None:
        """Make ``path``'s bytes and its name durable: fsync the file, then every folder from
        its own up to the root (any of them may be new). Local folders only, unless the
        tier's ``fsync`` is off; an object store's write is durable when it is acknowledged."""
        if self.protocol == "file" and self.config.fsync:
            await self._guard("sync", asyncio.to_thread(_sync_file, self.full_path(path),
                                                        self.root))

    async def walk(self, folder: str = "") -> list[TierFile]:
        """Every file under the root (under its ``folder``, if given), tierstore's own
        included; in a local folder, the regular files reached without following a link
        (see :meth:`full_path`)."""
        fs = await self._fs()
        if hasattr(fs, "invalidate_cache"):
            fs.invalidate_cache()
        top = self.full_path(folder.rstrip("/")) if folder.strip("/") else self.root
        try:
            found = await self._call("list", "find", top, detail=True)
        except TierError as exc:
            if _gone(exc):
                return []
            raise
        prefix = self.root + "/"
        return sorted(
            (TierFile(name[len(prefix):], int(info.get("size") or 0), _version(info))
             for name, info in found.items()
             if name.startswith(prefix) and info.get("type") != "directory"
             and not info.get("islink")),
            key=lambda f: f.path,
        )


def _version(info: Mapping[str, Any]) -> str | None:
    """What tells a file from one written over it, from an fsspec listing or info: an S3
    object's ETag, a local file's modification time and inode."""
    if (etag := _etag(info.get("ETag") or info.get("etag"))) is not None:
        return etag
    if info.get("mtime") is not None and info.get("ino") is not None:
        return f"{info['mtime']!r}:{info['ino']}"
    return None


def _receipt(info: Mapping[str, Any], digest: str | None) -> str:
    """A local write's receipt: the file as written (its version: modification time and
    inode) and the checksum of what was handed to the kernel."""
    return f"{_version(info)}:{digest}"


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in out:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def _replace_file(src: str, dst: str, tries: int = 3) -> None:
    """Atomic rename into place; an empty folder left where the file goes is removed first
    (a key may take the name of a folder whose objects are gone). A folder another process
    removes as it empties (:func:`_remove_file`) between making it and the rename is made
    again."""
    for attempt in range(tries):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.isdir(dst):
            os.rmdir(dst)  # fails, as it should, if the folder is not empty
        try:
            os.replace(src, dst)
            return
        except FileNotFoundError:
            if attempt == tries - 1 or not os.path.exists(src):
                raise


def _session(kwargs: dict[str, Any]) -> Any:
    """An aiobotocore session as s3fs would make it from ``kwargs`` (its leftover keyword
    arguments: a profile, say), reading botocore's models through the process's loader."""
    import aiobotocore.session
    from botocore.loaders import create_loader

    session = aiobotocore.session.AioSession(**kwargs)
    path = session.get_config_variable("data_path")
    loader = _LOADERS.get(path)
    if loader is None:
        loader = _LOADERS.setdefault(path, create_loader(path))
    session.register_component("data_loader", loader)
    return session


def _sync_file(full: str, root: str) -> None:
    """fsync a file, then its folder and each folder above it up to ``root`` (their
    entries: a power cut may otherwise lose a renamed or newly created name). The file's
    pages, clean now, leave the page cache: a replica is written past it or copied by the
    kernel (:mod:`tierstore.localcopy`), and is read past it too."""
    paths, folder = [full], os.path.dirname(full)
    while folder == root or folder.startswith(root + "/"):
        paths.append(folder)
        folder = os.path.dirname(folder)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            if path == full:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


class _DirectRefused(Exception):
    """The filesystem refuses O_DIRECT: read the usual way."""


def _open_local(full: str) -> DirectWriter:
    os.makedirs(os.path.dirname(full), exist_ok=True)
    return DirectWriter(full)


def _write_hashed(handle: Any, chunk: Chunk, hasher: Hasher | None) -> None:
    if hasher is not None:
        hasher.update(chunk)
    handle.write(chunk)


def _remove_file(full: str, root: str) -> None:
    """Remove a file and the folders it leaves empty, up to the root; tierstore's own folder
    (temporary names) stays, as writers of other processes may be about to use it."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(full)
    parent = os.path.dirname(full)
    reserved = f"{root}/{RESERVED_PREFIX}"
    while parent.startswith(root + "/") and not (
            parent == reserved or parent.startswith(reserved + "/")):
        try:
            os.rmdir(parent)
        except OSError:  # not empty (or already gone): stop climbing
            break
        parent = os.path.dirname(parent)


def _gone(exc: TierError) -> bool:
    """The backend said the file is not there (and not that the whole tier is away)."""
    return isinstance(exc.__cause__, FileNotFoundError) and not isinstance(exc, TierUnavailable)


def _missing_bucket(exc: BaseException) -> bool:
    return any("NoSuchBucket" in type(e).__name__ or (
        isinstance(e, FileNotFoundError) and "bucket does not exist" in str(e).lower())
        for e in _chain(exc))


async def _probe_payload_check(tier: Tier, fs: Any) -> bool:
    """Put a one-byte probe object under the tier's reserved folder, its body changed after
    botocore signed it: a server that checks signed bodies refuses it (``XAmzContentSHA256
    Mismatch``, or ``BadDigest``); one that stores it does not check (it is removed again,
    with any probe object a process killed meanwhile left; :meth:`Store.audit` ignores
    them). Any other answer, or a body sent unsigned, says nothing: False."""
    bucket, key, _ = fs.split_path(tier.full_path(f"{PROBE_DIR}/{uuid.uuid4().hex}"))
    signed = False

    def change_body(request: Any, **_: Any) -> None:
        nonlocal signed
        if request.url.split("?")[0].endswith(urllib.parse.quote(key)):
            sha256 = request.headers.get("X-Amz-Content-SHA256", b"")
            signed = (sha256.decode() if isinstance(sha256, bytes) else sha256) == _PROBE_SHA256
            request.body = b"1"  # signed as b"0"

    events = fs.s3.meta.events
    unique = f"tierstore-probe-{key}"
    events.register("before-send.s3.PutObject", change_body, unique_id=unique)
    try:
        await tier._call_s3(fs, "put_object", Bucket=bucket, Key=key, Body=b"0")
    except TierError as exc:
        checks = signed and any(code in str(exc) for code in _PAYLOAD_REFUSED)
        log.debug("tier %r: a body changed after signing was refused (%s): %s", tier.name,
                  "the server checks bodies" if checks else "not for that", exc)
        return checks
    finally:
        events.unregister("before-send.s3.PutObject", unique_id=unique)
    with contextlib.suppress(Exception):  # this probe's object, and any a killed one left
        await fs._rm(await fs._find(tier.full_path(PROBE_DIR)))
    return False


def _take(held: list[bytes], size: int) -> bytes:
    """The first ``size`` bytes of ``held`` (taken out of it), copied only when they span
    chunks or end inside one."""
    if len(held[0]) == size:
        return held.pop(0)
    joined = b"".join(held)
    held[:] = [joined[size:]] if len(joined) > size else []
    return joined[:size]


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _etag(etag: object) -> str | None:
    """An S3 ETag without its quotes, in lower case (an MD5 in hex, ``-N`` after it for a
    multipart upload, where it is one); None if there is none."""
    text = etag.strip().strip('"').lower() if isinstance(etag, str) else ""
    return text or None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
