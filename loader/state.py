"""Resumption state: how far each reader of an epoch got, and what it takes to go on.

A state is a plain dict (``torch.save`` and JSON both take it)::

    {"version": 2, "samples": N, "shards": S,               # the dataset it belongs to
     "seed": 0, "epoch": 3, "shuffle": True, "buffer_size": 512,
     "equalize": "none", "batch_size": 1,                   # the order it follows
     "world_size": 2, "num_workers": 4,                     # the layout it was read with
     "consumed": {"0/0": 117, "0/1": 116, ...},             # samples yielded per rank/worker
     "base": None,                                          # the state this run resumed
     "next_worker": {"0": 1, ...}}                          # per rank: whose batch is next

Resuming with the same layout skips each reader's yielded prefix of the same order, so the
rest comes in the same order (``next_worker``, written by :class:`~.TierLoader`, also keeps
the order in which a DataLoader takes batches from its workers). Resuming with another
layout (elastic) needs every reader's count (:func:`merge_states` of all ranks): the samples
still unread are computed exactly from the pure order and partitioned afresh over the new
layout; the new run's state keeps the old one as ``base``, so resuming again stays exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InvalidIndex
from .order import OrderSpec, consumed_mask

__all__ = ["STATE_VERSION", "dataloader_consumed", "exclude_mask", "merge_states", "spec_of"]

STATE_VERSION = 2  # 2: the shuffle buffer starts emitting before it is full
_SPEC_KEYS = ("seed", "epoch", "shuffle", "buffer_size", "equalize", "batch_size")


def spec_of(state: Mapping[str, Any]) -> OrderSpec:
    """The order a state follows."""
    try:
        return OrderSpec(**{k: state[k] for k in _SPEC_KEYS})
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a loader state (order: {exc})") from None


def check_state(state: Mapping[str, Any], samples: int, shards: int) -> None:
    """Refuse a state of another version or another dataset, naming the difference."""
    if not isinstance(state, Mapping) or state.get("version") != STATE_VERSION:
        raise ValueError(f"not a loader state of version {STATE_VERSION}")
    if (state.get("samples"), state.get("shards")) != (samples, shards):
        raise InvalidIndex(f"the state was saved for a dataset of {state.get('samples')} "
                           f"samples in {state.get('shards')} shards; this one has {samples} "
                           f"in {shards}")
    spec_of(state)


def exclude_mask(state: Mapping[str, Any] | None, starts: np.ndarray) -> np.ndarray | None:
    """The samples a state's run had no more use for (None for a fresh epoch)."""
    if state is None:
        return None
    readers = [f"{r}/{w}" for r in range(state["world_size"])
               for w in range(state["num_workers"])]
    missing = [name for name in readers if name not in state["consumed"]]
    if missing:
        raise ValueError(
            f"resuming with another number of ranks or workers needs the progress of every "
            f"reader of the saved run ({state['world_size']} ranks x {state['num_workers']} "
            f"workers); missing {', '.join(missing[:4])}{'...' if len(missing) > 4 else ''}: "
            "merge the states of all ranks (merge_states)")
    return consumed_mask(starts, spec_of(state), state["world_size"], state["num_workers"],
                         state["consumed"], exclude=exclude_mask(state.get("base"), starts))


def merge_states(states: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge the states of every rank into one, for an elastic resume.

    Parameters
    ----------
    states : iterable of mapping
        The states of a run's ranks (e.g. the ``all_gather``-ed states of a distributed
        run): each rank's readers' counts and ``next_worker`` are kept (a later state's win
        for a reader named twice).

    Returns
    -------
    dict
        One state holding the progress of every rank.

    Raises
    ------
    ValueError
        If there are no states, or they are of different epochs, orders or layouts.
    """
    merged: dict[str, Any] | None = None
    for state in states:
        if merged is None:
            merged = {**state, "consumed": dict(state["consumed"]),
                      "next_worker": dict(state.get("next_worker", {}))}
            continue
        same = {k: state.get(k) for k in (*_SPEC_KEYS, "samples", "world_size",
                                          "num_workers", "base")}
        if same != {k: merged.get(k) for k in same}:
            raise ValueError("cannot merge states of different epochs, orders or layouts")
        merged["consumed"].update(state["consumed"])
        merged["next_worker"] = {**merged.get("next_worker", {}),
                                 **state.get("next_worker", {})}
    if merged is None:
        raise ValueError("no states to merge")
    return merged


def dataloader_consumed(batches: int, samples: Sequence[int], batch_size: int, *,
                        drop_last: bool = False) -> list[int]:
    """Samples each worker had yielded once a ``DataLoader`` over an iterable dataset has
    returned ``batches`` batches.

    Such a loader asks its workers for batches in turn (worker 0, 1, ..., 0, ...), skipping
    workers that have run out, and returns them in that order (``in_order=True``, the
    default); ``samples`` is what each worker yields in the epoch.
    """
    per_worker = [n // batch_size if drop_last else -(-n // batch_size) for n in samples]
    taken = [0] * len(samples)
    left = batches
    while left > 0 and any(t < b for t, b in zip(taken, per_worker, strict=True)):
        for w, available in enumerate(per_worker):
            if left and taken[w] < available:
                taken[w] += 1
                left -= 1
    if left:
        raise ValueError(f"{batches} batches is more than the epoch holds "
                         f"({sum(per_worker)})")
    return [min(n, t * batch_size) for n, t in zip(samples, taken, strict=True)]
