"""The errors the loader raises, under tierstore's one error root.

Each takes its whole message as its first argument: a ``torch.utils.data.DataLoader`` worker's
exception reaches the training loop as ``type(exc)(message)``, and a class that cannot be built
that way turns into a bare ``RuntimeError``. So the shard and sample are named in the message,
and also kept as attributes where the exception is raised in-process.
"""

from __future__ import annotations

from tierstore.errors import TierstoreError

__all__ = ["CorruptShard", "InvalidIndex", "SampleError", "ShardError", "ShardFormatError"]


class ShardError(TierstoreError, OSError):
    """A shard of a dataset could not be read; the message names the shard and the sample.

    Parameters
    ----------
    message : str
        The whole message (a worker's exception is rebuilt from it alone).
    shard : str, optional
        The shard's key, kept as :attr:`shard`.
    sample : int, optional
        The sample's position in the shard, kept as :attr:`sample`.
    """

    def __init__(self, message: str, *, shard: str | None = None, sample: int | None = None):
        super().__init__(message)
        self.shard = shard
        self.sample = sample

    def __str__(self) -> str:  # OSError would print its arguments as a tuple
        return str(self.args[0])


class CorruptShard(ShardError):
    """A shard's bytes do not match the checksum in the dataset index.

    Nothing of it was decoded.
    """


class ShardFormatError(TierstoreError, ValueError):
    """Bytes are not a valid shard of the format they were indexed as.

    A damaged tar header, a Parquet file without a footer, a Zarr layout this loader does not
    read.
    """


class SampleError(TierstoreError, ValueError):
    """Decoding or transforming one sample failed; the message names its shard and index."""


class InvalidIndex(TierstoreError, ValueError):
    """A dataset index is missing, malformed, or does not fit the options it is used with."""
