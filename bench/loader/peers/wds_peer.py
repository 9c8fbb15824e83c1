"""WebDataset (``webdataset``): tar shards written by its ``ShardWriter``, streamed back by
``wds.WebDataset`` and ``wds.WebLoader`` every epoch (no cache: WebDataset's default).

WebDataset opens URLs through its ``gopen`` dispatch table (``webdataset.gopen.gopen_schemes``,
the documented place to add a scheme); it has no ``s3://`` entry of its own, only ``pipe:``
commands such as ``aws s3 cp``. The bench registers one that streams the object with s3fs (a
sequential read-ahead of the whole object: one GET per 16 MiB), in-process so its CPU is
counted with the loader's. Shuffle: WebDataset's own, the shard list shuffled per epoch with
a fixed seed (``detshuffle``) and a 1,000-sample shuffle buffer in each worker; with several
accelerators the shard list is split by rank (``split_by_node``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from typing import Any

from .base import Peer, PeerSite, kept_s3fs

__all__ = ["WebDatasetPeer"]

READ_BLOCK = 16 << 20  # s3fs read-ahead per GET while streaming a shard
SHUFFLE_BUFFER = 1000  # samples (WebDataset's documented examples use 1,000-5,000)


class _S3Open:
    """A ``gopen`` handler for ``s3://`` URLs on one S3 server: an s3fs file per URL, one
    filesystem per process (DataLoader workers fork)."""

    def __init__(self, site: PeerSite):
        self.options = site.s3fs_options()
        self._fs: Any = None
        self._pid = -1

    def __call__(self, url: str, mode: str = "rb", bufsize: int = 8192, **kw: Any) -> Any:
        if self._pid != os.getpid():
            self._fs = kept_s3fs(self.options)
            self._pid = os.getpid()
        if mode == "rb":
            return self._fs.open(url, "rb", block_size=READ_BLOCK, cache_type="readahead")
        return self._fs.open(url, mode)


class WebDatasetPeer(Peer):
    name = "wds"
    title = "WebDataset (streams every epoch)"
    package = "webdataset"
    modules = ("webdataset",)

    _urls: list[str]
    _loader: Any = None

    def _register(self) -> None:
        # the module, not the function ``webdataset.gopen`` its package exports under that name
        schemes = importlib.import_module("webdataset.gopen").gopen_schemes
        schemes["s3"] = _S3Open(self.site)

    def write(self) -> dict[str, Any]:
        import webdataset as wds

        self._register()
        pattern = f"{self.site.url}/shard-%06d.tar"
        with wds.ShardWriter(pattern, maxsize=self.shard_bytes, maxcount=1 << 40,
                             verbose=0) as sink:
            for i in range(len(self.source)):
                sink.write({"__key__": self.source.key(i), "bin": self.source.payload(i)})
            shards = sink.shard
        self._urls = [pattern % n for n in range(shards)]
        return {}

    def open(self) -> None:
        import webdataset as wds

        from ..baselines import collate_payloads

        self._register()
        dataset = (wds.WebDataset(self._urls, shardshuffle=len(self._urls), detshuffle=True,
                                  seed=self.seed, nodesplitter=wds.split_by_node,
                                  workersplitter=wds.split_by_worker, empty_check=False)
                   .shuffle(SHUFFLE_BUFFER)
                   .batched(self.batch_size, collation_fn=collate_payloads, partial=True))
        self._loader = wds.WebLoader(dataset, batch_size=None, num_workers=self.workers,
                                     persistent_workers=self.workers > 0)

    def epoch(self, epoch: int) -> Iterable[Any]:
        # detshuffle counts epochs itself, in each (persistent) worker: one per iteration
        return self._loader

    def close(self) -> None:
        self._loader = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "writer": "webdataset.ShardWriter (tar)",
                "reader": "webdataset.WebDataset + WebLoader, s3:// through a gopen handler "
                          "(s3fs, read-ahead 16 MiB)",
                "shuffle": f"detshuffle of the shard list per epoch, {SHUFFLE_BUFFER}-sample "
                           "buffer", "cache": "none (streams every epoch)"}

