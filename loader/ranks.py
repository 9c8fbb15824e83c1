"""Where this reader sits: its rank among the training processes and its DataLoader worker."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Placement", "current_placement", "world"]


@dataclass(frozen=True, slots=True)
class Placement:
    """One reader of an epoch: a DataLoader worker on a rank.

    Readers are numbered rank-major: ``slot = rank * num_workers + worker``.

    Attributes
    ----------
    rank : int, default 0
        The training process's rank, of ``world_size``.
    world_size : int, default 1
        The number of training processes (1 or more).
    worker : int, default 0
        The DataLoader worker, of ``num_workers``.
    num_workers : int, default 1
        The workers per rank (1 or more; 1 without workers).

    Raises
    ------
    ValueError
        If ``world_size`` or ``num_workers`` is under 1, or ``rank`` or ``worker`` is out of
        range.
    """

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or self.num_workers < 1:
            raise ValueError(f"world_size and num_workers must be at least 1, got "
                             f"{self.world_size} and {self.num_workers}")
        if not 0 <= self.rank < self.world_size or not 0 <= self.worker < self.num_workers:
            raise ValueError(f"rank {self.rank} of {self.world_size} or worker {self.worker} "
                             f"of {self.num_workers} is out of range")

    @property
    def name(self) -> str:
        """``"rank/worker"``: the key of this reader's entry in a state dict."""
        return f"{self.rank}/{self.worker}"


def world() -> tuple[int, int]:
    """``(rank, world_size)``: from ``torch.distributed`` when its process group is
    initialised, else the ``RANK`` and ``WORLD_SIZE`` environment variables (torchrun sets
    them), else ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    try:
        rank = int(os.environ.get("RANK", "0"))
        size = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"RANK={os.environ.get('RANK')!r} and WORLD_SIZE="
                         f"{os.environ.get('WORLD_SIZE')!r} must be integers") from None
    return rank, size


def current_placement(rank: int | None = None, world_size: int | None = None) -> Placement:
    """Find this process's placement.

    The DataLoader worker comes from ``torch.utils.data.get_worker_info()`` (worker 0 of 1
    outside workers).

    Parameters
    ----------
    rank, world_size : int, optional
        The rank and world size; where None, :func:`world`'s: from ``torch.distributed``
        when its process group is initialised, else the ``RANK`` and ``WORLD_SIZE``
        environment variables (torchrun sets them), else ``(0, 1)``.

    Returns
    -------
    Placement
        This reader.

    Raises
    ------
    ValueError
        If ``RANK`` or ``WORLD_SIZE`` is not an integer, or the placement is out of range.
    """
    from torch.utils.data import get_worker_info

    if rank is None or world_size is None:
        found_rank, found_size = world()
        rank = found_rank if rank is None else rank
        world_size = found_size if world_size is None else world_size
    info = get_worker_info()
    worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
    return Placement(rank, world_size, worker, workers)
