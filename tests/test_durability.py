"""What a power cut keeps (issue 13, defect 3), shown by the order of the system calls of a
real ``tierstore`` process under strace: before an old copy's bytes are unlinked, the new
replica's data and every folder entry up to its tier's root are fsynced, and so is the
catalog's write-ahead log holding the commit that supersedes the old copy; durable commits
made at once share those syncs (group commit), each still waiting for one begun after it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from storefixtures import make_config, toml_for

from tierstore.catalog import Replica, SqliteCatalog
from tierstore.catalog import sqlite as sqlite_catalog

needs_strace = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")

CALL = re.compile(r"^\d+\s+(\w+)\((\d+<([^>]*)>|\"([^\"]*)\")")


def _traced(config: Path, trace: Path, *args: str) -> list[tuple[str, str]]:
    """Run ``tierstore *args`` under strace; its (call, path) of syncs, writes, renames and
    unlinks, in order, over all its threads."""
    subprocess.run(["strace", "-f", "-y", "-qq", "-o", str(trace), "-e",
                    "trace=fsync,fdatasync,pwrite64,write,rename,renameat,renameat2,unlink,"
                    "unlinkat", sys.executable, "-m", "tierstore.cli", "--config", str(config),
                    *args], check=True, capture_output=True, timeout=120)
    calls = []
    for line in trace.read_text().splitlines():
        if (m := CALL.match(line)) and "ENOENT" not in line:
            calls.append((m.group(1), m.group(3) or m.group(4)))
    return calls


def _first(calls: list[tuple[str, str]], names: set[str], path: str, after: int = -1) -> int:
    """The index of the first of ``names`` on ``path`` after ``after``; len(calls) if none."""
    return next((i for i, (call, p) in enumerate(calls)
                 if i > after and call in names and p == path), len(calls))


SYNC = {"fsync", "fdatasync"}
RENAME = re.compile(r'^\d+\s+rename\("([^"]*)", "([^"]*)"')  # finished, or <unfinished ...


def _assert_durable_before_unlink(calls: list[tuple[str, str]], new: Path, root: Path,
                                  old: Path, wal: Path) -> None:
    # the old copy's name goes by an unlink, or by a rename into the folder of files kept to
    # be written over (tierstore.tier.recycle): its bytes may be overwritten from then on
    unlink = _first(calls, {"unlink", "unlinkat", "rename"}, str(old))
    assert unlink < len(calls), "the old copy was not removed"
    synced = _first(calls, SYNC, str(new))
    assert synced < unlink, "the new replica's bytes were not fsynced before the old unlink"
    folder, last = new.parent, synced
    while True:  # each folder entry up to the root, after the file
        last = _first(calls, SYNC, str(folder), after=synced)
        assert last < unlink, f"folder {folder} not fsynced before the old copy was unlinked"
        if folder == root:
            break
        folder = folder.parent
    wal_writes = [i for i, (call, p) in enumerate(calls[:unlink])
                  if call in ("pwrite64", "write") and p == str(wal)]
    assert wal_writes and wal_writes[-1] > last  # the commit was written after the syncs...
    assert _first(calls, SYNC, str(wal), after=wal_writes[-1]) < unlink  # ...and synced


@pytest.fixture
def local(tmp_path: Path) -> tuple[Path, Path]:
    config = make_config(tmp_path, "local")
    path = tmp_path / "tierstore.toml"
    path.write_text(toml_for(config))
    (tmp_path / "data").write_bytes(os.urandom(100_000))
    subprocess.run([sys.executable, "-m", "tierstore.cli", "--config", str(path), "put",
                    "--tier", "cold", str(tmp_path / "data"), "d/e/x"], check=True,
                   capture_output=True)
    return path, tmp_path


@needs_strace
@pytest.mark.parametrize("size", [100_000, 2 * 2**20])  # the large one's old copy is kept
def test_a_move_syncs_the_new_copy_and_its_commit_before_unlinking_the_old(
        local: tuple[Path, Path], size: int) -> None:
    config, home = local
    key = "d/e/x"
    if size != 100_000:
        key = "d/e/large"
        (home / "large").write_bytes(os.urandom(size))
        subprocess.run([sys.executable, "-m", "tierstore.cli", "--config", str(config), "put",
                        "--tier", "cold", str(home / "large"), key], check=True,
                       capture_output=True)
    calls = _traced(config, home / "trace", "mv", key, "--tier", "hot")
    _assert_durable_before_unlink(calls, new=home / "tiers/hot" / key,
                                  root=home / "tiers/hot", old=home / "tiers/cold" / key,
                                  wal=home / "catalog.db-wal")
    kept = [call for call, p in calls if p == str(home / "tiers/cold" / key)
            and call == "rename"]
    assert len(kept) == (size >= 2**20)  # kept (renamed into .tierstore/recycle/) or unlinked


@needs_strace
def test_an_overwrite_syncs_the_new_content_and_its_commit_before_unlinking_the_old(
        local: tuple[Path, Path]) -> None:
    config, home = local
    (home / "new").write_bytes(b"new content")
    calls = _traced(config, home / "trace", "put", "--overwrite", "--tier", "cold",
                    str(home / "new"), "d/e/x")
    # the new content keeps the temporary name it was written under: the old holds the key's
    (new,) = [Path(p) for call, p in calls if call in SYNC and "/.tierstore/partial/" in p
              and not os.path.isdir(p)]
    _assert_durable_before_unlink(calls, new=new, root=home / "tiers/cold",
                                  old=home / "tiers/cold/d/e/x", wal=home / "catalog.db-wal")


@needs_strace
def test_a_batch_of_small_files_is_durable_before_its_one_commit(tmp_path: Path) -> None:
    """``put`` of a folder of small files (one batch, :meth:`Store.put_many`): each file's
    bytes are fsynced under its temporary name, then it is renamed to its key, then every
    folder up to the tier's root is fsynced, and only then is the batch's commit written to
    the catalog's log and synced."""
    config = make_config(tmp_path, "local")
    path = tmp_path / "tierstore.toml"
    path.write_text(toml_for(config))
    (tmp_path / "src" / "sub").mkdir(parents=True)
    names = ["a", "b", "sub/c"]
    for name in names:
        (tmp_path / "src" / name).write_bytes(os.urandom(2000))
    trace = tmp_path / "trace"
    calls = _traced(path, trace, "put", "-r", "--tier", "hot", str(tmp_path / "src"), "batch")
    temporary = {dst: src for line in trace.read_text().splitlines()
                 for src, dst in RENAME.findall(line)}  # each file's name before its key
    root = tmp_path / "tiers/hot"
    wal = str(tmp_path / "catalog.db-wal")
    commit = max(i for i, (call, p) in enumerate(calls)  # the batch's: the log's last write
                 if call in ("pwrite64", "write") and p == wal)
    assert _first(calls, SYNC, wal, after=commit) < len(calls), "the commit was not synced"
    for name in names:
        final = root / "batch" / name
        tmp = temporary[str(final)]
        moved = _first(calls, {"rename"}, tmp)
        assert _first(calls, SYNC, tmp) < moved, f"{name}: renamed before its bytes were synced"
        folder = final.parent
        while True:
            assert _first(calls, SYNC, str(folder), after=moved) < commit, (
                f"{name}: folder {folder} not fsynced before the commit")
            if folder == root:
                break
            folder = folder.parent


def test_durable_commits_at_once_share_log_syncs_each_begun_after_its_call(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Group commit: eight threads committing at once share syncs of the write-ahead log,
    and none returns before a sync that began after it was called has ended."""
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    syncs: list[tuple[float, float]] = []
    real = sqlite_catalog._fdatasync

    def slow_sync(path: Path) -> None:  # the real sync, slow enough for commits to queue
        began = time.monotonic()
        time.sleep(0.05)
        real(path)
        syncs.append((began, time.monotonic()))

    monkeypatch.setattr(sqlite_catalog, "_fdatasync", slow_sync)
    replicas = [catalog.begin_replica(f"k{i}", "hot", tmp=f"t{i}", new_content=True,
                                      owner="me:1") for i in range(8)]
    calls: list[tuple[float, float]] = []
    start = threading.Barrier(len(replicas))

    def commit(replica: Replica) -> None:
        start.wait()
        called = time.monotonic()
        catalog.commit_replica(replica.id, owner="me:1", size=1, checksum="c",
                               new_content=True)
        calls.append((called, time.monotonic()))

    threads = [threading.Thread(target=commit, args=(r,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 8 and 1 <= len(syncs) < 8
    for called, returned in calls:
        assert any(called <= began and ended <= returned for began, ended in syncs)
    catalog.close()
