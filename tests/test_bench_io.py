"""``tierstore bench io``: fio's options and job files, fio's histogram and JSON, real runs on
a local file, on a real S3 server (moto), on a tier and through the store, and the structure
of its JSON checked against the real fio's on the same job.

Runs are tiny (a few MiB, or ``--runtime`` under a second); nothing here asserts a timing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from s3servers import S3Server
from storefixtures import make_config, toml_for

from tierstore import open_store
from tierstore.cli import main
from tierstore.cli.bench.common.errors import BenchError, UnsupportedOption
from tierstore.cli.bench.common.units import parse_size, parse_time
from tierstore.cli.bench.io.histogram import (
    FIO_PERCENTILES,
    LatencyHistogram,
    bucket_index,
    bucket_value,
)
from tierstore.cli.bench.io.jobfile import parse_command_line

FIO = shutil.which("fio")
needs_fio = pytest.mark.skipif(FIO is None, reason="fio is not installed "
                               "(`make test` installs Debian's fio)")


def bench(capsys: pytest.CaptureFixture[str], *args: str, status: int = 0) -> tuple[str, str]:
    """``tierstore bench io ARGS`` in this process: (stdout, stderr)."""
    code = main(["bench", "io", *args])
    out, err = capsys.readouterr()
    assert code == status, f"exit {code}:\n{out}\n{err}"
    assert "Traceback" not in out + err
    return out, err


def bench_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    out, _ = bench(capsys, *args, "--output-format=json")
    doc: dict[str, Any] = json.loads(out)
    return doc


# -- options and job files ---------------------------------------------------------------


def test_sizes_and_times_read_as_fio_reads_them() -> None:
    assert parse_size("4k", "bs") == parse_size("4K", "bs") == parse_size("4kb", "bs") == 4096
    assert parse_size("1m", "bs") == 2**20
    assert parse_size("8KiB", "size") == 8000  # fio's kb_base=1024 compatibility rule
    assert parse_size("512", "bs") == 512
    assert parse_time("10", "runtime") == 10.0
    assert parse_time("1500ms", "runtime") == 1.5
    with pytest.raises(BenchError, match="bs='4q'"):
        parse_size("4q", "bs")


def test_command_line_globals_jobs_and_precedence(tmp_path: Path) -> None:
    jobfile = tmp_path / "jobs.fio"
    jobfile.write_text("; comment\n[global]\nbs=1m\nsize=64m\nruntime=${BENCH_RT}\n"
                       "[seq]\nrw=read\ntime_based\n\n[rand]\nrw=randread\nbs=4k\n"
                       "random_distribution=zipf:1.2\n")
    os.environ["BENCH_RT"] = "3"
    try:
        invocation = parse_command_line([str(jobfile), "--size=32m", "--iodepth", "4",
                                         "--name=extra", "--rw=randrw", "--rwmixread=70",
                                         "--bsrange=4k-64k", "--output-format=json"])
    finally:
        del os.environ["BENCH_RT"]
    seq, rand, extra = invocation.job_options()
    assert invocation.output_format == "json"
    assert (seq.rw, seq.bs, seq.size, seq.runtime, seq.time_based, seq.iodepth) == \
        ("read", 2**20, 32 * 2**20, 3.0, True, 4)  # the command line's globals win
    assert (rand.bs, rand.random_distribution, rand.zipf_theta) == (4096, "zipf", 1.2)
    assert (extra.read_percent, extra.block_sizes, extra.sequential) == \
        (70, (4096, 65536), False)
    assert extra.given == {"name": "extra", "rw": "randrw", "rwmixread": "70",
                           "bsrange": "4k-64k"}


def test_unsupported_options_are_errors_that_name_them(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    jobfile = tmp_path / "bad.fio"
    jobfile.write_text("[global]\nbs=4k\n[a]\nrw=read\nthinktime=10\n")
    with pytest.raises(UnsupportedOption, match=r"'thinktime' \(.*bad.fio:5\)"):
        parse_command_line([str(jobfile)])
    with pytest.raises(UnsupportedOption, match="ioengine=libaio"):
        parse_command_line(["--name=a", "--ioengine=libaio", "--size=1m"]).job_options()
    with pytest.raises(UnsupportedOption, match=r"random_distribution=pareto:0\.9"):
        parse_command_line(["--name=a", "--random_distribution=pareto:0.9"]).job_options()
    _, err = bench(capsys, "--name=a", "--size=1m", "--verify=md5", status=2)
    assert "unsupported fio option 'verify'" in err
    _, err = bench(capsys, "--name=a", "--rw=append", "--size=1m", status=2)
    assert "rw='append'" in err
    _, err = bench(capsys, status=2)
    assert "no jobs" in err
    out, _ = bench(capsys, "--help")
    assert "--rw=read|write|randread|randwrite|randrw" in out


# -- the histogram -------------------------------------------------------------------------


def test_bucket_layout_is_fios() -> None:
    small = np.arange(128)
    assert (bucket_index(small) == small).all()  # exact below 128 ns
    values = np.random.default_rng(0).integers(128, 2**34, 20_000)
    for value, index in zip(values.tolist(), bucket_index(values).tolist(), strict=True):
        assert abs(bucket_value(index) - value) <= value / 128
    assert bucket_index(np.array([2**40])).item() == 29 * 64 - 1  # clamped, as fio does


def test_percentiles_match_numpy_on_known_data() -> None:
    data = np.random.default_rng(1).lognormal(11, 1.2, 50_000).astype(np.int64)
    whole, halves = LatencyHistogram(), [LatencyHistogram(), LatencyHistogram()]
    whole.extend(data.tolist())
    halves[0].extend(data[:20_000].tolist())
    halves[1].extend(data[20_000:].tolist())
    merged = LatencyHistogram.merged(halves)
    for hist in (whole, merged):
        assert (hist.n, hist.min, hist.max) == (len(data), data.min(), data.max())
        assert hist.mean == pytest.approx(data.mean())
        assert hist.stddev == pytest.approx(data.std(ddof=1))
        for p, value in hist.percentiles().items():
            exact = np.percentile(data, p, method="inverted_cdf")
            assert abs(value - exact) <= exact / 64 + 1, p
    assert list(whole.percentiles()) == list(FIO_PERCENTILES)
    assert sum(whole.share_below([10**5, 10**6])) == pytest.approx(100.0)


# -- real runs -----------------------------------------------------------------------------


def test_local_size_based_runs_move_exactly_size(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    target = str(tmp_path / "data.bin")
    doc = bench_json(capsys, "--name=rand", f"--filename={target}", "--rw=randread",
                     "--bs=4k", "--size=2m", "--iodepth=4")
    job = doc["jobs"][0]
    assert job["jobname"] == "rand" and job["job options"]["bs"] == "4k"
    read = job["read"]
    assert (read["io_bytes"], read["total_ios"], read["short_ios"]) == (2**21, 512, 0)
    assert read["clat_ns"]["N"] == 512 and job["write"]["total_ios"] == 0
    assert list(read["clat_ns"]["percentile"]) == [f"{p:.6f}" for p in FIO_PERCENTILES]
    assert job["iodepth_level"]["4"] == 100.0
    assert sum(job["latency_us"].values()) + sum(job["latency_ns"].values()) + \
        sum(job["latency_ms"].values()) == pytest.approx(100.0, abs=0.01)
    assert doc["tierstore"]["jobs"][0]["target"]["kind"] == "local"
    assert doc["tierstore"]["machine"]["cores"] == os.cpu_count()

    out, _ = bench(capsys, "--name=seq", f"--filename={target}", "--rw=read", "--bs=256k",
                   "--runtime=300ms", "--time_based", "--ramp_time=100ms")
    for line in ("seq: (g=0): rw=read, bs=(R) 256KiB-256KiB", "seq: (groupid=0, jobs=1)",
                 "read: IOPS=", "clat percentiles", "Run status group 0 (all jobs):"):
        assert line in out


def test_writes_fsync_mixes_and_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    doc = bench_json(capsys, "--name=w", f"--directory={tmp_path}", "--rw=randrw",
                     "--rwmixread=50", "--bsrange=4k-16k", "--size=1m", "--nrfiles=2",
                     "--fsync=4", "--end_fsync=1")
    job = doc["jobs"][0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.0.0", "w.0.1"]
    moved = job["read"]["io_bytes"] + job["write"]["io_bytes"]
    assert 2**20 <= moved < 2**20 + 16 * 1024
    assert job["read"]["total_ios"] and job["write"]["total_ios"]
    assert job["sync"]["total_ios"] == job["write"]["total_ios"] // 4 + 2
    assert "percentile" in job["sync"]["lat_ns"]

    doc = bench_json(capsys, "--name=seqw", f"--filename={tmp_path / 'seq.bin'}",
                     "--rw=write", "--bs=64k", "--size=1m", "--iodepth=2",
                     "--random_distribution=zipf:1.1")
    assert doc["jobs"][0]["write"]["io_bytes"] == 2**20


def test_direct_io_is_used_or_refused_clearly(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "io", "--name=d", f"--filename={tmp_path / 'd.bin'}", "--rw=read",
                 "--bs=4k", "--size=256k", "--direct=1", "--output-format=json"])
    out, err = capsys.readouterr()
    if code == 0:
        assert json.loads(out)["jobs"][0]["read"]["io_bytes"] == 256 * 1024
    else:
        assert "O_DIRECT" in err and "Traceback" not in err
    _, err = bench(capsys, "--name=d", "--bs=1000", "--direct=1", "--size=1m", status=2)
    assert "multiples of 512" in err


def test_numjobs_are_processes_and_group_reporting_merges(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    job = ["--name=par", f"--directory={tmp_path}", "--rw=read", "--bs=64k", "--size=512k",
           "--numjobs=2"]
    doc = bench_json(capsys, *job)
    assert [j["jobname"] for j in doc["jobs"]] == ["par", "par"]
    files = [t["target"]["files"] for t in doc["tierstore"]["jobs"]]
    assert files == [[str(tmp_path / "par.0.0")], [str(tmp_path / "par.1.0")]]
    grouped = bench_json(capsys, *job, "--group_reporting")
    (only,) = grouped["jobs"]
    assert only["read"]["total_ios"] == 16 and only["read"]["clat_ns"]["N"] == 16


def test_s3_through_fsspec(moto_server: S3Server, capsys: pytest.CaptureFixture[str]) -> None:
    bucket = moto_server.new_bucket()
    options = json.dumps({"key": moto_server.access_key, "secret": moto_server.secret_key})
    common = [f"--filename=s3://{bucket}/bench/obj", f"--endpoint_url={moto_server.endpoint_url}",
              f"--storage_options={options}", "--bs=64k", "--size=512k", "--iodepth=4"]
    try:
        out, err = bench(capsys, "--name=s3r", "--rw=randread", *common, "--output-format=json")
        assert moto_server.secret_key not in out + err
        doc = json.loads(out)
        assert doc["jobs"][0]["read"]["total_ios"] == 8
        assert doc["jobs"][0]["job options"]["storage_options"] == \
            '{"key": "***", "secret": "***"}'
        doc = bench_json(capsys, "--name=s3w", "--rw=write", *common)
        assert doc["jobs"][0]["write"]["io_bytes"] == 512 * 1024
        listed = moto_server.client().list_objects_v2(Bucket=bucket)["Contents"]
        names = {o["Key"] for o in listed}
        assert "bench/obj" in names and "bench/obj_65536_65536" in names  # fio's S3 naming
    finally:
        moto_server.delete_bucket(bucket)


def test_tier_and_tier_paths_leave_the_store_as_found(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    config = make_config(tmp_path / "store", "local")
    config_file = tmp_path / "tierstore.toml"
    config_file.write_text(toml_for(config))
    with open_store(config) as store:
        store.put("data/shard-0", os.urandom(256 * 1024))

    doc = bench_json(capsys, "--name=hot", "--tier=hot", f"--config={config_file}",
                     "--rw=randrw", "--bs=16k", "--size=256k", "--iodepth=2")
    job = doc["jobs"][0]
    assert job["read"]["total_ios"] + job["write"]["total_ios"] == 16
    assert doc["tierstore"]["jobs"][0]["target"]["kind"] == "tier"
    hot = tmp_path / "store" / "tiers" / "hot"
    assert not [p for p in hot.rglob("*") if p.is_file()]  # bench files removed

    doc = bench_json(capsys, "--name=key", "--filename=tier://data/shard-0", "--rw=randread",
                     "--bs=16k", f"--config={config_file}")  # size: the object's
    assert doc["jobs"][0]["read"]["io_bytes"] == 256 * 1024
    bench_json(capsys, "--name=new", "--filename=tier://data/made", "--rw=randrw",
               "--bs=16k", "--size=64k", f"--config={config_file}")
    with open_store(config) as store:
        assert store.find("") == ["data/shard-0"]
        assert store.audit(deep=True).ok  # no orphan files, nothing missing


# -- against the real fio ------------------------------------------------------------------


def shape(value: Any, key: str = "") -> Any:
    """The structure of a JSON document: keys and kinds, not values."""
    if key in ("job options", "global options"):
        return "options"
    if isinstance(value, dict):
        return {k: shape(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    return "number" if isinstance(value, int | float) else type(value).__name__


@needs_fio
def test_json_has_fios_structure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "same.bin"
    job = ["--name=shape", f"--filename={target}", "--rw=randrw", "--bs=4k", "--size=1m",
           "--fsync=8", "--output-format=json"]
    done = subprocess.run([str(FIO), *job, "--ioengine=psync"], capture_output=True,
                          text=True, timeout=120, check=True)
    theirs = json.loads(done.stdout[done.stdout.index("{"):])
    ours = bench_json(capsys, *job)
    assert set(ours) - set(theirs) == {"tierstore"}  # the one key fio readers skip
    assert set(theirs) - set(ours) <= {"global options"}
    ours_jobs, their_jobs = shape(ours["jobs"]), shape(theirs["jobs"])
    assert ours_jobs == their_jobs
    if ours["disk_util"] and theirs["disk_util"]:
        assert shape(ours["disk_util"]) == shape(theirs["disk_util"])
    for doc in (ours, theirs):  # the same job: the same amount of work
        assert doc["jobs"][0]["read"]["total_ios"] + doc["jobs"][0]["write"]["total_ios"] == 256


@needs_fio
def test_compare_fio_side_by_side(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tierstore.cli.bench.io.compare_fio", "--runs=1", "--json", "--",
         "--rw=randread", "--bs=4k", "--size=1m", "--runtime=200ms", "--time_based",
         f"--filename={tmp_path / 'cmp.bin'}"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ioengine"] == "psync"
    assert result["fio"]["iops"] > 0 and result["tierstore"]["iops"] > 0
    assert set(result["ratio"]) == {"bw_bytes", "iops", "clat_p50_ns", "clat_p99_ns"}
