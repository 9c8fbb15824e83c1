"""``tierstore bench put``: many small files into a tier, by tierstore and by plain fsspec.

``--count`` local files of ``--size`` bytes (in 8 folders) are made once. Each round then makes
three timed passes over them, in an order that alternates between rounds:

* ``put_many``: :meth:`Store.put_many <tierstore.store.Store.put_many>`, what ``tierstore put``
  does with a folder: batches of small objects, each one catalog transaction to begin and one
  durable commit, written on a local folder in a few threads;
* ``put``: one :meth:`Store.put <tierstore.store.Store.put>` per file, ``--jobs`` in flight
  (how a program that knows no batch writes them);
* ``fsspec``: each file copied to the tier by its own fsspec filesystem (``put_file`` or
  ``cp_file``), ``--jobs`` in flight, made durable where it lands on a local folder as a
  careful user would (the file fsynced, then its folder; not the folders above it, which
  tierstore syncs too, once per batch); no catalog and no verification.

Each pass writes under fresh names; what it wrote is removed after it, untimed. Throughput is
objects per second over a pass's wall time; the median over the rounds is reported per path,
with this process's CPU milliseconds per object, and ``ratio``: each tierstore path over the
plain copy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tierstore.cli.progress import Steps, bounded
from tierstore.config import Config, TierClass, TierConfig
from tierstore.errors import ConfigError
from tierstore.redaction import redact
from tierstore.store import Store
from tierstore.tier import Tier
from tierstore.units import parse_size

from .common.errors import BenchError
from .common.results import result_document, save_and_say, write_json
from .migrate import (
    BASE_DIR,
    EXIT_USAGE,
    Timings,
    _copy,
    _Stopwatch,
    add_store_arguments,
    bench_config,
    check_store_arguments,
)

__all__ = ["add_put_arguments", "measure", "run_put"]

PATHS = ("put_many", "put", "fsspec")
KEY_PREFIX = "bench-put"
FOLDERS = 8


async def measure(config: Config, tier: str, files: Sequence[Path], rounds: int, jobs: int,
                  *, steps: Steps | None = None) -> Timings:
    """The rounds' timings, under ``(tier, path)``."""
    store = await Store.connect(config)
    run = uuid.uuid4().hex[:8]
    dest = store.tier(tier)
    timings = Timings()
    names = [f"{n % FOLDERS}/{path.name}" for n, path in enumerate(files)]
    # the files' folder as a tier of its own, for the plain copies: its fsspec reads them
    source = Tier(TierConfig(name="bench-files", tier_class=TierClass.COLD,
                             url=files[0].parent.as_uri()))

    async def put_many(keys: list[str]) -> None:
        await store.put_many(list(zip(keys, files, strict=True)), tier=tier, jobs=jobs)

    async def put(keys: list[str]) -> None:
        await bounded(list(zip(keys, files, strict=True)),
                      lambda one: store.put(*one, tier=tier), jobs)

    async def fsspec(paths: list[str]) -> None:
        async def one(pair: tuple[Path, str]) -> None:
            await _copy(source, pair[0].name, dest, pair[1])
            if dest.protocol == "file" and dest.config.fsync:
                await asyncio.to_thread(_sync_file_and_folder, dest.full_path(pair[1]))

        await bounded(list(zip(files, paths, strict=True)), one, jobs)

    try:
        for round_no in range(rounds):
            order = PATHS if round_no % 2 == 0 else PATHS[::-1]
            for path in order:
                where = f"{KEY_PREFIX}/{run}/r{round_no}-{path}"
                if path == "fsspec":
                    written = [f"{BASE_DIR}/{where}/{name}" for name in names]
                else:
                    written = [f"{where}/{name}" for name in names]
                watch = _Stopwatch()
                await {"put_many": put_many, "put": put, "fsspec": fsspec}[path](written)
                timings.add(tier, path, watch.read())
                if path == "fsspec":
                    await bounded(written, dest.remove, jobs)
                else:
                    await bounded(written, store.rm, jobs)
                if steps is not None:
                    steps.advance()
    finally:
        with contextlib.suppress(Exception):
            await bounded(await store.find(f"{KEY_PREFIX}/{run}/"), store.rm, jobs)
        await source.close()
        await store.close()
    return timings


def summarize(timings: Timings, count: int, size: int, jobs: int, tier: str, url: str
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Result entries (one per path) and the document's top-level figures."""
    rates = {path: [count / s for s in timings.seconds[(tier, path)]] for path in PATHS}
    medians = {path: statistics.median(r) for path, r in rates.items()}
    entries = [{
        "name": f"{tier} {path}", "path": path, "tier": tier, "tier_url": redact(url),
        "objects": count, "object_bytes": size, "jobs": jobs,
        "objects_per_s": round(medians[path], 1),
        "rounds_objects_per_s": [round(r, 1) for r in rates[path]],
        "mb_per_s": round(medians[path] * size / 1e6, 2),
        "cpu_ms_per_object": round(statistics.median(timings.cpu[(tier, path)])
                                   / count * 1e3, 3),
        "ratio": round(medians[path] / medians["fsspec"], 3)} for path in PATHS]
    top = {"tier": tier, "put_many_objects_per_s": round(medians["put_many"], 1),
           "baseline_objects_per_s": round(medians["fsspec"], 1),
           "ratio": round(medians["put_many"] / medians["fsspec"], 3),
           "put_ratio": round(medians["put"] / medians["fsspec"], 3)}
    return entries, top


def format_table(entries: Sequence[dict[str, Any]], count: int, size: int, jobs: int,
                 rounds: int) -> str:
    lines = [f"tierstore bench put: {count} files x {size:,} B, {jobs} in flight, {rounds} "
             "rounds (median)", "",
             f"{'tier':<8} {'path':<9} {'objects/s':>10} {'min':>8} {'max':>8} "
             f"{'CPU ms/obj':>11} {'ratio':>6}"]
    for entry in entries:
        rates = entry["rounds_objects_per_s"]
        lines.append(f"{entry['tier']:<8} {entry['path']:<9} {entry['objects_per_s']:>10.0f} "
                     f"{min(rates):>8.0f} {max(rates):>8.0f} "
                     f"{entry['cpu_ms_per_object']:>11.2f} {entry['ratio']:>6.2f}")
    return "\n".join(lines) + "\n"


def add_put_arguments(cmd: argparse.ArgumentParser) -> None:
    """The options of ``tierstore bench put``."""
    add_store_arguments(cmd, also="and the files ")
    cmd.add_argument("--tier", help="the tier written to (default: warm with --s3, else hot)")
    cmd.add_argument("--count", type=int, default=1000, help="files (default: 1000)")
    cmd.add_argument("--size", default="16KiB", help="bytes per file (default: 16KiB)")
    cmd.add_argument("--rounds", type=int, default=5,
                     help="interleaved rounds; the median is reported (default: 5)")
    cmd.add_argument("--jobs", type=int, default=8,
                     help="puts and plain copies in flight (default: 8)")
    cmd.add_argument("--json", metavar="FILE", dest="json_file",
                     help="also write the result document to FILE ('-': stdout)")
    cmd.add_argument("--results", metavar="DIR", help="results folder (default: "
                     "$TIERSTORE_RESULTS, else ./bench-results; 'none': do not save)")


def run_put(args: argparse.Namespace) -> int:
    """``tierstore bench put``: measure, print a table, save the result."""
    config_path = getattr(args, "config", None)
    try:
        size = parse_size(args.size, field="--size")
        if not (args.count >= 1 and args.rounds >= 1 and args.jobs >= 1):
            raise BenchError("expected --count, --rounds and --jobs of at least 1")
        check_store_arguments(args)
    except (BenchError, ConfigError) as exc:
        print(f"tierstore: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    with contextlib.ExitStack() as stack:
        config = bench_config(args, stack)
        tier = args.tier or ("warm" if args.s3 else "hot")
        if tier not in config.tiers:
            print(f"tierstore: error: no tier {tier!r} (tiers: {', '.join(config.tiers)})",
                  file=sys.stderr)
            return EXIT_USAGE
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="tierstore-put-", dir=args.dir)))
        files = _make_files(folder, args.count, size)
        with Steps(label_width=9) as steps:
            steps.task("put", args.rounds * len(PATHS))
            timings = asyncio.run(measure(config, tier, files, args.rounds, args.jobs,
                                          steps=steps))
        entries, top = summarize(timings, args.count, size, args.jobs, tier,
                                 config.tiers[tier].url)
    document = result_document(
        "put", entries, **top, config=config_path, scratch=None if config_path else
        {"s3": args.s3 or None}, objects=args.count, object_bytes=size, rounds=args.rounds,
        jobs=args.jobs, unit="objects per second")
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write(format_table(entries, args.count, size, args.jobs, args.rounds))
    write_json(document, args.json_file)
    save_and_say(document, args.results)
    return 0


def _sync_file_and_folder(path: str) -> None:
    """What a careful user does after a copy: fsync the file, then its folder."""
    for name in (path, os.path.dirname(path)):
        fd = os.open(name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _make_files(folder: Path, count: int, size: int) -> list[Path]:
    rng = random.Random(0)
    files = []
    for n in range(count):
        path = folder / f"f{n:06d}.bin"
        path.write_bytes(rng.randbytes(size))
        files.append(path)
    return files
