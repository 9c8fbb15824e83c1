"""The tier conformance suite: every kind of tier passes the same tests.

A new backend adds a parameter to ``tier`` below, not a copy of the tests (as zarr's
``StoreTests`` and fsspec's abstract tests do).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import fsspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storefixtures import STORE_KINDS

from tierstore import InvalidKey, TierClass, TierConfig, TierError, TierUnavailable
from tierstore.direct import STREAM_PART
from tierstore.keys import validate_key
from tierstore.sync import _run
from tierstore.tier import PART_SIZE, Tier
from tierstore.tier.s3 import close_sockets


@pytest.fixture(params=[*STORE_KINDS, "memory"])
def tier(request: pytest.FixtureRequest, tmp_path: Path) -> Tier:
    if request.param == "local":
        return Tier(TierConfig(name="t", tier_class=TierClass.HOT, url=tmp_path.as_uri()))
    if request.param == "memory":  # the generic fsspec backend, on fsspec's in-memory one
        url = f"memory://{tmp_path.name}/root"
        memory = fsspec.filesystem("memory")
        request.addfinalizer(lambda: memory.exists(url) and memory.rm(url, recursive=True))
        return Tier(TierConfig(name="t", tier_class=TierClass.HOT, url=url))
    server = request.getfixturevalue(f"{request.param}_server")
    bucket = server.new_bucket()
    request.addfinalizer(lambda: server.delete_bucket(bucket))
    return Tier(TierConfig(name="t", tier_class=TierClass.WARM, url=f"s3://{bucket}/root",
                           options=server.storage_options()))


async def _gen(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def test_write_read_ranges(tier: Tier) -> None:
    data = os.urandom(100_000)
    assert _run(tier.write("a/b/c.bin", _gen(data[:40_000], data[40_000:]))) == len(data)
    assert _run(tier.read("a/b/c.bin")) == data
    assert _run(tier.read("a/b/c.bin", 10, 20)) == data[10:20]
    assert _run(tier.read("a/b/c.bin", 99_990, 100_000)) == data[-10:]
    assert _run(tier.size("a/b/c.bin")) == len(data)


def test_streamed_write_larger_than_a_part(tier: Tier) -> None:
    data = os.urandom(2 * PART_SIZE + 12345)  # multipart upload on S3
    step = 3 * 2**20
    _run(tier.write("big", _gen(*(data[i:i + step] for i in range(0, len(data), step)))))
    assert _run(tier.size("big")) == len(data)

    async def collect() -> bytes:  # a chunk is lent until the next: what is kept is copied
        return b"".join([bytes(c) async for c in tier.iter_read("big", len(data))])

    assert _run(collect()) == data


def test_a_local_streams_chunks_are_lent_until_the_next(tmp_path: Path) -> None:
    """A local file streams as views of a few reused buffers (no copy): each chunk is
    right while it is the latest, and a chunk kept past the next is overwritten."""
    tier = Tier(TierConfig(name="hot", tier_class=TierClass.HOT, url=tmp_path.as_uri()))
    data = os.urandom(7 * STREAM_PART + 999)
    _run(tier.write("f", _gen(data)))

    async def chunks() -> tuple[bytes, list[memoryview]]:
        fresh, kept = [], []
        async for chunk in tier.iter_read("f", len(data)):
            fresh.append(bytes(chunk))
            kept.append(chunk)
        return b"".join(fresh), kept

    joined, kept = _run(chunks())
    assert joined == data
    assert b"".join(kept) != data  # kept views: their buffers were read into again


def test_read_into_lands_each_range_in_place(tier: Tier) -> None:
    data = os.urandom(3 * 2**20 + 777)  # past the size local reads go direct from
    _run(tier.write("into.bin", _gen(data)))
    memory = bytearray(len(data) + 100)
    view = memoryview(memory)
    for lo, hi in [(0, 2**20), (2**20, 3 * 2**20 + 777), (10, 20)]:
        assert _run(tier.read_into("into.bin", lo, view[lo:hi])) == hi - lo
    assert bytes(view[:len(data)]) == data
    # past the end: what there is, the rest of the view untouched
    assert _run(tier.read_into("into.bin", len(data) - 5, view[-100:])) == 5
    assert bytes(view[-100:-95]) == data[-5:] and bytes(view[-95:]) == bytes(95)
    with pytest.raises(FileNotFoundError):
        _run(tier.read_into("nope", 0, view[:10]))


def test_empty_object(tier: Tier) -> None:
    _run(tier.write("empty", _gen()))
    assert _run(tier.size("empty")) == 0
    assert _run(tier.read("empty")) == b""


def test_missing_file(tier: Tier) -> None:
    assert _run(tier.size("nope")) is None
    with pytest.raises(FileNotFoundError):
        _run(tier.read("nope"))
    _run(tier.remove("nope"))  # removing what is gone is fine


def test_rename_and_remove(tier: Tier) -> None:
    _run(tier.write(".tierstore/partial/x-1", _gen(b"payload")))
    _run(tier.rename(".tierstore/partial/x-1", "final/x"))
    assert _run(tier.size(".tierstore/partial/x-1")) is None
    assert _run(tier.read("final/x")) == b"payload"
    _run(tier.remove("final/x"))
    assert _run(tier.size("final/x")) is None


def test_walk_lists_every_file_with_sizes(tier: Tier) -> None:
    for name, size in (("a/1", 3), ("a/b/2", 5), (".tierstore/partial/p", 7)):
        _run(tier.write(name, _gen(b"x" * size)))
    found = {(f.path, f.size) for f in _run(tier.walk())}
    assert found == {("a/1", 3), ("a/b/2", 5), (".tierstore/partial/p", 7)}


def test_overwrite_replaces(tier: Tier) -> None:
    _run(tier.write("k", _gen(b"first version")))
    _run(tier.write("k", _gen(b"second")))
    assert _run(tier.read("k")) == b"second"


@pytest.mark.parametrize("path", ["../escape", "a/../../b", "/etc/passwd", "a//b", "a/./b",
                                  "bad\x00name", ".tierstore/../x", ""])
def test_no_path_escapes_the_root(tier: Tier, path: str) -> None:
    with pytest.raises(InvalidKey):
        tier.full_path(path)


def test_many_concurrent_reads_respect_the_limit(tier: Tier) -> None:
    _run(tier.write("c", _gen(os.urandom(4096))))

    async def many() -> list[bytes]:
        return await asyncio.gather(*(tier.read("c", i, i + 16) for i in range(0, 4096, 16)))

    assert len(_run(many())) == 256


def test_dead_server_is_unavailable_quickly(dead_endpoint: str) -> None:
    tier = Tier(TierConfig(name="gone", tier_class=TierClass.WARM, url="s3://bucket/x",
                           options={"key": "k", "secret": "s3cr3t-value",
                                    "client_kwargs": {"endpoint_url": dead_endpoint}},
                           timeout=5.0))
    with pytest.raises(TierUnavailable) as info:
        _run(tier.read("anything"))
    assert "s3cr3t-value" not in str(info.value)


def test_missing_bucket_is_unavailable(moto_server) -> None:  # type: ignore[no-untyped-def]
    tier = Tier(TierConfig(name="nobucket", tier_class=TierClass.WARM,
                           url="s3://no-such-bucket-here/x",
                           options=moto_server.storage_options()))
    with pytest.raises(TierError) as info:
        _run(tier.write("k", _gen(b"data")))
    assert isinstance(info.value, TierUnavailable)
    assert "bucket" in str(info.value).lower()


# -- distinct keys are distinct objects -----------------------------------------------------

# Keys that differ only where some layer could decode, fold, normalise or cut: each is an
# object of its own on every tier (no percent-decoding, '+' is no space, no case folding or
# Unicode normalisation, trailing dots and spaces kept, ']' and ':' plain characters).
NEAR_MISSES = ["d/x", "d/X", "d/x ", "d/x.", "d/x y", "d/x+y", "d/x%20y", "d/x%2By", "d/x%",
               "d/x%3FversionId=1", "d/x%23y", "d/p%2Fq", "d/p/q", "d/x=1&y=2", "d/x;y",
               "d/x@y", "d/x~y", "d/~x", "d/x]", "d/x:y", "d/x{y}", "d/x!y", "d/x'y", "d/x,y",
               "d/x$y", "d/...", "d/\u00e9", "d/e\u0301", "d/\u00a0", "d/\U0001f600"]


def _paths(tier: Tier) -> list[str]:
    return sorted(found.path for found in _run(tier.walk()))


def test_near_miss_keys_are_distinct_objects(tier: Tier) -> None:
    for key in NEAR_MISSES:
        _run(tier.write(key, _gen(key.encode())))
    assert _paths(tier) == sorted(NEAR_MISSES)
    assert [_run(tier.read(key)) for key in NEAR_MISSES] == [k.encode() for k in NEAR_MISSES]
    removed, kept = NEAR_MISSES[::2], NEAR_MISSES[1::2]
    for key in removed:
        _run(tier.remove(key))
    assert _paths(tier) == sorted(kept)
    assert [_run(tier.read(key)) for key in kept] == [k.encode() for k in kept]


@pytest.mark.parametrize(("key", "special"), [
    ("d/x?versionId=1", "?"), ("d/x?", "?"), ("d/x#1", "#"), ("d/x#", "#"), ("d/x*", "*"),
    ("d/x[1]", "["), ("d/x::y", "::")])
def test_keys_a_backend_would_alias_are_refused(tier: Tier, key: str, special: str) -> None:
    # s3fs reads d/x?versionId=1 as d/x: writing it replaced d/x's bytes, removing it d/x
    _run(tier.write("d/x", _gen(b"plain")))
    for call in (lambda: tier.write(key, _gen(b"other")), lambda: tier.read(key),
                 lambda: tier.size(key), lambda: tier.remove(key)):
        with pytest.raises(InvalidKey, match=re.escape(f"contains {special!r}")):
            _run(call())
    assert _run(tier.read("d/x")) == b"plain"
    assert _paths(tier) == ["d/x"]


# Pieces of names, refused and allowed: "a" and "a?versionId=" were one object on S3.
NAME_PARTS = st.sampled_from(["a", "A", "?versionId=", "?", "#", "*", "[", "]", "::", ":", "%",
                              "%3F", "+", " ", ".", "~", "\u00e9", "e\u0301"])


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.lists(NAME_PARTS, min_size=1, max_size=3).map("".join),
                      min_size=2, max_size=2, unique=True))
def test_any_two_keys_are_two_objects_or_refused(tier: Tier, names: list[str]) -> None:
    written = []
    try:
        for key in (f"p/{name}" for name in names):
            try:
                validate_key(key)
            except InvalidKey:
                with pytest.raises(InvalidKey):
                    _run(tier.write(key, _gen(b"refused")))
                continue
            _run(tier.write(key, _gen(key.encode())))
            written.append(key)
        assert _paths(tier) == sorted(written)
        assert [_run(tier.read(key)) for key in written] == [k.encode() for k in written]
        if written:
            _run(tier.remove(written[0]))
            assert _paths(tier) == sorted(written[1:])
            assert [_run(tier.read(key)) for key in written[1:]] == \
                [k.encode() for k in written[1:]]
    finally:
        for key in written:
            _run(tier.remove(key))


def test_a_forked_process_makes_its_client_over_the_loader_it_inherited(moto_server) -> None:  # type: ignore[no-untyped-def]
    """A loader worker forked after the training process read from S3 makes its client over
    the botocore loader it inherited (its service models parsed already), in a session of
    its own (credentials that refresh are not shared between loops)."""
    bucket = moto_server.new_bucket()
    config = TierConfig(name="t", tier_class=TierClass.WARM, url=f"s3://{bucket}/root",
                        options=moto_server.storage_options())
    parent = Tier(config)
    _run(parent.write("k", _gen(b"payload")))

    async def ids_of(tier: Tier) -> tuple[int, int]:
        session = (await tier._fs()).session
        return id(session), id(session.get_component("data_loader"))

    session, loader = _run(ids_of(parent))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a new Tier (a worker's own store), on a new loop
        child = Tier(config)

        async def check() -> bool:
            try:
                own, shared = await ids_of(child)
                return own != session and shared == loader and \
                    await child.read("k") == b"payload"
            finally:
                await child.close()

        os.write(write, b"1" if asyncio.run(check()) else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    _run(parent.close())
    moto_server.delete_bucket(bucket)


def test_the_s3fs_internals_the_s3_tier_relies_on(moto_server: object, tmp_path: Path) -> None:
    """What :mod:`tierstore.tier.s3` uses of s3fs beyond fsspec's public API is still there:
    this fails when an s3fs release moves it, before a user meets it."""
    server = moto_server
    bucket = server.new_bucket()  # type: ignore[attr-defined]
    tier = Tier(TierConfig(name="t", tier_class=TierClass.WARM, url=f"s3://{bucket}/root",
                           options=server.storage_options()))  # type: ignore[attr-defined]

    async def look() -> None:
        fs = await tier._fs()
        assert isinstance(fs.kwargs, dict) and fs.session is not None  # the shared loader
        assert fs.split_path(f"{bucket}/root/k") == (bucket, "root/k", None)
        assert (await fs._call_s3("list_objects_v2", Bucket=bucket))["KeyCount"] == 0
        assert fs.s3.meta.endpoint_url and callable(fs.s3.meta.events.register)  # the probe
        assert callable(fs._rm) and callable(fs._find)
        assert callable(fs._s3.__aexit__)  # close() on this loop and on a loop's thread
        sessions = list(fs._s3._endpoint.http_session._sessions.values())
        assert sessions and not any(s.connector.closed for s in sessions)
        close_sockets(fs._s3)  # close() for a loop that is gone
        assert all(s.connector.closed for s in sessions)
        await tier.close()

    try:
        _run(look())
    finally:
        server.delete_bucket(bucket)  # type: ignore[attr-defined]
