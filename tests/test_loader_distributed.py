"""The loader across real processes: ranks of a ``torch.distributed`` gloo group, each with
DataLoader workers, reading one dataset from the S3 tier; and torchdata's
``StatefulDataLoader`` driving a ``TierDataset`` through a save and a resume."""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from s3servers import free_port
from storefixtures import make_config, toml_for

from tierstore import Config, SyncStore, load_config, open_store
from tierstore.loader import TierDataset, TierLoader, write_tar_shards

N, PER_SHARD = 150, 8


def samples() -> Any:
    for i in range(N):
        yield {"__key__": f"s{i:04d}", "cls": str(i).encode()}


def sample_id(sample: dict[str, Any]) -> int:
    return int(sample["cls"])


def _rank_main(rank: int, world_size: int, port: int, toml: str, out: str) -> None:
    """One rank: joins the gloo group, reads its part with two workers, writes what it got."""
    os.environ.pop("RANK", None)  # the rank must come from the process group
    os.environ.pop("WORLD_SIZE", None)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size)
    try:
        dataset = TierDataset(load_config(toml), "ds", decode=sample_id, seed=7, buffer_size=16)
        loader = TierLoader(dataset, batch_size=5, num_workers=2)
        got = [int(i) for batch in loader for i in batch.tolist()]
        counts = [torch.tensor([len(got)])]
        everyone = [torch.zeros(1, dtype=torch.long) for _ in range(world_size)]
        dist.all_gather(everyone, counts[0])  # the group works: ranks meet once
        Path(out, f"rank{rank}.json").write_text(json.dumps(
            {"got": got, "counts": [int(c) for c in everyone], "len": len(loader)}))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world_size", [3])
def test_ranks_of_a_gloo_group_read_every_sample_once_from_s3(
        world_size: int, tmp_path: Path, moto_server: Any) -> None:
    bucket = moto_server.new_bucket()
    config = make_config(tmp_path / "store", "moto", moto_server, bucket)
    with open_store(config) as store:
        write_tar_shards(store, "ds", samples(), samples_per_shard=PER_SHARD, tier="warm")
    toml = tmp_path / "store.toml"
    toml.write_text(toml_for(config))
    mp.start_processes(_rank_main, args=(world_size, free_port(), str(toml), str(tmp_path)),
                       nprocs=world_size, join=True, start_method="spawn")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text())
               for r in range(world_size)]
    got = [i for r in results for i in r["got"]]
    assert sorted(got) == list(range(N))  # the union is the dataset, each sample once
    assert all(r["got"] for r in results)  # every rank had its share
    assert results[0]["counts"] == [len(r["got"]) for r in results]


# -- torchdata's StatefulDataLoader ----------------------------------------------------------


@pytest.fixture
def local_ds(tmp_path: Path) -> Config:
    config = make_config(tmp_path, "local")
    with open_store(config) as store:
        write_tar_shards(store, "ds", samples(), samples_per_shard=PER_SHARD)
    return config


def _stateful(config: Config) -> Any:
    from torchdata.stateful_dataloader import StatefulDataLoader

    dataset = TierDataset(config, "ds", decode=sample_id, seed=2, buffer_size=8, batch_size=4)
    return StatefulDataLoader(dataset, batch_size=4, num_workers=2)


def _ids(batches: list[torch.Tensor]) -> list[list[int]]:
    return [b.tolist() for b in batches]


@pytest.mark.parametrize("stop", [0, 5, random.Random(9).randrange(1, 38)])
def test_stateful_dataloader_resumes_a_tier_dataset(local_ds: Config, stop: int) -> None:
    """torchdata's protocol: the loader asks each worker's dataset for its state and hands
    it back to the workers of the loader that resumes."""
    pytest.importorskip("torchdata.stateful_dataloader")
    full = _ids(list(_stateful(local_ds)))
    first = _stateful(local_ds)
    it = iter(first)
    head = _ids([next(it) for _ in range(stop)])
    state = pickle.loads(pickle.dumps(first.state_dict()))
    del it, first
    second = _stateful(local_ds)
    second.load_state_dict(state)
    rest = _ids(list(second))
    assert head + rest == full
    assert sorted(i for b in full for i in b) == list(range(N))


def test_tier_loader_accepts_a_sync_store_handle(local_ds: Config) -> None:
    with open_store(local_ds) as store:
        assert isinstance(store, SyncStore)
        loader = TierLoader(TierDataset(store, "ds", decode=sample_id), batch_size=10)
        assert sorted(i for b in loader for i in b.tolist()) == list(range(N))
