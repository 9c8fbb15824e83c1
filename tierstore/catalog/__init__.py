"""The catalog of objects, replicas and access statistics, and how to open one.

A :class:`Catalog`'s methods block; coroutines call them through :class:`AsyncCatalog`
(:mod:`.aio`), which keeps them off the event loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import CatalogError
from .aio import AsyncCatalog
from .base import (
    FETCHING,
    AccessStats,
    Catalog,
    Fence,
    Lease,
    ObjectRecord,
    PreloadRecord,
    Replica,
    ReplicaState,
    TierUsage,
)
from .sqlite import SqliteCatalog

if TYPE_CHECKING:
    from .postgres import PostgresCatalog

__all__ = [
    "FETCHING",
    "AccessStats",
    "AsyncCatalog",
    "Catalog",
    "Fence",
    "Lease",
    "ObjectRecord",
    "PostgresCatalog",
    "PreloadRecord",
    "Replica",
    "ReplicaState",
    "SqliteCatalog",
    "TierUsage",
    "open_catalog",
]


def __getattr__(name: str) -> Any:
    # psycopg is imported only by those who use PostgreSQL.
    if name == "PostgresCatalog":
        return _postgres()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _postgres() -> type[PostgresCatalog]:
    try:
        from .postgres import PostgresCatalog
    except ImportError as exc:
        raise CatalogError(f"a PostgreSQL catalog needs psycopg 3 ({exc}): "
                           "pip install 'tierstore[postgres]'") from exc
    return PostgresCatalog


def open_catalog(url: str, *, migrate: bool = True) -> Catalog:
    """Open the catalog a config names: ``sqlite:///PATH`` (embedded) or
    ``postgresql://[user@]host[:port]/dbname`` (shared; the password comes from the
    environment or a password file, as libpq finds it). It is migrated to this tierstore's
    schema unless ``migrate`` is false (``tierstore catalog migrate --check`` looks only)."""
    if url.startswith("sqlite:///"):
        return SqliteCatalog.from_url(url, migrate=migrate)
    if url.startswith(("postgresql://", "postgres://")):
        return _postgres().from_url(url, migrate=migrate)
    scheme = url.split("://", 1)[0] if "://" in url else url
    raise CatalogError(f"unsupported catalog {scheme!r}: expected sqlite:///PATH or "
                       "postgresql://host/dbname")
