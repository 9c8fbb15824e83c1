"""``tierstore bench report RESULTS... [--out DIR]``: compare benchmark results.

Reads the JSON results that tierstore's benchmarks save (:mod:`..common.results`: ``benchmark``,
``command``, ``machine``, a ``results`` list of flat entries) and fio's own
``--output-format=json``. I/O results (``io``, ``tiers``, fio) become bandwidth and IOPS plots
per target and block size and latency percentile curves (from fio's ``clat_ns.percentile``);
any other benchmark's entries become a table and a bar plot of their ``*_per_s`` and ratio
fields, each bar named by the entry's text fields. ``report.md`` holds the tables and links
the plots.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io.fio_results import LatencyCurve, fio_entries, is_fio_document, latency_curves

__all__ = ["Loaded", "build_report", "load_any", "run_report"]

EXIT_USAGE = 2
_IO_FIELDS = ("bw_bytes", "iops", "bs", "iodepth", "rw")


@dataclass
class Loaded:
    """One input file: what it measured, its entries, and latency curves where it has them."""

    path: Path
    source: str
    benchmark: str
    document: dict[str, Any]
    entries: list[dict[str, Any]]
    curves: list[LatencyCurve] = field(default_factory=list)

    @property
    def io(self) -> bool:
        return bool(self.entries) and all(all(k in e for k in _IO_FIELDS)
                                          for e in self.entries)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})"
                         ) from None
    start = text.find("{")  # fio may print notes before its JSON
    try:
        return json.loads(text[start:] if start > 0 else text)
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def load_any(path: str | Path, source: str | None = None) -> Loaded:
    """A result file: tierstore's result document, or fio's JSON output. ValueError (one
    line, naming the file) for anything else."""
    path = Path(path)
    document = _read_json(path)
    name = source or path.stem
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a benchmark result (expected a JSON object)")
    if "results" not in document and is_fio_document(document):
        return Loaded(path, name, "fio", document, fio_entries(document),
                      latency_curves(document))
    results = document.get("results")
    if not isinstance(results, list) or not all(isinstance(e, dict) for e in results):
        raise ValueError(f"{path}: not a benchmark result (no 'results' list of entries, "
                         "and not fio's JSON output)")
    benchmark = document.get("benchmark")
    if not isinstance(benchmark, str) or not benchmark:
        raise ValueError(f"{path}: not a benchmark result (no 'benchmark' name)")
    fio = document.get("fio")
    curves = latency_curves(fio) if isinstance(fio, dict) and is_fio_document(fio) else []
    return Loaded(path, name, benchmark, document, [dict(e) for e in results], curves)


def _sources(paths: Sequence[str]) -> list[str]:
    """Short names for the inputs: file stems, or paths where stems repeat."""
    stems = [Path(p).stem for p in paths]
    return [s if stems.count(s) == 1 else str(p) for s, p in zip(stems, paths, strict=True)]


# -- markdown -------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    elif isinstance(value, dict | list):
        text = json.dumps(value, separators=(",", ":"))
    else:
        text = str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(map(_cell, header)) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in rows]
    return lines


def _machine(document: dict[str, Any]) -> str:
    machine = document.get("machine")
    if not isinstance(machine, dict):
        extra = document.get("tierstore")
        machine = extra.get("machine") if isinstance(extra, dict) else None
    if not isinstance(machine, dict):
        return "-"
    memory = machine.get("memory_bytes")
    parts = [str(machine.get("cpu") or "?"), f"{machine.get('cores', '?')} cores"]
    if isinstance(memory, int | float):
        parts.append(f"{memory / 2**30:.0f} GiB")
    return ", ".join(parts)


def _command(loaded: Loaded) -> str:
    doc = loaded.document
    extra = doc.get("tierstore")
    command = doc.get("command") or (extra.get("command") if isinstance(extra, dict) else None)
    return f"`{command}`" if command else (f"fio {doc.get('fio version', '')}".strip())


def _inputs(loaded: Sequence[Loaded]) -> list[str]:
    rows = [[x.source, x.benchmark, x.document.get("time", "-"), _machine(x.document),
             _command(x)] for x in loaded]
    return _table(["result", "benchmark", "time", "machine", "command"], rows)


def _us(ns: Any) -> Any:
    return round(ns / 1000, 1) if isinstance(ns, int | float) and ns else "-"


def _io_rows(entries: Sequence[dict[str, Any]]) -> list[list[Any]]:
    return [[e["source"], e.get("target", "-"), e["rw"], e.get("direction", "-"), e["bs"],
             e["iodepth"], e.get("numjobs", 1), round(e["bw_bytes"] / 2**20, 2),
             round(e["iops"], 1), _us(e.get("clat_p50_ns")), _us(e.get("clat_p99_ns")),
             _us(e.get("clat_p99_9_ns"))] for e in entries]


_IO_HEADER = ["result", "target", "rw", "dir", "bs", "qd", "jobs", "MiB/s", "IOPS",
              "clat p50 (us)", "p99 (us)", "p99.9 (us)"]


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _generic_rows(entries: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    columns = list(dict.fromkeys(k for e in entries for k, v in e.items() if _scalar(v)))
    return columns, [[e.get(c, "") for c in columns] for e in entries]


def _label(entry: dict[str, Any], with_source: bool, longest: int = 72) -> str:
    """An entry's name on a plot: its text fields (URLs left out: the table has them)."""
    words = [f"{k}={v}" for k, v in entry.items()
             if isinstance(v, str) and k != "source" and not k.endswith("url")]
    if with_source:
        words.insert(0, str(entry["source"]))
    text = " ".join(words) or str(entry["source"])
    return text if len(text) <= longest else text[:longest - 1] + "…"


# -- the report -----------------------------------------------------------------------------


def _io_section(loaded: Sequence[Loaded], out: Path) -> tuple[list[str], list[Path]]:
    from .plots import plot_io_bars, plot_latency

    several = len(loaded) > 1
    entries = [{**e, "source": x.source,
                "series": (f"{x.source}: " if several else "") + str(e.get("target", "?"))}
               for x in loaded for e in x.entries]
    prefix = (lambda x: f"{x.source}: ") if several else (lambda x: "")
    curves = [dataclasses.replace(c, label=prefix(x) + c.label, series=prefix(x) + c.series)
              for x in loaded for c in x.curves]
    title = _run_title(loaded)
    files = [plot_io_bars(entries, out / "bandwidth.png", metric="bw_bytes",
                          ylabel="bandwidth (MiB/s)", scale=2**20,
                          title=f"Bandwidth per test: {title}"),
             plot_io_bars(entries, out / "iops.png", metric="iops", ylabel="IOPS",
                          title=f"I/O operations per second per test: {title}")]
    if curves:
        files.append(plot_latency(curves, out / "latency.png",
                                  title=f"Completion latency percentiles: {title}"))
    lines = ["## I/O: bandwidth, IOPS and latency", ""]
    lines += [f"![{f.stem}]({f.name})" for f in files]
    lines += ["", *_table(_IO_HEADER, _io_rows(entries)), ""]
    return lines, files


def _run_title(loaded: Sequence[Loaded]) -> str:
    """The runs a plot shows and the machine they ran on, for its title."""
    runs = ", ".join(x.source for x in loaded)
    machines = {_machine(x.document) for x in loaded} - {"-"}
    return runs + (f" on {'; '.join(sorted(machines))}" if machines else "")


def _generic_section(benchmark: str, loaded: Sequence[Loaded], out: Path
                     ) -> tuple[list[str], list[Path]]:
    from .plots import plot_rates

    entries = [{"source": x.source, **e} for x in loaded for e in x.entries]
    lines = [f"## {benchmark}", ""]
    if not entries:
        return [*lines, "(no results)", ""], []
    several = len(loaded) > 1
    plot = plot_rates(entries, out / f"{_filename(benchmark)}.png",
                      title=f"{benchmark}: {_run_title(loaded)}",
                      label=lambda e: _label(e, several))
    files = [plot] if plot is not None else []
    lines += [f"![{benchmark}]({f.name})" for f in files]
    header, rows = _generic_rows(entries)
    lines += ["", *_table(header, rows), ""]
    return lines, files


def _filename(benchmark: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in benchmark)


def build_report(loaded: Sequence[Loaded], out: Path) -> list[Path]:
    """Write ``report.md`` and the plots of ``loaded`` under ``out``; the files written."""
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# tierstore benchmark report", "", *_inputs(loaded), ""]
    files: list[Path] = []
    io = [x for x in loaded if x.io]
    if io:
        section, made = _io_section(io, out)
        lines += section
        files += made
    others: dict[str, list[Loaded]] = {}
    for x in loaded:
        if not x.io:
            others.setdefault(x.benchmark, []).append(x)
    for benchmark, group in others.items():
        section, made = _generic_section(benchmark, group, out)
        lines += section
        files += made
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [report, *files]


def run_report(args: argparse.Namespace) -> int:
    """``tierstore bench report``: load every result, then write the report."""
    try:
        loaded = [load_any(path, source)
                  for path, source in zip(args.results, _sources(args.results), strict=True)]
    except ValueError as exc:
        print(f"tierstore: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    written = build_report(loaded, Path(args.out))
    for path in written:
        print(path)
    return 0
