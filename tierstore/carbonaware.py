"""Carbon-aware moves for the daemon and ``tierstore plan``: the ``[carbon]`` source, its
forecast fetched, and the plan's moves scheduled by it
(:class:`~tierstore.policies.deferral.CarbonScheduler`, which is pure).

A source that cannot answer does not stop the moves: they run at once, each saying why, and
the error is kept (:attr:`CarbonAware.error`) for the daemon's log and metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .carbon import CarbonSettings, IntensitySource
from .config import Config
from .errors import IntensityError, one_line
from .policies.base import Plan, Snapshot
from .policies.deferral import CarbonScheduler, Schedule

__all__ = ["CarbonAware"]


class CarbonAware:
    """Schedules plans by ``source``'s forecast for ``site``, deferring by at most
    ``max_deferral`` seconds, at ``bandwidth`` bytes/s per pair of tiers (None: unlimited);
    ``clock`` is the time moves are scheduled at (the daemon's wall clock by default; a test
    moves it)."""

    def __init__(self, source: IntensitySource, *, max_deferral: float, site: str | None = None,
                 bandwidth: float | None = None, clock: Callable[[], float] = time.time):
        self.source, self.site, self.clock = source, site, clock
        self.max_deferral = max_deferral
        self.scheduler = CarbonScheduler(max_deferral, bandwidth)
        self.error: str | None = None  # the last forecast's failure, None when it answered
        self.intensity: float | None = None  # now, as the last forecast said

    @classmethod
    def from_config(cls, config: Config, *, bandwidth: float | None = None
                    ) -> CarbonAware | None:
        """From ``config``'s ``[carbon]`` table; None without one (nothing deferred)."""
        settings = CarbonSettings.from_config(config)
        if settings is None:
            return None
        return cls(settings.make_source(), max_deferral=settings.max_deferral,
                   site=config.site, bandwidth=bandwidth)

    def describe(self) -> str:
        return f"{self.source.describe()}, deferring up to {self.max_deferral:g} s"

    def schedule(self, plan: Plan, snapshot: Snapshot, copy_rate: float | None = None, *,
                 now: float | None = None, strict: bool = False) -> Schedule:
        """When each of ``plan``'s moves runs, at ``now`` (default: the clock). ``strict``
        raises the source's error instead of running everything now (``tierstore plan``)."""
        now = self.clock() if now is None else now
        try:
            forecast = self.source.forecast(now, now + self.max_deferral, self.site)
            self.error, self.intensity = None, forecast.at(now)
        except IntensityError as exc:
            if strict:
                raise
            forecast, self.error, self.intensity = None, one_line(exc), None
        return self.scheduler.schedule(plan, snapshot, forecast, now=now, copy_rate=copy_rate,
                                       unavailable=self.error)
