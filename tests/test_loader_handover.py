"""Batches crossing from DataLoader workers in reused shared-memory slots (loader/handover.py).

Real worker processes of a real ``torch.utils.data.DataLoader`` pack batches into slots; the
training process unpacks them. A loop that keeps every batch still gets every batch intact (the
workers fall back to the usual hand-over when no slot is free); a loop that drops its batches
gets them all through a few slots; batches a reset discards give their slots back; TierLoader
yields the same batches with and without reused memory.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from tierstore import SyncStore
from tierstore.loader import TierDataset, TierLoader, handover, write_tar_shards
from tierstore.loader.handover import Packed, SlotReader, SlotWriter

BATCHES = 40
SLOTS = 5  # what TierLoader gives a worker at prefetch_factor=2: none short in steady state


def expected(worker: int, i: int) -> dict[str, Any]:
    """Batch ``i`` of ``worker``: tensors of several dtypes and shapes, and a plain value."""
    n = 1000 + 37 * i  # sizes differ, so slots grow
    base = worker * 10_000 + i
    return {"data": torch.arange(n, dtype=torch.int64) + base,
            "pixels": torch.full((3, 5, 7), base % 251, dtype=torch.uint8),
            "mask": torch.arange(n % 13) % 2 == 0,
            "pairs": (torch.tensor([base, -base], dtype=torch.float32), [torch.tensor(base)]),
            "name": f"batch {worker}/{i}"}


def same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):  # the usual hand-over makes tuples lists
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


class Packing(IterableDataset[Any]):
    """Each worker yields (worker, i, batch i packed in its slots)."""

    def __init__(self, owner: int, slots: int = SLOTS) -> None:
        self.owner, self.slots = owner, slots
        self.writer: SlotWriter | None = None

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        assert info is not None
        worker = info.id
        if self.writer is None:  # one per worker process, kept by persistent workers
            self.writer = SlotWriter(self.slots, self.owner)
        for i in range(BATCHES):
            yield worker, i, self.writer.pack(expected(worker, i))


def passes(loader: DataLoader[Any], reader: SlotReader) -> Iterator[tuple[int, int, Any, bool]]:
    """(worker, i, batch, whether it came in a slot), reclaiming slots as TierLoader does."""
    items = iter(loader)
    while True:
        reader.reclaim()
        try:
            worker, i, item = next(items)
        except StopIteration:
            return
        packed = isinstance(item, Packed)
        batch = reader.unpack(item) if packed else item
        del item
        yield worker, i, batch, packed
        del batch


def mine(reader: SlotReader) -> list[tuple[int, int, int]]:
    """The slots whose memory the training process holds for ``reader``'s workers."""
    return [key for key in handover._received if key[0] == reader.owner]


def test_kept_batches_stay_intact_and_dropped_ones_reuse_few_slots() -> None:
    reader = SlotReader()
    loader = DataLoader(Packing(reader.owner, 3), batch_size=None, num_workers=2)
    kept = [(w, i, b, packed) for w, i, b, packed in passes(loader, reader)]
    assert len(kept) == 2 * BATCHES
    assert all(same(b, expected(w, i)) for w, i, b, _ in kept)  # nothing overwritten
    assert sum(p for *_, p in kept) <= 2 * 3  # then every slot was lent: the usual way
    del kept
    reader.forget()
    assert not mine(reader)

    packed = 0
    for w, i, batch, was_packed in passes(loader, reader):  # new workers, new slots
        assert same(batch, expected(w, i))
        packed += was_packed
        del batch
    assert packed >= 2 * BATCHES - 4  # a dropped batch's slot comes back at the next step
    assert len({key[1] for key in mine(reader)}) == 2 and len(mine(reader)) <= 2 * 3
    gone = reader.owner
    del reader  # a loader dropped without shutdown() lets go of its slots' memory too
    gc.collect()
    assert not [key for key in handover._received if key[0] == gone]


def test_batches_a_reset_discards_give_their_slots_back() -> None:
    reader = SlotReader()
    loader = DataLoader(Packing(reader.owner), batch_size=None, num_workers=2,
                        persistent_workers=True, prefetch_factor=2)
    for _ in range(3):  # each pass stops early: the batches in flight are discarded
        for n, (w, i, batch, _) in enumerate(passes(loader, reader)):
            assert same(batch, expected(w, i))
            del batch
            if n == 5:
                break
    got = [(w, i, packed) for w, i, _, packed in passes(loader, reader)]
    assert [(w, i) for w, i, _ in got] == [(w, i) for i in range(BATCHES) for w in (0, 1)]
    assert all(packed for *_, packed in got)  # no slot was left lent by a discarded batch
    reader.forget()


def test_tierloader_yields_the_same_batches_with_reused_memory(local_store: SyncStore) -> None:
    write_tar_shards(local_store, "ds", ({"__key__": f"s{i:04d}", "bin": bytes([i]) * (9 + i)}
                                         for i in range(150)), samples_per_shard=16)

    def run(reuse: bool) -> list[dict[str, Any]]:
        dataset = TierDataset(local_store, "ds", seed=5, buffer_size=8)
        with TierLoader(dataset, batch_size=8, num_workers=2, reuse_memory=reuse,
                        collate_fn=collate) as loader:
            batches = [{k: v.clone() if isinstance(v, torch.Tensor) else v
                        for k, v in batch.items()} for batch in loader]
        assert not mine(loader._slots)  # shut down: its workers' slots let go
        return batches

    reused, usual = run(True), run(False)
    assert len(reused) == len(usual) == 19
    assert all(same(a, b) for a, b in zip(reused, usual, strict=True))


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"keys": [s["__key__"] for s in samples],
            "lengths": torch.tensor([len(s["bin"]) for s in samples]),
            "data": torch.cat([s["bin"] for s in samples])}
