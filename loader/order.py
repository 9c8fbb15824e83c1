"""The order of an epoch: a pure function of the index's shard sizes, the seed, the epoch and
where a reader sits (rank of world size, worker of workers). No I/O, no clocks, no globals.

1. The shards are permuted (seeded by ``(seed, epoch)``) and their samples laid end to end:
   the epoch's sequence of global sample ids.
2. Ranks take contiguous blocks of that sequence, then each rank's workers take contiguous
   blocks of whole batches of it: every reader reads mostly whole shards, and every sample
   goes to exactly one reader. ``equalize`` asks for equal batches per rank instead: ``drop``
   leaves out the tail, ``pad`` repeats samples from the start of the sequence (counted).
3. Each reader passes its block through a bounded shuffle buffer seeded by
   ``(seed, epoch, rank, worker)``, which starts emitting before it is full.

Because it is pure, any process can compute any reader's order, which is what resumption and
(later) staging ahead of the readers build on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .ranks import Placement

__all__ = [
    "EQUALIZE",
    "OrderSpec",
    "WorkerOrder",
    "buffer_shuffle",
    "buffer_start",
    "consumed_mask",
    "epoch_sequence",
    "rank_span",
    "shard_permutation",
    "worker_order",
    "worker_span",
]

Equalize = Literal["none", "drop", "pad"]
EQUALIZE: tuple[Equalize, ...] = ("none", "drop", "pad")
_SHARDS, _BUFFER, _RESUMED = 0, 1, 2  # streams of randomness, kept apart
BUFFER_START = 8  # a shuffle buffer starts emitting when 1/8 full


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """Everything besides placement that an epoch's order depends on.

    Attributes
    ----------
    seed, epoch : int
        Same seed and epoch, same order; another epoch, another order (0 and 0 by default;
        the epoch not negative).
    shuffle : bool, default True
        Permute shards and pass samples through the shuffle buffer; False reads in index
        order.
    buffer_size : int, default 0
        Samples held by each reader's shuffle buffer (0 or 1: no buffer).
    equalize : {"none", "drop", "pad"}, default "none"
        ``none``: every sample exactly once, ranks differ by at most one batch. ``drop`` or
        ``pad``: every rank gets the same whole number of batches, by leaving out or
        repeating samples.
    batch_size : int, default 1
        Workers get whole batches (only the rank's last may be short, and only with
        ``none``), so a DataLoader batching per worker makes full batches.

    Raises
    ------
    ValueError
        If ``equalize`` is unknown, ``batch_size`` is not positive, or ``buffer_size`` or
        ``epoch`` is negative.
    """

    seed: int = 0
    epoch: int = 0
    shuffle: bool = True
    buffer_size: int = 0
    equalize: Equalize = "none"
    batch_size: int = 1

    def __post_init__(self) -> None:
        if self.equalize not in EQUALIZE:
            raise ValueError(f"equalize must be one of {EQUALIZE}, not {self.equalize!r}")
        if self.batch_size < 1 or self.buffer_size < 0 or self.epoch < 0:
            raise ValueError("batch_size must be positive; buffer_size and epoch not negative")


@dataclass(frozen=True, slots=True)
class WorkerOrder:
    """One reader's samples for an epoch, as global sample ids in the order it yields them.

    Attributes
    ----------
    samples : numpy.ndarray
        The global sample ids (int64), in the order the reader yields them.
    padding : int
        How many of them repeat a sample (``equalize="pad"``).
    """

    samples: np.ndarray
    padding: int  # how many of them repeat a sample (equalize="pad")


def _rng(seed: int, *tags: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed % 2**64, *tags]))


def shard_permutation(num_shards: int, spec: OrderSpec) -> np.ndarray:
    """The order shards are read in this epoch."""
    if not spec.shuffle:
        return np.arange(num_shards, dtype=np.int64)
    return _rng(spec.seed, spec.epoch, _SHARDS).permutation(num_shards).astype(np.int64)


def epoch_sequence(starts: np.ndarray, spec: OrderSpec) -> np.ndarray:
    """Every global sample id once: the shards' samples end to end, shards permuted.

    ``starts`` is the index's first-sample id per shard plus the total at the end.
    """
    counts = np.diff(starts)
    perm = shard_permutation(len(counts), spec)
    lengths = counts[perm]
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    # id = start of its shard + position within the shard, built without a Python loop
    shard_start = np.repeat(starts[:-1][perm], lengths)
    block_start = np.repeat(np.cumsum(lengths) - lengths, lengths)
    out: np.ndarray = shard_start + (np.arange(total, dtype=np.int64) - block_start)
    return out


def rank_span(total: int, world_size: int, rank: int, equalize: Equalize, batch_size: int
              ) -> tuple[int, int]:
    """Positions ``[lo, hi)`` of the epoch sequence that ``rank`` reads (``pad`` positions at
    or past ``total`` wrap around to the start)."""
    if equalize == "none":
        base, extra = divmod(total, world_size)
        lo = rank * base + min(rank, extra)
        return lo, lo + base + (rank < extra)
    per = total // world_size
    if equalize == "drop":
        per = per // batch_size * batch_size
    else:
        per = -(-total // world_size)
        per = -(-per // batch_size) * batch_size if total else 0
    return rank * per, (rank + 1) * per


def worker_span(count: int, num_workers: int, worker: int, batch_size: int
                ) -> tuple[int, int]:
    """Positions ``[lo, hi)`` of a rank's ``count`` samples that ``worker`` reads: a
    contiguous run of whole batches, the runs as even as batches allow."""
    batches = -(-count // batch_size)
    base, extra = divmod(batches, num_workers)
    first = worker * base + min(worker, extra)
    last = first + base + (worker < extra)
    return min(count, first * batch_size), min(count, last * batch_size)


def buffer_start(size: int) -> int:
    """Samples a shuffle buffer of ``size`` holds before it emits its first one."""
    return max(1, size // BUFFER_START)


def buffer_shuffle(ids: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``ids`` through a shuffle buffer of ``size`` that fills as it goes (as WebDataset's
    does): it emits its first id, picked at random, once it holds :func:`buffer_start`
    of them, then one for every two that arrive until it holds ``size``, then one for each;
    what it holds at the end leaves shuffled. A reader's first batch so waits for a few
    shards' samples, not for a full buffer."""
    if size <= 1 or len(ids) <= 1:
        return ids.copy()
    start = buffer_start(size)
    picks = rng.random(len(ids)).tolist()
    held: list[int] = []
    out: list[int] = []
    for arrived, sample in enumerate(ids.tolist(), 1):
        held.append(sample)
        if len(held) < size and (len(held) < start or (arrived - start) % 2):
            continue
        k = int(picks[len(out)] * len(held))
        out.append(held[k])
        held[k] = held[-1]
        held.pop()
    rng.shuffle(held)
    out.extend(held)
    return np.asarray(out, dtype=np.int64)


def worker_order(starts: np.ndarray, spec: OrderSpec, placement: Placement, *,
                 exclude: np.ndarray | None = None) -> WorkerOrder:
    """Compute the samples a reader yields in an epoch, in order.

    A pure function: no I/O, no clocks, no globals (see the module).

    Parameters
    ----------
    starts : numpy.ndarray
        The index's first-sample id per shard plus the total at the end
        (:attr:`DatasetIndex.starts`).
    spec : OrderSpec
        The epoch's order.
    placement : Placement
        The reader.
    exclude : numpy.ndarray, optional
        A boolean mask over global sample ids that takes samples out of the epoch before it
        is partitioned: an elastic resume partitions what the interrupted run had not yet
        read.

    Returns
    -------
    WorkerOrder
        The reader's samples and how many of them are padding.
    """
    return _reader_order(_sequence(starts, spec, exclude), spec, placement,
                         resumed=exclude is not None)


def _sequence(starts: np.ndarray, spec: OrderSpec, exclude: np.ndarray | None) -> np.ndarray:
    sequence = epoch_sequence(starts, spec)
    return sequence if exclude is None else sequence[~exclude[sequence]]


def _reader_order(sequence: np.ndarray, spec: OrderSpec, p: Placement, *, resumed: bool
                  ) -> WorkerOrder:
    total = len(sequence)
    lo, hi = rank_span(total, p.world_size, p.rank, spec.equalize, spec.batch_size)
    w_lo, w_hi = worker_span(hi - lo, p.num_workers, p.worker, spec.batch_size)
    positions = np.arange(lo + w_lo, lo + w_hi, dtype=np.int64)
    padding = int((positions >= total).sum())
    ids = sequence[positions % total] if total else positions
    if spec.shuffle:
        tags = (_RESUMED,) if resumed else ()
        rng = _rng(spec.seed, spec.epoch, _BUFFER, p.rank, p.worker, *tags)
        ids = buffer_shuffle(ids, spec.buffer_size, rng)
    return WorkerOrder(samples=ids, padding=padding)


def consumed_mask(starts: np.ndarray, spec: OrderSpec, world_size: int, num_workers: int,
                  consumed: Mapping[str, int], *, exclude: np.ndarray | None = None
                  ) -> np.ndarray:
    """Which global sample ids an epoch laid out over ``world_size`` ranks of
    ``num_workers`` workers has no more use for: those its readers had yielded (``consumed``
    maps ``"rank/worker"`` to a count of yielded samples, every reader present), those it
    never meant to read (left out by ``equalize="drop"``) and those ``exclude`` had already
    taken out (the run being described was itself resumed)."""
    done = np.ones(int(starts[-1]), dtype=bool)
    sequence = _sequence(starts, spec, exclude)
    for rank in range(world_size):
        for worker in range(num_workers):
            placement = Placement(rank, world_size, worker, num_workers)
            ids = _reader_order(sequence, spec, placement, resumed=exclude is not None).samples
            done[ids[consumed[placement.name]:]] = False
    return done
