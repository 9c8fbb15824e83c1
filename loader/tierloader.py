"""``TierLoader``: a ``torch.utils.data.DataLoader`` over a :class:`~.TierDataset`, with
batches made in the workers, epochs that reach persistent workers, and exact resumption.

How it is put together:

- Each worker reads its slice of the epoch (:mod:`.order`) and collates whole batches itself,
  so what crosses to the training process is collated tensors, never a list of per-sample
  Python objects to unpickle; the tensors travel in shared-memory slots the worker reuses
  (:mod:`.handover`), not in new shared memory per tensor and batch. Each batch travels with
  the reader that made it, how many samples it holds and a snapshot of that reader's
  read-ahead statistics (a few numbers per batch, not per sample).
- The epoch and the reader a pass begins with sit in a small shared-memory tensor that every
  worker reads when a pass starts, so :meth:`TierLoader.set_epoch` reaches persistent workers
  without restarting them.
- The DataLoader asks its workers for batches in turn and returns them in that order
  (``in_order=True``); the loader counts what each reader yielded, so a state says exactly how
  far every reader got. A resumed pass with the same layout lets DataLoader worker ``i`` play
  reader ``(i + first) % workers``, where ``first`` is the reader whose batch was due next, so
  the batches come in the same order as in the interrupted run. With another number of ranks
  or workers the unread rest of the epoch is partitioned afresh (:mod:`.state`).
- An error while iterating shuts the workers down at once: an abandoned DataLoader iterator
  whose traceback keeps it alive otherwise waits for its workers only when it is collected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torch.utils.data._utils.collate import default_convert

from tierstore.energy import EnergyLedger, Estimate

from .collate import collate as collate_samples
from .dataset import TierDataset
from .handover import Packed, SlotReader, SlotWriter
from .metrics import LoaderMeter, LoaderMetrics, MetricsFile, TierCounters, loader_metrics
from .order import OrderSpec, worker_order
from .ranks import Placement
from .readahead import PrefetchStats
from .runtime import LoopThread, share_arenas, trim_heap
from .state import STATE_VERSION

__all__ = ["LoaderStats", "TierLoader"]
log = logging.getLogger("tierstore.loader")

Batch = tuple[int, int, PrefetchStats, Any]  # (reader, samples, reader's stats, batch)


def _as_is(item: Any) -> Any:
    return item


class _Batches(IterableDataset[Batch]):
    """What each worker iterates: its reader's samples, collated into batches in the worker."""

    metrics: TierCounters | None = None  # where a worker publishes its reads (.metrics)

    def __init__(self, dataset: TierDataset, batch_size: int | None, drop_last: bool,
                 collate: Callable[[Any], Any], control: torch.Tensor, slots: int,
                 owner: int):
        super().__init__()
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.collate = collate
        self.control = control  # shared: [epoch, the reader DataLoader worker 0 plays]
        self.slots = slots  # batch slots per worker (0: tensors cross the usual way)
        self.owner = owner  # the SlotReader the batches are for
        self._writer: SlotWriter | None = None
        self._writer_pid = -1

    def _pack(self, batch: Any) -> Any:
        """``batch`` in one of this worker's slots (:mod:`.handover`), when it has them."""
        if not self.slots or get_worker_info() is None:
            return batch
        if self._writer is None or self._writer_pid != os.getpid():
            self._writer = SlotWriter(self.slots, self.owner)
            self._writer_pid = os.getpid()
        return self._writer.pack(batch)

    def __iter__(self) -> Iterator[Batch]:
        epoch, first = (int(v) for v in self.control.tolist())
        if self.dataset.epoch != epoch:  # a persistent worker's copy of the dataset
            self.dataset.set_epoch(epoch)
        info = get_worker_info()
        if info is not None:
            share_arenas()  # before this worker's reader starts its threads
            trim_heap()  # what the last pass left free, before this one reads
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        rank, size = self.dataset.rank_and_size()
        placement = Placement(rank, size, (worker + first) % workers, workers)
        batches = self._batches(self.dataset.iter_as(placement), placement.worker)
        if self.metrics is None:
            return batches
        return self.metrics.published(batches, worker, self.dataset.store.get,
                                      lambda: self.dataset.stats)

    def _batches(self, samples: Iterator[Any], reader: int) -> Iterator[Batch]:
        size = self.batch_size
        if size is None:
            for sample in samples:
                yield reader, 1, self.dataset.stats.snapshot(), self._pack(self.collate(sample))
            return
        batch: list[Any] = []
        for sample in samples:
            batch.append(sample)
            if len(batch) == size:
                yield reader, size, self.dataset.stats.snapshot(), self._pack(self.collate(batch))
                batch = []
        if batch and not self.drop_last:
            yield (reader, len(batch), self.dataset.stats.snapshot(),
                   self._pack(self.collate(batch)))


@dataclass
class _Pass:
    """One pass over (the rest of) an epoch, as the training process sees it."""

    spec: OrderSpec
    rank: int
    world_size: int
    workers: int
    base: dict[str, Any] | None  # the state whose unread samples this pass partitions
    skips: dict[str, int]  # samples each reader had yielded before this pass (same layout)
    first: int  # the reader whose batch comes first
    taken: list[int] = field(default_factory=list)
    last: int | None = None

    def __post_init__(self) -> None:
        self.taken = [0] * self.workers

    def name(self, reader: int) -> str:
        return f"{self.rank}/{reader}"

    def consumed(self) -> dict[str, int]:
        return {self.name(w): self.skips.get(self.name(w), 0) + n
                for w, n in enumerate(self.taken)}

    def next_reader(self) -> int:
        return self.first if self.last is None else (self.last + 1) % self.workers


@dataclass
class LoaderStats:
    """What the training loop saw of a :class:`TierLoader` in the current pass.

    Attributes
    ----------
    batches, samples : int
        Batches and samples the training loop took.
    wait_s : float
        Seconds spent waiting inside ``next(loader)``.
    started : float, optional
        ``time.perf_counter()`` when the first batch was asked for; None before.
    readers : dict of str to PrefetchStats
        The latest statistics of each reader (``"rank/worker"``).
    """

    batches: int = 0
    samples: int = 0
    wait_s: float = 0.0  # time spent waiting inside next(loader)
    started: float | None = None  # time.perf_counter() when the first batch was asked for
    readers: dict[str, PrefetchStats] = field(default_factory=dict)  # latest, per reader

    @property
    def wall_s(self) -> float:
        return 0.0 if self.started is None else time.perf_counter() - self.started

    @property
    def wait_fraction(self) -> float:
        """The share of the pass's time the training loop waited for data."""
        wall = self.wall_s
        return self.wait_s / wall if wall > 0 else 0.0

    @property
    def samples_per_s(self) -> float:
        wall = self.wall_s
        return self.samples / wall if wall > 0 else 0.0


class TierLoader:
    """A DataLoader over a :class:`~.TierDataset`.

    Batches are made in workers, ``set_epoch`` reaches persistent workers, and resumption
    mid-epoch is exact (also elastic).

    Parameters
    ----------
    dataset : TierDataset
        The dataset; its order is made of whole batches of ``batch_size`` per worker (a
        dataset made with the default ``batch_size=1`` is given the loader's).
    batch_size : int or None, default 1
    drop_last : bool, default False
    collate_fn : callable, optional
        As for ``DataLoader``, but batches are collated by each worker from its own samples
        (``drop_last`` drops a worker's last short batch), by default with
        :func:`~.collate.collate` (PyTorch's, keeping as lists the fields it cannot stack:
        images of different sizes). ``batch_size=None`` yields samples one by one.
    num_workers, pin_memory, persistent_workers, prefetch_factor, timeout, worker_init_fn,
    multiprocessing_context, pin_memory_device : optional
        Passed to ``DataLoader``; batches always come in the order workers made them in turn
        (``in_order=True``), which resumption relies on.
    reuse_memory : bool, default True
        With workers (and without ``pin_memory``, whose copy is made off the training
        thread anyway), batches arrive in shared-memory slots each worker reuses once the
        training process holds no tensor of them (:mod:`.handover`). Turn it off when the
        training loop passes batch tensors to other processes without copying them.
    metrics_every : float or None, default 5.0
        Seconds between writes of :meth:`metrics` into the store's home, where a ``tierstore
        daemon`` of the same store serves them on its metrics endpoint (:class:`~.MetricsFile`);
        None: never.
    epoch_log : callable, optional
        Called with :meth:`metrics` as one line at the end of each pass (``print``, or a
        logger's ``info``); None: nothing.

    Raises
    ------
    TypeError
        If ``dataset`` is not a :class:`~.TierDataset`.
    ValueError
        If ``batch_size`` is not positive (nor None), ``num_workers`` is negative, or the
        dataset's order is made for batches of another size.
    """

    def __init__(self, dataset: TierDataset, batch_size: int | None = 1, *,
                 num_workers: int = 0, collate_fn: Callable[[Any], Any] | None = None,
                 pin_memory: bool = False, drop_last: bool = False, timeout: float = 0,
                 worker_init_fn: Callable[[int], None] | None = None,
                 multiprocessing_context: Any = None, prefetch_factor: int | None = None,
                 persistent_workers: bool = False, pin_memory_device: str = "",
                 reuse_memory: bool = True, metrics_every: float | None = 5.0,
                 epoch_log: Callable[[str], object] | None = None):
        if not isinstance(dataset, TierDataset):
            raise TypeError(f"TierLoader reads a TierDataset, not {type(dataset).__name__}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be positive or None, not {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must not be negative, not {num_workers}")
        per_batch = batch_size or 1
        if dataset.spec.batch_size not in (1, per_batch):
            raise ValueError(f"the dataset's order is made for batches of "
                             f"{dataset.spec.batch_size}, the loader's are of {batch_size}")
        dataset.spec = dataclasses.replace(dataset.spec, batch_size=per_batch)
        self.dataset = dataset
        self.batch_size, self.drop_last, self.num_workers = batch_size, drop_last, num_workers
        collate = collate_fn or (default_convert if batch_size is None else collate_samples)
        self._control = torch.tensor([dataset.epoch, 0], dtype=torch.int64).share_memory_()
        slots = (prefetch_factor or 2) + 3 if reuse_memory and num_workers and not pin_memory \
            else 0  # queued in the DataLoader, held by the loop, being filled, not yet reclaimed
        self._slots = SlotReader()
        self._metrics_every = metrics_every
        self.epoch_log = epoch_log
        self._metrics_file: MetricsFile | None = None
        self.dataloader = DataLoader(
            _Batches(dataset, batch_size, drop_last, collate, self._control, slots,
                     self._slots.owner),
            batch_size=None,
            num_workers=num_workers, collate_fn=_as_is, pin_memory=pin_memory, timeout=timeout,
            worker_init_fn=worker_init_fn, multiprocessing_context=multiprocessing_context,
            prefetch_factor=prefetch_factor, persistent_workers=persistent_workers,
            pin_memory_device=pin_memory_device, in_order=True)
        self._pass: _Pass | None = None
        self._current: weakref.ref[Iterator[Any]] | None = None
        self._warned = False
        self.stats = LoaderStats()
        self._meter = LoaderMeter()
        self._counters = TierCounters(list(dataset.store.config.tiers), num_workers)
        self.dataloader.dataset.metrics = self._counters  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return (f"TierLoader({self.dataset!r}, batch_size={self.batch_size}, "
                f"num_workers={self.num_workers})")

    # -- the epoch ------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    def set_epoch(self, epoch: int) -> None:
        """Read an epoch on the next pass, also in persistent workers.

        Parameters
        ----------
        epoch : int
            The epoch (0 or more); see :meth:`TierDataset.set_epoch`.
        """
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        """Batches this rank yields in a whole epoch."""
        rank, size = self.dataset.rank_and_size()
        workers = max(1, self.num_workers)
        per, starts = self.batch_size or 1, self.dataset.index.starts
        counts = [len(worker_order(starts, self.dataset.spec,
                                   Placement(rank, size, w, workers)).samples)
                  for w in range(workers)]
        return sum(n // per if self.drop_last else -(-n // per) for n in counts)

    # -- iteration ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        rank, size = self.dataset.rank_and_size()
        workers = max(1, self.num_workers)
        loaded = self.dataset.loaded_state
        first = 0
        if loaded is not None and (loaded["world_size"], loaded["num_workers"]) == (size,
                                                                                    workers):
            first = int(loaded.get("next_worker", {}).get(str(rank), 0)) % workers
        base, skips = self.dataset.resumed_pass((size, workers))
        run = _Pass(self.dataset.spec, rank, size, workers, base, skips, first)
        self._control.copy_(torch.tensor([self.dataset.epoch, first]))
        self._counters.reset()  # before workers start reading this pass
        if self.num_workers and self.dataloader._iterator is None:
            self._slots.forget()  # new workers, new slots
            loop, store = LoopThread.get(), self.dataset.store.get()
            loop.flush_access()  # workers are forked now: see flush_access
            store.recorder.flush()  # a store handed in by the caller
            # parsed once here, botocore's models are the workers' without a copy each
            loop.submit(store.connect_tiers()).result()
        with _frozen_heap():  # workers are forked here (or reset)
            inner = iter(self.dataloader)
        self.dataset.forget_loaded_state()  # the next pass starts afresh, in workers and here
        self._pass, self.stats = run, LoaderStats()
        self._meter.begin()
        if self._metrics_every and self._metrics_file is None:
            self._metrics_file = MetricsFile(self, self._metrics_every)
        self._current = weakref.ref(inner)
        return self._batches(inner, run)

    def _batches(self, inner: Iterator[Batch], run: _Pass) -> Iterator[Any]:
        stats = self.stats
        while True:
            asked = time.perf_counter()
            if stats.started is None:
                stats.started = asked
            self._slots.reclaim()
            try:
                reader, count, reader_stats, batch = next(inner)
                if isinstance(batch, Packed):
                    batch = self._slots.unpack(batch)
            except StopIteration:
                metrics = self.metrics()
                if self.epoch_log is not None:
                    self.epoch_log(str(metrics))
                self._note_idle(metrics)
                return
            except BaseException:
                self._shut(inner)  # now, not when the traceback lets the iterator go
                raise
            finally:
                stats.wait_s += time.perf_counter() - asked
            run.taken[reader] += count
            run.last = reader
            stats.batches += 1
            stats.samples += count
            stats.readers[run.name(reader)] = reader_stats
            self._meter.step(asked, count)
            if not self._warned and stats.batches == 1:
                self._check(batch)
            yield batch

    def _note_idle(self, metrics: LoaderMetrics) -> None:
        """The pass's waiting for data, as energy, in the store's ledger (report energy)."""
        try:
            EnergyLedger.of(self.dataset.store.config).add_idle(
                Estimate(metrics.idle_joules, metrics.idle_grams_co2e), rank=metrics.rank)
        except OSError as exc:  # an estimate: never what stops training
            log.warning("could not write the energy ledger: %s", exc)

    def _check(self, batch: Any) -> None:
        if _holds_bytes(batch):
            self._warned = True
            warnings.warn("TierLoader batches hold Python bytes: the training process "
                          "unpickles them on every batch; decode samples to tensors (the "
                          "default decode does)", stacklevel=4)

    def _shut(self, inner: Iterator[Any]) -> None:
        shutdown = getattr(inner, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        if self.dataloader._iterator is inner:  # persistent workers: start afresh next time
            self.dataloader._iterator = None

    def shutdown(self) -> None:
        """Stop the workers now (also persistent ones); the next pass starts new ones."""
        for inner in (self.dataloader._iterator,
                      self._current() if self._current is not None else None):
            if inner is not None:
                self._shut(inner)
        self._slots.forget()

    def __enter__(self) -> TierLoader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()

    def metrics(self) -> LoaderMetrics:
        """Measure this rank's live metrics over the current (or last) pass.

        Returns
        -------
        LoaderMetrics
            Samples/s, bytes/s and hit rate per tier, wait per step (p50/p99), bytes in
            flight and a live AU (:mod:`.metrics`).
        """
        return loader_metrics(self, self._meter, self._counters)

    # -- resumption -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Save how far this rank's readers got in the current pass.

        A state loaded and not yet started from is returned as it is.

        Returns
        -------
        dict
            The state (see :mod:`.state`), with which reader's batch comes next
            (``next_worker``); ``torch.save`` and JSON both take it.
        """
        run = self._pass
        if run is None:
            if self.dataset.loaded_state is not None:  # loaded, not yet started: itself
                return {**self.dataset.loaded_state}
            rank, size = self.dataset.rank_and_size()
            workers = max(1, self.num_workers)
            run = _Pass(self.dataset.spec, rank, size, workers, None, {}, 0)
        index = self.dataset.index
        return {"version": STATE_VERSION, "samples": len(index), "shards": len(index.shards),
                **dataclasses.asdict(run.spec), "world_size": run.world_size,
                "num_workers": run.workers, "consumed": run.consumed(), "base": run.base,
                "next_worker": {str(run.rank): run.next_reader()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from a state on the next pass.

        With the same ranks and workers, the rest of the epoch comes in the same batch order;
        with others, the unread samples of every rank (:func:`~.state.merge_states`) are
        partitioned afresh. Persistent workers holding the old state are shut down.

        Parameters
        ----------
        state : mapping
            A state of :meth:`state_dict` (of every rank, merged, for an elastic resume).

        Raises
        ------
        ValueError
            If it is not a loader state of this version.
        InvalidIndex
            If it was saved for another dataset.
        """
        self.dataset.load_state_dict(state)
        self._pass = None
        if self.dataloader._iterator is not None:  # persistent workers hold the old state
            self._shut(self.dataloader._iterator)


def _holds_bytes(value: Any, depth: int = 0) -> bool:
    if isinstance(value, bytes | bytearray | memoryview):
        return True
    if depth > 3:
        return False
    if isinstance(value, Mapping):
        return any(_holds_bytes(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_bytes(v, depth + 1) for v in value[:4])
    return False


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Keep the garbage collector of workers forked here off the objects they inherit.

    A forked worker shares its parent's memory until it writes to a page; a collection walks
    every tracked object and writes to each one's header, so a worker's first collections
    made its own copy of most of the parent's heap: about 70 MiB per worker of a training
    process that imported torch, which with 2 workers was a tenth of the loader's memory.
    Objects frozen before the fork stay out of the workers' collections (``gc.freeze``); the
    parent takes them back at once."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
