"""Write the example traces of ``tierstore simulate`` (fixed seeds: the same files each run).

::

    python bench/traces/make_traces.py [OUT_DIR]

``training.csv``: a training job reading a dataset of 256 shards of 128 MiB (32 GiB) for 10
epochs, each epoch in a fresh shuffled order, one shard every 4 to 5 seconds (about 20 minutes
an epoch). With a hot tier of half the dataset (``--hot-capacity 16GiB``) a plain LRU cache
thrashes: what an epoch read last is evicted before the next epoch comes back to it.

``zipf.jsonl``: 12,000 reads over 12 hours of 1,000 objects of 1 to 256 MiB (log-normal, about
23 GiB in all), object popularity Zipf-distributed (s = 1) and independent of size, arrivals
Poisson; a skewed workload where recency and frequency both pay (``--hot-capacity 2GiB``).
"""

from __future__ import annotations

import bisect
import json
import math
import random
import sys
from itertools import accumulate
from pathlib import Path

MiB = 2**20


def training(path: Path, *, shards: int = 256, size: int = 128 * MiB, epochs: int = 10,
             seed: int = 17) -> None:
    rng = random.Random(seed)
    keys = [f"train/shard-{i:05d}.tar" for i in range(shards)]
    now = 0.0
    with path.open("w", newline="") as out:
        out.write("time,key,bytes\n")
        for _ in range(epochs):
            order = keys[:]
            rng.shuffle(order)
            for key in order:
                out.write(f"{now:.3f},{key},{size}\n")
                now += rng.uniform(4.0, 5.0)


def zipf(path: Path, *, objects: int = 1000, reads: int = 12_000, hours: float = 12.0,
         s: float = 1.0, seed: int = 23) -> None:
    rng = random.Random(seed)
    keys = [f"features/part-{i:04d}.parquet" for i in range(objects)]
    sizes = {key: int(min(256 * MiB, max(MiB, rng.lognormvariate(math.log(16 * MiB), 1.0))))
             for key in keys}
    popular = keys[:]
    rng.shuffle(popular)  # rank by popularity, unrelated to name or size
    cumulative = list(accumulate(1.0 / (rank + 1) ** s for rank in range(objects)))
    rate = reads / (hours * 3600.0)
    now = 0.0
    with path.open("w") as out:
        for _ in range(reads):
            now += rng.expovariate(rate)
            rank = bisect.bisect_left(cumulative, rng.random() * cumulative[-1])
            key = popular[min(rank, objects - 1)]
            out.write(json.dumps({"time": round(now, 3), "key": key, "bytes": sizes[key]},
                                 separators=(",", ":")) + "\n")


def main(argv: list[str]) -> None:
    folder = Path(argv[0]) if argv else Path(__file__).parent
    folder.mkdir(parents=True, exist_ok=True)
    training(folder / "training.csv")
    zipf(folder / "zipf.jsonl")
    for name in ("training.csv", "zipf.jsonl"):
        print(f"{folder / name}: {(folder / name).stat().st_size:,} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
