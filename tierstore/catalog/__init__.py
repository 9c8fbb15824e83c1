"""The catalog of objects, replicas and access statistics, and how to open one."""

from __future__ import annotations

from ..errors import CatalogError
from .base import AccessStats, Catalog, ObjectRecord, Replica, ReplicaState, TierUsage
from .sqlite import SqliteCatalog

__all__ = [
    "AccessStats",
    "Catalog",
    "ObjectRecord",
    "Replica",
    "ReplicaState",
    "SqliteCatalog",
    "TierUsage",
    "open_catalog",
]


def open_catalog(url: str) -> Catalog:
    """Open the catalog a config names (``sqlite:///PATH``)."""
    if url.startswith("sqlite:///"):
        return SqliteCatalog.from_url(url)
    scheme = url.split("://", 1)[0] if "://" in url else url
    raise CatalogError(f"unsupported catalog {scheme!r}: expected sqlite:///PATH")
