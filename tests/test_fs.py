"""The ``tier://`` fsspec filesystem: the libraries that use it, and fsspec's semantics.

Every test runs against real stores (local folders, moto, Ceph radosgw) through the real
libraries: pyarrow, pandas and zarr write and read through the filesystem, and what they read
is recorded by the store as accesses.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import zarr
from storefixtures import make_config, toml_for
from zarr.storage import FsspecStore

from tierstore import (
    Config,
    InvalidKey,
    NoReadableReplica,
    ObjectExists,
    ObjectNotFound,
    SyncStore,
    UnknownTier,
)
from tierstore.fs import TierFileSystem


@pytest.fixture
def fs(store: SyncStore) -> TierFileSystem:
    return TierFileSystem(store=store)


@pytest.fixture
def config_path(store_config: Config, tmp_path: Path) -> Iterator[str]:
    """The store's configuration as a TOML file, for filesystems fsspec makes by protocol."""
    path = tmp_path / "tierstore.toml"
    path.write_text(toml_for(store_config))
    yield str(path)
    TierFileSystem.clear_instance_cache()  # the next test's store lives elsewhere


def accesses(store: SyncStore, key: str) -> int:
    access = store.stat(key).access
    return 0 if access is None else access.count


def table(part: int) -> pa.Table:
    rows = range(part * 100, part * 100 + 100)
    return pa.table({"id": list(rows), "name": [f"row-{i}" for i in rows],
                     "value": [i * 0.5 for i in rows]})


# -- the libraries ---------------------------------------------------------------------------


def test_pyarrow_dataset_of_several_parquet_files(store: SyncStore, fs: TierFileSystem) -> None:
    for part in range(3):
        pq.write_table(table(part), f"datasets/t/part-{part}.parquet", filesystem=fs)
    keys = store.find("datasets/t/")
    assert keys == [f"datasets/t/part-{part}.parquet" for part in range(3)]
    assert {store.stat(key).tiers[0] for key in keys} == {"warm"}  # the default tier

    dataset = pads.dataset("datasets/t", filesystem=fs, format="parquet")
    assert sorted(dataset.files) == keys
    got = dataset.to_table().sort_by("id")
    assert got.equals(pa.concat_tables([table(p) for p in range(3)]))
    assert all(accesses(store, key) >= 1 for key in keys)

    # A single file may be named by its URL; a folder may not (pyarrow wants the names a
    # listing yields to start with the folder as given, and fsspec listings carry no protocol).
    one = pq.read_table("tier://datasets/t/part-1.parquet", filesystem=fs)
    assert one.equals(table(1))
    assert pq.read_table("datasets/t", filesystem=fs).num_rows == 300
    filtered = dataset.to_table(filter=pads.field("id") >= 250)
    assert filtered.num_rows == 50


def test_pandas_parquet_round_trip(store: SyncStore) -> None:
    options = {"store": store}
    df = pd.DataFrame({"a": np.arange(1000), "b": np.linspace(0, 1, 1000),
                       "c": [f"s{i % 7}" for i in range(1000)]})
    df.to_parquet("tier://frames/df.parquet", storage_options=options)
    assert store.exists("frames/df.parquet")
    before = accesses(store, "frames/df.parquet")
    back = pd.read_parquet("tier://frames/df.parquet", storage_options=options)
    pd.testing.assert_frame_equal(back, df)
    assert accesses(store, "frames/df.parquet") > before


@pytest.mark.parametrize("asynchronous", [True, False], ids=["async-fs", "sync-fs"])
def test_zarr_v3_array_round_trip(store: SyncStore, asynchronous: bool) -> None:
    # zarr asks for an asynchronous filesystem and only warns about a blocking one; this one
    # works either way, because its coroutines run on whichever loop awaits them.
    fs = TierFileSystem(store=store, asynchronous=asynchronous)
    data = np.arange(40 * 30, dtype="float32").reshape(40, 30)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "fs .* was not created with `asynchronous=True`")
        array = zarr.create_array(FsspecStore(fs, path="arrays/a"), shape=data.shape,
                                  chunks=(10, 10), dtype="float32", fill_value=0)
        array[:] = data
        reopened = zarr.open_array(FsspecStore(fs, path="arrays/a", read_only=True), mode="r")
        np.testing.assert_array_equal(reopened[:], data)
        np.testing.assert_array_equal(reopened[5:25, 3:17], data[5:25, 3:17])
    assert "arrays/a/zarr.json" in store.find("arrays/a/")
    assert len([k for k in store.find("arrays/a/") if "/c/" in k]) == 12  # 4 x 3 chunks
    assert accesses(store, "arrays/a/c/0/0") >= 2


def test_registered_protocol_with_a_config_file(store: SyncStore, config_path: str) -> None:
    assert fsspec.get_filesystem_class("tier") is TierFileSystem
    with fsspec.open("tier://docs/hello.txt", "wt", config=config_path) as f:
        f.write("hello, tiers\n")
    assert store.cat("docs/hello.txt") == b"hello, tiers\n"
    with fsspec.open("tier://docs/hello.txt", "rt", config=config_path) as f:
        assert f.read() == "hello, tiers\n"

    options = {"config": config_path}
    df = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    df.to_parquet("tier://frames/small.parquet", storage_options=options)
    pd.testing.assert_frame_equal(
        pd.read_parquet("tier://frames/small.parquet", storage_options=options), df)

    data = np.arange(200, dtype="int64").reshape(10, 20)
    zarr.open_array("tier://arrays/z", mode="w", shape=data.shape, chunks=(5, 5),
                    dtype="int64", storage_options=options)[:] = data
    back = zarr.open_array("tier://arrays/z", mode="r", storage_options=options)
    np.testing.assert_array_equal(back[:], data)
    assert "arrays/z/c/1/3" in store.find("arrays/z/")


# -- file objects ----------------------------------------------------------------------------


def test_seek_and_ranged_reads(store: SyncStore, fs: TierFileSystem) -> None:
    blob = np.random.default_rng(7).bytes(300_000)
    store.put("blobs/r.bin", blob)
    with fs.open("tier://blobs/r.bin", "rb", block_size=64 * 1024) as f:
        assert f.size == len(blob)
        assert f.read(10) == blob[:10]
        assert f.seek(200_000) == 200_000
        assert f.read(5000) == blob[200_000:205_000]
        assert f.tell() == 205_000
        f.seek(-100, os.SEEK_END)
        assert f.read() == blob[-100:]
        assert f.read(10) == b""  # at the end
        f.seek(1000)
        f.seek(50, os.SEEK_CUR)
        assert f.read(70_000) == blob[1050:71_050]  # across blocks
        with pytest.raises(ValueError):
            f.seek(-1)
    assert fs.cat_file("blobs/r.bin", start=123, end=456) == blob[123:456]
    assert fs.cat_file("blobs/r.bin", start=-20) == blob[-20:]
    assert fs.cat_ranges(["blobs/r.bin"] * 2, [0, 299_990], [4, 400_000]) == \
        [blob[:4], blob[299_990:]]


def test_reads_are_recorded_as_accesses(store: SyncStore, fs: TierFileSystem,
                                        tmp_path: Path) -> None:
    store.put("acc/a.bin", b"abcdef" * 100)
    assert accesses(store, "acc/a.bin") == 0
    fs.cat("tier://acc/a.bin")
    assert accesses(store, "acc/a.bin") == 1
    with fs.open("acc/a.bin") as f:
        f.read()
    assert accesses(store, "acc/a.bin") == 2
    fs.get("acc/a.bin", str(tmp_path / "a.bin"))
    assert accesses(store, "acc/a.bin") == 3
    fs.info("acc/a.bin")
    fs.ls("acc")
    fs.exists("acc/a.bin")  # metadata is not a read
    assert accesses(store, "acc/a.bin") == 3


def test_write_commits_on_close_only(store: SyncStore, fs: TierFileSystem) -> None:
    with fs.open("out/w.bin", "wb", block_size=5 * 2**20) as f:
        for _ in range(3):
            f.write(b"x" * 2_000_000)  # more than a block: spooled, not yet in the store
        assert not store.exists("out/w.bin")
    assert store.stat("out/w.bin").size == 6_000_000

    with pytest.raises(RuntimeError), fs.open("out/w.bin", "wb") as f:
        f.write(b"partial")
        raise RuntimeError("the writer failed")
    assert store.stat("out/w.bin").size == 6_000_000  # the old object stands

    with fs.transaction:
        with fs.open("out/t.bin", "wb") as f:
            f.write(b"later")
        assert not store.exists("out/t.bin")
    assert store.cat("out/t.bin") == b"later"


def test_empty_object(store: SyncStore, fs: TierFileSystem) -> None:
    with fs.open("out/empty.bin", "wb"):
        pass
    assert store.cat("out/empty.bin") == b""
    assert fs.info("out/empty.bin")["size"] == 0


def test_write_modes(store: SyncStore, fs: TierFileSystem) -> None:
    fs.pipe("modes/a", b"one")
    fs.pipe("modes/a", b"two")  # fsspec overwrites by default
    assert store.cat("modes/a") == b"two"
    with pytest.raises(ObjectExists):
        fs.open("modes/a", "xb")
    with pytest.raises(FileExistsError):
        fs.pipe_file("modes/a", b"three", mode="create")
    with fs.open("modes/b", "xb") as f:
        f.write(b"new")
    assert store.cat("modes/b") == b"new"
    with pytest.raises(ValueError, match="appended"):
        fs.open("modes/a", "ab")
    with pytest.raises(TypeError):
        fs.pipe_file("modes/c", "text is not bytes")  # type: ignore[arg-type]


def test_writes_go_to_the_chosen_tier(store: SyncStore) -> None:
    hot = TierFileSystem(store=store, tier="hot")
    hot.pipe("t/h.bin", b"hot bytes")
    assert store.stat("t/h.bin").tiers == ["hot"]
    with pytest.raises(UnknownTier):
        TierFileSystem(store=store, tier="lukewarm")


# -- files in and out ------------------------------------------------------------------------


def test_put_get_copy_move(store: SyncStore, fs: TierFileSystem, tmp_path: Path) -> None:
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    (local / "one.bin").write_bytes(b"1" * 1000)
    (local / "sub" / "two.bin").write_bytes(b"2" * 2000)
    fs.put(str(local), "up", recursive=True)
    assert store.find("up/") == ["up/one.bin", "up/sub/two.bin"]
    assert store.cat("up/sub/two.bin") == b"2" * 2000

    fs.put_file(str(local / "one.bin"), "single.bin")
    assert store.cat("single.bin") == b"1" * 1000

    down = tmp_path / "down"
    fs.get("up", str(down), recursive=True)
    assert (down / "sub" / "two.bin").read_bytes() == b"2" * 2000
    fs.get_file("single.bin", str(tmp_path / "single.bin"))
    assert (tmp_path / "single.bin").read_bytes() == b"1" * 1000

    fs.cp("up/one.bin", "copies/one.bin")
    assert store.cat("copies/one.bin") == b"1" * 1000
    fs.mv("copies/one.bin", "moved/one.bin")
    assert not store.exists("copies/one.bin")
    assert store.cat("moved/one.bin") == b"1" * 1000


def test_verify_option_checks_whole_reads(local_store: SyncStore) -> None:
    local_store.put("v/k.bin", b"good bytes")
    replica = local_store.stat("v/k.bin").replicas[0]
    root = Path(local_store.config.tiers[replica.tier].url.removeprefix("file://"))
    (root / replica.path).write_bytes(b"evil bytes")  # same size, other content
    assert TierFileSystem(store=local_store, verify=False).cat("v/k.bin") == b"evil bytes"
    with pytest.raises(NoReadableReplica):
        TierFileSystem(store=local_store, verify=True).cat("v/k.bin")
    with pytest.raises(NoReadableReplica):  # a copy must not bless corrupt bytes
        TierFileSystem(store=local_store).cp("v/k.bin", "v/copy.bin")


# -- listing and metadata --------------------------------------------------------------------


def test_ls_find_info_exists_rm(store: SyncStore, fs: TierFileSystem) -> None:
    for key, size in [("d/a.bin", 1), ("d/sub/b.bin", 2), ("d/sub/deep/c.bin", 3),
                      ("e.bin", 4)]:
        store.put(key, b"z" * size)

    assert fs.ls("d", detail=False) == ["d/a.bin", "d/sub"]
    assert fs.ls("tier://d/", detail=False) == ["d/a.bin", "d/sub"]
    assert sorted(fs.ls("", detail=False)) == ["d", "e.bin"]
    assert fs.ls("d/a.bin", detail=False) == ["d/a.bin"]
    listing = {e["name"]: e for e in fs.ls("d")}
    assert listing["d/sub"]["type"] == "directory"
    assert listing["d/a.bin"] | {"type": "file", "size": 1} == listing["d/a.bin"]

    assert fs.find("d") == ["d/a.bin", "d/sub/b.bin", "d/sub/deep/c.bin"]
    assert fs.find("tier://d", maxdepth=2) == ["d/a.bin", "d/sub/b.bin"]
    assert fs.find("d", withdirs=True) == ["d", "d/a.bin", "d/sub", "d/sub/b.bin",
                                           "d/sub/deep", "d/sub/deep/c.bin"]
    assert fs.find("d/sub/b.bin") == ["d/sub/b.bin"]
    assert fs.find("nothing/here") == []
    detail = fs.find("d", detail=True)
    assert detail["d/sub/deep/c.bin"]["size"] == 3
    assert fs.glob("d/**/*.bin") == ["d/a.bin", "d/sub/b.bin", "d/sub/deep/c.bin"]
    assert fs.du("d") == 6

    info = fs.info("tier://d/sub/b.bin")
    assert (info["name"], info["type"], info["size"]) == ("d/sub/b.bin", "file", 2)
    assert info["tiers"] == ["warm"]
    assert fs.info("d/sub") == {"name": "d/sub", "size": 0, "type": "directory"}
    assert fs.info("")["type"] == "directory"
    assert fs.size("e.bin") == 4
    assert fs.exists("d/sub") and fs.exists("e.bin") and not fs.exists("d/nope")
    assert fs.isfile("e.bin") and not fs.isfile("d")
    assert fs.isdir("d/sub/deep") and not fs.isdir("e.bin")
    fs.makedirs("d/new/folder")  # object-store semantics: nothing to make
    fs.mkdir("d/other")
    assert not fs.exists("d/new")

    with pytest.raises(IsADirectoryError):
        fs.rm("d/sub")
    fs.rm("tier://d/a.bin")
    assert not store.exists("d/a.bin")
    fs.rm("d/sub", recursive=True)
    assert store.find("d/") == []
    assert not fs.exists("d")
    fs.rm_file("e.bin")
    assert store.find() == []


def test_missing_keys_raise_file_not_found(fs: TierFileSystem, tmp_path: Path) -> None:
    for call in (lambda: fs.cat("no/such.bin"), lambda: fs.open("no/such.bin"),
                 lambda: fs.info("no/such.bin"), lambda: fs.ls("no/such"),
                 lambda: fs.rm("no/such.bin"), lambda: fs.rm_file("no/such.bin"),
                 lambda: fs.get_file("no/such.bin", str(tmp_path / "x")),
                 lambda: fs.cat_file("no/such.bin", start=0, end=4),
                 lambda: fs.cp_file("no/such.bin", "elsewhere.bin")):
        with pytest.raises(FileNotFoundError):
            call()
    with pytest.raises(ObjectNotFound):  # tierstore's own type, which is a FileNotFoundError
        fs.cat("no/such.bin")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("url", ["tier://a/../b", "tier://a/./b", "tier://a//b",
                                 "tier://.tierstore/partial/x", "tier://a/\x00b"])
def test_invalid_keys_raise_value_error(store: SyncStore, fs: TierFileSystem,
                                        url: str) -> None:
    with pytest.raises(ValueError, match="invalid key"):
        fs.cat(url)
    with pytest.raises(InvalidKey):
        fs.open(url, "rb")
    with pytest.raises(InvalidKey):
        fs.open(url, "wb")  # refused before any byte is written
    with pytest.raises(InvalidKey):
        fs.pipe(url, b"data")
    assert store.find() == []


def test_invalid_key_through_fsspec_open(store: SyncStore, config_path: str) -> None:
    with pytest.raises(ValueError, match=r"'\.\.' segments are not allowed"), \
            fsspec.open("tier://a/../b", "rb", config=config_path) as f:
        f.read()
    with pytest.raises(ValueError, match="invalid key"), \
            fsspec.open("tier://a/../b", "wb", config=config_path) as f:
        f.write(b"never")
    assert store.find() == []


# -- instances -------------------------------------------------------------------------------


def test_instances_are_cached_per_config_and_open_lazily(tmp_path: Path) -> None:
    paths = []
    for name in ("one", "two"):
        config = make_config(tmp_path / name, "local")
        path = tmp_path / f"{name}.toml"
        path.write_text(toml_for(config))
        paths.append(str(path))
    try:
        one, two = TierFileSystem(config=paths[0]), TierFileSystem(config=paths[1])
        assert one is not two
        assert TierFileSystem(config=paths[0]) is one
        assert fsspec.filesystem("tier", config=paths[0]) is one
        assert not (tmp_path / "one" / "catalog.db").exists()  # nothing opened yet
        one.pipe("k.bin", b"in one")
        assert (tmp_path / "one" / "catalog.db").exists()
        assert not two.exists("k.bin")
        assert TierFileSystem(config=paths[0], tier="hot") is not one
    finally:
        TierFileSystem.clear_instance_cache()


def test_pickles_by_config_and_reopens_the_store(tmp_path: Path) -> None:
    config = make_config(tmp_path / "home", "local")
    path = tmp_path / "tierstore.toml"
    path.write_text(toml_for(config))
    try:
        fs = TierFileSystem(config=str(path))
        fs.pipe("p/k.bin", b"pickled")
        blob = pickle.dumps(fs)
        assert pickle.loads(blob) is fs  # the same process: fsspec's cached instance

        # Another process (a DataLoader worker, say) opens the store itself.
        code = ("import pickle, sys; fs = pickle.loads(sys.stdin.buffer.read()); "
                "sys.stdout.buffer.write(fs.cat('p/k.bin'))")
        done = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True,
                              timeout=120, check=True)
        assert done.stdout == b"pickled"
    finally:
        TierFileSystem.clear_instance_cache()


def read_in_forked_child(fs: TierFileSystem, key: str) -> object:
    """What ``fs.cat(key)`` gives in a child forked after the parent used ``fs`` (as a
    DataLoader worker is): the bytes, or the repr of the error."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def work() -> None:
        try:
            send.send(fs.cat(key))
        except BaseException as exc:
            send.send(repr(exc))

    child = context.Process(target=work)
    child.start()
    try:
        return receive.recv() if receive.poll(120) else "no answer in 120 s"
    finally:
        child.join(30)


def test_survives_a_fork(store: SyncStore, fs: TierFileSystem, tmp_path: Path) -> None:
    fs.pipe("f/k.bin", b"forked")  # the parent has used the store and fsspec's IO loop
    assert read_in_forked_child(fs, "f/k.bin") == b"forked"

    path = tmp_path / "tierstore.toml"
    path.write_text(toml_for(store.config))
    try:
        by_config = TierFileSystem(config=str(path))
        assert by_config.cat("f/k.bin") == b"forked"
        assert read_in_forked_child(by_config, "f/k.bin") == b"forked"
    finally:
        TierFileSystem.clear_instance_cache()


def test_embedded_store_instances(store: SyncStore) -> None:
    fs = TierFileSystem(store=store)
    assert TierFileSystem(store=store) is not fs  # a store object is never a cache key
    assert TierFileSystem(store=store.aio).exists("anything") is False  # the async Store too
    with pytest.raises(TypeError, match="config=<path to a TOML file>"):
        pickle.dumps(fs)
    with pytest.raises(TypeError, match="cannot be pickled"):
        fs.to_json()
    with pytest.raises(ValueError, match="not both"):
        TierFileSystem(config="x.toml", store=store)
