"""A shard handed over as it lands (loader.landing): the checked prefix grows only over
parts whose reads returned, in any order, block by block against the index; a block that does
not match stops it until the whole shard is verified; a failed read reaches the waiter."""

from __future__ import annotations

import random
import threading

import pytest

from tierstore.checksum import checksum
from tierstore.loader.index import ShardEntry, block_checksums
from tierstore.loader.landing import Landing

BLOCK = 1000


def landing_of(data: bytes, blocks: tuple[str, ...] | None = None) -> Landing:
    entry = ShardEntry("s", "tar", 1, len(data), checksum(data), block_size=BLOCK,
                       blocks=block_checksums(data, BLOCK) if blocks is None else blocks)
    landing = Landing(entry)
    landing.begin(bytearray(data))
    return landing


def test_the_prefix_follows_parts_in_any_order() -> None:
    data = random.Random(0).randbytes(5500)
    landing = landing_of(data)
    landing.landed(1500, 3000)  # not from the start: nothing is checked yet
    assert landing.checked == 0
    landing.landed(0, 1500)  # blocks 0-2 are whole now
    assert landing.checked == 3000
    landing.landed(4000, 5500)
    assert landing.checked == 3000
    landing.landed(3000, 4000)
    assert landing.checked == 5500 and landing.wait(5500) == data


def test_a_block_that_does_not_match_stops_the_prefix_until_finished() -> None:
    data = random.Random(1).randbytes(3000)
    blocks = list(block_checksums(data, BLOCK))
    blocks[1] = blocks[0]
    landing = landing_of(data, tuple(blocks))
    landing.landed(0, 3000)
    assert landing.checked == BLOCK
    landing.finish(data)  # verified as a whole (or re-read) by the reader
    assert landing.checked == 3000 and landing.wait(3000) == data


def test_a_waiter_gets_the_bytes_or_the_error() -> None:
    data = random.Random(2).randbytes(3000)
    landing = landing_of(data)
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(landing.wait(2000)))
    waiter.start()
    landing.landed(0, 2000)
    waiter.join(10)
    assert got and bytes(got[0]) == data  # type: ignore[call-overload]

    failing = landing_of(data)
    failing.landed(0, BLOCK)
    assert failing.wait(BLOCK)
    failing.fail(OSError("gone"))
    with pytest.raises(OSError, match="gone"):
        failing.wait(2000)


def test_a_filing_sink_tells_what_is_in_its_file() -> None:
    """A parted shard's blocks handed to a sink that writes them to a file: a block is in the
    file once written, but the last, whose end is written when the file is closed, only once
    the sink says it filed the whole shard; a reader waiting for bytes the sink will never
    write (it stopped) or that are late gets False."""
    data = random.Random(3).randbytes(3500)
    entry = ShardEntry("s", "tar", 1, len(data), checksum(data), block_size=BLOCK,
                       blocks=block_checksums(data, BLOCK))
    landing = Landing(entry, parted=True)
    landing.sink(lambda index, view: None, filing=True)
    for lo in range(0, len(data), BLOCK):
        landing.landed(lo, min(lo + BLOCK, len(data)),
                       memoryview(bytearray(data[lo:lo + BLOCK])))
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(landing.until_on_file(2000)))
    waiter.start()
    landing.written(0)
    assert landing.until_on_file(BLOCK, timeout=0) and not got
    landing.written(1)
    waiter.join(10)
    assert got == [True]
    landing.written(2)
    landing.written(3)  # the last block: its end may still be in the writer's stage
    assert not landing.until_on_file(3500, timeout=0.05)
    landing.filed()
    assert landing.until_on_file(3500, timeout=0)

    stopped = Landing(entry, parted=True)
    stopped.sink(lambda index, view: None, filing=True)
    stopped.landed(0, BLOCK, memoryview(bytearray(data[:BLOCK])))
    stopped.written(0)
    stopped.sink(None)  # the fill failed: nothing more will be written
    assert stopped.until_on_file(BLOCK, timeout=0) and not stopped.until_on_file(2000)
