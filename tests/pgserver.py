"""A throwaway PostgreSQL server for tests: initdb into a temporary folder, pg_ctl start on
127.0.0.1 and a free port (its unix socket in that folder), stopped and removed at the end.

PostgreSQL refuses to run as root; as root the server runs as the ``postgres`` user that
Debian's package creates. TCP connections need the superuser's password (scram-sha-256), so
the tests exercise real password authentication; the unix socket trusts local users.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from s3servers import free_port

__all__ = ["PgServer", "PostgresStartError", "PostgresUnavailable", "find_bin_dir",
           "start_postgres"]


class PostgresUnavailable(Exception):
    """PostgreSQL's server binaries are not installed (or cannot run here)."""


class PostgresStartError(Exception):
    """The binaries are there but the server did not start."""


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    password: str
    socket_dir: Path
    version: str

    def url(self, dbname: str, *, password: str | None = None) -> str:
        """A ``postgresql://`` URL over TCP with the password (or the given one) in it."""
        secret = self.password if password is None else password
        return f"postgresql://{self.user}:{quote(secret, safe='')}@{self.host}:{self.port}/{dbname}"

    def admin(self, sql: str, dbname: str = "postgres") -> None:
        """Run one statement as the superuser (autocommit: CREATE/DROP DATABASE work)."""
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            conn.execute(sql.encode())


def find_bin_dir() -> Path:
    """The folder of initdb, pg_ctl and postgres: on PATH, else Debian's newest."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                    key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    candidates += reversed(debian)
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    raise PostgresUnavailable("initdb, pg_ctl and postgres not found on PATH or under "
                              "/usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)")


def _run_as() -> tuple[list[str], tuple[int, int] | None]:
    """The command prefix that drops root, and the (uid, gid) that must own the data."""
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root and there is no 'postgres' user to run "
                                  "the server as") from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root and runuser is missing")
    return [runuser, "-u", "postgres", "--"], (user.pw_uid, user.pw_gid)


def start_postgres(*, attempts: int = 3) -> tuple[PgServer, Callable[[], None]]:
    """Start a server; returns it and a function that stops it and removes its files."""
    bin_dir = find_bin_dir()
    prefix, owner = _run_as()
    # Not under pytest's tmp_path: that is private to root and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="tierstore-pg-"))
    if owner is not None:
        os.chown(base, *owner)
    password = secrets.token_urlsafe(18)
    (base / "pwfile").write_text(password + "\n")
    if owner is not None:
        os.chown(base / "pwfile", *owner)
    data, log = base / "data", base / "server.log"

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, *args], capture_output=True, text=True,
                              timeout=timeout, cwd=base, check=False)

    def stop() -> None:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop",
            timeout=60)
        shutil.rmtree(base, ignore_errors=True)

    init = run(str(bin_dir / "initdb"), "-D", str(data), "-U", "tierstore", "-E", "UTF8",
               "--locale=C", "--no-sync", f"--pwfile={base / 'pwfile'}",
               "--auth-local=trust", "--auth-host=scram-sha-256")
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise PostgresStartError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
    version = (data / "PG_VERSION").read_text().strip()
    for _ in range(attempts):
        port = free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={base} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200")
        started = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                      "-t", "60", "-o", options, "start")
        if started.returncode == 0:
            server = PgServer("127.0.0.1", port, "tierstore", password, base, version)
            return server, stop
        if not re.search(r"could not bind|already in use", _tail(log)):
            break
    detail = _tail(log) or started.stderr.strip()
    stop()
    raise PostgresStartError(f"pg_ctl start failed: {detail}")


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
