"""``tierstore daemon``: the migration policies, carried out in a loop, one daemon per store.

The run loop has the shape of apscheduler's: a run state (starting, running, stopping,
stopped), one log line when it starts, stops or crashes, and interrupted work reclaimed at
start (:meth:`Store.recover`). Each cycle reads a snapshot of the catalog, asks the policy
engine for a plan and makes its moves, a few at a time and paced per pair of tiers.

A plan's moves were each checked against the tier usage that the moves before them leave, so a
move that adds bytes to a tier starts only once every earlier move that frees bytes on that
tier has finished (and is skipped if one of those failed); other moves run side by side.
SIGTERM or SIGINT stops new moves; those in flight finish, or are cancelled after the shutdown
timeout (a second signal cancels them at once) and rolled back by the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import logging
import math
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .carbonaware import CarbonAware
from .catalog import FETCHING
from .cluster import ClusterMember
from .config import Config
from .energy import EnergyLedger, Estimate
from .errors import ConfigError, CopyInFlight, TierstoreError, one_line
from .locality.topology import distance
from .policies.base import Move, Plan, Snapshot
from .policies.config import PolicyConfig
from .policies.deferral import Schedule
from .policies.engine import PolicyEngine, default_engine
from .scrub import ScrubReport, scrub
from .store import Store
from .store.base import once
from .telemetry import (
    DaemonMetrics,
    MetricsServer,
    loader_metrics_folder,
)

__all__ = ["Daemon", "DaemonLock", "DaemonLocked", "DaemonOptions", "RunState",
           "TokenBucket", "lock_path"]

log = logging.getLogger(__name__)
_SHOWN_CLUSTER_STATUS = ("site", "node_lease", "leader", "lease_ttl")  # on /healthz


class RunState(enum.StrEnum):
    """starting -> running -> stopping -> stopped (a crash goes straight to stopped)."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class DaemonLocked(TierstoreError):
    """Another daemon runs on this store."""


@dataclass(frozen=True, kw_only=True)
class DaemonOptions:
    """How the daemon runs. ``bandwidth`` is bytes/s per pair of tiers (None: unlimited);
    ``metrics_port`` None serves no metrics, 0 a free port; ``metrics_host`` is the address
    they are served on (``0.0.0.0`` in a container or pod, to be scraped from outside)."""

    tick: float = 60.0
    max_moves: int = 4
    bandwidth: int | None = None
    shutdown_timeout: float = 30.0
    once: bool = False
    dry_run: bool = False
    metrics_port: int | None = 9464
    metrics_host: str = "127.0.0.1"
    # Scrub (tierstore.scrub): every this many seconds (0: every cycle; None: never), check
    # every replica's file (with scrub_deep, its checksum too) and repair the bad ones.
    scrub_every: float | None = None
    scrub_deep: bool = False
    # Rescan (Store.rescan): every this many seconds (0: every cycle; None: never), list the
    # adopted prefixes again, taking in files written over or removed behind the store's back.
    rescan_every: float | None = 600.0

    def __post_init__(self) -> None:
        if not (self.tick > 0 and self.shutdown_timeout >= 0 and self.max_moves >= 1
                and (self.scrub_every is None or self.scrub_every >= 0)
                and (self.rescan_every is None or self.rescan_every >= 0)
                and (self.bandwidth is None or self.bandwidth > 0)
                and (self.metrics_port is None or 0 <= self.metrics_port <= 65535)):
            raise ConfigError("expected tick > 0, shutdown timeout >= 0, max moves >= 1, "
                              "bandwidth > 0 and a port from 0 to 65535", field="daemon")


def lock_path(config: Config) -> Path:
    """The daemon's lock: next to a SQLite catalog, else in the store's home."""
    path = config.sqlite_path
    return config.home / "daemon.lock" if path is None else Path(f"{path}.daemon.lock")


class DaemonLock:
    """An exclusive ``flock`` on a file that names its holder (``host:pid`` and start time).

    The kernel drops the lock when the holder dies, however it dies; the file stays.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self, owner: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 1024).decode(errors="replace").split()
            os.close(fd)
            host, _, pid = holder[0].rpartition(":") if holder else ("", "", "")
            who = f"pid {pid} on {host}, started {holder[1]}" if len(holder) > 1 else \
                "a process that is still starting"
            raise DaemonLocked(f"another daemon runs on this store: {who} (lock "
                               f"{self.path})") from None
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.write(fd, f"{owner} {started}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class TokenBucket:
    """``rate`` bytes/s with a burst of one second's worth. :meth:`take` debits first and then
    waits off any debt, so takers queue behind each other and the long-run rate holds."""

    def __init__(self, rate: float):
        self.rate, self.tokens, self.stamp = rate, rate, time.monotonic()

    async def take(self, size: int) -> None:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate) - size
        self.stamp = now
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


class Daemon:
    """Runs cycles on ``store`` until stopped (or once); see the module's docstring."""

    def __init__(self, store: Store, options: DaemonOptions, *,
                 engine: PolicyEngine | None = None, metrics: DaemonMetrics | None = None,
                 cluster: ClusterMember | None = None, carbon: CarbonAware | None = None):
        self.store, self.options = store, options
        self.cluster = cluster  # leases in a shared catalog: node work, leader work
        self.engine = engine or default_engine(PolicyConfig.from_config(store.config))
        # deferrable moves wait for a cleaner hour (the config's [carbon]; none: no waiting)
        self.carbon = carbon or CarbonAware.from_config(store.config,
                                                        bandwidth=options.bandwidth)
        self.metrics = metrics or DaemonMetrics(loader_metrics_folder(store.config))
        self.energy = store.energy  # what moves and storage cost (the store's [energy] model)
        self.ledger = EnergyLedger.of(store.config)  # ... day by day (report energy)
        self._watts: dict[str, float] = {}  # the tiers' power at the last look
        self._moved = Estimate(0.0, 0.0)  # this cycle's moves
        self.buckets: dict[tuple[str, str], TokenBucket] = {}
        self.state = RunState.STARTING
        self.cycles = self.in_flight = 0
        self.last_cycle: dict[str, Any] | None = None
        self.outcomes: Counter[str] = Counter()  # of the current cycle's moves
        self.copy_rate: float | None = None  # bytes/s of recent copies (EWMA): what lands when
        self._uses: tuple[float, dict[str, float]] = (-float("inf"), {})  # (read at, next uses)
        self.last_scrub: ScrubReport | None = None
        self._last_run: dict[str, float] = {}  # periodic leader's work (scrub, rescan): when
        self._stop, self._force = asyncio.Event(), asyncio.Event()

    def _set_state(self, state: RunState) -> None:
        self.state = state
        self.metrics.state.state(str(state))

    def health(self) -> tuple[bool, Mapping[str, Any]]:
        """For ``/healthz``: healthy while starting or running. Anyone who reaches the port
        reads it (a pod's is open to the cluster), so it names no process, lease holder or
        fencing token: what the catalog needs to act as this daemon."""
        cluster = self.cluster.status() if self.cluster is not None else None
        return self.state in (RunState.STARTING, RunState.RUNNING), {
            "state": str(self.state), "cycles": self.cycles,
            "moves_in_flight": self.in_flight, "last_cycle": self.last_cycle,
            **({"cluster": {name: cluster[name] for name in _SHOWN_CLUSTER_STATUS}}
               if cluster is not None else {})}

    async def pace(self, src: str, dst: str, size: int) -> None:
        """Count ``size`` bytes copied from ``src`` to ``dst`` and their energy (estimated,
        at the grid's intensity now where a [carbon] source says it); wait for the
        bandwidth cap."""
        tiers = self.store.config.tiers
        joules = self.energy.move_joules(size, tiers[src].tier_class, tiers[dst].tier_class,
                                         distance(tiers[src].site, tiers[dst].site))
        now = self.carbon.intensity if self.carbon is not None else None
        cost = self.energy.estimate(joules, now)
        self.metrics.moved(src, dst, size, cost)
        self._moved = Estimate(self._moved.joules + cost.joules,
                               self._moved.grams_co2e + cost.grams_co2e)
        if self.options.bandwidth is not None:
            bucket = self.buckets.setdefault((src, dst), TokenBucket(self.options.bandwidth))
            await bucket.take(size)

    def request_stop(self, signum: int | None = None) -> None:
        """Stop taking moves (a second call: cancel the ones in flight)."""
        name = signal.Signals(signum).name if signum else "request"
        fields = {"in_flight": self.in_flight}
        if self._stop.is_set():
            log.warning("second %s: cancelling moves in flight", name, extra={"fields": fields})
            self._force.set()
            return
        self._set_state(RunState.STOPPING)
        log.info("stopping on %s", name, extra={"fields": {
            **fields, "shutdown_timeout": self.options.shutdown_timeout}})
        self._stop.set()

    async def run(self) -> int:
        """Start, run cycles until stopped (or once), stop. The exit status."""
        server = None
        if self.options.metrics_port is not None:
            server = MetricsServer(self.metrics, self.health, self.options.metrics_port,
                                    self.options.metrics_host)
        port = server.start() if server is not None else None
        loop = asyncio.get_running_loop()
        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.request_stop, signum)
            report = await self.store.recover()
            if not self._stop.is_set():
                self._set_state(RunState.RUNNING)
            o = self.options
            log.info("daemon started", extra={"fields": {
                "pid": os.getpid(), "home": str(self.store.config.home), "tick": o.tick,
                "max_moves": o.max_moves, "bandwidth": o.bandwidth or "unlimited",
                "once": o.once, "dry_run": o.dry_run,
                "carbon": "off" if self.carbon is None else self.carbon.describe(),
                "metrics": None if port is None else
                f"http://{o.metrics_host}:{port}/metrics",
                "recovered": len(report.rolled_back) + len(report.finished)}})
            keeper = (asyncio.create_task(self.cluster.keep(self._stop))
                      if self.cluster is not None else None)
            try:
                ok = await self._loop()
            finally:
                if keeper is not None and self.cluster is not None:
                    keeper.cancel()
                    await asyncio.to_thread(self.cluster.leave)
        except BaseException as exc:
            self._set_state(RunState.STOPPED)
            log.error("daemon crashed", exc_info=exc)
            raise
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            if server is not None:
                server.stop()
        self._set_state(RunState.STOPPED)
        log.info("daemon stopped", extra={"fields": {"cycles": self.cycles}})
        return 0 if ok or self._stop.is_set() else 1

    async def _loop(self) -> bool:
        ok = True
        while not self._stop.is_set():
            began = time.monotonic()
            ok = await self._guarded_cycle()
            if self.options.once:
                break
            rest = max(0.0, self.options.tick - (time.monotonic() - began))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), rest)
        return ok

    async def _guarded_cycle(self) -> bool:
        """One cycle, given the shutdown timeout once a stop is asked for."""
        cycle = asyncio.create_task(self.cycle())
        stop = asyncio.create_task(self._stop.wait())
        force = asyncio.create_task(self._force.wait())
        try:
            await asyncio.wait({cycle, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not cycle.done():
                await asyncio.wait({cycle, force}, timeout=self.options.shutdown_timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
            if not cycle.done():
                log.warning("cancelling moves in flight",
                            extra={"fields": {"in_flight": self.in_flight}})
                cycle.cancel()
                await asyncio.wait({cycle})
                await self.store.recover()  # whatever a cancelled step left pending
        finally:
            stop.cancel()
            force.cancel()
        return not cycle.cancelled() and cycle.result()

    async def cycle(self) -> bool:
        """Snapshot, plan, make the moves; False if the cycle itself failed."""
        began, started = time.monotonic(), time.time()
        self.outcomes = Counter()
        try:
            if self.cluster is not None and not self.options.dry_run:
                await self.cluster.recover_crashed(self.store)  # a no-op unless leader
            await self._rescan_if_due()  # what changed behind its back, before the plan
            await self._scrub_if_due()  # bad replicas replaced before the plan sees them
            await self._tidy()
            if self.cluster is not None:  # this node's hot tier; cluster-wide: the leader's
                snapshot, plan, deferred = await asyncio.to_thread(
                    self.cluster.plan, self.store, self.engine,
                    copy_bytes_per_s=self.copy_rate)
                self.outcomes["left_to_leader"] += deferred
            else:
                snapshot = await self.store.snapshot(copy_bytes_per_s=self.copy_rate)
                plan = await asyncio.to_thread(self.engine.plan, snapshot)
            if self.carbon is not None:
                plan = self._defer(await asyncio.to_thread(
                    self.carbon.schedule, plan, snapshot, self.copy_rate))
            self._note_plan(plan)
            if self.options.dry_run:
                for move in plan:
                    self._record(move, snapshot, 0.0, "planned")
            else:
                await self._execute(plan, snapshot)
            self._watts = self.metrics.tiers(await self.store.usage(), self.energy)
        except asyncio.CancelledError:
            self._finish_cycle(began, started, ok=False)
            raise
        except Exception as exc:
            self._finish_cycle(began, started, ok=False)
            log.error("cycle failed", exc_info=exc)
            return False
        self._finish_cycle(began, started, ok=True)
        return True

    def _due(self, work: str, every: float | None) -> bool:
        """Whether periodic leader's ``work`` is due now (every ``every`` seconds; None:
        never; none on a dry run, nor in a cluster but on its leader); if so, it starts now."""
        now = time.monotonic()
        if (every is None or self.options.dry_run
                or now - self._last_run.get(work, -float("inf")) < every
                or (self.cluster is not None and not self.cluster.is_leader)):
            return False
        self._last_run[work] = now
        return True

    async def _rescan_if_due(self) -> None:
        """Adopt the adopted prefixes again, when a rescan is due (in a cluster, the
        leader's work): files written over or removed behind the store's back are taken in,
        their stale copies removed (:meth:`Store.rescan`)."""
        if not self._due("rescan", self.options.rescan_every):
            return
        try:
            reports = await self.store.rescan()
        except (TierstoreError, OSError) as exc:  # a tier away: the moves go on, and the
            log.warning("rescan failed: %s", one_line(exc))  # next rescan tries again
            self.outcomes["rescan_failed"] += 1
            return
        counts = Counter(adopted=sum(len(r.adopted) for r in reports),
                         changed=sum(len(r.changed) for r in reports),
                         vanished=sum(len(r.vanished) for r in reports),
                         refused=sum(len(r.refused) for r in reports))
        self.outcomes.update({f"rescan_{name}": n for name, n in counts.items() if n})
        log.log(logging.WARNING if counts["changed"] or counts["vanished"] else logging.INFO,
                "rescan", extra={"fields": {"prefixes": len(reports), **counts}})

    async def _scrub_if_due(self) -> None:
        """Check every replica and repair the bad ones, when a scrub is due (in a cluster,
        the leader's work)."""
        if not self._due("scrub", self.options.scrub_every):
            return
        report = await scrub(self.store, deep=self.options.scrub_deep)
        self.last_scrub = report
        self.outcomes["scrub_bad"] += len(report.bad)
        self.outcomes["scrub_repaired"] += len(report.repaired)
        log.log(logging.WARNING if report.bad or report.unreachable else logging.INFO,
                "scrub", extra={"fields": {"checked": report.checked, "bad": len(report.bad),
                                           "repaired": len(report.repaired),
                                           "failed": len(report.failed),
                                           "unreachable": sorted(report.unreachable),
                                           "deep": self.options.scrub_deep}})

    async def _tidy(self) -> None:
        """Remove what has ended: pre-loads past their hold (in a cluster, the leader's
        work; none on a dry run) and the metric files that killed loaders left."""
        gone: Counter[str] = Counter()
        if not self.options.dry_run and (self.cluster is None or self.cluster.is_leader):
            gone["preloads_expired"] = await self.store.db.remove_expired_preloads(time.time())
        if self.metrics.loader_files is not None:
            gone["loader_files_removed"] = await asyncio.to_thread(
                self.metrics.loader_files.remove_dead)
        self.outcomes.update(+gone)  # the counts above zero

    def _defer(self, schedule: Schedule) -> Plan:
        """The moves to make now; the held ones counted, logged and left to a later cycle
        (whose plan proposes them again)."""
        assert self.carbon is not None
        held = schedule.held
        why = Counter("room_held" if "room" in t.why else "cleaner_hour" for _, t in held)
        for label in ("cleaner_hour", "room_held"):
            self.metrics.moves_held.labels(label).set(why[label])
        self.metrics.held_bytes.set(sum(m.bytes for m, _ in held))
        self.metrics.intensity.set(math.nan if self.carbon.intensity is None
                                   else self.carbon.intensity)
        if self.carbon.error is not None:
            self.metrics.intensity_errors.inc()
            log.warning("no intensity forecast: moves run at once", extra={"fields": {
                "source": self.carbon.source.describe(), "error": self.carbon.error}})
        for move, timing in held:
            log.debug("held", extra={"fields": {"key": move.key, "from": move.src,
                                                "to": move.dst, "bytes": move.bytes,
                                                "policy": move.policy, "why": timing.why}})
        if held:
            self.outcomes["held"] += len(held)
            soonest = min(held, key=lambda pair: pair[1].when)[1]
            log.info("moves held for a cleaner hour", extra={"fields": {
                "held": len(held), "bytes": sum(m.bytes for m, _ in held),
                "intensity_now": self.carbon.intensity, "next": soonest.why, **why}})
        return schedule.now

    def _note_plan(self, plan: Plan) -> None:
        self.metrics.plan_moves.set(len(plan))
        self.metrics.plan_bytes.set(plan.bytes)
        self.metrics.plan_refused.set(len(plan.refused))
        log.log(logging.INFO if plan.moves else logging.DEBUG, "plan", extra={"fields": {
            "moves": len(plan), "bytes": plan.bytes, "refused": len(plan.refused)}})

    def _finish_cycle(self, began: float, started: float, *, ok: bool) -> None:
        seconds = round(time.monotonic() - began, 3)
        self.cycles += 1
        self.last_cycle = {"started": started, "ended": time.time(), "seconds": seconds,
                           "ok": ok, **self.outcomes}
        self.metrics.cycles.labels("ok" if ok else "failed").inc()
        self.metrics.cycle_seconds.set(seconds)
        self.metrics.cycle_time.set(time.time())
        if self.cluster is not None:
            self.metrics.leader.set(1 if self.cluster.is_leader else 0)
        if self.outcomes.total():
            log.info("cycle done", extra={"fields": {"seconds": seconds, "ok": ok,
                                                     **self.outcomes}})
        self._note_energy()

    def _note_energy(self) -> None:
        """The cycle's line in the energy ledger (not in a dry run: nothing moved)."""
        if self.options.dry_run or not self._watts:
            return
        now = self.carbon.intensity if self.carbon is not None else None
        try:
            self.ledger.append(watts=self._watts, move_joules=self._moved.joules,
                               move_grams=self._moved.grams_co2e,
                               intensity=self.energy.intensity if now is None else now)
        except OSError as exc:  # an estimate: never what stops the daemon
            log.warning("could not write the energy ledger", extra={"fields": {
                "path": str(self.ledger.path), "error": one_line(exc)}})
        self._moved = Estimate(0.0, 0.0)

    async def _execute(self, plan: Plan, snapshot: Snapshot) -> None:
        """Make ``plan``'s moves, ``max_moves`` copies at a time. A move frees its copy's
        slot once its bytes have landed and been verified: making them durable, committing
        them and removing the source wait on the disk and the catalog rather than move
        bytes, so the next copy overlaps them (at most ``max_moves`` more moves in that
        tail). A move onto a bounded tier waits for the earlier moves off it, drops included
        (and is skipped if one did not finish)."""
        gate = asyncio.Semaphore(self.options.max_moves)
        tail = asyncio.Semaphore(2 * self.options.max_moves)  # moves begun, not finished
        bounded = {tier.name for tier in snapshot.tiers if tier.capacity is not None}
        freeing: dict[str, list[asyncio.Future[str]]] = defaultdict(list)
        tasks: list[asyncio.Task[str]] = []
        handled = 0
        try:
            for move in plan:
                await tail.acquire()
                await gate.acquire()
                deps = freeing[move.dst] if move.dst in bounded else []
                if deps:
                    await asyncio.wait(deps)
                if self._stop.is_set():
                    break
                handled += 1
                if any(dep.result() != "done" for dep in deps):
                    gate.release()
                    tail.release()
                    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                    done.set_result(self._record(move, snapshot, 0.0, "skipped", "a move "
                                                 f"making room on {move.dst} did not finish"))
                else:
                    release = once(gate.release)
                    done = asyncio.create_task(self._move(move, snapshot, copied=release))
                    done.add_done_callback(_ignoring(release))
                    done.add_done_callback(_ignoring(tail.release))
                    tasks.append(done)
                if move.src is not None:
                    freeing[move.src].append(done)
            if tasks:
                await asyncio.wait(tasks)
        finally:
            if handled < len(plan):
                self.outcomes["not_started"] += len(plan) - handled
            for task in tasks:
                task.cancel()  # only those still running: after a shutdown timeout
            if tasks:
                await asyncio.wait(tasks)

    async def _move(self, move: Move, snapshot: Snapshot,
                    copied: Callable[[], None] | None = None) -> str:
        """One move: copy to ``dst`` (verified) and retire ``src`` in the copy's commit,
        tell ``copied``, then remove ``src``'s bytes."""
        began = time.monotonic()
        if move.policy == "next_use" and await self._fetching(move.key):
            return self._record(move, snapshot, 0.0, "skipped", "a reader is fetching it")
        fence = None
        if self.cluster is not None:  # the lease is checked again at each move, and carried
            fence = self.cluster.fence_for(move)
            if fence is None:
                return self._record(move, snapshot, 0.0, "skipped", "the lease it was "
                                    "planned under is no longer held")
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            with self.store.fenced(fence):  # the catalog refuses its writes once it is lost
                await self.store.replicate(
                    move.key, move.dst, pace=lambda src, size: self.pace(src, move.dst, size),
                    retire=() if move.src is None else (move.src,), copied=copied)
        except asyncio.CancelledError:
            self._record(move, snapshot, time.monotonic() - began, "cancelled")
            raise
        except CopyInFlight:  # a reader's fill (or another mover) is copying it there
            return self._record(move, snapshot, time.monotonic() - began, "skipped",
                                "another copy to that tier is under way")
        except Exception as exc:
            return self._record(move, snapshot, time.monotonic() - began, "failed",
                                one_line(exc))
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()
        seconds = time.monotonic() - began
        if move.bytes >= 2**20 and seconds > 0:  # big enough for the rate to show
            rate = move.bytes / seconds
            self.copy_rate = rate if self.copy_rate is None else (
                0.3 * rate + 0.7 * self.copy_rate)
        return self._record(move, snapshot, seconds, "done")

    async def _fetching(self, key: str) -> bool:
        """Whether a reader announced it is fetching ``key`` now (announcements read again
        at most once a second: a plan made earlier in the cycle may be stale by now)."""
        at, uses = self._uses
        if time.monotonic() - at > 1.0:
            site = self.cluster.site if self.cluster is not None else None
            uses = await self.store.db.next_uses(time.time(), site=site)
            self._uses = (time.monotonic(), uses)
        return uses.get(key) == FETCHING

    def _record(self, move: Move, snapshot: Snapshot, seconds: float, outcome: str,
                error: str | None = None) -> str:
        """The move's log line and counters; returns ``outcome``."""
        obj = snapshot.get(move.key)
        origin = move.src or (snapshot.best(obj) if obj is not None else None)
        fields = {"key": move.key, "from": origin, "to": move.dst, "bytes": move.bytes,
                  "seconds": round(seconds, 3), "copy": move.is_copy, "policy": move.policy,
                  "reason": move.reason, "outcome": outcome}
        if error is not None:
            fields["error"] = error
        level = logging.INFO if outcome in ("done", "planned") else logging.WARNING
        log.log(level, "move", extra={"fields": fields})
        self.outcomes[outcome] += 1
        if outcome != "planned":
            self.metrics.moves.labels(move.policy, outcome).inc()
        return outcome


def _ignoring(fn: Callable[[], None]) -> Callable[[object], None]:
    """``fn`` as a callback that ignores its argument (a done future)."""
    return lambda _: fn()


