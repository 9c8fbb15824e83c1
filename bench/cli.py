"""``tierstore bench``: registered in ``tierstore/cli.py`` by :func:`add_bench_commands`.

The arguments after ``bench io`` are fio's, parsed by :mod:`.jobfile` (argparse would reject
fio's ``--name=`` that starts each job), so this parser takes them as they are. Nothing heavy
is imported until a benchmark runs: every ``tierstore`` command builds this parser.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["HELP", "add_bench_commands"]

HELP = """\
usage: tierstore bench io [JOBFILE...] [--option=value...] [--name=NAME --option=value...]

fio's options and meanings (options before the first --name are global):
  --name=NAME            start a job                 --rw=read|write|randread|randwrite|randrw|rw
  --bs=4k                block size (k=1024)         --bsrange=4k-64k   random multiples of low
  --size=1g              bytes per job (split over   --nrfiles=N        files per job
                         its files)                  --rwmixread=70     reads in a mix (percent)
  --iodepth=N            I/Os in flight per job      --numjobs=N        processes per job
  --runtime=30           seconds (or 500ms, 2m)      --time_based       run until runtime
  --ramp_time=5          not measured at start       --direct=1         O_DIRECT (local files)
  --random_distribution=random|zipf:THETA            --fsync=N, --end_fsync=1 (local writes)
  --group_reporting      one result per group        --invalidate=0     keep the page cache
  --fadvise_hint=0       keep read-ahead on random I/O
  --stonewall            wait for earlier jobs to end; starts a new group (wait_for_previous)
  --new_group            start a new reporting group (jobs still run together)
  --randseed=N, --randrepeat=0, --unlink=1, --description=TEXT, --ioengine=tierstore|psync
  --output-format=normal|json|json+                  --output=FILE

tierstore's own (not fio's):
  --results=DIR          save the run (fio's JSON with the machine and the command) as a
                         JSON result in DIR (default: $TIERSTORE_RESULTS, else
                         ./bench-results); --results=none saves nothing. The path is printed
                         on stderr; 'tierstore bench report DIR/*.json' plots results.

where the files are:
  --filename=PATH[:PATH] local files; --directory=DIR holds NAME.JOB.FILE files otherwise
  --filename=s3://bucket/key   any fsspec URL, with --endpoint_url=http://host:port and
                         --storage_options='{"key": ..., "secret": ...}' (JSON)
  --filename=tier://key  a key through tierstore's read and write paths (--config=STORE.toml)
  --tier=NAME            a configured tier, through its Tier object (files under
                         .tierstore/bench/ on the tier, removed after the run)

Any other fio option is an error that names it.
"""


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
    io.set_defaults(run=_lazy("io_command", "run_io"))
    _add_command(
        kinds, "loader", "loader_options", "loader_bench", "run_loader",
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
        kinds, "ingest", "ingest", "ingest", "run_ingest",
        help="writing a dataset with tierstore's tar writer vs the peers' writers",
        description="Write the same samples into the same S3 bucket with tierstore's "
                    "write_tar_shards and, side by side, with WebDataset's, MosaicML "
                    "Streaming's and LitData's own writers (the [peers] extra): MB/s and "
                    "client CPU per GB, with ratios against WebDataset's.")
    _add_command(
        kinds, "catalog", "catalog_bench", "catalog_bench", "run_catalog",
        help="catalog lookups and access recording: SQLite vs PostgreSQL",
        description="Fill a SQLite and a PostgreSQL catalog to each size (--objects "
                    "10k,100k,1m) and measure lookups (get) and batched access recording "
                    "(record_access): throughput and p50/p99 latency side by side, as a "
                    "table and a JSON result.")
    _add_command(
        kinds, "locality", "locality_bench", "locality_bench", "run_locality",
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
    report.set_defaults(run=_lazy("report", "run_report"))


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
