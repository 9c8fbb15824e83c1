"""``tierstore plan``: what the policies would move now, changing nothing."""

from __future__ import annotations

import argparse
import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .base import Plan, Snapshot
from .config import PolicyConfig
from .engine import default_engine
from .ledger import apply_plan

if TYPE_CHECKING:
    from tierstore.store import Store

__all__ = ["add_plan_command", "format_plan", "parse_time"]


def parse_time(text: str) -> float:
    """A time as Unix seconds (``1718000000``) or ISO 8601 (``2024-06-10T08:00``, local time
    unless it names a zone)."""
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


def format_plan(plan: Plan) -> str:
    """The plan as a table (object, from, to, bytes, reason) and a closing line."""
    from tierstore.cli import _plural, _table, human

    count = _plural(len(plan), "move")
    tail = f"; {_plural(len(plan.refused), 'proposal')} refused (see --json)" \
        if plan.refused else ""
    if not plan.moves:
        return f"nothing to move{tail}"
    rows = [[m.key, m.src or "(copy)", m.dst, human(m.bytes), f"{m.policy}: {m.reason}"]
            for m in plan]
    table = _table(["OBJECT", "FROM", "TO", "BYTES", "REASON"], rows, right=frozenset({3}))
    return f"{table}\n{count} ({human(plan.bytes)}) planned, nothing changed{tail}"


def _tiers_json(before: Snapshot, after: Snapshot) -> list[dict[str, Any]]:
    return [{"tier": b.name, "capacity": b.capacity, "high_watermark": b.high_watermark,
             "low_watermark": b.low_watermark, "bytes_now": b.used, "bytes_after": a.used}
            for b, a in zip(before.tiers, after.tiers, strict=True)]


async def _cmd_plan(store: Store, args: argparse.Namespace) -> int:
    from tierstore.cli import _print_json

    from .snapshot import snapshot_from_store

    engine = default_engine(PolicyConfig.from_config(store.config))
    snapshot = snapshot_from_store(store, args.now)
    plan = engine.plan(snapshot)
    if args.json:
        _print_json({**plan.to_json(),
                     "tiers": _tiers_json(snapshot, apply_plan(snapshot, plan))})
    else:
        print(format_plan(plan))
    return 0


def add_plan_command(sub: Any) -> None:
    """Register ``tierstore plan [--now TIME]`` on the CLI's subparsers."""
    from tierstore.cli import _command, _with_store

    plan = _command(sub, "plan", _with_store(_cmd_plan, recover=False),
                    "show what the policies would move now (changes nothing)", data=True)
    plan.add_argument("--now", type=parse_time, metavar="TIME",
                      help="plan as of this time: Unix seconds or ISO 8601 (default: now)")
