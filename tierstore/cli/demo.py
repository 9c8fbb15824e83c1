"""``tierstore demo``: a tour of tierstore on a small synthetic dataset, in a few seconds.

It needs no server and no config: on the embedded default (three local folders under
``$TIERSTORE_HOME``, else ``./.tierstore``) it writes a Parquet dataset and some binary shards,
ingests them into the cold tier, reads them back through ``tier://`` with pyarrow, moves them
between tiers and shows what lives where; then it runs the daemon for a few cycles, with ages
of seconds instead of days, so that objects move as they are read and left alone; and it ends
by training a tiny model through ``TierLoader`` for two epochs, the daemon staging between
them the shards the loader announced it reads next, and prints the loader's metrics.
Everything it makes is under the ``demo/`` prefix, which it empties first, so it can run
again and again in the same store.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec.asyn import get_loop, sync

from ..config import TierClass
from ..daemon import Daemon, DaemonOptions
from ..errors import ConfigError, MissingExtra, require
from ..fs import TierFileSystem
from ..policies.config import PolicyConfig
from ..policies.engine import default_engine
from ..sync import SyncStore, open_store
from .objects import plan_put
from .output import format_du, format_objects, human, tiers_of
from .progress import put_files

__all__ = ["run"]

PREFIX = "demo"
PARQUET_FILES, ROWS = 4, 10_000
SHARDS, SHARD_SIZE = 4, 2**20
SEED = 20240617
FEATURES, TRAIN_SAMPLES = 16, 4096
HOT_AGE = 3.0  # seconds unread before the demo's daemon demotes off hot (30 days by default)


def run(config: str | None = None, out: TextIO | None = None) -> None:
    """Run the tour on the store ``config`` names (default: the embedded default)."""
    started, out = time.perf_counter(), out or sys.stdout
    with open_store(config) as store, tempfile.TemporaryDirectory() as scratch:
        _Tour(store, out).run(Path(scratch))
    print(f"done in {time.perf_counter() - started:.1f}s. Look around: tierstore ls -l -r "
          f"{PREFIX}; tierstore stat {PREFIX}/shards/shard-002.bin; tierstore du", file=out)


def make_dataset(folder: Path, rng: np.random.Generator) -> float:
    """Write ``parquet/part-N.parquet`` and ``shards/shard-NNN.bin`` under ``folder``; the
    mean of the ``x`` column, as computed before any of it is stored."""
    (folder / "parquet").mkdir(parents=True)
    (folder / "shards").mkdir()
    rows = PARQUET_FILES * ROWS
    x = rng.normal(1.0, 2.0, rows).astype(np.float32)
    columns: dict[str, np.ndarray] = {
        "id": np.arange(rows, dtype=np.int64), "label": rng.integers(0, 10, rows, dtype=np.int8),
        "x": x, "y": 3.0 * x + rng.normal(0.0, 0.1, rows)}
    for part in range(PARQUET_FILES):
        part_rows = slice(part * ROWS, (part + 1) * ROWS)
        table = pa.table({name: values[part_rows] for name, values in columns.items()})
        pq.write_table(table, folder / "parquet" / f"part-{part}.parquet")
    for shard in range(SHARDS):
        (folder / "shards" / f"shard-{shard:03d}.bin").write_bytes(rng.bytes(SHARD_SIZE))
    return float(x.astype(np.float64).mean())


class _Tour:
    """The steps of the demo, each printing one or two lines."""

    def __init__(self, store: SyncStore, out: TextIO):
        self.store = store
        self.out = out
        self.tiers = _tier_per_class(store)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def run(self, scratch: Path) -> None:
        config = self.store.config
        self.say(f"store: {config.home} ({config.source}; tiers "
                 f"{', '.join(config.tiers)})")
        self.clean()
        expected = make_dataset(scratch, np.random.default_rng(SEED))
        self.ingest(scratch)
        self.read_back(expected, scratch)
        self.place()
        self.show()
        self.daemon_at_work()
        self.train()

    def clean(self) -> None:
        """Empty ``demo/`` so that a second run starts from the same place."""
        old = self.store.find(PREFIX + "/")
        for key in old:
            self.store.rm(key)
        if old:
            self.say(f"removed {len(old)} objects of an earlier demo")

    def ingest(self, scratch: Path) -> None:
        pairs = plan_put([str(scratch)], PREFIX)
        began = time.perf_counter()
        total = sync(get_loop(), put_files, self.store.aio, pairs, tier=self.tiers["cold"],
                     overwrite=True, label="ingest")
        self.say(f"ingested {len(pairs)} objects ({human(total)}: "
                 f"{PARQUET_FILES} Parquet files of {ROWS:,} rows, {SHARDS} binary shards) "
                 f"into {self.tiers['cold']} in {time.perf_counter() - began:.2f}s")

    def read_back(self, expected: float, scratch: Path) -> None:
        """Read the Parquet dataset and a slice of a shard through ``tier://``."""
        fs = TierFileSystem(store=self.store)
        url = f"tier://{PREFIX}/parquet"  # pyarrow takes paths, not URLs, with a filesystem
        table = ds.dataset(fs._strip_protocol(url), filesystem=fs,
                           format="parquet").to_table(columns=["label", "x"])
        mean = pc.mean(table["x"]).as_py()
        agrees = "matches" if abs(mean - expected) < 1e-6 else "DIFFERS FROM"
        self.say(f"read tier://{PREFIX}/parquet with pyarrow: {table.num_rows:,} rows, "
                 f"mean(x) = {mean:.4f} ({agrees} the source)")
        with fs.open(f"tier://{PREFIX}/shards/shard-000.bin", "rb") as shard:
            shard.seek(SHARD_SIZE // 2)
            piece = shard.read(4096)
        local = (scratch / "shards" / "shard-000.bin").read_bytes()
        same = piece == local[SHARD_SIZE // 2: SHARD_SIZE // 2 + 4096]
        self.say(f"read 4 KiB at offset {SHARD_SIZE // 2} of tier://{PREFIX}/shards/"
                 f"shard-000.bin: {'identical to' if same else 'DIFFERENT FROM'} the source")

    def place(self) -> None:
        """Promote the Parquet files, demote one shard, pin another where it is read fast."""
        hot, warm = self.tiers["hot"], self.tiers["warm"]
        for key in self.store.find(f"{PREFIX}/parquet/"):
            self.store.move(key, hot)
        self.store.move(f"{PREFIX}/shards/shard-001.bin", warm)
        self.store.pin(f"{PREFIX}/shards/shard-002.bin", hot)
        self.say(f"moved {PREFIX}/parquet/* to {hot} and {PREFIX}/shards/shard-001.bin to "
                 f"{warm}; pinned {PREFIX}/shards/shard-002.bin to {hot} (a copy stays on "
                 f"{self.tiers['cold']})")

    def daemon_at_work(self) -> None:
        """A few daemon cycles: what is read again goes up, what is left alone comes down."""
        hot, cold = self.tiers["hot"], self.tiers["cold"]
        policies = PolicyConfig(demote_after={"hot": HOT_AGE, "warm": 86400.0},
                                promote_within=HOT_AGE / 2)
        daemon = Daemon(self.store.aio, DaemonOptions(once=True, metrics_port=None),
                        engine=default_engine(policies))
        self.say(f"the daemon at work (ages of seconds for the demo: an object unread for "
                 f"{HOT_AGE:g}s leaves {hot}, one read in the last {HOT_AGE / 2:g}s goes up):")
        read_again = f"{PREFIX}/shards/shard-003.bin"
        moves = _MoveLines(self.say)
        logger = logging.getLogger("tierstore.daemon")
        level, propagate = logger.level, logger.propagate
        logger.addHandler(moves)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        try:
            for cycle in range(1, 4):
                self.store.cat(read_again)  # a training job keeps reading this shard
                moves.cycle = cycle
                if not sync(get_loop(), daemon.cycle):
                    raise RuntimeError("a daemon cycle failed (see the log)")
                if moves.count == 0:
                    self.say(f"  cycle {cycle}: nothing to move")
                moves.count = 0
                if cycle < 3:
                    time.sleep(HOT_AGE / 2 + 0.1)
        finally:
            logger.removeHandler(moves)
            logger.setLevel(level)
            logger.propagate = propagate
        self.say(f"{read_again} was read every cycle and went from {cold} to {hot}; the "
                 f"Parquet files were left alone and went down. In production the daemon "
                 f"runs this loop on its own: tierstore daemon")

    def train(self) -> None:
        """Two epochs of a tiny regression through TierLoader; the daemon runs one cycle
        between them and stages, by next use, what the loader announced it reads next.
        Skipped, with a line that says so, where the install has no loader (no torch)."""
        try:
            require("torch", part="tierstore.loader", package="PyTorch", extra="loader")
        except MissingExtra as exc:
            self.say(f"training through TierLoader skipped: {exc}")
            return
        import torch

        from tierstore.loader import TierDataset, TierLoader, write_tar_shards

        rng = np.random.default_rng(SEED)
        true_w = rng.normal(size=FEATURES).astype(np.float32)
        x = rng.normal(size=(TRAIN_SAMPLES, FEATURES)).astype(np.float32)
        y = x @ true_w + rng.normal(0.0, 0.05, TRAIN_SAMPLES).astype(np.float32)
        write_tar_shards(self.store, f"{PREFIX}/train", (
            {"__key__": f"s{i:05d}", "x": x[i].tobytes(), "y": y[i:i + 1].tobytes()}
            for i in range(TRAIN_SAMPLES)), samples_per_shard=TRAIN_SAMPLES // 8,
            tier=self.tiers["warm"])
        model = torch.nn.Linear(FEATURES, 1, bias=False)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        loader = TierLoader(TierDataset(self.store, f"{PREFIX}/train", decode=_xy,
                                              seed=1), batch_size=64, num_workers=2)
        daemon = Daemon(self.store.aio, DaemonOptions(once=True, metrics_port=None))
        self.say(f"\ntraining a linear model on {TRAIN_SAMPLES:,} samples in 8 shards on "
                 f"{self.tiers['warm']}, through TierLoader (2 workers):")
        for epoch in range(2):
            loader.set_epoch(epoch)
            for xb, yb in loader:
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(model(xb).squeeze(1), yb)
                loss.backward()
                optimizer.step()
            self.say(f"  {loader.metrics()}; loss {loss.item():.4f}")
            if epoch == 0:
                sync(get_loop(), daemon.cycle)
                staged = sum(1 for key in self.store.find(f"{PREFIX}/train/")
                             if key.endswith(".tar") and self.tiers["hot"] in tiers_of(
                                 self.store.stat(key)))
                self.say(f"  daemon cycle: {staged} of 8 shards on {self.tiers['hot']} (kept "
                         "there by the loader from the bytes it read, or staged by the daemon "
                         "for what the loader announced it reads next)")
        loader.shutdown()

    def show(self) -> None:
        infos = [self.store.stat(key) for key in self.store.find(PREFIX + "/")]
        self.say("\nwhat lives where:")
        self.say(format_objects(infos))
        self.say("\nper tier (tierstore du):")
        self.say(format_du(self.store.usage()) + "\n")


def _xy(sample: dict[str, bytes]) -> tuple[Any, Any]:
    """A training sample's features and target, as tensors."""
    import torch

    return (torch.frombuffer(bytearray(sample["x"]), dtype=torch.float32),
            torch.frombuffer(bytearray(sample["y"]), dtype=torch.float32)[0])


class _MoveLines(logging.Handler):
    """Prints the daemon's moves as the demo's own lines."""

    def __init__(self, say: Callable[[str], None]):
        super().__init__(logging.INFO)
        self.say, self.cycle, self.count = say, 0, 0

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", None)
        if record.getMessage() != "move" or not isinstance(fields, dict):
            return
        self.count += 1
        what = "copied" if fields["copy"] else "moved"
        self.say(f"  cycle {self.cycle}: {what} {fields['key']} {fields['from']} -> "
                 f"{fields['to']} ({fields['policy']}: {fields['reason']}; {fields['outcome']})")


def _tier_per_class(store: SyncStore) -> dict[str, str]:
    """The first configured tier of each class, by class name."""
    found: dict[str, str] = {}
    for name, tier in store.config.tiers.items():
        found.setdefault(tier.tier_class.name.lower(), name)
    missing = [c.name.lower() for c in TierClass if c.name.lower() not in found]
    if missing:
        raise ConfigError(f"the demo needs a hot, a warm and a cold tier; there is no "
                          f"{' or '.join(missing)} tier", source=store.config.source)
    return found
