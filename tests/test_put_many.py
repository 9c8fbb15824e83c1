"""``put_many``: many small objects in batches, one catalog transaction to begin a batch and
one to commit it; each batch all or nothing, refused whole, rolled back whole, and whole or
absent after a SIGKILL at any point (local folders and S3)."""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from put_many_worker import BATCH, content, keys
from storefixtures import make_config, toml_for

from tierstore import Config, SyncStore, open_store
from tierstore.checksum import checksum
from tierstore.errors import InvalidKey, ObjectExists, TierError, TierFull
from tierstore.store.replicas import SMALL_OBJECT

WORKER = Path(__file__).with_name("put_many_worker.py")
KIB = 1024


def _files(root: Path) -> set[str]:
    """Every file under ``root`` but tierstore's own folder (its temporary names)."""
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and not p.relative_to(root).parts[0].startswith(".tierstore")}


def test_put_many_writes_small_objects_in_batches_and_large_ones_streamed(
        store: SyncStore, tmp_path: Path) -> None:
    """Bytes and file paths, nested folders, two objects over the batch limit; every object
    is readable with its checksum, each is reported once, and nothing else is left."""
    rng = random.Random(7)
    items: dict[str, bytes] = {f"many/{i % 5}/{i:03d}.bin": rng.randbytes(rng.randint(0, 9000))
                               for i in range(150)}
    items["many/big/a.bin"] = rng.randbytes(SMALL_OBJECT + 1)
    items["many/big/b.bin"] = rng.randbytes(SMALL_OBJECT * 3)
    paths = tmp_path / "files"
    paths.mkdir()
    sources: list[tuple[str, bytes | Path]] = []
    for n, (key, data) in enumerate(items.items()):
        if n % 3:
            sources.append((key, data))
        else:  # every third one as a file path
            (paths / f"{n}").write_bytes(data)
            sources.append((key, paths / f"{n}"))
    told: list[tuple[str, int]] = []
    store.put_many(sources, tier="warm", committed=lambda key, size: told.append((key, size)))
    assert sorted(told) == sorted((key, len(data)) for key, data in items.items())
    assert sorted(store.find("many/")) == sorted(items)
    for key, data in items.items():
        info = store.stat(key)
        assert (info.size, info.checksum, info.tiers) == (len(data), checksum(data), ["warm"])
        assert store.cat(key, verify=True) == data
    assert store.aio.catalog.pending() == []
    report = store.audit(deep=True)
    assert report.ok, report


def test_put_many_overwrites_only_when_told(store: SyncStore) -> None:
    """Without ``overwrite`` an existing key refuses its batch (nothing of it is written);
    with it the new bytes replace the old replicas, on the tier written and on others."""
    store.put("o/a", b"old a", tier="hot")
    store.put("o/b", b"old b", tier="warm")
    store.add_replica("o/b", "cold")
    with pytest.raises(ObjectExists, match="o/a"):
        store.put_many([("o/new", b"n"), ("o/a", b"new a")], tier="warm")
    assert store.find("o/") == ["o/a", "o/b"]
    store.put_many([("o/a", b"new a"), ("o/b", b"new b"), ("o/c", b"c")], tier="warm",
                   overwrite=True)
    for key, data in {"o/a": b"new a", "o/b": b"new b", "o/c": b"c"}.items():
        assert store.cat(key, verify=True) == data
        assert store.stat(key).tiers == ["warm"]
    report = store.audit(deep=True)
    assert report.ok, report


@pytest.mark.parametrize(("existing", "batch", "refusal"), [
    ([], [("k/a", b"1"), ("k/a", b"2")], InvalidKey),  # a key twice
    ([], [("k/ok", b"1"), ("../escape", b"2")], InvalidKey),
    (["k/file"], [("k/ok", b"1"), ("k/file/inside", b"2")], ObjectExists),  # under an object
    (["k/dir/x"], [("k/ok", b"1"), ("k/dir", b"2")], ObjectExists),  # a folder of objects
    ([], [("k/ok", b"1"), ("k/p", b"2"), ("k/p/q", b"3")], ObjectExists),  # both, in the batch
])
def test_a_refused_batch_leaves_nothing(local_store: SyncStore, existing: list[str],
                                        batch: list[tuple[str, bytes]],
                                        refusal: type[Exception]) -> None:
    for key in existing:
        local_store.put(key, b"there", tier="hot")
    root = Path(local_store.aio.tier("hot").root)
    before = _files(root)
    with pytest.raises(refusal):
        local_store.put_many(batch, tier="hot")
    assert local_store.find("") == sorted(existing)
    assert _files(root) == before
    assert local_store.aio.catalog.pending() == []


def test_a_batch_past_the_tiers_capacity_is_refused_before_a_byte_is_written(
        tmp_path: Path) -> None:
    config = make_config(tmp_path, "local")
    hot = dataclasses.replace(config.tiers["hot"], capacity=100 * KIB)
    config = dataclasses.replace(config, tiers={**config.tiers, "hot": hot})
    with open_store(config) as store:
        store.put_many([(f"c/{i}", bytes(5 * KIB)) for i in range(15)], tier="hot")
        with pytest.raises(TierFull, match="no room for 'a batch of 6 objects from c/15'"):
            store.put_many([(f"c/{i}", bytes(5 * KIB)) for i in range(15, 21)], tier="hot")
        assert len(store.find("c/")) == 15 and store.aio.catalog.pending() == []
        assert _files(Path(store.aio.tier("hot").root)) == {f"c/{i}" for i in range(15)}


def test_a_batch_the_tier_fails_half_way_is_rolled_back_whole(local_store: SyncStore) -> None:
    """A file where the batch needs a folder (put there behind the store's back): the
    batch's other files, written and renamed already, go with it."""
    root = Path(local_store.aio.tier("hot").root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "blocker").write_bytes(b"not tierstore's")
    batch = [(f"f/{i:02d}", os.urandom(3 * KIB)) for i in range(30)] + [("blocker/x", b"x")]
    with pytest.raises(TierError):
        local_store.put_many(batch, tier="hot")
    assert local_store.find("") == []
    assert _files(root) == {"blocker"}
    assert local_store.aio.catalog.pending() == []


# -- SIGKILL at each step of a batch, and at random times -------------------------------------


def _run_worker(config_path: Path, run: str, count: int, tier: str,
                kill_at: str | None, timer: float | None) -> tuple[int, list[str]]:
    out = config_path.with_name(f"{run}.out")
    with open(out, "wb") as stdout:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(config_path), run, str(count), tier,
             *([kill_at] if kill_at else [])], stdout=stdout, stderr=subprocess.PIPE)
        if timer is not None:
            deadline = time.monotonic() + 60
            while "ready" not in out.read_text() and proc.poll() is None:
                assert time.monotonic() < deadline, "the worker never got ready"
                time.sleep(0.005)
            time.sleep(timer)
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    lines = out.read_text().splitlines()
    assert proc.returncode in (0, -signal.SIGKILL), err.decode()[-3000:]
    return proc.returncode, lines


def _check_after_recovery(config: Config, run: str, count: int, lines: list[str],
                          why: str) -> int:
    """Recover; every object reported committed is there whole, the run's objects are whole
    batches from its first, nothing is pending or orphaned. How many objects are there."""
    names = keys(run, count)
    with open_store(config) as store:
        present = set(store.find(f"{run}/"))
        told = {line.split()[1] for line in lines if line.startswith("committed ")}
        assert told <= present, f"{why}: reported committed, then lost: {told - present}"
        whole = len(present) // BATCH * BATCH if len(present) < count else count
        assert present == set(names[:whole]) and len(present) == whole, (
            f"{why}: {len(present)} objects, not whole batches from the first")
        for key in present:
            assert store.cat(key, verify=True) == content(key), f"{why}: {key}"
        assert store.aio.catalog.pending() == [], why
        report = store.audit()  # no orphan: the bytes of what was rolled back are gone
        assert report.ok, f"{why}: {report}"
    return len(present)


@pytest.mark.parametrize("store_config", ["local", "moto"], indirect=True)
def test_sigkill_during_put_many_keeps_whole_batches(store_config: Config,
                                                     tmp_path: Path) -> None:
    tier = "hot" if store_config.tiers["warm"].url.startswith("file:") else "warm"
    config_path = tmp_path / "tierstore.toml"
    config_path.write_text(toml_for(store_config))
    count = BATCH * 3
    rng = random.Random(int(os.environ.get("TIERSTORE_CRASH_SEED", "0")) or None)
    hooks = ["begin:1", "write:2", "commit:2"]  # S3 is slower here: its steps once each
    if tier == "hot":
        hooks += ["begin:3", "write:1", "commit:1"]
    plan: list[tuple[str | None, float | None]] = [
        *((hook, None) for hook in hooks), *((None, rng.uniform(0.0, 0.4)) for _ in range(2))]
    for n, (kill_at, timer) in enumerate(plan):
        run = f"run{n}"
        why = f"[{tier} {kill_at or f'timer {timer:.3f}s'}]"
        rc, lines = _run_worker(config_path, run, count, tier, kill_at, timer)
        if kill_at is not None:
            assert rc == -signal.SIGKILL and "end" not in lines, f"{why}: {lines[-3:]}"
        landed = _check_after_recovery(store_config, run, count, lines, why)
        if kill_at is not None:
            step, nth = kill_at.split(":")
            # killed after its n-th commit: n batches; before it: the n-1 before
            assert landed == BATCH * (int(nth) if step == "commit" else int(nth) - 1), why


def test_sigkill_hooks_cover_the_local_batch_path(tmp_path: Path) -> None:
    """The local batch's kill lands mid-write: some of its files were on the disk, renamed
    to their final names, when the process died; recovery removed them."""
    config = make_config(tmp_path, "local")
    config_path = tmp_path / "tierstore.toml"
    config_path.write_text(toml_for(config))
    rc, lines = _run_worker(config_path, "w", BATCH * 2, "hot", "write:1", None)
    assert rc == -signal.SIGKILL
    root = Path(config.tiers["hot"].url.removeprefix("file://"))
    assert _files(root), "the kill landed before any file of the batch was in place"
    assert _check_after_recovery(config, "w", BATCH * 2, lines, "write:1") == 0
    assert _files(root) == set()
