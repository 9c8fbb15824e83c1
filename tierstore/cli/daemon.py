"""``tierstore daemon``: its options, and the daemon run as a command (one per store)."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from collections.abc import Callable
from typing import Any

from ..cluster import ClusterMember
from ..config import load_config
from ..daemon import Daemon, DaemonLock, DaemonOptions, lock_path, log
from ..errors import TierstoreError, one_line
from ..policies.config import PolicyConfig
from ..policies.engine import default_engine
from ..store import Store
from ..telemetry import configure_logs, secrets_of
from ..units import parse_size
from .base import argument, command, duration, positive_duration

__all__ = ["add_daemon_command"]


def _or_never(parse: Callable[[str], float]) -> Callable[[str], float | None]:
    """``parse``, or None for ``never``."""
    return lambda text: None if text == "never" else parse(text)


def _per_second(text: str) -> int:
    """``100MiB`` or ``100MiB/s`` as bytes per second."""
    return parse_size(text.removesuffix("/s"))


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"expected {low} to {high}, got {text!r}")
        return int(text)

    return parse


async def _daemon(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    engine = default_engine(PolicyConfig.from_config(config))  # a bad [policies]: one line
    configure_logs(log, args.log_format, secrets_of(config))
    options = DaemonOptions(tick=args.tick, max_moves=args.max_moves, bandwidth=args.bandwidth,
                            shutdown_timeout=args.shutdown_timeout, once=args.once,
                            dry_run=args.dry_run,
                            metrics_port=None if args.no_metrics else args.metrics_port,
                            metrics_host=args.metrics_host, scrub_every=args.scrub_every,
                            scrub_deep=args.scrub_deep,
                            rescan_every=args.rescan_every)
    store = None
    lock = DaemonLock(lock_path(config))
    try:
        lock.acquire(f"{socket.gethostname()}:{os.getpid()}")
        store = Store(config)
        cluster = None
        if config.sqlite_path is None:  # a shared catalog: a cluster
            cluster = ClusterMember(store.catalog, config, ttl=args.lease_ttl)
            await asyncio.to_thread(cluster.join)
        return await Daemon(store, options, engine=engine, cluster=cluster).run()
    except TierstoreError as exc:
        if args.log_format != "json":
            raise  # the command line's one error line
        log.error(one_line(exc))
        return 1
    finally:
        if store is not None:
            await store.close()
        lock.release()


def add_daemon_command(sub: Any) -> None:
    """Register ``tierstore daemon`` on the CLI's subparsers."""
    cmd = command(sub, "daemon", lambda args: asyncio.run(_daemon(args)),
                  "run the migration policies in a loop (one daemon per store)")
    cmd.add_argument("--tick", type=positive_duration, default=60.0, metavar="SECONDS",
                     help="time between cycles: 30, 30s, 5m (default: 60s)")
    cmd.add_argument("--once", action="store_true", help="run one cycle and exit")
    cmd.add_argument("--dry-run", action="store_true", help="log the plan, move nothing")
    cmd.add_argument("--max-moves", type=_whole(1, 10_000), default=4, metavar="N",
                     help="copies in flight at once; as many more moves may be making "
                          "theirs durable and removing their sources (default: 4)")
    cmd.add_argument("--bandwidth", type=argument(_per_second, positive=True), metavar="RATE",
                     help="bytes/s per pair of tiers, e.g. 100MiB (default: unlimited)")
    cmd.add_argument("--shutdown-timeout", type=duration, default=30.0,
                     metavar="SECONDS", help="on SIGTERM, how long moves in flight may take to "
                     "finish before they are cancelled and rolled back (default: 30s)")
    cmd.add_argument("--metrics-port", type=_whole(0, 65535), default=9464, metavar="PORT",
                     help="Prometheus metrics and /healthz on this port (default: 9464; 0: a "
                          "free port, shown in the start line)")
    cmd.add_argument("--metrics-host", default="127.0.0.1", metavar="ADDRESS",
                     help="the IPv4 address metrics are served on (default: 127.0.0.1; "
                          "0.0.0.0 in a container or pod, to be scraped from outside)")
    cmd.add_argument("--no-metrics", action="store_true", help="serve no metrics")
    cmd.add_argument("--scrub-every", type=duration, metavar="SECONDS",
                     help="check every replica's file (size) this often and repair bad ones: "
                          "dropped and copied again from a good replica (default: never; 0: "
                          "every cycle)")
    cmd.add_argument("--scrub-deep", action="store_true",
                     help="scrubs also read every replica and check its checksum")
    cmd.add_argument("--rescan-every", type=_or_never(duration), default=600.0,
                     metavar="SECONDS", help="list the prefixes `tierstore adopt` took in "
                     "again this often, taking in files written over or removed behind the "
                     "store's back (default: 10m; 0: every cycle; never)")
    cmd.add_argument("--lease-ttl", type=positive_duration, default=15.0, metavar="SECONDS",
                     help="with a PostgreSQL catalog: how long the node's and the leader's "
                          "leases outlive a daemon that stops renewing them, so how soon "
                          "another daemon leads after a crash (default: 15s)")
    cmd.add_argument("--log-format", choices=("text", "json"), default="text",
                     help="one line per event as key=value text or JSON (default: text)")
