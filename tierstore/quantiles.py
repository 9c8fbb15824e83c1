"""Percentiles of measured values, as every report of tierstore's computes them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["percentile"]


def percentile(values: Sequence[float] | np.ndarray, q: float, *, empty: float = 0.0
               ) -> float:
    """The ``q``-th percentile (0-100, linear interpolation between the nearest ranks, as
    numpy's default); ``empty`` of no values."""
    if len(values) == 0:
        return empty
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))
