"""``tierstore bench tiers``: the standard matrix over every configured tier, on a store of
local folders and on one whose warm and cold tiers are a real S3 server (moto); one table,
one saved result, every benchmark file removed, and a report that renders.

Runs are tiny (``--runtime`` of 100 ms, files of a few hundred KiB); no timing is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from s3servers import S3Server
from storefixtures import make_config, toml_for
from test_bench_report import assert_png, run

from tierstore.cli.bench.common.results import load_result
from tierstore.cli.bench.tiers import standard_matrix

FAST = ("--runtime=100ms", "--size=256k")


def write_config(tmp_path: Path, kind: str, server: S3Server | None = None,
                 bucket: str = "") -> Path:
    path = tmp_path / "tierstore.toml"
    path.write_text(toml_for(make_config(tmp_path / "store", kind, server, bucket)))
    return path


def saved_path(err: str) -> Path:
    (line,) = [line for line in err.splitlines() if "result saved to " in line]
    return Path(line.split("result saved to ", 1)[1])


def test_the_standard_matrix() -> None:
    cells = standard_matrix(["read", "write", "randread", "randwrite"], [1, 16])
    assert len(cells) == 12
    assert {c.bs for c in cells if c.rw in ("read", "write")} == {2**20}
    assert {(c.bs, c.iodepth) for c in cells if c.rw == "randread"} == \
        {(4096, 1), (4096, 16), (65536, 1), (65536, 16)}
    assert [c.label for c in standard_matrix(["randread"], [4], [8192])] == ["randread 8k qd4"]


def test_local_store_survey_table_result_and_report(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    config = write_config(tmp_path, "local")
    out, err = run(capsys, "--config", str(config), "bench", "tiers", *FAST,
                   "--rw=read,randread,randwrite", "--bs=4k,64k", "--iodepth=1,4",
                   "--json", str(tmp_path / "tiers.json"),
                   "--results", str(tmp_path / "results"))
    for text in ("hot", "warm", "cold", "read 4k qd1", "randread 64k qd4", "randwrite 4k qd4",
                 "bandwidth", "IOPS", "clat p99"):
        assert text in out
    document = json.loads((tmp_path / "tiers.json").read_text())
    assert load_result(saved_path(err)) == document
    entries: list[dict[str, Any]] = document["results"]
    assert len(entries) == 3 * 3 * 2 * 2  # tiers x rw x bs x depth
    assert {(e["tier"], e["class"]) for e in entries} == \
        {("hot", "hot"), ("warm", "warm"), ("cold", "cold")}
    for entry in entries:
        assert entry["bw_bytes"] > 0 and entry["iops"] > 0 and entry["clat_p50_ns"] > 0
        assert entry["direction"] == ("write" if entry["rw"] == "randwrite" else "read")
    assert len(document["fio"]["jobs"]) == len(entries)
    tiers = tmp_path / "store" / "tiers"
    assert not [p for p in tiers.rglob("*") if p.is_file()]  # survey files removed

    out, _ = run(capsys, "bench", "report", str(saved_path(err)),
                 "--out", str(tmp_path / "report"))
    for name in ("bandwidth.png", "iops.png", "latency.png"):
        assert_png(tmp_path / "report" / name)
    report = (tmp_path / "report" / "report.md").read_text()
    assert report.count("| tier warm | randread |") == 4


def test_embedded_default_store(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("TIERSTORE_CONFIG", "TIERSTORE_HOME", "TIERSTORE_SITE"):
        monkeypatch.delenv(name, raising=False)
    _, err = run(capsys, "bench", "tiers", *FAST, "--rw=randread", "--bs=4k",
                   "--iodepth=1")
    document = load_result(saved_path(err))
    assert [e["tier"] for e in document["results"]] == ["hot", "warm", "cold"]
    assert document["config"] == "<embedded default>"
    # the embedded default's tiers are three folders of one disk: said, and recorded
    assert "warning: tiers hot, warm, cold lie on one device" in err
    assert document["shared_devices"] == [["hot", "warm", "cold"]]
    assert not [p for p in (tmp_path / ".tierstore").rglob("*") if p.is_file()]


def test_s3_tiers_survey(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         moto_server: S3Server) -> None:
    bucket = moto_server.new_bucket()
    try:
        config = write_config(tmp_path, "moto", moto_server, bucket)
        out, err = run(capsys, "bench", "tiers", "--config", str(config), *FAST,
                       "--rw=randread,write", "--bs=64k", "--iodepth=2",
                       "--tier", "hot", "--tier", "warm")
        assert moto_server.secret_key not in out + err
        document = load_result(saved_path(err))
        got = {(e["tier"], e["rw"]) for e in document["results"]}
        assert got == {(t, rw) for t in ("hot", "warm") for rw in ("randread", "write")}
        warm = document["fio"]["tierstore"]["jobs"][-1]["target"]
        assert warm["url"].startswith("s3://") and warm["tier"] == "warm"
        assert moto_server.secret_key not in json.dumps(document)
        listed = moto_server.client().list_objects_v2(Bucket=bucket)
        assert not listed.get("Contents")  # nothing left on the S3 tier

        run(capsys, "bench", "report", str(saved_path(err)), "--out", str(tmp_path / "rep"))
        assert_png(tmp_path / "rep" / "bandwidth.png")
    finally:
        moto_server.delete_bucket(bucket)


@pytest.mark.parametrize("args, message", [
    (("--tier", "nope"), "--tier 'nope': no such tier"),
    (("--rw=read,append",), "'append'"),
    (("--iodepth=0",), "--iodepth"),
    (("--runtime=soon",), "runtime"),
    (("--size=4k", "--bs=64k"), "smaller than the largest block size"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               args: tuple[str, ...], message: str) -> None:
    config = write_config(tmp_path, "local")
    _, err = run(capsys, "bench", "tiers", "--config", str(config), *args, status=2)
    assert err.count("\n") == 1 and err.startswith("tierstore: error: ") and message in err
