"""What a job measured: per direction (read, write, trim) bytes, I/Os, latency histograms and
bandwidth samples; per job its run time, CPU use and fsync latencies. Results of in-flight
slots, jobs and processes merge into one (fio's ``group_reporting``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .histogram import LatencyHistogram

__all__ = ["DIRECTIONS", "SAMPLE_SECONDS", "DirectionStats", "JobResult", "Samples",
           "merge_results"]

DIRECTIONS = ("read", "write", "trim")
SAMPLE_SECONDS = 0.5  # fio's bw_avg_time and iops_avg_time: 500 ms


@dataclass
class Samples:
    """Per-window rates (fio's ``bw_*`` in KiB/s and ``iops_*``): min, max, mean, stddev."""

    values: list[float] = field(default_factory=list)

    def summary(self) -> tuple[float, float, float, float, int]:
        if not self.values:
            return 0.0, 0.0, 0.0, 0.0, 0
        n = len(self.values)
        mean = sum(self.values) / n
        var = sum((v - mean) ** 2 for v in self.values) / (n - 1) if n > 1 else 0.0
        return min(self.values), max(self.values), mean, math.sqrt(var), n

    @staticmethod
    def summed(parts: Sequence[Samples]) -> Samples:
        """Window-by-window sums over jobs that ran at the same time."""
        lengths = [len(p.values) for p in parts if p.values]
        if not lengths:
            return Samples()
        n = min(lengths)
        return Samples([sum(p.values[i] for p in parts if p.values) for i in range(n)])


@dataclass
class DirectionStats:
    """One direction of one job (or of a merged group)."""

    io_bytes: int = 0
    total_ios: int = 0
    short_ios: int = 0
    clat: LatencyHistogram = field(default_factory=LatencyHistogram)
    bw: Samples = field(default_factory=Samples)  # KiB/s per window
    iops: Samples = field(default_factory=Samples)

    def add(self, other: DirectionStats) -> None:
        self.io_bytes += other.io_bytes
        self.total_ios += other.total_ios
        self.short_ios += other.short_ios
        self.clat.merge(other.clat)


@dataclass
class JobResult:
    """One job process's measurements, or several merged."""

    name: str
    groupid: int
    options: Mapping[str, str]  # as written, echoed as fio's "job options"
    description: Mapping[str, Any]  # what ran: rw, bs, iodepth, ioengine, target
    pid: int
    started: float  # wall-clock time the measured phase began
    runtime_ns: int
    elapsed_s: float
    directions: dict[str, DirectionStats] = field(
        default_factory=lambda: {d: DirectionStats() for d in DIRECTIONS})
    sync: LatencyHistogram = field(default_factory=LatencyHistogram)
    usr_s: float = 0.0
    sys_s: float = 0.0
    ctx: int = 0
    majf: int = 0
    minf: int = 0
    iodepth: int = 1
    error: int = 0
    jobs: int = 1
    runtimes_ns: list[int] = field(default_factory=list)  # of each job merged in

    def __post_init__(self) -> None:
        if not self.runtimes_ns:
            self.runtimes_ns = [self.runtime_ns]

    @property
    def runtime_ms(self) -> int:
        return round(self.runtime_ns / 1e6)

    def latency(self) -> LatencyHistogram:
        """Completion latencies of every direction together (fio's ``latency_us`` etc.)."""
        return LatencyHistogram.merged(d.clat for d in self.directions.values())


def merge_results(results: Iterable[JobResult]) -> JobResult:
    """One result for a group of jobs (fio's ``group_reporting``): sums of bytes, I/Os, CPU
    and histograms; the longest run time; bandwidth samples summed window by window."""
    parts = list(results)
    first = parts[0]
    merged = JobResult(name=first.name, groupid=first.groupid, options=first.options,
                       description=first.description, pid=first.pid, started=first.started,
                       runtime_ns=max(p.runtime_ns for p in parts),
                       elapsed_s=max(p.elapsed_s for p in parts),
                       iodepth=first.iodepth, jobs=sum(p.jobs for p in parts),
                       runtimes_ns=[r for p in parts for r in p.runtimes_ns])
    for name, stats in merged.directions.items():
        for part in parts:
            stats.add(part.directions[name])
        stats.bw = Samples.summed([p.directions[name].bw for p in parts])
        stats.iops = Samples.summed([p.directions[name].iops for p in parts])
    for part in parts:
        merged.sync.merge(part.sync)
        merged.usr_s += part.usr_s
        merged.sys_s += part.sys_s
        merged.ctx += part.ctx
        merged.majf += part.majf
        merged.minf += part.minf
        merged.error = merged.error or part.error
    return merged
