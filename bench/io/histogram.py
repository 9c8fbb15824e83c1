"""Latency statistics in bounded memory: fio's log-linear histogram and running moments.

The bucket layout is fio's (``stat.h``: ``FIO_IO_U_PLAT_BITS = 6``, 29 groups of 64 buckets):
values below 128 ns have a bucket each, and every power of two above is split into 64 equal
buckets, so a percentile is exact to 1/64 of its value (fio reports a bucket's midpoint, so
within 1/128 of it) up to about 17 seconds. The same layout makes our percentiles and fio's
agree bucket for bucket on the same latencies.

Latencies are appended one at a time to a short buffer (the cheapest thing a hot loop can do)
and binned with numpy in batches, so memory stays bounded however long a run is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["FIO_PERCENTILES", "PLAT_BITS", "PLAT_NR", "LatencyHistogram", "bucket_index",
           "bucket_value"]

PLAT_BITS = 6
PLAT_VAL = 1 << PLAT_BITS
PLAT_GROUPS = 29
PLAT_NR = PLAT_GROUPS * PLAT_VAL
FIO_PERCENTILES = (1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0,
                   99.5, 99.9, 99.95, 99.99)
FLUSH_EVERY = 8192  # latencies buffered before binning: 64 KiB of Python ints at most


def bucket_index(values: np.ndarray) -> np.ndarray:
    """fio's ``plat_val_to_idx`` for an array of non-negative nanosecond values."""
    vals = np.maximum(np.asarray(values, dtype=np.int64), 0)
    _, exponent = np.frexp(vals.astype(np.float64))  # exact: values < 2**53
    msb = np.maximum(exponent.astype(np.int64) - 1, 0)
    error_bits = np.maximum(msb - PLAT_BITS, 0)
    base = (error_bits + 1) << PLAT_BITS
    offset = (vals >> error_bits) & (PLAT_VAL - 1)
    index = np.where(msb <= PLAT_BITS, vals, base + offset)
    return np.minimum(index, PLAT_NR - 1)


def bucket_value(index: int) -> int:
    """fio's ``plat_idx_to_val``: the value a bucket stands for (its midpoint)."""
    if index < (PLAT_VAL << 1):
        return index
    error_bits = (index >> PLAT_BITS) - 1
    base = 1 << (error_bits + PLAT_BITS)
    return int(base + ((index % PLAT_VAL) + 0.5) * (1 << error_bits))


_VALUES = np.array([bucket_value(i) for i in range(PLAT_NR)], dtype=np.int64)


class LatencyHistogram:
    """Latencies in nanoseconds: count, min, max, mean, stddev and fio's histogram.

    ``add`` is cheap enough for a per-I/O hot loop; ``merge`` combines the histograms of
    in-flight slots, jobs and processes (group reporting). Picklable.
    """

    __slots__ = ("_buffer", "_m2", "_mean", "counts", "max", "min", "n")

    def __init__(self) -> None:
        self.counts = np.zeros(PLAT_NR, dtype=np.int64)
        self.n = 0
        self.min = 0
        self.max = 0
        self._mean = 0.0
        self._m2 = 0.0  # sum of squared deviations from the mean (Chan et al. merging)
        self._buffer: list[int] = []

    def add(self, value: int) -> None:
        self._buffer.append(value)
        if len(self._buffer) >= FLUSH_EVERY:
            self.flush()

    @property
    def pending(self) -> list[int]:
        """The buffer a hot loop may append to directly; call :meth:`flush_if_full` after
        a batch."""
        return self._buffer

    def flush_if_full(self) -> None:
        if len(self._buffer) >= FLUSH_EVERY:
            self.flush()

    def extend(self, values: Iterable[int]) -> None:
        self._buffer.extend(values)
        if len(self._buffer) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Bin the buffered latencies."""
        if not self._buffer:
            return
        batch = np.asarray(self._buffer, dtype=np.int64)
        self._buffer.clear()
        self.counts += np.bincount(bucket_index(batch), minlength=PLAT_NR)
        mean = float(batch.mean())
        m2 = float(((batch - mean) ** 2).sum())
        self._combine(len(batch), int(batch.min()), int(batch.max()), mean, m2)

    def _combine(self, n: int, lo: int, hi: int, mean: float, m2: float) -> None:
        if n == 0:
            return
        if self.n == 0:
            self.n, self.min, self.max, self._mean, self._m2 = n, lo, hi, mean, m2
            return
        total = self.n + n
        delta = mean - self._mean
        self._m2 += m2 + delta * delta * self.n * n / total
        self._mean += delta * n / total
        self.n = total
        self.min, self.max = min(self.min, lo), max(self.max, hi)

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s latencies to this histogram."""
        self.flush()
        other.flush()
        self.counts += other.counts
        self._combine(other.n, other.min, other.max, other._mean, other._m2)

    @classmethod
    def merged(cls, parts: Iterable[LatencyHistogram]) -> LatencyHistogram:
        out = cls()
        for part in parts:
            out.merge(part)
        return out

    @property
    def mean(self) -> float:
        self.flush()
        return self._mean

    @property
    def stddev(self) -> float:
        """The sample standard deviation, as fio reports it (n - 1 in the denominator)."""
        self.flush()
        return math.sqrt(self._m2 / (self.n - 1)) if self.n > 1 else 0.0

    def percentiles(self, points: Sequence[float] = FIO_PERCENTILES) -> dict[float, int]:
        """fio's ``calc_clat_percentiles``: for each point p, the value of the first bucket
        where the cumulative count reaches p% of all samples."""
        self.flush()
        if self.n == 0:
            return {p: 0 for p in points}
        cumulative = np.cumsum(self.counts)
        out: dict[float, int] = {}
        for p in points:
            index = int(np.searchsorted(cumulative, p / 100.0 * self.n, side="left"))
            out[p] = int(_VALUES[min(index, PLAT_NR - 1)])
        return out

    def bins(self) -> dict[int, int]:
        """Non-empty buckets as {value in ns: count} (fio's ``json+`` ``bins``)."""
        self.flush()
        nonzero = np.nonzero(self.counts)[0]
        return {int(_VALUES[i]): int(self.counts[i]) for i in nonzero}

    def share_below(self, edges: Sequence[int]) -> list[float]:
        """Percent of samples in ``(edges[i-1], edges[i]]`` for each edge (ns), and the rest
        above the last edge as a final entry: fio's ``latency_us`` style distribution."""
        self.flush()
        if self.n == 0:
            return [0.0] * (len(edges) + 1)
        cumulative = np.concatenate(([0], np.cumsum(self.counts)))
        # bucket i holds values around _VALUES[i]; count it at or below an edge by that value
        below = [int(cumulative[int(np.searchsorted(_VALUES, edge, side="right"))])
                 for edge in edges]
        shares, previous = [], 0
        for count in [*below, self.n]:
            shares.append(100.0 * (count - previous) / self.n)
            previous = count
        return shares
