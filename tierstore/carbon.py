"""Carbon intensity of the grid, over time: where carbon-aware moves learn when to run.

A :class:`IntensitySource` answers the grid's carbon intensity (gCO2e/kWh) at a time and a
site, and its forecast over a window, as a :class:`Forecast` (a step function of time). Three
sources, one per kind of answer a user has:

- :class:`ConstantIntensity`: one figure for all time (a flat grid: nothing is worth waiting
  for, so nothing is deferred);
- :class:`ForecastFile`: a CSV (``time,gco2e_per_kwh[,site]``) or JSON file of time ->
  intensity (plain, or a saved answer of one of the servers below);
- :class:`HttpIntensity`: a server in the shape of the Green Software Foundation's Carbon
  Aware SDK (``/emissions/forecasts/current``, falling back to ``/emissions/bylocations``)
  or of Electricity Maps (``/v3/carbon-intensity/forecast?zone=...``), read with the standard
  library, its forecast kept for a while.

A source that cannot answer raises :class:`~tierstore.errors.IntensityUnavailable` (a server
down, a timeout, an HTTP error) or :class:`~tierstore.errors.IntensityMalformed` (a file or an
answer that is not a forecast): one line, naming the file or the URL (credentials redacted),
never the token. Emissions of a move are its bytes times :data:`MOVE_JOULES_PER_BYTE` times the
intensity when it runs: an estimate, and shown as one.
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import json
import math
import os
import re
import statistics
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .energy import JOULES_PER_KWH, NETWORK_JOULES_PER_GB
from .errors import ConfigError, IntensityMalformed, IntensityUnavailable
from .locality.topology import Distance
from .redaction import redact
from .units import DAY, HOUR, parse_duration

if TYPE_CHECKING:
    from .config import Config

__all__ = ["APIS", "MOVE_JOULES_PER_BYTE", "CarbonSettings", "ConstantIntensity", "Forecast",
           "ForecastFile", "HttpIntensity", "IntensitySource", "Step", "move_grams",
           "parse_time"]

# Energy of a byte a deferrable move carries, as if it crossed the internet (the energy
# model's remote figure, tierstore.energy): an upper estimate for a move inside one site,
# flat, so that schedules compare by when they move bytes, not where.
MOVE_JOULES_PER_BYTE = NETWORK_JOULES_PER_GB[Distance.REMOTE] / 1e9
APIS = ("carbon-aware-sdk", "electricity-maps")
DEFAULT_STEP = HOUR  # a last point with no duration and no neighbour to tell its step


def move_grams(nbytes: float, intensity: float) -> float:
    """Estimate the emissions of moving bytes at a carbon intensity.

    The bytes are costed at :data:`MOVE_JOULES_PER_BYTE` (as if they crossed the internet):
    an estimate, and shown as one.

    Parameters
    ----------
    nbytes : float
        The bytes moved.
    intensity : float
        The grid's carbon intensity when they move, in gCO2e/kWh.

    Returns
    -------
    float
        The estimated emissions, in gCO2e.
    """
    return nbytes * MOVE_JOULES_PER_BYTE / JOULES_PER_KWH * intensity


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a forecast: the intensity over a span of time.

    Attributes
    ----------
    start : float
        When the step begins (inclusive), in Unix seconds.
    end : float
        When it ends (exclusive), in Unix seconds.
    intensity : float
        The intensity over ``[start, end)``, in gCO2e/kWh.
    """

    start: float
    end: float
    intensity: float


class Forecast:
    """Intensity as a step function of time.

    Each step holds until the next begins; a time no step covers is unknown (None), never
    guessed.

    Parameters
    ----------
    steps : iterable of Step
        The steps, in any order; empty ones (``end <= start``) are dropped, the rest kept
        sorted by start.
    source : str, default "<forecast>"
        Where the forecast came from, for messages.
    """

    def __init__(self, steps: Iterable[Step], source: str = "<forecast>"):
        self.steps = tuple(sorted((s for s in steps if s.end > s.start),
                                  key=lambda s: s.start))
        self.source = source
        self._starts = [s.start for s in self.steps]

    @classmethod
    def from_points(cls, points: Iterable[tuple[float, float, float | None]],
                    source: str = "<forecast>") -> Forecast:
        """Make a forecast from points in time.

        Each point lasts its duration or until the next point, whichever ends first; the last
        one, without a duration, lasts as long as the usual (median) gap between points (an
        hour for a single point). Of points at the same time, the last given is kept.

        Parameters
        ----------
        points : iterable of (float, float, float or None)
            ``(time, intensity, duration or None)``: Unix seconds, gCO2e/kWh, seconds.
        source : str, default "<forecast>"
            Where the points came from, for messages.

        Returns
        -------
        Forecast
            The step function the points describe.
        """
        ordered = sorted({t: (t, v, d) for t, v, d in points}.values())
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(ordered)]
        usual = statistics.median(gaps) if gaps else DEFAULT_STEP
        steps = []
        for i, (t, value, duration) in enumerate(ordered):
            end = ordered[i + 1][0] if i + 1 < len(ordered) else t + (duration or usual)
            if duration:
                end = min(end, t + duration)
            steps.append(Step(t, end, value))
        return cls(steps, source)

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __repr__(self) -> str:
        return f"Forecast({self.source!r}, {len(self.steps)} steps)"

    @property
    def start(self) -> float:
        return self.steps[0].start if self.steps else math.nan

    @property
    def end(self) -> float:
        return self.steps[-1].end if self.steps else math.nan

    def at(self, when: float) -> float | None:
        """Look up the intensity at a time.

        Parameters
        ----------
        when : float
            The time, in Unix seconds.

        Returns
        -------
        float or None
            The intensity in gCO2e/kWh; None where no step covers ``when`` (never guessed).
        """
        i = bisect.bisect_right(self._starts, when) - 1
        if i < 0 or when >= self.steps[i].end:
            return None
        return self.steps[i].intensity

    def between(self, start: float, end: float) -> list[Step]:
        """Cut the forecast to a window.

        Parameters
        ----------
        start, end : float
            The window ``[start, end)``, in Unix seconds.

        Returns
        -------
        list of Step
            The steps that overlap the window, in order, each cut to it.
        """
        return [Step(max(s.start, start), min(s.end, end), s.intensity) for s in self.steps
                if s.end > start and s.start < end]


class IntensitySource(ABC):
    """Where the grid's carbon intensity comes from.

    One small contract (:meth:`forecast`, :meth:`describe`), one kind of source per class.
    """

    @abstractmethod
    def forecast(self, start: float, end: float, site: str | None = None) -> Forecast:
        """Forecast the intensity over a window at a site.

        Parameters
        ----------
        start, end : float
            The window ``[start, end)``, in Unix seconds.
        site : str, optional
            The site asked about; None for any.

        Returns
        -------
        Forecast
            The intensity over the window as far as the source knows it (it may cover
            more, or less).

        Raises
        ------
        IntensityError
            If the source cannot answer (:class:`~tierstore.errors.IntensityUnavailable`,
            :class:`~tierstore.errors.IntensityMalformed`).
        """

    @abstractmethod
    def describe(self) -> str:
        """Describe the source in one line, for logs and ``plan``.

        Returns
        -------
        str
            Which source this is, never a credential.
        """

    def intensity(self, at: float, site: str | None = None) -> float | None:
        """Look up the intensity at a time and a site.

        Parameters
        ----------
        at : float
            The time, in Unix seconds.
        site : str, optional
            The site asked about; None for any.

        Returns
        -------
        float or None
            The intensity in gCO2e/kWh; None if the source does not know it.

        Raises
        ------
        IntensityError
            If the source cannot answer (see :meth:`forecast`).
        """
        return self.forecast(at, at + 1.0, site).at(at)


class ConstantIntensity(IntensitySource):
    """One intensity for all time and every site.

    A flat grid, where no hour is cleaner: nothing is worth waiting for.

    Parameters
    ----------
    value : float
        The intensity, in gCO2e/kWh (0 or more).

    Raises
    ------
    ValueError
        If ``value`` is not a finite number of 0 or more.
    """

    def __init__(self, value: float):
        self.value = _intensity(value, "constant")

    def forecast(self, start: float, end: float, site: str | None = None) -> Forecast:
        """Forecast the constant over a window.

        Parameters
        ----------
        start, end : float
            The window ``[start, end)``, in Unix seconds.
        site : str, optional
            Ignored: every site has the same intensity.

        Returns
        -------
        Forecast
            One step over the window.
        """
        return Forecast([Step(start, end, self.value)], self.describe())

    def describe(self) -> str:
        return f"a constant {self.value:g} gCO2e/kWh"


# -- times, values and JSON shapes -----------------------------------------------------------


def parse_time(value: object) -> float:
    """Parse a time given as Unix seconds or ISO 8601.

    A time without a zone is taken as UTC, as the intensity services give theirs.

    Parameters
    ----------
    value : object
        Unix seconds (a number, or text of one) or ISO 8601 text.

    Returns
    -------
    float
        The time, in Unix seconds.

    Raises
    ------
    ValueError
        If ``value`` is neither, or not finite.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(value.strip())
            except ValueError:
                raise ValueError(f"expected Unix seconds or an ISO 8601 time, got {value!r}"
                                 ) from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            seconds = parsed.timestamp()
    else:
        raise ValueError(f"expected Unix seconds or an ISO 8601 time, got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite time, got {value!r}")
    return seconds


def _intensity(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected {what} in gCO2e/kWh, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected {what} in gCO2e/kWh, got {value!r}") from None
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"expected {what} of 0 gCO2e/kWh or more, got {value!r}")
    return number


def _timespan(value: object) -> float:
    """The Carbon Aware SDK's ``duration`` of an emissions record, a .NET TimeSpan:
    ``"hh:mm:ss"``, perhaps ``"d.hh:mm:ss.fffffff"``."""
    match = _TIMESPAN.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a duration such as '01:00:00', got {value!r}")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * DAY + int(hours) * HOUR + int(minutes) * 60 + float(seconds)


_TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)")

Points = dict[str | None, list[tuple[float, float, float | None]]]  # site (None: any) -> points

_TIME_NAMES = ("time", "timestamp", "datetime")
_VALUE_NAMES = ("gco2e_per_kwh", "value", "rating", "carbonIntensity", "intensity")
_SITE_NAMES = ("site", "location", "zone")


def _first(row: Mapping[str, Any], names: Iterable[str]) -> Any:
    return next((row[name] for name in names if name in row and row[name] is not None), None)


def _record(row: object, into: Points, *, site: str | None = None,
            duration: Callable[[object], float | None] | None = None) -> None:
    """One time/value record of any of the shapes read (a plain row, a Carbon Aware SDK
    emissions or forecast record, an Electricity Maps forecast entry)."""
    if not isinstance(row, Mapping):
        raise ValueError(f"expected an object with a time and an intensity, got {row!r}")
    when, value = _first(row, _TIME_NAMES), _first(row, _VALUE_NAMES)
    if when is None or value is None:
        raise ValueError("expected a time (time, timestamp or datetime) and an intensity "
                         f"(gco2e_per_kwh, value, rating or carbonIntensity) in {row!r}")
    named = _first(row, _SITE_NAMES)
    seconds = None
    if row.get("duration") is not None:
        seconds = (duration or _plain_duration)(row["duration"])
    into.setdefault(site if named is None else str(named), []).append(
        (parse_time(when), _intensity(value, "an intensity"), seconds))


def _plain_duration(value: object) -> float:
    if isinstance(value, str) and ":" in value:
        return _timespan(value)
    return parse_duration(value, field="duration")


def _minutes(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a duration in minutes, got {value!r}")
    return float(value) * 60.0


def points_from_json(data: object) -> Points:
    """Intensity points from any JSON shape this module reads.

    - Electricity Maps: ``{"zone": Z, "forecast": [{"carbonIntensity", "datetime"}, ...]}``
      (``history`` and ``data`` lists too, and a single ``latest`` answer);
    - Carbon Aware SDK forecasts: ``[{"location", "forecastData": [{"timestamp",
      "duration" (minutes), "value"}, ...]}]``;
    - Carbon Aware SDK emissions, or plain rows: ``[{"location" or "site", "time",
      "rating" or "gco2e_per_kwh", "duration" ("hh:mm:ss" or seconds)}, ...]``;
    - a table of time -> intensity, or of site -> (time -> intensity).

    Raises ValueError on anything else (the callers name the file or URL).
    """
    points: Points = {}
    if isinstance(data, Mapping) and any(k in data for k in ("forecast", "history", "data")):
        zone = data.get("zone")
        rows = next(data[k] for k in ("forecast", "history", "data") if k in data)
        if not isinstance(rows, list):
            raise ValueError("expected a list of forecast entries")
        for row in rows:
            _record(row, points, site=None if zone is None else str(zone))
    elif isinstance(data, Mapping) and "carbonIntensity" in data:  # Electricity Maps latest
        _record(data, points)
    elif isinstance(data, Mapping):
        for name, value in data.items():
            if isinstance(value, Mapping):  # site -> (time -> intensity)
                for when, number in value.items():
                    points.setdefault(str(name), []).append(
                        (parse_time(when), _intensity(number, "an intensity"), None))
            else:
                points.setdefault(None, []).append(
                    (parse_time(name), _intensity(value, "an intensity"), None))
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, Mapping) and "forecastData" in item:  # Carbon Aware SDK
                rows = item["forecastData"]
                if not isinstance(rows, list):
                    raise ValueError("expected forecastData to be a list")
                location = item.get("location")
                for row in rows:
                    _record(row, points, site=None if location is None else str(location),
                            duration=_minutes)
            else:
                _record(item, points)
    else:
        raise ValueError(f"expected a JSON object or list, got {type(data).__name__}")
    if not any(points.values()):
        raise ValueError("no intensity in it")
    return points


def _pick(points: Points, site: str | None, where: str) -> list[tuple[float, float,
                                                                     float | None]]:
    """The points for ``site``: its own, else those that name no site, else (with one site
    only) that site's."""
    if site is not None and site in points:
        return points[site]
    if None in points:
        return points[None]
    if len(points) == 1:
        return next(iter(points.values()))
    raise IntensityMalformed(f"{where}: no intensity for site {site!r} (it has "
                             f"{', '.join(sorted(str(s) for s in points))})")


# -- a file ----------------------------------------------------------------------------------


class ForecastFile(IntensitySource):
    """A forecast (or a record) in a file.

    CSV with ``time,gco2e_per_kwh[,site]`` (a header row naming the columns is optional;
    ``value``, ``intensity`` and ``location`` are taken as names too), or JSON in any shape
    :func:`points_from_json` reads. Times are Unix seconds or ISO 8601; each point holds until
    the next. The file is read again when it changes (its modification time or size).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._read: tuple[tuple[int, int], Points] | None = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        """Describe the source in one line, for logs and ``plan``.

        Returns
        -------
        str
            The file's path.
        """
        return f"the forecast file {self.path}"

    def points(self) -> Points:
        """Read every site's points.

        The file is read again only when it changed (its modification time or size).

        Returns
        -------
        dict of str or None to list of (float, float, float or None)
            Site (None: any) to ``(time, intensity, duration or None)`` points.

        Raises
        ------
        IntensityMalformed
            If the file cannot be read, or is not a forecast.
        """
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise IntensityMalformed(f"{self.path}: cannot read the forecast "
                                     f"({exc.strerror})") from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if self._read is None or self._read[0] != stamp:
                self._read = (stamp, self._parse())
            return self._read[1]

    def forecast(self, start: float, end: float, site: str | None = None) -> Forecast:
        """Forecast the intensity at a site from the file.

        Parameters
        ----------
        start, end : float
            The window asked about, in Unix seconds; the whole file is returned.
        site : str, optional
            The site: its own points, else those that name no site, else (with one site
            only) that site's.

        Returns
        -------
        Forecast
            Every point of the file for the site.

        Raises
        ------
        IntensityMalformed
            If the file cannot be read, is not a forecast, or has no intensity for the site.
        """
        points = _pick(self.points(), site, str(self.path))
        return Forecast.from_points(points, str(self.path))

    def _parse(self) -> Points:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise IntensityMalformed(f"{self.path}: cannot read the forecast ({why})") \
                from None
        if text.lstrip().startswith(("{", "[")):
            try:
                return points_from_json(json.loads(text))
            except json.JSONDecodeError as exc:
                raise IntensityMalformed(f"{self.path}: not valid JSON ({exc.msg}, line "
                                         f"{exc.lineno})") from None
            except ValueError as exc:
                raise IntensityMalformed(f"{self.path}: {exc}") from None
        return _csv_points(text, str(self.path))


def _csv_points(text: str, source: str) -> Points:
    points: Points = {}
    columns: tuple[int, int, int | None] | None = None
    for number, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        at = f"{source}, line {number}"
        names = [cell.strip() for cell in row]
        if columns is None:
            columns = _header(names, at)
            if columns is not None:
                continue
            columns = (0, 1, 2 if len(names) > 2 else None)
        if len(names) <= max(c for c in columns if c is not None):
            raise IntensityMalformed(f"{at}: expected time,gco2e_per_kwh[,site], got "
                                     f"{len(names)} field{'' if len(names) == 1 else 's'}")
        try:
            site = names[columns[2]] if columns[2] is not None else None
            points.setdefault(site or None, []).append(
                (parse_time(names[columns[0]]), _intensity(names[columns[1]],
                                                           "an intensity"), None))
        except ValueError as exc:
            raise IntensityMalformed(f"{at}: {exc}") from None
    if not points:
        raise IntensityMalformed(f"{source}: no intensity in it (expected CSV rows "
                                 "time,gco2e_per_kwh[,site], or JSON)")
    return points


def _header(names: list[str], at: str) -> tuple[int, int, int | None] | None:
    """The columns a header row names (None if the row is data)."""
    lowered = [n.lower() for n in names]
    if not any(n in ("time", "timestamp", "datetime") for n in lowered):
        return None
    find = lambda options: next((i for i, n in enumerate(lowered) if n in options), None)  # noqa: E731
    when = find(("time", "timestamp", "datetime"))
    value = find(("gco2e_per_kwh", "value", "intensity", "rating", "carbonintensity"))
    if when is None or value is None:
        raise IntensityMalformed(f"{at}: the header has no intensity column (expected "
                                 "time,gco2e_per_kwh[,site])")
    return when, value, find(("site", "location", "zone"))


# -- a server --------------------------------------------------------------------------------


class HttpIntensity(IntensitySource):
    """A Carbon Aware SDK or Electricity Maps server.

    The Carbon Aware SDK's ``/emissions/forecasts/current?location=L`` is asked first; a
    server that has no forecasts (its JSON data source, say: 404, 501 or an empty answer) is
    asked for ``/emissions/bylocations?location=L&time=..&toTime=..`` instead. Electricity
    Maps is asked for ``/v3/carbon-intensity/forecast?zone=L``. The server is read with the
    standard library.

    Parameters
    ----------
    url : str
        The server's base URL (a trailing ``/`` is dropped); shown with its credentials
        redacted.
    api : {"carbon-aware-sdk", "electricity-maps"}, default "carbon-aware-sdk"
        Which API the server speaks.
    location : str, optional
        The grid region; by default the site asked about.
    token : str, optional
        Goes in the header each API expects (``auth-token``; ``Authorization: Bearer`` for
        the SDK) and nowhere else.
    timeout : float, default 10.0
        Seconds to wait for an answer.
    cache_for : float, default 600.0
        Seconds an answer is kept, per location.
    clock : callable, default time.monotonic
        The clock the cache is timed with.

    Raises
    ------
    ConfigError
        If ``api`` is not one of :data:`APIS`.
    """

    def __init__(self, url: str, *, api: str = APIS[0], location: str | None = None,
                 token: str | None = None, timeout: float = 10.0, cache_for: float = 600.0,
                 clock: Callable[[], float] = time.monotonic):
        if api not in APIS:
            raise ConfigError(f"expected one of {', '.join(APIS)}, got {api!r}",
                              field="carbon.api")
        self.url, self.api, self.location = url.rstrip("/"), api, location
        self._token, self.timeout, self.cache_for, self._clock = token, timeout, cache_for, clock
        self._cache: dict[str | None, tuple[float, Points]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HttpIntensity({redact(self.url)!r}, api={self.api!r})"

    def describe(self) -> str:
        """Describe the source in one line, for logs and ``plan``.

        Returns
        -------
        str
            The API and the URL, its credentials redacted; never the token.
        """
        return f"the {self.api} server at {redact(self.url)}"

    def forecast(self, start: float, end: float, site: str | None = None) -> Forecast:
        """Ask the server for the intensity over a window.

        An answer is kept for ``cache_for`` seconds per location, whatever window it was
        asked for.

        Parameters
        ----------
        start, end : float
            The window ``[start, end)``, in Unix seconds (the by-location fallback asks for
            it; the forecast routes answer what they have).
        site : str, optional
            The site asked about: the location, unless one was given.

        Returns
        -------
        Forecast
            What the server answered for the location.

        Raises
        ------
        IntensityUnavailable
            If the server cannot be reached, times out or answers with an HTTP error.
        IntensityMalformed
            If the answer is not a forecast, or has no intensity for the location.
        """
        location = self.location or site
        with self._lock:
            kept = self._cache.get(location)
            if kept is None or self._clock() - kept[0] >= self.cache_for:
                kept = (self._clock(), self._fetch(location, start, end))
                self._cache[location] = kept
        return Forecast.from_points(_pick(kept[1], location, redact(self.url)),
                                    self.describe())

    def _fetch(self, location: str | None, start: float, end: float) -> Points:
        if self.api == "electricity-maps":
            return self._get("/v3/carbon-intensity/forecast", {"zone": location})
        try:
            points = self._get("/emissions/forecasts/current", {"location": location})
        except _NoSuchRoute:
            points = {}
        except IntensityMalformed as exc:
            if "no intensity" not in str(exc):
                raise
            points = {}
        if points:
            return points
        return self._get("/emissions/bylocations", {
            "location": location, "time": _iso(start), "toTime": _iso(max(end, start + 1))})

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "tierstore"}
        if self._token:
            if self.api == "electricity-maps":
                headers["auth-token"] = self._token
            else:
                headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _get(self, path: str, query: Mapping[str, str | None]) -> Points:
        params = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        url = f"{self.url}{path}{'?' + params if params else ''}"
        shown = redact(url)
        request = urllib.request.Request(url, headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                body = answer.read(16 * 2**20)
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 501) and self.api == APIS[0] and "forecasts" in path:
                raise _NoSuchRoute from None
            raise IntensityUnavailable(f"{shown}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise IntensityUnavailable(f"cannot reach {shown}: {_words(reason)}") from None
        try:
            return points_from_json(json.loads(body))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise IntensityMalformed(f"{shown}: the answer is not JSON") from None
        except ValueError as exc:
            raise IntensityMalformed(f"{shown}: {exc}") from None


class _NoSuchRoute(Exception):
    """The server has no forecasts route (the SDK's JSON data source, say)."""


def _words(reason: object) -> str:
    text = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
    return " ".join(redact(text or type(reason).__name__).split())


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the [carbon] table ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CarbonSettings:
    """The config's ``[carbon]`` table.

    One intensity source (``constant``, ``forecast`` or ``url``, exactly one) and how long a
    deferrable move may wait for a cleaner hour (``max_deferral``). Without the table nothing
    is deferred. The token is read from the environment variable ``token_env`` names, never
    from the file.

    Attributes
    ----------
    constant : float, optional
        A constant intensity, in gCO2e/kWh.
    forecast : Path, optional
        A forecast file (:class:`ForecastFile`).
    url : str, optional
        An intensity server (:class:`HttpIntensity`), ``http://`` or ``https://``.
    api : {"carbon-aware-sdk", "electricity-maps"}, default "carbon-aware-sdk"
        The server's API (with ``url``).
    location : str, optional
        The grid region (with ``url``); by default the store's site.
    token_env : str, default "TIERSTORE_CARBON_TOKEN"
        The environment variable holding the server's token (with ``url``).
    timeout : float, default 10.0
        Seconds to wait for the server (with ``url``).
    cache_for : float, default 600.0
        Seconds an answer is kept (with ``url``).
    max_deferral : float, default one day
        The longest, in seconds, a deferrable move may wait for a cleaner hour.

    Raises
    ------
    ConfigError
        If not exactly one source is given, ``api`` is unknown, ``url`` is not http(s), the
        timeout is not positive or ``max_deferral`` is negative.
    """

    constant: float | None = None
    forecast: Path | None = None
    url: str | None = None
    api: str = APIS[0]
    location: str | None = None
    token_env: str = "TIERSTORE_CARBON_TOKEN"
    timeout: float = 10.0
    cache_for: float = 600.0
    max_deferral: float = DAY

    def __post_init__(self) -> None:
        chosen = [k for k in ("constant", "forecast", "url") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ConfigError("expected exactly one source: constant, forecast or url"
                              + (f" (got {', '.join(chosen)})" if chosen else ""),
                              field="carbon")
        if self.api not in APIS:
            raise ConfigError(f"expected one of {', '.join(APIS)}, got {self.api!r}",
                              field="carbon.api")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"expected an http:// or https:// URL, got "
                              f"{redact(self.url)!r}", field="carbon.url")
        if not (self.timeout > 0 and self.max_deferral >= 0):
            raise ConfigError("expected a positive timeout and a max_deferral of 0 or more",
                              field="carbon")

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, source: str | None = None,
                   home: Path | None = None) -> CarbonSettings:
        """Parse a ``[carbon]`` table as TOML gives it.

        Parameters
        ----------
        table : mapping
            The table.
        source : str, optional
            The file it came from, for messages.
        home : Path, optional
            What a relative ``forecast`` path is under (as given if None).

        Returns
        -------
        CarbonSettings
            The settings the table names.

        Raises
        ------
        ConfigError
            Naming the field, if an option is unknown or a value malformed, or the settings
            are inconsistent (see the class).
        """
        def error(name: str, message: str) -> ConfigError:
            return ConfigError(message, source=source, field=f"carbon.{name}")

        unknown = sorted(set(table) - _CARBON_KEYS)
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r} (expected one of "
                              f"{', '.join(sorted(_CARBON_KEYS))})", source=source,
                              field="carbon")
        values: dict[str, Any] = {}
        for name, value in table.items():
            if name == "constant":
                try:
                    values[name] = _intensity(value, "an intensity")
                except ValueError as exc:
                    raise error(name, str(exc)) from None
            elif name in ("timeout", "cache_for", "max_deferral"):
                values[name] = parse_duration(value, source=source, field=f"carbon.{name}")
            elif not isinstance(value, str) or not value:
                raise error(name, f"expected text, got {value!r}")
            elif name == "forecast":
                path = Path(value).expanduser()
                values[name] = path if path.is_absolute() or home is None else home / path
            else:
                values[name] = value
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(exc.message, source=source, field=exc.field) from None

    @classmethod
    def from_config(cls, config: Config) -> CarbonSettings | None:
        """Parse a config's ``[carbon]`` table.

        Parameters
        ----------
        config : Config
            The config.

        Returns
        -------
        CarbonSettings or None
            The settings; None without the table (nothing is deferred).

        Raises
        ------
        ConfigError
            As :meth:`from_table`.
        """
        if not config.carbon:
            return None
        return cls.from_table(config.carbon, source=config.source, home=config.home)

    def make_source(self, environ: Mapping[str, str] | None = None) -> IntensitySource:
        """Make the intensity source this table names.

        Parameters
        ----------
        environ : mapping of str to str, optional
            Where the token is read (``token_env``); the process's environment if None.

        Returns
        -------
        IntensitySource
            A :class:`ConstantIntensity`, :class:`ForecastFile` or :class:`HttpIntensity`.
        """
        if self.constant is not None:
            return ConstantIntensity(self.constant)
        if self.forecast is not None:
            return ForecastFile(self.forecast)
        assert self.url is not None
        environ = os.environ if environ is None else environ
        return HttpIntensity(self.url, api=self.api, location=self.location,
                             token=environ.get(self.token_env) or None, timeout=self.timeout,
                             cache_for=self.cache_for)


_CARBON_KEYS = {"constant", "forecast", "url", "api", "location", "token_env", "timeout",
                "cache_for", "max_deferral"}
