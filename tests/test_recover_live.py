"""Review defect 1 of issue 13: recovery rolled back the copy of a live process whose row was
old, the id of that row went to an unrelated object, and the live writer's late rollback then
forgot that object. A real writer process, a real ``tierstore recover``, real tiers."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

from storefixtures import make_config, toml_for

from tierstore import Config, Store, open_store
from tierstore.inflight import IN_FLIGHT

WRITER = textwrap.dedent("""
    import asyncio, pathlib, sys
    from tierstore import Store

    async def main(config, gate):
        store = await Store.connect(config)

        async def source():
            yield b"slow" * 1000
            print("writing", flush=True)
            while not pathlib.Path(gate).exists():
                await asyncio.sleep(0.05)
            raise OSError("the source broke")

        try:
            await store.put("d/slow", source())
        except OSError as exc:
            print("failed:", exc, flush=True)
        await store.close()

    asyncio.run(main(*sys.argv[1:]))
""")


def _tierstore(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tierstore.cli", "--config", str(config),
                           *args], capture_output=True, text=True, timeout=120)


def test_a_live_writer_is_never_rolled_back_and_its_rollback_touches_only_its_row(
        store_config: Config, tmp_path: Path) -> None:
    config = tmp_path / "tierstore.toml"
    config.write_text(toml_for(store_config))
    gate = tmp_path / "gate"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(config), str(gate)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
        db = str(store_config.catalog).removeprefix("sqlite:///")
        with sqlite3.connect(db) as conn:  # the copy has run for two hours, no heartbeat
            aged = conn.execute("UPDATE replicas SET updated = updated - 7200 "
                                "WHERE state = 'copying'").rowcount
        assert aged == 1

        recovered = _tierstore(config, "--json", "recover")
        assert recovered.returncode == 0, recovered.stderr
        (tmp_path / "other").write_bytes(b"other bytes")
        put = _tierstore(config, "put", str(tmp_path / "other"), "d/other")
        assert put.returncode == 0, put.stderr
        gate.touch()  # now the live writer fails and rolls back its copy
        out, _ = writer.communicate(timeout=120)
        assert "failed: the source broke" in out
    finally:
        writer.kill()
        writer.wait()

    with open_store(store_config) as store:
        assert store.cat("d/other") == b"other bytes"
        assert not store.exists("d/slow")
        report = store.audit(deep=True)
    assert (report.orphans, report.missing, report.pending) == ((), (), 0)
    fsck = _tierstore(config, "fsck")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_recovery_takes_over_only_the_work_of_dead_processes(store_config: Config,
                                                            tmp_path: Path) -> None:
    """A writer killed mid-copy: its row is taken over and rolled back, bytes and all."""
    config = tmp_path / "tierstore.toml"
    config.write_text(toml_for(store_config))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(config),
                               str(tmp_path / "never")], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
    writer.kill()
    writer.wait()
    with open_store(store_config) as store:  # opening recovers
        assert not store.exists("d/slow")
        report = store.audit()
    assert (report.orphans, report.pending) == ((), 0)


def test_a_long_copy_keeps_its_row_fresh(tmp_path: Path) -> None:
    """The heartbeat: while a copy runs, its row's ``updated`` moves on, so other hosts'
    recovery (which can only judge by that time) sees its owner alive."""
    config = make_config(tmp_path, "local")

    async def main() -> None:
        store = await Store.connect(config)
        go = asyncio.Event()

        async def source() -> AsyncIterator[bytes]:
            yield b"x" * 1000
            await go.wait()

        put = asyncio.ensure_future(store.put("d/long", source()))
        while not store.catalog.pending():
            await asyncio.sleep(0.01)
        (_, before), = store.catalog.pending()
        await asyncio.sleep(0.01)
        assert IN_FLIGHT.beat() >= 1
        (_, after), = store.catalog.pending()
        assert after.updated > before.updated and after.owner == before.owner
        other = await Store.connect(config)  # its recovery leaves this process's copy alone
        assert (await other.recover()).skipped == 1
        go.set()
        await put
        assert await store.cat("d/long") == b"x" * 1000
        await other.close()
        await store.close()

    asyncio.run(main())
