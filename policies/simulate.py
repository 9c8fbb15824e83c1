"""``tierstore simulate``: compare policies on an access trace before deploying one.

::

    tierstore simulate --trace reads.csv --hot-capacity 16GiB --tick 1m

replays the trace (:mod:`.trace`) once per policy in virtual time (:mod:`.replay`) against the
configured tiers, their capacities (or those given) and the ``[policies]`` section, and shows
side by side, per policy, the share of reads and of bytes each tier served, the moves made
and the bytes they copied. ``configured`` is what ``tierstore daemon`` would run;
``recency``, ``frequency`` and ``lrfu`` are those settings with every tier scored one way;
``lru-baseline`` is the hot tier as a plain LRU cache.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tierstore.config import Config
from tierstore.errors import ConfigError

from .base import TierState, format_duration
from .config import PolicyConfig, Scoring
from .replay import MAX_TICKS, EngineReplay, LruReplay, Replay, Result, place
from .trace import Trace, TraceError

__all__ = ["CONFIGURED", "LRU", "POLICIES", "Simulation", "check_start", "simulation_tiers"]

LRU = "lru-baseline"
CONFIGURED = "configured"
# every policy a run may compare, in the order they are shown
POLICIES = (CONFIGURED, Scoring.RECENCY.value, Scoring.FREQUENCY.value, Scoring.LRFU.value, LRU)


def simulation_tiers(config: Config, capacities: Mapping[str, int] | None = None
                     ) -> tuple[TierState, ...]:
    """The configured tiers, empty, hottest first; ``capacities`` (by tier name or class)
    replace theirs."""
    capacities = capacities or {}
    tiers = [TierState(name=t.name, tier_class=t.tier_class,
                       capacity=capacities.get(t.name, capacities.get(t.tier_class.name.lower(),
                                                                       t.capacity)),
                       high_watermark=t.high_watermark, low_watermark=t.low_watermark,
                       site=t.site)
             for t in config.tiers.values()]
    return tuple(sorted(tiers, key=lambda t: (t.tier_class, t.name)))


@dataclass(frozen=True, kw_only=True)
class Simulation:
    """A trace, the tiers it is replayed on and the settings the policies start from.

    Attributes
    ----------
    trace : Trace
        The reads replayed.
    tiers : tuple of TierState
        The tiers (two or more), hottest first.
    config : PolicyConfig
        The configured settings the policies start from.
    start : str
        The tier objects start on: one colder than the hottest, which the policies fill.
    tick : float, default 60.0
        The engine plans every ``tick`` seconds of trace time.
    configured : str, default "tierstore's default settings"
        What the configured settings are, for :meth:`describe`.

    Raises
    ------
    ConfigError
        If there are fewer than two tiers, ``start`` is not a tier colder than the hottest,
        or ``tick`` is not positive and finite.
    TraceError
        If the trace at this tick would take more than ``MAX_TICKS`` plans.
    """

    trace: Trace
    tiers: tuple[TierState, ...]
    config: PolicyConfig
    start: str
    tick: float = 60.0
    configured: str = "tierstore's default settings"

    def __post_init__(self) -> None:
        check_start(self.tiers, self.start)
        if not 0 < self.tick < float("inf"):
            raise ConfigError(f"expected a positive tick, got {self.tick!r}", field="--tick")
        span = self.trace.end - self.trace.start
        if span / self.tick + 1 > MAX_TICKS:
            raise TraceError(f"{self.trace.source}: {format_duration(span)} of trace at a tick "
                             f"of {format_duration(self.tick)} is more than {MAX_TICKS:,} "
                             "plans; pass a longer --tick")

    def describe(self, policy: str) -> str:
        """Describe what a policy of the comparison runs.

        Parameters
        ----------
        policy : str
            One of :data:`POLICIES`.

        Returns
        -------
        str
            One line.
        """
        if policy == LRU:
            return f"{self.tiers[0].name} as a plain LRU cache of whole objects, no policies"
        if policy == CONFIGURED:
            return f"{self.configured} (what `tierstore daemon` runs)"
        return f"every tier scored by {policy}, other settings as configured"

    def policy_config(self, policy: str) -> PolicyConfig:
        """Make the settings a policy of the comparison runs with.

        Parameters
        ----------
        policy : str
            ``configured``, or a :class:`Scoring`'s value.

        Returns
        -------
        PolicyConfig
            The configured settings, or those with every tier scored by ``policy``.

        Raises
        ------
        ValueError
            If ``policy`` is neither.
        """
        if policy == CONFIGURED:
            return self.config
        return replace(self.config, scoring={}, default_scoring=Scoring(policy))

    def replay(self, policy: str) -> Replay:
        """Make a fresh replay of a policy, every object on the start tier.

        Parameters
        ----------
        policy : str
            One of :data:`POLICIES`.

        Returns
        -------
        Replay
            The replay, not run yet.
        """
        home = place(self.trace, self.tiers, self.start)
        if policy == LRU:
            return LruReplay(policy, self.describe(policy), self.tiers, self.trace, home)
        return EngineReplay(policy, self.describe(policy), self.policy_config(policy),
                            self.tiers, self.trace, home)

    def run(self, policies: Sequence[str] = POLICIES,
            advance: Callable[[str, int], None] | None = None) -> list[Result]:
        """Replay the trace under each policy.

        Policies whose settings are the same replay once.

        Parameters
        ----------
        policies : sequence of str, default POLICIES
            Which policies (of :data:`POLICIES`); one named twice runs once.
        advance : callable, optional
            ``advance(policy, reads)`` reports progress.

        Returns
        -------
        list of Result
            One per policy, in order.
        """
        done: list[tuple[object, Result]] = []  # settings are not hashable
        out = []
        for policy in dict.fromkeys(policies):
            same = LRU if policy == LRU else self.policy_config(policy)
            result = next((r for settings, r in done if settings == same), None)
            if result is None:
                step = None if advance is None else (lambda n, p=policy: advance(p, n))
                result = self.replay(policy).run(self.trace, self.tick, step)
                done.append((same, result))
            elif advance is not None:
                advance(policy, len(self.trace.reads))
            out.append(replace(result, policy=policy, description=self.describe(policy)))
        return out

    def to_json(self, results: Sequence[Result]) -> dict[str, Any]:
        """Describe the simulation and its results as JSON.

        Parameters
        ----------
        results : sequence of Result
            What :meth:`run` returned.

        Returns
        -------
        dict
            ``trace``, ``tick``, ``start_tier``, ``tiers`` and ``policies``.
        """
        return {"trace": self.trace.to_json(), "tick": self.tick, "start_tier": self.start,
                "tiers": [{"tier": t.name, "class": t.tier_class.name.lower(),
                           "capacity": t.capacity, "high_watermark": t.high_watermark,
                           "low_watermark": t.low_watermark} for t in self.tiers],
                "policies": [result.to_json() for result in results]}


def check_start(tiers: Sequence[TierState], start: str) -> None:
    names = [tier.name for tier in tiers]
    if len(names) < 2:
        raise ConfigError("a simulation needs two tiers or more", field="tiers")
    if start not in names[1:]:
        raise ConfigError(f"objects start on a tier colder than {names[0]} (the tier the "
                          f"policies fill): one of {', '.join(names[1:])}, not {start!r}",
                          field="--start-tier")


