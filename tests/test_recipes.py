"""docs/recipes.md's tierstore blocks run, in order and in one namespace, as a user pasting
them into a fresh folder would (the embedded default store under ``./.tierstore``); the
"before" blocks (other libraries' usage, marked ``# before:``) are shown, not run. What the
blocks take as given is made first: ``samples``, ``image_samples`` and ``table``."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from PIL import Image

RECIPES = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"


def blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", RECIPES.read_text(), re.M | re.S)


def _jpeg(i: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8 + i, 6 + i % 3), (i, 2 * i, 3 * i)).save(out, format="JPEG")
    return out.getvalue()


def _given() -> dict[str, Any]:
    samples = [{"__key__": f"s{i:04d}", "cls": int(i % 10).to_bytes(1, "little"),
                "bin": bytes([i % 256]) * 1000} for i in range(512)]
    image_samples = [{"__key__": f"img{i:03d}", "jpg": _jpeg(i), "cls": str(i % 5).encode()}
                     for i in range(40)]
    table = pa.table({"text": [f"row {i}" for i in range(120)], "label": list(range(120)),
                      "unused": [0.5] * 120})
    return {"samples": samples, "image_samples": image_samples, "table": table}


def test_every_recipe_has_a_block_that_runs() -> None:
    found = blocks()
    run = [b for b in found if not b.startswith("# before:")]
    assert len(found) == 10 and len(run) == 5, (len(found), len(run))


def test_the_recipes_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("TIERSTORE_HOME", "TIERSTORE_CONFIG", "TIERSTORE_SITE"):
        monkeypatch.delenv(name, raising=False)
    namespace = _given()
    for i, block in enumerate(blocks()):
        if not block.startswith("# before:"):
            exec(compile(block, f"docs/recipes.md, Python block {i + 1}", "exec"), namespace)
    assert namespace["state"]["epoch"] == 0
