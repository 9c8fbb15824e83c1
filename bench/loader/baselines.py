"""The loaders a user would write instead of tierstore's, for ``tierstore bench loader``.

Both are a plain ``torch.utils.data.DataLoader`` over a map-style dataset whose
``__getitem__`` reads one sample's bytes, by the byte range the dataset index records, from
the data tier's own filesystem (s3fs for S3):

- ``plain``: ``fs.cat_file(path, start, end)``, one ranged GET per sample;
- ``filecache``: the same through fsspec's ``filecache::`` (the whole object is downloaded
  into a local cache folder on first use, then read locally; the cache has no size bound).
  filecache does not lock its cache between processes, so a worker can open a copy another
  worker is still downloading; a read that comes up short there is read from the tier
  itself instead and counted as not cached.

Every loader of the benchmark, tierstore's included, collates with :func:`collate_payloads`:
the samples' payloads concatenated into one ``uint8`` tensor with their lengths (variable-size
samples cannot be stacked), so what crosses from workers is tensors in shared memory.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import torch
from torch.utils.data import Dataset

from tierstore.loader import DatasetIndex
from tierstore.store import Store

__all__ = ["SampleReads", "SampleRef", "collate_payloads", "payload_of", "sample_id",
           "sample_refs"]

CACHED = "__cached__"  # a baseline sample's field: served from filecache's local copy


@dataclass(frozen=True, slots=True)
class SampleRef:
    """Where one sample's bytes are: a path on the data tier's filesystem and a range."""

    path: str
    start: int
    end: int


async def sample_refs(store: Store, index: DatasetIndex, tier: str) -> list[SampleRef]:
    """Every sample's byte range on ``tier``, in the index's order (tar and raw shards:
    per-sample offsets from the index)."""
    backend = store.tier(tier)
    refs: list[SampleRef] = []
    for shard in index.shards:
        if shard.offsets is None:
            raise ValueError(f"shard {shard.key!r} ({shard.format}) has no per-sample byte "
                             "ranges: the baselines read tar and raw datasets only")
        record = store.catalog.get(shard.key)
        replica = next((r for r in (record.ready if record else []) if r.tier == tier), None)
        if replica is None:
            raise ValueError(f"shard {shard.key!r} has no replica on tier {tier!r}")
        path = backend.full_path(replica.path)
        offsets = shard.offsets
        refs.extend(SampleRef(path, offsets[i], offsets[i + 1]) for i in range(shard.samples))
    return refs


def _tar_payloads(data: bytes) -> dict[str, bytes]:
    """The files of one sample's tar members (headers and padding dropped)."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        for member in archive:
            if member.isfile():
                handle = archive.extractfile(member)
                if handle is not None:
                    out[member.name.rsplit(".", 1)[-1]] = handle.read()
    return out


class SampleReads(Dataset[dict[str, Any]]):
    """A map-style dataset that reads sample ``i`` as ``refs[i]`` through fsspec.

    Parameters
    ----------
    refs
        Per sample: path and byte range on the filesystem of ``url``.
    fmt
        ``tar`` (the range holds the sample's tar members) or ``raw`` (the object itself).
    url, options
        The data tier's fsspec URL (its protocol is used) and storage options.
    cache_dir
        None: read through the filesystem itself (``plain``); a folder: through
        ``filecache::`` with its cache there.
    """

    def __init__(self, refs: Sequence[SampleRef], fmt: str, url: str,
                 options: Mapping[str, Any], cache_dir: str | None = None):
        self.refs = list(refs)
        self.fmt = fmt
        self.protocol = fsspec.core.split_protocol(url)[0] or "file"
        self.options = dict(options)
        self.cache_dir = cache_dir
        self._fs: Any = None
        self._direct: Any = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.refs)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fs": None, "_direct": None, "_pid": -1}

    def _filesystem(self, direct: bool = False) -> Any:
        """The filecache filesystem, or (``direct``, or no cache) the data tier's own; one
        of each per process (workers fork)."""
        if self._pid != os.getpid():
            self._fs, self._direct, self._pid = None, None, os.getpid()
        if direct or self.cache_dir is None:
            if self._direct is None:
                self._direct = fsspec.filesystem(self.protocol, **self.options)
            return self._direct
        if self._fs is None:
            self._fs = fsspec.filesystem("filecache", target_protocol=self.protocol,
                                         target_options=self.options,
                                         cache_storage=self.cache_dir)
        return self._fs

    def _range(self, ref: SampleRef) -> bytes:
        return bytes(self._filesystem(direct=True).cat_file(ref.path, start=ref.start,
                                                            end=ref.end))

    def __getitem__(self, i: int) -> dict[str, Any]:
        ref = self.refs[i]
        want = ref.end - ref.start
        cached = False
        if self.cache_dir is None:
            data = self._range(ref)
        else:
            fs = self._filesystem()
            cached = bool(fs._check_file(ref.path))
            with fs.open(ref.path, "rb") as handle:
                handle.seek(ref.start)
                data = handle.read(want)
            if len(data) != want:  # filecache has no lock between processes: a worker can
                cached, data = False, self._range(ref)  # find another's copy half written
        if len(data) != want:  # once seen here under load: an empty body
            data = self._range(ref)
            if len(data) != want:
                raise OSError(f"{self.protocol}://{ref.path}: asked for bytes {ref.start}-"
                              f"{ref.end}, got {len(data)} twice")
        sample: dict[str, Any] = (_tar_payloads(data) if self.fmt == "tar" else {"data": data})
        sample[CACHED] = cached
        sample["__index__"] = i
        return sample


def payload_of(sample: Any) -> bytes:
    """A raw sample's payload bytes: its bytes-valued fields (``__key__`` and the like left
    out) joined, or the sample itself when it is bytes."""
    if isinstance(sample, bytes | bytearray | memoryview):
        return bytes(sample)
    if isinstance(sample, Mapping):
        parts = [bytes(v) for k, v in sample.items()
                 if not str(k).startswith("__") and isinstance(v, bytes | bytearray | memoryview)]
        return parts[0] if len(parts) == 1 else b"".join(parts)
    raise TypeError(f"cannot take a payload out of a {type(sample).__name__} sample")


def sample_id(sample: Any) -> int:
    """The benchmark's number of a sample (it wrote sample ``i`` under the key ``f"{i:08d}"``),
    from what the loader handed over: ``__index__`` (the baselines), an int ``key`` field (the
    peers that store it as a column) or ``__key__`` (``.../00000017`` or ``00000017.bin``);
    -1 when there is none."""
    if isinstance(sample, Mapping):
        if "__index__" in sample:
            return int(sample["__index__"])
        key = sample.get("key")
        if isinstance(key, int | np.integer) or (isinstance(key, torch.Tensor)
                                                   and key.numel() == 1):
            return int(key)
        name = sample.get("__key__")
        if isinstance(name, str):
            stem = name.rsplit("/", 1)[-1].split(".", 1)[0]
            if stem.isdigit():
                return int(stem)
    return -1


def collate_payloads(samples: Sequence[Any]) -> dict[str, torch.Tensor]:
    """A batch: ``data`` (the payloads, concatenated, ``uint8``), ``lengths`` (per sample),
    ``cached`` (per sample: 1 if a cache served it, for the baselines' hit rates) and ``ids``
    (per sample, :func:`sample_id`: to check an epoch gave every sample exactly once)."""
    payloads = [payload_of(s) for s in samples]
    joined = bytearray().join(payloads)  # one copy, into memory the tensor may own
    data = (torch.frombuffer(joined, dtype=torch.uint8) if joined
            else torch.empty(0, dtype=torch.uint8))
    cached = [bool(s.get(CACHED, False)) if isinstance(s, Mapping) else False for s in samples]
    return {"data": data, "lengths": torch.tensor([len(p) for p in payloads], dtype=torch.int64),
            "cached": torch.tensor(cached, dtype=torch.bool),
            "ids": torch.tensor([sample_id(s) for s in samples], dtype=torch.int64)}
