"""A local tier keeps the large files it frees for a while and writes its next replicas over
them (:mod:`tierstore.tier.recycle`), never over one a reader still has open or one with
another name, and every byte of the new replica is its own."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from storefixtures import make_config, toml_for

from tierstore import open_store
from tierstore.tier import recycle
from tierstore.tier.recycle import RECYCLE_DIR, RECYCLE_MIN, Recycler

MIB = 2**20


def _kept(tier: Path) -> list[Path]:
    folder = tier / RECYCLE_DIR
    return sorted(folder.iterdir()) if folder.exists() else []


def _inode(path: Path) -> int:
    return os.stat(path).st_ino


@pytest.mark.parametrize("first,second", [(3 * MIB, 3 * MIB), (3 * MIB + 5, 2 * MIB + 7),
                                          (2 * MIB, 3 * MIB + 1)])
def test_moves_write_over_the_files_they_freed(tmp_path: Path, first: int, second: int
                                               ) -> None:
    """A moved-away replica is kept, and the next move onto that tier (a kernel copy)
    writes over it, longer or shorter, to exactly its own bytes."""
    hot = tmp_path / "tiers" / "hot"
    a, b = os.urandom(first), os.urandom(second)
    with open_store(make_config(tmp_path, "local")) as store:
        store.put("a", a, tier="hot")
        store.put("b", b, tier="warm")
        inode = _inode(hot / "a")
        store.move("a", "warm")
        assert [_inode(p) for p in _kept(hot)] == [inode]
        store.move("b", "hot")
        assert _inode(hot / "b") == inode  # written over the kept file
        assert _kept(hot) == []
        assert os.path.getsize(hot / "b") == second
        assert store.cat("b", verify=True) == b
        assert store.cat("a", verify=True) == a
        assert store.audit(deep=True).ok


def test_a_streamed_write_of_known_size_writes_over_a_kept_file(tmp_path: Path) -> None:
    hot = tmp_path / "tiers" / "hot"
    data = os.urandom(4 * MIB + 3)
    with open_store(make_config(tmp_path, "local")) as store:
        store.put("old", os.urandom(4 * MIB), tier="hot")
        inode = _inode(hot / "old")
        store.rm("old")
        assert [_inode(p) for p in _kept(hot)] == [inode]
        store.put("new", data, tier="hot")
        assert _inode(hot / "new") == inode
        assert store.cat("new", verify=True) == data
        assert store.audit(deep=True).ok


def test_a_file_a_reader_holds_open_is_never_written_over(tmp_path: Path) -> None:
    """Another process reading the removed replica keeps reading its bytes: the kept file it
    holds is freed, not reused."""
    hot = tmp_path / "tiers" / "hot"
    old, new = os.urandom(2 * MIB), os.urandom(2 * MIB)
    with open_store(make_config(tmp_path, "local")) as store:
        store.put("a", old, tier="hot")
        inode = _inode(hot / "a")
        reader = subprocess.Popen(
            [sys.executable, "-c", "import sys\nf = open(sys.argv[1], 'rb')\nprint(flush=True)\n"
             "sys.stdin.readline()\nsys.stdout.buffer.write(f.read())", str(hot / "a")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert reader.stdout is not None and reader.stdin is not None
            reader.stdout.readline()  # it has the file open
            store.move("a", "warm")
            assert [_inode(p) for p in _kept(hot)] == [inode]
            store.put("b", new, tier="hot")
            read, _ = reader.communicate(b"\n", timeout=30)
        finally:
            reader.kill()
        assert _inode(hot / "b") != inode
        assert read == old
        assert _kept(hot) == []  # the held file was freed, not kept again
        assert store.cat("b", verify=True) == new


def test_what_is_not_kept(tmp_path: Path) -> None:
    """A small file is freed; so is a file with another name (a user's hard link), whose
    other name keeps its bytes."""
    hot = tmp_path / "tiers" / "hot"
    linked = os.urandom(2 * MIB)
    with open_store(make_config(tmp_path, "local")) as store:
        store.put("small", os.urandom(RECYCLE_MIN - 1), tier="hot")
        store.put("linked", linked, tier="hot")
        os.link(hot / "linked", tmp_path / "backup")
        store.rm("small")
        store.rm("linked")
        assert _kept(hot) == []
        store.put("next", os.urandom(2 * MIB), tier="hot")
    assert (tmp_path / "backup").read_bytes() == linked


def test_the_kept_bytes_are_bounded_by_the_tier_capacity(tmp_path: Path) -> None:
    config = make_config(tmp_path, "local")
    config.tiers["hot"] = dataclasses.replace(config.tiers["hot"], capacity=40 * MIB)
    hot = tmp_path / "tiers" / "hot"
    with open_store(config) as store:
        for i in range(4):
            store.put(f"k{i}", os.urandom(2 * MIB), tier="hot")
        for i in range(4):
            store.rm(f"k{i}")
        assert len(_kept(hot)) == 2  # an eighth of 40 MiB: two files of 2 MiB
    assert _kept(hot) == []  # closing the store freed them


def test_kept_files_are_freed_after_a_while(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    (tmp_path / "f").write_bytes(os.urandom(RECYCLE_MIN))
    pool = Recycler(str(tmp_path))
    assert pool.keep(str(tmp_path / "f"))
    (tmp_path / RECYCLE_DIR / "left-by-hand").write_bytes(b"x")
    assert not pool.take(RECYCLE_MIN * 3, str(tmp_path / "too-big"))  # no fit
    assert len(_kept(tmp_path)) == 1  # the stray file is freed, the kept one is not
    monkeypatch.setattr(recycle, "RECYCLE_SECONDS", 0.0)
    time.sleep(0.01)
    assert not pool.take(RECYCLE_MIN, str(tmp_path / "g"))
    assert _kept(tmp_path) == []


def test_a_link_planted_for_the_folder_leads_nothing_out(tmp_path: Path) -> None:
    """A symbolic link put where the kept files go (a hot folder shared with other pods)
    is not followed: the file is freed, not moved out of the tier."""
    hot, outside = tmp_path / "tiers" / "hot", tmp_path / "outside"
    outside.mkdir()
    (outside / "theirs").write_bytes(b"not the tier's")
    with open_store(make_config(tmp_path, "local")) as store:
        store.put("a", os.urandom(2 * MIB), tier="hot")
        (hot / RECYCLE_DIR).symlink_to(outside)
        store.rm("a")
        assert not (hot / "a").exists()
        store.put("b", os.urandom(2 * MIB), tier="hot")
        assert store.cat("b", verify=True) == (hot / "b").read_bytes()
    assert [p.name for p in outside.iterdir()] == ["theirs"]  # left alone, closed or not


KILLED_OVER_A_KEPT_FILE = """
import os, signal, sys
import tierstore
from tierstore import localcopy

copied = localcopy.KernelCopy.piece

def piece(self, start, nbytes, hasher):
    n = copied(self, start, nbytes, hasher)
    if self._reuse:  # one piece written over the kept file, more to come: die here
        print("killed", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return n

localcopy.KernelCopy.piece = piece
store = tierstore.open_store(tierstore.load_config(sys.argv[1]))
store.move("a", "warm")  # its hot file is kept
store.move("b", "hot")   # written over it, and killed half-way
"""


def test_a_process_killed_writing_over_a_kept_file_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL half-way through a copy written over a kept file (another object's old bytes
    still in its second half): recovery rolls the copy back, every object reads whole, and
    nothing is left on the tier."""
    config = make_config(tmp_path, "local")
    a, b = os.urandom(20 * MIB), os.urandom(20 * MIB + 5)
    with open_store(config) as store:
        store.put("a", a, tier="hot")
        store.put("b", b, tier="warm")
    (tmp_path / "store.toml").write_text(toml_for(config))
    done = subprocess.run([sys.executable, "-c", KILLED_OVER_A_KEPT_FILE,
                           str(tmp_path / "store.toml")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == -signal.SIGKILL and done.stdout == "killed\n", done.stderr
    hot = tmp_path / "tiers" / "hot"
    with open_store(config) as store:  # recovers the dead process's copy
        assert store.stat("a").tiers == ["warm"] and store.stat("b").tiers == ["warm"]
        assert store.cat("a", verify=True) == a and store.cat("b", verify=True) == b
        report = store.audit(deep=True)
        assert report.ok, report
        store.move("b", "hot")
        assert store.cat("b", verify=True) == b
    assert sorted(p.relative_to(hot).as_posix() for p in hot.rglob("*") if p.is_file()) == ["b"]
