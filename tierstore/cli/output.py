"""What the command line prints: sizes, tables, JSON, objects, usage and an object's replicas.
Nothing here prints storage options, so credentials never reach the output."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..redaction import redact
from ..store import ObjectInfo, TierReport

__all__ = ["format_du", "format_objects", "format_stat", "human", "info_json", "plural",
           "print_json", "print_long", "table", "tiers_of", "when"]


def human(size: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``: binary units, one decimal from KiB up."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]],
           right: frozenset[int] = frozenset()) -> str:
    """Rows as aligned plain-text columns (never truncated; easy to grep)."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(headers), *map(line, rows)])


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2))


_OBJECT_COLUMNS = ["SIZE", "TIERS", "PINNED", "READS", "KEY"]

_OBJECT_RIGHT = frozenset({0, 3})

_CLASS_ORDER = ("hot", "warm", "cold", "unknown")


def tiers_of(info: ObjectInfo) -> list[str]:
    """The tiers of an object's ready replicas, hottest first."""
    ready = sorted((r for r in info.replicas if r.state == "ready"),
                   key=lambda r: _CLASS_ORDER.index(r.tier_class))
    return [r.tier for r in ready]


def _object_row(info: ObjectInfo) -> list[str]:
    return [human(info.size), ",".join(tiers_of(info)) or "-", info.pinned or "-",
            str(info.access.count if info.access else 0), info.key]


def format_objects(infos: Sequence[ObjectInfo]) -> str:
    """What lives where: size, ready tiers, pin and reads of each object, key last."""
    return table(_OBJECT_COLUMNS, [_object_row(i) for i in infos], _OBJECT_RIGHT)


def format_du(reports: Sequence[TierReport]) -> str:
    """Per tier: objects and bytes held against capacity and watermarks."""
    rows = [[r.tier, r.tier_class, str(r.objects), human(r.bytes), human(r.capacity),
             "-" if r.fill is None else f"{r.fill:.1%}",
             f"{r.high_watermark:.0%}/{r.low_watermark:.0%}", redact(r.url)]
            for r in reports]
    return table(["TIER", "CLASS", "OBJECTS", "SIZE", "CAPACITY", "FILL", "HIGH/LOW", "URL"],
                  rows, right=frozenset({2, 3, 4, 5}))


def info_json(info: ObjectInfo) -> dict[str, Any]:
    return {**dataclasses.asdict(info), "tiers": tiers_of(info)}


def format_stat(info: ObjectInfo) -> str:
    access = info.access
    reads = (f"{access.count} (last {when(access.last_access)}, score {access.score:.2f})"
             if access else "0")
    head = [("key", info.key), ("size", f"{human(info.size)} ({info.size} bytes)"),
            ("checksum", info.checksum), ("created", when(info.created)),
            ("pinned", info.pinned or "-"), ("reads", reads)]
    # RANK and SCORE (a cost in ms, lower reads first) are how this process ranks the ready
    # replicas now, the first read first; LAT/P95 what it measured of each endpoint; HEALTH
    # its circuit breaker, in words.
    ranked = sorted(info.replicas, key=lambda r: (r.rank is None, r.rank or 0))
    replicas = table(
        ["TIER", "CLASS", "SITE", "DISTANCE", "STATE", "RANK", "SCORE", "LAT/P95", "HEALTH"],
        [[r.tier, r.tier_class, r.site, r.distance, r.state, _or_dash(r.rank),
          "-" if r.score_ms is None else f"{r.score_ms:.1f}ms",
          "-" if r.latency_ms is None else f"{r.latency_ms:.1f}/{_or_dash(r.p95_ms, '.1f')}ms",
          _HEALTH.get(r.health, r.health)] for r in ranked])
    lines = [f"{name + ':':<10}{value}" for name, value in head]
    return "\n".join([*lines, "replicas:", *("  " + line for line in replicas.splitlines())])

_HEALTH = {"closed": "healthy", "open": "failing: skipped for now",
           "half-open": "on probation: the next read tries it"}


def _or_dash(value: float | None, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def print_long(entries: Sequence[dict[str, Any]], infos: dict[str, ObjectInfo]) -> None:
    rows = [_object_row(infos[e["name"]]) if e["type"] == "file" else
            [human(e["size"]), "-", "-", "-", e["name"] + "/"] for e in entries]
    print(table(_OBJECT_COLUMNS, rows, _OBJECT_RIGHT))
