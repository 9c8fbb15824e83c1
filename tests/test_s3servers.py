"""The real S3 test servers (moto, Ceph radosgw) do the basic S3 operations through s3fs."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest
import s3fs
from s3servers import S3Server


def _fs(server: S3Server) -> s3fs.S3FileSystem:
    # skip_instance_cache: s3fs caches instances by arguments; each test gets its own client
    return s3fs.S3FileSystem(skip_instance_cache=True, **server.storage_options())


def test_put_get_range_list_delete(s3_bucket: tuple[S3Server, str]) -> None:
    server, bucket = s3_bucket
    fs = _fs(server)
    data = b"0123456789abcdef"
    fs.pipe(f"{bucket}/dir/a.bin", data)
    fs.pipe(f"{bucket}/dir/b.bin", b"second")

    assert fs.cat(f"{bucket}/dir/a.bin") == data
    # s3fs sends "Range: bytes=2-5" for start=2, end=6 (end exclusive)
    assert fs.cat_file(f"{bucket}/dir/a.bin", start=2, end=6) == b"2345"
    with fs.open(f"{bucket}/dir/a.bin", "rb") as f:
        f.seek(10)
        assert f.read(3) == b"abc"

    assert sorted(fs.ls(f"{bucket}/dir", detail=False)) == [
        f"{bucket}/dir/a.bin",
        f"{bucket}/dir/b.bin",
    ]
    assert fs.info(f"{bucket}/dir/a.bin")["size"] == len(data)

    fs.rm(f"{bucket}/dir/a.bin")
    fs.invalidate_cache()
    assert fs.ls(f"{bucket}/dir", detail=False) == [f"{bucket}/dir/b.bin"]
    with pytest.raises(FileNotFoundError):
        fs.cat(f"{bucket}/dir/a.bin")


def test_raw_range_header(s3_bucket: tuple[S3Server, str]) -> None:
    """The literal header Range: bytes=2-5 returns 206 and exactly 4 bytes."""
    server, bucket = s3_bucket
    c = server.client()
    c.put_object(Bucket=bucket, Key="r", Body=b"0123456789")
    resp = c.get_object(Bucket=bucket, Key="r", Range="bytes=2-5")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert resp["Body"].read() == b"2345"


def test_delete_bucket_empties_it(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    assert bucket.startswith("ts-") and len(bucket) == 11
    fs = _fs(s3_server)
    for i in range(3):
        fs.pipe(f"{bucket}/k{i}", b"x" * i)
    s3_server.delete_bucket(bucket)
    names = [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    assert bucket not in names


def test_repr_hides_secret(s3_server: S3Server) -> None:
    assert s3_server.secret_key
    assert s3_server.secret_key not in repr(s3_server)
    assert s3_server.secret_key not in str(s3_server)
    opts = s3_server.storage_options()
    assert "region_name" not in opts and "region_name" not in opts["client_kwargs"]


def test_dead_endpoint_refuses(dead_endpoint: str) -> None:
    parts = urlsplit(dead_endpoint)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((parts.hostname, parts.port), timeout=2)
