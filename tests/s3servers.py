"""Real S3-compatible servers for the tests: moto in server mode and a single-node Ceph radosgw.

Both are started by session fixtures in ``tests/conftest.py``; this module has no pytest
dependency. The Ceph starter and :class:`S3Server` live in the package
(``tierstore.cli.bench.common.ceph``), so ``tierstore bench loader --s3 ceph`` starts the same
cluster; they are re-exported here::

    server, stop = start_moto()
    fs = s3fs.S3FileSystem(**server.storage_options())
    ...
    stop()

Set ``AWS_DEFAULT_REGION=us-east-1`` in the environment (the conftest does); the storage options
deliberately carry no ``region_name`` (moto rejects a bucket location that disagrees with it).
"""

from __future__ import annotations

import logging
import secrets
import urllib.request

from tierstore.cli.bench.common.ceph import (  # noqa: F401  (re-exported for the tests)
    _CEPH_DIRS,
    CEPH_BINARIES,
    CEPH_SCRIPT,
    CephStartError,
    CephUnavailable,
    S3Server,
    StopFn,
    ceph_missing,
    free_port,
    free_ports,
    kill_radosgw,
    rgw_counters,
    start_ceph,
    start_radosgw,
)

# --------------------------------------------------------------------------------------- moto


def start_moto(host: str = "127.0.0.1") -> tuple[S3Server, StopFn]:
    """Start moto's ``ThreadedMotoServer`` in this process on a free port.

    With ``port=0`` the OS picks the port; moto 5.2.5 reports the bound one through
    ``ThreadedMotoServer.get_host_and_port()`` (werkzeug records ``server_address`` after bind).
    moto accepts any keys; the state lives in this process and is shared with any in-process
    ``moto.mock_aws`` (``reset_moto`` resets both).
    """
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log per request
    srv = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    srv.start()
    bound_host, port = srv.get_host_and_port()
    server = S3Server(
        name="moto",
        endpoint_url=f"http://{bound_host}:{port}",
        access_key="tierstore-test",
        secret_key=secrets.token_hex(16),
    )
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            srv.stop()

    return server, stop


def reset_moto(server: S3Server) -> None:
    """Drop all state of the moto server (``POST /moto-api/reset``)."""
    req = urllib.request.Request(f"{server.endpoint_url}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()
