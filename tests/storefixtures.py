"""Stores for tests: the embedded layout on local folders, or warm and cold tiers in a bucket
of a real S3-compatible server (moto, or Ceph radosgw) started by the server fixtures."""

from __future__ import annotations

import asyncio
import io
import tarfile
from pathlib import Path

import pytest

from tierstore import Config, SyncStore, TierClass, TierConfig, open_store
from tierstore.daemon import Daemon, DaemonOptions
from tierstore.store import Store

STORE_KINDS = ["local", "moto", pytest.param("ceph", marks=pytest.mark.ceph)]


def toml_for(config: Config) -> str:
    """A TOML file equivalent to ``config`` (for subprocesses and the CLI)."""
    lines = [f'home = "{config.home}"', f'catalog = "{config.catalog}"',
             f'default_tier = "{config.default_tier}"', f'site = "{config.site}"']
    for tier in config.tiers.values():
        lines += ["", f"[tiers.{tier.name}]", f'class = "{tier.tier_class.name.lower()}"',
                  f'url = "{tier.url}"', f'site = "{tier.site}"']
        if tier.capacity is not None:
            lines.append(f"capacity = {tier.capacity}")
        if tier.options:
            lines.append(f"[tiers.{tier.name}.options]")
            for name, value in tier.options.items():
                if isinstance(value, dict):
                    inner = ", ".join(f'{k} = "{v}"' for k, v in value.items())
                    lines.append(f"{name} = {{ {inner} }}")
                else:
                    lines.append(f'{name} = "{value}"')
    return "\n".join(lines) + "\n"


def make_config(home: Path, kind: str, server: object = None, bucket: str = "") -> Config:
    """hot is always a local folder; warm and cold are local folders or S3 prefixes."""
    tiers = {"hot": TierConfig(name="hot", tier_class=TierClass.HOT,
                               url=(home / "tiers" / "hot").as_uri())}
    for name in ("warm", "cold"):
        if kind == "local":
            tiers[name] = TierConfig(name=name, tier_class=TierClass[name.upper()],
                                     url=(home / "tiers" / name).as_uri())
        else:
            tiers[name] = TierConfig(name=name, tier_class=TierClass[name.upper()],
                                     url=f"s3://{bucket}/{name}",
                                     options=server.storage_options(),  # type: ignore[attr-defined]
                                     timeout=20.0)
    return Config(home=home, catalog=f"sqlite:///{home / 'catalog.db'}", tiers=tiers,
                  default_tier="warm")


@pytest.fixture(params=STORE_KINDS)
def store_config(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    """A store configuration per kind of tier: all local, or warm and cold on S3."""
    if request.param == "local":
        return make_config(tmp_path, "local")
    server = request.getfixturevalue(f"{request.param}_server")
    bucket = server.new_bucket()
    request.addfinalizer(lambda: server.delete_bucket(bucket))
    return make_config(tmp_path, request.param, server, bucket)


@pytest.fixture
def store(store_config: Config):
    """An open :class:`SyncStore` over ``store_config``, closed after the test."""
    opened: SyncStore = open_store(store_config)
    yield opened
    opened.close()


@pytest.fixture
def local_store(tmp_path: Path):
    """A store on local folders only (fast; for tests not about tier kinds)."""
    opened = open_store(make_config(tmp_path, "local"))
    yield opened
    opened.close()


def tar_shard(samples: list[tuple[str, bytes, int]]) -> bytes:
    """A WebDataset-style tar shard, as other tools write them: for each ``(key, payload,
    label)``, the members ``key.bin`` and ``key.cls``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, payload, label in samples:
            for ext, body in (("bin", payload), ("cls", str(label).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def run_cycles(config: Config, n: int = 1, **options: object) -> list[dict[str, int]]:
    """``n`` cycles of a daemon (``DaemonOptions(once=True, metrics_port=None, **options)``)
    on a store of ``config``: each cycle's outcomes."""
    async def cycles() -> list[dict[str, int]]:
        store = Store(config)
        try:
            daemon = Daemon(store, DaemonOptions(once=True, metrics_port=None,
                                                 **options))  # type: ignore[arg-type]
            out = []
            for _ in range(n):
                assert await daemon.cycle()
                out.append(dict(daemon.outcomes))
            return out
        finally:
            await store.close()

    return asyncio.run(cycles())
