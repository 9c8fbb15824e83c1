"""Sizes and durations as people write them: one parser each, for the config file, the
command line and the policies (``tierstore.cli.bench.common.units`` keeps fio's own option
grammar)."""

from __future__ import annotations

import math
import re

from .errors import ConfigError

__all__ = ["DAY", "HOUR", "parse_duration", "parse_size"]

HOUR = 3600.0
DAY = 86400.0

_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
               "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}


def parse_size(value: object, *, source: str | None = None, field: str = "size") -> int:
    """Parse ``"100GiB"``, ``"1.5 TB"``, ``"512M"`` or an integer number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]i?)?b?\s*", str(value), re.IGNORECASE)
    if not isinstance(value, str) or match is None:
        raise ConfigError(
            f"expected a size such as 500MiB, 100GB or a byte count, got {value!r}",
            source=source, field=field,
        )
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[(unit or "").lower()])


_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)\s*", re.IGNORECASE)
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": HOUR, "d": DAY, "w": 7 * DAY}


def parse_duration(value: object, *, source: str | None = None,
                   field: str = "duration") -> float:
    """Parse a duration as seconds.

    Parameters
    ----------
    value : object
        ``"90s"``, ``"5m"``, ``"12h"``, ``"30d"``, ``"2w"`` or a number of seconds.
    source : str, optional
        The file it came from, for messages.
    field : str, default "duration"
        The field it came from, for messages.

    Returns
    -------
    float
        The seconds (0 or more, finite).

    Raises
    ------
    ConfigError
        Naming ``source`` and ``field``, if ``value`` is not such a duration.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        seconds = float(match[1]) * _UNIT_SECONDS[match[2].lower()]
    else:
        seconds = -1.0
    if not 0 <= seconds < math.inf:
        raise ConfigError(f"expected a duration such as 90s, 5m, 12h or 30d, got {value!r}",
                          source=source, field=field)
    return seconds
