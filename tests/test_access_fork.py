"""An access recorder survives a fork taken while another thread is inside it: the child's
first read is recorded and flushed, never deadlocked on a lock the parent's thread held."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tierstore.catalog import open_catalog

FORKS = 40

# The parent forks while a thread hammers record(); each child records one read of its own,
# flushes it and exits. A child still running after a generous deadline is stuck: it is
# killed (so none is left behind) and reported, and no more are forked. The catalog must hold
# every child's read.
SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    from tierstore.access import AccessRecorder
    from tierstore.catalog import open_catalog

    sys.setswitchinterval(1e-6)  # switch threads often: a fork lands inside record()
    catalog = open_catalog(sys.argv[1])
    recorder = AccessRecorder(catalog, interval=3600)
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            recorder.record("parent")

    thread = threading.Thread(target=hammer)
    thread.start()
    stuck = []
    for i in range(int(sys.argv[2])):
        pid = os.fork()
        if pid == 0:
            recorder.record(f"child-{i}")
            recorder.flush()
            os._exit(0)
        deadline = time.monotonic() + 10
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                stuck.append(i)
                break
            time.sleep(0.005)
        if stuck:
            break
    stop.set()
    thread.join()
    recorder.close()
    print("stuck", stuck)
""")


def test_a_child_forked_mid_record_records_and_flushes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    keys = [f"child-{i}" for i in range(FORKS)]
    catalog = open_catalog(url)  # reads are counted for objects the catalog holds
    catalog.add_objects([(key, 1, "x") for key in ["parent", *keys]], "hot", owner="test")
    catalog.close()
    done = subprocess.run([sys.executable, "-c", SCRIPT, url, str(FORKS)], capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "stuck []" in done.stdout, done.stdout  # children that deadlocked were killed
    catalog = open_catalog(url)
    try:
        seen = catalog.access(keys)
        assert {key: stats.count for key, stats in seen.items()} == dict.fromkeys(keys, 1)
        assert catalog.access(["parent"])["parent"].count > 0  # the parent's own reads
    finally:
        catalog.close()
