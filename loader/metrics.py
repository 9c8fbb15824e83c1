"""Live metrics of a :class:`~.TierLoader`, per rank: what the training loop sees of it.

``loader.metrics()`` returns a :class:`LoaderMetrics` of the current (or last) pass:

- samples/s and bytes/s, also per tier, and the share of reads and bytes each tier served
  (``hit_rate``; ``hot_hit_rate`` sums the hot-class tiers);
- the time the training loop waited inside ``next(loader)`` per step (p50, p99, max);
- the bytes read ahead and not yet consumed (``in_flight_bytes``), against the budget;
- reads that failed over to another replica, hedged reads and hedges won (the read path's
  cost, :mod:`tierstore.locality`);
- a live accelerator utilisation, ``au``: compute time over wall time, where compute time is
  the time between ``next()`` calls not spent waiting, and the first step (start-up) is left
  out, as MLPerf Storage does; ``au_recent`` is the same over the last :data:`RECENT` steps.

How the numbers reach the training process: the reads happen in DataLoader workers, each a
process with its own store, whose ``reads_by_tier`` / ``bytes_by_tier`` counters
(:class:`tierstore.store.Store`) only it can see. So every worker writes its counters, as
deltas since its pass began, into its own row of a small shared-memory tensor
(:class:`TierCounters`, like the epoch tensor of :mod:`.tierloader`) each time it hands over a
batch; the training process sums the rows whenever it is asked. Wait and compute times are
measured in the training process itself (:class:`LoaderMeter`).

:func:`register_prometheus` exports the same figures as Prometheus gauges into a registry (a
fresh one, or the one a process already serves).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from tierstore.config import TierClass
from tierstore.energy import EnergyModel
from tierstore.quantiles import percentile  # re-exported: where callers found it
from tierstore.telemetry import loader_metrics_folder

if TYPE_CHECKING:
    from tierstore.store import Store

    from .readahead import PrefetchStats
    from .tierloader import TierLoader

__all__ = ["RECENT", "LoaderCollector", "LoaderMeter", "LoaderMetrics", "MetricsFile",
           "TierCounters", "percentile", "register_prometheus"]

log = logging.getLogger(__name__)
RECENT = 50  # steps the recent AU looks at
# read-path events counted per worker; locality_saved_*: bytes read from a nearer replica
# than a reader blind to sites would have taken, and the network energy that saved (mJ)
EVENTS = ("failovers", "hedges", "hedge_wins", "locality_saved_bytes", "locality_saved_mj")
WAITS_KEPT = 100_000  # step wait times kept for the percentiles (a pass of more keeps the last)
T = TypeVar("T")


class TierCounters:
    """Per-worker read counters in shared memory: reads and bytes per tier, bytes and
    shards read ahead now, and the read path's events (:data:`EVENTS`: reads that failed over
    to another replica, hedged reads, hedges won). Row ``w`` is written by worker ``w`` only;
    the training process sums the rows."""

    def __init__(self, tiers: Sequence[str], workers: int):
        self.tiers = list(tiers)
        self.workers = max(1, workers)
        n = len(self.tiers)
        # columns: reads per tier, bytes per tier, held bytes, held shards, events
        self._held = 2 * n
        self.table = torch.zeros((self.workers, 2 * n + 2 + len(EVENTS)),
                                 dtype=torch.int64).share_memory_()

    def reset(self) -> None:
        """A new pass: every row back to zero (workers overwrite theirs as they go)."""
        self.table.zero_()

    def write(self, row: int, reads: Mapping[str, int], nbytes: Mapping[str, int],
              held_bytes: int, held_shards: int, events: Mapping[str, int] | None = None
              ) -> None:
        values = [int(reads.get(t, 0)) for t in self.tiers]
        values += [int(nbytes.get(t, 0)) for t in self.tiers]
        values += [int(held_bytes), int(held_shards)]
        values += [int((events or {}).get(e, 0)) for e in EVENTS]
        self.table[row % self.workers] = torch.tensor(values, dtype=torch.int64)

    def read(self) -> tuple[dict[str, int], dict[str, int], int, int]:
        """Summed over workers: reads per tier, bytes per tier, held bytes, held shards."""
        total = self.table.sum(dim=0).tolist()
        n = len(self.tiers)
        reads = {t: int(total[i]) for i, t in enumerate(self.tiers)}
        nbytes = {t: int(total[n + i]) for i, t in enumerate(self.tiers)}
        return reads, nbytes, int(total[self._held]), int(total[self._held + 1])

    def events(self) -> dict[str, int]:
        """Summed over workers: the read path's :data:`EVENTS`."""
        total = self.table.sum(dim=0).tolist()
        return {e: int(total[self._held + 2 + i]) for i, e in enumerate(EVENTS)}

    def published(self, batches: Iterable[T], row: int, store: Callable[[], Store],
                  stats: Callable[[], PrefetchStats]) -> Iterator[T]:
        """``batches``, writing this worker's counters into row ``row`` before each batch
        goes out and once more at the end: what its store read since the pass began."""
        opened = store()
        base_reads = dict(opened.reads_by_tier)
        base_bytes = dict(opened.bytes_by_tier)
        base_events = _events(opened)

        def publish() -> None:
            now = stats()
            self.write(row, _minus(opened.reads_by_tier, base_reads),
                       _minus(opened.bytes_by_tier, base_bytes), now.held_bytes,
                       now.held_shards, _minus(_events(opened), base_events))

        try:
            for batch in batches:
                publish()
                yield batch
        finally:
            publish()


def _events(store: Store) -> dict[str, int]:
    """The read path's counts so far: failovers, hedged reads, hedges won, and what
    locality kept from crossing sites (bytes, and their network energy in mJ)."""
    counters, kept = store.locality.counters, store.locality.not_carried
    return {"failovers": store.fallbacks, "hedges": counters["hedges"],
            "hedge_wins": counters["hedge_wins"], "locality_saved_bytes": sum(kept.values()),
            "locality_saved_mj": round(1000 * store.energy.not_carried(kept))}


def _minus(now: Mapping[str, int], base: Mapping[str, int]) -> dict[str, int]:
    return {k: v - base.get(k, 0) for k, v in now.items()}


@dataclass
class LoaderMetrics:
    """One rank's loader, over the current (or last finished) pass. Times in seconds, rates
    per second, fractions in [0, 1]."""

    rank: int
    world_size: int
    epoch: int
    batches: int
    samples: int
    wall_s: float  # since the first batch of the pass was asked for
    samples_per_s: float
    bytes_per_s: float  # read from all tiers
    bytes_by_tier: dict[str, int]
    reads_by_tier: dict[str, int]
    bytes_per_s_by_tier: dict[str, float]
    hit_rate: dict[str, float]  # share of the bytes each tier served
    read_hit_rate: dict[str, float]  # share of the reads each tier served
    hot_hit_rate: float  # share of the bytes the hot-class tiers served
    wait_s: float  # waited inside next(loader), in all
    wait_p50_s: float
    wait_p99_s: float
    wait_max_s: float
    compute_s: float  # between next() calls, not waiting
    au: float  # compute / (compute + waits), the first step's wait left out
    au_recent: float  # the same over the last RECENT steps
    in_flight_bytes: int  # read ahead (being read, or read and not consumed), all workers
    in_flight_shards: int
    prefetch_budget_bytes: int
    peak_in_flight_bytes: int  # the most any one worker held at once, summed over workers
    tier_classes: dict[str, str] = field(default_factory=dict)
    failovers: int = 0  # reads served by another replica than the first choice (all logged)
    hedged_reads: int = 0  # reads that sent a second request (tierstore.locality)
    hedge_wins: int = 0  # of those, won by the second request
    # the accelerator's waiting for data (wait_s) as energy and emissions, estimated by the
    # store's [energy] model (tierstore.energy: board power, the grid's intensity)
    idle_joules: float = 0.0
    idle_grams_co2e: float = 0.0
    # bytes read from a nearer replica than a reader blind to sites would have taken (the
    # hottest class's), and the network energy that saved (the [energy] model's J/GB)
    locality_saved_bytes: int = 0
    locality_saved_joules: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def __str__(self) -> str:
        """One line a person reads: the rate, AU, the waits and where the bytes came from."""
        tiers = ", ".join(f"{t} {share:.0%}" for t, share in sorted(self.hit_rate.items())
                          ) or "nothing read"
        rank = f"rank {self.rank}/{self.world_size}, " if self.world_size > 1 else ""
        return (f"{rank}epoch {self.epoch}: {self.samples:,} samples, "
                f"{self.samples_per_s:,.0f} samples/s ({self.bytes_per_s / 1e6:,.1f} MB/s), "
                f"AU {self.au:.0%}, wait p50 {self.wait_p50_s * 1e3:.1f} ms "
                f"p99 {self.wait_p99_s * 1e3:.1f} ms, bytes from {tiers}")


def _shares(values: Mapping[str, int]) -> dict[str, float]:
    total = sum(values.values())
    return {k: (v / total if total else 0.0) for k, v in values.items()}


class LoaderMeter:
    """What the training process measures itself: per step, how long ``next()`` waited and
    how long the caller computed between calls."""

    def __init__(self) -> None:
        self.begin()

    def begin(self) -> None:
        """A new pass."""
        self.steps = 0
        self.samples = 0
        self.started: float | None = None
        self.waits: deque[float] = deque(maxlen=WAITS_KEPT)
        self.first_wait = 0.0
        self.wait_s = 0.0
        self.compute_s = 0.0
        self.recent: deque[tuple[float, float]] = deque(maxlen=RECENT)  # (wait, compute)
        self._returned: float | None = None

    def step(self, asked: float, samples: int) -> None:
        """A batch of ``samples`` came out of ``next()``, asked for at ``asked``."""
        now = time.perf_counter()
        wait = now - asked
        if self.started is None:
            self.started = asked
        compute = 0.0 if self._returned is None else max(0.0, asked - self._returned)
        self._returned = now
        self.steps += 1
        self.samples += samples
        self.waits.append(wait)
        if self.steps == 1:
            self.first_wait = wait
        else:
            self.wait_s += wait
            self.recent.append((wait, compute))
        self.compute_s += compute

    @staticmethod
    def _au(compute: float, wait: float) -> float:
        total = compute + wait
        return compute / total if total > 0 else 0.0

    def au(self) -> float:
        return self._au(self.compute_s, self.wait_s)

    def au_recent(self) -> float:
        return self._au(sum(c for _, c in self.recent), sum(w for w, _ in self.recent))


def loader_metrics(loader: TierLoader, meter: LoaderMeter, counters: TierCounters
                   ) -> LoaderMetrics:
    """The metrics of ``loader`` now (see :meth:`TierLoader.metrics`)."""
    rank, size = loader.dataset.rank_and_size()
    reads, nbytes, held, shards = counters.read()
    events = counters.events()
    wall = 0.0 if meter.started is None else time.perf_counter() - meter.started
    classes = {name: tier.tier_class.name.lower()
               for name, tier in loader.dataset.store.config.tiers.items()}
    total = sum(nbytes.values())
    hot = sum(v for k, v in nbytes.items() if classes.get(k) == TierClass.HOT.name.lower())
    waits = np.fromiter(meter.waits, dtype=np.float64, count=len(meter.waits))
    peak = sum(s.peak_bytes for s in loader.stats.readers.values())
    idle = EnergyModel.from_config(loader.dataset.store.config).idle(
        meter.wait_s + meter.first_wait)
    return LoaderMetrics(
        rank=rank, world_size=size, epoch=loader.epoch, batches=meter.steps,
        samples=meter.samples, wall_s=wall,
        samples_per_s=meter.samples / wall if wall > 0 else 0.0,
        bytes_per_s=total / wall if wall > 0 else 0.0,
        bytes_by_tier=nbytes, reads_by_tier=reads,
        bytes_per_s_by_tier={k: (v / wall if wall > 0 else 0.0) for k, v in nbytes.items()},
        hit_rate=_shares(nbytes), read_hit_rate=_shares(reads),
        hot_hit_rate=hot / total if total else 0.0,
        wait_s=meter.wait_s + meter.first_wait, wait_p50_s=percentile(waits, 50),
        wait_p99_s=percentile(waits, 99), wait_max_s=float(waits.max()) if len(waits) else 0.0,
        compute_s=meter.compute_s, au=meter.au(), au_recent=meter.au_recent(),
        in_flight_bytes=held, in_flight_shards=shards,
        prefetch_budget_bytes=loader.dataset.prefetch_bytes, peak_in_flight_bytes=peak,
        tier_classes=classes, failovers=events["failovers"], hedged_reads=events["hedges"],
        hedge_wins=events["hedge_wins"], idle_joules=idle.joules,
        idle_grams_co2e=idle.grams_co2e, locality_saved_bytes=events["locality_saved_bytes"],
        locality_saved_joules=events["locality_saved_mj"] / 1000)


# -- Prometheus -------------------------------------------------------------------------------


class LoaderCollector:
    """A Prometheus collector that reads ``loader.metrics()`` at every scrape; gauges named
    ``<prefix>_*`` with a ``rank`` label (and ``tier`` where per tier)."""

    def __init__(self, loader: TierLoader, prefix: str = "tierstore_loader"):
        self.loader = loader
        self.prefix = prefix

    def describe(self) -> list[Any]:
        return []  # metrics are read at scrape time; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        m = self.loader.metrics()
        rank = str(m.rank)
        p = self.prefix
        plain = [
            ("samples_per_second", "Samples per second over the current pass",
             m.samples_per_s),
            ("bytes_per_second", "Bytes read per second over the current pass", m.bytes_per_s),
            ("samples", "Samples yielded in the current pass", m.samples),
            ("hot_hit_ratio", "Share of the bytes read that hot-class tiers served",
             m.hot_hit_rate),
            ("wait_p50_seconds", "Median time the training loop waited per step",
             m.wait_p50_s),
            ("wait_p99_seconds", "99th percentile of the time waited per step", m.wait_p99_s),
            ("wait_seconds", "Time the training loop waited for data in the current pass",
             m.wait_s),
            ("accelerator_utilisation", "Compute time over wall time (first step left out)",
             m.au),
            ("accelerator_utilisation_recent", f"The same over the last {RECENT} steps",
             m.au_recent),
            ("in_flight_bytes", "Bytes read ahead and not yet consumed", m.in_flight_bytes),
            ("prefetch_budget_bytes", "The read-ahead budget", m.prefetch_budget_bytes),
            ("epoch", "The epoch being read", m.epoch),
            ("failovers", "Reads served by another replica than the first choice",
             m.failovers),
            ("hedged_reads", "Reads that sent a second request to the next replica",
             m.hedged_reads),
            ("hedge_wins", "Hedged reads the second request answered first", m.hedge_wins),
            ("accelerator_idle_joules", "Energy the accelerator drew waiting for data in the "
             "current pass, estimated (the [energy] model's board power)", m.idle_joules),
            ("accelerator_idle_grams_co2e", "Emissions of that energy, estimated (the "
             "[energy] model's grid intensity)", m.idle_grams_co2e),
            ("locality_saved_bytes", "Bytes read from a nearer replica than a reader blind "
             "to sites would have taken", m.locality_saved_bytes),
            ("locality_saved_joules", "The network energy that saved, estimated (the "
             "[energy] model's J/GB per distance)", m.locality_saved_joules),
        ]
        for name, text, value in plain:
            gauge = GaugeMetricFamily(f"{p}_{name}", text, labels=["rank"])
            gauge.add_metric([rank], float(value))
            yield gauge
        per_tier: list[tuple[str, str, Mapping[str, float]]] = [
            ("tier_bytes_per_second", "Bytes per second each tier served", m.bytes_per_s_by_tier),
            ("tier_bytes", "Bytes each tier served in the current pass", m.bytes_by_tier),
            ("tier_hit_ratio", "Share of the bytes each tier served", m.hit_rate),
        ]
        for name, text, values in per_tier:
            gauge = GaugeMetricFamily(f"{p}_{name}", text, labels=["rank", "tier"])
            for tier, value in sorted(values.items()):
                gauge.add_metric([rank, tier], float(value))
            yield gauge


def register_prometheus(loader: TierLoader, registry: Any = None, *,
                        prefix: str = "tierstore_loader") -> Any:
    """Register ``loader``'s metrics as gauges in ``registry`` (default: a new
    ``CollectorRegistry``) and return the registry; serve it with
    ``prometheus_client.start_http_server(port, registry=registry)`` or add it to an
    endpoint the process already serves. (A ``tierstore daemon`` of the same store on the
    node serves them on its own endpoint too: see :class:`MetricsFile`.)"""
    from prometheus_client import CollectorRegistry

    registry = registry if registry is not None else CollectorRegistry()
    registry.register(LoaderCollector(loader, prefix))
    return registry


class MetricsFile:
    """Writes a loader's metrics (as :class:`LoaderCollector` exposes them) into the store's
    home every ``interval`` seconds, where ``tierstore daemon`` on the node serves them on its
    own endpoint (:class:`tierstore.telemetry.LoaderFiles`); the file goes when the loader is
    collected or :meth:`close` is called (a killed process's, when the daemon finds it has not
    been written for ten minutes). Writing is best effort: a training loop never fails over
    its metrics."""

    _count = 0

    def __init__(self, loader: TierLoader, interval: float = 5.0):
        MetricsFile._count += 1
        folder = loader_metrics_folder(loader.dataset.store.config)
        name = f"loader-{socket.gethostname()}-{os.getpid()}-{MetricsFile._count}.prom"
        self.path = folder / name
        self.interval = interval
        self._loader = weakref.ref(loader)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tierstore-loader-metrics",
                                        daemon=True)
        self._thread.start()
        weakref.finalize(loader, self.close)

    def write(self) -> bool:
        """Write the metrics now; False when the loader is gone or the folder unwritable."""
        from prometheus_client import generate_latest

        loader = self._loader()
        if loader is None:
            return False
        text = generate_latest(register_prometheus(loader))
        temp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp.write_bytes(text)
            os.replace(temp, self.path)  # the daemon never reads half a file
        except OSError:
            return False
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self._loader() is None:
                break
            try:
                self.write()
            except Exception as exc:  # metrics must never stop a training loop
                log.debug("could not write the loader's metrics to %s: %s", self.path, exc)
        self._remove()

    def _remove(self) -> None:
        for path in (self.path, self.path.with_name(self.path.name + ".tmp")):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop writing and remove the file."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._remove()
