"""A lane: one in-flight request slot of a job, and the hot loops that issue its I/O.

Each lane issues its share of the job's I/O (see :mod:`.pattern`) one request at a time and
times each with ``perf_counter_ns``. On an object store lanes are coroutines on one event
loop. On local files each lane is a thread calling ``os.pread``/``preadv``/``pwritev`` into
its own page-aligned buffer (an ``mmap``, which ``O_DIRECT`` needs): the system call drops the
GIL, so lanes overlap, and no event-loop hop is paid per I/O. That hop (``run_in_executor``
per request) measured 42 microseconds per 4 KiB page-cache read here, against 1.5 from a
lane's own loop: 25 times what the read itself costs.

The hot loop does the least it can per I/O: two clock reads, the call, the append of the
latency to a list that is binned in batches, and two comparisons. Byte and I/O counters,
which a sampler reads every 500 ms for fio's bandwidth samples, are published per batch.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

from ..common.errors import TargetError
from .histogram import LatencyHistogram
from .pattern import Batch
from .target import BlockingTarget, Target

__all__ = ["NEVER", "Lane"]

NEVER = 1 << 62
SMALL_READ = 64 * 1024  # up to here os.pread measured 3-12% faster than os.preadv here
_clock = time.perf_counter_ns


class Lane:
    """One in-flight request slot and what it measured."""

    def __init__(self, batches: Iterator[Batch], *, bs: int, writes_only: bool,
                 buffer: memoryview, fsync_every: int, fsync_count: Iterator[int],
                 stop: threading.Event, aligned: bool = False):
        self.batches = batches
        self.aligned = aligned  # O_DIRECT: every transfer through the aligned buffer
        self.bs = bs
        self.writes_only = writes_only
        self.buffer = buffer
        self.fsync_every = fsync_every
        self.fsync_count = fsync_count
        self.stop = stop
        self._views: dict[int, list[memoryview]] = {}
        self.reset()

    def reset(self) -> None:
        """Forget what was measured (after the ramp)."""
        self.counters = [0, 0, 0, 0]  # read bytes, read I/Os, write bytes, write I/Os
        self.short = [0, 0]
        self.clat = (LatencyHistogram(), LatencyHistogram())
        self.sync = LatencyHistogram()

    def _view(self, length: int) -> list[memoryview]:
        view = self._views.get(length)
        if view is None:
            view = self._views[length] = [self.buffer[:length]]
        return view

    # -- local files: a thread per lane ------------------------------------------------------

    def run_blocking(self, target: BlockingTarget, deadline: int) -> None:
        fds = [target.fileno(i) for i in range(len(target.paths))]
        try:
            for batch in self.batches:
                if self.stop.is_set():
                    return
                if batch.new_pass:
                    target.new_pass()
                if (batch.lengths is None and batch.files is None and batch.writes is None
                        and not self.fsync_every):
                    done = self._simple(fds[0], batch.offsets, deadline)
                else:
                    done = self._general(fds, batch, deadline)
                if done:
                    return
        except OSError as exc:
            raise TargetError(f"{target.paths[0]}: I/O failed ({exc.strerror})") from exc

    def _simple(self, fd: int, offsets: list[int], deadline: int) -> bool:
        """One file, one block size, one direction: the loop that sets the pace. Counters
        are published once per batch; a short transfer is counted where it happens."""
        write, bs, clock = self.writes_only, self.bs, _clock
        hist = self.clat[write]
        pending = hist.pending
        append, before = pending.append, len(pending)
        missing = short = 0
        t1 = 0
        if not write and bs <= SMALL_READ and not self.aligned:
            pread = os.pread  # for small blocks a fresh bytes object beats preadv's iovec
            for offset in offsets:
                t0 = clock()
                n = len(pread(fd, bs, offset))
                t1 = clock()
                append(t1 - t0)
                if n != bs:
                    short += 1
                    missing += bs - n
                if t1 >= deadline:
                    break
        else:
            call, bufs = (os.pwritev if write else os.preadv), self._view(bs)
            for offset in offsets:
                t0 = clock()
                n = call(fd, bufs, offset)
                t1 = clock()
                append(t1 - t0)
                if n != bs:
                    short += 1
                    missing += bs - n
                if t1 >= deadline:
                    break
        done, d = len(pending) - before, 2 if write else 0
        self.counters[d] += done * bs - missing
        self.counters[d + 1] += done
        self.short[write] += short
        hist.flush_if_full()
        return t1 >= deadline

    def _general(self, fds: list[int], batch: Batch, deadline: int) -> bool:
        offsets, lengths, files, writes, _ = batch
        for i, offset in enumerate(offsets):
            length = self.bs if lengths is None else lengths[i]
            fd = fds[0] if files is None else fds[files[i]]
            write = self.writes_only if writes is None else writes[i]
            t0 = _clock()
            n = (os.pwritev if write else os.preadv)(fd, self._view(length), offset)
            t1 = _clock()
            self._record(write, n, length, t1 - t0)
            if write and self.fsync_every and \
                    next(self.fsync_count) % self.fsync_every == self.fsync_every - 1:
                os.fsync(fd)
                self.sync.add(_clock() - t1)
            if t1 >= deadline:
                return True
        for hist in self.clat:
            hist.flush_if_full()
        return False

    def _record(self, write: bool, n: int, length: int, latency: int) -> None:
        self.clat[write].pending.append(latency)
        d = 2 if write else 0
        self.counters[d] += n
        self.counters[d + 1] += 1
        if n != length:
            self.short[write] += 1

    # -- object stores and tiers: a coroutine per lane -----------------------------------------

    async def run_async(self, target: Target, deadline: int) -> None:
        for batch in self.batches:
            if self.stop.is_set():
                return
            if batch.new_pass:
                target.new_pass()
            offsets, lengths, files, writes, _ = batch
            for i, offset in enumerate(offsets):
                length = self.bs if lengths is None else lengths[i]
                index = 0 if files is None else files[i]
                write = self.writes_only if writes is None else writes[i]
                t0 = _clock()
                if write:
                    n = await target.write(index, offset, self._view(length)[0])
                else:
                    n = await target.read(index, offset, length)
                t1 = _clock()
                self._record(write, n, length, t1 - t0)
                if t1 >= deadline:
                    return
            for hist in self.clat:
                hist.flush_if_full()
