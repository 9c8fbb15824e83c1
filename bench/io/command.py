"""``tierstore bench io``: plan the jobs, run them, print fio's output (normal or JSON)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from tierstore import __version__
from tierstore.cli.progress import interactive
from tierstore.redaction import redact

from ..common.errors import BenchError
from ..common.machine import DiskStats, block_device, describe_machine
from ..common.results import NO_RESULTS, result_document, save_and_say
from .engine import JobPlan
from .fio_results import fio_entries
from .jobfile import Invocation, parse_command_line
from .options import JobOptions
from .report_json import VERSION, fio_json, safe_options
from .report_text import format_header, format_results, num2str
from .runner import group_results, job_groups, plan_jobs, run_plans
from .target_local import LocalTarget

__all__ = ["run_io", "save_io_result"]

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

EXIT_USAGE = 2
_SECRET_ARGS = ("storage_options", "storage-options")
ENGINE = ("local files: one thread per in-flight I/O calling os.preadv/pwritev (O_DIRECT with "
          "direct=1); fsspec URLs, tier:// keys and tiers: asyncio, iodepth requests in flight")


def _with_config(options_list: list[JobOptions], config: str | None) -> list[JobOptions]:
    if not config:
        return options_list
    return [o if o.config else dataclasses.replace(o, config=config) for o in options_list]


def _safe_command(args: Sequence[str], config: str | None) -> str:
    """The command as typed, with credentials hidden (storage options, URLs)."""
    shown = ["tierstore", *(["--config", config] if config else []), "bench", "io"]
    secret_next = False
    for arg in args:
        name, sep, value = arg.partition("=")
        if secret_next or (sep and name.lstrip("-") in _SECRET_ARGS):
            text = value if sep and not secret_next else arg
            hidden = safe_options({"storage_options": text})["storage_options"]
            arg = f"{name}={hidden}" if sep and not secret_next else hidden
        secret_next = not sep and arg.lstrip("-") in _SECRET_ARGS
        shown.append(redact(arg))
    return shlex.join(shown)


class _Ticker:
    """fio's status line on a terminal: jobs, read and write rates, elapsed and ETA."""

    def __init__(self, runtime: float | None, jobs: int):
        self.runtime, self.jobs = runtime, jobs
        self.previous: list[int] = []
        self.then = 0.0

    def __call__(self, progress: Sequence[int], seconds: float) -> None:
        now = list(progress)
        if seconds < self.then or len(now) != len(self.previous):  # a new phase (stonewall)
            self.previous, self.then = [], 0.0
        previous = self.previous or [0] * len(now)
        span = max(seconds - self.then, 1e-9)
        reads = sum(now[0::2]) - sum(previous[0::2])
        writes = sum(now[1::2]) - sum(previous[1::2])
        self.previous, self.then = now, seconds
        eta = f"[eta {max(0, int(self.runtime - seconds))}s]" if self.runtime else ""
        sys.stderr.write(f"\rJobs: {self.jobs}: [r={num2str(reads / span, pow2=True)}B/s,"
                         f"w={num2str(writes / span, pow2=True)}B/s][{int(seconds)}s]{eta}  ")
        sys.stderr.flush()

    @staticmethod
    def done() -> None:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def run_io(args: argparse.Namespace) -> int:
    """``tierstore bench io``: run fio's jobs and print fio's output."""
    config = getattr(args, "config", None)
    try:
        invocation = parse_command_line(args.fio_args)
        if invocation.help or invocation.version:
            print(HELP if invocation.help else VERSION, end="" if invocation.help else "\n")
            return 0
        if getattr(args, "json", False) and invocation.output_format == "normal":
            invocation.output_format = "json"  # `tierstore --json bench io ...`
        options_list = _with_config(invocation.job_options(), config)
        plans = plan_jobs(options_list)
    except BenchError as exc:
        print(f"tierstore: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    command = _safe_command(args.fio_args, config)
    with contextlib.ExitStack() as stack:
        out = (stack.enter_context(open(invocation.output, "w", encoding="utf-8"))
               if invocation.output else sys.stdout)
        doc, disks = _run(invocation, options_list, plans, out, command)
    save_io_result(doc, command, disks, invocation.results)
    return 0


def save_io_result(doc: dict[str, Any], command: str, disks: Sequence[str],
                   folder: str | None) -> Path | None:
    """Save a run's fio document, with its flat entries, machine and command, under the
    results folder (``folder``, else ``$TIERSTORE_RESULTS``, else ``./bench-results``;
    ``none`` saves nothing); say where on stderr."""
    if folder is not None and folder.lower() in NO_RESULTS:
        return None
    return save_and_say(result_document("io", fio_entries(doc), command=command,
                                        disks=disks, fio=doc), folder)


def _run(invocation: Invocation, options_list: list[JobOptions], plans: list[JobPlan],
         out: IO[str], command: str) -> tuple[dict[str, Any], list[str]]:
    text = invocation.output_format == "normal"
    disks = [d for p in plans if isinstance(p.target, LocalTarget)
             for d in map(block_device, p.target.paths) if d]
    if text:
        out.write(format_header(options_list, len(plans),
                                [g for g, _ in job_groups(options_list)]))
        out.flush()
    longest = max((o.runtime or 0.0 for o in options_list), default=0.0)
    ticker = _Ticker(longest or None, len(plans)) \
        if interactive() and out is sys.stdout else None
    disk_stats = DiskStats(disks)
    try:
        run = run_plans(plans, ticker)
    finally:
        if ticker is not None:
            ticker.done()
    disk_util = disk_stats.report()
    grouped = group_results(run)
    extra = {"version": __version__, "command": command, "engine": ENGINE,
             "jobs": [{"jobname": p.options.name, "jobnum": p.jobnum,
                       "target": p.target.describe()} for p in plans],
             "machine": describe_machine(disks)}
    doc = fio_json(grouped, global_options=invocation.global_options, disk_util=disk_util,
                   tierstore=extra, plus=invocation.output_format == "json+")
    if text:
        out.write(format_results(grouped, disk_util))
    else:
        out.write(json.dumps(doc, indent=2) + "\n")
    return doc, disks
