"""The metrics and health endpoint against clients that connect and send nothing more: a real
server on a real port, real sockets. Deadlines are generous bounds, never measurements."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tierstore import SyncStore
from tierstore.cluster import ClusterMember
from tierstore.daemon import Daemon, DaemonOptions
from tierstore.telemetry import DaemonMetrics, MetricsServer

IDLE_S = 0.5  # the server's idle timeout here, short so that the test is quick
MAX_OPEN = 32
ANSWER_THREADS = 2
FLOOD = 300
DEADLINE_S = 20.0  # for what should take well under a second
HALF_A_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: tierstore\r\n"  # no blank line: never ends


@pytest.fixture
def server() -> Iterator[int]:
    """A metrics server with a short idle timeout; its port."""
    metrics = DaemonMetrics()
    served = MetricsServer(metrics, lambda: (True, {"state": "running"}), 0,
                           idle_timeout=IDLE_S, max_connections=MAX_OPEN,
                           answer_threads=ANSWER_THREADS)
    port = served.start()
    yield port
    served.stop()


def get(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=DEADLINE_S) as reply:
        return reply.status, reply.read()


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (without waiting)."""
    sock.setblocking(False)
    try:
        return sock.recv(1024) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def wait_until(check: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_idle_connections_hold_no_thread_and_are_closed(server: int) -> None:
    """300 connections that send half a request and nothing more: the server still answers
    /healthz and /metrics, its threads stay bounded, no more than ``max_connections`` stay
    open, and the idle timeout closes every one of them."""
    threads_before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server), timeout=DEADLINE_S)
            for _ in range(FLOOD)]
    try:
        for sock in idle:
            sock.sendall(HALF_A_REQUEST)
        status, body = get(server, "/healthz")
        assert (status, json.loads(body)) == (200, {"state": "running"})
        assert get(server, "/metrics")[0] == 200
        assert threading.active_count() - threads_before <= ANSWER_THREADS
        wait_until(lambda: sum(not closed_by_server(s) for s in idle) <= MAX_OPEN,
                   f"more than {MAX_OPEN} idle connections kept open")
        wait_until(lambda: all(closed_by_server(s) for s in idle),
                   "idle connections not closed after the idle timeout")
        assert get(server, "/healthz")[0] == 200
    finally:
        for sock in idle:
            sock.close()


def test_a_request_too_long_or_malformed_is_dropped_or_refused(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=DEADLINE_S) as sock:
        sock.sendall(b"GET /" + b"x" * 20_000 + b" HTTP/1.1\r\n\r\n")
        wait_until(lambda: closed_by_server(sock), "an endless request line was kept")
    with socket.create_connection(("127.0.0.1", server), timeout=DEADLINE_S) as sock:
        sock.sendall(b"nonsense\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.0 400 ")
    assert get(server, "/healthz")[0] == 200


def test_healthz_names_no_process_or_lease_holder(local_store: SyncStore) -> None:
    """/healthz is open to anyone who reaches the port: it tells the state, never the pid,
    the lease holder (host, pid and its random token) or the fencing token."""
    store = local_store.aio
    member = ClusterMember(store.catalog, store.config, ttl=30.0)
    member.join()
    daemon = Daemon(store, DaemonOptions(metrics_port=None), cluster=member)
    served = MetricsServer(daemon.metrics, daemon.health, 0)
    port = served.start()
    try:
        status, body = get(port, "/healthz")
    finally:
        served.stop()
        member.leave()
    health = json.loads(body)
    assert status == 200 and health["state"] == "starting" and health["cluster"]["leader"]
    assert set(health) == {"state", "cycles", "moves_in_flight", "last_cycle", "cluster"}
    assert set(health["cluster"]) == {"site", "node_lease", "leader", "lease_ttl"}
    assert member.holder.encode() not in body
    assert member.holder.rsplit(":", 1)[1].encode() not in body
