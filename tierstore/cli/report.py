"""``tierstore report energy``: per day, what the store's storage, the daemon's moves and the
accelerators its loaders kept waiting cost in energy and emissions (estimates, from the
store's ledger: :class:`~tierstore.energy.EnergyLedger`)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from ..config import load_config
from ..energy import JOULES_PER_KWH, EnergyDay, EnergyLedger
from ..errors import require
from .base import CommandError, command, positive_duration
from .output import print_json, table

__all__ = ["add_report_command"]


def format_days(days: Sequence[EnergyDay]) -> str:
    """One row per day: kWh per tier held, of moves, of accelerators waiting for data, in
    all, and gCO2e."""
    tiers = sorted({tier for day in days for tier in day.storage_joules})
    rows = [[d.day, *(_kwh(d.storage_joules.get(t, 0.0)) for t in tiers), _kwh(d.move_joules),
             _kwh(d.idle_joules), _kwh(d.joules), f"{d.grams_co2e:,.1f}"] for d in days]
    headers = ["DAY", *(f"{t.upper()} kWh" for t in tiers), "MOVES kWh", "IDLE kWh",
               "ALL kWh", "gCO2e"]
    return table(headers, rows, right=frozenset(range(1, len(headers)))) + \
        "\nestimates: the [energy] model's figures over the daemon's ledger (README: Energy)"


def _kwh(joules: float) -> str:
    return f"{joules / JOULES_PER_KWH:,.4f}"


def plot_days(days: Sequence[EnergyDay], path: str) -> None:
    """A bar per day, stacked by tier held and moves, in kWh."""
    require("matplotlib", part="report energy --png", package="tierstore", extra="bench")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tiers = sorted({tier for day in days for tier in day.storage_joules})
    names = [d.day for d in days]
    figure, axes = plt.subplots(figsize=(max(6.0, 0.6 * len(days) + 2), 4))
    bottom = [0.0] * len(days)
    for label, values in [*((t, [d.storage_joules.get(t, 0.0) for d in days]) for t in tiers),
                          ("moves", [d.move_joules for d in days]),
                          ("accelerators waiting", [d.idle_joules for d in days])]:
        kwh = [v / JOULES_PER_KWH for v in values]
        axes.bar(names, kwh, bottom=bottom, label=label)
        bottom = [b + k for b, k in zip(bottom, kwh, strict=True)]
    axes.set_ylabel("kWh (estimated)")
    axes.set_title("tierstore: storage and moves, per day (estimates)")
    axes.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _cmd_energy(args: argparse.Namespace) -> int:
    ledger = EnergyLedger.of(load_config(args.config))
    if not ledger.path.exists():
        raise CommandError(f"no energy ledger at {ledger.path}: `tierstore daemon` writes one "
                           "line per cycle")
    days = ledger.days(since=time.time() - args.last if args.last else None)
    if args.png:
        plot_days(days, args.png)
    if args.json:
        print_json([day.as_dict() for day in days])
    else:
        print(format_days(days))
    return 0


def add_report_command(sub: Any) -> None:
    report = command(sub, "report", lambda _: 0, "what the store costs, from its records")
    kinds = report.add_subparsers(metavar="REPORT", required=True)
    energy = command(kinds, "energy", _cmd_energy, "per day: the energy of storage per tier, "
                     "of the daemon's moves and of accelerators waiting for data, and their "
                     "emissions (estimates)", data=True)
    energy.add_argument("--last", type=positive_duration, metavar="DURATION",
                        help="only the last DURATION, e.g. 7d (default: all)")
    energy.add_argument("--png", metavar="FILE", help="also plot the days to FILE")
