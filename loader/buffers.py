"""Memory for whole shards, reused from one shard to the next.

A shard read whole needs a buffer of its size. A new one every time costs more than its
bytes: memory this large comes straight from the kernel (``mmap``) and goes back when it is
freed, so every page of every shard is faulted in and zeroed again, about 1.4 GB/s of one
core on the 2-core machines the benchmarks run on; a cold epoch moving 250 MB/s spent a
sixth of its CPU there. :class:`ShardBuffers` keeps the buffers and lends them out again
once nothing views them any more (the buffer protocol's exports): not the reader that
parsed the shard, not a sample that is a view into it, not a hot-tier write still streaming
it. A buffer is lent as a ``memoryview`` of exactly the shard's size; its capacity is
rounded up, so shards of about the same size share buffers.

The buffers are private anonymous mappings of their own (``mmap``), not the C allocator's: a
large block freed back to the allocator raises its threshold for mapping, after which blocks
of that size come from the freeing thread's arena and stay there, freed or not. The loader
loop's arena grew so to its limit of 64 MiB per worker in a cold epoch read in 4 MiB blocks; a
mapping goes back to the system the moment nothing holds it and the pool does not keep it.

It lives on the process's loader loop (:class:`~.runtime.LoopThread`) and is used from that
thread only.
"""

from __future__ import annotations

import mmap

__all__ = ["ShardBuffers"]

GRAIN = 1 << 20  # capacities are multiples of this
SLACK = 1.25  # a buffer lends to a shard at most this much smaller than it
SMALL = 1 << 20  # shards below this are read into new memory (the allocator keeps that)


class ShardBuffers:
    """Reusable shard buffers; at most ``keep`` idle ones are held (the rest are freed)."""

    def __init__(self, keep: int = 1):
        self.keep = keep
        self._buffers: list[mmap.mmap] = []
        self.lent = 0  # buffers lent out again (for tests and stats)
        self.made = 0  # buffers made

    def take(self, size: int) -> memoryview:
        """A buffer of ``size`` bytes, its contents undefined."""
        idle = [b for b in self._buffers if _unexported(b)]
        fits = [b for b in idle if size <= len(b) <= max(size * SLACK, size + GRAIN)]
        if fits:
            buffer = min(fits, key=len)
            self.lent += 1
        elif size < SMALL:
            self.made += 1
            return memoryview(bytearray(size))
        else:
            buffer = mmap.mmap(-1, -(-size // GRAIN) * GRAIN,
                               flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            self.made += 1
            self._buffers.append(buffer)
        # idle beyond what is kept go back to the system, the smallest first
        for spare in sorted((b for b in idle if b is not buffer), key=len)[:-self.keep or None]:
            self._buffers.remove(spare)
            spare.close()
        return memoryview(buffer)[:size]

    def held(self) -> int:
        """Bytes of the buffers held, lent out or idle."""
        return sum(map(len, self._buffers))


def _unexported(buffer: mmap.mmap) -> bool:
    """Whether nothing views ``buffer`` (no memoryview, NumPy array, Arrow buffer...): only
    then may it change size, so try that (to the size it has)."""
    try:
        buffer.resize(len(buffer))
    except BufferError:
        return False
    return True
