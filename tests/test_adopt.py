"""``tierstore adopt``: files written onto a tier by other tools (a local folder, an S3 bucket
through boto3, WebDataset-style tar shards made with ``tarfile``) become objects in place,
checksummed once, nothing copied; a second run adopts nothing again; what cannot be adopted
is refused and named; the adopted tar shards index and load."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from storefixtures import make_config, run_cycles, tar_shard, toml_for

from tierstore import open_store
from tierstore.checksum import checksum


def _files(root: Path) -> dict[str, bytes]:
    files = {"ds/a.bin": os.urandom(300_000), "ds/sub/b.txt": b"hello\n", "ds/empty": b""}
    for key, data in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    return files


def test_files_in_a_local_tier_are_adopted_in_place(tmp_path: Path) -> None:
    config = make_config(tmp_path, "local")
    warm = tmp_path / "tiers" / "warm"
    files = _files(warm)
    (warm / ".tierstore").mkdir(parents=True, exist_ok=True)
    (warm / ".tierstore" / "junk").write_bytes(b"tierstore's own folder: never adopted")
    (warm / "elsewhere.bin").write_bytes(b"not under the prefix")
    with open_store(config) as store:
        store.put("ds/taken", b"the store's own", tier="hot")
        (warm / "ds" / "taken").write_bytes(b"a file of a key the store holds elsewhere")
        report = store.adopt("ds", "warm")
        assert [key for key, _ in report.adopted] == sorted(files)
        assert report.bytes == sum(map(len, files.values())) and report.known == 0
        assert [path for path, _ in report.refused] == ["ds/taken"]
        for key, data in files.items():
            assert store.cat(key, verify=True) == data
            assert store.stat(key).checksum == checksum(data) and store.stat(key).tiers == ["warm"]
        assert (warm / "ds" / "a.bin").exists()  # in place: nothing copied
        again = store.adopt("ds/", "warm")
        assert again.adopted == () and again.known == len(files)
        assert not store.exists("elsewhere.bin")
        store.move("ds/a.bin", "hot")  # the store's now: moved like any other
        assert store.cat("ds/a.bin", verify=True) == files["ds/a.bin"]
        assert not (warm / "ds" / "a.bin").exists()


def test_objects_uploaded_to_a_bucket_are_adopted(request: pytest.FixtureRequest,
                                                   tmp_path: Path) -> None:
    server = request.getfixturevalue("moto_server")
    bucket = server.new_bucket()
    client = server.client()
    data = {f"warm/ds/part-{i}.bin": os.urandom(1000 + i) for i in range(5)}
    for name, body in data.items():
        client.put_object(Bucket=bucket, Key=name, Body=body)
    try:
        with open_store(make_config(tmp_path, "moto", server, bucket)) as store:
            report = store.adopt("ds", "warm", jobs=2)
            assert len(report.adopted) == 5 and not report.refused
            for name, body in data.items():
                assert store.cat(name.removeprefix("warm/"), verify=True) == body
            assert store.audit(deep=True).ok
    finally:
        server.delete_bucket(bucket)


def test_tar_shards_adopted_with_index_load_every_sample_once(tmp_path: Path) -> None:
    """WebDataset-style shards put on the tier by another tool: ``adopt --index --pin``,
    then a TierDataset reads each sample exactly once."""
    from tierstore.loader import TierDataset, TierLoader

    config = make_config(tmp_path, "local")
    toml = tmp_path / "store.toml"
    toml.write_text(toml_for(config))
    shards = tmp_path / "tiers" / "warm" / "wds"
    shards.mkdir(parents=True)
    n = 0
    for s in range(4):
        samples = [(f"sample{n + i:04d}", os.urandom(500 + i), (n + i) % 3) for i in range(7)]
        n += len(samples)
        (shards / f"shard-{s:06d}.tar").write_bytes(tar_shard(samples))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERSTORE_")}
    done = subprocess.run([sys.executable, "-m", "tierstore.cli", "--config", str(toml), "adopt",
                           "wds", "--tier", "warm", "--index", "--pin", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert len(shown["adopted"]) == 4 and shown["index"]["shards"] == 4 and shown["pinned"]
    with open_store(config) as store:
        assert store.stat("wds/shard-000000.tar").pinned == "warm"
        loader = TierLoader(TierDataset(store, "wds"), batch_size=4,
                            num_workers=2)
        keys = [key for batch in loader for key in batch["__key__"]]
        assert sorted(keys) == [f"sample{i:04d}" for i in range(n)]


@pytest.mark.parametrize("backend", ["local", "moto"])
def test_files_written_over_or_removed_after_adoption_are_never_served_stale(
        request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    """A file adopted, copied to other tiers, then written over behind the store's back (same
    size, other bytes): a read that reaches it refuses the stale copies (ObjectChanged), so
    does a copy made from it; adopting again takes the new content in and removes the stale
    copies; a file removed behind the store's back takes its object with it."""
    from tierstore.errors import ObjectChanged

    old = {"ds/a.bin": os.urandom(50_000), "ds/b.bin": os.urandom(20_000),
           "ds/c.bin": os.urandom(30_000)}
    new = bytes(reversed(old["ds/a.bin"]))
    new_c = bytes(reversed(old["ds/c.bin"]))
    if backend == "local":
        config = make_config(tmp_path, "local")
        warm = tmp_path / "tiers" / "warm"

        def write(key: str, data: bytes) -> None:
            (warm / key).parent.mkdir(parents=True, exist_ok=True)
            (warm / key).write_bytes(data)

        def remove(key: str) -> None:
            (warm / key).unlink()
    else:
        server = request.getfixturevalue("moto_server")
        bucket = server.new_bucket()
        client = server.client()
        config = make_config(tmp_path, "moto", server, bucket)

        def write(key: str, data: bytes) -> None:
            client.put_object(Bucket=bucket, Key=f"warm/{key}", Body=data)

        def remove(key: str) -> None:
            client.delete_object(Bucket=bucket, Key=f"warm/{key}")
    for key, data in old.items():
        write(key, data)
    with open_store(config) as store:
        assert len(store.adopt("ds", "warm").adopted) == 3
        store.add_replica("ds/a.bin", "cold")  # read after warm: warm is asked first
        store.add_replica("ds/c.bin", "hot")  # read before warm: the copy is served...
        assert store.cat("ds/c.bin") == old["ds/c.bin"]
        write("ds/c.bin", new_c)
        with pytest.raises(ObjectChanged, match="written over since"):
            store.cat("ds/c.bin")  # ...only while warm's file is as it was adopted
        write("ds/a.bin", new)
        with pytest.raises(ObjectChanged, match=r"tierstore adopt ds/a\.bin --tier warm"):
            store.cat("ds/a.bin", verify=True)
        with pytest.raises(ObjectChanged):
            store.add_replica("ds/a.bin", "hot")  # nor copied from a stale copy
        assert sorted(store.stat("ds/a.bin").tiers) == ["cold", "warm"]
        again = store.adopt("ds", "warm")
        assert again.changed == (("ds/a.bin", len(new)), ("ds/c.bin", len(new_c)))
        assert again.known == 1
        assert store.stat("ds/a.bin").tiers == ["warm"]  # the stale copy on cold removed
        assert store.stat("ds/c.bin").tiers == ["warm"]  # and on hot
        assert store.cat("ds/a.bin", verify=True) == new and store.cat("ds/c.bin") == new_c
        remove("ds/b.bin")
        gone = store.adopt("ds", "warm")
        assert gone.vanished == ("ds/b.bin",) and gone.known == 2
        assert not store.exists("ds/b.bin")
        assert store.adopt("ds", "warm") == dataclasses.replace(gone, vanished=())
        assert store.audit(deep=True).ok
    if backend == "moto":
        server.delete_bucket(bucket)


def test_a_copy_is_served_unchecked_for_adopted_check_seconds(tmp_path: Path) -> None:
    """``adopted_check``: how long a copy of an adopted object is served before its file is
    looked at again; a file written over within that time is not seen (by choice)."""
    config = dataclasses.replace(make_config(tmp_path, "local"), adopted_check=3600.0)
    warm = tmp_path / "tiers" / "warm"
    (warm / "ds").mkdir(parents=True)
    (warm / "ds" / "x.bin").write_bytes(b"old bytes")
    with open_store(config) as store:
        store.adopt("ds", "warm")
        store.add_replica("ds/x.bin", "hot")
        assert store.cat("ds/x.bin") == b"old bytes"  # looked at: as adopted
        (warm / "ds" / "x.bin").write_bytes(b"new bytes")
        assert store.cat("ds/x.bin") == b"old bytes"  # not again within the hour


def test_the_daemon_rescans_adopted_prefixes_so_stale_copies_go(tmp_path: Path) -> None:
    """The daemon's rescan (``--rescan-every``) takes in what `adopt` took in before: a
    file written over behind the store's back replaces its object's content (its copy on
    the hot tier, of the old, goes), a new file under a wholly adopted prefix is adopted,
    and of the files adopted by name only those are looked at."""
    config = make_config(tmp_path, "local")
    warm = tmp_path / "tiers" / "warm"
    for name in ("ds/a.bin", "ds/b.bin", "named/x.bin", "named/y.bin"):
        (warm / name).parent.mkdir(parents=True, exist_ok=True)
        (warm / name).write_bytes(os.urandom(1000))
    with open_store(config) as store:
        store.adopt("ds", "warm")
        asyncio.run(store.aio.adopt("named/", "warm", keys=["named/x.bin"]))
        store.add_replica("ds/a.bin", "hot")
    new = os.urandom(2000)
    (warm / "ds" / "a.bin").write_bytes(new)
    (warm / "ds" / "c.bin").write_bytes(b"new file")
    (warm / "named" / "x.bin").write_bytes(b"x again")

    (outcomes,) = run_cycles(config, rescan_every=0)
    assert outcomes["rescan_changed"] == 2 and outcomes["rescan_adopted"] == 1
    with open_store(config) as store:
        assert store.stat("ds/a.bin").tiers == ["warm"] and store.cat("ds/a.bin") == new
        assert store.cat("ds/c.bin", verify=True) == b"new file"
        assert store.cat("named/x.bin", verify=True) == b"x again"
        assert not store.exists("named/y.bin")  # never adopted: named ones only
        assert store.audit(deep=True).orphans == (("warm", "named/y.bin"),)
