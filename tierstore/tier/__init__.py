"""Tiers: one base class and a backend per kind of storage.

``Tier(config)`` returns the backend its URL names: :class:`~.local.LocalTier` (a local
folder), :class:`~.s3.S3Tier` (S3-compatible object storage), :class:`~.fsspec.FsspecTier`
(any other fsspec filesystem). :mod:`.base` holds what they share: paths that cannot leave
the root, one client per event loop, the concurrency limit, the one edge where a backend's
errors become :mod:`tierstore.errors`, and fsspec's generic operations; :mod:`.recycle` the
files a local tier keeps to write over.
"""

from .base import PART_SIZE, PARTIAL_DIR, Chunk, Tier, TierFile
from .fsspec import FsspecTier
from .local import LocalTier
from .recycle import RECYCLE_DIR
from .s3 import PROBE_DIR, S3Tier

__all__ = ["PARTIAL_DIR", "PART_SIZE", "PROBE_DIR", "RECYCLE_DIR", "Chunk", "FsspecTier",
           "LocalTier", "S3Tier", "Tier", "TierFile"]
