"""Crash safety for real: SIGKILL a process moving objects at every step of a replica's life
(local and S3 tiers), recover, and check that nothing was lost, nothing is left pending and
nothing on a tier is unaccounted for.

The process is ``tests/crash_worker.py``. Most kills are deterministic: the worker kills itself
the N-th time a step boundary is passed (``TIERSTORE_CRASH_AT``, hooks installed in the worker
only); the rest are timed from outside (a random 0-300 ms after the store is open) for what the
hooks do not cover. Set ``TIERSTORE_CRASH_SEED`` to replay a failing schedule.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from crash_worker import KEYS, STEPS, content
from storefixtures import make_config, toml_for

from tierstore import Config, SyncStore, open_store
from tierstore.checksum import checksum

WORKER = Path(__file__).with_name("crash_worker.py")
TIMER_MAX = 0.3  # seconds after "ready" within which a timed kill lands
# Per kind of store: rounds of hook kills (each round kills once at every step of its backend,
# the 1st or 2nd time it is passed) and timed kills. local: 5 x 10 + 12 kills; moto: 3 x 10 +
# 20; ceph (slower, and the same S3 code as moto): 1 x 10 + 8.
PLAN = {"local": (5, 12), "moto": (3, 20), "ceph": (1, 8)}
MIN_KILLS = {"local": 50, "moto": 50, "ceph": 18}

State = dict[str, str | None]  # key -> generation it holds, None when it does not exist


@functools.cache
def digest(key: str, gen: str) -> str:
    return checksum(content(key, gen))


class Worker:
    """One run of crash_worker.py, its stdout in a file (a pipe could fill and block it)."""

    def __init__(self, config_path: Path, seed: str, *args: str, crash_at: str | None = None,
                 pause_at: str | None = None):
        self.spec = crash_at or pause_at
        self.out = config_path.with_name(f"worker-{seed}.out")
        self.err = config_path.with_name(f"worker-{seed}.err")
        env = {k: v for k, v in os.environ.items()
               if k not in ("TIERSTORE_CRASH_AT", "TIERSTORE_PAUSE_AT")}
        if crash_at:
            env["TIERSTORE_CRASH_AT"] = crash_at
        if pause_at:
            env["TIERSTORE_PAUSE_AT"] = pause_at
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKER), str(config_path), seed, *args], env=env,
                stdin=subprocess.PIPE, stdout=out, stderr=err)

    def go(self) -> None:
        """Let a worker started with ``--gate`` open the store."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines()

    def wait_for(self, word: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                if line.split()[0] == word:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        self.kill()
        raise AssertionError(f"worker never printed {word!r}\n{self.describe()}")

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.wait()

    def wait(self, timeout: float = 120.0) -> int:
        """Reap the worker: recovery tells a dead owner by os.kill(pid, 0), and a zombie
        still answers it."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"worker hung\n{self.describe()}") from None

    def describe(self) -> str:
        out = "\n".join(self.lines()[-12:])
        err = self.err.read_text()[-3000:]
        return (f"worker pid {self.proc.pid} rc {self.proc.returncode} "
                f"hook {self.spec}\n--- stdout (tail)\n{out}\n--- stderr\n{err}")


def replay(lines: list[str], state: State) -> tuple[dict[str, set[str | None]], str | None]:
    """Apply the worker's completed operations to ``state``; return what each key may hold now
    (an operation in flight may or may not have taken effect) and the key in flight."""
    inflight: tuple[str, str, str] | None = None
    for line in lines:
        word, *rest = line.split()
        if word == "begin":
            op, key, _tier, gen = rest
            inflight = (op, key, gen)
        elif word == "done":
            assert inflight is not None and inflight[1] == rest[1], line
            op, key, gen = inflight
            if op == "put":
                state[key] = gen
            elif op == "rm":
                state[key] = None
            inflight = None
    possible: dict[str, set[str | None]] = {key: {state[key]} for key in KEYS}
    if inflight is None:
        return possible, None
    op, key, gen = inflight
    if op == "put":
        possible[key].add(gen)
    elif op == "rm":
        possible[key].add(None)
    return possible, key


def check_recovery(config: Config, possible: dict[str, set[str | None]],
                   inflight: str | None, why: str) -> State:
    """Recover as a fresh process would, then check every invariant; return what each key
    holds."""
    store = open_store(config, recover=False)
    try:
        pending = store.aio.catalog.pending()
        report = store.recover()
        assert report.skipped == 0, f"{why}: recovery skipped work of a dead process: {report}"
        assert sorted(report.rolled_back) == sorted(
            (k, r.tier) for k, r in pending if r.state == "copying"), f"{why}: {report}"
        assert sorted(report.finished) == sorted(
            (k, r.tier) for k, r in pending if r.state == "deleting"), f"{why}: {report}"
        assert {k for k, _ in pending} <= {inflight}, (
            f"{why}: work pending on keys no operation was doing: {pending}")
        assert store.aio.catalog.pending() == [], f"{why}: still pending after recovery"
        audit = store.audit(deep=True)
        assert audit.ok, f"{why}: audit after recovery: {audit}"
        return check_objects(store, possible, why)
    finally:
        store.close()


def check_objects(store: SyncStore, possible: dict[str, set[str | None]], why: str) -> State:
    present = set(store.find(""))
    assert present <= set(KEYS), f"{why}: unexpected keys {present - set(KEYS)}"
    state: State = {}
    for key, options in possible.items():
        if key not in present:
            assert None in options, f"{why}: {key} was lost (expected one of {options})"
            assert not store.exists(key)
            state[key] = None
            continue
        data = store.cat(key, verify=True)
        held = [g for g in options if g is not None and digest(key, g) == checksum(data)]
        assert held, f"{why}: {key} holds bytes of no write it could hold ({options})"
        info = store.stat(key)
        assert info.checksum == checksum(data) and info.size == len(data), f"{why}: {info}"
        assert info.tiers, f"{why}: {key} has no ready replica: {info}"
        state[key] = held[0]
    return state


def kind_of(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["store_config"])


def schedule(kind: str, rng: random.Random) -> list[str | None]:
    """Crash specs (``STEP:BACKEND:N``), None for a timed kill, in a shuffled order."""
    backend = "local" if kind == "local" else "s3"
    rounds, timed = PLAN[kind]
    plan: list[str | None] = [f"{step}:{backend}:{rng.randint(1, 2)}"
                              for _ in range(rounds) for step in STEPS[backend]]
    plan += [None] * timed
    rng.shuffle(plan)
    return plan


def test_sigkill_at_every_step_of_a_move_then_recover(
        store_config: Config, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """At least 50 kills (18 on Ceph) across every step boundary, each followed by recovery,
    a deep audit and a read of every object."""
    kind = kind_of(request)
    seed = int(os.environ.get("TIERSTORE_CRASH_SEED", "0")) or random.randrange(1, 10**6)
    rng = random.Random(seed)
    config_path = tmp_path / "tierstore.toml"
    config_path.write_text(toml_for(store_config))

    seeding = Worker(config_path, "seed", "--ops", "0")  # every key, written by a dead process
    assert seeding.wait() == 0, seeding.describe()
    state: State = dict.fromkeys(KEYS)
    state = check_recovery(store_config, replay(seeding.lines(), state)[0], None, "seed")
    assert None not in state.values(), state

    kills: Counter[str] = Counter()
    during: Counter[str] = Counter()  # the operation each kill interrupted
    plan = schedule(kind, rng)
    # Each run's process is started (and has imported everything) while the previous run is
    # being checked; it opens the store only when let through.
    started = [Worker(config_path, f"{seed}-r0", "--gate", crash_at=plan[0])]
    try:
        for run, spec in enumerate(plan):
            worker = started[-1]
            worker.go()
            if spec is None:
                worker.wait_for("ready")
                time.sleep(rng.uniform(0, TIMER_MAX))
                rc = worker.kill()
            else:
                rc = worker.wait()
            if run + 1 < len(plan):
                started.append(Worker(config_path, f"{seed}-r{run + 1}", "--gate",
                                      crash_at=plan[run + 1]))
            why = f"[{kind} seed {seed} run {run} crash_at {spec or 'timer'}]"
            assert rc == -signal.SIGKILL, f"{why} {worker.describe()}"
            lines = worker.lines()
            fired = [line.split() for line in lines if line.startswith("kill ")]
            if spec is not None:
                assert fired and ":".join(fired[0][1:4]) == spec, (
                    f"{why} hook did not fire as asked\n{worker.describe()}")
                kills[":".join(fired[0][1:3])] += 1
                during[fired[0][4]] += 1
            else:
                kills["timer"] += 1
                marks = [line.split() for line in lines if line.split()[0] in ("begin", "done")]
                during["timer " + (marks[-1][1] if marks and marks[-1][0] == "begin"
                                   else "between ops")] += 1
            possible, inflight = replay(lines, state)
            state = check_recovery(store_config, possible, inflight,
                                   f"{why}\n{worker.describe()}")
    finally:
        started[-1].kill()

    backend = "local" if kind == "local" else "s3"
    print(f"\n{kind}: {sum(kills.values())} kills (seed {seed}): "
          + ", ".join(f"{k}={n}" for k, n in sorted(kills.items()))
          + "; interrupting: " + ", ".join(f"{k}={n}" for k, n in sorted(during.items())))
    never = [step for step in STEPS[backend] if kills[f"{step}:{backend}"] == 0]
    assert not never, f"steps never killed at on {kind}: {never}"
    assert sum(kills.values()) >= MIN_KILLS[kind], kills


# -- failures the kill test found, each shown on its own --------------------------------------


def _local_config(tmp_path: Path) -> tuple[Config, Path]:
    config = make_config(tmp_path, "local")
    path = tmp_path / "tierstore.toml"
    path.write_text(toml_for(config))
    return config, path


def test_overwrite_killed_after_commit_is_finished_while_the_old_writer_lives(
        tmp_path: Path) -> None:
    """An overwrite that dies between its commit and removing the replica it superseded
    leaves that replica ``deleting``; recovery must finish it even though the process that
    once *wrote* that replica (say, a long-lived daemon) is still alive."""
    config, path = _local_config(tmp_path)
    key = "small/a.bin"
    writer = Worker(path, "writer", "--script", f"put:{key}:warm", "--linger")
    try:
        writer.wait_for("end")  # wrote the replica, and lives on
        overwriter = Worker(path, "overwriter", "--script", f"put:{key}:warm",
                            crash_at="after_commit:any:1")
        assert overwriter.wait() == -signal.SIGKILL, overwriter.describe()

        with open_store(config, recover=False) as store:
            pending = store.aio.catalog.pending()
            report = store.recover()
            assert report.finished == ((key, "warm"),), (
                f"the superseded replica was left to a live process that is not removing "
                f"it: {report}; pending: {pending}; writer pid {writer.proc.pid}, "
                f"overwriter pid {overwriter.proc.pid}")
            assert store.audit(deep=True).ok
    finally:
        writer.kill()


def test_multipart_upload_of_a_killed_copy_is_aborted_by_recovery(
        s3_bucket: tuple[object, str], tmp_path: Path) -> None:
    """A copy to S3 killed after a part was uploaded leaves an incomplete multipart upload
    (parts stored and billed, invisible to a listing); recovery must abort it."""
    server, bucket = s3_bucket
    config = make_config(tmp_path, "moto", server, bucket)
    path = tmp_path / "tierstore.toml"
    path.write_text(toml_for(config))
    key = "big/f.bin"
    with open_store(config) as store:
        store.put(key, content(key, "old"), tier="hot")
    worker = Worker(path, "w", "--script", f"add:{key}:warm", crash_at="part_uploaded:s3:1")
    assert worker.wait() == -signal.SIGKILL, worker.describe()

    with open_store(config) as store:
        assert store.audit(deep=True).ok
    uploads = server.client().list_multipart_uploads(Bucket=bucket).get(  # type: ignore[attr-defined]
        "Uploads", [])
    assert [u["Key"] for u in uploads] == [], "incomplete multipart uploads left on the tier"


@pytest.mark.parametrize("meanwhile", ["overwrite", "rm"])
def test_copy_racing_a_write_never_commits_stale_bytes(tmp_path: Path, meanwhile: str) -> None:
    """A copy (add_replica, the first half of a move) that was started before the object was
    overwritten or removed must not commit: its bytes are the old content."""
    config, path = _local_config(tmp_path)
    key = "small/a.bin"
    with open_store(config) as store:
        store.put(key, content(key, "old"), tier="warm")
        worker = Worker(path, "w", "--script", f"add:{key}:hot",
                        pause_at="after_write:any:1")
        worker.wait_for("paused")  # the old bytes are on hot, under their temporary name
        new = content(key, "old")[::-1]  # same size: only the checksum tells them apart
        if meanwhile == "overwrite":
            store.put(key, new, tier="warm", overwrite=True)
        else:
            store.rm(key)
        assert worker.proc.stdin is not None
        worker.proc.stdin.write(b"go\n")
        worker.proc.stdin.close()
        worker.wait()  # the copy may fail (the fix) or finish (the bug), never hang

        if meanwhile == "overwrite":
            assert store.cat(key) == new, (
                f"a read returns the old content: {store.stat(key).replicas}")
        else:
            assert not store.exists(key), (
                f"the removed object came back: {store.stat(key).replicas}")
        assert store.audit(deep=True).ok, store.audit(deep=True)
