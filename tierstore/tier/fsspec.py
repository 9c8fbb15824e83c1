"""A tier on any other fsspec filesystem (GCS, Azure, memory, ...): the base class's generic
operations, as fsspec does them; no receipts (every write is read back to verify it), no
multipart (an async backend's write is one request, held in memory)."""

from __future__ import annotations

from .base import Tier

__all__ = ["FsspecTier"]


class FsspecTier(Tier, fallback=True):
    """A tier on a filesystem no other backend names."""
