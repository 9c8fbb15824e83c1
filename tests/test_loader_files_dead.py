"""A loader killed with SIGKILL cannot remove its metrics file; the daemon removes it once it
has not been written for a while, and leaves the files of live loaders and foreign files."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from storefixtures import make_config, toml_for

from tierstore import Config, open_store
from tierstore.daemon import Daemon, DaemonOptions
from tierstore.loader import write_tar_shards
from tierstore.store import Store
from tierstore.telemetry import LOADER_FILES_DEAD_S, loader_metrics_folder

# A training process: a loader writing its metrics every 50 ms.
TRAINER = textwrap.dedent("""
    import sys, time
    from tierstore import open_store
    from tierstore.loader import TierDataset, TierLoader

    store = open_store(sys.argv[1])
    loader = TierLoader(TierDataset(store, "ds", decode=lambda s: 0, seed=1), batch_size=2,
                        num_workers=0, metrics_every=0.05)
    batches = iter(loader)
    next(batches)
    time.sleep(600)
""")


def killed_loaders_file(config: Config, toml: Path) -> Path:
    """The metrics file a loader left when it was killed with SIGKILL."""
    trainer = subprocess.Popen([sys.executable, "-c", TRAINER, str(toml)])
    try:
        deadline = time.monotonic() + 60
        while not (written := list(loader_metrics_folder(config).glob(
                f"loader-*-{trainer.pid}-*.prom"))):
            assert trainer.poll() is None and time.monotonic() < deadline, "no metrics file"
            time.sleep(0.02)
    finally:
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(60)
    assert written[0].exists()
    return written[0]


def cycle(config: Config) -> dict[str, int]:
    async def run() -> dict[str, int]:
        store = Store(config)
        try:
            daemon = Daemon(store, DaemonOptions(once=True, metrics_port=None))
            assert await daemon.cycle()
            return dict(daemon.outcomes)
        finally:
            await store.close()

    return asyncio.run(run())


def test_the_daemon_removes_a_killed_loaders_metrics_file(tmp_path: Path) -> None:
    config = make_config(tmp_path, "local")
    toml = tmp_path / "store.toml"
    toml.write_text(toml_for(config))
    with open_store(config) as store:
        write_tar_shards(store, "ds", ({"__key__": f"s{i}", "bin": b"x"} for i in range(8)),
                         samples_per_shard=4, tier="hot")
    dead = killed_loaders_file(config, toml)
    folder = dead.parent
    live = folder / "loader-otherhost-12-1.prom"  # a live loader's, just written
    live.write_text(dead.read_text())
    foreign = folder / "node.prom"  # not a loader's: never removed
    foreign.write_text(dead.read_text())
    half = dead.with_name(dead.name + ".tmp")  # a write the kill cut short
    half.write_text("tierstore_loader_samples 1")
    assert "loader_files_removed" not in cycle(config)  # recent: it may be a slow writer's
    assert dead.exists()

    old = time.time() - LOADER_FILES_DEAD_S - 60
    for path in (dead, half, foreign):
        os.utime(path, (old, old))
    assert cycle(config)["loader_files_removed"] == 2
    assert sorted(folder.iterdir()) == sorted([live, foreign])
