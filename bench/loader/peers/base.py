"""What every peer loader of ``tierstore bench loader --baselines`` is: one abstract base.

A peer writes the benchmark's samples into the data tier's bucket with its own writer, then
reads them back through its own documented loader with its own shuffle, one epoch at a time.
Everything else (the training loop, the timing, the memory and CPU sampling, the check that an
epoch gave every sample exactly once) is the bench's, the same for every loader.

The samples are the benchmark's: sample ``i`` has the size the workload drew for it and the key
``f"{i:08d}"``; its bytes come from :class:`SampleSource` (random, reproducible per sample, so
a writer in another process makes the same ones).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

__all__ = ["INSTALL_HINT", "Peer", "PeerSite", "SampleSource", "kept_s3fs"]

INSTALL_HINT = "pip install -c constraints.txt 'tierstore[peers]'"
_kept: list[Any] = []  # see kept_s3fs


def kept_s3fs(options: Mapping[str, Any]) -> Any:
    """A new s3fs filesystem, kept alive until the process exits. s3fs closes a collected
    filesystem's session on whatever event loop is running in the thread that collects it;
    collected on tierstore's loader loop thread, that raised "attached to a different loop"
    at the end of every bench run. At exit, nothing is running there."""
    import s3fs

    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    _kept.append(fs)
    return fs


@dataclass(frozen=True)
class SampleSource:
    """The benchmark's samples: ``sizes[i]`` bytes each, random and the same for every writer."""

    sizes: np.ndarray
    seed: int

    def __len__(self) -> int:
        return len(self.sizes)

    @staticmethod
    def key(i: int) -> str:
        return f"{i:08d}"

    def payload(self, i: int) -> bytes:
        return np.random.default_rng([self.seed, 3, i]).bytes(int(self.sizes[i]))


@dataclass(frozen=True)
class PeerSite:
    """Where a peer keeps its dataset (``s3://bucket/prefix``, on the data tier's S3 server)
    and its local cache, and how big that cache may grow (None: unbounded)."""

    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    bucket: str = ""
    prefix: str = ""
    cache_dir: Path = Path()
    cache_bytes: int | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def s3fs_options(self) -> dict[str, Any]:
        return {"key": self.access_key, "secret": self.secret_key,
                "client_kwargs": {"endpoint_url": self.endpoint_url}}

    def boto3_options(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url, "aws_access_key_id": self.access_key,
                "aws_secret_access_key": self.secret_key}

    @classmethod
    def of_storage_options(cls, url: str, options: Mapping[str, Any], prefix: str,
                           cache_dir: Path, cache_bytes: int | None) -> PeerSite:
        """The site in the bucket of an ``s3://`` tier with s3fs ``options``; ValueError for a
        tier the peers cannot reach the same way (not S3, or no explicit keys)."""
        if not url.startswith("s3://"):
            raise ValueError(f"the peers read from S3; the data tier is {url.split('://')[0]}")
        endpoint = (options.get("client_kwargs") or {}).get("endpoint_url") \
            or options.get("endpoint_url")
        key, secret = options.get("key"), options.get("secret")
        if not (endpoint and key and secret):
            raise ValueError("the peers need the data tier's endpoint_url, key and secret in "
                             "its options")
        bucket = url.removeprefix("s3://").split("/", 1)[0]
        return cls(str(endpoint), str(key), str(secret), bucket, prefix, cache_dir, cache_bytes)


class Peer(ABC):
    """One peer loader over one dataset: :meth:`write` it, :meth:`open` the loader, iterate
    :meth:`epoch` per epoch, :meth:`close`. Batches are
    :func:`~tierstore.cli.bench.loader.baselines.collate_payloads` dicts (``ids`` included)."""

    name: ClassVar[str]  # as --baselines names it
    title: ClassVar[str]  # in words, for the report
    package: ClassVar[str]  # its distribution on PyPI
    modules: ClassVar[tuple[str, ...]]  # what must be importable

    def __init__(self, site: PeerSite, source: SampleSource, *, batch_size: int, workers: int,
                 seed: int, shard_bytes: int):
        self.site = site
        self.source = source
        self.batch_size = batch_size
        self.workers = workers
        self.seed = seed
        self.shard_bytes = shard_bytes

    @classmethod
    def missing(cls) -> str | None:
        """Why this peer cannot run here (a package not installed), or None."""
        absent = [m for m in cls.modules if importlib.util.find_spec(m) is None]
        if absent:
            return f"{cls.package} is not installed ({INSTALL_HINT})"
        return None

    @abstractmethod
    def write(self) -> dict[str, Any]:
        """Write every sample into :attr:`site` with the peer's own writer; anything worth
        reporting about it."""

    @abstractmethod
    def open(self) -> None:
        """Build the peer's dataset and loader over what :meth:`write` wrote."""

    @abstractmethod
    def epoch(self, epoch: int) -> Iterable[Any]:
        """The loader, set for ``epoch`` (the peer's own shuffle for it)."""

    @abstractmethod
    def close(self) -> None:
        """Let the loader and its workers go."""

    def stored(self) -> dict[str, int]:
        """What the writer left in the bucket: ``objects`` and ``bytes``."""
        fs = kept_s3fs(self.site.s3fs_options())
        sizes = fs.du(self.site.url, total=False)
        return {"objects": len(sizes), "bytes": int(sum(sizes.values()))}

    def remove(self) -> None:
        """Remove what the writer left in the bucket."""
        fs = kept_s3fs(self.site.s3fs_options())
        if fs.exists(self.site.url):
            fs.rm(self.site.url, recursive=True)

    def describe(self) -> dict[str, Any]:
        """How this peer writes, reads, shuffles and caches (for the result document)."""
        return {"title": self.title, "url": self.site.url, "cache_bytes": self.site.cache_bytes}


@contextlib.contextmanager
def environment(wanted: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``wanted`` set, put back as it was after."""
    before = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class CachingPeer(Peer):
    """A peer that downloads into a local cache and whose client is configured by the
    environment: :meth:`open` builds its loader (:meth:`_build`) in :meth:`_environment`
    and keeps that environment until :meth:`close`."""

    shim: str | None = None  # the torchvision stand-in, when one was needed
    _loader: Any = None
    _held: contextlib.ExitStack | None = None

    @abstractmethod
    def _environment(self) -> contextlib.AbstractContextManager[None]:
        """The environment its client reads while it writes and reads."""

    @abstractmethod
    def _build(self) -> Any:
        """Its dataset and loader over what :meth:`write` wrote; the loader."""

    def open(self) -> None:
        self._held = contextlib.ExitStack()
        self._held.enter_context(self._environment())
        self._loader = self._build()

    def epoch(self, epoch: int) -> Iterable[Any]:
        return self._loader

    def close(self) -> None:
        self._loader = None
        if self._held is not None:
            self._held.close()
            self._held = None
