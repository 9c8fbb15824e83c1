"""``tierstore bench ingest`` on a moto server started for the run: tierstore's tar writer and
WebDataset's write the same samples, each row says what it wrote and what it cost; a peer not
installed is a row with the reason, and bad options are a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tierstore.cli import main
from tierstore.cli.bench.loader.bench import normal_sizes


def test_each_writer_writes_the_samples_and_says_what_it_cost(tmp_path: Path) -> None:
    out = tmp_path / "ingest.json"
    status = main(["bench", "ingest", "--s3", "moto", "--samples", "120", "--sample-size",
                   "20KiB", "--shard-size", "500KiB", "--writers", "tierstore,wds",
                   "--json", str(out), "--results", str(tmp_path / "results")])
    assert status == 0
    document = json.loads(out.read_text())
    assert list(tmp_path.joinpath("results").glob("ingest-*.json"))
    total = int(normal_sizes(120, 20 * 1024, 20 * 1024 / 5, 0).sum())
    assert document["benchmark"] == "ingest" and document["dataset_bytes"] == total
    ours, wds = document["results"]
    assert ours["writer"] == "tierstore" and ours["failure"] is None
    assert ours["objects"] == ours["shards"] + 1 >= 5  # the shards and the index
    assert ours["stored_bytes"] > total  # the samples, tar headers and the index
    assert ours["mb_per_s"] > 0 and ours["cpu_s_per_gb"] >= ours["net_cpu_s_per_gb"] > 0
    if wds["failure"] is not None:
        assert wds["failure"]["kind"] == "not installed" and "tierstore[peers]" in \
            wds["failure"]["error"]
        assert "vs_wds" not in ours
    else:
        assert wds["stored_bytes"] > total and wds["vs_wds"]["mb_per_s"] == 1.0
        assert ours["vs_wds"]["mb_per_s"] > 0


@pytest.mark.parametrize("argv", [["--writers", "tierstore,nope"], ["--samples", "0"],
                                  ["--shard-size", "lots"]])
def test_bad_options_are_a_one_line_error(argv: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "ingest", *argv, "--results", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tierstore: error: ") and "\n" not in err
