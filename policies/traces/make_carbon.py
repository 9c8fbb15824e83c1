"""Write the shipped inputs of ``tierstore simulate --intensity`` (fixed seeds: the same bytes
each run). Both are synthetic.

::

    python policies/traces/make_carbon.py [OUT_DIR]

``intensity-week.csv``: seven days of hourly grid carbon intensity (gCO2e/kWh) from
2026-06-01T00:00Z, of a diurnal solar shape: a night-time level of 430, less a solar dip of
``depth * sin(pi * (hour - 6) / 12)`` between 06:00 and 18:00 UTC (``depth`` 150-300 a day,
drawn: clear and cloudy days), plus an evening peak of 60 centred on 19:00 (``60 *
exp(-((hour - 19) / 1.5) ** 2)``) and noise of +-15 (uniform), rounded to whole grams.

``week.jsonl``: a lab's week of training jobs on 30 datasets of 6-24 shards of 256 MiB (about
100 GiB in all). Each day 3-5 jobs start at working hours (08:00-20:00 UTC), each reading one
dataset (popularity Zipf, s = 1), every shard once in order, one every 20-40 s; datasets then
sit unread until a later job, which is what recency demotes.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import sys
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path

MiB = 2**20
START = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
HOUR = 3600.0


def intensity(path: Path, *, days: int = 7, seed: int = 17) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="") as out:
        out.write("time,gco2e_per_kwh\n")
        for day in range(days):
            depth = rng.uniform(150.0, 300.0)
            for hour in range(24):
                solar = depth * math.sin(math.pi * (hour - 6) / 12) if 6 < hour < 18 else 0.0
                evening = 60.0 * math.exp(-(((hour - 19) / 1.5) ** 2))
                value = 430.0 - solar + evening + rng.uniform(-15.0, 15.0)
                when = datetime.fromtimestamp(START + (day * 24 + hour) * HOUR, UTC)
                out.write(f"{when:%Y-%m-%dT%H:%M}Z,{round(value)}\n")


def week(path: Path, *, datasets: int = 30, days: int = 7, seed: int = 29) -> None:
    rng = random.Random(seed)
    shards = {f"data/set-{i:02d}": rng.randint(6, 24) for i in range(datasets)}
    names = list(shards)
    rng.shuffle(names)  # popularity, unrelated to name or size
    cumulative = list(accumulate(1.0 / (rank + 1) for rank in range(datasets)))
    reads: list[tuple[float, str]] = []
    for day in range(days):
        for _ in range(rng.randint(3, 5)):
            now = START + day * 24 * HOUR + rng.uniform(8.0, 20.0) * HOUR
            name = names[bisect.bisect_left(cumulative, rng.random() * cumulative[-1])]
            for shard in range(shards[name]):
                reads.append((now, f"{name}/shard-{shard:03d}.tar"))
                now += rng.uniform(20.0, 40.0)
    reads.sort()
    with path.open("w") as out:
        for when, key in reads:
            out.write(json.dumps({"time": round(when, 3), "key": key, "bytes": 256 * MiB},
                                 separators=(",", ":")) + "\n")


def main(argv: list[str]) -> None:
    folder = Path(argv[0]) if argv else Path(__file__).parent
    folder.mkdir(parents=True, exist_ok=True)
    intensity(folder / "intensity-week.csv")
    week(folder / "week.jsonl")
    for name in ("intensity-week.csv", "week.jsonl"):
        print(f"{folder / name}: {(folder / name).stat().st_size:,} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
