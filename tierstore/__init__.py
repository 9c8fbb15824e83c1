"""tierstore: tiered storage and data loading for machine-learning training.

Objects (dataset shards) live on tiers (hot local NVMe, warm S3-compatible storage, cold
archives); a crash-safe catalog records where; reads go to the best ready replica and fail
over; moves never lose data.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names are imported when first used (PEP 562), so that ``import tierstore`` is quick and the
# ``tierstore`` command gets control before the heavy imports (tierstore.entry).
_WHERE = {
    **dict.fromkeys(("Config", "TierClass", "TierConfig", "default_config", "load_config"),
                    "config"),
    **dict.fromkeys(("ChecksumMismatch", "ConfigError", "InvalidKey", "NoReadableReplica",
                     "ObjectExists", "ObjectNotFound", "TierError", "TierstoreError",
                     "TierUnavailable", "UnknownTier"), "errors"),
    **dict.fromkeys(("ObjectInfo", "Store"), "store"),
    **dict.fromkeys(("SyncStore", "open_store"), "sync"),
}

if TYPE_CHECKING:
    from .config import Config, TierClass, TierConfig, default_config, load_config
    from .errors import (
        ChecksumMismatch,
        ConfigError,
        InvalidKey,
        NoReadableReplica,
        ObjectExists,
        ObjectNotFound,
        TierError,
        TierstoreError,
        TierUnavailable,
        UnknownTier,
    )
    from .store import ObjectInfo, Store
    from .sync import SyncStore, open_store


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "ChecksumMismatch",
    "Config",
    "ConfigError",
    "InvalidKey",
    "NoReadableReplica",
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "Store",
    "SyncStore",
    "TierClass",
    "TierConfig",
    "TierError",
    "TierUnavailable",
    "TierstoreError",
    "UnknownTier",
    "default_config",
    "load_config",
    "open_store",
]
__version__ = "0.1.0"
