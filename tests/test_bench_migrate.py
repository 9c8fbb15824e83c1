"""``tierstore bench migrate`` (real processes, real tiers, no timings asserted), and the S3
write path it measures: an upload verified by the MD5 ETag the server returns, or read back
when the server cannot vouch for the bytes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from storefixtures import make_config, toml_for

from tierstore import Config, open_store
from tierstore.checksum import checksum
from tierstore.cli.bench.common.ceph import ceph_missing
from tierstore.errors import ChecksumMismatch, TierstoreError
from tierstore.store import Store
from tierstore.tier import PART_SIZE, Tier

KIB, MIB = 2**10, 2**20


def bench(*args: str, cwd: Path, status: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERSTORE_")}
    done = subprocess.run([sys.executable, "-m", "tierstore.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=240)
    assert done.returncode == status, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


def check_document(doc: dict, src: str, dst: str, rounds: int) -> None:
    assert doc["benchmark"] == "migrate" and doc["rounds"] == rounds
    for figures, direction in ((doc, f"{src}->{dst}"), (doc["reverse"], f"{dst}->{src}")):
        assert figures["direction"] == direction
        ours, theirs = figures["tierstore_mb_per_s"], figures["baseline_mb_per_s"]
        assert ours > 0 and theirs > 0
        assert figures["ratio"] == pytest.approx(ours / theirs, rel=0.01)
        moved = figures["plain_move_mb_per_s"]
        assert moved > 0 and figures["ratio_to_move"] == pytest.approx(ours / moved, rel=0.01)
    entries = {(e["direction"], e["path"]): e for e in doc["results"]}
    assert set(entries) == {(d, p) for d in (f"{src}->{dst}", f"{dst}->{src}")
                            for p in ("tierstore", "fsspec", "fsspec mv")}
    assert all(len(e["rounds_mb_per_s"]) == rounds for e in entries.values())
    assert all(e["cpu_s_per_gb"] > 0 for e in entries.values())
    assert "read back" in doc["verification"] or "ETag" in doc["verification"]


def test_scratch_store_on_local_folders(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    done = bench("bench", "migrate", "--src", "hot", "--dst", "cold", "--count", "3",
                 "--size", "300KiB", "--rounds", "2", "--json", str(out), "--results",
                 str(tmp_path / "results"), "--dir", str(tmp_path), cwd=tmp_path)
    doc = json.loads(out.read_text())
    check_document(doc, "hot", "cold", 2)
    assert doc["objects"] == 3 and doc["object_bytes"] == 300 * KIB
    [saved] = (tmp_path / "results").glob("migrate-*.json")
    assert json.loads(saved.read_text())["ratio"] == doc["ratio"]
    assert "hot->cold" in done.stdout and "tierstore" in done.stdout and "fsspec" in done.stdout
    assert f"result saved to {saved}" in done.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("tierstore-migrate-")]


def test_scratch_store_on_moto(tmp_path: Path) -> None:
    """--s3 moto starts its own server (a process), and stops it."""
    out = tmp_path / "result.json"
    bench("bench", "migrate", "--s3", "moto", "--count", "2", "--size", "1m", "--rounds", "1",
          "--json", str(out), "--results", "none", "--dir", str(tmp_path), cwd=tmp_path)
    doc = json.loads(out.read_text())
    check_document(doc, "hot", "warm", 1)
    assert {e["dst_url"].split("://")[0] for e in doc["results"]} == {"s3", "file"}
    assert not (tmp_path / "bench-results").exists()


def test_a_store_of_ones_own_is_left_as_it_was(moto_server: object, tmp_path: Path) -> None:
    bucket = moto_server.new_bucket()  # type: ignore[attr-defined]
    config = make_config(tmp_path / "store", "moto", moto_server, bucket)
    toml = tmp_path / "store.toml"
    toml.write_text(toml_for(config))
    with open_store(config) as store:
        store.put("keep/me.bin", b"x" * 1000, tier="warm")
    out = tmp_path / "r.json"
    bench("--config", str(toml), "bench", "migrate", "--src", "warm", "--dst", "hot",
          "--count", "2", "--size", "200k", "--rounds", "1", "--jobs", "2", "--json", str(out),
          "--results", "none", cwd=tmp_path)
    check_document(json.loads(out.read_text()), "warm", "hot", 1)
    with open_store(config) as store:
        assert store.find("") == ["keep/me.bin"]
        report = store.audit(deep=True)
        assert report.ok, report  # no bench files left on either tier
    moto_server.delete_bucket(bucket)  # type: ignore[attr-defined]


def test_scratch_store_on_ceph(tmp_path: Path) -> None:
    """--s3 ceph starts the project's single-node Ceph RGW, moves over it, and stops it."""
    if (missing := ceph_missing()) and os.environ.get("TIERSTORE_REQUIRE_CEPH") == "1":
        pytest.fail(f"ceph not installed and TIERSTORE_REQUIRE_CEPH=1: {missing}")
    if missing:
        pytest.skip(f"ceph not installed: {missing}")
    out = tmp_path / "result.json"
    bench("bench", "migrate", "--s3", "ceph", "--count", "2", "--size", "9m", "--rounds", "1",
          "--json", str(out), "--results", "none", "--dir", str(tmp_path), cwd=tmp_path)
    doc = json.loads(out.read_text())
    check_document(doc, "hot", "warm", 1)
    assert doc["scratch"] == {"s3": "ceph"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("tierstore-migrate-")]
    assert not [p for p in Path("/proc").glob("[0-9]*") if _is_ceph_of(p, tmp_path)]


def _is_ceph_of(proc: Path, folder: Path) -> bool:
    """Whether process ``proc`` is a Ceph daemon of a cluster under ``folder``."""
    try:
        return str(folder) in (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


@pytest.mark.parametrize("args", [["--src", "hot", "--dst", "hot"], ["--dst", "nowhere"],
                                  ["--count", "0"], ["--size", "lots"]])
def test_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    done = bench("bench", "migrate", *args, "--results", "none", cwd=tmp_path, status=2)
    assert done.stderr.startswith("tierstore: error: "), done.stderr


# -- the S3 write path: vouched for by the server, else read back -----------------------------


def s3_tier(config: Config) -> Tier:
    return Tier(config.tiers["warm"])


@pytest.mark.parametrize("size", [5 * KIB, PART_SIZE + 3 * KIB])
def test_an_upload_is_vouched_for_by_its_md5_etag(moto_server: object, tmp_path: Path,
                                                   size: int) -> None:
    """One PUT, or (with a small single-PUT limit) a multipart upload whose ETag is the MD5
    of the parts' MD5s: the server's ETag equals the MD5 of what was sent."""
    bucket = moto_server.new_bucket()  # type: ignore[attr-defined]
    tier = s3_tier(make_config(tmp_path, "moto", moto_server, bucket))
    tier.single_put_max = PART_SIZE - 1
    data = os.urandom(size)

    async def go() -> tuple[tuple[int | None, bool], tuple[int | None, bool]]:
        async def chunks():  # type: ignore[no-untyped-def]
            for start in range(0, size, 3 * MIB):
                yield data[start:start + 3 * MIB]

        try:
            await tier.write("a/b.bin", chunks())
            first = await tier.written_size("a/b.bin")
            again = await tier.written_size("a/b.bin")  # a receipt is used once
            return first, again
        finally:
            await tier.close()

    first, again = asyncio.run(go())
    assert first == (size, True) and again == (size, False)
    etag = moto_server.client().head_object(Bucket=bucket, Key="warm/a/b.bin")["ETag"]  # type: ignore[attr-defined]
    assert etag.endswith('-2"') == (size > PART_SIZE)


def test_bytes_replaced_after_the_upload_are_read_back_and_refused(
        moto_server: object, tmp_path: Path) -> None:
    """If the object at the path is no longer the one uploaded (its ETag changed), the store
    does not trust the receipt: it reads the bytes back, and refuses wrong ones."""
    bucket = moto_server.new_bucket()  # type: ignore[attr-defined]
    config = make_config(tmp_path, "moto", moto_server, bucket)
    data = os.urandom(64 * KIB)
    other = bytes(reversed(data))  # same size, other bytes

    async def go() -> None:
        store = Store(config)
        try:
            tier = store.tier("warm")

            async def chunks():  # type: ignore[no-untyped-def]
                yield data

            await tier.write("x.bin", chunks())
            moto_server.client().put_object(  # type: ignore[attr-defined]
                Bucket=bucket, Key="warm/x.bin", Body=other)
            with pytest.raises(ChecksumMismatch):
                await store._verify_written(tier, "x.bin", "x.bin", len(data), checksum(data))
            await tier.write("y.bin", chunks())
            await store._verify_written(tier, "y.bin", "y.bin", len(data), checksum(data))
        finally:
            await store.close()

    asyncio.run(go())


@pytest.mark.parametrize("page", [1000, 2])
def test_a_batch_of_uploads_is_proven_by_one_listing(moto_server: object, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     page: int) -> None:
    """``written_sizes``: each object's size and ETag from a listing of the range the batch
    spans (others' keys between them skipped; with pages of 2 keys the listing stops short
    and the rest get a HEAD each); one replaced since its upload is not vouched for, a
    missing one has no size, and a receipt is used once."""
    from tierstore.tier import s3 as s3_tier_module

    monkeypatch.setattr(s3_tier_module, "LIST_PAGE", page)
    bucket = moto_server.new_bucket()  # type: ignore[attr-defined]
    tier = s3_tier(make_config(tmp_path, "moto", moto_server, bucket))
    client = moto_server.client()  # type: ignore[attr-defined]
    for name in ("b/a0", "b/a05", "b/a25", "b/z", *(f"b/a1x{i}" for i in range(10))):  # others
        client.put_object(Bucket=bucket, Key=f"warm/{name}", Body=b"other")
    data = {f"b/a{i}": os.urandom(100 + i) for i in range(4)}

    async def chunks(content: bytes):  # type: ignore[no-untyped-def]
        yield content

    async def go() -> tuple[list[tuple[int | None, bool]], list[tuple[int | None, bool]]]:
        try:
            for path, content in data.items():
                await tier.write(path, chunks(content))
            client.put_object(Bucket=bucket, Key="warm/b/a2", Body=bytes(102))  # replaced
            paths = [*data, "b/never"]
            digests = [checksum(d) for d in data.values()] + ["x"]
            return (await tier.written_sizes(paths, digests),
                    await tier.written_sizes(paths, digests))
        finally:
            await tier.close()

    first, again = asyncio.run(go())
    assert first == [(100, True), (101, True), (102, False), (103, True), (None, False)]
    assert again == [(100, False), (101, False), (102, False), (103, False), (None, False)]
    moto_server.delete_bucket(bucket)  # type: ignore[attr-defined]


def test_moves_to_and_from_s3_stay_verified(moto_server: object, tmp_path: Path) -> None:
    """Moves local -> S3 (direct to the final name, vouched for by the ETag) and back, of a
    one-PUT object and a multipart one; every replica deep-audited."""
    bucket = moto_server.new_bucket()  # type: ignore[attr-defined]
    config = make_config(tmp_path, "moto", moto_server, bucket)
    data = {"s.bin": os.urandom(700 * KIB), "m.bin": os.urandom(PART_SIZE * 4 + 5)}
    with open_store(config) as store:
        for key, content in data.items():
            store.put(key, content, tier="hot")
            store.move(key, "warm")
            assert store.stat(key).tiers == ["warm"]
            assert [r.path for r in store.stat(key).replicas] == [key]
        assert store.audit(deep=True).ok
        for key, content in data.items():
            store.move(key, "hot")
            assert store.cat(key, verify=True) == content
        report = store.audit(deep=True)
        assert report.ok, report
    moto_server.delete_bucket(bucket)  # type: ignore[attr-defined]


# -- the local write path: hashed as it is handed to the kernel -------------------------------


def test_a_local_write_is_vouched_for_by_the_hash_of_what_was_written(tmp_path: Path) -> None:
    """A local folder vouches for bytes :meth:`Tier.write` hashed on their way to the kernel,
    once; another digest, or a file replaced since, is read back, and wrong bytes refused."""
    config = make_config(tmp_path, "local")
    data = os.urandom(3 * MIB + 5)
    other = bytes(reversed(data))

    async def chunks(content: bytes):  # type: ignore[no-untyped-def]
        for start in range(0, len(content), MIB):
            yield content[start:start + MIB]

    async def go() -> None:
        store = Store(config)
        try:
            tier = store.tier("hot")
            await tier.write("a.bin", chunks(data))
            assert await tier.written_size("a.bin", checksum(data)) == (len(data), True)
            assert await tier.written_size("a.bin", checksum(data)) == (len(data), False)
            await tier.write("b.bin", chunks(data))
            assert await tier.written_size("b.bin", checksum(other)) == (len(data), False)
            await tier.write("c.bin", chunks(data))  # then replaced by other bytes
            os.replace(await asyncio.to_thread(_write_temp, tmp_path, other),
                       tier.full_path("c.bin"))
            with pytest.raises(ChecksumMismatch):
                await store._verify_written(tier, "c.bin", "c.bin", len(data), checksum(data))
            await tier.write("d.bin", chunks(other))  # bytes that are not the object's
            with pytest.raises(ChecksumMismatch):
                await store._verify_written(tier, "d.bin", "d.bin", len(data), checksum(data))
        finally:
            await store.close()

    asyncio.run(go())


def _write_temp(folder: Path, content: bytes) -> str:
    path = folder / "replacement.bin"
    path.write_bytes(content)
    return str(path)


# -- the proof an S3 server gives: its check of signed bodies, else the MD5 ETag ----------------


@pytest.mark.parametrize("server_name, checks", [("moto", False), ("ceph", True)])
def test_the_probe_finds_whether_the_server_checks_signed_bodies(
        request: pytest.FixtureRequest, tmp_path: Path, server_name: str, checks: bool) -> None:
    """Ceph RGW refuses a body changed after signing; moto stores it (and the probe removes
    it again, with one a killed process left): an upload there is proven by its MD5 ETag
    instead."""
    server = request.getfixturevalue(f"{server_name}_server")
    bucket = server.new_bucket()
    tier = s3_tier(make_config(tmp_path, server_name, server, bucket))
    if not checks:  # only a server that stores probes can have one left over
        server.client().put_object(Bucket=bucket, Key="warm/.tierstore/probe/killed", Body=b"1")

    async def go() -> bool:
        try:
            await tier.write("a.bin", _one(b"payload"))
            assert await tier.written_size("a.bin") == (7, True)
            return bool(tier._checks_payload)
        finally:
            await tier.close()

    try:
        assert asyncio.run(go()) is checks
        keys = [o["Key"] for o in server.client().list_objects_v2(Bucket=bucket)
                .get("Contents", [])]
        assert keys == ["warm/a.bin"]  # no probe object left behind
    finally:
        server.delete_bucket(bucket)


@pytest.mark.parametrize("size", [5 * KIB, PART_SIZE + 3 * KIB])
@pytest.mark.parametrize("server_name", ["moto", "ceph"])
def test_a_byte_flipped_on_the_way_to_s3_is_caught_before_commit(
        request: pytest.FixtureRequest, tmp_path: Path, server_name: str, size: int) -> None:
    """A byte of a put's body (one PUT, or a part of a multipart upload) flipped after the
    client hashed and signed it, every time it is sent, as a faulty link or proxy would:
    the server refuses it
    (Ceph: the signed SHA-256 does not match), or stores it and its ETag gives it away
    (moto), which the store then reads back and refuses. Either way the put fails, and no
    object, replica or stray upload is left."""
    server = request.getfixturevalue(f"{server_name}_server")
    bucket = server.new_bucket()
    config = make_config(tmp_path, server_name, server, bucket)
    data = os.urandom(size)

    async def go() -> None:
        store = Store(config)
        try:
            tier = store.tier("warm")
            tier.single_put_max = PART_SIZE - 1
            await tier.write("warmup.bin", _one(b"x"))  # the probe runs unchanged
            fs = await tier._fs()
            flipped = []

            def flip(request: object, **_: object) -> None:
                body = getattr(request, "body", None)  # bytes, or a BytesIO of them
                body = body.getvalue() if hasattr(body, "getvalue") else body
                url = getattr(request, "url", "")
                if "/k.bin" in url and "partNumber=2" not in url:  # one PUT, or part 1
                    changed = bytearray(body)  # type: ignore[arg-type]
                    changed[len(changed) // 2] ^= 0x01
                    request.body = bytes(changed)  # type: ignore[attr-defined]
                    flipped.append(url)  # every try (a refused body is sent again)

            for op in ("PutObject", "UploadPart"):
                fs.s3.meta.events.register(f"before-send.s3.{op}", flip, unique_id=f"t-{op}")
            with pytest.raises(TierstoreError):
                await store.put("k.bin", data)
            assert flipped
            assert store.catalog.get("k.bin") is None
        finally:
            await store.close()

    try:
        asyncio.run(go())
        client = server.client()
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert keys == ["warm/warmup.bin"]
        assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    finally:
        server.delete_bucket(bucket)


async def _one(data: bytes):  # type: ignore[no-untyped-def]
    yield data


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # the field after the state: the parent's pid
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize(("after", "sigint"), [
    (1.0, signal.default_int_handler),  # the server starting
    (3.0, signal.default_int_handler),  # moves under way
    (3.0, signal.SIG_IGN)])  # the same, as a shell's background job (SIGINT ignored)
def test_sigterm_stops_the_server_the_run_started(tmp_path: Path, after: float,
                                                  sigint: object) -> None:
    """``kill`` (or ``timeout``) of a run: its moto server is stopped, not left behind, and
    the command says so in one line and exits 143, as a shell reports SIGTERM."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERSTORE_")}
    proc = subprocess.Popen([sys.executable, "-m", "tierstore.cli", "bench", "migrate", "--s3",
                             "moto", "--rounds", "1000", "--results", "none", "--dir",
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    deadline = time.monotonic() + 60
    while not (servers := _children(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert servers, "the run started no server"
    time.sleep(after)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.rstrip().endswith("tierstore: error: terminated") and "Traceback" not in err
    assert not [pid for pid in servers if Path(f"/proc/{pid}").exists()
                and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("tierstore-migrate-")]
