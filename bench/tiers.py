"""``tierstore bench tiers``: a short standard survey of every configured tier.

Each tier runs the same small matrix of fio jobs through its Tier object (the ``--tier NAME``
target of ``tierstore bench io``): sequential reads and writes of 1 MiB blocks, random reads
and writes of 4 KiB and 64 KiB blocks, each at depth 1 and 16, for ``--runtime`` each. The
file the reads use is laid out once per tier and removed at the end, with every object the
writes created. The result is one table, and one result document (``benchmark: "tiers"``, its
entries those of ``tierstore bench io``, the jobs as one fio document under ``fio``) saved in
the results folder for ``tierstore bench report``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import TimeElapsedColumn
from rich.table import Table

from tierstore.cli.progress import Steps
from tierstore.config import Config, load_config

from .common.errors import BenchError
from .common.machine import block_device, describe_machine, nearest_existing
from .common.results import result_document, save_and_say, write_json
from .common.units import parse_size, parse_time
from .io.command import ENGINE
from .io.engine import JobPlan, run_job
from .io.fio_results import bs_text, fio_entries
from .io.options import RW_MODES, job_options
from .io.report_json import fio_json
from .io.report_text import num2str
from .io.runner import plan_jobs

__all__ = ["Cell", "run_tiers", "standard_matrix", "survey"]

EXIT_USAGE = 2
SURVEY_FILE = "survey.dat"
SEQUENTIAL_BS = (2**20,)
RANDOM_BS = (4096, 65536)


@dataclass(frozen=True)
class Cell:
    """One test of the matrix."""

    rw: str
    bs: int
    iodepth: int

    @property
    def label(self) -> str:
        return f"{self.rw} {bs_text(self.bs)} qd{self.iodepth}"

    def job_name(self, tier: str) -> str:
        return f"{tier}-{self.rw}-{bs_text(self.bs)}-qd{self.iodepth}"


def standard_matrix(rws: Sequence[str], depths: Sequence[int],
                    block_sizes: Sequence[int] | None = None) -> list[Cell]:
    """The survey's tests: every ``rw`` at each depth, with ``block_sizes`` if given, else
    1 MiB for sequential tests and 4 KiB and 64 KiB for random ones."""
    cells = []
    for rw in rws:
        sizes = block_sizes or (SEQUENTIAL_BS if RW_MODES[rw][0] else RANDOM_BS)
        cells += [Cell(rw, bs, depth) for bs in sizes for depth in depths]
    return cells


def _list(text: str, option: str, parse: Callable[[str], Any]) -> list[Any]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise BenchError(f"--{option}={text!r}: expected a comma-separated list")
    return [parse(item) for item in items]


def _rw(text: str) -> str:
    if text not in RW_MODES:
        raise BenchError(f"--rw: {text!r}: expected some of {', '.join(RW_MODES)}")
    return text


def _depth(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise BenchError(f"--iodepth: {text!r}: expected positive integers")
    return int(text)


# -- running ------------------------------------------------------------------------------


def _options(cell: Cell, tier: str, config: str | None, size: int, runtime: float
             ) -> dict[str, str]:
    raw = {"tier": tier, "rw": cell.rw, "bs": bs_text(cell.bs), "iodepth": str(cell.iodepth),
           "size": str(size), "runtime": f"{round(runtime * 1000)}ms", "time_based": "1",
           "filename": SURVEY_FILE}
    if config:
        raw["config"] = config
    return raw


def _run_cell(plan: JobPlan) -> Any:
    return asyncio.run(run_job(plan))


def _cleanup(plans: Sequence[JobPlan]) -> None:
    if plans:
        asyncio.run(plans[0].target.cleanup())


def _tier_jobs(tier: str, cells: Sequence[Cell], *, config: str | None, size: int,
               runtime: float, advance: Callable[[str], None]
               ) -> Iterator[tuple[JobPlan, Any]]:
    """Run every cell on one tier; (plan, result) of each. The read file is laid out by the
    first job that reads and removed after the last cell."""
    plans: list[JobPlan] = []
    try:
        for cell in cells:
            advance(f"{tier}: {cell.label}")
            raw = _options(cell, tier, config, size, runtime)
            (plan,) = plan_jobs([job_options(cell.job_name(tier), raw)])
            plans.append(plan)
            yield plan, _run_cell(plan)
    finally:
        _cleanup(plans)


def survey(config: Config, config_path: str | None, tiers: Sequence[str],
           cells: Sequence[Cell], *, size: int, runtime: float,
           advance: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run the matrix on each tier; the combined fio document (one job per tier and cell)."""
    results, targets = [], []
    for tier in tiers:
        for plan, result in _tier_jobs(tier, cells, config=config_path, size=size,
                                       runtime=runtime, advance=advance):
            results.append(result)
            targets.append({"jobname": plan.options.name, "jobnum": 0,
                            "target": plan.target.describe()})
    extra = {"engine": ENGINE, "jobs": targets, "machine": describe_machine(),
             "config": config.source}
    return fio_json(results, global_options={}, disk_util=[], tierstore=extra)


# -- the command --------------------------------------------------------------------------


def _entries(doc: dict[str, Any], config: Config) -> list[dict[str, Any]]:
    entries = fio_entries(doc)
    for entry in entries:
        tier = config.tiers.get(str(entry.get("tier")))
        if tier is not None:
            entry["class"] = tier.tier_class.name.lower()
    return entries


def _latency(ns: float | None) -> str:
    if not ns:
        return "-"
    if ns >= 1e6:
        return f"{ns / 1e6:.3g} ms"
    return f"{ns / 1e3:.3g} us"


def format_table(entries: Sequence[dict[str, Any]], console: Console) -> None:
    """One table: a section per tier, a row per test."""
    table = Table(box=box.SIMPLE_HEAD, title="tierstore bench tiers", title_justify="left")
    for name, justify in (("tier", "left"), ("test", "left"), ("bandwidth", "right"),
                          ("IOPS", "right"), ("clat p50", "right"), ("clat p99", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    previous = None
    for entry in entries:
        tier = str(entry.get("tier"))
        if previous is not None and tier != previous:
            table.add_section()
        test = f"{entry['rw']} {entry['bs']} qd{entry['iodepth']}"
        table.add_row(tier if tier != previous else "", test,
                      num2str(entry["bw_bytes"], pow2=True, unit="B/s"),
                      num2str(entry["iops"], pow2=False),
                      _latency(entry.get("clat_p50_ns")), _latency(entry.get("clat_p99_ns")))
        previous = tier
    console.print(table)


def _parse(args: argparse.Namespace, config: Config) -> tuple[list[str], list[Cell], int,
                                                              float]:
    tiers = list(args.tiers or config.tiers)
    for name in tiers:
        if name not in config.tiers:
            raise BenchError(f"--tier {name!r}: no such tier (configured: "
                             f"{', '.join(config.tiers)})")
    size = parse_size(args.size, "--size")
    runtime = parse_time(args.runtime, "--runtime")
    if runtime <= 0:
        raise BenchError(f"--runtime={args.runtime!r}: expected a positive time")
    block_sizes = _list(args.bs, "bs", lambda s: parse_size(s, "--bs")) if args.bs else None
    cells = standard_matrix(_list(args.rw, "rw", _rw), _list(args.iodepth, "iodepth", _depth),
                            block_sizes)
    if size < max(c.bs for c in cells):
        raise BenchError(f"--size={args.size}: smaller than the largest block size")
    return tiers, cells, size, runtime


def shared_devices(config: Config, tiers: Sequence[str]) -> list[list[str]]:
    """Groups of two or more of the local ``tiers`` whose folders lie on one disk (its
    partitions together; where the disk cannot be told, one filesystem), a tier folder not
    made yet counted where it would be made."""
    from tierstore.tier import Tier

    by_device: dict[str | int, list[str]] = {}
    for name in tiers:
        tier = Tier(config.tiers[name])
        if tier.protocol == "file":
            disk = block_device(tier.root) or os.stat(nearest_existing(tier.root)).st_dev
            by_device.setdefault(disk, []).append(name)
    return [group for group in by_device.values() if len(group) > 1]


def run_tiers(args: argparse.Namespace) -> int:
    """``tierstore bench tiers``: survey each tier, print one table, save the result."""
    config_path = getattr(args, "config", None)
    config = load_config(config_path)
    try:
        tiers, cells, size, runtime = _parse(args, config)
    except BenchError as exc:
        print(f"tierstore: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    shared = shared_devices(config, tiers)
    for group in shared:
        print(f"tierstore: warning: tiers {', '.join(group)} lie on one device: their figures "
              "are the same disk's, and they compete for it when used together",
              file=sys.stderr)
    with Steps(TimeElapsedColumn(), label_width=28) as bar:
        bar.task("tiers", len(tiers) * len(cells))
        begun = itertools.count()  # each cell is announced as it starts: count the one before
        doc = survey(config, config_path, tiers, cells, size=size, runtime=runtime,
                     advance=lambda cell: bar.advance(1 if next(begun) else 0, label=cell))
    document = result_document(
        "tiers", _entries(doc, config), disks=(), config=config.source,
        tiers={name: config.tiers[name].tier_class.name.lower() for name in tiers},
        matrix={"size": size, "runtime_s": runtime, "tests": [c.label for c in cells]},
        shared_devices=shared, fio=doc)
    if args.json_file != "-":  # with --json -, the JSON instead of the table
        if getattr(args, "json", False):
            write_json(document, "-")
        else:
            format_table(document["results"], Console())
    write_json(document, args.json_file)
    save_and_say(document, args.results)
    return 0
