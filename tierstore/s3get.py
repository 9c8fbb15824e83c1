"""Ranged GETs of S3 objects received straight into the caller's buffer.

A loader reads a shard as ranged GETs of a few MiB into buffers it owns. Through aiohttp each
response arrives as a stream of ``bytes`` objects (one per socket read, up to 256 KiB), each
handed through a few layers of Python and then copied into the buffer: on the 2-core
benchmark machine that per-piece work was half of a loader worker's CPU in a cold epoch. Here
the socket reads go into the buffer itself (:class:`asyncio.BufferedProtocol`: the kernel
copies each piece to its place, and Python sees only how many bytes came).

The request is a presigned URL of the object (SigV4 in the query string, made by the tier's
own botocore client, so any credentials it has work, and reused for many ranges), with a
``Range`` header, over a kept-alive HTTP/1.1 connection of a small pool per server. Only the
expected answer is taken: ``206 Partial Content`` with the requested range's length. Anything
else (another status, a redirect, a connection that breaks) raises :class:`FastPathRefused`
and the caller reads the usual way, which gives the usual errors. The URL holds a signature:
it never appears in an error or a log line, only the server's host does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

__all__ = ["FastPathRefused", "RangeReader", "behind_proxy"]

PRESIGN_SECONDS = 3600  # a presigned URL's life...
PRESIGN_REUSE = 1800.0  # ...of which this much is used: a request never meets an expired one
IDLE_CONNECTIONS = 16  # kept-alive connections per server at most
HEAD_LIMIT = 16 * 2**10  # a response's status line and headers fit in this


def behind_proxy(client: Any, endpoint: str) -> bool:
    """Whether requests to ``endpoint`` go through a proxy (botocore's ``proxies``, or the
    environment's ``HTTP(S)_PROXY`` short of ``NO_PROXY``): this module connects directly,
    so it is not used there."""
    if getattr(getattr(getattr(client, "meta", None), "config", None), "proxies", None):
        return True
    parts = urllib.parse.urlsplit(endpoint)
    proxies = urllib.request.getproxies()
    return bool(proxies.get(parts.scheme) or proxies.get("all")) and not (
        parts.hostname and urllib.request.proxy_bypass(parts.hostname))


class FastPathRefused(Exception):
    """The direct read cannot take this answer; the caller reads the usual way."""


@dataclass(frozen=True)
class _Server:
    host: str
    port: int
    tls: bool
    netloc: str  # the Host header, exactly as the URL was signed with it


class _Response(asyncio.BufferedProtocol):
    """One connection; the body of each response is received into the buffer it is given."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._head = bytearray(HEAD_LIMIT)
        self._head_len = 0
        self._body: memoryview | None = None  # where the current response's body goes
        self._got = 0
        self._want = 0
        self._total: int | None = None  # the object's size the answer must show, if known
        self._status = 0
        self._closing = False  # the server said it closes the connection after this answer
        self._done: asyncio.Future[int] | None = None
        self._spare = bytearray(64 * 2**10)  # bytes nobody asked for land here (then: error)

    def expect(self, body: memoryview, done: asyncio.Future[int], total: int | None = None
               ) -> None:
        self._head_len, self._body, self._got, self._want = 0, body, 0, len(body)
        self._status, self._done, self._total = 0, done, total

    @property
    def answered(self) -> bool:
        """Whether any byte of the current (or last) answer came."""
        return self._head_len > 0 or self._status != 0

    @property
    def reusable(self) -> bool:
        return (self.transport is not None and not self.transport.is_closing()
                and not self._closing and self._done is None)

    # -- asyncio's side -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._done is None:  # nothing asked: whatever comes is an error, said below
            return memoryview(self._spare)
        if not self._status:
            return memoryview(self._head)[self._head_len:]
        assert self._body is not None
        return self._body[self._got:] if self._got < self._want else memoryview(self._spare)

    def buffer_updated(self, nbytes: int) -> None:
        done = self._done
        if done is None or done.done():
            self._fail(FastPathRefused("bytes came that no request asked for"))
            return
        if not self._status:
            self._head_len += nbytes
            self._parse_head()
            return
        if self._got >= self._want:
            self._fail(FastPathRefused("the response is longer than its range"))
            return
        self._got += nbytes
        self._finish_if_whole()

    def eof_received(self) -> bool | None:
        self._fail(FastPathRefused("the server closed the connection"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(FastPathRefused(f"connection lost ({type(exc).__name__})" if exc
                                   else "connection closed"))
        self.transport = None

    # -- ours -----------------------------------------------------------------------------

    def _parse_head(self) -> None:
        head = self._head[:self._head_len]
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if self._head_len == len(self._head):
                self._fail(FastPathRefused("response headers too long"))
            return
        lines = bytes(head[:end]).split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or parts[1] != b"206":
            self._fail(FastPathRefused(f"answer {parts[1:2]!r}"))  # the usual read says why
            return
        length = total = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"content-range":  # bytes FIRST-LAST/TOTAL
                size = value.strip().rpartition(b"/")[2]
                total = int(size) if size.isdigit() else None
            elif name == b"connection" and value.strip().lower() == b"close":
                self._closing = True
            elif name == b"transfer-encoding":
                self._fail(FastPathRefused("a chunked body"))
                return
        if length != self._want:
            self._fail(FastPathRefused(f"{length} bytes for a range of {self._want}"))
            return
        if self._total is not None and total != self._total:
            self._fail(FastPathRefused(f"a range of an object of {total} bytes, expected "
                                       f"{self._total}"))
            return
        self._status = 206
        early = head[end + 4:]  # body bytes that came with the headers
        if len(early) > self._want:
            self._fail(FastPathRefused("the response is longer than its range"))
            return
        assert self._body is not None
        self._body[:len(early)] = early
        self._got = len(early)
        self._finish_if_whole()

    def _finish_if_whole(self) -> None:
        if self._got == self._want and self._done is not None:
            done, self._done, self._body = self._done, None, None
            if not done.done():
                done.set_result(self._got)

    def _fail(self, exc: Exception) -> None:
        done, self._done, self._body = self._done, None, None
        if done is not None and not done.done():
            done.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


class RangeReader:
    """Ranged GETs of one tier's objects into caller buffers, on one event loop."""

    def __init__(self, client: Any, connect_timeout: float = 5.0):
        self._client = client  # the tier's aiobotocore S3 client: it presigns
        self._connect_timeout = connect_timeout
        # (bucket, key): when its URL was presigned, where it goes, and the request target
        self._urls: dict[tuple[str, str], tuple[float, _Server, str]] = {}
        self._idle: defaultdict[_Server, list[_Response]] = defaultdict(list)
        self._tls: ssl.SSLContext | None = None

    async def read_into(self, bucket: str, key: str, start: int, view: memoryview, *,
                        total: int | None = None) -> int:
        """Bytes ``[start, start + len(view))`` of the object into ``view``; raises
        :class:`FastPathRefused` for any answer but the range whole (of an object of
        ``total`` bytes, where given). A cancelled read writes nothing into ``view`` after
        it is cancelled (its connection is closed)."""
        server, target = await self._presigned(bucket, key)
        try:
            return await self._get(server, target, start, view, total)
        except FastPathRefused:
            self._urls.pop((bucket, key), None)  # signed with credentials since replaced?
            raise

    async def _get(self, server: _Server, target: str, start: int, view: memoryview,
                   total: int | None = None) -> int:
        """One GET on a kept-alive connection, or, where the server had closed that one
        before a byte of the answer came (an idle connection's close crossing the request),
        once more on a new one."""
        connection, kept = await self._connection(server)
        try:
            return await self._exchange(connection, server, target, start, view, total)
        except FastPathRefused:
            if not kept or connection.answered:
                raise
        connection, _ = await self._connection(server, fresh=True)
        return await self._exchange(connection, server, target, start, view, total)

    async def _exchange(self, connection: _Response, server: _Server, target: str,
                        start: int, view: memoryview, total: int | None = None) -> int:
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        connection.expect(view, done, total)
        request = (f"GET {target} HTTP/1.1\r\nHost: {server.netloc}\r\n"
                   f"Range: bytes={start}-{start + len(view) - 1}\r\n"
                   f"Accept-Encoding: identity\r\nUser-Agent: tierstore\r\n\r\n")
        assert connection.transport is not None
        try:
            connection.transport.write(request.encode("ascii"))
            got = await done
        except BaseException:
            connection._fail(FastPathRefused("abandoned"))  # no more bytes into view
            raise
        if connection.reusable and len(self._idle[server]) < IDLE_CONNECTIONS:
            self._idle[server].append(connection)
        elif connection.transport is not None:
            connection.transport.close()
        return got

    async def _presigned(self, bucket: str, key: str) -> tuple[_Server, str]:
        now = time.monotonic()
        cached = self._urls.get((bucket, key))
        if cached is None or now - cached[0] > PRESIGN_REUSE:
            url = await self._client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key},
                ExpiresIn=PRESIGN_SECONDS)
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise FastPathRefused("not an http(s) endpoint")
            tls = parts.scheme == "https"
            server = _Server(parts.hostname, parts.port or (443 if tls else 80), tls,
                             parts.netloc)
            target = f"{parts.path}?{parts.query}" if parts.query else parts.path
            if len(self._urls) > 4096:
                self._urls.clear()
            cached = self._urls[(bucket, key)] = (now, server, target)
        return cached[1], cached[2]

    async def _connection(self, server: _Server, *, fresh: bool = False
                          ) -> tuple[_Response, bool]:
        """A connection to ``server``, and whether it was kept alive from an earlier GET."""
        idle = self._idle[server]
        while idle and not fresh:
            connection = idle.pop()
            if connection.reusable:
                return connection, True
        if server.tls and self._tls is None:
            self._tls = ssl.create_default_context()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):  # then TimeoutError, as
                _, protocol = await loop.create_connection(  # botocore's connect timeout
                    _Response, server.host, server.port,
                    ssl=self._tls if server.tls else None,
                    server_hostname=server.host if server.tls else None)
        except OSError as exc:
            raise FastPathRefused(f"cannot connect to {server.host}:{server.port}: "
                                  f"{exc.strerror or type(exc).__name__}") from None
        return protocol, False

    def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                if connection.transport is not None:
                    with contextlib.suppress(Exception):
                        connection.transport.close()
        self._idle.clear()
