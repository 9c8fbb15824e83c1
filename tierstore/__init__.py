"""tierstore: tiered storage and data loading for machine-learning training.

Objects (dataset shards) live on tiers (hot local NVMe, warm S3-compatible storage, cold
archives); a crash-safe catalog records where; reads go to the best ready replica and fail
over; moves never lose data.
"""

from __future__ import annotations

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
