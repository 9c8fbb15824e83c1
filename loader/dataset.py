"""``TierDataset``: a PyTorch ``IterableDataset`` over a dataset of shards in a store.

Each reader (a rank's DataLoader worker, or the process itself without workers) computes its
own slice of the epoch's order (:mod:`.order`), reads the shards that slice needs ahead of
time on its loader loop (:mod:`.prefetch`), opens each verified shard once, takes out the
samples it needs, and yields them through ``decode`` and ``transform`` in order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset

from tierstore.config import Config, load_config
from tierstore.store import Store
from tierstore.sync import SyncStore

from .announce import Announcer, reader_id
from .decode import as_decoder, to_tensors
from .errors import SampleError, ShardError, ShardFormatError
from .fill import FillStats, HotFill
from .formats import resolve_formats
from .formats.base import Buffer, ShardFormat, ShardReader
from .formats.parquet import ParquetFormat
from .index import DatasetIndex, ShardEntry, aread_index
from .landing import Landing
from .order import Equalize, OrderSpec, rank_span, worker_order
from .prefetch import PART_SIZE, PrefetchStats, ShardPrefetcher, ShardReads
from .ranks import Placement, current_placement, world
from .readahead import ReadAhead, check_read_ahead
from .retry import RETRY, Backoff, retrying
from .runtime import LoopThread, StoreHandle
from .samples import DueReads, DueSample
from .state import STATE_VERSION, check_state, dataloader_consumed, exclude_mask, spec_of

__all__ = ["TierDataset", "default_prefetch_bytes"]

StoreLike = Config | str | os.PathLike[str] | Store | SyncStore | None
DRAIN = 60.0  # seconds a finished pass waits for reads under way (their fills need them)
READ_BACK_AFTER = 256  # a sample its fill writes to this node's disk and due this many samples
# or more after it is taken is read back from there when due, not held: in a 512-sample shuffle
# buffer about half are, and the rest are held at most ~100 at a time (a read back costs the
# CPU of its O_DIRECT read, ~50-80 us per 110 KB sample on the 2-core benchmark machine)


def default_prefetch_bytes() -> int:
    """Size the read-ahead of a rank when none is given.

    Returns
    -------
    int
        Bytes: 1/16 of physical memory (taken as 4 GiB where it cannot be read), within
        64 MiB to 1 GiB.
    """
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        memory = 4 * 2**30
    return int(min(2**30, max(64 * 2**20, memory // 16)))


def _handle(store: StoreLike) -> StoreHandle:
    if isinstance(store, SyncStore):
        return StoreHandle(store.config, store.aio)
    if isinstance(store, Store):
        return StoreHandle(store.config, store)
    return StoreHandle(store if isinstance(store, Config) else load_config(store))


class TierDataset(IterableDataset[Any]):
    """Samples of a sharded dataset in a tierstore store, in a deterministic order.

    Parameters
    ----------
    store
        A :class:`~tierstore.Config`, a config file path, a :class:`~tierstore.Store` or
        :class:`~tierstore.SyncStore`, or None for the environment's default. Workers open
        their own store from its configuration; only the configuration is pickled.
    prefix
        The dataset's prefix; its ``index.json`` is read once, here.
    index
        An index already read (instead of ``prefix``).
    decode, transform
        Called on each raw sample in turn (raw samples: a dict of fields for tar, raw files
        and Parquet rows, a NumPy array for Zarr). The default decode turns bytes and arrays
        into tensors (see :mod:`.decode`); None leaves raw samples as they are. As in
        WebDataset, ``decode`` may also name a decoder (``"pil"``, ``"rgb8"``, ``"torchrgb"``,
        ... for image fields, the small fields by their extension) or map fields to names or
        functions (``{"jpg": "rgb8", "cls": int}``): :class:`~.decode.Decoder`.
    shuffle, seed, buffer_size
        Shard-level shuffle plus a shuffle buffer of ``buffer_size`` samples per reader,
        seeded by ``seed`` and the epoch (:meth:`set_epoch`).
    equalize, batch_size
        ``none`` reads every sample exactly once; ``drop`` or ``pad`` give every rank the same
        number of whole batches of ``batch_size`` (:attr:`padding` counts repeats).
    prefetch_bytes
        Read-ahead budget per rank, split between its DataLoader workers (default:
        :func:`default_prefetch_bytes`).
    max_reads, part_size
        Ranged reads in flight per reader, and the size of each.
    read_ahead
        How far ahead each reader reads, within its share of ``prefetch_bytes``:
        ``"adaptive"`` (as far as the measured consumption rate and read latency need, see
        :mod:`.readahead`), ``"budget"`` (as far as the budget allows) or a number of shards.
    retry
        How a read failing for a passing reason (every replica briefly away) is retried
        before its error is raised (:class:`~.retry.Backoff`).
    columns, formats
        Parquet columns to read; or format instances by name, overriding the defaults.
    rank, world_size
        This process's rank; default from ``torch.distributed`` or ``RANK``/``WORLD_SIZE``.
    announce
        Tell the store which shards each reader reads next and when (this epoch's rest, then
        the next epoch's), so that a running ``tierstore daemon`` stages them into the hot
        tier ahead of need (:mod:`.announce`).
    fill_hot
        Keep each shard read from a slower tier on the node's hot tier too, from the bytes
        just read (read-through fill, :mod:`.fill`), while that tier has room under its high
        watermark: the shard's bytes cross from the slower tier once, not again when the
        daemon stages it.
    """

    def __init__(self, store: StoreLike = None, prefix: str | None = None, *,
                 index: DatasetIndex | None = None,
                 decode: Callable[[Any], Any] | str | Mapping[str, Any] | None = to_tensors,
                 transform: Callable[[Any], Any] | None = None,
                 shuffle: bool = True, seed: int = 0, buffer_size: int = 512,
                 equalize: Equalize = "none", batch_size: int = 1,
                 prefetch_bytes: int | None = None, max_reads: int = 16,
                 part_size: int = PART_SIZE, read_ahead: ReadAhead = "adaptive",
                 retry: Backoff = RETRY, columns: list[str] | None = None,
                 formats: Mapping[str, ShardFormat] | None = None,
                 rank: int | None = None, world_size: int | None = None,
                 announce: bool = True, fill_hot: bool = True):
        super().__init__()
        self.announce, self.fill_hot = announce, fill_hot
        self._store = _handle(store)
        if index is None:
            if prefix is None:
                raise ValueError("give the dataset's prefix or its index")
            store = self._store.get()
            index = LoopThread.get().submit(
                retrying(lambda: aread_index(store, prefix), retry)).result()
            store.recorder.flush()  # now, not from a thread a fork may catch in SQLite
        self.index = index
        overrides = dict(formats or {})
        if columns is not None:
            overrides.setdefault("parquet", ParquetFormat(columns))
        self.formats = resolve_formats(index.formats, overrides)
        self.decode, self.transform = as_decoder(decode), transform
        self.spec = OrderSpec(seed=seed, epoch=0, shuffle=shuffle, buffer_size=buffer_size,
                              equalize=equalize, batch_size=batch_size)
        self.prefetch_bytes = prefetch_bytes or default_prefetch_bytes()
        if max_reads < 1 or part_size < 1:
            raise ValueError("max_reads and part_size must be positive")
        self.max_reads, self.part_size = max_reads, part_size
        self.read_ahead, self.retry = check_read_ahead(read_ahead), retry
        self._rank, self._world_size = rank, world_size
        self._resume: dict[str, Any] | None = None  # a loaded state, for the next pass
        self._base: dict[str, Any] | None = None  # the state the current pass resumed
        self._layout: tuple[int, int] | None = None  # (world_size, num_workers) in use
        self._consumed: dict[str, int] = {}
        self.stats = PrefetchStats()
        self.fills = FillStats()  # the last pass's read-through fills (fill_hot)

    @classmethod
    def from_url(cls, url: str, store: StoreLike = None, *, jobs: int = 8,
                 **options: Any) -> TierDataset:
        """Make the dataset of the shards a URL names, as WebDataset users name theirs.

        The shards must lie under one of the store's tiers: those not in its catalog yet are
        adopted in place (read once for their checksums; nothing copied) and indexed beside
        them, then read like any dataset (:mod:`.fromurl`).

        Parameters
        ----------
        url : str
            The shards: ``"s3://bucket/train/shard-{000000..000123}.tar"``, or a folder
            ending in ``/``.
        store : Config, str, os.PathLike, Store or SyncStore, optional
            As the constructor's; the environment's default if None.
        jobs : int, default 8
            Shards adopted at once.
        **options
            The constructor's other arguments.

        Returns
        -------
        TierDataset
            The dataset.

        Raises
        ------
        ValueError
            If the URL lies under none of the store's tiers, names shards on several, or its
            shards cannot be read from the store.
        """
        from .fromurl import prepare_url

        handle = _handle(store)
        prefix = LoopThread.get().submit(prepare_url(handle.get(), url, jobs=jobs)).result()
        return cls(store if isinstance(store, Store | SyncStore) else handle.config, prefix,
                   **options)

    @property
    def store(self) -> StoreHandle:
        """The store this dataset reads, as a handle: ``.get()`` is this process's store (a
        worker opens its own), ``.config`` its config."""
        return self._store

    @property
    def loaded_state(self) -> dict[str, Any] | None:
        """A state :meth:`load_state_dict` took that no pass has started from yet."""
        return self._resume

    def forget_loaded_state(self) -> None:
        """Start the next pass afresh (its readers have taken the loaded state)."""
        self._resume = None

    def __repr__(self) -> str:
        return (f"TierDataset({self.index.prefix!r}, {len(self.index.shards)} shards, "
                f"{len(self.index)} samples, epoch={self.spec.epoch})")

    # -- the epoch ------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self.spec.epoch

    def set_epoch(self, epoch: int) -> None:
        """Read an epoch next.

        Each epoch has its own order; the same epoch repeats its order. A state loaded for
        another epoch is dropped.

        With ``persistent_workers=True`` a plain DataLoader's workers keep the dataset they
        started with, so this does not reach them; :class:`~.TierLoader` passes the epoch to
        its workers at the start of each pass.

        Parameters
        ----------
        epoch : int
            The epoch (0 or more).
        """
        self.spec = dataclasses.replace(self.spec, epoch=epoch)
        if self._resume is not None and self._resume["epoch"] != epoch:
            self._resume = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for a spawned DataLoader worker (or another process): with this rank and
        world size fixed, since ``torch.distributed`` is not initialised in a spawned
        worker (``torch.multiprocessing.spawn`` makes every worker of its ranks a spawned
        one) and ``RANK``/``WORLD_SIZE`` may not be set."""
        state = self.__dict__.copy()
        state["_rank"], state["_world_size"] = self.rank_and_size()
        return state

    def rank_and_size(self) -> tuple[int, int]:
        """Tell the rank this dataset reads as, and the world size.

        Returns
        -------
        tuple of (int, int)
            ``(rank, world_size)``: as given, else ``torch.distributed``'s, else
            ``RANK``/``WORLD_SIZE``, else 0 of 1.

        Raises
        ------
        ValueError
            If ``RANK`` or ``WORLD_SIZE`` is needed and not an integer.
        """
        if self._rank is not None and self._world_size is not None:
            return self._rank, self._world_size
        rank, size = world()
        return (rank if self._rank is None else self._rank,
                size if self._world_size is None else self._world_size)

    def _exclude(self, base: Mapping[str, Any] | None) -> np.ndarray | None:
        return exclude_mask(base, self.index.starts)

    def __len__(self) -> int:
        """Samples this rank yields in a whole epoch (padding included)."""
        lo, hi = self._rank_span()
        return hi - lo

    @property
    def padding(self) -> int:
        """Samples this rank repeats in a whole epoch (``equalize="pad"``)."""
        lo, hi = self._rank_span()
        return max(0, hi - max(lo, len(self.index)))

    def _rank_span(self) -> tuple[int, int]:
        rank, size = self.rank_and_size()
        return rank_span(len(self.index), size, rank, self.spec.equalize, self.spec.batch_size)

    # -- iteration ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        return self.iter_as(current_placement(*self.rank_and_size()))

    def iter_as(self, placement: Placement) -> Iterator[Any]:
        """Iterate this pass's samples as a given reader reads them.

        A loaded state is taken now, not when the first sample is asked for.

        Parameters
        ----------
        placement : Placement
            The reader.

        Returns
        -------
        iterator
            The reader's samples, decoded and transformed.
        """
        skip, exclude = self._start(placement)
        order = worker_order(self.index.starts, self.spec, placement, exclude=exclude)
        self._consumed[placement.name] = skip
        return self._samples(order.samples[skip:], placement)

    def _start(self, placement: Placement) -> tuple[int, np.ndarray | None]:
        """Take a loaded state for this pass: how many samples to skip, which to leave out."""
        layout = (placement.world_size, placement.num_workers)
        self._base, skips = self.resumed_pass(layout)
        self._resume, self._layout, self._consumed = None, layout, {}
        return skips.get(placement.name, 0), self._exclude(self._base)

    def resumed_pass(self, layout: tuple[int, int]
                      ) -> tuple[dict[str, Any] | None, dict[str, int]]:
        """Tell how the pass a loaded state starts is read.

        Parameters
        ----------
        layout : tuple of (int, int)
            ``(world_size, num_workers)`` of the pass.

        Returns
        -------
        base : dict or None
            The state the pass builds on (whose unread samples it partitions): with the
            saved layout, the loaded state's own base; with another (elastic), the loaded
            state; None without a loaded state.
        skips : dict of str to int
            What each reader (``"rank/worker"``) skips: with the saved layout, what it had
            yielded; else nothing.
        """
        state = self._resume
        if state is None:
            return None, {}
        if (state["world_size"], state["num_workers"]) == layout:
            return state.get("base"), dict(state["consumed"])
        return state, {}  # elastic: partition what the saved run had not read

    def _samples(self, ids: np.ndarray, placement: Placement) -> Iterator[Any]:
        starts = self.index.starts
        positions = np.searchsorted(starts, ids, side="right") - 1
        needed = _needed_by_shard(ids, starts)
        shard_order = _shard_order(ids, starts)
        uses = _repeats(ids)
        fills = HotFill(self._store.get()) if self.fill_hot else None
        prefetcher = self._prefetcher(shard_order, fills)
        announcer = self._announcer(shard_order, placement, prefetcher, fills)
        pending: dict[int, Any] = {}  # samples taken (or, due: where they lie), by id
        due = DueReads(self._store.get(), prefetcher.reread, prefetcher.stats)
        taking: _Taking | None = None
        name, finished = placement.name, False
        order = ids.tolist()
        first_at = {g: at for at, g in reversed(list(enumerate(order)))}  # where each is due
        try:
            for at, (gid, pos) in enumerate(zip(order, positions.tolist(), strict=True)):
                while gid not in pending:  # samples are taken in the order they were read
                    if taking is None:
                        taking = self._open_shard(prefetcher, needed, gid, pos, placement)
                        if announcer is not None:
                            announcer.advance(taking.landing.shard)
                    due_in = first_at[taking.start + taking.ids[-1]] - at
                    self._take_sample(taking, pending, gid, pos, placement, due_in)
                    if not taking.ids:
                        prefetcher.release(taking.landing)
                        taking = None
                due.read_ahead(at, order, pending)
                raw = pending[gid]
                if uses.get(gid, 1) <= 1:
                    del pending[gid]
                else:
                    uses[gid] -= 1
                if isinstance(raw, DueSample):
                    raw = self._due_sample(due, at, raw, gid, pos, placement)
                sample = self._decoded(raw, gid, pos)
                self._consumed[name] += 1
                yield sample
            finished = True
        finally:
            due.close()
            prefetcher.shutdown(drain=DRAIN if finished else 0.0)
            if fills is not None:
                self.fills = fills.stats
                with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                    LoopThread.get().submit(fills.close()).result(timeout=60)
            if announcer is not None:
                announcer.close()

    def _announcer(self, shard_order: list[int], placement: Placement,
                   prefetcher: ShardPrefetcher, fills: HotFill | None) -> Announcer | None:
        """Announces this reader's shards (this pass's, then the next epoch's) to the store,
        when ``announce`` is on."""
        if not self.announce:
            return None
        following = worker_order(self.index.starts,
                                 dataclasses.replace(self.spec, epoch=self.epoch + 1), placement)
        shards = self.index.shards
        return Announcer(
            self._store.get(), reader_id(placement.name), [shards[i] for i in shard_order],
            [shards[i] for i in _shard_order(following.samples, self.index.starts)],
            started=lambda: prefetcher.started, ahead=lambda: prefetcher.stats.depth_bytes,
            filling=lambda: fills is not None and fills.room).start(LoopThread.get())

    def _prefetcher(self, shard_order: list[int], fills: HotFill | None) -> ShardPrefetcher:
        store = self._store.get()
        loop = LoopThread.get()
        workers = self._layout[1] if self._layout else 1
        stats = self.stats = PrefetchStats()
        # the semaphore binds to the loop that first waits on it
        reads = ShardReads(store, asyncio.Semaphore(self.max_reads), stats, self.part_size,
                           self.retry, loop.buffers, loop.blocks, fills)
        shards = [(pos, self.index.shards[pos]) for pos in shard_order]
        return ShardPrefetcher(loop, reads, shards, max(1, self.prefetch_bytes // workers),
                               ranged=lambda shard: self.formats[shard.format].ranged_samples,
                               read_ahead=self.read_ahead)

    def _open_shard(self, prefetcher: ShardPrefetcher, needed: Mapping[int, np.ndarray],
                    gid: int, pos: int, placement: Placement) -> _Taking:
        """The next shard, as it lands, and the samples this reader needs from it."""
        try:
            got, landing = prefetcher.next()
        except StopIteration:
            raise RuntimeError(f"internal error: shard {pos} never arrived") from None
        except ShardError as exc:
            raise self._shard_error(exc, gid, pos, placement) from exc
        return _Taking(landing, int(self.index.starts[got]), needed[got].tolist()[::-1])

    def _take_sample(self, taking: _Taking, pending: dict[int, Any], gid: int, pos: int,
                     placement: Placement, due_in: int) -> None:
        """Take the next sample of ``taking``, due ``due_in`` samples from now: where it
        lies, to read it when it is due, if it is on this node's disk (a hot replica, or the
        file its fill writes, for one not due soon); else once its bytes are checked (all of
        the shard's, unless its format reads a sample from its own byte range alone)."""
        landing = taking.landing
        shard, i = landing.shard, taking.ids[-1]
        fmt = self.formats[shard.format]
        offsets = shard.offsets if fmt.ranged_samples else None
        end = offsets[i + 1] if offsets else shard.size
        parted = bool(offsets) and landing.parted
        local = landing.local
        if local is None and parted and due_in >= READ_BACK_AFTER:
            local = landing.filing
        try:
            if local is None:  # a parted shard: the sample's own bytes (the blocks behind go)
                data = landing.read(offsets[i], end) if offsets and parted else landing.wait(end)
        except ShardError as exc:
            raise self._shard_error(exc, gid, pos, placement) from exc
        if local is not None:
            pending[taking.start + i] = DueSample(local, i)
        else:
            if parted:
                take = functools.partial(fmt.ranged_sample, data, shard, i)
            else:
                if taking.reader is None or data is not taking.data:  # the first, or re-read
                    taking.data, taking.reader = data, fmt.open(data, shard, self.index)
                take = functools.partial(taking.reader.sample, i)
            pending[taking.start + i] = _taken(take, shard, i, taking.start + i)
        taking.ids.pop()
        if landing.parted and offsets and taking.ids:
            landing.passed(offsets[taking.ids[-1]])

    def _due_sample(self, due: DueReads, at: int, sample: DueSample, gid: int, pos: int,
                    placement: Placement) -> Any:
        """The raw sample ``sample`` (read now, or ahead by ``due``), yielded at ``at``."""
        shard = sample.local.shard
        try:
            data = due.take(at, sample)
        except ShardError as exc:
            raise self._shard_error(exc, gid, pos, placement) from exc
        return _taken(functools.partial(self.formats[shard.format].ranged_sample, data, shard,
                                        sample.index), shard, sample.index, gid)

    def _shard_error(self, exc: ShardError, gid: int, pos: int,
                     placement: Placement) -> ShardError:
        entry, local = self.index.shards[pos], gid - int(self.index.starts[pos])
        return type(exc)(f"{exc} (needed for sample {local} of {entry.key!r}, global sample "
                         f"{gid}; rank {placement.rank}, worker {placement.worker})",
                         shard=entry.key, sample=local)

    def _decoded(self, raw: Any, gid: int, pos: int) -> Any:
        sample = raw
        for step in (self.decode, self.transform):
            if step is None:
                continue
            try:
                sample = step(sample)
            except Exception as exc:
                shard = self.index.shards[pos]
                local = gid - int(self.index.starts[pos])
                key = raw.get("__key__") if isinstance(raw, Mapping) else None
                what = "decode" if step is self.decode else "transform"
                raise SampleError(
                    f"{what} failed on sample {local}{f' ({key!r})' if key else ''} of shard "
                    f"{shard.key!r} (global sample {gid}): {type(exc).__name__}: {exc}"
                ) from exc
        return sample

    # -- resumption -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Where this process's readers are in the current epoch (see :mod:`.state`).

        Without DataLoader workers this is the dataset's own progress; a DataLoader's parent
        process asks :meth:`loader_state_dict` instead. Inside a worker (torchdata's
        ``StatefulDataLoader`` calls it there) it is that worker's progress.

        Returns
        -------
        dict
            The state: a plain dict, see :mod:`.state`.
        """
        world_size, workers = self._layout or (self.rank_and_size()[1], 1)
        return self._state(world_size, workers, dict(self._consumed))

    def _state(self, world_size: int, workers: int, consumed: dict[str, int]
               ) -> dict[str, Any]:
        return {"version": STATE_VERSION, "samples": len(self.index),
                "shards": len(self.index.shards), **dataclasses.asdict(self.spec),
                "world_size": world_size, "num_workers": workers, "consumed": consumed,
                "base": self._base}

    def loader_state_dict(self, batches: int, *, num_workers: int, batch_size: int,
                          drop_last: bool = False) -> dict[str, Any]:
        """Compute the state of a DataLoader of this rank from its batch count.

        A DataLoader takes batches from its workers in turn, so how far each worker got
        follows from the batch count and each worker's share of the order, both pure. A
        state loaded into this dataset is taken to be what the DataLoader's workers resumed
        from (they received a copy of it); it stays for every pass of its epoch, since the
        workers' passes cannot be seen from here.

        Parameters
        ----------
        batches : int
            Batches the ``DataLoader(self, num_workers=..., batch_size=...)`` has returned
            in the current pass.
        num_workers : int
            Its workers (0: none, read as one).
        batch_size : int
            Its batch size.
        drop_last : bool, default False
            Whether it drops each worker's last short batch.

        Returns
        -------
        dict
            The state (see :mod:`.state`).

        Raises
        ------
        ValueError
            If ``batches`` is more than the epoch holds.
        """
        rank, size = self.rank_and_size()
        workers = max(1, num_workers)
        if self._resume is not None:
            base, skips = self.resumed_pass((size, workers))
        else:
            base, skips = self._base, {}
        exclude = self._exclude(base)
        names = [f"{rank}/{w}" for w in range(workers)]
        left = [len(worker_order(self.index.starts, self.spec, Placement(rank, size, w, workers),
                                 exclude=exclude).samples) - skips.get(names[w], 0)
                for w in range(workers)]
        counts = dataloader_consumed(batches, left, batch_size, drop_last=drop_last)
        consumed = {name: skips.get(name, 0) + n for name, n in zip(names, counts, strict=True)}
        state = self._state(size, workers, consumed)
        state["base"] = base
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from a state on the next pass.

        With the same layout, the next pass is the same order minus what was yielded; with
        another layout (elastic), the unread samples re-partitioned. The dataset takes the
        state's order (seed, epoch, shuffle...).

        Parameters
        ----------
        state : mapping
            A state of :meth:`state_dict`, :meth:`loader_state_dict` or
            :func:`merge_states`.

        Raises
        ------
        ValueError
            If it is not a loader state of this version.
        InvalidIndex
            If it was saved for another dataset (another sample or shard count).
        """
        check_state(state, len(self.index), len(self.index.shards))
        self.spec = spec_of(state)
        self._resume = {**state, "consumed": dict(state["consumed"])}


@dataclasses.dataclass
class _Taking:
    """The shard a reader is taking samples from, as it lands."""

    landing: Landing
    start: int  # the global id of its sample 0
    ids: list[int]  # the samples this reader still needs from it, the next one last
    data: Buffer = b""  # the bytes its reader was opened on
    reader: ShardReader | None = None


def _taken(take: Callable[[], Any], shard: ShardEntry, i: int, gid: int) -> Any:
    """``take()``: raw sample ``i`` of ``shard`` (global sample ``gid``), or why not."""
    try:
        return take()
    except (ShardFormatError, IndexError, ValueError, KeyError) as exc:
        raise SampleError(f"cannot take sample {i} out of shard {shard.key!r} "
                          f"(global sample {gid}): {exc}") from exc


def _shard_order(ids: np.ndarray, starts: np.ndarray) -> list[int]:
    """The shards of samples ``ids``, in the order their first sample comes."""
    positions = np.searchsorted(starts, ids, side="right") - 1
    first = np.unique(positions, return_index=True)[1]
    return [int(p) for p in positions[np.sort(first)]]


def _needed_by_shard(ids: np.ndarray, starts: np.ndarray) -> dict[int, np.ndarray]:
    """For each shard position, the distinct sample indices within it that ``ids`` need."""
    if not len(ids):
        return {}
    unique = np.unique(ids)
    shard = np.searchsorted(starts, unique, side="right") - 1
    cuts = np.flatnonzero(np.diff(shard)) + 1
    return {int(group_shard[0]): group - starts[group_shard[0]]
            for group, group_shard in zip(np.split(unique, cuts), np.split(shard, cuts),
                                          strict=True)}


def _repeats(ids: np.ndarray) -> dict[int, int]:
    """Ids that occur more than once (padding), with their counts."""
    values, counts = np.unique(ids, return_counts=True)
    many = counts > 1
    return dict(zip(values[many].tolist(), counts[many].tolist(), strict=True))
