"""A tier on S3-compatible object storage (AWS S3, Ceph RGW, MinIO) through s3fs.

What s3fs offers as fsspec's generic operations is used as such (``info``, ``find``,
``rm_file``); what this backend does better goes to the S3 API through s3fs's client
(``fs._call_s3``, ``fs.s3``, ``fs.split_path``): GETs streamed as they arrive, ranged reads
straight into the caller's buffers (:mod:`tierstore.s3get`), multipart uploads with parts in
flight and a receipt for every byte sent, aborting leftover uploads, closing the client's
sessions on every loop. Those are s3fs's internals where fsspec has no public way;
``tests/test_tiers.py::test_the_s3fs_internals_the_s3_tier_relies_on`` fails when s3fs or
aiobotocore changes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import mmap
import os
import posixpath
import urllib.parse
import uuid
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any

from ..checksum import checksum
from ..direct import lent_buffers
from ..errors import TierError
from ..keys import RESERVED_PREFIX
from ..localcopy import LocalFile
from ..s3get import FastPathRefused, RangeReader, behind_proxy
from .base import PART_SIZE, Chunk, Tier, etag_of, gone, missing_bucket, past_end

__all__ = ["PROBE_DIR", "S3Tier", "close_sockets"]

log = logging.getLogger("tierstore.tier")

STREAM_CHUNK = 4 * 2**20  # a streamed S3 read hands on about this much at a time
STREAM_READ = 2**20  # ...read from the response body in pieces of at most this
# An object up to this size is one PUT (held in memory meanwhile, as s3fs does up to 100
# MiB); larger ones are multipart uploads of PART_SIZE parts. On moto here, a 16 MiB object
# went up at 211 MB/s as one PUT and 131 MB/s as two parts.
SINGLE_PUT_MAX = 4 * PART_SIZE
FAST_PATH_REFUSALS = 3  # direct ranged reads refused in a row before a tier stops trying them
LIST_PAGE = 1000  # keys per page of a listing (S3's most)
PARTS_IN_FLIGHT = 4  # parts of one multipart upload sent at once (boto3's transfers send 10)
PROBE_DIR = f"{RESERVED_PREFIX}/probe"
_PROBE_SHA256 = hashlib.sha256(b"0").hexdigest()
_PAYLOAD_REFUSED = ("XAmzContentSHA256Mismatch", "BadDigest")

_LOADERS: dict[str | None, Any] = {}  # botocore's data loaders, by data path: one per process,
# so botocore's models (the S3 service's, ``endpoints``: ~15 MiB of objects, 70-150 ms to
# parse on 2 cores) are parsed once for every session here, and not again in a DataLoader
# worker forked after (each loop's client has a session of its own: credentials that refresh
# hold an asyncio lock, which no two loops may share)


class S3Tier(Tier, protocols=("s3", "s3a")):
    """A tier in an S3 bucket (a prefix of one)."""

    atomic_writes = True
    receipts = True  # where the server checks signed bodies, or its ETag is the MD5
    multipart = True

    def __init__(self, config: Any):
        super().__init__(config)
        self.single_put_max = SINGLE_PUT_MAX
        self._checks_payload: bool | None = None  # see _server_checks_payload()
        self._probing: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                 asyncio.Task[bool]] = weakref.WeakKeyDictionary()
        self._ranges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RangeReader] = \
            weakref.WeakKeyDictionary()  # ranged reads straight into buffers (s3get)
        self._ranges_refused = 0  # in a row: from FAST_PATH_REFUSALS on, reads go as before

    def _configure(self, options: dict[str, Any]) -> dict[str, Any]:
        """Fail fast against a dead server: the read path fails over, it does not wait."""
        options.setdefault("use_listings_cache", False)
        config = dict(options.get("config_kwargs") or {})
        # Third-party S3 servers (Ceph RGW 16, older MinIO) reject botocore's default
        # trailing CRC checksums; tierstore verifies content with its own checksum anyway.
        config.setdefault("request_checksum_calculation", "when_required")
        config.setdefault("response_checksum_validation", "when_required")
        config.setdefault("connect_timeout", min(5.0, self.config.timeout))
        config.setdefault("read_timeout", self.config.timeout)
        config.setdefault("retries", {"max_attempts": 1})
        options["config_kwargs"] = config
        return options

    def _forget_clients(self) -> None:
        super()._forget_clients()
        self._probing = weakref.WeakKeyDictionary()
        self._ranges = weakref.WeakKeyDictionary()

    async def connect(self) -> None:
        """Make this loop's client now: that parses botocore's models (the service's and
        ``endpoints``: ~15 MiB of objects) into the process's loader, which DataLoader
        workers forked afterwards inherit parsed. Nothing is sent."""
        await super().connect()

    async def _opened(self, fs: Any) -> None:
        """Open the client's session, made as s3fs makes it but with the process's shared
        loader of botocore's models."""
        if getattr(fs, "session", None) is None and isinstance(getattr(fs, "kwargs", None),
                                                                dict):
            fs.session = _session(fs.kwargs)
        await self._guard("connect", fs.set_session())

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
                close_sockets(s3)
        await super().close()
        for loop, reader in list(self._ranges.items()):  # their kept-alive connections
            if loop is not current and loop.is_running():
                loop.call_soon_threadsafe(reader.close)
            else:
                reader.close()
        self._ranges = weakref.WeakKeyDictionary()

    async def _call_s3(self, fs: Any, method: str, **kwargs: Any) -> Any:
        async with self._limit():
            return await self._guard(f"write ({method})", fs._call_s3(method, **kwargs))

    # -- reads -------------------------------------------------------------------------------

    async def read_into(self, path: str, start: int, view: memoryview) -> int:
        """The response copied into ``view`` as it arrives (no whole part held and joined
        first), by the direct ranged read where it can (:mod:`tierstore.s3get`)."""
        if not len(view):
            return 0
        fs = await self._fs()
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

    async def _read_range(self, fs: Any, path: str, start: int, view: memoryview, *,
                          total: int | None = None) -> int:
        """:meth:`read_into` straight into ``view`` (:mod:`tierstore.s3get`), within the
        tier's concurrency limit and timeout; :class:`FastPathRefused` where the answer is
        not the whole range (of an object of ``total`` bytes, where given: the usual read
        then says why). A range past the object's end is read the usual way, which returns
        what there is."""
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
                got = await reader.read_into(bucket, key, start, view, total=total)
        except FastPathRefused as exc:
            self._ranges_refused += 1
            log.debug("tier %r: a direct ranged read was refused (%s); reading as usual",
                      self.name, exc)
            raise
        except (OSError, TimeoutError) as exc:
            raise self._translate("read", exc) from exc
        self._ranges_refused = 0
        return got

    async def iter_read(self, path: str, size: int, part: int = PART_SIZE
                        ) -> AsyncIterator[Chunk]:
        """Stream ``path``. Where the direct ranged read works (:mod:`tierstore.s3get`), as
        ranged GETs of ``part`` bytes received straight into two page-aligned buffers in
        turn, the next range arriving while the caller has the last: each chunk a view, lent
        until the next is asked for, which a local tier writes past the page cache without
        a copy. Else (or from where a ranged read is refused) as one GET read as it arrives
        (in chunks of about :data:`STREAM_CHUNK`). Each request waits at most the tier's
        timeout."""
        if size <= 0:
            return
        fs = await self._fs()
        start = 0
        if self._ranges_refused < FAST_PATH_REFUSALS:
            with contextlib.suppress(FastPathRefused), lent_buffers(part) as buffers:
                async for view in self._ranges_into(fs, path, size, buffers):
                    yield view
                    start += len(view)
        if start < size:
            async for chunk in self._stream(fs, path, start):
                yield chunk

    async def _ranges_into(self, fs: Any, path: str, size: int,
                           buffers: tuple[mmap.mmap, mmap.mmap]) -> AsyncIterator[memoryview]:
        """``path``'s bytes as views of ``buffers`` (each ``part`` long) in turn, one range
        read ahead; :class:`FastPathRefused` where a range is (nothing of it yielded), as
        where the object is not ``size`` bytes long."""
        part = len(buffers[0])

        def fetch(index: int) -> asyncio.Future[int]:
            start = index * part
            view = memoryview(buffers[index % 2])[:min(part, size - start)]
            return asyncio.ensure_future(self._read_range(fs, path, start, view, total=size))

        count = -(-size // part)
        pending: asyncio.Future[int] | None = fetch(0)
        try:
            for index in range(count):
                assert pending is not None
                got = await pending
                pending = fetch(index + 1) if index + 1 < count else None
                yield memoryview(buffers[index % 2])[:got]
        finally:
            if pending is not None and not pending.done():  # its buffer is written no more
                pending.cancel()  # once it is cancelled: see RangeReader.read_into
                await asyncio.wait([pending])

    async def _stream(self, fs: Any, path: str, start: int) -> AsyncIterator[bytes]:
        """``path`` from ``start`` on as one GET read as it arrives, in chunks of about
        :data:`STREAM_CHUNK` (nothing where it ends before ``start``)."""
        try:
            async with self._s3_body(fs, path, **({"Range": f"bytes={start}-"} if start
                                                   else {})) as body:
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
        except TierError as exc:
            if not (start and past_end(exc)):
                raise

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
                if gone(exc):
                    raise self._missing(path) from exc
                raise
            body = response["Body"]
            try:
                yield body
            finally:
                body.close()

    # -- writes ------------------------------------------------------------------------------

    async def written_size(self, path: str, digest: str | None = None
                           ) -> tuple[int | None, bool]:
        """The size of an object this process has just written, and whether the server
        proved it received the bytes :meth:`write` sent and the object at ``path`` still has
        the ETag it returned then. No proof (an ETag that is not the MD5 of the bytes, as
        with SSE-KMS, on a server that does not check signed bodies): False, and the caller
        reads the bytes back."""
        full = self.full_path(path)
        expected = self._vouched.pop(full, None)
        info = await self._file_info(full)
        if info is None:
            return None, False
        etag = etag_of(info.get("ETag") or info.get("etag"))
        return int(info["size"]), expected is not None and etag == expected

    async def _read_local(self, source: LocalFile) -> AsyncIterable[Chunk]:
        """A local file that goes up as one PUT, read whole in one call (one copy, as s3fs
        reads what it puts) and checked against its checksum, as one chunk; where it does not
        hash to its checksum, its verified stream (which then tells the source was wrong)."""
        try:
            data = await asyncio.to_thread(_read_checked, source)
        except OSError as exc:  # the stream tells the source's error as the source's
            log.debug("tier %r: %s could not be read whole (%s); streaming it", self.name,
                      source.path, exc)
            return source.chunks
        if data is None:
            log.warning("tier %r: %s did not read back as its checksum; streaming it",
                        self.name, source.path)
            return source.chunks
        if source.pace is not None:
            await source.pace(len(data))
        return _once(data)

    async def written_sizes(self, paths: Sequence[str], digests: Sequence[str]
                            ) -> list[tuple[int | None, bool]]:
        """As :meth:`written_size` each, the objects' sizes and ETags read from one listing
        of the range of keys they span (a page per 1,000 keys there) rather than one HEAD
        each; an object the listing does not reach (a range crowded with other keys) gets
        its HEAD."""
        fulls = [self.full_path(path) for path in paths]
        expected = [self._vouched.pop(full, None) for full in fulls]
        listed = await self._listed(fulls)
        out: list[tuple[int | None, bool]] = []
        for full, etag in zip(fulls, expected, strict=True):
            if full in listed:
                size, found = listed[full]
            else:
                info = await self._file_info(full)
                if info is None:
                    out.append((None, False))
                    continue
                size, found = int(info["size"]), etag_of(info.get("ETag") or info.get("etag"))
            out.append((size, etag is not None and found == etag))
        return out

    async def _listed(self, fulls: Sequence[str]) -> dict[str, tuple[int, str | None]]:
        """Size and ETag of the objects among ``fulls`` (full paths in one bucket) that a
        listing of the range they span finds within ``len(fulls) // LIST_PAGE + 3`` pages."""
        if not fulls:
            return {}
        fs = await self._fs()
        bucket = fs.split_path(fulls[0])[0]
        wanted = {fs.split_path(full)[1]: full for full in fulls}
        first, last = min(wanted), max(wanted)
        prefix = posixpath.commonprefix([first, last])
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": LIST_PAGE}
        if first != prefix:  # what sorts before the first key is skipped
            params["StartAfter"] = first[:-1]
        found: dict[str, tuple[int, str | None]] = {}
        for _ in range(len(fulls) // LIST_PAGE + 3):
            page = await self._call_s3(fs, "list_objects_v2", **params)
            for item in page.get("Contents", ()):
                if item["Key"] in wanted:
                    found[wanted[item["Key"]]] = (int(item["Size"]), etag_of(item.get("ETag")))
            keys = [item["Key"] for item in page.get("Contents", ())]
            if not page.get("IsTruncated") or not keys or keys[-1] >= last:
                break
            params["ContinuationToken"] = page["NextContinuationToken"]
            params.pop("StartAfter", None)
        return found

    async def write(self, path: str, chunks: AsyncIterable[Chunk], *,
                    size: int | None = None) -> int:
        """One PUT up to ``single_put_max`` bytes, else a multipart upload with up to
        :data:`PARTS_IN_FLIGHT` parts sent at once.

        What the server received is proven, without reading it back, by one of two receipts:
        where the server refuses a request body that does not match the SHA-256 its request
        was signed with (:meth:`_server_checks_payload`; botocore signs every body it sends
        over plain HTTP), its acceptance of each request; elsewhere the ETag it returns, the
        MD5 of what it received (of each part's MD5s, for a multipart upload), compared with
        the MD5 of the bytes sent, computed in a thread on the way. See :meth:`written_size`.
        """
        full = self.full_path(path)
        self._vouched.pop(full, None)
        fs = await self._fs()
        bucket, key, _ = fs.split_path(full)
        md5 = _md5 if not await self._server_checks_payload(fs) else None
        if isinstance(chunks, LocalFile) and chunks.size <= self.single_put_max:
            chunks = await self._read_local(chunks)
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
            etag = etag_of(out.get("ETag"))
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

    async def abort_uploads(self, path: str) -> None:
        """Abort unfinished multipart uploads of ``path`` (S3 keeps their parts, billed and
        invisible to listings, until someone does)."""
        fs = await self._fs()
        bucket, key, _ = fs.split_path(self.full_path(path))
        try:
            found = await self._call_s3(fs, "list_multipart_uploads", Bucket=bucket, Prefix=key)
        except TierError as exc:
            if missing_bucket(exc):
                return  # no bucket, no uploads
            raise
        for upload in found.get("Uploads", []):
            if upload["Key"] == key:
                await self._abort(fs, bucket, key, upload["UploadId"])


def close_sockets(client: Any) -> None:
    """Close an aiobotocore client's connections without its event loop (one that is gone):
    the connectors of its endpoint's aiohttp sessions (aiobotocore's internals)."""
    http = client._endpoint.http_session
    for session in http._sessions.values():
        session.connector._close()


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


async def _probe_payload_check(tier: S3Tier, fs: Any) -> bool:
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


def _read_checked(source: LocalFile) -> bytes | None:
    """``source``'s bytes if they are its ``size`` and hash to its ``checksum``, else None
    (blocking); its pages leave the page cache after."""
    fd = os.open(source.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.pread(fd, source.size, 0)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return data if len(data) == source.size and checksum(data) == source.checksum else None


async def _once(data: bytes) -> AsyncIterator[Chunk]:
    yield data


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()

