"""The ``[locality]`` table of the config: how replicas are scored, when an endpoint is taken
out of rotation, the read deadline and hedged reads. Every field has a default, so the table
may be absent; a malformed value is a ConfigError naming the file and the field::

    [locality]
    read_deadline = 60.0        # seconds: every replica tried within this, else one clear error
    trip_after = 3              # consecutive failures that take an endpoint out of rotation
    cooldown = 5.0              # seconds out of rotation before one probe read is let through
    ewma_alpha = 0.3            # weight of each new latency/throughput sample
    memory = 30.0               # seconds: half-life with which measurements fade back to the
                                # static estimate (so an endpoint once slow is tried again)
    hedge = true                # hedge small reads
    hedge_max_bytes = "1MiB"    # reads up to this size are hedged
    hedge_after = "p95"         # "p95" (the chosen replica's own) or a fixed number of ms
    hedge_min_ms = 2.0          # never hedge sooner than this
    hotter_wins_within = 0.5    # a hotter class's replica ranks first unless its cost is
                                # more than this much (50%) above a colder one's: noise in
                                # what was measured never sends reads past a staged copy
    hot_wins_within = 3.0       # and a hot replica (a staged copy) unless more than this (4x)
                                # above: reads measured under load include time queued in
                                # this process, which swings 2-3x on a busy machine
    repair_on_read = true       # a replica a verified read finds corrupt is replaced (dropped
                                # and copied again from a good one) once the read is served

    [locality.placement]        # per tier class: replicas and their spread (node, zone or
    warm = { replicas = 2, spread = "zone" }   # region); none by default, see .placement

    [locality.distance_ms]      # latency assumed before anything is measured, per distance
    node = 0.5
    zone = 2.0
    region = 10.0
    remote = 50.0

    [locality.class_ms]         # added to the cost of each tier class
    hot = 0.0
    warm = 1.0
    cold = 20.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..units import parse_size
from .placement import PlacementRule, parse_placement

__all__ = ["LocalitySettings"]

_DISTANCE_MS = {"node": 0.5, "zone": 2.0, "region": 10.0, "remote": 50.0}
_CLASS_MS = {"hot": 0.0, "warm": 1.0, "cold": 20.0}


@dataclass(frozen=True, kw_only=True)
class LocalitySettings:
    """Replica selection, health and hedging settings (the ``[locality]`` table)."""

    read_deadline: float = 60.0
    trip_after: int = 3
    cooldown: float = 5.0
    ewma_alpha: float = 0.3
    memory: float = 30.0
    hedge: bool = True
    hedge_max_bytes: int = 2**20
    hedge_after: float | None = None  # None: the chosen replica's measured p95
    hedge_min_ms: float = 2.0
    hotter_wins_within: float = 0.5
    hot_wins_within: float = 3.0
    distance_ms: Mapping[str, float] = field(default_factory=lambda: dict(_DISTANCE_MS))
    class_ms: Mapping[str, float] = field(default_factory=lambda: dict(_CLASS_MS))
    repair_on_read: bool = True
    placement: Mapping[str, PlacementRule] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, raw: object, *, source: str | None = None,
                     where: str = "locality") -> LocalitySettings:
        """Parse and check a ``[locality]`` table; errors name ``source`` and the field."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"expected a table, got {raw!r}", source=source, field=where)
        known = {"read_deadline", "trip_after", "cooldown", "ewma_alpha", "memory", "hedge",
                 "hedge_max_bytes", "hedge_after", "hedge_min_ms", "hotter_wins_within",
                 "hot_wins_within",
                 "distance_ms", "class_ms",
                 "repair_on_read", "placement"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r} (expected one of "
                              f"{', '.join(sorted(known))})", source=source, field=where)

        def number(name: str, default: float, *, low: float = 0.0, strict: bool = True,
                   high: float = math.inf) -> float:
            value = raw.get(name, default)
            ok = isinstance(value, int | float) and not isinstance(value, bool) and (
                math.isfinite(value) and (value > low if strict else value >= low)
                and value <= high)
            if not ok:
                bound = f"{'>' if strict else '>='} {low:g}" + (
                    f" and <= {high:g}" if math.isfinite(high) else "")
                raise ConfigError(f"expected a number {bound}, got {value!r}", source=source,
                                  field=f"{where}.{name}")
            return float(value)

        def table(name: str, defaults: Mapping[str, float]) -> dict[str, float]:
            got = raw.get(name, {})
            if not isinstance(got, Mapping):
                raise ConfigError(f"expected a table, got {got!r}", source=source,
                                  field=f"{where}.{name}")
            bad = sorted(set(got) - set(defaults))
            if bad:
                raise ConfigError(f"unknown key {bad[0]!r} (expected "
                                  f"{', '.join(defaults)})", source=source,
                                  field=f"{where}.{name}")
            out = dict(defaults)
            for key, value in got.items():
                if (not isinstance(value, int | float) or isinstance(value, bool)
                        or not math.isfinite(value) or value < 0):
                    raise ConfigError(f"expected milliseconds >= 0, got {value!r}",
                                      source=source, field=f"{where}.{name}.{key}")
                out[key] = float(value)
            return out

        trip = raw.get("trip_after", 3)
        if not isinstance(trip, int) or isinstance(trip, bool) or trip < 1:
            raise ConfigError(f"expected an integer >= 1, got {trip!r}", source=source,
                              field=f"{where}.trip_after")
        hedge = raw.get("hedge", True)
        if not isinstance(hedge, bool):
            raise ConfigError(f"expected true or false, got {hedge!r}", source=source,
                              field=f"{where}.hedge")
        repair = raw.get("repair_on_read", True)
        if not isinstance(repair, bool):
            raise ConfigError(f"expected true or false, got {repair!r}", source=source,
                              field=f"{where}.repair_on_read")
        after = raw.get("hedge_after", "p95")
        if isinstance(after, str) and after != "p95":
            raise ConfigError(f"expected \"p95\" or milliseconds, got {after!r}",
                              source=source, field=f"{where}.hedge_after")
        hedge_after = None if after == "p95" else number("hedge_after", 0.0)
        return cls(
            read_deadline=number("read_deadline", 60.0),
            trip_after=trip,
            cooldown=number("cooldown", 5.0, strict=False),
            ewma_alpha=number("ewma_alpha", 0.3, high=1.0),
            memory=number("memory", 30.0),
            hedge=hedge,
            hedge_max_bytes=parse_size(raw.get("hedge_max_bytes", 2**20), source=source,
                                  field=f"{where}.hedge_max_bytes"),
            hedge_after=hedge_after,
            hedge_min_ms=number("hedge_min_ms", 2.0, strict=False),
            hotter_wins_within=number("hotter_wins_within", 0.5, strict=False),
            hot_wins_within=number("hot_wins_within", 3.0, strict=False),
            distance_ms=table("distance_ms", _DISTANCE_MS),
            class_ms=table("class_ms", _CLASS_MS),
            repair_on_read=repair,
            placement=parse_placement(raw.get("placement", {}), source=source,
                                      where=f"{where}.placement"),
        )



