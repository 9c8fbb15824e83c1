"""``tierstore bench ingest``: the same samples written into the same S3 bucket by tierstore's
tar writer and, side by side in one run, by the peers' own writers (WebDataset's
``ShardWriter``, MosaicML Streaming's ``MDSWriter``, LitData's ``optimize``; the ``[peers]``
extra), each into a prefix of its own.

Per writer: seconds, MB/s (the samples' bytes per second), objects and bytes stored, and the
client's CPU per GB (this process and its children, LitData writing from a forked worker; the
S3 server the run started is left out), with ratios against WebDataset's. The samples are the
loader benchmark's (:class:`~.loader.peers.SampleSource`: random, the same bytes for every writer);
making them costs every writer the same, so it is measured once on its own and taken out of
the ``net`` CPU per GB. A peer not installed is recorded with the reason, one that fails with
its error, and the run goes on.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierstore.errors import ConfigError
from tierstore.units import parse_size

from .common.errors import BenchError
from .common.results import result_document, save_and_say, write_json

if TYPE_CHECKING:  # the command line imports this module; torch and NumPy wait for a run
    from .loader.measure import MemorySampler
    from .loader.stores import BenchStore

__all__ = ["WRITERS", "add_ingest_arguments", "run_ingest"]

WRITERS = ("tierstore", "wds", "mosaic", "litdata")
EXIT_USAGE = 2
PREFIX = "ingest"


def add_ingest_arguments(cmd: argparse.ArgumentParser) -> None:
    """The options of ``tierstore bench ingest``."""
    cmd.add_argument("--s3", choices=("moto", "ceph"), default="moto",
                     help="the S3 server started for the run: moto, or a single-node Ceph "
                          "radosgw (default: moto)")
    cmd.add_argument("--samples", type=int, default=14_000, help="samples (default: 14000)")
    cmd.add_argument("--sample-size", default="110KiB",
                     help="mean bytes per sample, sizes drawn around it (default: 110KiB)")
    cmd.add_argument("--shard-size", default="64MB", help="bytes per shard (default: 64MB)")
    cmd.add_argument("--writers", default=",".join(WRITERS),
                     help=f"which writers, in order (default: {','.join(WRITERS)})")
    cmd.add_argument("--seed", type=int, default=0, help="of the samples (default: 0)")
    cmd.add_argument("--json", metavar="FILE", dest="json_file",
                     help="also write the result document to FILE ('-': stdout)")
    cmd.add_argument("--results", metavar="DIR", help="results folder (default: "
                     "$TIERSTORE_RESULTS, else ./bench-results; 'none': do not save)")


def run_ingest(args: argparse.Namespace) -> int:
    """``tierstore bench ingest``: write with each writer, print a table, save the result."""
    from .loader.bench import normal_sizes
    from .loader.measure import MemorySampler
    from .loader.peers import SampleSource
    from .loader.stores import make_bench_store, remove_tree

    try:
        writers = [w.strip() for w in args.writers.split(",") if w.strip()]
        unknown = sorted(set(writers) - set(WRITERS))
        if unknown or not writers:
            raise BenchError(f"--writers: {', '.join(unknown) or 'none given'}; "
                             f"known: {', '.join(WRITERS)}")
        if args.samples < 1:
            raise BenchError("--samples must be at least 1")
        mean = parse_size(args.sample_size, field="--sample-size")
        shard_bytes = parse_size(args.shard_size, field="--shard-size")
    except (BenchError, ConfigError) as exc:
        print(f"tierstore: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    source = SampleSource(normal_sizes(args.samples, mean, mean / 5, args.seed), args.seed)
    total = int(source.sizes.sum())
    workdir = Path(tempfile.mkdtemp(prefix="tierstore-bench-ingest-"))
    try:
        # room for every writer's copy: the space of what Ceph deletes comes back only once
        # its garbage collector has run (hours), and a full memstore OSD hangs writes
        room = int((len(writers) + 1) * total * 1.25)
        bench = make_bench_store(workdir, 1, s3=args.s3, s3_bytes=max(2 << 30, room))
    except BenchError as exc:
        remove_tree(workdir)
        print(f"tierstore: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    try:
        with MemorySampler(exclude=bench.server_pids) as meter:
            making = _timed(meter, lambda: _make_all(source))
            entries = [_entry(name, bench, source, shard_bytes, meter, making, total)
                       for name in writers]
    finally:
        bench.close()
        remove_tree(workdir)
    _ratios(entries)
    document = result_document(
        "ingest", entries, server=bench.server, samples=len(source), dataset_bytes=total,
        shard_bytes=shard_bytes, making_samples={"seconds": making[0], "cpu_s": making[1]},
        unit="MB/s (10^6 bytes of samples per second); CPU s per GB (10^9 bytes of samples)")
    write_json(document, args.json_file)
    if args.json_file != "-":
        sys.stdout.write(format_table(document))
    save_and_say(document, args.results)
    return 0


def _make_all(source: Any) -> int:
    return sum(len(source.payload(i)) for i in range(len(source)))


def _timed(meter: MemorySampler, work: Callable[[], Any]) -> tuple[float, float, Any]:
    """(seconds, client CPU seconds, what ``work()`` returned)."""
    meter.reset()
    began = time.perf_counter()
    got = work()
    return time.perf_counter() - began, meter.cpu(), got


def _entry(name: str, bench: BenchStore, source: Any, shard_bytes: int, meter: MemorySampler,
           making: tuple[float, float, Any], total: int) -> dict[str, Any]:
    """One writer's row: what it cost, or why it did not run."""
    print(f"tierstore bench ingest: {name} writes {total / 1e6:,.0f} MB ...", file=sys.stderr)
    entry: dict[str, Any] = {"writer": name, "failure": None}
    try:
        if name == "tierstore":
            seconds, cpu, stored = _timed(meter, lambda: _tierstore(bench, source, shard_bytes))
        else:
            seconds, cpu, stored = _peer(name, bench, source, shard_bytes, meter)
    except _NotInstalled as exc:
        entry["failure"] = {"kind": "not installed", "error": str(exc)}
        return entry
    except Exception as exc:  # a writer that fails is recorded; the run goes on
        entry["failure"] = {"kind": "crash", "error": f"{type(exc).__name__}: {exc}"}
        return entry
    gb = total / 1e9
    entry.update(seconds=round(seconds, 3), mb_per_s=round(total / 1e6 / seconds, 1),
                 cpu_s=round(cpu, 3), cpu_s_per_gb=round(cpu / gb, 3),
                 net_cpu_s_per_gb=round(max(0.0, cpu - making[1]) / gb, 3), **stored)
    return entry


class _NotInstalled(Exception):
    pass


def _tierstore(bench: BenchStore, source: Any, shard_bytes: int) -> dict[str, int]:
    from tierstore.loader import write_tar_shards
    from tierstore.sync import open_store

    mean = max(1, int(source.sizes.mean()))
    with open_store(bench.config) as store:
        index = write_tar_shards(
            store, PREFIX, ({"__key__": source.key(i), "bin": source.payload(i)}
                            for i in range(len(source))),
            samples_per_shard=max(1, shard_bytes // mean), shard_bytes=shard_bytes,
            tier=bench.data_tier)
        found = store.find(PREFIX)
        return {"objects": len(found), "shards": len(index.shards),
                "stored_bytes": sum(int(store.stat(key).size) for key in found)}


def _peer(name: str, bench: BenchStore, source: Any, shard_bytes: int, meter: MemorySampler
          ) -> tuple[float, float, dict[str, int]]:
    from .loader.bench import peer_site
    from .loader.peers import peer_class

    cls = peer_class(name)
    if (missing := cls.missing()) is not None:
        raise _NotInstalled(missing)
    peer = cls(peer_site(bench, PREFIX, name, None), source, batch_size=1, workers=0,
               seed=source.seed, shard_bytes=shard_bytes)
    try:
        seconds, cpu, _ = _timed(meter, peer.write)
        stored = peer.stored()
    finally:
        peer.remove()
    return seconds, cpu, {"objects": stored["objects"], "stored_bytes": stored["bytes"]}


def _ratios(entries: list[dict[str, Any]]) -> None:
    """Each writer's MB/s and net CPU per GB over WebDataset's, where both ran."""
    wds = next((e for e in entries if e["writer"] == "wds" and not e["failure"]), None)
    for entry in entries:
        if wds is None or entry["failure"]:
            continue
        entry["vs_wds"] = {
            "mb_per_s": round(entry["mb_per_s"] / wds["mb_per_s"], 2),
            "net_cpu_s_per_gb": round(entry["net_cpu_s_per_gb"] / wds["net_cpu_s_per_gb"], 2)
            if wds["net_cpu_s_per_gb"] else None}


def format_table(document: dict[str, Any]) -> str:
    """The run as a table, one row per writer."""
    lines = [f"tierstore bench ingest: {document['samples']:,} samples, "
             f"{document['dataset_bytes'] / 1e6:,.0f} MB, shards of "
             f"{document['shard_bytes'] / 1e6:g} MB, into {document['server']}",
             f"{'writer':<10} {'MB/s':>8} {'x wds':>6} {'seconds':>8} {'objects':>8} "
             f"{'CPU s/GB':>9} {'net':>6} {'x wds':>6}"]
    for e in document["results"]:
        if e["failure"]:
            lines.append(f"{e['writer']:<10} {e['failure']['kind']}: {e['failure']['error']}")
            continue
        vs = e.get("vs_wds") or {}
        lines.append(f"{e['writer']:<10} {e['mb_per_s']:>8,.1f} {_x(vs.get('mb_per_s'))} "
                     f"{e['seconds']:>8.2f} {e['objects']:>8} {e['cpu_s_per_gb']:>9.2f} "
                     f"{e['net_cpu_s_per_gb']:>6.2f} {_x(vs.get('net_cpu_s_per_gb'))}")
    making = document["making_samples"]
    lines.append(f"(making the samples alone: {making['seconds']:.2f} s, {making['cpu_s']:.2f} "
                 "s of CPU; net CPU per GB leaves it out)")
    return "\n".join(lines) + "\n"


def _x(ratio: float | None) -> str:
    return f"{ratio:>5.2f}x" if ratio is not None else f"{'-':>6}"
