"""The loader's default collate: PyTorch's, except that what cannot be stacked is kept as a
list instead of failing the batch.

``torch.utils.data.default_collate`` stacks tensors and arrays and raises on anything of
differing shapes ("stack expects each tensor to be equal size": a batch of decoded JPEGs of
different sizes) or of a type it does not know (Pillow images). WebDataset's batching keeps
such fields as lists, and so does :func:`collate`: per field, a list where the values' shapes,
dtypes or types differ or where PyTorch has no collation, PyTorch's collation elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

__all__ = ["collate"]


def collate(batch: Sequence[Any]) -> Any:
    """Collate samples into one batch, keeping as lists what cannot be stacked.

    Dicts and tuples (named tuples too) are collated field by field; tensors and arrays are
    stacked where all have one shape and dtype; numbers become tensors; the rest (and
    whatever differs in shape, dtype, type or fields) is kept as a list.

    Parameters
    ----------
    batch : sequence
        The samples (at least one).

    Returns
    -------
    Any
        The batch, of the first sample's structure.
    """
    first = batch[0]
    if isinstance(first, Mapping):
        if all(isinstance(s, Mapping) and s.keys() == first.keys() for s in batch):
            return {name: collate([s[name] for s in batch]) for name in first}
        return list(batch)
    if isinstance(first, tuple | list) and all(
            isinstance(s, type(first)) and len(s) == len(first) for s in batch):
        fields = [collate(list(f)) for f in zip(*batch, strict=True)]
        return type(first)(*fields) if hasattr(first, "_fields") else type(first)(fields)
    if isinstance(first, torch.Tensor | np.ndarray):
        if all(type(s) is type(first) and s.shape == first.shape and s.dtype == first.dtype
               for s in batch):
            return default_collate(list(batch))
        return list(batch)
    if isinstance(first, bool | int | float) and all(type(s) is type(first) for s in batch):
        return default_collate(list(batch))
    return list(batch)
