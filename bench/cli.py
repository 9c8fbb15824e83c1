"""``tierstore bench``: registered in ``tierstore/cli.py`` by :func:`add_bench_commands`.

The arguments after ``bench io`` are fio's, parsed by :mod:`.jobfile` (argparse would reject
fio's ``--name=`` that starts each job), so this parser takes them as they are. Nothing heavy
is imported until a benchmark runs: every ``tierstore`` command builds this parser.
"""

from __future__ import annotations

import argparse
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
  --randseed=N, --randrepeat=0, --unlink=1, --description=TEXT, --ioengine=tierstore|psync
  --output-format=normal|json|json+                  --output=FILE

where the files are:
  --filename=PATH[:PATH] local files; --directory=DIR holds NAME.JOB.FILE files otherwise
  --filename=s3://bucket/key   any fsspec URL, with --endpoint_url=http://host:port and
                         --storage_options='{"key": ..., "secret": ...}' (JSON)
  --filename=tier://key  a key through tierstore's read and write paths (--config=STORE.toml)
  --tier=NAME            a configured tier, through its Tier object (files under
                         .tierstore/bench/ on the tier, removed after the run)

Any other fio option is an error that names it.
"""


def add_bench_commands(sub: Any) -> None:
    """Add ``tierstore bench`` and its benchmarks to the top-level subcommands."""
    bench = sub.add_parser("bench", help="fio-like benchmarks of tiers and read paths",
                           description="fio-like benchmarks of tiers and read paths")
    kinds = bench.add_subparsers(metavar="BENCHMARK", required=True)
    io = kinds.add_parser("io", help="fio's jobs over local files, fsspec URLs, tier:// "
                                     "keys and tiers", add_help=False, prefix_chars="+",
                          usage="tierstore bench io [JOBFILE...] [--option=value...]")
    io.add_argument("fio_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    io.set_defaults(run=_run_io)


def _run_io(args: argparse.Namespace) -> int:
    from .io_command import run_io

    return run_io(args)


