"""``tierstore bench locality``: reading replicas at three sites at a real network distance.

Three sites, each a Linux network namespace with its own S3 server (moto, a real HTTP server
process), at ``--rtt`` (default 1, 10 and 50 ms) of added round-trip time from the reader
(:mod:`.netsites`: only the distance is SIMULATED, by a packet delay wire; the servers and TCP
are real). Every object has a replica at every site, written by ``put`` under a placement
rule (``warm = { replicas = 3, spread = "node" }``). Needs root (namespaces and TUN devices).

Phases, in one run, each a stream of whole-object reads one at a time:

1. steady: ``tierstore`` (the store's read path: ranking, health, hedging) against
   ``random`` (a random replica per read) and ``home`` (always the ``--home`` site, where
   the data was written), and ``nearest`` (always the nearest site, read directly: the
   reference tierstore's p50 is held to);
2. spike: the nearest site's delay is raised to ``--spike-ms`` now and then (on for
   ``--spike-on``, off for ``--spike-off`` seconds, from a background thread), and
   tierstore reads with hedging on and off, in alternating blocks;
3. kill: tierstore reads while the nearest site's server is SIGKILLed mid-run: every read
   must still be served (``failed_reads``).

Each strategy is one entry: ``strategy``, ``phase``, ``reads``, ``p50_ms``, ``p99_ms``,
``mean_ms``, ``mb_per_s`` (bytes read over the phase's wall time), ``failed_reads`` and
where tierstore's reads were served from. ``--json FILE`` writes the result document; it is
also saved in the results folder (:mod:`..common.results`).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tierstore.quantiles import percentile

from ..common.results import result_document, save_and_say, write_json
from .options import SITES

__all__ = ["run_locality"]

BUCKET = "tiers"
# name, the tier's site as the reader "r1/z1/n1" sees it
READER = "r1/z1/n1"


class _Run:
    """Latencies and failures of one strategy in one phase."""

    def __init__(self, strategy: str, phase: str):
        self.strategy, self.phase = strategy, phase
        self.latencies: list[float] = []
        self.failed = 0
        self.bytes = 0
        self.seconds = 0.0
        self.served: Counter[str] = Counter()
        self.extra: dict[str, Any] = {}

    async def read(self, request: Awaitable[bytes], expected: int) -> None:
        """Time ``request`` (a coroutine not started yet: it runs when awaited here)."""
        began = time.perf_counter()
        try:
            data = await request
        except Exception:  # a failed read is what this counts
            self.failed += 1
            self.seconds += time.perf_counter() - began
            return
        took = time.perf_counter() - began
        self.seconds += took
        if len(data) != expected:
            self.failed += 1
            return
        self.latencies.append(took)
        self.bytes += len(data)

    def entry(self) -> dict[str, Any]:
        ms = [x * 1000 for x in self.latencies]
        return {"strategy": self.strategy, "phase": self.phase,
                "reads": len(ms) + self.failed,
                "p50_ms": round(percentile(ms, 50, empty=math.nan), 3),
                "p99_ms": round(percentile(ms, 99, empty=math.nan), 3),
                "mean_ms": round(sum(ms) / len(ms), 3) if ms else None,
                "mb_per_s": round(self.bytes / self.seconds / 1e6, 3) if self.seconds else 0.0,
                "failed_reads": self.failed,
                **({"served_by": dict(self.served)} if self.served else {}), **self.extra}


class _Spiker:
    """Raises a site's delay now and then, from a thread, until stopped."""

    def __init__(self, site: Any, spike_ms: float, on: float, off: float, seed: int):
        self.site, self.spike_ms, self.on, self.off = site, spike_ms, on, off
        self.base = site.rtt_ms
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.spikes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.off * self.rng.uniform(0.5, 1.5)):
            self.site.set_rtt(self.spike_ms)
            self.spikes += 1
            self.stop.wait(self.on * self.rng.uniform(0.5, 1.5))
            self.site.set_rtt(self.base)

    def __enter__(self) -> _Spiker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.site.set_rtt(self.base)


def _config(home: Path, sites: Any, home_site: str, *, hedge: bool) -> Any:
    from tierstore import Config, TierClass, TierConfig
    from tierstore.locality import LocalitySettings

    tiers = {name: TierConfig(name=name, tier_class=TierClass.WARM,
                              url=f"s3://{BUCKET}/{name}", site=where, timeout=5.0,
                              options=sites[name].server.storage_options())
             for name, where in SITES}
    # A short memory: a site that slowed down is tried again a few seconds after it
    # recovers (the default, 30 s, would keep a spiking site out for most of the phase).
    settings = LocalitySettings.from_mapping({
        "hedge": hedge, "cooldown": 1.0, "trip_after": 2, "memory": 3.0, "read_deadline": 10.0,
        "placement": {"warm": {"replicas": 3, "spread": "node"}}})
    return Config(home=home, catalog=f"sqlite:///{home / 'catalog.db'}", tiers=tiers,
                  default_tier=home_site, site=READER, locality=settings)


async def _bench(args: argparse.Namespace, sites: Any, home: Path) -> list[dict[str, Any]]:
    from tierstore.store import Store
    from tierstore.units import parse_size

    size = parse_size(args.size, field="--size")
    rng = random.Random(args.seed)
    keys = [f"bench/locality/obj-{i:04d}" for i in range(args.objects)]
    writer = Store(_config(home, sites, args.home, hedge=True))
    try:
        for key in keys:  # the placement rule puts a replica at every site
            await writer.put(key, rng.randbytes(size), tier=args.home)
    finally:
        await writer.close()
    paths = {key: key for key in keys}
    results: list[dict[str, Any]] = []

    async def open_store(hedge: bool) -> Any:
        store = Store(_config(home, sites, args.home, hedge=hedge))
        record = store.catalog.get(keys[0])
        assert record is not None and {r.tier for r in record.ready} == {n for n, _ in SITES}
        for key in keys:
            rec = store.catalog.get(key)
            assert rec is not None
            paths[key] = next(r.path for r in rec.ready)
        for key in keys[:3]:  # warm the clients (the first request pays for the session)
            for name, _ in SITES:
                await store.tier(name).read(paths[key], 0, size)
        return store

    def key_at(i: int) -> str:
        return keys[i % len(keys)]

    async def tierstore_reads(store: Any, run: _Run, n: int,
                              during: Callable[[int], None] | None = None) -> None:
        before = Counter(store.reads_by_tier)
        for i in range(n):
            if during is not None:
                during(i)
            key = key_at(i)
            await run.read(store.cat(key), size)
        run.served.update(Counter(store.reads_by_tier) - before)

    # 1. steady
    store = await open_store(hedge=True)
    try:
        _progress("steady: tierstore, random, home, nearest")
        ts = _Run("tierstore", "steady")
        await tierstore_reads(store, ts, 20)  # learn the sites (not counted)
        ts = _Run("tierstore", "steady")
        await tierstore_reads(store, ts, args.reads)
        results.append(ts.entry())
        pick = random.Random(args.seed + 1)
        for strategy, choose in (("random", lambda: pick.choice(SITES)[0]),
                                 ("home", lambda: args.home), ("nearest", lambda: "near")):
            run = _Run(strategy, "steady")
            for i in range(args.reads):
                key, tier = key_at(i), choose()
                run.served[tier] += 1
                await run.read(store.tier(tier).read(paths[key], 0, size), size)
            results.append(run.entry())
    finally:
        await store.close()

    # 2. spike: hedging on and off, in alternating blocks, while the near site spikes
    _progress(f"spike: the near site at {args.spike_ms:g} ms now and then, hedging on/off")
    stores = {True: await open_store(hedge=True), False: await open_store(hedge=False)}
    runs = {True: _Run("tierstore-hedged", "spike"), False: _Run("tierstore-unhedged", "spike")}
    try:
        for hedge in (True, False):
            await tierstore_reads(stores[hedge], _Run("warm-up", "spike"), 20)
        block = 5  # small blocks: both modes see the spikes alike
        with _Spiker(sites["near"], args.spike_ms, args.spike_on, args.spike_off,
                     args.seed) as spiker:
            done = 0
            while done < args.reads:
                n = min(block, args.reads - done)
                for hedge in (True, False):
                    await tierstore_reads(stores[hedge], runs[hedge], n)
                done += n
        for hedge in (True, False):
            counters = stores[hedge].locality.counters
            runs[hedge].extra = {"hedge": hedge, "spikes": spiker.spikes,
                                 "hedges": counters["hedges"],
                                 "hedge_wins": counters["hedge_wins"]}
            results.append(runs[hedge].entry())
    finally:
        for s in stores.values():
            await s.close()

    # 3. a site killed mid-run
    _progress("kill: the near site's server is SIGKILLed mid-run")
    store = await open_store(hedge=True)
    killed = _Run("tierstore-site-killed", "kill")
    try:
        await tierstore_reads(store, _Run("warm-up", "kill"), 20)

        def kill_midway(i: int) -> None:
            if i == args.reads // 3:
                sites["near"].kill(signal.SIGKILL)

        await tierstore_reads(store, killed, args.reads, kill_midway)
        killed.extra = {"killed": "near", "fallbacks": store.fallbacks,
                        "trips": store.locality.counters["trips"]}
        results.append(killed.entry())
    finally:
        await store.close()
    return results


def _progress(text: str) -> None:
    if sys.stderr.isatty():
        print(f"  {text}", file=sys.stderr)


def _table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'STRATEGY':<22} {'PHASE':<7} {'READS':>6} {'P50 ms':>9} {'P99 ms':>9} "
             f"{'MB/s':>8} {'FAILED':>6}  SERVED BY"]
    for r in results:
        served = ", ".join(f"{k} {v}" for k, v in sorted(r.get("served_by", {}).items()))
        lines.append(f"{r['strategy']:<22} {r['phase']:<7} {r['reads']:>6} {r['p50_ms']:>9.2f} "
                     f"{r['p99_ms']:>9.2f} {r['mb_per_s']:>8.2f} {r['failed_reads']:>6}  "
                     f"{served}")
    return "\n".join(lines)


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    by = {r["strategy"]: r for r in results}
    ts, near = by["tierstore"], by["nearest"]
    hedged, unhedged = by["tierstore-hedged"], by["tierstore-unhedged"]
    p50_ratio = ts["p50_ms"] / near["p50_ms"]
    p99_gain = unhedged["p99_ms"] / hedged["p99_ms"]
    failed = by["tierstore-site-killed"]["failed_reads"]
    return {"p50_vs_nearest": round(p50_ratio, 3), "p50_within_1_2x": p50_ratio <= 1.2,
            "spike_p99_unhedged_over_hedged": round(p99_gain, 2),
            "spike_p99_3x_lower": p99_gain >= 3.0,
            "site_killed_failed_reads": failed, "site_killed_no_failed_reads": failed == 0}


def run_locality(args: argparse.Namespace) -> int:
    from .netsites import NetSites, namespaces_unavailable

    why = namespaces_unavailable()
    if why is not None:
        print(f"tierstore bench locality: cannot make sites at a distance: {why}",
              file=sys.stderr)
        return 2
    rtts = [float(x) for x in args.rtt.split(",")]
    if len(rtts) != 3 or min(rtts) < 0 or args.objects < 1 or args.reads < 10:
        print("tierstore bench locality: expected three RTTs >= 0, --objects >= 1 and "
              "--reads >= 10", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tierstore-bench-locality-") as tmp, \
            NetSites([(name, rtt) for (name, _), rtt in zip(SITES, rtts, strict=True)]) as sites:
        for name, _ in SITES:
            sites[name].server.make_bucket(BUCKET)
        results = asyncio.run(_bench(args, sites, Path(tmp)))
    summary = _summary(results)
    document = result_document(
        "locality", results, summary=summary,
        setup={"sites": {name: {"site": where, "rtt_ms": rtt}
                         for (name, where), rtt in zip(SITES, rtts, strict=True)},
               "reader": READER, "home": args.home, "objects": args.objects,
               "size": args.size, "reads": args.reads, "spike_ms": args.spike_ms,
               "spike_on_s": args.spike_on, "spike_off_s": args.spike_off,
               "simulated": "network distance only (a packet delay wire between network "
                            "namespaces); servers, TCP and kills are real"})
    print(_table(results))
    print(f"tierstore p50 / nearest p50: {summary['p50_vs_nearest']:.2f}x; spike p99 "
          f"unhedged / hedged: {summary['spike_p99_unhedged_over_hedged']:.1f}x; failed reads "
          f"with a site killed: {summary['site_killed_failed_reads']}")
    write_json(document, args.json_file)
    save_and_say(document, args.results)
    return 0
