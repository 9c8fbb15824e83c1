"""``tierstore daemon``: its options, and the daemon run as a command (one per store)."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from collections.abc import Callable
from typing import Any

from ..cluster import ClusterMember
from ..config import load_config, parse_size
from ..daemon import Daemon, DaemonLock, DaemonOptions, lock_path, log
from ..errors import ConfigError, TierstoreError, one_line
from ..metrics import configure_logs, secrets_of
from ..policies.config import PolicyConfig
from ..policies.engine import default_engine
from ..store import Store
from .base import command

__all__ = ["add_daemon_command"]


def _or_never(parse: Callable[[str], float]) -> Callable[[str], float | None]:
    """``parse``, or None for ``never``."""
    return lambda text: None if text == "never" else parse(text)


def _seconds(zero: bool) -> Callable[[str], float]:
    """A parser of ``30``, ``30s``, ``5m``, ``2h`` or ``1d`` as seconds (> 0, or >= 0)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def parse(text: str) -> float:
        number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
        try:
            value = float(number) * unit
        except ValueError:
            value = -1.0
        if not (0 <= value < float("inf") and (zero or value > 0)):
            raise argparse.ArgumentTypeError(f"expected a duration such as 30, 30s or 5m"
                                             f"{'' if zero else ' (not 0)'}, got {text!r}")
        return value

    return parse


def _rate(text: str) -> int:
    """``100MiB`` or ``100MiB/s`` as bytes per second."""
    try:
        value = parse_size(text.removesuffix("/s"), field="--bandwidth")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive rate, got {text!r}")
    return value


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
    cmd.add_argument("--tick", type=_seconds(zero=False), default=60.0, metavar="SECONDS",
                     help="time between cycles: 30, 30s, 5m (default: 60s)")
    cmd.add_argument("--once", action="store_true", help="run one cycle and exit")
    cmd.add_argument("--dry-run", action="store_true", help="log the plan, move nothing")
    cmd.add_argument("--max-moves", type=_whole(1, 10_000), default=4, metavar="N",
                     help="moves in flight at once (default: 4)")
    cmd.add_argument("--bandwidth", type=_rate, metavar="RATE",
                     help="bytes/s per pair of tiers, e.g. 100MiB (default: unlimited)")
    cmd.add_argument("--shutdown-timeout", type=_seconds(zero=True), default=30.0,
                     metavar="SECONDS", help="on SIGTERM, how long moves in flight may take to "
                     "finish before they are cancelled and rolled back (default: 30s)")
    cmd.add_argument("--metrics-port", type=_whole(0, 65535), default=9464, metavar="PORT",
                     help="Prometheus metrics and /healthz on this port (default: 9464; 0: a "
                          "free port, shown in the start line)")
    cmd.add_argument("--metrics-host", default="127.0.0.1", metavar="ADDRESS",
                     help="the IPv4 address metrics are served on (default: 127.0.0.1; "
                          "0.0.0.0 in a container or pod, to be scraped from outside)")
    cmd.add_argument("--no-metrics", action="store_true", help="serve no metrics")
    cmd.add_argument("--scrub-every", type=_seconds(zero=True), metavar="SECONDS",
                     help="check every replica's file (size) this often and repair bad ones: "
                          "dropped and copied again from a good replica (default: never; 0: "
                          "every cycle)")
    cmd.add_argument("--scrub-deep", action="store_true",
                     help="scrubs also read every replica and check its checksum")
    cmd.add_argument("--rescan-every", type=_or_never(_seconds(zero=True)), default=600.0,
                     metavar="SECONDS", help="list the prefixes `tierstore adopt` took in "
                     "again this often, taking in files written over or removed behind the "
                     "store's back (default: 10m; 0: every cycle; never)")
    cmd.add_argument("--lease-ttl", type=_seconds(zero=False), default=15.0, metavar="SECONDS",
                     help="with a PostgreSQL catalog: how long the node's and the leader's "
                          "leases outlive a daemon that stops renewing them, so how soon "
                          "another daemon leads after a crash (default: 15s)")
    cmd.add_argument("--log-format", choices=("text", "json"), default="text",
                     help="one line per event as key=value text or JSON (default: text)")
