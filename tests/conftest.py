"""Shared pytest fixtures for tierstore."""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from s3servers import (
    CephStartError,
    CephUnavailable,
    S3Server,
    free_port,
    reset_moto,
    start_ceph,
    start_moto,
)

# =============================================================================================
# S3 servers: environment, moto, Ceph radosgw, fresh buckets, a dead endpoint
# =============================================================================================

# Never let a developer's real AWS identity, profile or endpoint leak into the tests, and never
# let botocore probe the EC2 metadata service (seconds of timeouts when no keys are given).
for _var in (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
):
    os.environ.pop(_var, None)
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# moto and s3fs: give s3fs no region_name, set the default region instead.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


# =============================================================================================
# A crash of the test process itself (a segfault in an extension module) ends pytest before it
# reports anything: the test that was running and every thread's stack are written to
# FAULT_LOG instead, and `make test` prints them last, where a CI log's tail shows them.
# =============================================================================================

FAULT_LOG = Path(os.environ.get("TIERSTORE_FAULT_LOG", ".pytest-faults.log"))
_fault_file = None


def pytest_configure(config: pytest.Config) -> None:
    global _fault_file
    if config.pluginmanager.has_plugin("faulthandler"):
        return  # pytest's own handler writes to stderr; ours needs `-p no:faulthandler`
    _fault_file = FAULT_LOG.open("w", buffering=1)
    faulthandler.enable(file=_fault_file, all_threads=True)


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    if _fault_file is not None:
        _fault_file.seek(0)
        _fault_file.truncate()
        _fault_file.write(f"running {nodeid}\n")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[S3Server]:
    """moto's ThreadedMotoServer on 127.0.0.1 and a free port, for the whole session."""
    server, stop = start_moto()
    yield server
    stop()


@pytest.fixture
def moto_reset(moto_server: S3Server) -> Iterator[S3Server]:
    """The moto server, emptied before and after the test (tests normally use fresh buckets)."""
    reset_moto(moto_server)
    yield moto_server
    reset_moto(moto_server)


@pytest.fixture(scope="session")
def ceph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A single-node Ceph 16.2 radosgw (memstore OSD), started once per session on first use.

    Skips when Ceph is not installed, unless TIERSTORE_REQUIRE_CEPH=1 (CI), which fails instead.
    """
    missing = failed = ""
    try:
        server, stop = start_ceph(tmp_path_factory.mktemp("ceph"))
    except CephUnavailable as e:
        missing = str(e)
    except CephStartError as e:
        failed = str(e)
    if missing and os.environ.get("TIERSTORE_REQUIRE_CEPH") == "1":
        pytest.fail(f"ceph not installed and TIERSTORE_REQUIRE_CEPH=1: {missing}", pytrace=False)
    if missing:
        pytest.skip(f"ceph not installed: {missing}")
    if failed:
        pytest.fail(f"ceph did not start: {failed}", pytrace=False)
    yield server
    stop()


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("moto", id="moto"),
        pytest.param("ceph", id="ceph", marks=pytest.mark.ceph),
    ],
)
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """Each real S3 server in turn; Ceph is started only if a ceph-parametrized test runs."""
    server: S3Server = request.getfixturevalue(f"{request.param}_server")
    return server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[tuple[S3Server, str]]:
    """(server, bucket): a fresh empty bucket for one test, deleted (best effort) afterwards."""
    bucket = s3_server.new_bucket()
    yield s3_server, bucket
    try:
        s3_server.delete_bucket(bucket)
    except Exception as e:  # a test may have broken the bucket on purpose; don't mask its result
        print(f"warning: could not delete bucket {bucket} on {s3_server.name}: {e}")


@pytest.fixture(scope="session", autouse=True)
def _bench_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Benchmarks save their results (by default in ./bench-results): never in the tree."""
    folder = tmp_path_factory.mktemp("bench-results")
    previous = os.environ.get("TIERSTORE_RESULTS")
    os.environ["TIERSTORE_RESULTS"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("TIERSTORE_RESULTS", None)
    else:
        os.environ["TIERSTORE_RESULTS"] = previous


@pytest.fixture
def dead_endpoint() -> str:
    """An ``http://127.0.0.1:<port>`` URL where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


# =============================================================================================
# (other fixtures below)
# =============================================================================================


# PostgreSQL: one server per session, a fresh catalog database per test (pg_server, pg_url).
# Stores over local folders and S3 buckets (store, store_config, local_store); a carbon-
# intensity server (intensity_server).
from intensityserver import intensity_server  # noqa: E402,F401
from pgfixtures import catalog, own_pg, pg_server, pg_url  # noqa: E402,F401
from storefixtures import local_store, store, store_config  # noqa: E402,F401
