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
