"""tierstore.loader: datasets of shards in a store, read in a deterministic order.

- Shard formats behind one base (:class:`ShardFormat`): WebDataset-style tar, Parquet, Zarr v3
  arrays, raw files.
- The dataset index (``<prefix>/index.json``), written at ingest, so start-up reads one
  object and never lists or probes the store.
- The order of an epoch, a pure function of (seed, epoch, ranks, workers): :mod:`.order`.
- :class:`TierDataset`, an ``IterableDataset`` with async read-ahead that adapts its depth to
  the measured consumption rate and read latency within a byte budget, retries passing
  failures, verifies every shard, and resumes mid-epoch (also elastically).
- :class:`TierLoader`, the DataLoader over it: batches collated in the workers and handed
  over in reused shared-memory slots, ``set_epoch`` reaching persistent workers, exact
  resumption in the same batch order, workers shut down at once on an error, live metrics
  (:mod:`.metrics`) also served by the node's ``tierstore daemon``.
"""

from __future__ import annotations

from tierstore.errors import require

require("torch", part="tierstore.loader", package="PyTorch", extra="loader")

from .collate import collate
from .dataset import TierDataset, default_prefetch_bytes
from .decode import Decoder, as_bytes, to_tensors
from .errors import CorruptShard, InvalidIndex, SampleError, ShardError, ShardFormatError
from .formats import FORMATS
from .formats.base import Layout, ShardFormat, ShardReader
from .formats.parquet import ParquetFormat
from .formats.raw import RawFormat
from .formats.tar import TarFormat
from .formats.zarrarray import ZarrFormat
from .index import (
    DatasetIndex,
    ShardEntry,
    index_zarr_array,
    read_index,
    save_index,
    write_index,
)
from .ingest import write_parquet_shards, write_raw_files, write_tar_shards, write_zarr_array
from .order import OrderSpec, WorkerOrder, worker_order
from .prefetch import PrefetchStats
from .ranks import Placement, current_placement
from .readahead import ReadAhead
from .retry import Backoff
from .state import merge_states
from .tierloader import LoaderStats, TierLoader

__all__ = [
    "FORMATS",
    "Backoff",
    "CorruptShard",
    "DatasetIndex",
    "Decoder",
    "InvalidIndex",
    "Layout",
    "LoaderStats",
    "OrderSpec",
    "ParquetFormat",
    "Placement",
    "PrefetchStats",
    "RawFormat",
    "ReadAhead",
    "SampleError",
    "ShardEntry",
    "ShardError",
    "ShardFormat",
    "ShardFormatError",
    "ShardReader",
    "TarFormat",
    "TierDataset",
    "TierLoader",
    "WorkerOrder",
    "ZarrFormat",
    "as_bytes",
    "collate",
    "current_placement",
    "default_prefetch_bytes",
    "index_zarr_array",
    "merge_states",
    "read_index",
    "save_index",
    "to_tensors",
    "worker_order",
    "write_index",
    "write_parquet_shards",
    "write_raw_files",
    "write_tar_shards",
    "write_zarr_array",
]
