"""What runs on one node of the cluster tests (tests/test_cluster_nodes.py), as its own process
(and process group), with that node's config: reads, a loader rank, a reader under load.

    python cluster_node.py read CONFIG KEY...             read each key once, exit
    python cluster_node.py rank CONFIG RANK WORLD PORT OUT   one rank of a gloo group
    python cluster_node.py load CONFIG OUT STOPFILE KEY...   read the keys round and round
                                                             until STOPFILE exists
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _report(out: str, data: dict[str, object]) -> None:
    """Write ``data`` to ``out`` whole or not at all: the test polls the file while this node
    rewrites it every 50 ms, and a torn read once parsed as no progress ({"ok": 0})."""
    tmp = f"{out}.tmp"
    Path(tmp).write_text(json.dumps(data))
    os.replace(tmp, out)


def read(config: str, keys: list[str]) -> None:
    from tierstore import open_store

    with open_store(config) as store:
        for key in keys:
            store.cat(key)


def rank(config: str, rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from tierstore import load_config
    from tierstore.loader import TierDataset, TierLoader

    os.environ.pop("RANK", None)
    os.environ.pop("WORLD_SIZE", None)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        dataset = TierDataset(load_config(config), "ds", decode=lambda s: int(s["cls"]),
                              seed=3, buffer_size=8)
        loader = TierLoader(dataset, batch_size=4, num_workers=0)
        got = [int(i) for batch in loader for i in batch.tolist()]
        dist.barrier()
        _report(out, {"got": got, "rank": rank})
    finally:
        dist.destroy_process_group()


def load(config: str, out: str, stop: str, keys: list[str]) -> None:
    """Read ``keys`` in turn until ``stop`` exists; count what worked and what failed."""
    from tierstore import open_store
    from tierstore.errors import TierstoreError

    ok = failed = 0
    errors: list[str] = []
    with open_store(config) as store:
        while not Path(stop).exists():
            for key in keys:
                try:
                    store.cat(key)
                    ok += 1
                except (TierstoreError, OSError) as exc:
                    failed += 1
                    errors.append(f"{key}: {exc}"[:300])
            time.sleep(0.05)
            _report(out, {"ok": ok, "failed": failed, "errors": errors[-5:],
                          "remembered": store.aio.known.served})
        store.aio.recorder.flush()
        pending = len(store.aio.recorder._pending)
    _report(out, {"ok": ok, "failed": failed, "errors": errors[-5:],
                  "remembered": store.aio.known.served, "unflushed": pending})


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "read":
        read(args[0], args[1:])
    elif command == "rank":
        rank(args[0], int(args[1]), int(args[2]), int(args[3]), args[4])
    elif command == "load":
        load(args[0], args[1], args[2], args[3:])
    else:
        raise SystemExit(f"unknown command {command!r}")
