"""The shard format contract: what samples an object holds, and how to take one out.

A format is asked two things. At ingest, :meth:`ShardFormat.scan` reads a shard (its bytes,
or ranges of it through a reader) and returns its :class:`Layout`: how many samples it holds
and, where the format allows, the byte range of each (tar members) or of each group of samples
(Parquet row groups). That layout goes into the dataset index, so a loader never probes a
shard to learn its shape. At read time, :meth:`ShardFormat.open` takes a whole, verified shard
and returns a :class:`ShardReader` whose :meth:`~ShardReader.sample` gives one raw sample
(bytes, a dict of fields, an array) that no longer refers to the shard's buffer, so the shard
can be freed while its samples wait in a shuffle buffer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..index import DatasetIndex, ShardEntry

__all__ = ["Buffer", "Layout", "RangeReader", "ShardFormat", "ShardReader"]

Buffer = bytes | bytearray | memoryview
RangeReader = Callable[[int, int], Awaitable[bytes]]
"""``await read(start, end)``: bytes ``[start, end)`` of one object."""


@dataclass(frozen=True, slots=True)
class Layout:
    """What one shard holds, as recorded in the dataset index.

    Parameters
    ----------
    samples
        How many samples the shard holds.
    offsets
        Per-sample byte ranges where the format has them: sample ``i`` is the bytes
        ``[offsets[i], offsets[i + 1])``; ``None`` otherwise.
    meta
        Anything else the format needs to read the shard (JSON-compatible), such as Parquet
        row-group ranges or a Zarr chunk's position.
    """

    samples: int
    offsets: tuple[int, ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.samples < 0:
            raise ValueError(f"a shard cannot hold {self.samples} samples")
        if self.offsets is not None and len(self.offsets) != self.samples + 1:
            raise ValueError(f"{len(self.offsets)} offsets for {self.samples} samples "
                             f"(expected {self.samples + 1})")


class ShardReader(ABC):
    """One opened, verified shard."""

    @abstractmethod
    def sample(self, i: int) -> Any:
        """Raw sample ``i`` of the shard, copied out of the shard's buffer."""


class ShardFormat(ABC):
    """A way of packing samples into objects (one implementation per module)."""

    name: ClassVar[str]
    self_describing: ClassVar[bool] = True
    """Whether a shard's bytes alone say what it holds (tar, Parquet, raw files: yes; a Zarr
    chunk: no, its array's metadata does, so Zarr arrays are indexed as a whole)."""
    ranged_samples: ClassVar[bool] = False
    """Whether a reader's sample ``i`` lies within the index's ``offsets[i]`` to
    ``offsets[i + 1]`` and nothing else of the buffer is read (tar: yes): then a sample may be
    taken once those bytes are checked, before the rest of the shard is read (:mod:`.landing`)."""

    @abstractmethod
    def scan(self, data: Buffer, key: str) -> Layout:
        """The layout of a shard whose whole bytes are ``data``."""

    async def scan_ranged(self, read: RangeReader, size: int, key: str) -> Layout:
        """The layout of a shard of ``size`` bytes, read through ``read``.

        The default reads it whole; formats with a footer (Parquet) read less.
        """
        return self.scan(await read(0, size) if size else b"", key)

    def ranged_sample(self, data: Buffer, shard: ShardEntry, i: int) -> Any:
        """Raw sample ``i`` of a :attr:`ranged_samples` format out of its own bytes ``data``
        (the shard's ``offsets[i]`` to ``offsets[i + 1]``), as :meth:`open`'s reader gives it."""
        raise NotImplementedError(f"{self.name} samples are read from the whole shard")

    @abstractmethod
    def open(self, data: Buffer, shard: ShardEntry, index: DatasetIndex) -> ShardReader:
        """A reader over a shard's verified bytes (for :attr:`ranged_samples` formats, those
        of the samples taken; the rest may still be arriving)."""
