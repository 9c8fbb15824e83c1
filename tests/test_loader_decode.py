"""Decoders by name, as a WebDataset user writes them, and the default collate's lists: a JPEG
dataset of varying sizes loads with ``decode="pil"`` and default settings (PyTorch's own
collate fails such a batch: "stack expects each tensor to be equal size")."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from storefixtures import make_config
from torch.utils.data import default_collate

from tierstore import open_store
from tierstore.loader import Decoder, TierDataset, TierLoader, collate, write_tar_shards
from tierstore.loader.decode import as_decoder

N = 24


def _jpeg(i: int) -> tuple[bytes, tuple[int, int]]:
    size = (16 + 3 * i, 12 + 2 * (i % 5))  # (width, height): no two alike in a batch
    image = Image.new("RGB", size, (10 * i % 256, 50, 200))
    out = io.BytesIO()
    image.save(out, format="JPEG")
    return out.getvalue(), size


def _samples() -> Iterator[dict[str, Any]]:
    for i in range(N):
        yield {"__key__": f"img/{i:03d}", "jpg": _jpeg(i)[0], "cls": str(i % 7).encode(),
               "json": json.dumps({"i": i}).encode(), "txt": f"caption {i}".encode()}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with open_store(make_config(tmp_path_factory.mktemp("decode"), "local")) as opened:
        write_tar_shards(opened, "datasets/jpegs", _samples(), samples_per_shard=5)
        yield opened


def test_jpegs_of_varying_sizes_load_with_decode_pil(store: Any) -> None:
    dataset = TierDataset(store, "datasets/jpegs", decode="pil")
    seen: dict[int, tuple[int, int]] = {}
    for batch in TierLoader(dataset, batch_size=4, num_workers=2):
        assert isinstance(batch["jpg"], list)  # images of several sizes: a list, not a stack
        assert isinstance(batch["cls"], torch.Tensor) and batch["cls"].dtype == torch.int64
        for key, image, label, meta, text in zip(batch["__key__"], batch["jpg"], batch["cls"],
                                                 batch["json"]["i"], batch["txt"], strict=True):
            i = int(key.split("/")[1])
            assert isinstance(image, Image.Image) and image.mode == "RGB"
            assert label == i % 7 and meta == i and text == f"caption {i}"
            seen[i] = image.size
    assert seen == {i: _jpeg(i)[1] for i in range(N)}  # every sample once, at its own size


@pytest.mark.parametrize(("name", "kind", "dtype", "layout"), [
    ("rgb8", np.ndarray, np.uint8, "hwc"), ("l8", np.ndarray, np.uint8, "hw"),
    ("rgb", np.ndarray, np.float32, "hwc"), ("torchrgb8", torch.Tensor, torch.uint8, "chw"),
    ("torchrgb", torch.Tensor, torch.float32, "chw"), ("torchl", torch.Tensor, torch.float32,
                                                       "chw")])
def test_image_decoders_by_name(store: Any, name: str, kind: type, dtype: Any,
                                layout: str) -> None:
    dataset = TierDataset(store, "datasets/jpegs", decode=name, shuffle=False)
    sample = next(iter(dataset))
    image, (width, height) = sample["jpg"], _jpeg(int(sample["__key__"].split("/")[1]))[1]
    assert isinstance(image, kind) and image.dtype == dtype
    channels = 1 if name.endswith(("l", "l8")) else 3
    assert tuple(image.shape) == {"hwc": (height, width, channels), "hw": (height, width),
                                  "chw": (channels, height, width)}[layout]
    if dtype in (np.float32, torch.float32):
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def test_fields_decoded_by_a_mapping_and_the_rest_left_as_bytes(store: Any) -> None:
    decode = {"jpg": "pil", "cls": lambda b: int(b) * 10}
    sample = next(iter(TierDataset(store, "datasets/jpegs", decode=decode, shuffle=False)))
    assert isinstance(sample["jpg"], Image.Image)
    assert sample["cls"] == int(sample["__key__"].split("/")[1]) % 7 * 10
    assert isinstance(sample["txt"], bytes) and isinstance(sample["json"], bytes)


def test_an_unknown_decoder_name_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="no decoder named 'jpeg'"):
        Decoder("jpeg")
    with pytest.raises(TypeError, match="decode must be"):
        as_decoder(42)


def test_collate_stacks_what_it_can_and_lists_the_rest() -> None:
    same = [torch.ones(2, 3), torch.zeros(2, 3)]
    varied = [torch.ones(2, 3), torch.zeros(4, 3)]
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        default_collate([{"x": t} for t in varied])  # what a WebDataset user met before
    batch = collate([{"x": a, "y": b, "n": i, "s": f"k{i}"}
                     for i, (a, b) in enumerate(zip(same, varied, strict=True))])
    assert batch["x"].shape == (2, 2, 3)
    assert isinstance(batch["y"], list) and [t.shape[0] for t in batch["y"]] == [2, 4]
    assert batch["n"].tolist() == [0, 1] and batch["s"] == ["k0", "k1"]
    arrays = collate([(np.zeros((2, 2)), 1.5), (np.ones((3, 2)), 2.5)])
    assert isinstance(arrays, tuple) and isinstance(arrays[0], list)
    assert arrays[1].dtype == torch.float64


def test_an_epoch_ends_with_one_line_when_asked(store: Any) -> None:
    lines: list[str] = []
    loader = TierLoader(TierDataset(store, "datasets/jpegs", decode="pil"), batch_size=8,
                        num_workers=1, epoch_log=lines.append)
    for epoch in range(2):
        loader.set_epoch(epoch)
        assert sum(len(b["cls"]) for b in loader) == N
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert lines[1].startswith(f"epoch 1: {N} samples") and "bytes from" in lines[1]
