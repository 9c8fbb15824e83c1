"""A process that puts many small objects with ``put_many`` until it is killed (used by
tests/test_put_many.py).

    python tests/put_many_worker.py CONFIG_TOML RUN COUNT TIER [KILL_AT]

It puts ``COUNT`` objects ``RUN/dNN/kNNNN`` (contents: :func:`content`) in batches of
:data:`BATCH` and prints ``ready`` once the store is open, then ``committed KEY`` as each is
committed, flushed at once. With ``KILL_AT`` = ``STEP:N`` it SIGKILLs itself the N-th time a
batch passes STEP (hooks installed here, in the worker only, by wrapping the store's own
catalog and write functions; tierstore's code is not changed):

* ``begin``: a batch's intents are committed (its rows ``copying``), nothing written;
* ``write``: on a local folder, half of a batch's files are written, synced and renamed (the
  thread writing them dies with the process); on S3, half of its objects are uploaded, none
  yet proven;
* ``commit``: the batch is committed, its ``committed`` lines not yet printed.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from typing import Any

import tierstore
import tierstore.store.replicas
import tierstore.tier.local

BATCH = 40


def content(key: str) -> bytes:
    """Between 1 and 20 KiB, a pure function of the key."""
    seed = hashlib.sha256(key.encode()).digest()
    size = 1024 + int.from_bytes(seed[:2], "big") % (19 * 1024)
    return (seed * (size // len(seed) + 1))[:size]


def keys(run: str, count: int) -> list[str]:
    return [f"{run}/d{i % 7:02d}/k{i:04d}" for i in range(count)]


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _install(store: Any, tier: str, step: str, nth: int) -> None:
    catalog = store.aio.catalog
    batches = {"begun": 0, "committed": 0}

    def counting(name: str, counter: str, kills_at: str) -> None:
        original = getattr(catalog, name)

        def hooked(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            batches[counter] += 1
            if step == kills_at and batches[counter] == nth:
                _die()
            return out

        setattr(catalog, name, hooked)

    counting("begin_replicas", "begun", "begin")
    counting("commit_replicas", "committed", "commit")
    if step not in ("begin", "write", "commit"):
        raise SystemExit(f"unknown step {step!r}")
    write_files = tierstore.tier.local._write_files

    def half_then_die(files: Any, *args: Any) -> Any:
        if step == "write" and batches["begun"] == nth:  # the first of the batch's threads
            write_files(files[:len(files) // 2], *args)
            _die()
        return write_files(files, *args)

    tierstore.tier.local._write_files = half_then_die
    dest = store.aio.tier(tier)
    write = dest.write
    written = {"n": 0}

    async def write_then_die(*args: Any, **kwargs: Any) -> Any:
        out = await write(*args, **kwargs)
        written["n"] += 1
        if step == "write" and written["n"] == BATCH * (nth - 1) + BATCH // 2:
            _die()
        return out

    dest.write = write_then_die


def main() -> int:
    config, run, count, tier, *kill = sys.argv[1:]
    tierstore.store.replicas.BATCH_OBJECTS = BATCH
    store = tierstore.open_store(config, recover=False)
    if kill:
        step, nth = kill[0].split(":")
        _install(store, tier, step, int(nth))
    print("ready", flush=True)
    store.put_many([(key, content(key)) for key in keys(run, int(count))], tier=tier,
                   committed=lambda key, _size: print(f"committed {key}", flush=True))
    print("end", flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
