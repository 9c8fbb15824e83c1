"""Sites at a real network distance for benchmarks and tests: one Linux network namespace per
site, joined to the root namespace by a delay wire (``bench/locality/tunwire.py``, two TUN
devices), and one S3-compatible server (moto in server mode, a real HTTP server process) per
site, bound to the site's address inside its namespace.

Only the *distance* is SIMULATED (packets are held for the round-trip time in the wire); the
servers, the TCP connections and the processes killed with real signals are real. Used by
``tierstore bench locality`` and by the tests (``tests/netsites.py`` re-exports it). Needs root
and ``ip netns``; :func:`namespaces_unavailable` says why not when they cannot be made::

    with NetSites([("near", 1.0), ("mid", 10.0), ("far", 50.0)]) as sites:
        near = sites["near"]
        near.server.make_bucket("b")        # a SiteServer: bucket admin, storage options
        near.set_rtt(80.0)                  # the site slows down, from now on
        near.kill(signal.SIGKILL); near.start()   # the server dies, then comes back (empty)

Everything is torn down on exit (and at interpreter exit, and the wires exit on their own when
this process dies). Run as ``python netsites.py serve HOST PORT`` it is the server launcher:
moto's server with TCP_NODELAY on every accepted connection (a stdlib-based HTTP server
otherwise lets Nagle's algorithm cost a second round trip per small response).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

HERE = Path(__file__).resolve().parent
SERVER_PORT = 5000  # every site has its own namespace, so each can use the same port
START_TIMEOUT = 20.0


class SiteServer:
    """Where a site's S3 server answers and the keys to use it (moto takes any)."""

    def __init__(self, *, name: str, endpoint_url: str, access_key: str, secret_key: str):
        self.name = name
        self.endpoint_url = endpoint_url
        self.access_key = access_key
        self._secret = secret_key
        self._client: Any = None

    def __repr__(self) -> str:
        return f"SiteServer({self.name!r}, {self.endpoint_url})"

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem`` (a tier's ``options``)."""
        return {"key": self.access_key, "secret": self._secret,
                "client_kwargs": {"endpoint_url": self.endpoint_url}}

    def client(self) -> Any:
        """A boto3 client for administration (buckets, wiping, corrupting)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
                aws_secret_access_key=self._secret, region_name="us-east-1",
                config=Config(s3={"addressing_style": "path"}, connect_timeout=5,
                              read_timeout=60, retries={"max_attempts": 3}))
        return self._client

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def wipe(self, bucket: str) -> int:
        """Delete every object in ``bucket`` (a site that lost its data); how many."""
        client, gone = self.client(), 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                gone += len(keys)
        return gone


def namespaces_unavailable() -> str | None:
    """Why sites at a distance cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces and TUN devices need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun does not exist"
    probe = f"tsprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                          check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


class NetSite:
    """One site: a namespace, its wire from the root namespace, and its server."""

    def __init__(self, name: str, rtt_ms: float, index: int, tag: str, net: tuple[int, int],
                 workdir: Path):
        self.name = name
        self.rtt_ms = rtt_ms
        self.ns = f"ts{tag}{index}"
        self.dev_host = f"tw{tag}{index}h"  # at most 15 characters
        self.dev_site = f"tw{tag}{index}s"
        self.host_addr = f"10.{net[0]}.{net[1] + index}.1"
        self.addr = f"10.{net[0]}.{net[1] + index}.2"
        self.port = SERVER_PORT
        self.endpoint_url = f"http://{self.addr}:{self.port}"
        self.workdir = workdir
        self.wire: subprocess.Popen[str] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.server = SiteServer(name=f"moto@{name}", endpoint_url=self.endpoint_url,
                                 access_key="tierstore-test", secret_key=secrets.token_hex(16))

    def __repr__(self) -> str:
        return f"NetSite({self.name!r}, rtt={self.rtt_ms:g} ms, {self.endpoint_url})"

    # -- the wire ----------------------------------------------------------------------------

    def open(self) -> None:
        subprocess.run(["ip", "netns", "add", self.ns], check=True, capture_output=True)
        self.wire = subprocess.Popen(
            [sys.executable, str(HERE / "tunwire.py"), "--ns", self.ns, "--rtt-ms",
             str(self.rtt_ms), "--a", self.dev_host, "--b", self.dev_site, "--addr-a",
             self.host_addr, "--addr-b", self.addr],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1)
        assert self.wire.stdout is not None
        line = self.wire.stdout.readline()
        if not line.startswith("READY"):
            rest = line + self.wire.stdout.read() if self.wire.poll() is not None else line
            raise RuntimeError(f"the wire to {self.ns} did not start: {rest.strip()}")

    def set_rtt(self, rtt_ms: float) -> None:
        """Change the added round-trip time of this site's packets from now on."""
        assert self.wire is not None and self.wire.stdin is not None and self.wire.stdout
        self.wire.stdin.write(f"rtt {rtt_ms}\n")
        self.wire.stdin.flush()
        self.wire.stdout.readline()  # "RTT <ms>": applied
        self.rtt_ms = rtt_ms

    # -- the server --------------------------------------------------------------------------

    def start(self) -> None:
        """Start (or restart) the site's S3 server in its namespace; wait until it answers.

        moto keeps its state in memory: a restarted server is empty.
        """
        if self.running:
            return
        self._log = open(self.workdir / f"{self.name}-server.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, sys.executable, str(Path(__file__).resolve()),
             "serve", self.addr, str(self.port)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(self.endpoint_url + "/", timeout=2) as response:
                    response.read()
                return
            except urllib.error.HTTPError:
                return  # any HTTP answer: it is up
            except OSError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"the server of {self.name} did not start: {exc}; "
                                       f"see {self.workdir / (self.name + '-server.log')}") \
                        from exc
                time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send the server a real signal and wait for it to exit."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.kill()
        if self.wire is not None:
            with contextlib.suppress(OSError):
                assert self.wire.stdin is not None
                self.wire.stdin.close()  # the wire exits at EOF
            try:
                self.wire.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.wire.kill()
                self.wire.wait()
            if self.wire.stdout is not None:
                self.wire.stdout.close()
            self.wire = None
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)


_OURS = re.compile(r"^ts\d{4}[0-9a-f]\d+$")  # the names NetSite gives its namespaces


def reap_stale_namespaces() -> list[str]:
    """Delete namespaces of earlier runs that died without tidying up (a SIGKILLed test
    run): only names of our own pattern, and only those no process is inside of."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=False).stdout.split("\n")
    reaped = []
    for line in listed:
        name = line.split(" ")[0]
        if _OURS.match(name):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                  text=True, check=False).stdout.strip()
            if not pids:
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
                reaped.append(name)
    return reaped


class NetSites:
    """Several sites, each at its own round-trip time from this (the root) namespace."""

    def __init__(self, sites: list[tuple[str, float]]):
        tag = f"{os.getpid() % 100000:05d}"[-4:] + secrets.token_hex(1)[0]
        net = (random.randint(100, 250), random.randrange(0, 240, 8))
        self.workdir = Path(tempfile.mkdtemp(prefix="tierstore-netsites-"))
        self.sites = {name: NetSite(name, rtt, i, tag, net, self.workdir)
                      for i, (name, rtt) in enumerate(sites)}
        self._closed = False

    def __getitem__(self, name: str) -> NetSite:
        return self.sites[name]

    def __enter__(self) -> NetSites:
        atexit.register(self.close)
        reap_stale_namespaces()
        try:
            for site in self.sites.values():
                site.open()
            for site in self.sites.values():
                site.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for site in self.sites.values():
            site.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _serve(host: str, port: int) -> None:
    """moto's server, with TCP_NODELAY on accepted connections, dying with its parent."""
    import ctypes
    import socket
    import socketserver

    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6").prctl(pr_set_pdeathsig, signal.SIGKILL)
    accept = socketserver.TCPServer.get_request

    def get_request(self: Any) -> Any:
        conn, addr = accept(self)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr

    socketserver.TCPServer.get_request = get_request  # type: ignore[method-assign]
    # werkzeug's dev server closes the connection after every response (it cannot drain an
    # unread request body), so every request pays a TCP handshake too: two round trips. Keeping
    # GET connections alive by dropping its "Connection: close" was tried and hung aiohttp
    # clients now and then, so the servers here cost 2 RTT per request, at every site alike.
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto.server import main as moto_main

    moto_main(["-H", host, "-p", str(port)])


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        _serve(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(f"usage: {sys.argv[0]} serve HOST PORT")
