"""tierstore.cli.bench: fio-like benchmarks of tiers and read paths, and their reports.

``tierstore bench io`` speaks fio's language: its options and job files
(:func:`parse_command_line`, :class:`JobOptions`), its latency histogram
(:class:`LatencyHistogram`) and its JSON (:func:`fio_json`), over local files, any fsspec URL,
``tier://`` keys and configured tiers. :func:`plan_jobs` and :func:`run_plans` run jobs from
Python; ``python -m tierstore.cli.bench.compare_fio`` runs fio and tierstore side by side.

Names load on first use, so building the ``tierstore`` command line imports nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import BenchError, TargetError, UnsupportedOption
    from .histogram import FIO_PERCENTILES, LatencyHistogram
    from .jobfile import Invocation, parse_command_line, parse_job_file
    from .options import JobOptions, job_options
    from .report_json import fio_json
    from .runner import group_results, plan_jobs, run_plans
    from .stats import JobResult

__all__ = [
    "FIO_PERCENTILES",
    "BenchError",
    "Invocation",
    "JobOptions",
    "JobResult",
    "LatencyHistogram",
    "TargetError",
    "UnsupportedOption",
    "fio_json",
    "group_results",
    "job_options",
    "parse_command_line",
    "parse_job_file",
    "plan_jobs",
    "run_plans",
]

_HOMES = {
    "BenchError": "errors", "TargetError": "errors", "UnsupportedOption": "errors",
    "FIO_PERCENTILES": "histogram", "LatencyHistogram": "histogram",
    "Invocation": "jobfile", "parse_command_line": "jobfile", "parse_job_file": "jobfile",
    "JobOptions": "options", "job_options": "options", "fio_json": "report_json",
    "group_results": "runner", "plan_jobs": "runner", "run_plans": "runner",
    "JobResult": "stats",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
