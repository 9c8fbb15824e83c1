"""fio's JSON output (``--output-format=json`` and ``json+``), field for field.

The structure is fio 3.x's: ``fio version``, ``timestamp``, ``timestamp_ms``, ``time``,
``global options``, ``jobs[]`` (``jobname``, ``groupid``, ``job options``, ``read``/``write``/
``trim`` with ``io_bytes``, ``bw_bytes``, ``iops``, ``runtime``, ``slat_ns``/``clat_ns``/
``lat_ns`` with ``percentile``, ``bw_*``/``iops_*`` samples, ``sync``, CPU, depths and the
latency distribution), and ``disk_util``, so fio's parsers and plotting scripts read it. One
key is added at the top level, ``tierstore``: the exact command, the engine, each job's
target and the machine, which fio's own readers ignore.

What is not measured is reported as fio reports it when it does not measure it either:
``slat_ns`` is zero (fio's synchronous engines do not time submission), so ``lat_ns`` equals
``clat_ns``, one latency per I/O from the call to its completion.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tierstore import __version__
from tierstore.redaction import redact

from .histogram import FIO_PERCENTILES, LatencyHistogram
from .stats import DIRECTIONS, DirectionStats, JobResult

__all__ = ["LATENCY_EDGES_NS", "VERSION", "fio_json", "safe_options"]

VERSION = f"tierstore-{__version__}"
_NS_KEYS = (2, 4, 10, 20, 50, 100, 250, 500, 750, 1000)
_MS_KEYS = (*_NS_KEYS, 2000)
LATENCY_EDGES_NS = (*_NS_KEYS, *(k * 1000 for k in _NS_KEYS),
                    *(k * 1_000_000 for k in _MS_KEYS))
_DEPTHS = ("1", "2", "4", "8", "16", "32", ">=64")
_SUBMIT = ("0", "4", "8", "16", "32", "64", ">=64")


def safe_options(options: Mapping[str, str]) -> dict[str, str]:
    """Options as given, with credentials hidden (storage options, user:password@ URLs)."""
    out = {}
    for name, value in options.items():
        if name in ("storage_options", "storage-options"):
            try:
                value = json.dumps(redact(json.loads(value)))
            except (ValueError, AttributeError, TypeError):
                value = "***"
        elif "://" in value:
            value = redact(value)
        out[name] = value
    return out


def _moments(hist: LatencyHistogram, percentiles: bool, bins: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"min": hist.min, "max": hist.max, "mean": round(hist.mean, 6),
                           "stddev": round(hist.stddev, 6), "N": hist.n}
    if percentiles and hist.n:
        out["percentile"] = {f"{p:.6f}": v for p, v in hist.percentiles(FIO_PERCENTILES).items()}
    if bins and hist.n:
        out["bins"] = {str(value): count for value, count in hist.bins().items()}
    return out


def _direction(stats: DirectionStats, runtime_ns: int, group_kib: float, plus: bool
               ) -> dict[str, Any]:
    active = stats.total_ios > 0
    runtime_ms = round(runtime_ns / 1e6) if active else 0
    bw_bytes = round(stats.io_bytes * 1e9 / runtime_ns) if active and runtime_ns else 0
    iops = stats.total_ios * 1e9 / runtime_ns if active and runtime_ns else 0.0
    bw_min, bw_max, bw_mean, bw_dev, bw_n = stats.bw.summary()
    io_min, io_max, io_mean, io_dev, io_n = stats.iops.summary()
    zero = LatencyHistogram()
    return {
        "io_bytes": stats.io_bytes, "io_kbytes": stats.io_bytes >> 10,
        "bw_bytes": bw_bytes, "bw": bw_bytes >> 10, "iops": round(iops, 6),
        "runtime": runtime_ms, "total_ios": stats.total_ios, "short_ios": stats.short_ios,
        "drop_ios": 0,
        "slat_ns": _moments(zero, False, False),
        "clat_ns": _moments(stats.clat, True, plus),
        "lat_ns": _moments(stats.clat, False, False),
        "bw_min": round(bw_min), "bw_max": round(bw_max),
        "bw_agg": round(100.0 * bw_mean / group_kib, 6) if group_kib else 0.0,
        "bw_mean": round(bw_mean, 6), "bw_dev": round(bw_dev, 6), "bw_samples": bw_n,
        "iops_min": round(io_min), "iops_max": round(io_max), "iops_mean": round(io_mean, 6),
        "iops_stddev": round(io_dev, 6), "iops_samples": io_n,
    }


def _depth_levels(depth: int, ios: int) -> dict[str, float]:
    keys = dict.fromkeys(_DEPTHS, 0.0)
    if ios:
        index = min(depth.bit_length() - 1, len(_DEPTHS) - 1)
        keys[_DEPTHS[index]] = 100.0
    return keys


def _latency_buckets(hist: LatencyHistogram) -> dict[str, dict[str, float]]:
    shares = [round(s, 6) for s in hist.share_below(LATENCY_EDGES_NS)]
    n = len(_NS_KEYS)
    return {
        "latency_ns": {str(k): shares[i] for i, k in enumerate(_NS_KEYS)},
        "latency_us": {str(k): shares[n + i] for i, k in enumerate(_NS_KEYS)},
        "latency_ms": {**{str(k): shares[2 * n + i] for i, k in enumerate(_MS_KEYS)},
                       ">=2000": shares[-1]},
    }


def _job(result: JobResult, group_kib: Mapping[str, float], plus: bool) -> dict[str, Any]:
    ios = sum(d.total_ios for d in result.directions.values())
    job_runtime_ms = round(sum(result.runtimes_ns) / 1e6)
    seconds = sum(result.runtimes_ns) / 1e9
    submit = dict.fromkeys(_SUBMIT, 0.0)
    if ios:
        submit["4"] = 100.0  # one I/O per submission, as fio's synchronous engines report
    job: dict[str, Any] = {
        "jobname": result.name, "groupid": result.groupid, "error": result.error, "eta": 0,
        "elapsed": round(result.elapsed_s), "job options": safe_options(result.options)}
    for name in DIRECTIONS:
        job[name] = _direction(result.directions[name], result.runtime_ns, group_kib[name],
                               plus)
    job["sync"] = {"total_ios": result.sync.n, "lat_ns": _moments(result.sync, True, plus)}
    job.update({
        "job_runtime": job_runtime_ms,
        "usr_cpu": round(100.0 * result.usr_s / seconds, 6) if seconds else 0.0,
        "sys_cpu": round(100.0 * result.sys_s / seconds, 6) if seconds else 0.0,
        "ctx": result.ctx, "majf": result.majf, "minf": result.minf,
        "iodepth_level": _depth_levels(result.iodepth, ios),
        "iodepth_submit": submit, "iodepth_complete": dict(submit),
        **_latency_buckets(result.latency()),
        "latency_depth": result.iodepth, "latency_target": 0, "latency_percentile": 100.0,
        "latency_window": 0,
    })
    return job


def group_bandwidth(results: Sequence[JobResult]) -> dict[str, float]:
    """The group's aggregate bandwidth per direction in KiB/s (fio's ``agg``)."""
    out = {}
    for name in DIRECTIONS:
        total = sum(r.directions[name].io_bytes for r in results)
        longest = max((r.runtime_ns for r in results if r.directions[name].total_ios),
                      default=0)
        out[name] = total / 1024 / (longest / 1e9) if longest else 0.0
    return out


def fio_json(results: Sequence[JobResult], *, global_options: Mapping[str, str],
             disk_util: list[dict[str, Any]], tierstore: dict[str, Any], plus: bool = False,
             now: float | None = None) -> dict[str, Any]:
    """The whole JSON document for a run's (grouped) results."""
    now = time.time() if now is None else now
    doc: dict[str, Any] = {"fio version": VERSION, "timestamp": int(now),
                           "timestamp_ms": int(now * 1000), "time": time.ctime(now)}
    if global_options:
        doc["global options"] = safe_options(global_options)
    group_kib = {g: group_bandwidth([r for r in results if r.groupid == g])
                 for g in {r.groupid for r in results}}
    doc["jobs"] = [_job(r, group_kib[r.groupid], plus) for r in results]
    doc["disk_util"] = disk_util
    doc["tierstore"] = tierstore
    return doc
