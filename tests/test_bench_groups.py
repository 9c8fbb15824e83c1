"""fio's ``stonewall`` (``wait_for_previous``) and ``new_group`` in ``tierstore bench io``:
reporting groups numbered as fio numbers them, stonewalled jobs run after every earlier job,
and ``group_reporting`` merging each group on its own. Tiny runs; no timing is asserted
beyond the order in which jobs ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tierstore.cli import main
from tierstore.cli.bench.io.jobfile import parse_command_line
from tierstore.cli.bench.io.runner import group_results, job_groups, plan_jobs, run_plans

JOBS = """\
[global]
bs=64k
size=128k
directory={folder}

[a]
rw=write

[b]
new_group
rw=read

[c]
stonewall
rw=randread

[d]
rw=randwrite
"""


def job_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "groups.fio"
    path.write_text(JOBS.format(folder=tmp_path).replace("[global]\n", f"[global]\n{extra}"))
    return path


def test_groups_and_phases_are_numbered_as_fio_numbers_them(tmp_path: Path) -> None:
    options = parse_command_line([str(job_file(tmp_path))]).job_options()
    assert job_groups(options) == [(0, 0), (1, 0), (2, 1), (2, 1)]
    first = parse_command_line(["--name=x", "--stonewall", "--name=y",
                                "--wait_for_previous", "--name=z", "--new_group"])
    assert job_groups(first.job_options()) == [(0, 0), (1, 1), (2, 1)]


def test_stonewall_runs_later_jobs_after_earlier_ones(tmp_path: Path) -> None:
    options = parse_command_line([str(job_file(tmp_path))]).job_options()
    run = run_plans(plan_jobs(options))
    ended = {r.name: r.started + r.runtime_ns / 1e9 for r in run.results}
    started = {r.name: r.started for r in run.results}
    assert min(started["c"], started["d"]) >= max(ended["a"], ended["b"]) - 0.01
    assert [r.groupid for r in group_results(run)] == [0, 1, 2, 2]


def test_groups_in_json_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "io", str(job_file(tmp_path, "group_reporting\n")),
                 "--output-format=json", "--results=none"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(j["jobname"], j["groupid"]) for j in doc["jobs"]] == \
        [("a", 0), ("b", 1), ("c", 2)]  # c and d merged: one group
    merged = doc["jobs"][2]
    assert merged["read"]["io_bytes"] == merged["write"]["io_bytes"] == 128 * 1024

    assert main(["bench", "io", str(job_file(tmp_path)), "--results=none"]) == 0
    out = capsys.readouterr().out
    for line in ("a: (g=0): rw=write", "b: (g=1): rw=read", "c: (g=2): rw=randread",
                 "d: (g=2): rw=randwrite", "c: (groupid=2, jobs=1)",
                 "Run status group 0 (all jobs):", "Run status group 1 (all jobs):",
                 "Run status group 2 (all jobs):"):
        assert line in out
