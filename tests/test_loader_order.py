"""The order of an epoch as properties: every sample exactly once across ranks and workers,
equal batches when asked (padding and drops counted), the same order for the same inputs,
another for another epoch, and exactly-once again after an elastic resume."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tierstore.loader import OrderSpec, Placement, worker_order
from tierstore.loader.order import (
    Equalize,
    buffer_shuffle,
    buffer_start,
    consumed_mask,
    epoch_sequence,
)
from tierstore.loader.state import dataloader_consumed

shard_sizes = st.lists(st.integers(0, 20), min_size=0, max_size=12)
layouts = st.tuples(st.integers(1, 5), st.integers(1, 4))  # (world size, workers)


def starts_of(sizes: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)


def all_orders(starts: np.ndarray, spec: OrderSpec, world: int, workers: int,
               exclude: np.ndarray | None = None) -> dict[tuple[int, int], np.ndarray]:
    return {(r, w): worker_order(starts, spec, Placement(r, world, w, workers),
                                 exclude=exclude).samples
            for r in range(world) for w in range(workers)}


@settings(max_examples=150, deadline=None)
@given(sizes=shard_sizes, layout=layouts, seed=st.integers(-5, 2**40), epoch=st.integers(0, 9),
       buffer=st.integers(0, 9), batch=st.integers(1, 4), shuffle=st.booleans())
def test_every_sample_exactly_once(sizes: list[int], layout: tuple[int, int], seed: int,
                                   epoch: int, buffer: int, batch: int, shuffle: bool) -> None:
    world, workers = layout
    spec = OrderSpec(seed=seed, epoch=epoch, shuffle=shuffle, buffer_size=buffer,
                     batch_size=batch)
    orders = all_orders(starts_of(sizes), spec, world, workers)
    merged = np.concatenate(list(orders.values()))
    assert sorted(merged.tolist()) == list(range(sum(sizes)))
    per_rank = [sum(len(orders[(r, w)]) for w in range(workers)) for r in range(world)]
    assert max(per_rank) - min(per_rank) <= 1  # ranks as even as samples allow
    for (r, w), order in orders.items():  # workers get whole batches but for a rank's last
        later = sum(len(orders[(r, v)]) for v in range(w + 1, workers))
        assert len(order) % batch == 0 or later == 0


@settings(max_examples=150, deadline=None)
@given(sizes=shard_sizes, layout=layouts, batch=st.integers(1, 4),
       equalize=st.sampled_from(["pad", "drop"]))
def test_equal_batches_per_rank(sizes: list[int], layout: tuple[int, int], batch: int,
                                equalize: Equalize) -> None:
    world, workers = layout
    total = sum(sizes)
    spec = OrderSpec(seed=3, buffer_size=4, batch_size=batch, equalize=equalize)
    starts = starts_of(sizes)
    orders = {(r, w): worker_order(starts, spec, Placement(r, world, w, workers))
              for r in range(world) for w in range(workers)}
    per_rank = {sum(len(orders[(r, w)].samples) for w in range(workers)) for r in range(world)}
    assert len(per_rank) == 1
    per = per_rank.pop()
    assert per % batch == 0
    for order in orders.values():
        assert len(order.samples) % batch == 0  # every DataLoader batch is full
    seen = Counter(np.concatenate([o.samples for o in orders.values()]).tolist())
    padding = sum(o.padding for o in orders.values())
    if equalize == "pad":
        assert set(seen) == set(range(total))
        assert padding == world * per - total and padding < world * batch + world
    else:
        assert all(c == 1 for c in seen.values()) and padding == 0
        assert total - len(seen) < world * batch  # only a tail shorter than a round is dropped


def test_same_inputs_same_order_other_epoch_other_order() -> None:
    starts = starts_of([10] * 40)
    place = Placement(1, 3, 1, 2)
    a = worker_order(starts, OrderSpec(seed=7, epoch=2, buffer_size=16), place).samples
    b = worker_order(starts, OrderSpec(seed=7, epoch=2, buffer_size=16), place).samples
    c = worker_order(starts, OrderSpec(seed=7, epoch=3, buffer_size=16), place).samples
    d = worker_order(starts, OrderSpec(seed=8, epoch=2, buffer_size=16), place).samples
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    seq = [epoch_sequence(starts, OrderSpec(seed=7, epoch=e)) for e in range(3)]
    assert len({tuple(s.tolist()) for s in seq}) == 3


def test_no_shuffle_is_index_order() -> None:
    starts = starts_of([3, 0, 2])
    spec = OrderSpec(shuffle=False, buffer_size=8)
    assert worker_order(starts, spec, Placement()).samples.tolist() == [0, 1, 2, 3, 4]


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 300), size=st.integers(0, 40), seed=st.integers(0, 100))
def test_shuffle_buffer_is_a_bounded_permutation(n: int, size: int, seed: int) -> None:
    ids = np.arange(n, dtype=np.int64) * 3
    out = buffer_shuffle(ids, size, np.random.default_rng(seed))
    assert sorted(out.tolist()) == ids.tolist()
    arrival = {int(v): i for i, v in enumerate(ids)}
    for k, v in enumerate(out.tolist()[:max(0, n - size)]):
        assert arrival[v] < k + max(size, 1)  # nothing leaves before it could have arrived
    if n > size > 1:  # it starts early and holds at most `size`
        assert arrival[out[0]] < buffer_start(size)
        assert all(arrival[v] < k + size for k, v in enumerate(out.tolist()))


def test_shuffle_buffer_mixes_once_full() -> None:
    """Past its filling, an id leaves the buffer anywhere from at once to far later."""
    ids = np.arange(20_000, dtype=np.int64)
    out = buffer_shuffle(ids, 512, np.random.default_rng(0))
    held = np.arange(len(out)) + 512 - out  # arrivals the k-th id stayed for, once full
    middle = held[2_000:18_000]  # about geometric with mean 512: median 512 ln 2 = 355
    assert middle.min() < 20 and middle.max() > 1_000 and 250 < np.median(middle) < 500


@settings(max_examples=100, deadline=None)
@given(sizes=shard_sizes, old=layouts, new=layouts, data=st.data())
def test_elastic_resume_reads_the_rest_exactly_once(sizes: list[int], old: tuple[int, int],
                                                    new: tuple[int, int],
                                                    data: st.DataObject) -> None:
    spec = OrderSpec(seed=11, epoch=1, buffer_size=5, batch_size=2)
    starts = starts_of(sizes)
    before = all_orders(starts, spec, *old)
    consumed = {f"{r}/{w}": data.draw(st.integers(0, len(o))) for (r, w), o in before.items()}
    done = consumed_mask(starts, spec, *old, consumed)
    after = all_orders(starts, spec, *new, exclude=done)
    read = [int(x) for (r, w), o in before.items() for x in o[:consumed[f"{r}/{w}"]]]
    read += [int(x) for o in after.values() for x in o]
    assert sorted(read) == list(range(sum(sizes)))
    # and once more, from the resumed layout to a third one
    consumed2 = {f"{r}/{w}": len(o) // 2 for (r, w), o in after.items()}
    done2 = consumed_mask(starts, spec, *new, consumed2, exclude=done)
    third = all_orders(starts, spec, 2, 3, exclude=done2)
    read2 = read[:len(read) - sum(len(o) for o in after.values())]
    read2 += [int(x) for (r, w), o in after.items() for x in o[:consumed2[f"{r}/{w}"]]]
    read2 += [int(x) for o in third.values() for x in o]
    assert sorted(read2) == list(range(sum(sizes)))


@pytest.mark.parametrize(("batches", "expected"), [
    (0, [0, 0, 0]), (1, [2, 0, 0]), (3, [2, 2, 1]), (5, [4, 4, 1]), (6, [5, 4, 1]),
    (7, [5, 5, 1])])
def test_dataloader_consumed_follows_round_robin(batches: int, expected: list[int]) -> None:
    # workers yield 5, 5 and 1 samples in batches of 2: batches 3, 3 and 1
    assert dataloader_consumed(batches, [5, 5, 1], 2) == expected


def test_dataloader_consumed_refuses_too_many() -> None:
    with pytest.raises(ValueError, match="more than the epoch holds"):
        dataloader_consumed(8, [5, 5, 1], 2)
