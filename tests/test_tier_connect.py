"""A process forked after its store connected its tiers makes its own S3 clients without
parsing botocore's models again (DataLoader workers are forked so: ``TierLoader`` connects
first), and one forked before parses them, as every worker once did (~15 MiB of objects each).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.storefixtures import make_config, toml_for

# Connects (or not) the store of the config at argv[1], forks, and in the child counts the
# JSON files botocore reads while the tier makes the child's client on a loop of its own.
SCRIPT = textwrap.dedent("""
    import asyncio, json, os, sys
    import botocore.loaders
    from tierstore import Store, load_config

    async def connected(first):
        store = Store(load_config(sys.argv[1]))
        if first:
            await store.connect_tiers()
        return store

    store = asyncio.run(connected(sys.argv[2] == "connect"))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        loaded = []
        original = botocore.loaders.JSONFileLoader.load_file
        def counting(self, path):
            loaded.append(os.path.basename(path))
            return original(self, path)
        botocore.loaders.JSONFileLoader.load_file = counting
        asyncio.run(store.tier("warm").connect())
        os.write(write, json.dumps(loaded).encode())
        os._exit(0)
    os.close(write)
    print(os.read(read, 65536).decode())
    os.waitpid(pid, 0)
""")


@pytest.mark.parametrize("first", ["connect", "nothing"])
def test_a_process_forked_after_connect_tiers_parses_no_models(
        first: str, moto_server: object, tmp_path: Path) -> None:
    bucket = moto_server.new_bucket()  # type: ignore[attr-defined]
    config = tmp_path / "tierstore.toml"
    config.write_text(toml_for(make_config(tmp_path, "moto", moto_server, bucket)))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(config), first],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    if first == "connect":
        assert loaded == []
    else:  # the contrast: a child of a process that made no client parses them itself
        assert any(name.startswith("endpoints") for name in loaded), loaded


def test_each_loop_has_a_session_of_its_own_over_one_loader(moto_server: object,
                                                            tmp_path: Path) -> None:
    """Credentials that refresh hold an asyncio lock no two loops may share: each loop's
    client has its own session; what they share is the loader of botocore's models."""
    import asyncio

    from tierstore import Store

    bucket = moto_server.new_bucket()  # type: ignore[attr-defined]
    store = Store(make_config(tmp_path, "moto", moto_server, bucket))
    tier = store.tier("warm")

    async def session() -> object:
        return (await tier._fs()).session

    first, second = asyncio.run(session()), asyncio.run(session())
    assert first is not second
    assert first.get_component("data_loader") is second.get_component("data_loader")
