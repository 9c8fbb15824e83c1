"""LitData (``litdata``): chunks written by its ``optimize`` straight to the bucket, read by its
``StreamingDataset`` (chunks downloaded into a local cache bounded by ``max_cache_size``)
under its ``StreamingDataLoader``, as its documentation shows.

Its S3 client takes the endpoint and keys as ``storage_options`` (boto3's arguments); its
chunk downloads and uploads go through obstore, which refuses an ``http://`` endpoint unless
``allow_http`` is set: LitData 0.2.76 gives no way to pass that (its obstore client options are
a module constant, and obstore's ``AWS_ALLOW_HTTP`` in the environment does not reach them),
so for an ``http://`` endpoint the bench adds ``allow_http`` to that constant before LitData
runs (workers fork and inherit it). Shuffle: its own
(``shuffle=True``, ``seed``; the loader counts epochs itself, one per pass).
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager
from typing import Any

from .base import CachingPeer, SampleSource, environment
from .shims import stand_in_torchvision

__all__ = ["LitDataPeer"]


def _item(source: SampleSource, i: int) -> dict[str, Any]:
    """``optimize``'s function: the sample of input ``i`` (module level, so it pickles)."""
    return {"key": i, "bin": source.payload(i)}


class LitDataPeer(CachingPeer):
    name = "litdata"
    title = "LitData"
    package = "litdata"
    modules = ("litdata", "obstore")

    def _environment(self) -> AbstractContextManager[None]:
        work = self.site.cache_dir.parent / f"{self.site.cache_dir.name}-optimize"
        return environment({"DATA_OPTIMIZER_CACHE_FOLDER": str(work / "chunks"),
                            "DATA_OPTIMIZER_DATA_CACHE_FOLDER": str(work / "data")})

    def _import(self) -> Any:
        self.shim = stand_in_torchvision()
        import litdata
        from litdata.streaming import downloader

        if self.site.endpoint_url.startswith("http://"):
            downloader._OBSTORE_CLIENT_OPTIONS = {**downloader._OBSTORE_CLIENT_OPTIONS,
                                                  "allow_http": True}
        return litdata

    def write(self) -> dict[str, Any]:
        litdata = self._import()

        with self._environment():
            litdata.optimize(fn=functools.partial(_item, self.source),
                             inputs=list(range(len(self.source))), output_dir=self.site.url,
                             chunk_bytes=self.shard_bytes, num_workers=1, mode="overwrite",
                             start_method="fork",
                             storage_options=self.site.boto3_options(), verbose=False)
        return {}

    def _build(self) -> Any:
        litdata = self._import()

        from ..baselines import collate_payloads

        self.site.cache_dir.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {}
        if self.site.cache_bytes is not None:
            kwargs["max_cache_size"] = self.site.cache_bytes
        dataset = litdata.StreamingDataset(
            input_dir=self.site.url, cache_dir=str(self.site.cache_dir), shuffle=True,
            seed=self.seed, storage_options=self.site.boto3_options(), **kwargs)
        return litdata.StreamingDataLoader(
            dataset, batch_size=self.batch_size, num_workers=self.workers,
            collate_fn=collate_payloads)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "writer": "litdata.optimize (chunks)",
                "reader": "litdata.StreamingDataset + StreamingDataLoader",
                "shuffle": "its own (seed)",
                "cache": "local, max_cache_size = the hot capacity" if self.site.cache_bytes
                else "local, its default bound (100 GB)", "torchvision": self.shim or "real"}
