"""A tier's capacity is a hard limit on writes: a put, copy or pin that would pass it is
refused (TierFull, ENOSPC) and leaves no row, no file and no partial; ``tierstore put DIR``
refuses the whole folder up front; ``tierstore plan`` says when a tier is over it."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from storefixtures import make_config, toml_for

from tierstore import Config, SyncStore, open_store
from tierstore.cli import main
from tierstore.errors import TierFull


def with_capacity(config: Config, tier: str, capacity: int | None) -> Config:
    bounded = dataclasses.replace(config.tiers[tier], capacity=capacity)
    return dataclasses.replace(config, tiers={**config.tiers, tier: bounded})


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Local tiers; hot holds at most 1000 bytes."""
    return with_capacity(make_config(tmp_path / "store", "local"), "hot", 1000)


@pytest.fixture
def store(config: Config) -> Iterator[SyncStore]:
    with open_store(config) as opened:
        yield opened


def hot_files(store: SyncStore) -> list[str]:
    root = Path(store.aio.tier("hot").root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def assert_nothing_left(store: SyncStore, key: str, files: list[str]) -> None:
    """No row, no pending replica, no file or partial beyond ``files`` on hot."""
    record = store.aio.catalog.get(key)
    assert record is None or not any(r.tier == "hot" for r in record.replicas)
    assert store.aio.catalog.pending() == []
    assert hot_files(store) == files


def test_a_put_past_capacity_is_refused_before_a_byte(store: SyncStore) -> None:
    store.put("a", os.urandom(600), tier="hot")
    with pytest.raises(TierFull, match=r"'hot'.*no room for 'b' \(600 bytes\): 600 of its "
                                       r"1000 bytes") as refused:
        store.put("b", os.urandom(600), tier="hot")
    assert refused.value.errno == errno.ENOSPC
    assert_nothing_left(store, "b", ["a"])
    store.put("c", os.urandom(400), tier="hot")  # exactly full is allowed


def test_a_stream_of_unknown_size_is_stopped_and_rolled_back(store: SyncStore) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield os.urandom(300)

    with pytest.raises(TierFull):
        store.put("s", chunks(), tier="hot")
    assert_nothing_left(store, "s", [])


def test_pin_and_add_replica_are_refused_when_they_do_not_fit(store: SyncStore) -> None:
    store.put("resident", os.urandom(600), tier="hot")
    store.put("k", os.urandom(600), tier="warm")
    with pytest.raises(TierFull):
        store.pin("k", "hot")
    with pytest.raises(TierFull):
        store.add_replica("k", "hot")
    assert store.stat("k").pinned is None
    assert_nothing_left(store, "k", ["resident"])


def test_an_overwrite_counts_the_bytes_it_replaces(store: SyncStore) -> None:
    store.put("k", os.urandom(800), tier="hot")
    store.put("k", os.urandom(900), tier="hot", overwrite=True)  # 900 once done
    assert store.stat("k").size == 900


def test_room_freed_by_this_or_another_store_counts_at_once(config: Config) -> None:
    """Usage read a moment ago is not trusted to refuse: a removal makes room at once, and a
    put by another process (here: another store on the same catalog) takes it."""
    with open_store(config) as first, open_store(config) as second:
        first.put("a", os.urandom(600), tier="hot")
        first.rm("a")
        first.put("b", os.urandom(600), tier="hot")
        with pytest.raises(TierFull):
            second.put("c", os.urandom(600), tier="hot")
        second.rm("b")
        first.put("c", os.urandom(600), tier="hot")


# -- the command line -------------------------------------------------------------------------


def cli(config: Config, tmp_path: Path, *args: str) -> int:
    toml = tmp_path / "store.toml"
    toml.write_text(toml_for(config))
    return main(["--config", str(toml), *args])


def test_put_dir_past_capacity_puts_nothing(config: Config, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "dataset"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / name).write_bytes(os.urandom(400))
    assert cli(config, tmp_path, "put", "-r", str(folder), "ds", "--tier", "hot") == 1
    error = capsys.readouterr().err.strip()
    assert error == ("tierstore: error: 3 files (1.2 KiB) would take tier 'hot' past its "
                     "capacity (1000 B of 1000 B free); nothing was put")
    with open_store(config) as store:
        assert store.find() == []


def test_plan_says_a_tier_is_over_capacity(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Pinned objects alone hold 300% of a capacity lowered under them: no policy may move
    them, and the plan says so rather than nothing."""
    config = make_config(tmp_path / "store", "local")
    with open_store(config) as store:
        for key in ("p1", "p2", "p3"):
            store.put(key, os.urandom(1000), tier="hot")
            store.pin(key, "hot")
    lowered = with_capacity(config, "hot", 1000)
    assert cli(lowered, tmp_path, "plan") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == (
        "warning: tier hot holds 2.9 KiB, 300% of its capacity (1000 B), 2.9 KiB of it pinned "
        "there; writes to it are refused until it is under (unpin, or raise its capacity)")
    assert cli(lowered, tmp_path, "--json", "plan") == 0
    tiers = {t["tier"]: t for t in json.loads(capsys.readouterr().out)["tiers"]}
    assert tiers["hot"]["over_capacity_after"] and not tiers["warm"]["over_capacity_after"]
