"""A process that moves objects between tiers until it is killed (used by tests/test_crash.py).

    python tests/crash_worker.py CONFIG_TOML SEED [--ops N] [--script OP:KEY:TIER ...]
                                 [--gate] [--linger]

It opens the store without recovery, first puts every key of :data:`KEYS` that does not exist,
then runs ``--ops`` random operations (move, add_replica, drop_replica, overwriting put, rm)
between the tiers, or exactly the ``--script`` operations. Each operation is announced on
stdout before it starts and confirmed when it ends, flushed at once, so the parent knows which
operation (at most one) was in flight when the process died::

    ready
    begin put big/e.bin warm 7.3        # op key tier generation ("-" where none applies)
    done put big/e.bin
    kill after_commit s3 2 move         # a crash hook fired: step, backend, n, op
    end

Contents are a pure function of (key, generation) (:func:`content`), so the parent can tell
which write an object holds from its bytes alone.

Crash hooks (installed here, in the worker only, by wrapping methods of the store's own
catalog, tier and store instances; tierstore's code is not changed): with
``TIERSTORE_CRASH_AT=STEP:BACKEND:N`` the process SIGKILLs itself the N-th time STEP completes
on a tier of BACKEND (``local`` or ``s3``; ``any`` for both). ``TIERSTORE_PAUSE_AT`` (same
syntax) instead prints ``paused STEP`` and waits for a line on stdin, so a test can act while an
operation is stopped half-way.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import signal
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import fsspec

import tierstore
from tierstore.catalog import Replica
from tierstore.localcopy import LocalFile
from tierstore.store import Store
from tierstore.tier import PART_SIZE, Tier

# Step boundaries of a replica's life, in the order a move passes them. Each is hooked right
# after it completes.
LOCAL_STEPS = (
    "after_begin",          # catalog: replica row 'copying' committed
    "mid_write",            # the first chunk went to the tier, more may follow
    "after_write",          # every byte written under the temporary name
    "after_verify",         # read back and checked
    "after_rename",         # under its final name, not yet committed
    "after_commit",         # 'ready' (superseded replicas now 'deleting')
    "after_mark_deleting",  # drop/move: the old replica is 'deleting', its bytes still there
    "after_begin_delete",   # rm: every replica 'deleting'
    "after_remove",         # a 'deleting' replica's bytes are gone, its row is not
    "after_forget",         # the row is gone
)
# An S3 write shows all or nothing, so it goes to the replica's final name at once: no
# rename (and no half-done rename, S3's copy + delete) on S3.
S3_STEPS = (*(step for step in LOCAL_STEPS if step != "after_rename"),
            "part_uploaded")  # a multipart upload has a part (objects >= PART_SIZE here)
ALL_STEPS = (*LOCAL_STEPS, "part_uploaded", "mid_rename")
STEPS = {"local": LOCAL_STEPS, "s3": S3_STEPS}

# The objects: a fixed set of keys of three size classes. "big" objects are larger than one
# part, so S3 writes are multipart and copies stream in several reads.
KEYS = {
    "small/a.bin": "small",
    "small/b.bin": "small",
    "small/c.bin": "small",
    "nested/deeper/d.bin": "small",
    "mid/e.bin": "mid",
    "big/f.bin": "big",
    "big/g.bin": "big",
}
OP_WEIGHTS = {"move": 30, "add": 20, "drop": 15, "put": 25, "rm": 12}


def content(key: str, gen: str) -> bytes:
    """The bytes of generation ``gen`` of ``key`` (deterministic in every process)."""
    rng = random.Random(f"{key}#{gen}")
    kind = KEYS[key]
    if kind == "small":
        size = rng.randint(1, 64 * 1024)
    elif kind == "mid":
        size = rng.randint(256 * 1024, 2 * 1024 * 1024)
    else:  # sometimes exactly one part, usually a full part and a short one
        size = PART_SIZE if rng.random() < 0.2 else PART_SIZE + rng.randint(1, 256 * 1024)
    return rng.randbytes(size)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def backend(tier: Tier) -> str:
    return "s3" if tier.protocol == "s3" else "local"


class Hooks:
    """Counts every step boundary per backend and kills (or pauses) this process at one."""

    def __init__(self, crash_at: str | None, pause_at: str | None):
        self.crash = _parse_spec(crash_at)
        self.pause = _parse_spec(pause_at)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()
        self.op = "-"  # the operation in flight, for the kill line

    def hit(self, step: str, where: str) -> None:
        with self.lock:
            self.counts[step, where] += 1
            n = self.counts[step, where]
        if _matches(self.pause, step, where, n):
            say(f"paused {step} {where} {n} {self.op}")
            sys.stdin.readline()
        if _matches(self.crash, step, where, n):
            say(f"kill {step} {where} {n} {self.op}")
            os.kill(os.getpid(), signal.SIGKILL)

    def install(self, store: Store) -> None:
        self._wrap_catalog(store)
        for tier in store.tiers.values():
            self._wrap_tier(tier)
        verify = store._verify_written

        async def verified(dest: Tier, key: str, path: str, size: int, digest: str) -> None:
            await verify(dest, key, path, size, digest)
            self.hit("after_verify", backend(dest))

        store._verify_written = verified  # type: ignore[method-assign]

    def _wrap_catalog(self, store: Store) -> None:
        catalog = store.catalog
        where: dict[int, str] = {}  # replica id -> backend of its tier

        def note(replica: Replica) -> str:
            where[replica.id] = backend(store.tier(replica.tier))
            return where[replica.id]

        def after(name: str, step: str, locate: Callable[[Any, tuple[Any, ...]], str]) -> None:
            method = getattr(catalog, name)

            def wrapped(*args: Any, **kwargs: Any) -> Any:
                result = method(*args, **kwargs)
                self.hit(step, locate(result, args))
                return result

            setattr(catalog, name, wrapped)

        def committed(superseded: list[Replica], args: tuple[Any, ...]) -> str:
            for old in superseded:
                note(old)
            return where[args[0]]

        def deleting(replicas: list[Replica], args: tuple[Any, ...]) -> str:
            found = {note(r) for r in replicas}
            return "s3" if "s3" in found else "local"

        after("begin_replica", "after_begin", lambda r, a: note(r))
        after("commit_replica", "after_commit", committed)
        after("mark_deleting", "after_mark_deleting", lambda r, a: note(r))
        after("begin_delete", "after_begin_delete", deleting)
        after("forget_replica", "after_forget", lambda r, a: where.pop(a[0].id))

    def _wrap_tier(self, tier: Tier) -> None:
        where = backend(tier)
        write, rename, remove = tier.write, tier.rename, tier.remove

        async def counted(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
            first = True
            async for chunk in chunks:
                yield chunk
                if first:  # the consumer wrote the first chunk and asks for the next
                    first = False
                    self.hit("mid_write", where)

        def kernel_copied(pace: Any) -> Any:
            first = [True]

            async def paced(nbytes: int) -> None:
                if pace is not None:
                    await pace(nbytes)
                if first[0]:  # a kernel copy made its first piece; more may follow
                    first[0] = False
                    self.hit("mid_write", where)
            return paced

        async def wrapped_write(path: str, chunks: AsyncIterable[bytes], *,
                                size: int | None = None) -> int:
            # a move between local tiers comes as a LocalFile, which the tier copies in the
            # kernel: kept so (its pieces are the steps), else streamed chunk by chunk
            written = await write(path, dataclasses.replace(
                chunks, pace=kernel_copied(chunks.pace)) if isinstance(chunks, LocalFile)
                else counted(chunks), size=size)
            self.hit("after_write", where)
            return written

        async def wrapped_rename(src: str, dst: str) -> None:
            await rename(src, dst)
            self.hit("after_rename", where)

        async def wrapped_remove(path: str) -> None:
            await remove(path)
            self.hit("after_remove", where)

        tier.write = wrapped_write  # type: ignore[method-assign]
        tier.rename = wrapped_rename  # type: ignore[method-assign]
        tier.remove = wrapped_remove  # type: ignore[method-assign]
        if tier.protocol == "s3":
            self._wrap_s3(tier)

    def _wrap_s3(self, tier: Tier) -> None:
        # Multipart from PART_SIZE on, as "big" objects are laid out for (by default objects
        # up to SINGLE_PUT_MAX are one PUT).
        tier.single_put_max = PART_SIZE - 1
        call_s3, get_fs = tier._call_s3, tier._fs

        async def wrapped_call_s3(fs: Any, method: str, **kwargs: Any) -> Any:
            out = await call_s3(fs, method, **kwargs)
            if method == "upload_part":
                self.hit("part_uploaded", "s3")
            return out

        async def wrapped_fs() -> Any:
            fs = await get_fs()
            if "_cp_file" not in vars(fs):  # s3fs's _mv_file is _cp_file then _rm_file
                cp_file = fs._cp_file

                async def copied(*args: Any, **kwargs: Any) -> Any:
                    out = await cp_file(*args, **kwargs)
                    self.hit("mid_rename", "s3")
                    return out

                fs._cp_file = copied
            return fs

        tier._call_s3 = wrapped_call_s3  # type: ignore[method-assign]
        tier._fs = wrapped_fs  # type: ignore[method-assign]


def _parse_spec(spec: str | None) -> tuple[str, str, int] | None:
    if not spec:
        return None
    step, where, n = spec.split(":")
    if step not in ALL_STEPS or where not in ("local", "s3", "any"):
        raise SystemExit(f"bad crash spec {spec!r}: STEP:local|s3|any:N, STEP in {ALL_STEPS}")
    return step, where, int(n)


def _matches(spec: tuple[str, str, int] | None, step: str, where: str, n: int) -> bool:
    return spec is not None and spec[0] == step and spec[1] in ("any", where) and n == spec[2]


# -- operations ------------------------------------------------------------------------------


class Mover:
    """Runs operations, announcing each on stdout."""

    def __init__(self, store: tierstore.SyncStore, hooks: Hooks, seed: str):
        self.store = store
        self.hooks = hooks
        self.seed = seed
        self.rng = random.Random(seed)
        self.tiers = sorted(store.aio.tiers)
        self.count = 0

    def run(self, op: str, key: str, tier: str = "-") -> None:
        gen = "-"
        if op == "put":
            self.count += 1
            gen = f"{self.seed}.{self.count}"
        self.hooks.op = op
        say(f"begin {op} {key} {tier} {gen}")
        if op == "put":
            self.store.put(key, content(key, gen), tier=tier, overwrite=True)
        elif op == "move":
            self.store.move(key, tier)
        elif op == "add":
            self.store.add_replica(key, tier)
        elif op == "drop":
            self.store.drop_replica(key, tier)
        elif op == "rm":
            self.store.rm(key)
        else:
            raise SystemExit(f"unknown op {op!r}")
        say(f"done {op} {key}")
        self.hooks.op = "-"

    def on(self, key: str) -> list[str] | None:
        record = self.store.aio.catalog.get(key)
        if record is None or not record.ready:
            return None
        return sorted(r.tier for r in record.ready)

    def ensure(self) -> None:
        """Create every key that does not exist (after an rm, or a create that was killed)."""
        for key in sorted(KEYS):
            if self.on(key) is None:
                self.run("put", key, self.rng.choice(self.tiers))

    def random_op(self) -> None:
        key = self.rng.choice(sorted(KEYS))
        on = self.on(key)
        if on is None:
            self.run("put", key, self.rng.choice(self.tiers))
            return
        off = [t for t in self.tiers if t not in on]
        choices = {"put": self.tiers, "rm": ["-"],
                   "move": off if len(on) == 1 else self.tiers,
                   "add": off, "drop": on if len(on) > 1 else []}
        ops = [op for op in OP_WEIGHTS if choices[op]]
        op = self.rng.choices(ops, weights=[OP_WEIGHTS[o] for o in ops])[0]
        self.run(op, key, self.rng.choice(choices[op]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("seed")
    parser.add_argument("--ops", type=int, default=1000, help="random operations to run")
    parser.add_argument("--script", nargs="*", default=None, metavar="OP:KEY[:TIER]",
                        help="run exactly these operations instead (no ensure, no random ops)")
    parser.add_argument("--gate", action="store_true",
                        help="import everything, then wait for a line on stdin before opening "
                             "the store (so a parent can start the next run ahead of time)")
    parser.add_argument("--linger", action="store_true",
                        help="after the last operation, stay alive until a line on stdin")
    args = parser.parse_args(argv)
    if args.gate:  # imports (s3fs and botocore) are most of the start-up
        for tier in tierstore.load_config(args.config).tiers.values():
            fsspec.get_filesystem_class(fsspec.core.split_protocol(tier.url)[0] or "file")
        sys.stdin.readline()
    hooks = Hooks(os.environ.get("TIERSTORE_CRASH_AT"), os.environ.get("TIERSTORE_PAUSE_AT"))
    store = tierstore.open_store(args.config, recover=False)
    hooks.install(store.aio)
    mover = Mover(store, hooks, args.seed)
    say("ready")
    if args.script is not None:
        for step in args.script:
            op, key, *tier = step.split(":")
            mover.run(op, key, *tier)
    else:
        mover.ensure()
        for _ in range(args.ops):
            mover.random_op()
    say("end")
    if args.linger:
        sys.stdin.readline()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
