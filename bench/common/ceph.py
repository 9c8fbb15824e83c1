"""Real S3-compatible servers outside the test suite: a single-node Ceph radosgw.

:func:`start_ceph` starts Ceph 16.2 (mon, mgr, one memstore OSD, radosgw) under a folder with
``ceph-single-node.sh`` (shipped beside this module) and every port chosen free; the tests'
fixture (``tests/s3servers.py``, ``tests/conftest.py``) and ``tierstore bench loader --s3 ceph``
both start it from here::

    server, stop = start_ceph(workdir)
    fs = s3fs.S3FileSystem(**server.storage_options())
    ...
    stop()

:func:`rgw_counters` reads the gateway's own request counters (GETs and bytes sent) from its
admin socket: what every client of the server fetched, whoever it was.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CephStartError", "CephUnavailable", "S3Server", "ceph_missing", "free_port",
           "free_ports", "kill_radosgw", "rgw_counters", "start_ceph", "start_radosgw"]

CEPH_SCRIPT = Path(__file__).resolve().parent / "ceph-single-node.sh"
CEPH_BINARIES = (
    "ceph-mon",
    "ceph-mgr",
    "ceph-osd",
    "radosgw",
    "radosgw-admin",
    "ceph",
    "ceph-authtool",
    "monmaptool",
)
CEPH_START_TIMEOUT = 120.0
START_ATTEMPTS = 3  # of the start script, each on other ports, within CEPH_START_TIMEOUT
_CEPH_DIRS: dict[str, Path] = {}  # endpoint URL -> the cluster's CEPH_DIR (for restarts)

StopFn = Callable[[], None]


class CephUnavailable(RuntimeError):
    """The Ceph binaries are not installed (the apt line is in ceph-single-node.sh, beside this
    module)."""


class CephStartError(RuntimeError):
    """Ceph is installed but the single-node cluster did not come up."""


@dataclass
class S3Server:
    """Where a running S3-compatible server answers, and the keys to use it."""

    name: str
    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    _client: Any = field(default=None, init=False, repr=False, compare=False)

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem`` (and fsspec ``storage_options``)."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.endpoint_url},
        }

    def client(self) -> Any:
        """A (cached, thread-safe) boto3 S3 client for administration in tests."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                region_name="us-east-1",
                config=Config(
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=60,
                ),
            )
        return self._client

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def new_bucket(self) -> str:
        """Create a bucket with a fresh unique name (``ts-<8 hex>``) and return the name."""
        name = f"ts-{uuid.uuid4().hex[:8]}"
        self.make_bucket(name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Delete every object (all versions and delete markers), abort pending multipart
        uploads, then delete the bucket."""
        c = self.client()
        for page in c.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for up in page.get("Uploads", []):
                with contextlib.suppress(Exception):
                    c.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
        for page in c.get_paginator("list_object_versions").paginate(Bucket=name):
            doomed = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if doomed:
                c.delete_objects(Bucket=name, Delete={"Objects": doomed, "Quiet": True})
        # Unversioned objects are listed above with VersionId "null"; this catches any server
        # that lists them only here.
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                c.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        c.delete_bucket(Bucket=name)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (see :func:`free_ports`)."""
    return free_ports(1, host)[0]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports nothing listens on right now, chosen below the kernel's
    ephemeral range where it can: a port from that range (what binding port 0 gives) can be
    taken by any outgoing connection before the server meant for it binds it, which made Ceph's
    monitor fail to start in CI. All sockets are held open until every port is chosen."""
    socks: list[socket.socket] = []
    ports = _listen_ports()
    candidates = random.sample(ports, k=min(200, len(ports)))
    try:
        while len(socks) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((host, candidates.pop() if candidates else 0))
            except OSError:
                s.close()
                continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _listen_ports() -> range:
    """Ports for servers started here: from 10000 up to the kernel's ephemeral range, so no
    outgoing connection takes one (empty where that range starts too low to leave room)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    return range(10_000, low)


# --------------------------------------------------------------------------------------- ceph


def ceph_missing() -> list[str]:
    """The Ceph binaries start_ceph needs that are not on PATH."""
    return [b for b in CEPH_BINARIES if shutil.which(b) is None]


def start_ceph(
    workdir: str | os.PathLike[str],
    *,
    timeout: float = CEPH_START_TIMEOUT,
    store: str = "memstore",
    memstore_bytes: int | None = None,
) -> tuple[S3Server, StopFn]:
    """Start a single-node Ceph 16.2 cluster (mon, mgr, one memstore OSD, radosgw) under
    ``workdir`` with every listening port chosen free at start, and wait until S3 answers.

    ``memstore_bytes`` sizes the in-memory OSD (the script's default: 2 GiB).
    Raises ``CephUnavailable`` when the binaries are missing and ``CephStartError`` (with the tail
    of the logs) when the cluster does not come up within ``timeout`` seconds. The returned stop
    function kills the daemons by the pids they wrote (idempotent; also run at exit).
    """
    missing = ceph_missing()
    if missing:
        raise CephUnavailable(
            f"not on PATH: {', '.join(missing)} (apt-get install -y --no-install-recommends "
            "ceph-mon ceph-mgr ceph-osd radosgw ceph-common)"
        )
    cdir = Path(workdir).resolve()
    cdir.mkdir(parents=True, exist_ok=True)
    access_key = "tierstore-" + secrets.token_hex(4)
    secret_key = secrets.token_hex(20)
    run_dir = cdir / "cluster" / "run"
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            _kill_pidfiles(run_dir)

    atexit.register(stop)
    deadline = time.monotonic() + timeout
    log_path = cdir / "start.log"
    env = {**os.environ, "CEPH_DIR": str(cdir / "cluster"), "STORE": store,
           "AK": access_key, "SK": secret_key}
    if memstore_bytes is not None:
        env["MEMSTORE_BYTES"] = str(int(memstore_bytes))
    for attempt in range(1, START_ATTEMPTS + 1):
        # A port found free can be taken before a daemon binds it (an outgoing connection's
        # ephemeral port, say): a start that fails fast is tried again on other ports.
        mon_port, mon_v1_port, rgw_port = free_ports(3)
        env.update(MON_PORT=str(mon_port), MON_V1_PORT=str(mon_v1_port),
                   RGW_PORT=str(rgw_port))
        rc = _run_start_script(env, log_path, deadline - time.monotonic())
        if rc == 0:
            break
        if rc is None or attempt == START_ATTEMPTS or time.monotonic() > deadline:
            stop()
            why = f"timed out after {timeout:g}s" if rc is None else f"exit status {rc}"
            raise CephStartError(f"ceph-single-node.sh {why} (try {attempt} of "
                                 f"{START_ATTEMPTS}); {log_path}:\n{_tail(log_path)}")
        _kill_pidfiles(run_dir)  # what this try started; the next one starts afresh

    server = S3Server(
        name="ceph",
        endpoint_url=f"http://127.0.0.1:{rgw_port}",
        access_key=access_key,
        secret_key=secret_key,
    )
    _CEPH_DIRS[server.endpoint_url] = cdir / "cluster"
    # The user was just created; wait until radosgw accepts its signature.
    while True:
        try:
            server.client().list_buckets()
            return server, stop
        except Exception as e:
            if time.monotonic() > deadline:
                stop()
                raise CephStartError(f"radosgw on {server.endpoint_url} never answered: {e}") from e
            time.sleep(0.2)


def _run_start_script(env: dict[str, str], log_path: Path, timeout: float) -> int | None:
    """Run ``ceph-single-node.sh start``; its exit status, or None if it ran past ``timeout``."""
    with open(log_path, "wb") as log:
        # Output goes to a file, not a pipe: the daemons fork and may keep inherited fds open.
        try:
            return subprocess.run(
                ["bash", str(CEPH_SCRIPT), "start"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=max(timeout, 1.0),
                start_new_session=True,  # a Ctrl-C in pytest must not hit the daemons mid-start
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            return None


def kill_radosgw(server: S3Server) -> None:
    """SIGKILL the Ceph cluster's S3 gateway (its data, in the OSD, stays) and wait until it
    is gone."""
    pidfile = _CEPH_DIRS[server.endpoint_url] / "run" / "client.rgw.a.pid"
    pid = int(pidfile.read_text().strip())
    if _is_ceph_process(pid):
        os.kill(pid, signal.SIGKILL)
    while _is_ceph_process(pid) and not _is_zombie(pid):
        time.sleep(0.02)


def start_radosgw(server: S3Server, timeout: float = 60.0) -> None:
    """Start the gateway :func:`kill_radosgw` killed, as the start script does, and wait
    until it answers S3 requests again."""
    cluster = _CEPH_DIRS[server.endpoint_url]
    with open(cluster / "log" / "rgw.stdout", "ab") as log:
        proc = subprocess.Popen(["radosgw", "-c", str(cluster / "ceph.conf"), "-n",
                                 "client.rgw.a", "-f"], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    (cluster / "run" / "client.rgw.a.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while True:
        try:
            server.client().list_buckets()
            return
        except Exception as e:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise CephStartError(f"radosgw did not come back: {e}") from e
            time.sleep(0.1)


def rgw_counters(server: S3Server) -> dict[str, int]:
    """The gateway's request counters since it started, from its admin socket (``perf dump``):
    ``requests``, ``gets`` (GET and HEAD requests) and ``get_bytes`` (bytes sent in GET
    bodies), for every client. radosgw 16.2 counts each GET body one byte short (from an
    inclusive end offset), so one byte per GET is added back (a HEAD then counts one byte)."""
    path = _CEPH_DIRS[server.endpoint_url] / "run" / "client.rgw.a.asok"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        # the admin socket protocol: a command, NUL-terminated; a 4-byte big-endian length, then
        # that many bytes of JSON
        sock.sendall(json.dumps({"prefix": "perf dump"}).encode() + b"\0")
        head = _receive(sock, 4)
        body = _receive(sock, struct.unpack(">I", head)[0])
    rgw = json.loads(body).get("rgw", {})
    gets = int(rgw.get("get", 0))
    return {"requests": int(rgw.get("req", 0)), "gets": gets,
            "get_bytes": int(rgw.get("get_b", 0)) + gets}


def _receive(sock: socket.socket, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise OSError(f"the radosgw admin socket closed after {got} of {n} bytes")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


def _is_ceph_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return os.path.basename(cmdline).decode(errors="replace") in CEPH_BINARIES


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def _kill_pidfiles(run_dir: Path, grace: float = 1.0) -> None:
    """SIGTERM every daemon with a pid file in ``run_dir``, SIGKILL what is left after ``grace``
    seconds (radosgw 16.2 takes about 5 s to honour SIGTERM; the memstore cluster is throwaway)."""
    pids: list[int] = []
    for f in sorted(run_dir.glob("*.pid")):
        with contextlib.suppress(OSError, ValueError):
            pid = int(f.read_text().strip())
            if _is_ceph_process(pid):  # never signal a recycled pid
                pids.append(pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + grace
    while pids and time.monotonic() < end:
        pids = [p for p in pids if _is_ceph_process(p) and not _is_zombie(p)]
        if pids:
            time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
