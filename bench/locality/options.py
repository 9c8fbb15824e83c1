"""The options of ``tierstore bench locality``.

Kept free of heavy imports: every ``tierstore`` command builds the parser."""

from __future__ import annotations

import argparse

__all__ = ["SITES", "add_locality_arguments"]

SITES = (("near", "r1/z1"), ("mid", "r1/z2"), ("far", "r2/z1"))


def add_locality_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--objects", type=int, default=16, help="objects (default: 16)")
    cmd.add_argument("--size", default="64KiB", help="bytes per object (default: 64KiB)")
    cmd.add_argument("--reads", type=int, default=300,
                     help="reads per strategy and phase (default: 300)")
    cmd.add_argument("--rtt", default="1,10,50", metavar="MS,MS,MS",
                     help="added round-trip time of the near, mid and far sites "
                          "(default: 1,10,50)")
    cmd.add_argument("--home", choices=[name for name, _ in SITES], default="mid",
                     help="the site the data is written to, which 'home' always reads "
                          "(default: mid)")
    cmd.add_argument("--spike-ms", type=float, default=300.0,
                     help="the nearest site's round-trip time while it spikes (default: 300)")
    cmd.add_argument("--spike-on", type=float, default=0.3,
                     help="seconds each spike lasts, on average (default: 0.3)")
    cmd.add_argument("--spike-off", type=float, default=0.7,
                     help="seconds between spikes, on average (default: 0.7)")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--json", metavar="FILE", dest="json_file",
                     help="also write the result document to FILE ('-': stdout)")
    cmd.add_argument("--results", metavar="DIR", help="results folder (default: "
                     "$TIERSTORE_RESULTS, else ./bench-results; 'none': do not save)")
