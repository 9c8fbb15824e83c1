"""Shard buffers reused from one shard to the next (tierstore.loader.buffers): never while
anything still views one, and a reader's epochs through a real store read every sample's
bytes right out of reused memory."""

from __future__ import annotations

import numpy as np

from tierstore import SyncStore
from tierstore.loader import TierDataset, write_tar_shards
from tierstore.loader.buffers import GRAIN, ShardBuffers
from tierstore.loader.runtime import LoopThread

MIB = 2**20


def test_a_buffer_is_not_lent_while_anything_views_it() -> None:
    pool = ShardBuffers()
    first = pool.take(64 * MIB)
    first[:4] = b"abcd"
    sample = np.frombuffer(first[:4], dtype=np.uint8)  # a view into it outlives the shard's
    del first
    second = pool.take(64 * MIB)
    assert (pool.made, pool.lent) == (2, 0)
    assert bytes(sample) == b"abcd"  # untouched
    del sample, second
    third = pool.take(64 * MIB - 1000)  # about the same size: the same buffers serve
    assert (pool.made, pool.lent) == (2, 1) and len(third) == 64 * MIB - 1000


def test_idle_buffers_beyond_keep_go_back() -> None:
    pool = ShardBuffers(keep=1)
    views = [pool.take(8 * MIB) for _ in range(5)]
    assert pool.held() == 5 * 8 * MIB
    del views
    pool.take(8 * MIB)
    assert pool.held() == 2 * 8 * MIB  # the one lent and one idle
    small = pool.take(8 * MIB // 2)  # far smaller: a buffer of its own, not a large one
    assert len(small) == 4 * MIB and pool.made == 6
    assert all(len(b) % GRAIN == 0 for b in pool._buffers)


def test_epochs_read_from_reused_buffers(local_store: SyncStore) -> None:
    samples = [{"__key__": f"s{i:03d}", "bin": bytes([i]) * (200_000 + 37 * i)}
               for i in range(60)]
    write_tar_shards(local_store, "ds", iter(samples), samples_per_shard=10)
    expect = {s["__key__"]: s["bin"] for s in samples}
    pool = LoopThread.get().buffers
    lent = pool.lent
    # parts of 512 KiB: every shard (about 2 MB) is read in parts, into a buffer; no shard is
    # kept on hot (a hot shard is read sample by sample, not into a buffer), so every epoch
    # reads every shard from warm
    dataset = TierDataset(local_store, "ds", part_size=512 * 1024, seed=3, fill_hot=False)
    for epoch in range(2):
        dataset.set_epoch(epoch)
        got = {s["__key__"]: bytes(s["bin"].numpy()) for s in dataset}  # decoded to tensors
        assert got == expect
    assert pool.lent > lent  # shards after the first landed in reused memory
