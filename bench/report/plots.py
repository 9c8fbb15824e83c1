"""The plots of ``tierstore bench report``, drawn with matplotlib's Agg canvas (no display, no
pyplot state): bandwidth and IOPS per target and block size, latency percentile curves, and a
bar plot of the rates of any other benchmark's results.

Every function takes plain entries (flat dicts, see :mod:`..io.fio_results`) and writes one PNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tierstore.errors import require

require("matplotlib", part="tierstore bench's plots", package="matplotlib", extra="bench")

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..io.fio_results import LatencyCurve

__all__ = ["PERCENTILE_TICKS", "plot_io_bars", "plot_latency", "plot_rates", "rate_fields"]

PERCENTILE_TICKS = (50.0, 90.0, 99.0, 99.9, 99.99)
_RW_ORDER = ("read", "write", "randread", "randwrite", "rw", "readwrite", "randrw")
_DPI = 100


def _panel_key(entry: dict[str, Any]) -> str:
    rw, direction = str(entry.get("rw")), str(entry.get("direction"))
    return rw if rw in ("read", "write", "randread", "randwrite") else f"{rw} ({direction})"


def _panel_order(key: str) -> tuple[int, str]:
    rw = key.split(" ")[0]
    return (_RW_ORDER.index(rw) if rw in _RW_ORDER else len(_RW_ORDER), key)


def _grid(panels: int) -> tuple[int, int]:
    columns = 1 if panels == 1 else 2
    return math.ceil(panels / columns), columns


def _figure(panels: int, width: float = 6.4, height: float = 3.6) -> tuple[Figure, list[Axes]]:
    rows, columns = _grid(panels)
    figure = Figure(figsize=(width * columns, height * rows), dpi=_DPI, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for extra in axes[panels:]:
        extra.set_visible(False)
    return figure, axes[:panels]


def _log_if_wide(ax: Axes, values: Sequence[float], axis: str = "y") -> None:
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 50:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


QD_MEANS = "qd: I/Os in flight (fio's iodepth)"


def plot_io_bars(entries: Sequence[dict[str, Any]], path: Path, *, metric: str,
                 ylabel: str, scale: float = 1.0, title: str = "") -> Path:
    """Grouped bars of ``metric`` (``bw_bytes``, ``iops``): a panel per rw mode, block size
    and depth along x, one bar per series (``entry["series"]``); ``title`` above all."""
    panels: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        panels.setdefault(_panel_key(entry), []).append(entry)
    keys = sorted(panels, key=_panel_order)
    series = list(dict.fromkeys(str(e["series"]) for e in entries))
    figure, axes = _figure(len(keys))
    handles: dict[str, Any] = {}
    for ax, key in zip(axes, keys, strict=True):
        cells = sorted({(int(e.get("bs_bytes") or 0), str(e.get("bs")), int(e["iodepth"]))
                        for e in panels[key]})
        here = [s for s in series if any(str(e["series"]) == s for e in panels[key])]
        width = 0.8 / max(1, len(here))
        values = []
        for slot, name in enumerate(here):
            heights = []
            for _, bs, depth in cells:
                found = [e[metric] for e in panels[key] if str(e["series"]) == name and
                         str(e.get("bs")) == bs and int(e["iodepth"]) == depth]
                heights.append(sum(found) / len(found) / scale if found else 0.0)
            values += heights
            bars = ax.bar([i + (slot - (len(here) - 1) / 2) * width for i in range(len(cells))],
                          heights, width, label=name, color=f"C{series.index(name) % 10}")
            handles.setdefault(name, bars)
        ax.set_xticks(range(len(cells)), [f"{bs}\nqd{depth}" for _, bs, depth in cells])
        ax.set_xlabel(f"block size; {QD_MEANS}", fontsize="small")
        ax.set_title(key)
        ax.set_ylabel(ylabel)
        _log_if_wide(ax, values)
        ax.grid(axis="y", alpha=0.3)
    figure.legend([handles[s] for s in series], series, loc="outside lower center",
                  ncols=min(3, len(series)), fontsize="small")
    if title:
        figure.suptitle(title, fontsize="medium")
    figure.savefig(path)
    return path


def _percent_axis(percent: float) -> float:
    """Where a percentile goes on the x axis: the tail spread out (-log10 of what is left)."""
    return -math.log10(max(1e-6, 1.0 - percent / 100.0))


def plot_latency(curves: Sequence[LatencyCurve], path: Path, *, title: str = "") -> Path:
    """Completion latency against percentile, a panel per rw mode, a line per job: its
    colour says what was measured (the tier), its style how (block size and depth)."""
    panels: dict[str, list[LatencyCurve]] = {}
    for curve in curves:
        key = _panel_key({"rw": curve.rw, "direction": curve.direction})
        panels.setdefault(key, []).append(curve)
    keys = sorted(panels, key=_panel_order)
    most = max(len(c) for c in panels.values())
    figure, axes = _figure(len(keys), height=4.2 + 0.16 * math.ceil(most / 2))
    ticks = [_percent_axis(p) for p in PERCENTILE_TICKS]
    series = list(dict.fromkeys(c.series or c.label for c in curves))
    tests = list(dict.fromkeys(c.test for c in curves))
    styles, markers = ("-", "--", ":", "-."), (".", "x", "^", "s", "d")
    for ax, key in zip(axes, keys, strict=True):
        values = []
        for curve in panels[key]:
            xs = [_percent_axis(p) for p, _ in curve.points]
            ys = [v / 1000.0 for _, v in curve.points]
            values += ys
            colour, style = series.index(curve.series or curve.label), tests.index(curve.test)
            ax.plot(xs, ys, label=curve.label, color=f"C{colour % 10}",
                    linestyle=styles[style % len(styles)],
                    marker=markers[style // len(styles) % len(markers)])
        ax.set_xticks(ticks, [f"p{p:g}" for p in PERCENTILE_TICKS])
        ax.set_xlim(0, ticks[-1] + 0.2)
        ax.set_xlabel(f"percentile of I/Os; {QD_MEANS}", fontsize="small")
        ax.set_ylabel("completion latency, clat (us):\nfrom submission to completion",
                      fontsize="small")
        ax.set_title(f"{key}: clat percentiles")
        _log_if_wide(ax, values)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  ncols=2)
    if title:
        figure.suptitle(title, fontsize="medium")
    figure.savefig(path)
    return path


def rate_fields(entries: Sequence[dict[str, Any]]) -> list[str]:
    """The numeric fields worth a bar: ``*_per_s`` rates and ratios."""
    found: dict[str, None] = {}
    for entry in entries:
        for name, value in entry.items():
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and (name.endswith("_per_s") or name == "ratio" or
                            name.endswith("_ratio") or name.startswith("ratio_")):
                found[name] = None
    return list(found)


def plot_rates(entries: Sequence[dict[str, Any]], path: Path, *, title: str,
               label: Callable[[dict[str, Any]], str]) -> Path | None:
    """Horizontal bars of each rate field (a panel each), one bar per entry named by
    ``label(entry)``; None when the entries have no rate to show."""
    fields = rate_fields(entries)
    if not fields:
        return None
    names = [label(e) for e in entries]
    height = max(2.5, 0.35 * len(entries) + 1.2)
    figure, axes = _figure(len(fields), width=7.0, height=height)
    for ax, field in zip(axes, fields, strict=True):
        values = [float(e[field]) if isinstance(e.get(field), int | float) else 0.0
                  for e in entries]
        ax.barh(range(len(entries)), values, color=f"C{fields.index(field) % 10}")
        ax.set_yticks(range(len(entries)), names, fontsize="small")
        ax.invert_yaxis()
        ax.set_title(field)
        ax.grid(axis="x", alpha=0.3)
    figure.suptitle(title)
    figure.savefig(path)
    return path
