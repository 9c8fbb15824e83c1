"""Symbolic links: a local tier follows none below its root (a link planted in a hot folder
shared with other pods must not lead a write, read or removal out of the tier), while its root
may itself be reached through one; ``tierstore put DIR`` follows the links in DIR, as
``aws s3 sync`` does, and refuses cycles and broken links, naming them, before it puts anything.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from storefixtures import make_config, toml_for

from tierstore import NoReadableReplica, SyncStore, TierClass, TierConfig, TierError, open_store
from tierstore.cli import main, plan_put
from tierstore.sync import _run
from tierstore.tier import Tier


def hot_root(store: SyncStore) -> Path:
    root = Path(store.aio.tier("hot").root)
    root.mkdir(parents=True, exist_ok=True)
    return root


def files_under(folder: Path) -> list[str]:
    """Files and links under ``folder``, not following links."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_symlink() or not p.is_dir())


def test_a_put_through_a_planted_link_is_refused(local_store: SyncStore,
                                                 tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = hot_root(local_store)
    (root / "d").symlink_to(outside)
    with pytest.raises(TierError, match=r"d \(to .*outside\) is a symbolic link"):
        local_store.put("d/x", b"payload", tier="hot")
    assert files_under(outside) == []
    catalog = local_store.aio.catalog
    record = catalog.get("d/x")
    assert record is None or not record.replicas
    assert catalog.pending() == []
    assert files_under(root) == ["d"]  # no partial file left behind either


def test_reads_and_removals_through_a_link_are_refused(local_store: SyncStore,
                                                       tmp_path: Path) -> None:
    """A folder of replicas swapped for a link to a folder with files of the same names."""
    local_store.put("d/x", b"mine", tier="hot")
    local_store.put("d/y", b"both", tier="hot")
    local_store.add_replica("d/y", "warm")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_bytes(b"theirs")
    (outside / "y").write_bytes(b"theirs")
    root = hot_root(local_store)
    for name in ("x", "y"):
        (root / "d" / name).unlink()
    (root / "d").rmdir()
    (root / "d").symlink_to(outside)

    with pytest.raises(NoReadableReplica, match="symbolic link"):
        local_store.cat("d/x")
    assert local_store.cat("d/y") == b"both"  # the read fails over to warm
    with pytest.raises(TierError, match="symbolic link"):
        local_store.rm("d/x")
    assert (outside / "x").read_bytes() == b"theirs"
    assert [f.path for f in _run(local_store.aio.tier("hot").walk())] == []


def test_a_link_as_the_last_name_is_refused_too(local_store: SyncStore,
                                                tmp_path: Path) -> None:
    local_store.put("k", b"mine", tier="hot")
    secret = tmp_path / "secret"
    secret.write_bytes(b"four")  # the same size: only the link check stops the read
    root = hot_root(local_store)
    (root / "k").unlink()
    (root / "k").symlink_to(secret)
    with pytest.raises(NoReadableReplica, match="symbolic link"):
        local_store.cat("k")
    with pytest.raises(TierError, match="symbolic link"):
        local_store.rm("k")
    assert secret.read_bytes() == b"four"


def test_a_root_reached_through_a_link_works(tmp_path: Path) -> None:
    """``/data -> /mnt/nvme``: the operator's link above the root is followed."""
    real = tmp_path / "nvme"
    real.mkdir()
    (tmp_path / "data").symlink_to(real)
    config = make_config(tmp_path / "store", "local")
    hot = dataclasses.replace(config.tiers["hot"], url=(tmp_path / "data" / "hot").as_uri())
    with open_store(dataclasses.replace(config, tiers={**config.tiers, "hot": hot})) as store:
        store.put("a/b", b"data", tier="hot")
        assert store.cat("a/b") == b"data"
        assert files_under(real / "hot") == ["a/b"]
        assert [f.path for f in _run(store.aio.tier("hot").walk())] == ["a/b"]
        store.rm("a/b")
        assert files_under(real / "hot") == []


def test_a_tier_lists_no_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_bytes(b"x")
    root = tmp_path / "root"
    tier = Tier(TierConfig(name="t", tier_class=TierClass.HOT, url=root.as_uri()))
    root.mkdir()
    (root / "real").write_bytes(b"abc")
    (root / "folder").symlink_to(outside)
    (root / "file").symlink_to(outside / "f")
    assert [(f.path, f.size) for f in _run(tier.walk())] == [("real", 3)]


# -- tierstore put DIR ------------------------------------------------------------------------


def test_put_dir_follows_links_to_files_and_folders(tmp_path: Path) -> None:
    shards = tmp_path / "elsewhere"
    shards.mkdir()
    (shards / "s0").write_bytes(b"0")
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "meta").write_bytes(b"m")
    (dataset / "train").symlink_to(shards)
    (dataset / "extra").symlink_to(shards / "s0")
    assert [key for _, key in plan_put([str(dataset)], "ds")] == ["ds/extra", "ds/meta",
                                                                    "ds/train/s0"]


@pytest.mark.parametrize("kind", ["cycle", "broken", "fifo"])
def test_put_dir_refuses_a_cycle_a_broken_link_and_a_fifo(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    dataset = tmp_path / "dataset"
    (dataset / "a").mkdir(parents=True)
    (dataset / "a" / "f").write_bytes(b"f")
    bad = dataset / "a" / "bad"
    if kind == "cycle":
        bad.symlink_to(dataset)
    elif kind == "broken":
        bad.symlink_to(tmp_path / "gone")
    else:
        os.mkfifo(bad)  # opening it to read would wait for a writer for ever
    config = make_config(tmp_path / "store", "local")
    toml = tmp_path / "store.toml"
    toml.write_text(toml_for(config))
    assert main(["--config", str(toml), "put", "-r", str(dataset), "ds"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and str(bad) in error, error
    assert {"cycle": "a cycle", "broken": "broken symbolic link",
            "fifo": "not a regular file"}[kind] in error
    with open_store(config) as store:
        assert store.find() == []  # nothing was put
