"""Locality: where replicas are (sites and distances), how healthy and fast their endpoints
are, and which one a read goes to (ranking, failover, a deadline, hedged reads).

- :mod:`.topology` -- sites written ``region/zone/node`` and the static distance classes;
- :mod:`.settings` -- the ``[locality]`` table of the config;
- :mod:`.health` -- per-endpoint EWMA latency and throughput, p95, circuit breaker;
- :mod:`.selector` -- :class:`Locality`: scoring, ranking and the read loop the store uses.
"""

from .health import BreakerState, EndpointHealth, HealthSnapshot
from .settings import LocalitySettings
from .topology import Distance, Site, distance, parse_site

__all__ = ["BreakerState", "Distance", "EndpointHealth", "HealthSnapshot", "Locality",
           "LocalitySettings", "Scored", "Site", "distance", "parse_site"]


def __getattr__(name: str) -> object:
    # The selector needs the config and catalog, and the config imports this package: load
    # the selector only when asked for.
    if name in ("Locality", "Scored"):
        from . import selector

        return getattr(selector, name)
    raise AttributeError(name)
