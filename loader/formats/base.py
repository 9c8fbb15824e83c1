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

    Attributes
    ----------
    samples : int
        How many samples the shard holds (0 or more).
    offsets : tuple of int, optional
        Per-sample byte ranges where the format has them: sample ``i`` is the bytes
        ``[offsets[i], offsets[i + 1])``; ``None`` otherwise.
    meta : mapping, default {}
        Anything else the format needs to read the shard (JSON-compatible), such as Parquet
        row-group ranges or a Zarr chunk's position.

    Raises
    ------
    ValueError
        If ``samples`` is negative, or ``offsets`` does not hold ``samples + 1`` offsets.
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
        """Take one raw sample out of the shard.

        Parameters
        ----------
        i : int
            The sample's position in the shard.

        Returns
        -------
        Any
            The raw sample (bytes, a dict of fields, an array), copied out of the shard's
            buffer: it no longer refers to it, so the shard can be freed while the sample
            waits in a shuffle buffer.
        """


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
        """Read a shard's layout from its whole bytes.

        Parameters
        ----------
        data : bytes, bytearray or memoryview
            The shard's whole bytes.
        key : str
            The shard's key, for messages.

        Returns
        -------
        Layout
            What the shard holds, for the dataset index.

        Raises
        ------
        ShardFormatError
            If the bytes are not a valid shard of this format (or, for Zarr, a chunk: it
            does not describe itself; the array is indexed as a whole).
        """

    async def scan_ranged(self, read: RangeReader, size: int, key: str) -> Layout:
        """Read a shard's layout through ranged reads.

        The default reads it whole; formats with a footer (Parquet) read less, and raw files
        nothing.

        Parameters
        ----------
        read : callable
            ``await read(start, end)``: bytes ``[start, end)`` of the shard.
        size : int
            The shard's size in bytes.
        key : str
            The shard's key, for messages.

        Returns
        -------
        Layout
            What the shard holds, for the dataset index.

        Raises
        ------
        ShardFormatError
            If the bytes are not a valid shard of this format.
        """
        return self.scan(await read(0, size) if size else b"", key)

    def ranged_sample(self, data: Buffer, shard: ShardEntry, i: int) -> Any:
        """Take one raw sample out of its own bytes, without the rest of the shard.

        Only for :attr:`ranged_samples` formats (tar).

        Parameters
        ----------
        data : bytes, bytearray or memoryview
            The sample's own bytes: the shard's ``offsets[i]`` to ``offsets[i + 1]``.
        shard : ShardEntry
            The shard's index entry.
        i : int
            The sample's position in the shard.

        Returns
        -------
        Any
            The raw sample, as :meth:`open`'s reader gives it.

        Raises
        ------
        NotImplementedError
            If the format's samples are read from the whole shard.
        ShardFormatError
            If the index has no sample offsets for the shard (tar).
        """
        raise NotImplementedError(f"{self.name} samples are read from the whole shard")

    @abstractmethod
    def open(self, data: Buffer, shard: ShardEntry, index: DatasetIndex) -> ShardReader:
        """Open a reader over a shard's verified bytes.

        Parameters
        ----------
        data : bytes, bytearray or memoryview
            The shard's verified bytes (for :attr:`ranged_samples` formats, those of the
            samples taken; the rest may still be arriving).
        shard : ShardEntry
            The shard's index entry.
        index : DatasetIndex
            The dataset's index (Zarr reads the array's metadata from it).

        Returns
        -------
        ShardReader
            A reader over the shard's samples.

        Raises
        ------
        ShardFormatError
            If the bytes are not a readable shard of this format, or the index lacks what
            the format needs (tar offsets, the Zarr array).
        """
