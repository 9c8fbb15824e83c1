"""Local files written and read past the page cache (tierstore.direct), checked on real files:
every size and chunking round-trips, and what the hot tier writes is not left in the page
cache (mincore says which pages are), where the filesystem is one that has a disk below it."""

from __future__ import annotations

import asyncio
import ctypes
import mmap
import os
import random
from pathlib import Path

import pytest

from tierstore import TierClass, TierConfig, direct
from tierstore.direct import (
    ALIGN,
    DIRECT_READ_MAX,
    DIRECT_WRITE_MIN,
    STAGE,
    DirectWriter,
    read_direct,
    read_direct_into,
)
from tierstore.tier import Tier

SIZES = [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, STAGE - 1, STAGE, STAGE + 1, 3 * STAGE + 12345]


def _fstype(path: Path) -> str:
    """The type of the filesystem ``path`` lies on (the longest mount point above it)."""
    best, kind = "", "?"
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        point = fields[1]
        if (str(path) == point or str(path).startswith(point.rstrip("/") + "/")) \
                and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def resident(path: Path) -> float:
    """The fraction of ``path``'s pages in the page cache now (mincore(2))."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vec = (ctypes.c_ubyte * pages)()
            assert libc.mincore(addr, size, vec) == 0, os.strerror(ctypes.get_errno())
            return sum(v & 1 for v in vec) / pages
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


@pytest.mark.parametrize("memory", ["bytes", "page-aligned"])
@pytest.mark.parametrize("size", SIZES)
def test_every_size_and_chunking_round_trips(tmp_path: Path, size: int, memory: str) -> None:
    rng = random.Random(size)
    data = rng.randbytes(size)
    source = memoryview(data)
    if memory == "page-aligned" and size:  # written from itself where a chunk is aligned
        mapped = mmap.mmap(-1, size)
        mapped[:] = data
        source = memoryview(mapped)
    path = tmp_path / "f.bin"
    writer = DirectWriter(str(path))
    pos = 0
    while pos < size:
        n = rng.choice([1, 100, ALIGN, 70_000, 2**20, STAGE + 3])
        writer.write(source[pos:pos + n])
        pos += n
    writer.close()
    writer.close()  # twice is a no-op
    assert path.read_bytes() == data
    assert writer.written == size
    if writer.direct_bytes:
        assert writer.direct_bytes % ALIGN == 0 and writer.direct_bytes <= size


def test_page_aligned_memory_is_written_from_itself(tmp_path: Path) -> None:
    block = mmap.mmap(-1, 3 * 2**20 + 100)  # a shard's block in the loader's buffers
    block[:] = random.Random(2).randbytes(len(block))
    path = tmp_path / "f.bin"
    writer = DirectWriter(str(path))
    writer.write(memoryview(block))
    if not writer.direct:
        pytest.skip(f"{_fstype(tmp_path)} refuses O_DIRECT")
    assert writer._stage is not None
    assert writer._stage[100:2 * ALIGN] == bytes(2 * ALIGN - 100)  # only the tail was staged
    writer.close()
    assert path.read_bytes() == block[:]
    assert writer.direct_bytes == 3 * 2**20


def test_a_view_of_the_stage_left_alive_does_not_turn_close_into_a_buffer_error(
        tmp_path: Path) -> None:
    """A write that fails or is interrupted leaves a view of the stage in its traceback; the
    writer's close in a ``finally`` then must not raise BufferError (``cannot close exported
    pointers exist``) over the error the caller must see. Seen when a benchmark was killed
    mid-move."""
    path = tmp_path / "f.bin"
    writer = DirectWriter(str(path))
    size = DIRECT_WRITE_MIN + 100  # past the page cache from here: the last 100 bytes staged
    writer.write(b"x" * size)
    if not writer.direct:
        pytest.skip(f"{_fstype(tmp_path)} refuses O_DIRECT")
    assert writer._stage is not None
    held = memoryview(writer._stage)[:ALIGN]  # what a failed write's traceback holds
    writer.close()
    assert path.read_bytes() == b"x" * size and len(held) == ALIGN


def test_direct_read_matches_a_buffered_one_at_any_offset(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(3 * 2**20 + 12345)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    end = len(data)
    for lo, hi in [(0, 2**20), (1, 2**20 + 7), (4095, 4097), (end - 5, end + 100),
                   (end + 10, end + 20), (7, 7), (0, DIRECT_READ_MAX)]:
        assert read_direct(str(path), lo, hi) == data[lo:hi], (lo, hi)
    with pytest.raises(ValueError):
        read_direct(str(path), 0, DIRECT_READ_MAX + 1)


def test_a_hot_tier_write_leaves_nothing_in_the_page_cache(tmp_path: Path) -> None:
    if _fstype(tmp_path) in ("tmpfs", "ramfs", "overlay", "?"):
        pytest.skip(f"{tmp_path} is on {_fstype(tmp_path)}: its page cache is its storage")
    data = random.Random(2).randbytes(4 * STAGE + 123)
    control = tmp_path / "buffered.bin"
    control.write_bytes(data)
    if resident(control) < 0.9:
        pytest.skip("a buffered write here is not left in the page cache: nothing to compare")
    tier = Tier(TierConfig(name="hot", tier_class=TierClass.HOT, url=tmp_path.as_uri()))

    async def chunks():  # type: ignore[no-untyped-def]
        for lo in range(0, len(data), 3 * 2**20):
            yield data[lo:lo + 3 * 2**20]

    async def write_and_read() -> bytes:
        await tier.write("shard.tar", chunks())
        parts = [await tier.read("shard.tar", lo, min(lo + STAGE, len(data)))
                 for lo in range(0, len(data), STAGE)]
        return b"".join(parts)

    assert asyncio.run(write_and_read()) == data
    # written and read again past the cache: at most the last, partial block is in it
    assert resident(tmp_path / "shard.tar") < 0.01


def test_a_cancelled_direct_read_writes_nothing_after_and_gives_its_buffer_back(
        tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(random.Random(3).randbytes(DIRECT_READ_MAX))

    async def cancelled() -> memoryview:
        into = memoryview(bytearray(DIRECT_READ_MAX))
        task = asyncio.ensure_future(read_direct_into(str(path), 0, into))
        await asyncio.sleep(0)  # its thread is reading
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return into

    into = asyncio.run(cancelled())  # returns once the default executor's threads are done
    assert not any(into)  # the thread's bytes never reached it
    assert direct._bounce.qsize() == direct._bounce_made  # every buffer back in the pool
    whole = memoryview(bytearray(DIRECT_READ_MAX))
    assert asyncio.run(read_direct_into(str(path), 0, whole)) == DIRECT_READ_MAX
    assert bytes(whole) == path.read_bytes()
