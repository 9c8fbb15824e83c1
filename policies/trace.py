"""Access traces for ``tierstore simulate``: reads of (time, key, bytes), from CSV or JSON lines.

CSV: one read a row, ``time,key,bytes``, with an optional header row naming the columns (any
order; other columns are ignored). JSON lines: one object a line with ``time``, ``key`` and
``bytes`` (other fields ignored). ``time`` is Unix seconds, or any seconds (only differences
matter), or an ISO 8601 time; ``bytes`` is what the read returned, a count or a size such as
``128MiB``. Blank lines and lines starting with ``#`` are skipped; ``.gz`` files are read
through gzip. A malformed line is a :class:`TraceError` naming the file and the line.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import NamedTuple, TextIO

from tierstore.config import parse_size
from tierstore.errors import TierstoreError
from tierstore.keys import validate_key

__all__ = ["Read", "Trace", "TraceError", "read_trace"]

_COLUMNS = ("time", "key", "bytes")


class TraceError(TierstoreError, ValueError):
    """A trace cannot be read.

    The message names the file and, where one is at fault, the line.
    """


class Read(NamedTuple):
    """One read: when, of which object, and how many bytes it returned."""

    time: float
    key: str
    bytes: int


@dataclass(frozen=True)
class Trace:
    """Reads in time order and where they came from.

    Attributes
    ----------
    reads : tuple of Read
        The reads, in time order (a stable sort of the order given).
    source : str, default "<trace>"
        Where they came from, for messages.

    Raises
    ------
    TraceError
        If there are no reads.
    """

    reads: tuple[Read, ...]
    source: str = "<trace>"

    def __post_init__(self) -> None:
        if not self.reads:
            raise TraceError(f"{self.source}: no reads in the trace")
        object.__setattr__(self, "reads", tuple(sorted(self.reads, key=lambda r: r.time)))

    @cached_property
    def sizes(self) -> dict[str, int]:
        """Each object's size (its largest read), in the order objects are first read."""
        out: dict[str, int] = {}
        for read in self.reads:
            out[read.key] = max(out.get(read.key, 0), read.bytes)
        return out

    @property
    def start(self) -> float:
        return self.reads[0].time

    @property
    def end(self) -> float:
        return self.reads[-1].time

    @property
    def bytes(self) -> int:
        """Bytes read in all."""
        return sum(read.bytes for read in self.reads)

    def to_json(self) -> dict[str, object]:
        """Summarise the trace as JSON.

        Returns
        -------
        dict
            ``path``, ``reads``, ``objects``, ``bytes`` (read in all), ``object_bytes`` (the
            objects' sizes), ``start`` and ``end``.
        """
        return {"path": self.source, "reads": len(self.reads), "objects": len(self.sizes),
                "bytes": self.bytes, "object_bytes": sum(self.sizes.values()),
                "start": self.start, "end": self.end}


def read_trace(path: str | Path) -> Trace:
    """Read a CSV or JSON-lines trace, gzipped or not.

    The format is told by the suffix (``.csv``; ``.jsonl``, ``.ndjson``, ``.json``; before a
    ``.gz``), else by the first line; see the module for both.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    Trace
        Its reads, in time order.

    Raises
    ------
    TraceError
        If the file cannot be read, a line is malformed (naming it), or there are no reads.
    """
    path = Path(path)
    source = str(path)
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = suffixes[-1:] == [".gz"]
    suffix = suffixes[-2 if gzipped else -1] if suffixes[gzipped:] else ""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise TraceError(f"{source}: cannot read the trace ({exc.strerror})") from None
    with raw:
        binary = gzip.GzipFile(fileobj=raw) if gzipped else raw
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        try:
            return Trace(tuple(_parse(text, source, suffix)), source)
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise TraceError(f"{source}: cannot read the trace ({exc})") from None


def _parse(text: TextIO, source: str, suffix: str) -> Iterator[Read]:
    lines = _lines(text)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _jsonl(lines, source)
    if suffix == ".csv":
        return _csv(lines, source)
    first = next(lines, None)
    if first is None:
        return iter(())
    again = _chain(first, lines)
    return _jsonl(again, source) if first[1].lstrip().startswith("{") else _csv(again, source)


def _lines(text: TextIO) -> Iterator[tuple[int, str]]:
    """(line number, line) of the lines that are neither blank nor comments."""
    for number, line in enumerate(text, 1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, line


def _chain(first: tuple[int, str], rest: Iterator[tuple[int, str]]
           ) -> Iterator[tuple[int, str]]:
    yield first
    yield from rest


def _jsonl(lines: Iterable[tuple[int, str]], source: str) -> Iterator[Read]:
    for number, line in lines:
        at = f"{source}, line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{at}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise TraceError(f"{at}: expected a JSON object with time, key and bytes")
        missing = [name for name in _COLUMNS if name not in row]
        if missing:
            raise TraceError(f"{at}: no {missing[0]!r} field (expected time, key and bytes)")
        yield _read(row["time"], row["key"], row["bytes"], at)


def _csv(lines: Iterable[tuple[int, str]], source: str) -> Iterator[Read]:
    columns: tuple[int, int, int] | None = None
    for number, line in lines:
        at = f"{source}, line {number}"
        try:
            row = next(csv.reader([line]))
        except csv.Error as exc:
            raise TraceError(f"{at}: not valid CSV ({exc})") from None
        if columns is None:
            names = [name.strip().lower() for name in row]
            if "time" in names or "key" in names:  # a header
                missing = [name for name in _COLUMNS if name not in names]
                if missing:
                    raise TraceError(f"{at}: the header has no {missing[0]!r} column "
                                     "(expected time, key and bytes)")
                columns = (names.index("time"), names.index("key"), names.index("bytes"))
                continue
            columns = (0, 1, 2)
        if len(row) <= max(columns):
            raise TraceError(f"{at}: expected time, key and bytes, got {len(row)} "
                             f"field{'' if len(row) == 1 else 's'}")
        yield _read(row[columns[0]].strip(), row[columns[1]], row[columns[2]].strip(), at)


def _read(time: object, key: object, size: object, at: str) -> Read:
    try:
        validate_key(key)
    except ValueError as exc:
        raise TraceError(f"{at}: {exc}") from None
    assert isinstance(key, str)
    return Read(_time(time, at), key, _bytes(size, at))


def _time(value: object, at: str) -> float:
    seconds = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            with contextlib.suppress(ValueError):
                seconds = datetime.fromisoformat(value).timestamp()
    if not math.isfinite(seconds):
        raise TraceError(f"{at}: expected a time in seconds or ISO 8601, got {value!r}")
    return seconds


def _bytes(value: object, at: str) -> int:
    try:
        return parse_size(value)
    except ValueError:
        raise TraceError(f"{at}: expected a byte count such as 4096 or 128MiB, got "
                         f"{value!r}") from None
