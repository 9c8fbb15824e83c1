"""``TierDataset.from_url``: shards another tool wrote under a tier, named as WebDataset users
name theirs (brace patterns, or a folder), are adopted and indexed on first use and then read
like any dataset, every sample exactly once; the next use adopts and indexes nothing again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from storefixtures import make_config, tar_shard

from tierstore import open_store
from tierstore.loader import TierDataset, TierLoader
from tierstore.loader.fromurl import expand_braces


def test_brace_patterns_expand_as_webdataset_reads_them() -> None:
    assert expand_braces("shard-{000..003}.tar") == [f"shard-{i:03d}.tar" for i in range(4)]
    assert expand_braces("{a,b}-{8..10}") == ["a-8", "a-9", "a-10", "b-8", "b-9", "b-10"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def _shards(folder: Path, count: int, per: int = 6) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    keys = []
    for s in range(count):
        samples = [(f"s{s:02d}_{i:02d}", os.urandom(300 + i), i % 4) for i in range(per)]
        keys += [key for key, _, _ in samples]
        (folder / f"shard-{s:06d}.tar").write_bytes(tar_shard(samples))
    return keys


def test_local_shards_by_pattern_load_once_and_are_adopted_once(tmp_path: Path) -> None:
    config = make_config(tmp_path, "local")
    warm = tmp_path / "tiers" / "warm"
    keys = _shards(warm / "wds", 4)
    _shards(warm / "wds-other", 1)  # beside them, not named: left alone
    url = f"{warm.as_uri()}/wds/shard-{{000000..000003}}.tar"
    dataset = TierDataset.from_url(url, config)
    got = [k for batch in TierLoader(dataset, batch_size=5, num_workers=2)
           for k in batch["__key__"]]
    assert sorted(got) == sorted(keys)
    with open_store(config) as store:
        assert "warm" in store.stat("wds/shard-000002.tar").tiers  # (and hot: its fill)
        assert not store.exists("wds-other/shard-000000.tar")
    written = (warm / "wds" / "index.json").stat()
    again = TierDataset.from_url(url, config)  # the index names these shards: kept as it is
    assert len(again.index) == len(keys)
    kept = (warm / "wds" / "index.json").stat()
    assert (kept.st_ino, kept.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)


def test_a_shard_written_over_is_read_anew_never_from_its_stale_copy(tmp_path: Path) -> None:
    """A shard loaded once (so filled into the hot tier), then written over in place with
    other samples: the next ``from_url`` adopts it again, indexes it again, and the loader
    reads the new samples, not the hot tier's copy of the old shard."""
    config = make_config(tmp_path, "local")
    warm = tmp_path / "tiers" / "warm"
    keys = _shards(warm / "wds", 3)
    url = f"{warm.as_uri()}/wds/shard-{{000000..000002}}.tar"
    loaded = [k for batch in TierLoader(TierDataset.from_url(url, config), batch_size=4,
                                        num_workers=2) for k in batch["__key__"]]
    assert sorted(loaded) == sorted(keys)
    with open_store(config) as store:
        assert "hot" in store.stat("wds/shard-000001.tar").tiers
    fresh = [(f"new_{i:02d}", os.urandom(200 + i), i % 4) for i in range(9)]
    (warm / "wds" / "shard-000001.tar").write_bytes(tar_shard(fresh))
    dataset = TierDataset.from_url(url, config)
    got = [k for batch in TierLoader(dataset, batch_size=4, num_workers=2)
           for k in batch["__key__"]]
    expected = [k for k in keys if not k.startswith("s01_")] + [k for k, _, _ in fresh]
    assert sorted(got) == sorted(expected)


def test_a_bucket_folder_loads_through_the_store(request: pytest.FixtureRequest,
                                                 tmp_path: Path) -> None:
    server = request.getfixturevalue("moto_server")
    bucket = server.new_bucket()
    local = tmp_path / "made"
    keys = _shards(local, 3)
    client = server.client()
    for path in sorted(local.iterdir()):
        client.put_object(Bucket=bucket, Key=f"warm/train/{path.name}", Body=path.read_bytes())
    try:
        config = make_config(tmp_path / "home", "moto", server, bucket)
        dataset = TierDataset.from_url(f"s3://{bucket}/warm/train/", config)
        assert sorted(s["__key__"] for s in dataset) == sorted(keys)
    finally:
        server.delete_bucket(bucket)


def test_a_url_under_no_tier_names_the_tiers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lies under none of the store's tiers: hot"):
        TierDataset.from_url("s3://elsewhere/train/shard-{0..1}.tar",
                             make_config(tmp_path, "local"))


def test_shards_written_by_webdatasets_own_writer(tmp_path: Path) -> None:
    """As the issue asks: WebDataset's ShardWriter writes the shards (where the ``[peers]``
    extra is installed; CI has none), from_url reads every sample exactly once."""
    wds = pytest.importorskip("webdataset")
    config = make_config(tmp_path, "local")
    folder = tmp_path / "tiers" / "warm" / "wds"
    folder.mkdir(parents=True)
    with wds.ShardWriter(str(folder / "shard-%06d.tar"), maxcount=7) as sink:
        for i in range(30):
            sink.write({"__key__": f"k{i:03d}", "bin": os.urandom(100 + i), "cls": i % 3})
    dataset = TierDataset.from_url(f"{folder.as_uri()}/shard-{{000000..000004}}.tar", config)
    got = [k for batch in TierLoader(dataset, batch_size=4, num_workers=2)
           for k in batch["__key__"]]
    assert sorted(got) == [f"k{i:03d}" for i in range(30)]
