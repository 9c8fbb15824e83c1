"""Ranged S3 reads straight into the caller's buffer (tierstore.s3get), on real servers (moto
and Ceph RGW), and against a raw TCP server that answers the way a broken peer would."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from storefixtures import make_config

from tierstore import direct
from tierstore.s3get import FastPathRefused, RangeReader, behind_proxy
from tierstore.tier import Tier

MIB = 2**20


def _on_warm(request: pytest.FixtureRequest, tmp_path: Path, server_name: str,
             body: Callable[[Tier, Any, str], Awaitable[None]]) -> None:
    """``body(tier, client, bucket)`` on the warm tier of a fresh bucket of the named server
    (``client``: a boto3 client of it); the tier closed and the bucket deleted after."""
    server = request.getfixturevalue(f"{server_name}_server")
    bucket = server.new_bucket()
    tier = Tier(make_config(tmp_path, server_name, server, bucket).tiers["warm"])

    async def go() -> None:
        try:
            await body(tier, server.client(), bucket)
        finally:
            await tier.close()

    try:
        asyncio.run(go())
    finally:
        server.delete_bucket(bucket)


@pytest.mark.parametrize("server_name", ["moto", "ceph"])
def test_ranges_land_in_place_and_errors_fall_back(request: pytest.FixtureRequest,
                                                    tmp_path: Path, server_name: str) -> None:
    """Ranges of every shape come straight into the buffer (no read refused); a range past
    the end and a missing object are refused, and the usual read answers them as before."""
    data = os.urandom(9 * MIB + 7)

    async def body(tier: Tier, client: Any, bucket: str) -> None:
        client.put_object(Bucket=bucket, Key="warm/obj", Body=data)
        for lo, n in [(0, 4 * MIB), (5, 1), (3, 1000), (4 * MIB, 5 * MIB + 7)] * 2:
            buf = bytearray(b"\xee" * (n + 2))
            assert await tier.read_into("obj", lo, memoryview(buf)[1:n + 1]) == n
            assert buf[1:n + 1] == data[lo:lo + n] and buf[0] == buf[-1] == 0xEE
            assert tier._ranges_refused == 0  # the direct read took it
        buf = bytearray(100)  # past the end: what there is
        assert await tier.read_into("obj", len(data) - 10, memoryview(buf)) == 10
        assert buf[:10] == data[-10:]
        with pytest.raises(FileNotFoundError):
            await tier.read_into("nothing-here", 0, memoryview(bytearray(10)))
        assert tier._ranges_refused == 2
        buf = bytearray(10)
        assert await tier.read_into("obj", 0, memoryview(buf)) == 10
        assert tier._ranges_refused == 0 and buf == data[:10]

    _on_warm(request, tmp_path, server_name, body)


@pytest.mark.parametrize("server_name", ["moto", "ceph"])
def test_a_streamed_read_lands_in_lent_buffers_and_falls_back_mid_way(
        request: pytest.FixtureRequest, tmp_path: Path, server_name: str) -> None:
    """A whole-object stream (a move's, a verification's) is ranged reads straight into
    page-aligned buffers, lent as views; where a range is refused half-way (the object was
    replaced by a shorter one behind the store's back) the rest comes the usual way, as what
    the server has, for the caller's checksum to judge; so is a longer one whose first bytes
    are the same. A stream left early gives its buffers back."""
    data, shorter = os.urandom(9 * MIB + 7), os.urandom(5 * MIB)

    async def body(tier: Tier, client: Any, bucket: str) -> None:
        client.put_object(Bucket=bucket, Key="warm/obj", Body=data)
        chunks = []
        async for chunk in tier.iter_read("obj", len(data), part=4 * MIB):
            assert isinstance(chunk, memoryview)  # lent: copied before the next
            chunks.append(bytes(chunk))
        assert b"".join(chunks) == data and len(chunks) == 3
        assert tier._ranges_refused == 0
        got = []
        async for chunk in tier.iter_read("obj", len(data), part=4 * MIB):
            if not got:  # replaced under the stream, between two ranges
                await asyncio.to_thread(client.put_object, Bucket=bucket, Key="warm/obj",
                                        Body=shorter)
            got.append(bytes(chunk))
        # the range read ahead may have got the first object's bytes or been refused
        assert b"".join(got) in (data[:4 * MIB] + shorter[4 * MIB:], data[:8 * MIB]
                                 + shorter[8 * MIB:])
        longer = data + b"more"  # the same first bytes: only its length tells
        await asyncio.to_thread(client.put_object, Bucket=bucket, Key="warm/obj",
                                Body=longer)
        got = [bytes(c) async for c in tier.iter_read("obj", len(data), part=4 * MIB)]
        assert b"".join(got) == longer  # all of it, for the caller's length check
        client.put_object(Bucket=bucket, Key="warm/obj", Body=shorter)
        stream = tier.iter_read("obj", len(shorter), part=MIB)
        assert bytes(await anext(stream)) == shorter[:MIB]
        await stream.aclose()  # the range read ahead is cancelled, the buffers kept
        assert 2 <= len(direct._spare[MIB]) <= direct.SPARE_BUFFERS

    _on_warm(request, tmp_path, server_name, body)


# -- a raw peer: what a broken server or network does -------------------------------------------


class _Presigner:
    """What RangeReader asks of a botocore client: a presigned URL of the raw server."""

    def __init__(self, port: int):
        self.port = port

    async def generate_presigned_url(self, op: str, Params: dict, ExpiresIn: int) -> str:
        return f"http://127.0.0.1:{self.port}/{Params['Bucket']}/{Params['Key']}?X-Amz-Signature=SECRET"


async def _serve(answer):  # type: ignore[no-untyped-def]
    """A TCP server on 127.0.0.1 whose every connection runs ``answer(reader, writer)``."""
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


@pytest.mark.parametrize("reply, why", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", "b'200'"),
    (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", "b'403'"),
    (b"HTTP/1.1 206 Partial\r\nContent-Length: 9\r\n\r\n012345678", "9 bytes for a range of 10"),
    (b"HTTP/1.1 206 Partial\r\nTransfer-Encoding: chunked\r\n\r\n", "chunked"),
    (b"HTTP/1.1 206 Partial\r\nContent-Length: 10\r\n\r\n01234", "closed"),
    (b"HTTP/1.1 206 Partial\r\nContent-Length: 10\r\n\r\n0123456789ABC", "longer"),
    (b"HTTP/1.1 206 Partial\r\nContent-Length: 10\r\nContent-Range: bytes 0-9/11\r\n\r\n"
     b"0123456789", "an object of 11 bytes, expected 10"),
    (b"HTTP/1.1 206 Partial\r\nContent-Length: 10\r\n\r\n0123456789",
     "an object of None bytes, expected 10"),
])
def test_any_answer_but_the_whole_range_is_refused(reply: bytes, why: str) -> None:
    async def go() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _request(reader)
            writer.write(reply)
            await writer.drain()
            writer.close()

        server, port = await _serve(answer)
        reader = RangeReader(_Presigner(port))
        try:
            with pytest.raises(FastPathRefused, match=why) as caught:
                await reader.read_into("b", "k", 0, memoryview(bytearray(10)),
                                       total=10 if "an object" in why else None)
            assert "SECRET" not in str(caught.value)  # the signature never shows
        finally:
            reader.close()
            server.close()

    asyncio.run(go())


def test_a_kept_alive_connection_serves_the_next_range() -> None:
    connections = []

    async def go() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(writer)
            while True:
                head = await _request(reader)
                lo, hi = head.split(b"Range: bytes=")[1].split(b"\r\n")[0].split(b"-")
                body = bytes(range(int(lo), int(hi) + 1))
                writer.write(b"HTTP/1.1 206 Partial\r\nContent-Length: %d\r\n\r\n" % len(body)
                             + body)
                await writer.drain()

        server, port = await _serve(answer)
        reader = RangeReader(_Presigner(port))
        try:
            for lo in (0, 10, 100):
                buf = bytearray(50)
                assert await reader.read_into("b", "k", lo, memoryview(buf)) == 50
                assert buf == bytes(range(lo, lo + 50))
        finally:
            reader.close()
            server.close()

    asyncio.run(go())
    assert len(connections) == 1


def test_a_cancelled_read_writes_nothing_more_into_its_buffer() -> None:
    """The body stalls halfway; the read is cancelled; the rest, sent after, never lands."""
    async def go() -> None:
        sent_half = asyncio.Event()
        go_on = asyncio.Event()
        finished = asyncio.Event()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _request(reader)
            writer.write(b"HTTP/1.1 206 Partial\r\nContent-Length: 200000\r\n\r\n"
                         + b"a" * 100000)
            await writer.drain()
            sent_half.set()
            await go_on.wait()
            try:
                writer.write(b"b" * 100000)
                await writer.drain()
            except ConnectionError:
                pass
            finished.set()

        server, port = await _serve(answer)
        reader = RangeReader(_Presigner(port))
        buf = bytearray(200000)
        try:
            task = asyncio.ensure_future(reader.read_into("b", "k", 0, memoryview(buf)))
            await sent_half.wait()
            await asyncio.sleep(0.2)  # the first half lands
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            go_on.set()
            await finished.wait()
            await asyncio.sleep(0.2)
            assert b"b" not in buf
        finally:
            reader.close()
            server.close()

    asyncio.run(go())


def test_a_proxied_endpoint_is_read_the_usual_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """This module connects directly: where the environment sends requests through a proxy
    (and NO_PROXY does not exempt the host), the tier does not use it."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not behind_proxy(None, "http://127.0.0.1:8000")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert behind_proxy(None, "http://s3.example:8000")
    monkeypatch.setenv("NO_PROXY", "s3.example")
    assert not behind_proxy(None, "http://s3.example:8000")


def test_a_kept_alive_connection_closed_under_a_request_is_tried_once_anew() -> None:
    """The server closes a kept-alive connection as a request crosses it (its idle timeout):
    the read goes again on a new connection, and succeeds; a new connection closed so is
    refused (the usual read takes over)."""
    served: list[int] = []

    async def go() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            number = len(served)
            served.append(0)
            while True:
                try:
                    await _request(reader)
                except asyncio.IncompleteReadError:
                    return
                if (number == 0 and served[0] == 1) or number == 2:  # close, unanswered
                    writer.close()
                    return
                served[number] += 1
                writer.write(b"HTTP/1.1 206 Partial\r\nContent-Length: 4\r\n\r\nabcd")
                await writer.drain()

        server, port = await _serve(answer)
        reader = RangeReader(_Presigner(port))
        try:
            for _ in range(2):
                buf = bytearray(4)
                assert await reader.read_into("b", "k", 0, memoryview(buf)) == 4
                assert buf == b"abcd"
            assert served == [1, 1]  # the second on a new connection
            reader.close()
            with pytest.raises(FastPathRefused, match="closed"):
                await reader.read_into("b", "k", 0, memoryview(bytearray(4)))
        finally:
            reader.close()
            server.close()

    asyncio.run(go())
