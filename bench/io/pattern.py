"""Where each I/O of a job goes: offsets, lengths, files and directions, in batches.

A job's I/O is one logical stream of items; the ``lanes`` that keep ``iodepth`` requests in
flight share it out so that together they issue what fio would:

- fixed block size, sequential or uniformly random: item ``j`` goes to file ``j % nrfiles``,
  and lane ``k`` takes items ``k, k + lanes, ...``. Random blocks are a keyed permutation of
  the file's blocks, a fresh one each pass, so (like fio's random map) a size-based run reads
  every block exactly once, in memory that does not grow with the file;
- ``zipf:THETA``: blocks drawn independently (with replacement) from a bounded Zipf law over
  the file's blocks, the popular ranks scattered over the file by a fixed bijection;
- ``bsrange``: lengths are random multiples of the smallest size; sequential runs give each
  lane its own contiguous region of every file (fio, with one I/O in flight, is the same).

Batches are plain lists, cheap to iterate in a hot loop; ``None`` fields mean "the job's one
block size / file 0 / the job's one direction". A time-based job loops over its files as
fio does, and fio re-opens the files at each loop (dropping their page cache again with
``invalidate=1``), so the batch that begins a new pass says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["Batch", "Workload", "batch_size", "lane_batches", "permute"]

BATCH = 256  # I/Os per batch at most; fewer for big blocks (see batch_size)
BATCH_BYTES = 4 * 2**20
_EXACT_ZIPF_BLOCKS = 1 << 22  # above this, the Zipf law's inverse CDF is approximated
_SCATTER_PRIMES = (1_048_573, 999_983, 524_287)
_MASK64 = (1 << 64) - 1


class Batch(NamedTuple):
    offsets: list[int]
    lengths: list[int] | None = None
    files: list[int] | None = None
    writes: list[bool] | None = None
    new_pass: bool = False  # this batch begins a new pass over the files (fio re-opens them)


@dataclass(frozen=True, kw_only=True)
class Workload:
    """What a job's lanes need to know to generate its I/O."""

    file_size: int  # bytes usable in each file (all files of a job have the same size)
    nrfiles: int
    bs: tuple[int, int]  # smallest and largest block size (equal without bsrange)
    sequential: bool
    read_percent: int  # 100: reads only, 0: writes only, else a mix (rwmixread)
    total_bytes: int | None  # bytes the whole job moves; None: until the deadline
    seed: int
    zipf_theta: float | None = None

    @property
    def blocks(self) -> int:
        return self.file_size // self.bs[0]

    @property
    def mixed(self) -> bool:
        return 0 < self.read_percent < 100


def batch_size(bs: int) -> int:
    """I/Os per batch: lanes publish their counters once a batch, so a batch stays small
    (about 4 MiB) next to the 500 ms bandwidth sampling window even on a slow disk."""
    return max(1, min(BATCH, BATCH_BYTES // bs))


def lane_batches(work: Workload, lane: int, lanes: int) -> Iterator[Batch]:
    """The batches of I/O lane ``lane`` of ``lanes`` issues, in order."""
    if work.blocks < 1:
        raise ValueError(f"file size {work.file_size} is smaller than one block ({work.bs[0]})")
    rng = np.random.default_rng([work.seed, lane])
    if work.bs[0] != work.bs[1]:
        inner: Iterator[Batch] = (_sequential_ranges(work, lane, lanes, rng) if work.sequential
                                  else _random_ranges(work, lane, lanes, rng))
    elif work.zipf_theta is not None and not work.sequential:
        inner = _zipf(work, lane, lanes, rng)
    else:
        inner = _indexed(work, lane, lanes)
    if not work.mixed:
        return inner
    return (b._replace(writes=(rng.random(len(b.offsets)) * 100 >= work.read_percent).tolist())
            for b in inner)


def _indexed(work: Workload, lane: int, lanes: int) -> Iterator[Batch]:
    total = None if work.total_bytes is None else work.total_bytes // work.bs[0]
    start, blocks, nf = lane, work.blocks, work.nrfiles
    per_pass, size = blocks * nf, batch_size(work.bs[1])
    while total is None or start < total:
        stop = start + size * lanes
        boundary = (start // per_pass + 1) * per_pass  # cut batches where a pass begins
        stop = min(stop, boundary) if boundary > start else stop
        if total is not None:
            stop = min(stop, total)
        items = np.arange(start, stop, lanes, dtype=np.int64)
        if not len(items):
            start = stop + (lane - stop) % lanes
            continue
        new_pass = int(items[0]) % per_pass == 0 and int(items[0]) > 0
        start = int(items[-1]) + lanes
        position = items // nf
        block = position % blocks
        if not work.sequential:
            block = _permute_passes(block, position // blocks, blocks, work.seed)
        offsets = (block * work.bs[0]).tolist()
        yield Batch(offsets, files=(items % nf).tolist() if nf > 1 else None,
                    new_pass=new_pass)


def _permute_passes(block: np.ndarray, passes: np.ndarray, n: int, seed: int) -> np.ndarray:
    out = np.empty_like(block)
    for p in np.unique(passes):
        chosen = passes == p
        out[chosen] = permute(block[chosen], n, key=hash((seed, int(p))) & _MASK64)
    return out


def permute(x: np.ndarray, n: int, *, key: int) -> np.ndarray:
    """A keyed bijection of ``[0, n)`` applied to ``x``: rounds of multiply, add and
    xor-shift on ``bits(n)``-bit words, cycle-walking until the value falls below ``n``."""
    bits = max(1, (n - 1).bit_length())
    mask = np.uint64((1 << bits) - 1)
    shift = np.uint64(bits // 2 + 1)
    keys = [np.uint64((key >> (16 * r)) & 0xFFFF | 1) for r in range(3)]
    value = x.astype(np.uint64)
    todo = np.ones(len(value), dtype=bool)
    result = np.empty_like(value)
    with np.errstate(over="ignore"):
        while todo.any():
            y = value[todo]
            for k in keys:
                y = (y * np.uint64(0x9E3779B97F4A7C15) + k) & mask
                y ^= y >> shift
            done = y < np.uint64(n)
            index = np.nonzero(todo)[0]
            result[index[done]] = y[done]
            value[index] = y
            todo[index[done]] = False
    return result.astype(np.int64)


def _lane_items(work: Workload, lane: int, lanes: int, unit: int) -> int | None:
    """How many items of ``unit`` bytes lane ``lane`` issues (None: until the deadline)."""
    if work.total_bytes is None:
        return None
    total = work.total_bytes // unit
    return total // lanes + (1 if lane < total % lanes else 0)


class _Zipf:
    """Ranks ``0..n-1`` drawn with probability proportional to ``1 / (rank + 1) ** theta``."""

    def __init__(self, n: int, theta: float):
        self.n, self.theta = n, theta
        self.cdf: np.ndarray | None = None
        if n <= _EXACT_ZIPF_BLOCKS:
            weights = np.arange(1, n + 1, dtype=np.float64) ** -theta
            self.cdf = np.cumsum(weights) / weights.sum()

    def draw(self, u: np.ndarray) -> np.ndarray:
        if self.cdf is not None:
            return np.minimum(np.searchsorted(self.cdf, u, side="right"), self.n - 1)
        # continuous law with density ~ x ** -theta on [1, n + 1), floored to a rank
        if math.isclose(self.theta, 1.0):
            x = np.exp(u * math.log(self.n + 1))
        else:
            a = 1.0 - self.theta
            x = (1.0 + u * ((self.n + 1) ** a - 1.0)) ** (1.0 / a)
        return np.clip(x.astype(np.int64) - 1, 0, self.n - 1)


class _Loops:
    """For streams without passes of their own (drawn with replacement): lane 0 marks a new
    pass each time it has moved its share of a pass's worth of I/O."""

    def __init__(self, lane: int, per_lane: int):
        self.lane, self.per_lane = lane, max(1, per_lane)
        self.done = self.flagged = 0

    def add(self, amount: int) -> bool:
        """Count a batch of ``amount``; whether it begins a new pass."""
        passes = self.done // self.per_lane
        self.done += amount
        began, self.flagged = self.lane == 0 and passes > self.flagged, passes
        return began


def _scatter(n: int) -> int:
    return next((p for p in _SCATTER_PRIMES if math.gcd(p, n) == 1), 1)


def _zipf(work: Workload, lane: int, lanes: int, rng: np.random.Generator) -> Iterator[Batch]:
    law, n = _Zipf(work.blocks, float(work.zipf_theta or 1.0)), work.blocks
    scatter = _scatter(n)
    left = _lane_items(work, lane, lanes, work.bs[0])
    item, loop = lane, _Loops(lane, n * work.nrfiles // lanes)
    while left is None or left > 0:
        count = batch_size(work.bs[1]) if left is None else min(batch_size(work.bs[1]), left)
        blocks = (law.draw(rng.random(count)) * scatter) % n
        files = None
        if work.nrfiles > 1:
            files = ((np.arange(count) * lanes + item) % work.nrfiles).tolist()
        item += count * lanes
        yield Batch((blocks * work.bs[0]).tolist(), files=files, new_pass=loop.add(count))
        if left is not None:
            left -= count


def _lengths(work: Workload, rng: np.random.Generator, count: int) -> np.ndarray:
    lo, hi = work.bs
    return lo * rng.integers(1, hi // lo + 1, size=count)


def _random_ranges(work: Workload, lane: int, lanes: int, rng: np.random.Generator
                   ) -> Iterator[Batch]:
    lo, left = work.bs[0], None if work.total_bytes is None else work.total_bytes // lanes
    loop = _Loops(lane, work.file_size * work.nrfiles // lanes)
    while left is None or left > 0:
        lengths = _lengths(work, rng, batch_size(work.bs[1]))
        offsets = rng.integers(0, work.blocks, size=len(lengths)) * lo
        lengths = np.minimum(lengths, work.file_size - offsets)
        if left is not None:  # stop once this lane's share of the bytes is moved
            keep = int(np.searchsorted(np.cumsum(lengths), left, side="left")) + 1
            lengths, offsets = lengths[:keep], offsets[:keep]
            left -= int(lengths.sum())
        files = rng.integers(0, work.nrfiles, size=len(offsets)).tolist() \
            if work.nrfiles > 1 else None
        yield Batch(offsets.tolist(), lengths.tolist(), files,
                    new_pass=loop.add(int(lengths.sum())))


def _sequential_ranges(work: Workload, lane: int, lanes: int, rng: np.random.Generator
                       ) -> Iterator[Batch]:
    lo = work.bs[0]
    region = (work.blocks // lanes) * lo or work.blocks * lo
    begin = min(lane * region, work.file_size - region)
    end = begin + region
    cursors = [begin] * work.nrfiles
    left = None if work.total_bytes is None else work.total_bytes // lanes
    item, wrapped = 0, False
    while left is None or left > 0:
        offsets, lengths, files = [], [], []
        new_pass, wrapped = wrapped and lane == 0, False
        for length in _lengths(work, rng, batch_size(work.bs[1])).tolist():
            f = item % work.nrfiles
            item += 1
            if cursors[f] >= end:
                if left is not None and all(c >= end for c in cursors):
                    left = 0
                    break
                cursors[f] = begin
                wrapped = True
            take = min(length, end - cursors[f])
            offsets.append(cursors[f])
            lengths.append(take)
            files.append(f)
            cursors[f] += take
            if left is not None:
                left -= take
                if left <= 0:
                    break
        if not offsets:
            return
        yield Batch(offsets, lengths, files if work.nrfiles > 1 else None, new_pass=new_pass)
