"""``tierstore simulate``: replay an access trace against the policies (changes nothing)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..carbon import MOVE_JOULES_PER_BYTE, CarbonSettings
from ..config import Config, TierClass
from ..policies.base import format_duration
from ..policies.carbonsim import CarbonComparison, compare
from ..policies.config import PolicyConfig
from ..policies.replay import Result
from ..policies.simulate import CONFIGURED, LRU, POLICIES, Simulation, check_start, simulation_tiers
from ..units import DAY, parse_size
from .base import argument, command, duration, positive_duration, size
from .output import human, print_json, table

__all__ = ["add_simulate_command"]


def _count(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def format_results(sim: Simulation, results: Sequence[Result]) -> str:
    """A heading on the trace and tiers, then one row per policy: the share of reads and of
    bytes each tier served (tiers that served nothing left out), moves and bytes moved."""

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
        table(headers, rows, right=frozenset(range(1, len(headers)))),
        "",
        "READS, BYTES: the share of reads and of bytes each tier served; MOVED: bytes copied",
    ]
    lines += [f"{r.policy}: {r.description}" for r in results if r.policy in (CONFIGURED, LRU)]
    return "\n".join(lines)


@contextmanager
def _progress(total: int) -> Iterator[Callable[[str, int], None] | None]:
    """``advance(policy, reads)`` drawing a bar on a terminal; None elsewhere."""
    from .progress import interactive

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


def _simulation(args: argparse.Namespace) -> tuple[Simulation, Config]:
    from tierstore.config import load_config

    from ..policies.trace import read_trace

    config = load_config(args.config)
    capacities = {cls.name.lower(): size for cls in TierClass
                  if (size := getattr(args, f"{cls.name.lower()}_capacity")) is not None}
    tiers = simulation_tiers(config, capacities)
    start = args.start_tier
    if start is None:
        start = config.default_tier if config.default_tier != tiers[0].name else \
            next((t.name for t in tiers[1:]), config.default_tier)
    check_start(tiers, start)  # before reading what may be a long trace
    described = (f"the [policies] of {config.source}" if config.policies
                 else "tierstore's default settings")
    return Simulation(trace=read_trace(args.trace), tiers=tiers,
                      config=PolicyConfig.from_config(config), start=start, tick=args.tick,
                      configured=described), config


def format_carbon(sim: Simulation, carbon: CarbonComparison) -> str:
    """The emissions of the configured policies' deferrable moves, three ways, and how far
    carbon-aware is from the optimum."""
    base = carbon.outcome("immediate").grams
    rows = []
    for o in carbon.outcomes:
        change = "" if o.strategy == "immediate" or not base else f"{o.grams / base - 1:+.1%}"
        met = "-" if o.met is None else f"{o.met:,}/{o.moves:,}"
        wait = "-" if o.mean_delay is None else format_duration(o.mean_delay)
        rows.append([o.strategy, f"{o.grams:,.1f}", change, met, wait])
    rate = "unlimited" if carbon.rate is None else f"{human(carbon.rate)}/s per pair of tiers"
    shifted = "; the trace's times moved to begin where it begins" if carbon.offset else ""
    return "\n".join([
        f"carbon ({carbon.source}{shifted}): the {_count(carbon.deferrable, 'deferrable move')}"
        f" ({human(carbon.deferrable_bytes)}) of `{CONFIGURED}`, due "
        f"{format_duration(carbon.max_deferral)} after first planned; bandwidth {rate}; "
        f"{_count(carbon.urgent, 'urgent move')} ({human(carbon.urgent_bytes)}) run at once",
        "",
        table(["SCHEDULE", "gCO2e (est.)", "VS IMMEDIATE", "DEADLINES MET", "MEAN WAIT"], rows,
              right=frozenset({1, 2, 3, 4})),
        "",
        f"carbon-aware is {carbon.gap:.1%} above the offline optimum (every move known in "
        "advance, bytes free to split across hours: a lower bound); estimates at "
        f"{MOVE_JOULES_PER_BYTE * 1e9 / 3.6e6:.4g} kWh per GB moved",
    ])


def _cmd_simulate(args: argparse.Namespace) -> int:

    sim, config = _simulation(args)
    forecast = None
    if args.intensity is not None:  # read before the replays: a bad file fails at once
        from tierstore.carbon import ForecastFile

        forecast = ForecastFile(args.intensity).forecast(sim.trace.start, sim.trace.end,
                                                        config.site)
    policies = args.policy or list(POLICIES)
    with _progress(len(sim.trace.reads) * len(policies)) as advance:
        results = sim.run(policies, advance)
    carbon = None
    if forecast is not None:
        settings = CarbonSettings.from_config(config)
        deferral = args.max_deferral if args.max_deferral is not None else (
            settings.max_deferral if settings is not None else DAY)
        carbon = compare(sim, forecast, max_deferral=deferral, rate=args.bandwidth)
    if args.json:
        print_json({**sim.to_json(results),
                    **({"carbon": carbon.to_json()} if carbon is not None else {})})
    else:
        print(format_results(sim, results))
        if carbon is not None:
            print()
            print(format_carbon(sim, carbon))
    return 0


def add_simulate_command(sub: Any) -> None:
    """Register ``tierstore simulate --trace FILE [--policy P ...]`` on the CLI's
    subparsers."""

    cmd = command(sub, "simulate", _cmd_simulate, "replay an access trace against the "
                  "policies and compare hit rates per tier (changes nothing)", data=True)
    cmd.add_argument("--trace", required=True, metavar="FILE",
                     help="reads as CSV (time,key,bytes) or JSON lines; .gz is read too")
    cmd.add_argument("--policy", action="append", choices=POLICIES, metavar="POLICY",
                     help=f"a policy to replay; repeat to compare ({', '.join(POLICIES)}; "
                          "default: all)")
    for cls in TierClass:
        name = cls.name.lower()
        cmd.add_argument(f"--{name}-capacity", type=size, metavar="SIZE",
                         help=f"capacity of the {name} tiers, e.g. 10GiB (default: the "
                              "config's)")
    cmd.add_argument("--start-tier", metavar="TIER",
                     help="where objects are before the trace starts (default: the config's "
                          "default_tier, or the next colder if that is the hottest)")
    cmd.add_argument("--tick", type=positive_duration, default=60.0, metavar="DURATION",
                     help="trace time between plans: 30s, 5m, 1h (default: 1m, as the daemon)")
    cmd.add_argument("--intensity", metavar="FILE",
                     help="a carbon-intensity series (CSV time,gco2e_per_kwh[,site] or JSON): "
                          "compare the emissions of the configured policies' deferrable moves "
                          "run at once, carbon-aware and at the offline optimum")
    cmd.add_argument("--bandwidth", type=argument(_per_second, positive=True), metavar="RATE",
                     help="with --intensity: bytes/s per pair of tiers, as the daemon's "
                          "(default: unlimited)")
    cmd.add_argument("--max-deferral", type=duration, metavar="DURATION",
                     help="with --intensity: how long a deferrable move may wait (default: "
                          "the config's [carbon] max_deferral, else 1d)")


def _per_second(text: str) -> int:
    return parse_size(text.removesuffix("/s"))
