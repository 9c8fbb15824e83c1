"""A temporary PostgreSQL server for ``tierstore bench catalog`` when no ``--postgres`` is given.

``initdb`` into a temporary folder and ``pg_ctl start`` on 127.0.0.1 and a free port, with the
server's own defaults (fsync and synchronous commits on: what a real catalog server does), then
stopped and removed. Trust authentication is enough: it listens on the loopback address only
and lives for one run. As root, the server runs as Debian's ``postgres`` user (PostgreSQL
refuses to run as root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..common.ceph import free_port
from ..common.errors import BenchError

__all__ = ["find_postgres", "temporary_postgres"]

_TOOLS = ("initdb", "pg_ctl", "postgres")


def find_postgres() -> Path | None:
    """The folder of initdb, pg_ctl and postgres (on PATH, else Debian's newest), or None."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                    key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for folder in [*candidates, *reversed(debian)]:
        if all((folder / name).is_file() for name in _TOOLS):
            return folder
    return None


@contextlib.contextmanager
def temporary_postgres(bin_dir: Path, parent: str | None = None) -> Iterator[str]:
    """Start a server under ``parent`` (a folder of the caller's own, default: the temporary
    folder); yields its URL (database ``tierstore``, user ``tierstore``, no password), stops and
    removes it afterwards."""
    prefix: list[str] = []
    owner: tuple[int, int] | None = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise BenchError("running as root and there is no 'postgres' user to run a "
                             "temporary PostgreSQL as; pass --postgres URL") from None
        prefix, owner = ["runuser", "-u", "postgres", "--"], (user.pw_uid, user.pw_gid)
    if owner is not None and parent is not None:  # the bench's own folder: let postgres in
        os.chmod(parent, os.stat(parent).st_mode | 0o111)
    base = Path(tempfile.mkdtemp(prefix="tierstore-bench-pg-", dir=parent))
    if owner is not None:
        os.chown(base, *owner)
    data, log = base / "data", base / "server.log"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120,
                              cwd=base, check=False)

    try:
        init = run(str(bin_dir / "initdb"), "-D", str(data), "-U", "tierstore", "-E", "UTF8",
                   "--locale=C", "--auth=trust")
        if init.returncode != 0:
            hint = (" (the server runs as the 'postgres' user, which must be able to enter "
                    f"every folder above {base}: choose another --dir)"
                    if owner is not None and "Permission denied" in init.stderr else "")
            raise BenchError(f"initdb failed: {' '.join(init.stderr.split())[-300:]}{hint}")
        port = free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={base}")
        started = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t",
                      "60", "-o", options, "start")
        if started.returncode != 0:
            tail = log.read_text(errors="replace")[-300:] if log.exists() else started.stderr
            raise BenchError(f"a temporary PostgreSQL did not start: {' '.join(tail.split())}")
        created = run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                      "tierstore", "tierstore")
        if created.returncode != 0:
            raise BenchError(f"createdb failed: {' '.join(created.stderr.split())[-300:]}")
        yield f"postgresql://tierstore@127.0.0.1:{port}/tierstore"
    finally:
        if (data / "postmaster.pid").exists():
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)
