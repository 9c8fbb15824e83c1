"""The shard formats the loader knows, by the name the dataset index records: the contract
(:mod:`.base`), and WebDataset tar (:mod:`.tar`), Parquet (:mod:`.parquet`), Zarr chunks
(:mod:`.zarrarray`) and raw records (:mod:`.raw`)."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import InvalidIndex
from .base import ShardFormat
from .parquet import ParquetFormat
from .raw import RawFormat
from .tar import TarFormat
from .zarrarray import ZarrFormat

__all__ = ["FORMATS", "format_for_key", "resolve_formats"]

FORMATS: Mapping[str, type[ShardFormat]] = {
    "tar": TarFormat,
    "parquet": ParquetFormat,
    "zarr": ZarrFormat,
    "raw": RawFormat,
}
_EXTENSIONS = {".tar": "tar", ".parquet": "parquet", ".pq": "parquet"}


def format_for_key(key: str) -> str:
    """The format a shard's name suggests: ``.tar`` and ``.parquet``; anything else is raw."""
    for ext, name in _EXTENSIONS.items():
        if key.endswith(ext):
            return name
    return "raw"


def resolve_formats(names: set[str], overrides: Mapping[str, ShardFormat] | None = None
                    ) -> dict[str, ShardFormat]:
    """One format instance per name used by an index: the caller's (``ParquetFormat(
    columns=...)``) where given, else the default."""
    out: dict[str, ShardFormat] = {}
    for name in sorted(names):
        given = (overrides or {}).get(name)
        if given is not None:
            out[name] = given
        elif name in FORMATS:
            out[name] = FORMATS[name]()
        else:
            raise InvalidIndex(f"unknown shard format {name!r} (known: {', '.join(FORMATS)})")
    return out
