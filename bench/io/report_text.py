"""fio's human summary (``--output-format=normal``): per job, then per group, then disks.

Layout, units and number formats follow fio 3.x (``num2str`` with four significant digits,
``clat``/``lat`` in the unit that suits their minimum, percentiles 1 to 99.99), so someone who
reads fio's output reads this one the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .histogram import FIO_PERCENTILES, LatencyHistogram
from .options import JobOptions
from .report_json import LATENCY_EDGES_NS, VERSION, group_bandwidth
from .stats import DIRECTIONS, DirectionStats, JobResult

__all__ = ["format_header", "format_results", "num2str"]

_NS_KEYS = ("2", "4", "10", "20", "50", "100", "250", "500", "750", "1000")
_DEPTHS = ("1", "2", "4", "8", "16", "32", ">=64")


def num2str(value: float, *, pow2: bool, unit: str = "") -> str:
    """fio's num2str: at most four digits before the unit, decimals where they fit."""
    prefixes = ("", "Ki", "Mi", "Gi", "Ti", "Pi") if pow2 else ("", "k", "M", "G", "T", "P")
    base, level = (1024 if pow2 else 1000), 0
    while value >= 10000 and level < len(prefixes) - 1:
        value /= base
        level += 1
    if level == 0:
        return f"{round(value)}{unit}"
    decimals = max(0, 3 - len(str(int(value))))
    return f"{value:.{decimals}f}{prefixes[level]}{unit}"


def format_header(options_list: Sequence[JobOptions], processes: int,
                  groupids: Sequence[int] | None = None) -> str:
    """The lines fio prints before a run: each job's shape, the version, the process count."""
    lines = []
    for index, options in enumerate(options_list):
        lo, hi = (num2str(b, pow2=True, unit="B") for b in options.block_sizes)
        sizes = f"{lo}-{hi}"
        group = groupids[index] if groupids is not None else 0
        lines.append(f"{options.name}: (g={group}): rw={options.rw}, bs=(R) {sizes}, (W) {sizes}, "
                     f"(T) {sizes}, ioengine={options.ioengine}, iodepth={options.iodepth}")
        if options.numjobs > 1:
            lines.append("...")
    lines.append(VERSION)
    lines.append(f"Starting {processes} process{'es' if processes != 1 else ''}")
    return "\n".join(lines) + "\n"


def _scaled(hist: LatencyHistogram) -> tuple[str, float]:
    unit, divisor = "nsec", 1.0
    for name in ("usec", "msec"):
        if hist.min / divisor > 10000 and hist.mean / divisor > 10000:
            unit, divisor = name, divisor * 1000
    return unit, divisor


def _lat_line(label: str, hist: LatencyHistogram) -> str:
    unit, div = _scaled(hist)
    return (f"{label} ({unit}): min={round(hist.min / div)}, max={round(hist.max / div)}, "
            f"avg={hist.mean / div:.2f}, stdev={hist.stddev / div:.2f}")


def _percentile_lines(label: str, hist: LatencyHistogram) -> list[str]:
    values = hist.percentiles(FIO_PERCENTILES)
    lo, hi = min(values.values()), max(values.values())
    unit, divisor = ("msec", 1e6) if lo > 2_000_000 and hi > 99_999_999 else \
        ("usec", 1e3) if lo > 2000 and hi > 99_999 else ("nsec", 1.0)
    shown = [(p, round(v / divisor)) for p, v in values.items()]
    width = max(5, len(str(max(v for _, v in shown))))
    cells = [f" {p:5.2f}th=[{v:{width}d}]" for p, v in shown]
    rows = [cells[i:i + 4] for i in range(0, len(cells), 4)]
    lines = [f"    {label} percentiles ({unit}):"]
    for n, row in enumerate(rows):
        lines.append("     |" + ",".join(row) + ("," if n < len(rows) - 1 else ""))
    return lines


def _samples_lines(stats: DirectionStats, group_kib: float) -> list[str]:
    bw_min, bw_max, bw_mean, bw_dev, n = stats.bw.summary()
    if not n:
        return []
    unit = "KiB"
    if bw_mean > 1024 * 1024:
        bw_min, bw_max, bw_mean, bw_dev = (x / 1024 for x in (bw_min, bw_max, bw_mean, bw_dev))
        unit = "MiB"
    per = 100.0 * stats.bw.summary()[2] / group_kib if group_kib else 100.0
    io_min, io_max, io_mean, io_dev, io_n = stats.iops.summary()
    return [f"   bw ({unit:>5}/s): min={bw_min:5.0f}, max={bw_max:5.0f}, per={per:3.2f}%, "
            f"avg={bw_mean:5.2f}, stdev={bw_dev:5.2f}, samples={n}",
            f"   iops        : min={io_min:5.0f}, max={io_max:5.0f}, avg={io_mean:5.2f}, "
            f"stdev={io_dev:5.2f}, samples={io_n}"]


def _direction_lines(name: str, stats: DirectionStats, runtime_ns: int, group_kib: float
                     ) -> list[str]:
    if not stats.total_ios:
        return []
    seconds = runtime_ns / 1e9
    bw = stats.io_bytes / seconds if seconds else 0.0
    iops = stats.total_ios / seconds if seconds else 0.0
    line = (f"  {name}: IOPS={num2str(iops, pow2=False)}, "
            f"BW={num2str(bw, pow2=True, unit='B/s')} ({num2str(bw, pow2=False, unit='B/s')})"
            f"({num2str(stats.io_bytes, pow2=True, unit='B')}/{round(runtime_ns / 1e6)}msec)")
    if name == "write":
        line += "; 0 zone resets"
    return [line, "    " + _lat_line("clat", stats.clat), "     " + _lat_line("lat", stats.clat),
            *_percentile_lines("clat", stats.clat), *_samples_lines(stats, group_kib)]


def _distribution_lines(hist: LatencyHistogram) -> list[str]:
    shares = hist.share_below(LATENCY_EDGES_NS)
    keys = [*_NS_KEYS, *_NS_KEYS, *_NS_KEYS, "2000", ">=2000"]
    units = ["nsec"] * 10 + ["usec"] * 10 + ["msec"] * 12
    lines: list[str] = []
    for unit in ("nsec", "usec", "msec"):
        cells = [f"{k}={s:.2f}%" if s >= 0.01 else f"{k}=<0.01%"
                 for k, s, u in zip(keys, shares, units, strict=True) if u == unit and s > 0]
        for i in range(0, len(cells), 5):
            lines.append(f"  lat ({unit})   : " + ", ".join(cells[i:i + 5]))
    return lines


def _sync_lines(hist: LatencyHistogram) -> list[str]:
    if not hist.n:
        return []
    return ["  fsync/fdatasync/sync_file_range:", "    " + _lat_line("sync", hist),
            *_percentile_lines("sync", hist)]


def _job_lines(result: JobResult, group_kib: dict[str, float]) -> list[str]:
    when = time.ctime(result.started + result.runtime_ns / 1e9)
    lines = [f"{result.name}: (groupid={result.groupid}, jobs={result.jobs}): err= "
             f"{result.error}: pid={result.pid}: {when}"]
    for name in DIRECTIONS:
        lines += _direction_lines(name, result.directions[name], result.runtime_ns,
                                  group_kib[name])
    lines += _distribution_lines(result.latency())
    lines += _sync_lines(result.sync)
    seconds = sum(result.runtimes_ns) / 1e9 or 1.0
    ios = [result.directions[d].total_ios for d in DIRECTIONS]
    depth = min(result.iodepth.bit_length() - 1, len(_DEPTHS) - 1)
    depths = ", ".join(f"{k}={100.0 if i == depth else 0.0:.1f}%" for i, k in enumerate(_DEPTHS))
    submit = "0=0.0%, 4=100.0%, 8=0.0%, 16=0.0%, 32=0.0%, 64=0.0%, >=64=0.0%"
    short = [result.directions[d].short_ios for d in DIRECTIONS]
    lines += [
        f"  cpu          : usr={100 * result.usr_s / seconds:.2f}%, "
        f"sys={100 * result.sys_s / seconds:.2f}%, ctx={result.ctx}, majf={result.majf}, "
        f"minf={result.minf}",
        f"  IO depths    : {depths}",
        f"     submit    : {submit}",
        f"     complete  : {submit}",
        f"     issued rwts: total={','.join(map(str, ios))},{result.sync.n} "
        f"short={','.join(map(str, short))},0 dropped=0,0,0,0",
        f"     latency   : target=0, window=0, percentile=100.00%, depth={result.iodepth}",
    ]
    return lines


def _group_lines(results: Sequence[JobResult], group_kib: dict[str, float]) -> list[str]:
    lines = [f"Run status group {results[0].groupid} (all jobs):"]
    for name in DIRECTIONS:
        active = [r for r in results if r.directions[name].total_ios]
        if not active:
            continue
        rates = [r.directions[name].io_bytes / (r.runtime_ns / 1e9) for r in active]
        total = sum(r.directions[name].io_bytes for r in active)
        runs = [round(r.runtime_ns / 1e6) for r in active]
        agg = group_kib[name] * 1024

        def both(v: float) -> tuple[str, str]:
            return num2str(v, pow2=True, unit="B/s"), num2str(v, pow2=False, unit="B/s")

        (a2, a10), (lo2, lo10), (hi2, hi10) = both(agg), both(min(rates)), both(max(rates))
        lines.append(f"{name.upper():>7}: bw={a2} ({a10}), {lo2}-{hi2} ({lo10}-{hi10}), "
                     f"io={num2str(total, pow2=True, unit='B')} "
                     f"({num2str(total, pow2=False, unit='B')}), "
                     f"run={min(runs)}-{max(runs)}msec")
    return lines


def _disk_lines(disk_util: Sequence[dict[str, Any]]) -> list[str]:
    if not disk_util:
        return []
    lines = ["", "Disk stats (read/write):"]
    for d in disk_util:
        lines.append(f"  {d['name']}: ios={d['read_ios']}/{d['write_ios']}, "
                     f"merge={d['read_merges']}/{d['write_merges']}, "
                     f"ticks={d['read_ticks']}/{d['write_ticks']}, in_queue={d['in_queue']}, "
                     f"util={d['util']:.2f}%")
    return lines


def format_results(results: Sequence[JobResult], disk_util: Sequence[dict[str, Any]]) -> str:
    """Everything fio prints after a run, for the (grouped) results: the jobs, then each
    reporting group's totals, then the disks."""
    groups = {g: [r for r in results if r.groupid == g]
              for g in sorted({r.groupid for r in results})}
    group_kib = {g: group_bandwidth(members) for g, members in groups.items()}
    lines = [""]
    for result in results:
        lines += _job_lines(result, group_kib[result.groupid])
        lines.append("")
    for g, members in groups.items():
        lines += _group_lines(members, group_kib[g])
    lines += _disk_lines(disk_util)
    return "\n".join(lines) + "\n"
