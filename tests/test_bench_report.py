"""Benchmark results and ``tierstore bench report``: ``bench io`` saves its run in the results
folder, and the report reads tierstore's results, real fio JSON and other benchmarks' results
into PNG plots and a markdown table; a missing or malformed file is one line and exit 2.

Runs are tiny; nothing here asserts a timing.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from tierstore.cli import main
from tierstore.cli.bench.common.results import load_result, result_document, save_result
from tierstore.cli.bench.io.fio_results import fio_entries, latency_curves

FIO = shutil.which("fio")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(capsys: pytest.CaptureFixture[str], *args: str, status: int = 0) -> tuple[str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == status, f"exit {code}:\n{out}\n{err}"
    assert "Traceback" not in out + err
    return out, err


def assert_png(path: Path) -> None:
    """A whole, valid PNG: the signature, then chunks whose CRCs hold, ending in IEND."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    at, kinds = 8, []
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad {kind!r} chunk"
        kinds.append(kind)
        at += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100


def io_run(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> Path:
    """``bench io`` with results saved under ``tmp_path/results``; the saved file."""
    _, err = run(capsys, "bench", "io", *args, f"--results={tmp_path / 'results'}")
    saved = [line for line in err.splitlines() if "result saved to " in line]
    assert len(saved) == 1, err
    return Path(saved[0].split("result saved to ", 1)[1])


def test_bench_io_saves_its_result(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    job = ["--name=mix", f"--filename={tmp_path / 'data.bin'}", "--rw=randrw", "--bs=4k",
           "--size=256k", "--iodepth=2"]
    path = io_run(capsys, tmp_path, *job, "--output-format=json")
    assert path.parent == tmp_path / "results" and path.name.startswith("io-")
    saved = load_result(path)
    assert saved["benchmark"] == "io" and saved["machine"]["cores"] >= 1
    assert saved["command"].startswith("tierstore bench io --name=mix")
    assert {e["direction"] for e in saved["results"]} == {"read", "write"}
    for entry in saved["results"]:
        assert (entry["rw"], entry["bs"], entry["iodepth"]) == ("randrw", "4k", 2)
        assert entry["bw_bytes"] > 0 and entry["iops"] > 0 and entry["clat_p99_ns"] > 0
    assert saved["fio"]["jobs"][0]["jobname"] == "mix"  # the whole fio document, as printed

    monkeypatch.setenv("TIERSTORE_RESULTS", str(tmp_path / "from-env"))
    _, err = run(capsys, "bench", "io", *job)  # the human output also saves
    assert len(list((tmp_path / "from-env").glob("io-*.json"))) == 1
    assert f"result saved to {tmp_path / 'from-env'}" in err
    _, err = run(capsys, "bench", "io", *job, "--results=none")
    assert "saved" not in err and len(list((tmp_path / "from-env").iterdir())) == 1
    out, _ = run(capsys, "bench", "io", "--help")
    assert "--results=DIR" in out


def _fio_json(tmp_path: Path) -> Path:
    """Real fio's JSON output for a small random-read job."""
    assert FIO is not None
    done = subprocess.run([FIO, "--name=real", f"--filename={tmp_path / 'fio.bin'}",
                           "--rw=randread", "--bs=4k", "--size=512k", "--iodepth=1",
                           "--output-format=json"], capture_output=True, text=True,
                          timeout=120, check=True)
    path = tmp_path / "fio-real.json"
    path.write_text(done.stdout)
    return path


def _loader_result(tmp_path: Path) -> Path:
    """A result of another benchmark (shaped as the loader's are), for the generic path."""
    entries: list[dict[str, Any]] = [
        {"format": "tar", "tier": "hot", "workers": 2, "samples_per_s": 1500.5,
         "mib_per_s": 120.0, "au_ratio": 0.93, "rounds_per_s": [1400.0, 1600.0],
         "src_url": "s3://bucket/data"},
        {"format": "tar", "tier": "warm", "workers": 2, "samples_per_s": 480.0,
         "mib_per_s": 38.5, "au_ratio": 0.41}]
    return save_result(result_document("loader", entries, command="tierstore bench loader"),
                       tmp_path / "results")


def test_report_plots_io_fio_and_other_results(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    ours = [io_run(capsys, tmp_path, "--name=seq", f"--filename={tmp_path / 'a.bin'}",
                   f"--rw={rw}", f"--bs={bs}", "--size=512k", "--iodepth=2")
            for rw, bs in (("read", "64k"), ("randread", "4k"), ("randwrite", "16k"))]
    inputs = [*ours, _loader_result(tmp_path)]
    if FIO is not None:
        inputs.append(_fio_json(tmp_path))
    out_dir = tmp_path / "report"
    out, _ = run(capsys, "bench", "report", *map(str, inputs), "--out", str(out_dir))
    written = {Path(line).name for line in out.splitlines()}
    assert {"report.md", "bandwidth.png", "iops.png", "latency.png", "loader.png"} <= written
    for png in out_dir.glob("*.png"):
        assert_png(png)

    report = (out_dir / "report.md").read_text()
    for path in inputs:
        assert f"| {path.stem} |" in report  # each input listed, and its rows below
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    io_rows = [r for r in rows if f"| {tmp_path / 'a.bin'} |" in r]
    assert {r.split(" | ")[2] for r in io_rows} == {"read", "randread", "randwrite"}
    assert any("| tar | hot | 2 | 1500 |" in r for r in rows)  # the loader's table
    assert "![bandwidth](bandwidth.png)" in report and "![loader](loader.png)" in report
    if FIO is not None:
        real = [r for r in rows if r.startswith("| fio-real |") and "randread" in r]
        assert len(real) == 1 and "| 4k | 1 |" in real[0]


@pytest.mark.skipif(FIO is None, reason="fio is not installed (`make test` installs it)")
def test_real_fio_json_reads_as_entries_and_curves(tmp_path: Path) -> None:
    doc = json.loads(_fio_json(tmp_path).read_text())
    (entry,) = fio_entries(doc)
    assert (entry["target"], entry["rw"], entry["bs"], entry["bs_bytes"]) == \
        (str(tmp_path / "fio.bin"), "randread", "4k", 4096)
    assert entry["iops"] > 0 and entry["io_bytes"] == 512 * 1024
    (curve,) = latency_curves(doc)
    # a plot colours a curve by what was measured and styles it by how
    assert (curve.series, curve.test) == (str(tmp_path / "fio.bin"), "4k qd1")
    percents = [p for p, _ in curve.points]
    assert percents == sorted(percents) and 99.0 in percents
    assert all(b >= a for (_, a), (_, b) in zip(curve.points, curve.points[1:], strict=False))


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"benchmark": "io", "results": {"a": 1}}', "no 'results' list"),
    ('{"results": [{"x": 1}]}', "no 'benchmark' name"),
    ('{"jobs": "nope"}', "no 'results' list"),
])
def test_bad_result_files_are_one_line_and_exit_2(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  content: str | None, message: str) -> None:
    good = _loader_result(tmp_path)
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    out, err = run(capsys, "bench", "report", str(good), str(bad),
                   "--out", str(tmp_path / "report"), status=2)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"tierstore: error: {bad}: ")
    assert message in err
    assert not (tmp_path / "report").exists()  # nothing written from a partial set
