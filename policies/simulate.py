"""``tierstore simulate``: compare policies on an access trace before deploying one.

::

    tierstore simulate --trace reads.csv --hot-capacity 16GiB --tick 1m

replays the trace (:mod:`.trace`) once per policy in virtual time (:mod:`.replay`) against the
configured tiers, their capacities (or those given) and the ``[policies]`` section, and shows
side by side, per policy, the share of reads and of bytes each tier served, the moves made
and the bytes they copied. ``configured`` is what ``tierstore daemon`` would run;
``recency``, ``frequency`` and ``lrfu`` are those settings with every tier scored one way;
``lru-baseline`` is the hot tier as a plain LRU cache.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from tierstore.config import Config, TierClass, parse_size
from tierstore.errors import ConfigError

from .base import TierState, format_duration
from .config import PolicyConfig, Scoring, parse_duration
from .replay import MAX_TICKS, EngineReplay, LruReplay, Replay, Result, place
from .trace import Trace, TraceError

__all__ = ["POLICIES", "Simulation", "add_simulate_command", "format_results",
           "simulation_tiers"]

LRU = "lru-baseline"
CONFIGURED = "configured"
# every policy a run may compare, in the order they are shown
POLICIES = (CONFIGURED, Scoring.RECENCY.value, Scoring.FREQUENCY.value, Scoring.LRFU.value, LRU)


def simulation_tiers(config: Config, capacities: Mapping[str, int] | None = None
                     ) -> tuple[TierState, ...]:
    """The configured tiers, empty, hottest first; ``capacities`` (by tier name or class)
    replace theirs."""
    capacities = capacities or {}
    tiers = [TierState(name=t.name, tier_class=t.tier_class,
                       capacity=capacities.get(t.name, capacities.get(t.tier_class.name.lower(),
                                                                       t.capacity)),
                       high_watermark=t.high_watermark, low_watermark=t.low_watermark,
                       site=t.site)
             for t in config.tiers.values()]
    return tuple(sorted(tiers, key=lambda t: (t.tier_class, t.name)))


@dataclass(frozen=True, kw_only=True)
class Simulation:
    """A trace, the tiers it is replayed on and the settings the policies start from.

    Objects start on ``start`` (a tier colder than the hottest, which the policies fill);
    the engine plans every ``tick`` seconds of trace time.
    """

    trace: Trace
    tiers: tuple[TierState, ...]
    config: PolicyConfig
    start: str
    tick: float = 60.0
    configured: str = "tierstore's default settings"

    def __post_init__(self) -> None:
        _check_start(self.tiers, self.start)
        if not 0 < self.tick < float("inf"):
            raise ConfigError(f"expected a positive tick, got {self.tick!r}", field="--tick")
        span = self.trace.end - self.trace.start
        if span / self.tick + 1 > MAX_TICKS:
            raise TraceError(f"{self.trace.source}: {format_duration(span)} of trace at a tick "
                             f"of {format_duration(self.tick)} is more than {MAX_TICKS:,} "
                             "plans; pass a longer --tick")

    def describe(self, policy: str) -> str:
        if policy == LRU:
            return f"{self.tiers[0].name} as a plain LRU cache of whole objects, no policies"
        if policy == CONFIGURED:
            return f"{self.configured} (what `tierstore daemon` runs)"
        return f"every tier scored by {policy}, other settings as configured"

    def policy_config(self, policy: str) -> PolicyConfig:
        if policy == CONFIGURED:
            return self.config
        return replace(self.config, scoring={}, default_scoring=Scoring(policy))

    def replay(self, policy: str) -> Replay:
        """A fresh replay of ``policy`` (one of :data:`POLICIES`)."""
        home = place(self.trace, self.tiers, self.start)
        if policy == LRU:
            return LruReplay(policy, self.describe(policy), self.tiers, self.trace, home)
        return EngineReplay(policy, self.describe(policy), self.policy_config(policy),
                            self.tiers, self.trace, home)

    def run(self, policies: Sequence[str] = POLICIES,
            advance: Callable[[str, int], None] | None = None) -> list[Result]:
        """One :class:`Result` per policy, in order; ``advance(policy, reads)`` reports
        progress. Policies whose settings are the same replay once."""
        done: list[tuple[object, Result]] = []  # settings are not hashable
        out = []
        for policy in dict.fromkeys(policies):
            same = LRU if policy == LRU else self.policy_config(policy)
            result = next((r for settings, r in done if settings == same), None)
            if result is None:
                step = None if advance is None else (lambda n, p=policy: advance(p, n))
                result = self.replay(policy).run(self.trace, self.tick, step)
                done.append((same, result))
            elif advance is not None:
                advance(policy, len(self.trace.reads))
            out.append(replace(result, policy=policy, description=self.describe(policy)))
        return out

    def to_json(self, results: Sequence[Result]) -> dict[str, Any]:
        return {"trace": self.trace.to_json(), "tick": self.tick, "start_tier": self.start,
                "tiers": [{"tier": t.name, "class": t.tier_class.name.lower(),
                           "capacity": t.capacity, "high_watermark": t.high_watermark,
                           "low_watermark": t.low_watermark} for t in self.tiers],
                "policies": [result.to_json() for result in results]}


def _check_start(tiers: Sequence[TierState], start: str) -> None:
    names = [tier.name for tier in tiers]
    if len(names) < 2:
        raise ConfigError("a simulation needs two tiers or more", field="tiers")
    if start not in names[1:]:
        raise ConfigError(f"objects start on a tier colder than {names[0]} (the tier the "
                          f"policies fill): one of {', '.join(names[1:])}, not {start!r}",
                          field="--start-tier")


def format_results(sim: Simulation, results: Sequence[Result]) -> str:
    """A heading on the trace and tiers, then one row per policy: the share of reads and of
    bytes each tier served (tiers that served nothing left out), moves and bytes moved."""
    from tierstore.cli import _table, human

    trace = sim.trace
    tiers = ", ".join(f"{t.name} {human(t.capacity)}" if t.capacity is not None
                      else f"{t.name} unbounded" for t in sim.tiers)
    shown = [t.name for t in sim.tiers if any(r.tiers[t.name].reads for r in results)]
    headers = ["POLICY"] + [f"{name.upper()} {what}" for name in shown
                            for what in ("READS", "BYTES")] + ["MOVES", "MOVED"]
    rows = [[r.policy] + [f"{rate(name):.1%}" for name in shown
                          for rate in (r.read_hit_rate, r.byte_hit_rate)]
            + [f"{r.moves:,}", human(r.bytes_moved)] for r in results]
    lines = [
        f"{trace.source}: {_count(len(trace.reads), 'read')} of "
        f"{_count(len(trace.sizes), 'object')} ({human(sum(trace.sizes.values()))}) over "
        f"{format_duration(trace.end - trace.start)}",
        f"tiers: {tiers}; objects start on {sim.start}; the policies plan every "
        f"{format_duration(sim.tick)}",
        "",
        _table(headers, rows, right=frozenset(range(1, len(headers)))),
        "",
        "READS, BYTES: the share of reads and of bytes each tier served; MOVED: bytes copied",
    ]
    lines += [f"{r.policy}: {r.description}" for r in results if r.policy in (CONFIGURED, LRU)]
    return "\n".join(lines)


def _count(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


# -- the command ------------------------------------------------------------------------------


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tick(text: str) -> float:
    try:
        seconds = parse_duration(text, field="--tick")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a tick longer than 0, got {text!r}")
    return seconds


@contextmanager
def _progress(total: int) -> Iterator[Callable[[str, int], None] | None]:
    """``advance(policy, reads)`` drawing a bar on a terminal; None elsewhere."""
    from tierstore._progress import interactive

    if not interactive():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("simulating {task.fields[policy]}"), BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                  transient=True) as bar:
        task = bar.add_task("simulate", total=total, policy="")
        yield lambda policy, reads: bar.update(task, advance=reads, policy=policy)


def _simulation(args: argparse.Namespace) -> Simulation:
    from tierstore.config import load_config

    from .trace import read_trace

    config = load_config(args.config)
    capacities = {cls.name.lower(): size for cls in TierClass
                  if (size := getattr(args, f"{cls.name.lower()}_capacity")) is not None}
    tiers = simulation_tiers(config, capacities)
    start = args.start_tier
    if start is None:
        start = config.default_tier if config.default_tier != tiers[0].name else \
            next((t.name for t in tiers[1:]), config.default_tier)
    _check_start(tiers, start)  # before reading what may be a long trace
    described = (f"the [policies] of {config.source}" if config.policies
                 else "tierstore's default settings")
    return Simulation(trace=read_trace(args.trace), tiers=tiers,
                      config=PolicyConfig.from_config(config), start=start, tick=args.tick,
                      configured=described)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from tierstore.cli import _print_json

    sim = _simulation(args)
    policies = args.policy or list(POLICIES)
    with _progress(len(sim.trace.reads) * len(policies)) as advance:
        results = sim.run(policies, advance)
    if args.json:
        _print_json(sim.to_json(results))
    else:
        print(format_results(sim, results))
    return 0


def add_simulate_command(sub: Any) -> None:
    """Register ``tierstore simulate --trace FILE [--policy P ...]`` on the CLI's
    subparsers."""
    from tierstore.cli import _command

    cmd = _command(sub, "simulate", _cmd_simulate, "replay an access trace against the "
                   "policies and compare hit rates per tier (changes nothing)", data=True)
    cmd.add_argument("--trace", required=True, metavar="FILE",
                     help="reads as CSV (time,key,bytes) or JSON lines; .gz is read too")
    cmd.add_argument("--policy", action="append", choices=POLICIES, metavar="POLICY",
                     help=f"a policy to replay; repeat to compare ({', '.join(POLICIES)}; "
                          "default: all)")
    for cls in TierClass:
        name = cls.name.lower()
        cmd.add_argument(f"--{name}-capacity", type=_size, metavar="SIZE",
                         help=f"capacity of the {name} tiers, e.g. 10GiB (default: the "
                              "config's)")
    cmd.add_argument("--start-tier", metavar="TIER",
                     help="where objects are before the trace starts (default: the config's "
                          "default_tier, or the next colder if that is the hottest)")
    cmd.add_argument("--tick", type=_tick, default=60.0, metavar="DURATION",
                     help="trace time between plans: 30s, 5m, 1h (default: 1m, as the daemon)")
