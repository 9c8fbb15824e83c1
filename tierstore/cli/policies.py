"""``tierstore plan``: what the policies would move now, changing nothing; ``tierstore
preload``: schedule, list and cancel pre-loads (kept in the catalog, staged by the daemon)."""

from __future__ import annotations

import argparse
import math
import time
from datetime import datetime
from typing import Any

from ..carbonaware import CarbonAware
from ..policies.base import Move, Plan, Snapshot
from ..policies.config import PolicyConfig
from ..policies.deferral import CarbonScheduler, Schedule
from ..policies.engine import default_engine
from ..policies.ledger import apply_plan
from ..store import Store
from ..units import parse_duration, parse_size
from .base import argument, command, duration, with_store
from .output import human, plural, print_json, table

__all__ = ["add_plan_command", "add_preload_command", "format_plan", "over_capacity",
           "parse_time"]


def parse_time(text: str) -> float:
    """A time as Unix seconds (``1718000000``), ISO 8601 (``2024-06-10T08:00``, local time
    unless it names a zone), or from now (``+2h``, ``+30m``)."""
    if text.startswith("+"):
        return time.time() + argument(parse_duration)(text[1:])
    try:
        value = float(text)
    except ValueError:
        try:
            value = datetime.fromisoformat(text).timestamp()
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected Unix seconds or an ISO 8601 time, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite time, got {text!r}")
    return value


def format_plan(plan: Plan, after: Snapshot | None = None, before: Snapshot | None = None,
                schedule: Schedule | None = None) -> str:
    """The plan as a table (object, from, to, bytes, reason) and a closing line; with
    ``after`` (the snapshot as the plan leaves it), a warning for each tier still over its
    capacity; with ``before`` (the snapshot planned from), a copy's FROM names the tier it
    reads (its replica there is kept); with a carbon-aware ``schedule``, when each move
    runs (WHEN) and why."""

    count = plural(len(plan), "move")
    tail = f"; {plural(len(plan.refused), 'proposal')} refused (see --json)" \
        if plan.refused else ""
    warnings = "".join(f"\nwarning: {line}" for line in over_capacity(after)) if after else ""
    if not plan.moves:
        return f"nothing to move{tail}{warnings}"
    def source(move: Move) -> str:
        if move.src is not None:
            return move.src
        obj = before.get(move.key) if before is not None else None
        return f"{before.best(obj)} (kept)" if before is not None and obj is not None \
            and obj.replicas else "(copy)"

    rows = [[m.key, source(m), m.dst, human(m.bytes), f"{m.policy}: {m.reason}"] for m in plan]
    headers = ["OBJECT", "FROM", "TO", "BYTES", "REASON"]
    held = ""
    if schedule is not None:
        headers += ["WHEN"]
        for i, (row, timing) in enumerate(zip(rows, schedule.timings, strict=True)):
            row.append(("now" if schedule.runs_now(i) else _clock(timing.when))
                       + f" ({timing.why})")
        held = f", {len(schedule.held)} of them held for a cleaner hour"
    shown = table(headers, rows, right=frozenset({3}))
    return (f"{shown}\n{count} ({human(plan.bytes)}) planned{held}, nothing changed{tail}"
            f"{warnings}")


def _clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="minutes")


def over_capacity(snapshot: Snapshot) -> list[str]:
    """A line for each tier over its capacity in ``snapshot``, and what is pinned there: the
    policies move nothing pinned, and writes to such a tier are refused."""

    lines = []
    for tier in snapshot.tiers:
        if tier.capacity is None or tier.used <= tier.capacity:
            continue
        share = f", {tier.used / tier.capacity:.0%} of" if tier.capacity else " against"
        pinned = sum(obj.size for obj in snapshot.on(tier.name) if obj.pinned == tier.name)
        lines.append(f"tier {tier.name} holds {human(tier.used)}{share} its capacity "
                     f"({human(tier.capacity)}), {human(pinned)} of it pinned there; writes "
                     "to it are refused until it is under (unpin, or raise its capacity)")
    return lines


def _tiers_json(before: Snapshot, after: Snapshot) -> list[dict[str, Any]]:
    return [{"tier": b.name, "capacity": b.capacity, "high_watermark": b.high_watermark,
             "low_watermark": b.low_watermark, "bytes_now": b.used, "bytes_after": a.used,
             "over_capacity_after": a.used > a.limit}
            for b, a in zip(before.tiers, after.tiers, strict=True)]


async def _cmd_plan(store: Store, args: argparse.Namespace) -> int:
    engine = default_engine(PolicyConfig.from_config(store.config))
    carbon = CarbonAware.from_config(store.config, bandwidth=args.bandwidth)
    snapshot = await store.snapshot(args.now)
    plan = engine.plan(snapshot)
    after = apply_plan(snapshot, plan)
    if carbon is not None:  # a source that does not answer: its one-line error
        schedule = carbon.schedule(plan, snapshot, now=plan.now, strict=True)
    else:
        schedule = CarbonScheduler(0.0).schedule(plan, snapshot, None,
                                                 unavailable="no [carbon] table")
    if args.json:
        print_json({**schedule.to_json(), "carbon": None if carbon is None else
                    {"source": carbon.source.describe(), "intensity_now": carbon.intensity,
                     "max_deferral_s": carbon.max_deferral, "estimate": True},
                    "tiers": _tiers_json(snapshot, after)})
    else:
        print(format_plan(plan, after, snapshot, schedule if carbon is not None else None))
    return 0


def add_plan_command(sub: Any) -> None:
    """Register ``tierstore plan [--now TIME]`` on the CLI's subparsers."""

    plan = command(sub, "plan", with_store(_cmd_plan, recover=False),
                   "show what the policies would move now (changes nothing)", data=True)
    plan.add_argument("--now", type=parse_time, metavar="TIME",
                      help="plan as of this time: Unix seconds or ISO 8601 (default: now)")
    plan.add_argument("--bandwidth", type=argument(_per_second, positive=True), metavar="RATE",
                      help="the daemon's --bandwidth (bytes/s per pair of tiers, e.g. 200MiB), "
                           "which carbon-aware moves share out over the cleaner hours "
                           "(default: unlimited)")


def _per_second(text: str) -> int:
    """``100MiB`` or ``100MiB/s`` as bytes per second (as ``tierstore daemon --bandwidth``)."""
    return parse_size(text.removesuffix("/s"))


def when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="minutes")


async def _cmd_preload(store: Store, args: argparse.Namespace) -> int:

    if args.cancel:
        gone = await store.cancel_preload(args.prefix, args.tier)
        print(f"cancelled {gone} pre-load{'' if gone == 1 else 's'} of {args.prefix}")
        return 0 if gone else 1
    if args.prefix is not None:
        if args.tier is None or args.by is None:
            raise ValueError("a pre-load needs --tier and --by (or use --list, --cancel)")
        record = await store.schedule_preload(args.prefix, args.tier, args.by,
                                              lead=args.lead, hold=args.hold)
        staging = "now" if record.lead is None else when(record.deadline - record.lead)
        if not args.json:
            print(f"pre-load {record.prefix or '/'} onto {record.tier} by "
                  f"{when(record.deadline)} (staging from {staging}, held until "
                  f"{when(record.deadline + record.hold)}); the daemon stages it")
            return 0
    records = await store.preloads()
    if args.json:
        print_json([{"prefix": r.prefix, "tier": r.tier, "by": r.deadline, "lead": r.lead,
                      "hold": r.hold, "created": r.created} for r in records])
    elif not records:
        print("no pre-loads scheduled")
    else:
        print(table(["PREFIX", "TIER", "BY", "STAGING FROM", "HELD UNTIL"],
                     [[r.prefix or "/", r.tier, when(r.deadline),
                       "now" if r.lead is None else when(r.deadline - r.lead),
                       when(r.deadline + r.hold)] for r in records]))
    return 0


def add_preload_command(sub: Any) -> None:
    """Register ``tierstore preload PREFIX --tier T --by TIME``, ``--list``, ``--cancel``."""

    preload = command(sub, "preload", with_store(_cmd_preload, recover=False),
                      "stage a prefix on a tier before a scheduled job (the daemon does it)",
                      data=True)
    preload.add_argument("prefix", nargs="?", metavar="PREFIX",
                         help="objects under this prefix ('' for all)")
    preload.add_argument("--tier", help="the tier to stage onto")
    preload.add_argument("--by", type=parse_time, metavar="TIME",
                         help="when the job starts: Unix seconds, ISO 8601, or +2h from now")
    preload.add_argument("--lead", type=duration, metavar="DURATION",
                         help="start staging this long before --by (default: at once)")
    preload.add_argument("--hold", type=duration, default=86400.0, metavar="DURATION",
                         help="keep the objects there this long after --by (default: 1d)")
    preload.add_argument("--list", action="store_true",
                         help="list scheduled pre-loads (the default without PREFIX)")
    preload.add_argument("--cancel", action="store_true",
                         help="cancel the pre-loads of PREFIX (onto --tier only, if given)")
