"""``tierstore bench loader --find-max``: the most accelerators one node keeps busy.

The figure storage vendors publish from MLPerf Storage: the largest number of emulated
accelerators (``--accelerators``) whose every epoch keeps accelerator utilisation at or above
90%, each consuming batches at the workload's compute time per step. It is found per loader on
the same data by doubling the count from one until a trial falls short (or fails), then
bisecting between the last count kept and the first one not. Each trial starts cold: the
loader's cache emptied (tierstore's hot replicas dropped, a peer's cache folder removed; its
dataset, written once, stays), so that no trial inherits what an earlier one fetched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AU_BAR", "Trial", "find_max"]

AU_BAR = 0.9


@dataclass
class Trial:
    """One run of a loader with ``accelerators`` training processes: each epoch's AU (the
    lowest rank's) and samples/s, or the failure that ended it."""

    accelerators: int
    au: list[float] = field(default_factory=list)
    samples_per_s: list[float] = field(default_factory=list)
    failure: str | None = None

    @property
    def kept(self) -> bool:
        """Whether every epoch kept its accelerators busy enough."""
        return self.failure is None and bool(self.au) and min(self.au) >= AU_BAR

    def to_dict(self) -> dict[str, Any]:
        return {"accelerators": self.accelerators, "au": self.au,
                "samples_per_s": self.samples_per_s, "failure": self.failure,
                "kept": self.kept}


def find_max(trial: Callable[[int], Trial], most: int) -> tuple[int, list[Trial]]:
    """The largest count in ``1..most`` whose ``trial`` is :attr:`~Trial.kept` (0 when one
    accelerator already is not), and the trials run to find it, in order."""
    trials: list[Trial] = []

    def kept(n: int) -> bool:
        trials.append(trial(n))
        return trials[-1].kept

    good, bad, n = 0, most + 1, 1
    while good < most:
        if not kept(n):
            bad = n
            break
        good, n = n, min(2 * n, most)
    while bad - good > 1:
        middle = (good + bad) // 2
        if kept(middle):
            good = middle
        else:
            bad = middle
    return good, trials
