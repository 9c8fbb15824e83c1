"""One daemon per node, one leader per cluster: leases in the catalog (PostgreSQL's row locks
and clock), not a consensus protocol written here.

Each node's daemon holds ``node:<site>`` (so two daemons never own one node's hot tier) and
competes for ``leader``; both are renewed every ``ttl / 3`` seconds, apart from the daemon's
cycles, so a long cycle never lets them lapse. Only the leader makes cluster-wide moves (those
touching no hot tier: demotions from warm to cold and the like); every daemon makes the moves
of its own hot tier. When the leader dies, its lease expires within ``ttl`` and the next daemon
to renew takes it. A holder counts its lease as lost ``ttl`` seconds after it sent the request
that last took or renewed it (its own monotonic clock), whatever the database says, so two
leaders never act at once even if one of them stalls; and every move is crash-safe and
refused by the catalog while another copy of the same object to the same tier is in flight.
The leader also finishes or rolls back the pending moves of daemons whose node lease expired
(:meth:`ClusterMember.recover_crashed`): a daemon's own start-up recovery only sees its host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

from .catalog import AsyncCatalog, Catalog, Fence, Lease
from .config import Config, TierClass
from .errors import TierstoreError
from .policies.base import Move, Plan, Snapshot
from .policies.engine import PolicyEngine
from .store import Store

__all__ = ["LEADER", "ClusterMember", "LeaseKeeper", "NodeTaken", "node_lease"]

log = logging.getLogger("tierstore.daemon")  # the daemon's log lines, in its format

LEADER = "leader"


def node_lease(site: str) -> str:
    return f"node:{site}"


class NodeTaken(TierstoreError):
    """Another live daemon holds this node's lease."""


class LeaseKeeper:
    """One lease: taken or renewed by :meth:`refresh`, counted as held only while its local
    deadline (the request's send time plus ``ttl``) has not passed."""

    def __init__(self, catalog: Catalog, name: str, holder: str, ttl: float,
                 clock: Callable[[], float] = time.monotonic):
        self.catalog, self.name, self.holder, self.ttl = catalog, name, holder, ttl
        self.lease: Lease | None = None
        self._deadline = 0.0
        self._clock = clock

    @property
    def held(self) -> bool:
        return self.lease is not None and self._clock() < self._deadline

    @property
    def fence(self) -> int | None:
        return self.lease.fence if self.held and self.lease is not None else None

    def refresh(self) -> bool:
        """Renew the lease if held, else try to take it; whether it is held now."""
        sent = self._clock()
        lease = None
        if self.lease is not None:
            lease = self.catalog.renew_lease(self.name, self.holder, self.lease.fence, self.ttl)
        if lease is None:
            lease = self.catalog.acquire_lease(self.name, self.holder, self.ttl)
        self.lease, self._deadline = lease, sent + self.ttl
        return lease is not None

    def release(self) -> None:
        if self.lease is not None:
            self.catalog.release_lease(self.name, self.holder, self.lease.fence)
            self.lease = None

    def current(self) -> Lease | None:
        """The lease as the catalog has it now, whoever holds it."""
        return next((lease for lease in self.catalog.leases() if lease.name == self.name), None)


class ClusterMember:
    """A daemon's place in the cluster: its node lease and its bid for leadership."""

    def __init__(self, catalog: Catalog, config: Config, *, ttl: float = 15.0,
                 holder: str | None = None):
        if ttl <= 0:
            raise ValueError("the lease time must be positive")
        self.config, self.site, self.ttl = config, config.site, ttl
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.node = LeaseKeeper(catalog, node_lease(self.site), self.holder, ttl)
        self.leader = LeaseKeeper(catalog, LEADER, self.holder, ttl)
        self.db = AsyncCatalog(catalog)  # the catalog, as coroutines call it
        hot = {name for name, tier in config.tiers.items() if tier.tier_class is TierClass.HOT}
        # This node's own hot tiers are those in its site; a hot tier of another site is
        # another node's local disk, listed as reachable for reads: never this daemon's to
        # promote to or evict from.
        self.hot = {name for name in hot if config.tiers[name].site == self.site}
        self.foreign = hot - self.hot
        self.shared = set(config.tiers) - hot  # warm and cold: every node's, the leader's
        self._was_leader = False

    @property
    def is_leader(self) -> bool:
        return self.node.held and self.leader.held

    def join(self, wait: float | None = None) -> None:
        """Take this node's lease, waiting up to ``wait`` (default: one lease time) for a
        crashed predecessor's to expire; NodeTaken if a live daemon keeps it."""
        deadline = time.monotonic() + (self.ttl if wait is None else wait)
        while not self.node.refresh():
            if time.monotonic() >= deadline:
                current = self.node.current()
                who = current.holder if current is not None else "another daemon"
                raise NodeTaken(f"another daemon holds site {self.site!r}: {who} (lease "
                                f"{self.node.name!r}; it expires {self.ttl:g}s after its "
                                "holder stops renewing it)")
            time.sleep(min(1.0, self.ttl / 5))
        self.refresh()

    def refresh(self) -> None:
        """Renew the node lease and bid for (or keep) the leader's; logs changes of role."""
        if not self.node.refresh():
            log.error("lost the node lease %r", self.node.name)
        if self.node.held:
            self.leader.refresh()
        elif self.leader.lease is not None:  # never lead without owning one's node
            self.leader.release()
        leading = self.is_leader
        if leading != self._was_leader:
            lease = self.leader.lease
            log.warning("became leader" if leading else "no longer leader", extra={
                "fields": {"holder": self.holder, "site": self.site,
                           "fence": lease.fence if lease is not None else None}})
            self._was_leader = leading

    async def keep(self, stop: asyncio.Event) -> None:
        """Refresh every ``ttl / 3`` seconds until ``stop`` is set; errors are logged (the
        leases lapse on their own if the catalog stays away)."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.refresh)
            except (TierstoreError, OSError) as exc:
                log.warning("could not renew leases: %s", " ".join(str(exc).split()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.ttl / 3)

    def leave(self) -> None:
        """Give both leases up (on a clean stop), so another daemon leads at once."""
        for keeper in (self.leader, self.node):
            try:
                keeper.release()
            except (TierstoreError, OSError) as exc:
                log.warning("could not release lease %r: %s", keeper.name, exc)

    async def recover_crashed(self, store: Store) -> list[tuple[str, str]]:
        """As leader: finish or roll back the pending work of daemons that died, those whose
        node lease has expired (a dead node's pending replicas are named by its ``host:pid``,
        the lease's holder less its token). Work of processes that hold no lease (a put from
        the command line) and replicas on tiers this store cannot reach are left alone.
        Returns the (key, tier) of each replica handled."""
        if not self.is_leader:
            return []
        now = await self.db.clock()
        leases = await self.db.leases()
        live = {lease.holder.rsplit(":", 1)[0] for lease in leases if lease.expires > now}
        dead = {lease.holder.rsplit(":", 1)[0] for lease in leases
                if lease.name.startswith("node:") and lease.expires <= now} - live
        if not dead:
            return []
        report = await store.recover(dead=dead)
        done = [*report.rolled_back, *report.finished]
        if done:
            log.warning("recovered the work of crashed daemons", extra={"fields": {
                "owners": sorted(dead), "replicas": len(done)}})
        return done

    def cluster_wide(self, move: Move) -> bool:
        """A move that touches no hot tier (a node's own) is the leader's to make."""
        hot = self.hot | self.foreign
        return move.dst not in hot and (move.src is None or move.src not in hot)

    def fence_for(self, move: Move) -> Fence | None:
        """The lease ``move`` is made under (the leader's for a cluster-wide move, else the
        node's), as its catalog writes carry it; None when that lease is not held now."""
        keeper = self.leader if self.cluster_wide(move) else self.node
        lease = keeper.lease
        if not (self.node.held and keeper.held) or lease is None:
            return None
        return Fence(lease.name, lease.fence)

    def _foreign(self, move: Move) -> bool:
        return move.dst in self.foreign or move.src in self.foreign

    def mine(self, plan: Plan) -> tuple[Plan, int]:
        """The moves of ``plan`` this daemon may make now, and how many were left out (those
        of another node's hot tier are never this daemon's)."""
        leading = self.is_leader
        if not self.node.held:
            kept: tuple[Move, ...] = ()
        else:
            kept = tuple(m for m in plan if not self._foreign(m)
                         and (leading or not self.cluster_wide(m)))
        return Plan(kept, plan.now, plan.refused), len(plan) - len(kept)

    def plan(self, store: Store, engine: PolicyEngine, now: float | None = None, *,
             copy_bytes_per_s: float | None = None) -> tuple[Snapshot, Plan, int]:
        """This cycle's work: the snapshot its moves are logged against, the plan, and how
        many moves were left to the leader.

        The node's plan sees its own hot tier and the shared tiers, with the reads and the
        next-use announcements of this site only, and keeps the moves that touch its hot
        tier (promotions, evictions, staging). The leader adds the cluster-wide plan: the
        shared tiers only, with the reads and announcements of every site (a warm object
        read on any node is not demoted), for objects the node's plan leaves alone."""
        at = time.time() if now is None else now
        local = store.read_snapshot(at, site=self.site, tiers=self.hot | self.shared,
                                    copy_bytes_per_s=copy_bytes_per_s)
        wanted = engine.plan(local)
        if not self.node.held:
            return local, Plan((), at, wanted.refused), len(wanted)
        moves = [m for m in wanted if not self.cluster_wide(m) and not self._foreign(m)]
        left = len(wanted) - len(moves)
        refused = list(wanted.refused)
        if self.is_leader:
            left = 0
            shared = engine.plan(store.read_snapshot(at, tiers=self.shared))
            taken = {m.key for m in moves}
            moves += [m for m in shared if m.key not in taken and self.cluster_wide(m)]
            refused += shared.refused
        return local, Plan(tuple(moves), at, tuple(refused)), left

    def status(self) -> dict[str, object]:
        return {"holder": self.holder, "site": self.site, "node_lease": self.node.held,
                "leader": self.is_leader, "fence": self.leader.fence, "lease_ttl": self.ttl}
