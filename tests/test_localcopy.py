"""A move between two local tiers is copied by the kernel (``copy_file_range``) and hashed as
it lands; a copy that lands other bytes than the catalog's checksum is streamed again from
the verified source, so the replica committed is always right."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from storefixtures import make_config

from tierstore import open_store
from tierstore.localcopy import COPY_PIECE


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every ``copy_file_range`` call's byte count; a byte of the first call's piece is
    flipped in the destination after the kernel copied it (a fault no real disk shows on
    demand: the one thing simulated here)."""
    calls: list[int] = []
    real = os.copy_file_range

    def copy_file_range(src: int, dst: int, count: int, offset_src: Any = None,
                        offset_dst: Any = None) -> int:
        n = real(src, dst, count, offset_src, offset_dst)
        if not calls and os.environ.get("FLIP_FIRST_COPY"):
            byte = os.pread(dst, 1, offset_dst)
            os.pwrite(dst, bytes([byte[0] ^ 0x01]), offset_dst)
        calls.append(n)
        return n

    monkeypatch.setattr(os, "copy_file_range", copy_file_range)
    return calls


@pytest.mark.parametrize("size", [10_000, 2 * COPY_PIECE + 12_345])
def test_a_move_between_local_tiers_is_a_kernel_copy(tmp_path: Path, copies: list[int],
                                                     size: int) -> None:
    data = os.urandom(size)
    with open_store(make_config(tmp_path, "local")) as store:
        store.put("k", data, tier="cold")
        store.move("k", "hot")
        assert sum(copies) == size
        assert store.stat("k").tiers == ["hot"]
        assert store.cat("k", verify=True) == data
        assert store.audit(deep=True).ok


def test_a_copy_that_lands_other_bytes_is_streamed_again(
        tmp_path: Path, copies: list[int], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FLIP_FIRST_COPY", "1")
    data = os.urandom(COPY_PIECE + 4096)
    with open_store(make_config(tmp_path, "local")) as store:
        store.put("k", data, tier="warm")
        with caplog.at_level(logging.WARNING, logger="tierstore.tier"):
            store.move("k", "hot")
        assert copies  # the kernel copied, and its bytes were refused:
        assert "did not land its checksum; streaming it" in caplog.text
        assert store.stat("k").tiers == ["hot"]
        assert store.cat("k", verify=True) == data  # what was committed is the streamed copy
        assert store.audit(deep=True).ok
