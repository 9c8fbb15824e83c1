"""MosaicML Streaming (``mosaicml-streaming``): MDS shards written by its ``MDSWriter`` straight
to the bucket, read by its ``StreamingDataset`` (shards downloaded whole into a local cache,
bounded by ``cache_limit``) under a plain ``DataLoader``, as its documentation shows.

Its S3 client is configured from the environment only (``S3_ENDPOINT_URL`` and the AWS keys):
the bench sets those while this peer writes and reads and puts the old values back after.
Shuffle: its own (``shuffle=True``, ``py1e``, a fixed ``shuffle_seed``; it counts epochs
itself, one per pass). ``streaming`` imports torchvision when imported: see :mod:`.shims`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from .base import CachingPeer, environment
from .shims import stand_in_torchvision

__all__ = ["MosaicPeer"]


class MosaicPeer(CachingPeer):
    name = "mosaic"
    title = "MosaicML Streaming"
    package = "mosaicml-streaming"
    modules = ("streaming",)

    def _environment(self) -> AbstractContextManager[None]:
        return environment({"S3_ENDPOINT_URL": self.site.endpoint_url,
                            "AWS_ACCESS_KEY_ID": self.site.access_key,
                            "AWS_SECRET_ACCESS_KEY": self.site.secret_key})

    def _import(self) -> Any:
        self.shim = stand_in_torchvision()
        import streaming

        return streaming

    def write(self) -> dict[str, Any]:
        streaming = self._import()
        with self._environment(), streaming.MDSWriter(
                out=self.site.url, columns={"key": "int", "bin": "bytes"}, compression=None,
                size_limit=self.shard_bytes, progress_bar=False) as sink:
            for i in range(len(self.source)):
                sink.write({"key": i, "bin": self.source.payload(i)})
        return {}

    def _build(self) -> Any:
        streaming = self._import()
        from torch.utils.data import DataLoader

        from ..baselines import collate_payloads

        streaming.base.util.clean_stale_shared_memory()
        dataset = streaming.StreamingDataset(
            remote=self.site.url, local=str(self.site.cache_dir), shuffle=True,
            shuffle_seed=self.seed, batch_size=self.batch_size,
            cache_limit=self.site.cache_bytes)
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=self.workers,
                          collate_fn=collate_payloads)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "writer": "streaming.MDSWriter (MDS, uncompressed)",
                "reader": "streaming.StreamingDataset under torch DataLoader",
                "shuffle": "its own (py1e, shuffle_seed)",
                "cache": "local, cache_limit = the hot capacity" if self.site.cache_bytes
                else "local, unbounded", "torchvision": self.shim or "real"}
