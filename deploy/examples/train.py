"""An example training job that reads its data through tierstore.

It ingests a small synthetic dataset into the store (once: skipped when the dataset's index is
already there), then trains a tiny classifier for a few steps, reading batches with
``TierLoader``. The store is the one ``$TIERSTORE_CONFIG`` names, as in deploy/: the compose
file's ``train`` service and the Kubernetes Job run this script as it is.

    python deploy/examples/train.py --steps 50            # or: --samples 4096 --workers 2
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

import tierstore
from tierstore.loader import TierDataset, TierLoader, write_tar_shards

FEATURES = 16


def samples(count: int, seed: int = 0) -> Iterator[dict[str, object]]:
    """``count`` samples of a linearly separable problem: features ``x``, label ``y``."""
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal(FEATURES).astype(np.float32)
    for i in range(count):
        x = rng.standard_normal(FEATURES).astype(np.float32)
        y = np.float32(x @ weights > 0)
        yield {"__key__": f"sample-{i:06d}", "x": x.tobytes(), "y": y.tobytes()}


def decode(sample: dict[str, object]) -> tuple[torch.Tensor, torch.Tensor]:
    """A tar sample (fields of bytes) as tensors; runs in the loader's workers."""
    x, y = sample["x"], sample["y"]
    assert isinstance(x, bytes) and isinstance(y, bytes)
    return (torch.frombuffer(bytearray(x), dtype=torch.float32),
            torch.frombuffer(bytearray(y), dtype=torch.float32))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Ingest a small dataset into tierstore and "
                                     "train a few steps reading it through TierLoader.")
    parser.add_argument("--prefix", default="datasets/example", help="the dataset's prefix")
    parser.add_argument("--samples", type=int, default=2048, help="samples to ingest")
    parser.add_argument("--steps", type=int, default=50, help="training steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)

    with tierstore.open_store() as store:  # $TIERSTORE_CONFIG
        if store.exists(f"{args.prefix}/index.json"):
            print(f"dataset {args.prefix} already ingested")
        else:  # into the config's default tier; the daemon promotes what is read
            index = write_tar_shards(store, args.prefix, samples(args.samples),
                                     samples_per_shard=256)
            print(f"ingested {len(index)} samples in {len(index.shards)} shards")

    dataset = TierDataset(None, args.prefix, decode=decode, shuffle=True, seed=0)
    loader = TierLoader(dataset, batch_size=args.batch_size, num_workers=args.workers,
                        persistent_workers=args.workers > 0)
    model = nn.Linear(FEATURES, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    step, epoch = 0, 0
    with loader:
        while step < args.steps:
            loader.set_epoch(epoch)  # a fresh, reproducible order per epoch
            for x, y in loader:
                loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                if step % 10 == 0 or step == args.steps:
                    print(f"epoch {epoch} step {step} loss {loss.item():.4f}", flush=True)
                if step == args.steps:
                    break
            epoch += 1
    print(f"done: {step} steps; last pass {loader.stats.samples} samples, "
          f"waited {loader.stats.wait_s:.2f}s for data")


if __name__ == "__main__":
    main()
