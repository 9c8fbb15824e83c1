"""fio's value syntax: sizes, times and booleans, read the way fio 3.x reads them.

Sizes follow fio's default ``kb_base=1024``: ``4k``, ``4K`` and ``4kb`` are 4096 bytes, and
(fio's compatibility rule) the IEC spelling ``4KiB`` is 4000. Times without a unit are seconds
for ``runtime`` and ``ramp_time``; ``ms``, ``us``, ``s``, ``m``, ``h`` and ``d`` are accepted.

This is not :mod:`tierstore.units`, which reads the config file's and the command line's sizes
the other way round (``4k`` is 4000 bytes, ``4KiB`` 4096) and raises ``ConfigError``. Only the
fio-like commands read sizes here (``bench io``'s job options and ``bench tiers``, whose users
bring fio's habits); every other command (``bench migrate``, ``ingest``, ``loader``,
``locality``) reads them as the config file does, by :mod:`tierstore.units`.
"""

from __future__ import annotations

import re

from .errors import BenchError

__all__ = ["parse_bool", "parse_int", "parse_size", "parse_size_range", "parse_time"]

_PREFIX = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}
_SIZE = re.compile(r"(\d+)\s*([kmgtpe]?)(i?)(b?)", re.IGNORECASE)
_TIME = re.compile(r"(\d+)\s*(us|usec|ms|msec|s|sec|m|min|h|d)?", re.IGNORECASE)
_SECONDS = {"us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1.0, "sec": 1.0,
            "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_size(text: str, option: str) -> int:
    """``"4k"`` -> 4096 (fio's kb_base=1024 rules; see the module docstring)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise BenchError(f"{option}={text!r}: expected a size such as 4k, 1m or 512")
    number, prefix, iec, _ = match.groups()
    base = 1000 if iec and prefix else 1024
    return int(number) * base ** _PREFIX[prefix.lower()]


def parse_size_range(text: str, option: str) -> tuple[int, int]:
    """``"4k-64k"`` -> (4096, 65536), low first."""
    low, sep, high = text.partition("-")
    if not sep:
        raise BenchError(f"{option}={text!r}: expected a range such as 4k-64k")
    lo, hi = parse_size(low, option), parse_size(high, option)
    if not 0 < lo <= hi:
        raise BenchError(f"{option}={text!r}: expected 0 < low <= high")
    return lo, hi


def parse_time(text: str, option: str) -> float:
    """``"10"`` -> 10.0 seconds, ``"1500ms"`` -> 1.5."""
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise BenchError(f"{option}={text!r}: expected a time such as 10, 30s, 1500ms or 2m")
    number, unit = match.groups()
    return int(number) * _SECONDS[(unit or "s").lower()]


def parse_int(text: str, option: str, *, low: int = 0, high: int | None = None) -> int:
    try:
        value = int(text.strip(), 0)
    except ValueError:
        raise BenchError(f"{option}={text!r}: expected an integer") from None
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise BenchError(f"{option}={value}: expected {bound}")
    return value


def parse_bool(text: str, option: str) -> bool:
    """fio's booleans: ``1``/``0`` (also ``true``/``false``, ``yes``/``no``, ``on``/``off``)."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise BenchError(f"{option}={text!r}: expected 0 or 1")

