"""The tar parser on damaged and crafted shards: it always ends, never reaches past the bytes
it was given, and every malformed header is a :class:`ShardFormatError` naming the shard and
the byte offset. The per-test timeouts only turn a hang into a failure."""

from __future__ import annotations

import io
import tarfile
from itertools import islice

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tierstore import SyncStore
from tierstore.loader import ShardFormatError, TarFormat, write_index
from tierstore.loader.formats.tar import BLOCK, iter_members, pack_tar
from tierstore.loader.index import DatasetIndex, ShardEntry

# The whole run ends at a hang: a signal would only fail the first try, and hypothesis would
# then replay the hanging example while it shrinks it.
HANG = pytest.mark.timeout(20, method="thread")


def reseal(data: bytearray, header: int) -> None:
    """Give the header at ``header`` a valid checksum, as a crafted shard would have."""
    block = data[header:header + BLOCK]
    block[148:156] = b" " * 8
    data[header + 148:header + 156] = b"%06o\0 " % sum(block)


def headers(data: bytes) -> list[int]:
    """Where the headers of an undamaged tar are: the blocks whose checksum holds."""
    out = []
    for pos in range(0, len(data) - BLOCK + 1, BLOCK):
        block = data[pos:pos + BLOCK]
        try:
            stored = int(block[148:155].split(b"\0")[0].strip(), 8)
        except ValueError:
            continue
        if stored == sum(block[:148]) + 256 + sum(block[156:]):
            out.append(pos)
    return out


def shard(samples: int = 3) -> bytearray:
    return bytearray(pack_tar([{"__key__": f"s{i}", "bin": bytes([i]) * (100 * i + 1),
                                "cls": str(i)} for i in range(samples)]))


def pax_shard(**records: str) -> bytearray:
    """A tar of one member ``a.bin`` behind a pax header holding ``records``."""
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("a.bin")
        info.pax_headers = records
        info.size = 4
        tar.addfile(info, io.BytesIO(b"abcd"))
    return bytearray(sink.getvalue())


def tarfile_bytes(fmt: int) -> bytes:
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w", format=fmt) as tar:
        for i, name in enumerate(["d" * 130 + "/a.jpg", "d" * 130 + "/a.cls", "b.txt"]):
            info = tarfile.TarInfo(name if fmt != tarfile.USTAR_FORMAT else name[-90:])
            payload = bytes([i + 1]) * (300 * i + 5)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return sink.getvalue()


# -- the two hangs the review found ------------------------------------------------------------


def negative_size_shard() -> bytes:
    """A shard whose second member claims -512 bytes (GNU base-256), resealed: a parser that
    trusts it stays on that header for ever."""
    data = shard()
    second = headers(bytes(data))[1]
    data[second + 124:second + 136] = b"\xff" + (BLOCK).to_bytes(11, "big")
    reseal(data, second)
    return bytes(data)


@HANG
def test_negative_base256_size_is_an_error() -> None:
    data = negative_size_shard()
    second = headers(data)[1]
    with pytest.raises(ShardFormatError, match=rf"'ds/s\.tar'.*negative size.*byte {second}"):
        TarFormat().scan(data, "ds/s.tar")


@HANG
def test_write_index_names_a_crafted_shard_and_writes_nothing(local_store: SyncStore) -> None:
    local_store.put("ds/good.tar", bytes(shard()))
    local_store.put("ds/bad.tar", negative_size_shard())
    with pytest.raises(ShardFormatError, match=r"'ds/bad\.tar'.*negative size"):
        write_index(local_store, "ds")
    assert not local_store.exists("ds/index.json")


@HANG
@pytest.mark.parametrize("record", [b"0 ", b"00000 path=x\n", b"-5 path=x\n", b"3 path=x\n"])
def test_bad_pax_record_length_is_an_error(record: bytes) -> None:
    data = pax_shard(comment="x" * 20)
    assert data[156:157] == b"x"
    data[BLOCK:BLOCK + len(record)] = record
    with pytest.raises(ShardFormatError, match=r"'ds/s\.tar'.*pax header at byte 0"):
        TarFormat().scan(bytes(data), "ds/s.tar")


@HANG
def test_pax_size_that_is_no_number_is_an_error() -> None:
    data = pax_shard(comment="x" * 20)
    at = data.index(b"comment=")
    data[at:at + 8] = b"size=-9 "
    with pytest.raises(ShardFormatError, match=r"'t'.*pax size.*byte 0"):
        list(iter_members(bytes(data), shard="t"))


def test_a_range_outside_the_bytes_is_refused() -> None:
    data = bytes(shard())
    with pytest.raises(ShardFormatError, match=r"'t'.*outside"):
        list(iter_members(data, 0, len(data) + BLOCK, shard="t"))
    with pytest.raises(ShardFormatError, match=r"'t'.*outside"):
        list(iter_members(data, BLOCK * 3, BLOCK, shard="t"))


# -- the fuzz test -----------------------------------------------------------------------------

BASES = [bytes(shard()), bytes(pax_shard(comment="c" * 30, path="p/a.bin")),
         tarfile_bytes(tarfile.GNU_FORMAT), tarfile_bytes(tarfile.PAX_FORMAT),
         tarfile_bytes(tarfile.USTAR_FORMAT)]
# name, mode, size, mtime, checksum, type, magic, prefix
FIELDS = [0, 100, 124, 136, 148, 156, 257, 345]
SPECIAL = [b"\xff" + (BLOCK).to_bytes(11, "big"), b"\xff" * 12, b"\x80" + b"\xff" * 11,
           b"\x80" + (10**12).to_bytes(11, "big"), b"77777777777\0", b"-1", b"x", b"L", b"K",
           b"g", b"5", b"0 ", b"00 ", b"-9 ", b"1 ", b"9999999999 ", b"99 size=1\n",
           b"20 size=-1\n", b"30 size=99999999999999999\n", b"\0" * 12, b"ustar\0"]


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A real tar with a few header fields, pax records or bytes overwritten, headers
    resealed or not, possibly cut short."""
    data = bytearray(draw(st.sampled_from(BASES)))
    spots = headers(bytes(data))
    for _ in range(draw(st.integers(1, 4))):
        header = draw(st.sampled_from(spots))
        where = draw(st.one_of(
            st.sampled_from([header + field for field in FIELDS]),
            st.just(header + BLOCK),  # the first pax record, where the header has one
            st.integers(0, len(data) - 1)))
        value = draw(st.one_of(st.sampled_from(SPECIAL), st.binary(min_size=1, max_size=12)))
        data[where:where + len(value)] = value
        if draw(st.booleans()):
            reseal(data, header)
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))):]
    return bytes(data)


@HANG
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=damaged())
def test_parser_always_ends_within_its_bytes(data: bytes) -> None:
    most = len(data) // BLOCK  # every member takes a header block at least
    try:
        members = list(islice(iter_members(data, shard="f.tar"), most + 1))
    except ShardFormatError as exc:
        assert "'f.tar'" in str(exc) and "byte" in str(exc)
        return
    assert len(members) <= most
    for member in members:
        assert 0 <= member.header < member.start <= member.start + member.size <= len(data)
    try:
        layout = TarFormat().scan(data, "f.tar")
    except ShardFormatError:
        return
    entry = ShardEntry.of("f.tar", "tar", layout, len(data), "-")
    reader = TarFormat().open(data, entry, DatasetIndex(prefix="", shards=(entry,)))
    for i in range(layout.samples):
        try:
            sample = reader.sample(i)
        except ShardFormatError:
            continue
        assert all(len(v) <= len(data) for k, v in sample.items() if not k.startswith("__"))
