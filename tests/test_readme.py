"""The README's Python blocks run, in order and in one namespace, as a user pasting them into
a fresh folder would: the store is the embedded default under ``./.tierstore``. What the
blocks take as given is made first, and only that: a local file to put, a Parquet table and a
Zarr array in the store for the fsspec block, and ``samples`` for the loader block."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.M | re.S)


def test_the_readme_has_its_python_blocks() -> None:
    blocks = python_blocks()
    assert len(blocks) == 3, len(blocks)  # a new block: give it what it takes as given here
    assert "open_store" in blocks[0] and "tier://" in blocks[1] and "TierLoader" in blocks[2]


def _given(folder: Path) -> dict[str, Any]:
    """What the blocks take as given, made in ``folder`` (the user's working folder)."""
    import tierstore

    (folder / "shard-00017.tar").write_bytes(np.random.default_rng(0).bytes(300_000))
    with tierstore.open_store() as store, store.open("datasets/table/part-0.parquet", "wb") as f:
        pq.write_table(pa.table({"x": [1, 2, 3], "y": ["a", "b", "c"]}), f)
    array = zarr.open_array("tier://arrays/embeddings", mode="w", shape=(8, 4), dtype="f4")
    array[:] = np.arange(32, dtype="f4").reshape(8, 4)
    samples = [{"__key__": f"s{i:04d}", "cls": int(i % 10).to_bytes(1, "little"),
                "bin": bytes([i % 256]) * 1000} for i in range(512)]
    return {"samples": samples}


def test_the_readmes_python_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("TIERSTORE_HOME", "TIERSTORE_CONFIG", "TIERSTORE_SITE"):
        monkeypatch.delenv(name, raising=False)
    namespace = _given(tmp_path)
    for i, block in enumerate(python_blocks()):
        exec(compile(block, f"README.md, Python block {i + 1}", "exec"), namespace)
    assert namespace["header"] == (tmp_path / "shard-00017.tar").read_bytes()[:512]
    assert list(namespace["df"]["x"]) == [1, 2, 3] and namespace["table"].num_rows == 3
    assert namespace["arr"][7, 3] == 31
    assert namespace["state"]["epoch"] == 2
    assert namespace["loader"].stats.samples == 512
