"""``tierstore bench``: registered in ``tierstore/cli/__init__.py`` by
:func:`add_bench_commands`.

The arguments after ``bench io`` are fio's, parsed by :mod:`.io.jobfile` (argparse would reject
fio's ``--name=`` that starts each job), so this parser takes them as they are (its help is
:mod:`.io.command`'s). Nothing heavy is imported until a benchmark runs: every ``tierstore``
command builds this parser. A benchmark's module is named by its path in this package
(``"loader.bench"``), imported when the benchmark runs.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["add_bench_commands"]


def _lazy(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A command's ``run``: ``function`` of this package's ``module``, imported when the
    command runs (not when the parser is built)."""

    def run(args: argparse.Namespace) -> int:
        run_command: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(f".{module}", __package__), function)
        return run_command(args)

    return run


def add_bench_commands(sub: Any) -> None:
    """Add ``tierstore bench`` and its benchmarks to the top-level subcommands."""
    bench = sub.add_parser("bench", help="fio-like benchmarks of tiers and read paths",
                           description="fio-like benchmarks of tiers and read paths")
    kinds = bench.add_subparsers(metavar="BENCHMARK", required=True)
    io = kinds.add_parser("io", help="fio's jobs over local files, fsspec URLs, tier:// "
                                     "keys and tiers", add_help=False, prefix_chars="+",
                          usage="tierstore bench io [JOBFILE...] [--option=value...]")
    io.add_argument("fio_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    io.set_defaults(run=_lazy("io.command", "run_io"))
    _add_command(
        kinds, "loader", "loader.options", "loader.bench", "run_loader",
        help="accelerator utilisation of tierstore's loader vs plain DataLoaders",
        description="MLPerf Storage-like: generate a dataset in a tier, emulate the "
                    "accelerator's compute per batch, run several epochs of TierLoader and of "
                    "a plain DataLoader reading through s3fs and through fsspec's filecache; "
                    "AU, samples/s, MB/s, waits, hit rate per tier and peak memory, as a "
                    "table, a JSON result and a plot.")
    _add_report_command(kinds)
    _add_tiers_command(kinds)
    _add_command(
        kinds, "migrate", "migrate", "migrate", "run_migrate",
        help="moving objects between two tiers vs a plain fsspec copy",
        description="Move a set of objects between two tiers with the daemon's executor "
                    "(verified moves) and copy the same bytes with plain fsspec, in "
                    "interleaved rounds; medians and their ratio, as a table and a result.")
    _add_command(
        kinds, "put", "put", "put", "run_put",
        help="many small files into a tier: put_many and put vs a plain fsspec copy",
        description="Put the same small files into a tier with tierstore's put_many "
                    "(batches), with one put each, and with plain fsspec copies (made "
                    "durable on a local folder), in interleaved rounds; objects per second, "
                    "client CPU per object and the ratios, as a table and a result.")
    _add_command(
        kinds, "ingest", "ingest", "ingest", "run_ingest",
        help="writing a dataset with tierstore's tar writer vs the peers' writers",
        description="Write the same samples into the same S3 bucket with tierstore's "
                    "write_tar_shards and, side by side, with WebDataset's, MosaicML "
                    "Streaming's and LitData's own writers (the [peers] extra): MB/s and "
                    "client CPU per GB, with ratios against WebDataset's.")
    _add_command(
        kinds, "catalog", "catalog.options", "catalog.bench", "run_catalog",
        help="catalog lookups and access recording: SQLite vs PostgreSQL",
        description="Fill a SQLite and a PostgreSQL catalog to each size (--objects "
                    "10k,100k,1m) and measure lookups (get) and batched access recording "
                    "(record_access): throughput and p50/p99 latency side by side, as a "
                    "table and a JSON result.")
    _add_command(
        kinds, "locality", "locality.options", "locality.bench", "run_locality",
        help="replica selection over three sites at a network distance",
        description="Three sites at about 1, 10 and 50 ms (network namespaces with a packet "
                    "delay wire, an S3 server each; needs root): read latency p50/p99 and "
                    "throughput of tierstore's selection vs a random replica vs always the "
                    "home site; one site spiking with hedging on and off; a site killed "
                    "mid-run. A table, --json FILE and a result in the results folder.")


def _add_command(kinds: Any, name: str, options: str, module: str, function: str, *,
                 help: str, description: str) -> None:
    """Benchmark ``name``: its options from ``add_<name>_arguments`` of this package's
    module ``options`` (light to import: no torch until a command runs), its run from
    ``function`` of ``module``, imported when it runs."""
    parser = kinds.add_parser(name, help=help, description=description)
    add_arguments = getattr(importlib.import_module(f".{options}", __package__),
                            f"add_{name}_arguments")
    add_arguments(parser)
    parser.set_defaults(run=_lazy(module, function))


def _add_report_command(kinds: Any) -> None:
    report = kinds.add_parser(
        "report", help="plots (PNG) and a markdown table from benchmark results",
        description="Compare benchmark results: bandwidth and IOPS per tier or target and "
                    "block size, latency percentile curves, and a markdown table (report.md) "
                    "of every result. Reads the JSON results tierstore's benchmarks save, and "
                    "fio's own --output-format=json.")
    report.add_argument("results", nargs="+", metavar="RESULT",
                        help="result JSON files (tierstore's, or fio's JSON output)")
    report.add_argument("--out", metavar="DIR", default="bench-report",
                        help="folder for report.md and the plots (default: ./bench-report)")
    report.set_defaults(run=_lazy("report.command", "run_report"))


def _add_tiers_command(kinds: Any) -> None:
    tiers = kinds.add_parser(
        "tiers", help="a short survey of every configured tier",
        description="Sequential and random reads and writes at a few block sizes and depths "
                    "over every configured tier (through its Tier object, files under "
                    ".tierstore/bench/, removed afterwards), as one table; the result is "
                    "saved in the results folder.")
    tiers.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                       help="the store's config file (default: as for every command)")
    tiers.add_argument("--tier", action="append", metavar="NAME", dest="tiers",
                       help="survey only this tier (repeatable; default: every tier)")
    tiers.add_argument("--size", default="64m",
                       help="bytes of the file each tier reads (default: 64m)")
    tiers.add_argument("--runtime", default="1s",
                       help="seconds per test, fio's syntax (default: 1s)")
    tiers.add_argument("--bs", metavar="LIST", help="block sizes of every test (default: "
                       "1m for sequential tests, 4k and 64k for random ones)")
    tiers.add_argument("--iodepth", metavar="LIST", default="1,16",
                       help="depths of every test (default: 1,16)")
    tiers.add_argument("--rw", metavar="LIST", default="read,write,randread,randwrite",
                       help="which tests (default: read,write,randread,randwrite)")
    tiers.add_argument("--json", metavar="FILE", dest="json_file",
                       help="also write the result document to FILE ('-': stdout)")
    tiers.add_argument("--results", metavar="DIR", help="results folder (default: "
                       "$TIERSTORE_RESULTS, else ./bench-results; 'none': do not save)")
    tiers.set_defaults(run=_lazy("tiers", "run_tiers"))
