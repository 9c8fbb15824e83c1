"""fio and ``tierstore bench io`` side by side, on the same job and the same local file.

::

    python -m tierstore.cli.bench.io.compare_fio --runs 3 -- --rw=read --bs=1m --size=1g \\
        --runtime=5 --time_based --filename=/nvme/compare.dat

Each run is fio, then tierstore, then fio again, so drift (a warming disk, a busy neighbour)
shows in fio's two numbers instead of biasing the ratio. The ratio is tierstore's figure over
the mean of fio's two: above 1 is more bandwidth or IOPS, or a longer latency. With several
runs each figure is the median over runs.

fio runs with ``ioengine=psync`` at ``iodepth=1`` (one synchronous ``pread`` per I/O, as
tierstore's lanes do) and ``io_uring`` (else ``libaio``) for deeper queues, unless
``--fio-ioengine`` says otherwise; and with ``mem=mmap``, buffers in anonymous ``mmap`` memory
as tierstore's lanes have. The buffer's kind alone moves fio's 1 MiB page-cache reads by 2x
on this machine (5.8 GiB/s with its default ``mem=malloc``, 15.6 with ``mmap``), which would
say nothing about either engine; ``--fio-mem=malloc`` shows it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Figures", "compare", "figures", "main"]

DEFAULT_JOB = ("--name=compare", "--filename=tierstore-compare.dat", "--size=1g",
               "--runtime=5", "--time_based")
PRESETS = {"seq1m": ("--rw=read", "--bs=1m"), "rand4k": ("--rw=randread", "--bs=4k")}
TIMEOUT = 600


@dataclass(frozen=True)
class Figures:
    """What one run of one tool measured, over every job and direction."""

    bw_bytes: float
    iops: float
    clat_p50_ns: float
    clat_p99_ns: float


def figures(doc: dict[str, Any]) -> Figures:
    """Bandwidth and IOPS summed over jobs and directions; the clat percentiles of the
    busiest direction of the first job (the one a single-job comparison has)."""
    bw = iops = 0.0
    busiest: dict[str, Any] = {}
    for job in doc["jobs"]:
        for name in ("read", "write", "trim"):
            part = job[name]
            bw += part["bw_bytes"]
            iops += part["iops"]
            if not busiest or part["total_ios"] > busiest["total_ios"]:
                busiest = part
    percentile = busiest.get("clat_ns", {}).get("percentile", {})
    return Figures(bw, iops, float(percentile.get("50.000000", 0)),
                   float(percentile.get("99.000000", 0)))


def _run_json(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed (exit {done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-2000:]}")
    start = done.stdout.find("{")  # fio may print notes before its JSON
    doc: dict[str, Any] = json.loads(done.stdout[start:])
    return doc


def fio_ioengine(job: Sequence[str]) -> str:
    depth = max((int(a.split("=", 1)[1]) for a in job if a.startswith("--iodepth=")), default=1)
    if depth <= 1:
        return "psync"
    probe = subprocess.run(["fio", "--enghelp=io_uring"], capture_output=True, timeout=30)
    return "io_uring" if probe.returncode == 0 else "libaio"


def run_fio(job: Sequence[str], ioengine: str, mem: str = "mmap") -> dict[str, Any]:
    return _run_json(["fio", *job, f"--ioengine={ioengine}", f"--mem={mem}",
                      "--output-format=json"])


def run_tierstore(job: Sequence[str]) -> dict[str, Any]:
    return _run_json([sys.executable, "-m", "tierstore.cli", "bench", "io", *job,
                      "--output-format=json", "--results=none"])  # a comparison's runs


@dataclass(frozen=True)
class Comparison:
    """Median figures of fio and tierstore over runs, and the ratios."""

    fio: Figures
    tierstore: Figures
    runs: int
    ioengine: str
    mem: str = "mmap"

    def ratio(self, field: str) -> float:
        base = getattr(self.fio, field)
        return getattr(self.tierstore, field) / base if base else float("nan")


def _median(items: Sequence[Figures]) -> Figures:
    return Figures(*(statistics.median(getattr(f, name) for f in items)
                     for name in ("bw_bytes", "iops", "clat_p50_ns", "clat_p99_ns")))


def _mean(a: Figures, b: Figures) -> Figures:
    return Figures((a.bw_bytes + b.bw_bytes) / 2, (a.iops + b.iops) / 2,
                   (a.clat_p50_ns + b.clat_p50_ns) / 2, (a.clat_p99_ns + b.clat_p99_ns) / 2)


def compare(job: Sequence[str], *, runs: int = 3, ioengine: str | None = None,
            mem: str = "mmap") -> Comparison:
    """Run fio, tierstore, fio ``runs`` times on ``job``; the medians."""
    engine = ioengine or fio_ioengine(job)
    fio_runs, ours = [], []
    for _ in range(runs):
        before = figures(run_fio(job, engine, mem))
        ours.append(figures(run_tierstore(job)))
        fio_runs.append(_mean(before, figures(run_fio(job, engine, mem))))
    return Comparison(_median(fio_runs), _median(ours), runs, engine, mem)


def format_comparison(result: Comparison, job: Sequence[str]) -> str:
    rows = [("bw (MiB/s)", "bw_bytes", 1 / 2**20, ".1f"), ("iops", "iops", 1.0, ".0f"),
            ("clat p50 (usec)", "clat_p50_ns", 1e-3, ".1f"),
            ("clat p99 (usec)", "clat_p99_ns", 1e-3, ".1f")]
    lines = [f"job: {' '.join(job)}",
             f"fio ioengine={result.ioengine} mem={result.mem}; medians of {result.runs} runs "
             "of fio, "
             "tierstore, fio; ratio = tierstore / fio",
             f"{'':<16}{'fio':>12}{'tierstore':>12}{'ratio':>8}"]
    for label, field, scale, fmt in rows:
        ours, theirs = getattr(result.tierstore, field), getattr(result.fio, field)
        lines.append(f"{label:<16}{theirs * scale:>12{fmt}}{ours * scale:>12{fmt}}"
                     f"{result.ratio(field):>8.2f}")
    return "\n".join(lines)


def _job(args: argparse.Namespace) -> list[str]:
    job = list(args.job)
    given = {a.split("=", 1)[0] for a in job}
    if args.preset:
        job = [*PRESETS[args.preset], *job]
    defaults = [d for d in DEFAULT_JOB if d.split("=", 1)[0] not in given]
    if "--directory" in given and "--filename" not in given:
        defaults = [d for d in defaults if not d.startswith("--filename=")]
    return [*defaults, *job]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tierstore.cli.bench.io.compare_fio",
        description="fio and tierstore bench io side by side on the same job and file")
    parser.add_argument("--runs", type=int, default=3, help="fio/tierstore/fio rounds")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a standard job shape")
    parser.add_argument("--fio-ioengine", help="fio's engine (default: psync at depth 1, "
                                               "io_uring or libaio deeper)")
    parser.add_argument("--fio-mem", default="mmap", help="fio's buffer memory (default: "
                                                          "mmap, as tierstore's)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("job", nargs="*", help="fio options after --, e.g. -- --rw=read "
                                               "--bs=1m --filename=/nvme/f --size=1g")
    args = parser.parse_args(argv)
    if shutil.which("fio") is None:
        print("compare_fio: fio is not installed (apt-get install fio)", file=sys.stderr)
        return 1
    job = _job(args)
    result = compare(job, runs=args.runs, ioengine=args.fio_ioengine, mem=args.fio_mem)
    if args.json:
        print(json.dumps({"job": job, "ioengine": result.ioengine, "mem": result.mem,
                          "runs": result.runs,
                          "fio": result.fio.__dict__, "tierstore": result.tierstore.__dict__,
                          "ratio": {f: result.ratio(f) for f in result.fio.__dict__}},
                         indent=2))
    else:
        print(format_comparison(result, job))
    return 0


if __name__ == "__main__":
    sys.exit(main())
