"""Files a local tier frees, kept a little while to be written over by its next replicas.

Freeing a file's blocks and allocating new ones both cost a filesystem more than writing
over blocks a file already holds: on the benchmark machine's ext4 (mounted with
``discard``) freeing 16 MiB waits about 3 ms for the device, so a plain ``mv`` between two
folders ran at 0.85x a plain copy while the same copies written over kept files ran at
1.2x. PostgreSQL recycles its WAL segments and RocksDB its logs
(``recycle_log_file_num``) for the same reason. A local tier therefore moves a file it
removes (of :data:`RECYCLE_MIN` bytes or more) into ``.tierstore/recycle/`` instead of
freeing it, up to :data:`RECYCLE_FILES` files and a byte budget, and a replica written
next (a kernel copy or a stream of known size) takes the kept file closest to its size,
renamed to its temporary name, and writes over it, truncated to what it wrote.

What keeps another object's bytes out of the new replica:

* **Nobody has the file open.** A reader that opened a replica before it was removed keeps
  reading the same inode (as after an unlink); written over, it would read another
  object's bytes. :meth:`Recycler.take` takes a kernel write lease on the file, which the
  kernel grants only while no other open file (in any process, this one included; an
  ``mmap`` counts) refers to it, and releases it at once: the file has a name only this
  writer knows by then, so nobody can open it after. Refused (or where the filesystem has
  no leases), the file is freed and the replica written to a new one.
* **It has one name.** A file with another hard link (a user's ``cp -al`` backup) is never
  kept.
* **Every byte is written over.** The writer writes the whole replica from offset 0 and
  truncates the file to its length; its bytes are hashed as they land, as a new file's are.

A kept file is freed after :data:`RECYCLE_SECONDS` (by the next tier call that looks at the
folder), or when the tier is closed: disk space the tier frees comes back within that time,
not at once. Files left by a process killed meanwhile are freed the same way. The bytes
kept count against the tier's disk, not its ``capacity`` (the catalog's bytes), and are at
most an eighth of that capacity.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import stat
import time
from dataclasses import dataclass

from ..keys import RESERVED_PREFIX

__all__ = ["RECYCLE_DIR", "RECYCLE_MIN", "Recycler"]

RECYCLE_DIR = f"{RESERVED_PREFIX}/recycle"
RECYCLE_MIN = 2**20  # a smaller file's blocks are cheap: it is freed
RECYCLE_FILES = 32
RECYCLE_BYTES = 2**30
RECYCLE_SECONDS = 60.0
FIT = 2  # a kept file is taken for a replica of between 1/FIT and FIT times its size

log = logging.getLogger("tierstore.tier")


@dataclass(frozen=True)
class _Kept:
    name: str
    size: int
    since: float  # time.time() it was kept


class Recycler:
    """The kept files of the local tier rooted at ``root``: at most :data:`RECYCLE_FILES`
    and ``max_bytes``. Blocking; safe for many threads and processes at once (a file is
    taken by an atomic rename, which only one taker wins)."""

    def __init__(self, root: str, max_bytes: int = RECYCLE_BYTES):
        self.root = root
        self.folder = f"{root}/{RECYCLE_DIR}"
        self.max_bytes = max_bytes  # 0 once the filesystem turns out to have no leases

    def keep(self, full: str) -> bool:
        """Move the file at ``full`` into the folder rather than free it; whether it was
        (False: the caller frees it, or it is gone already)."""
        if self.max_bytes < RECYCLE_MIN:
            return False
        try:
            info = os.lstat(full)
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_size < RECYCLE_MIN:
            return False
        with contextlib.suppress(OSError):
            os.makedirs(self.folder, exist_ok=True)
        kept = self._current()
        if (kept is None or len(kept) >= RECYCLE_FILES
                or sum(k.size for k in kept) + info.st_size > self.max_bytes):
            return False
        name = f"{info.st_size:x}-{time.time_ns():x}-{secrets.token_hex(4)}"
        try:
            os.rename(full, f"{self.folder}/{name}")
        except OSError:  # gone already, or the folder refused: freed as any file
            return False
        return True

    def take(self, size: int, target: str) -> bool:
        """Rename the kept file closest to ``size`` bytes (within a factor of :data:`FIT`)
        to ``target``, for a writer to write over; whether one was. A file some process
        still has open is freed instead, and the next one tried."""
        if self.max_bytes < RECYCLE_MIN:
            return False
        fitting = [k for k in self._current() or () if size * FIT >= k.size
                   and k.size * FIT >= size]
        if not fitting:
            return False
        for kept in sorted(fitting, key=lambda k: abs(k.size - size)):
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.rename(f"{self.folder}/{kept.name}", target)
            except FileNotFoundError:  # another writer took it
                continue
            except OSError:  # the writer creates the file, and finds out
                return False
            try:
                unshared = _unshared(target)
            except _NoLeases:
                log.info("tier root %s: the filesystem grants no file leases; files it "
                         "frees are not kept to be written over", self.root)
                self.max_bytes = 0
                unshared = False
            if unshared:
                return True
            log.debug("a kept file is open somewhere or has another name: freed, not "
                      "written over")
            with contextlib.suppress(OSError):
                os.remove(target)
            if not self.max_bytes:
                break
        return False

    def drain(self) -> None:
        """Free every kept file."""
        for kept in self._listed() or ():
            with contextlib.suppress(OSError):  # taken meanwhile, or a folder left by hand
                os.remove(f"{self.folder}/{kept.name}")

    def _own_folder(self) -> bool:
        """Whether the folder and the one above it are folders, not links planted in the
        tier (which would lead files out of it, or others' files in)."""
        for folder in (os.path.dirname(self.folder), self.folder):
            try:
                if not stat.S_ISDIR(os.lstat(folder).st_mode):
                    return False
            except OSError:
                return False
        return True

    def _current(self) -> list[_Kept] | None:
        """The kept files, after freeing those kept too long (or not of tierstore's
        naming); None where the folder is not the tier's own."""
        kept = self._listed()
        if kept is None:
            return None
        now = time.time()
        for stale in [k for k in kept if now - k.since >= RECYCLE_SECONDS]:
            with contextlib.suppress(OSError):  # taken meanwhile, or a folder left by hand
                os.remove(f"{self.folder}/{stale.name}")
        return [k for k in kept if now - k.since < RECYCLE_SECONDS]

    def _listed(self) -> list[_Kept] | None:
        """The files in the folder; None where it is not the tier's own."""
        if not self._own_folder():
            return None
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        kept = []
        for name in names:
            size, _, rest = name.partition("-")
            since, _, _ = rest.partition("-")
            try:
                kept.append(_Kept(name, int(size, 16), int(since, 16) / 1e9))
            except ValueError:  # not one of ours: a file left by hand is freed
                kept.append(_Kept(name, 0, 0.0))
        return kept


class _NoLeases(Exception):
    """The filesystem grants no leases (NFS, FUSE): nothing can show a file is unshared."""


def _unshared(path: str) -> bool:
    """Whether no open file refers to ``path``'s file but the one this opens (a write lease
    is granted only then) and it has no other name; :class:`_NoLeases` where the filesystem
    has none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        if os.fstat(fd).st_nlink != 1:
            return False
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return True
    except OSError as exc:  # EAGAIN: open elsewhere; EACCES: another user's file
        if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise _NoLeases from exc
        return False
    finally:
        os.close(fd)
