"""tierstore.cli.bench: fio-like benchmarks of tiers and read paths, and their reports.

``tierstore bench io`` speaks fio's language: its options and job files
(:func:`parse_command_line`, :class:`JobOptions`), its latency histogram
(:class:`LatencyHistogram`) and its JSON (:func:`fio_json`), over local files, any fsspec URL,
``tier://`` keys and configured tiers. :func:`plan_jobs` and :func:`run_plans` run jobs from
Python; ``python -m tierstore.cli.bench.io.compare_fio`` runs fio and tierstore side by side.

One subpackage per benchmark: :mod:`.io` (``bench io``: fio's options, engine, targets and
output; compare_fio), :mod:`.loader` (``bench loader`` and its peers), :mod:`.catalog`,
:mod:`.locality` and :mod:`.report` (``bench report``); ``bench migrate``, ``ingest`` and
``tiers`` are a module each; :mod:`.common` holds what they share (errors, fio's value syntax,
the machine, result documents, the single-node Ceph) and imports none of them; :mod:`.cli`
registers them all. A benchmark imports :mod:`.common` and, for a few, another's pieces
(``tiers`` runs io's engine, ``ingest`` writes loader's dataset through its peers, ``report``
reads io's fio results), never the other way round.

Names load on first use, so building the ``tierstore`` command line imports nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .common.errors import BenchError, TargetError, UnsupportedOption
    from .io.histogram import FIO_PERCENTILES, LatencyHistogram
    from .io.jobfile import Invocation, parse_command_line, parse_job_file
    from .io.options import JobOptions, job_options
    from .io.report_json import fio_json
    from .io.runner import group_results, plan_jobs, run_plans
    from .io.stats import JobResult

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
    "BenchError": "common.errors", "TargetError": "common.errors",
    "UnsupportedOption": "common.errors",
    "FIO_PERCENTILES": "io.histogram", "LatencyHistogram": "io.histogram",
    "Invocation": "io.jobfile", "parse_command_line": "io.jobfile", "parse_job_file": "io.jobfile",
    "JobOptions": "io.options", "job_options": "io.options", "fio_json": "io.report_json",
    "group_results": "io.runner", "plan_jobs": "io.runner", "run_plans": "io.runner",
    "JobResult": "io.stats",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
