"""Sites at a real network distance for the tests: the benchmark's own
(:mod:`tierstore.cli.bench.locality.netsites`, with its delay wire
``bench/locality/tunwire.py``), re-exported.

One Linux network namespace per site, joined to the root namespace by a packet-level delay
wire, and one S3-compatible server (moto in server mode) per site. Only the distance is
simulated; the servers, TCP and the signals that kill them are real.
"""

from tierstore.cli.bench.locality.netsites import (
    NetSite,
    NetSites,
    SiteServer,
    namespaces_unavailable,
    reap_stale_namespaces,
)

__all__ = ["NetSite", "NetSites", "SiteServer", "namespaces_unavailable",
           "reap_stale_namespaces"]
