"""A dataset named by where its shards lie, as WebDataset users name theirs:
``TierDataset.from_url("s3://bucket/train/shard-{000000..000123}.tar")``.

The shards must lie under one of the store's tiers (an S3 tier whose URL is the bucket, or a
prefix above the shards; a local tier's folder). Those not in the store's catalog yet are
adopted in place (:meth:`~tierstore.Store.adopt`: checksummed once, nothing copied), and the
dataset's index is written beside them (``index.json`` under their folder) unless one that
names exactly these shards is there already; the next run finds both and only reads the
index. A URL ending in ``/`` names every shard under that folder.
"""

from __future__ import annotations

import posixpath
import re

import fsspec

from tierstore.config import Config
from tierstore.store import Store
from tierstore.tier import Tier

from .index import INDEX_NAME, DatasetIndex, aread_index, awrite_index

__all__ = ["expand_braces", "prepare_url", "tier_path"]

_BRACES = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)")


def expand_braces(pattern: str) -> list[str]:
    """Every name ``pattern`` stands for, as WebDataset (braceexpand) reads it:
    ``{000..012}`` a range, zero-padded as written, ``{a,b}`` alternatives, several of either."""
    found = _BRACES.search(pattern)
    if found is None:
        return [pattern]
    head, body, tail = pattern[:found.start()], found.group(1), pattern[found.end():]
    span = _RANGE.fullmatch(body)
    if span is not None:
        lo, hi = span.group(1), span.group(2)
        padded = any(len(x.lstrip("-")) > 1 and x.lstrip("-").startswith("0") for x in (lo, hi))
        width = max(len(lo), len(hi)) if padded else 0
        step = 1 if int(hi) >= int(lo) else -1
        items = [str(i).zfill(width) for i in range(int(lo), int(hi) + step, step)]
    else:
        items = body.split(",")
    return [name for item in items for name in expand_braces(head + item + tail)]


def tier_path(config: Config, url: str) -> tuple[str, str]:
    """``(tier, path under its root)`` of the configured tier whose root holds ``url``; a
    ValueError naming the tiers' URLs where none does."""
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    for name, tier_config in config.tiers.items():
        tier = Tier(tier_config)
        if tier.protocol != protocol:
            continue
        path = fsspec.get_filesystem_class(protocol)._strip_protocol(url)
        if path.startswith(tier.root + "/"):
            return name, path[len(tier.root) + 1:]
    known = ", ".join(f"{n} ({t.url})" for n, t in config.tiers.items())
    raise ValueError(f"{url} lies under none of the store's tiers: {known}; add a tier whose "
                     "url holds it to the config")


async def prepare_url(store: Store, url: str, *, jobs: int = 8) -> str:
    """Adopt what ``url`` names (where not in the catalog yet) and index it (where no index
    names exactly those shards): the dataset's prefix."""
    named = [tier_path(store.config, u) for u in expand_braces(url)]
    tiers = {tier for tier, _ in named}
    if len(tiers) != 1:
        raise ValueError(f"{url} names shards on several tiers ({', '.join(sorted(tiers))})")
    (tier,) = tiers
    paths = [path for _, path in named]
    if url.endswith("/"):
        prefix, keys = paths[0].rstrip("/"), None
    else:
        prefix = posixpath.dirname(paths[0]) if len(paths) == 1 else \
            posixpath.commonpath(paths)
        keys = paths
    report = await store.adopt(prefix, tier, keys=keys, jobs=jobs)
    if report.refused:
        shown = "; ".join(f"{path}: {why}" for path, why in report.refused[:3])
        more = f" (and {len(report.refused) - 3} more)" if len(report.refused) > 3 else ""
        raise ValueError(f"cannot read {url} from the store: {shown}{more}")
    wanted = sorted(keys) if keys is not None else None
    if not await _indexed(store, prefix, wanted):
        await awrite_index(store, prefix, wanted, tier=tier, overwrite=True)
    return prefix


async def _indexed(store: Store, prefix: str, keys: list[str] | None) -> bool:
    """Whether ``prefix`` has an index naming exactly ``keys`` (None: any shards) with the
    content each holds now (a shard written over since, and adopted again, is indexed
    again: its samples moved)."""
    if not await store.exists(f"{prefix}/{INDEX_NAME}"):
        return False
    index: DatasetIndex = await aread_index(store, prefix)
    if keys is not None and sorted(shard.key for shard in index.shards) != keys:
        return False
    now = {record.key: record.checksum for record in await store.db.objects(prefix + "/")}
    return all(now.get(shard.key) == shard.checksum for shard in index.shards)
