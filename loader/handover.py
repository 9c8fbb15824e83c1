"""Batches cross from a DataLoader worker to the training process through shared-memory slots
that are reused, instead of new shared memory for every tensor of every batch.

A tensor a worker returns normally travels as a new shared-memory segment whose file
descriptor the training process fetches from the worker over a socket, once per tensor: about
2 ms per batch of three tensors on a 2-core machine, most of a training step's wait when the
reads themselves are ahead. Here each worker keeps a few slots (shared memory it allocated
once), copies a batch's tensors into a free one, and sends only the slot's number and where
each tensor lies in it; a slot's memory travels once, with the first batch that uses it. The
training process hands out views of the slot and releases the slot when nothing holds a view
any more: it follows the slot's storage's use count (:meth:`SlotReader.reclaim`, at every
step). A worker with no free slot large enough grows one or, when all are lent, sends the
batch the usual way, so a training loop that keeps batches gets correct batches, only not
faster ones.

Each slot begins with a header of two sequence numbers, the batch last written into it (by the
worker) and the batch last released (by the training process); the slot is free when they are
equal. The numbers live in the slot's own memory, so a release never reaches another worker's
or an earlier worker process's slot. A batch received but never handed out (discarded when a
DataLoader iterator is reset or dropped) releases its slot when it is collected.

What reuses memory must not leave the process: a tensor of a batch sent on to another process
(a ``multiprocessing`` queue) is shared memory the worker will overwrite once the training
process drops its own views; copy it first, or pass ``reuse_memory=False`` to the loader.
"""

from __future__ import annotations

import contextlib
import random
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Packed", "SlotReader", "SlotWriter"]

HEADER = 64  # bytes before a slot's data: [written, released] as int64, then padding
ALIGN = 64  # each tensor starts at a multiple of this within a slot
GROWTH = 1.25  # a slot grown for a batch gets this much room over it
MIN_SLOT = 1 << 20

_received: dict[tuple[int, int, int], torch.Tensor] = {}  # (reader, worker, slot) -> memory
_received_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class _Ref:
    """Where one tensor of a packed batch lies in its slot."""

    offset: int
    dtype: torch.dtype
    shape: tuple[int, ...]


def _header(memory: torch.Tensor) -> torch.Tensor:
    return memory[:16].view(torch.int64)


def _use_count(memory: torch.Tensor) -> int:
    return int(torch._C._storage_Use_Count(memory.untyped_storage()._cdata))


class Packed:
    """A batch as it crosses: whose slot (the :class:`SlotReader` it is for, the worker
    process, the slot), the batch with :class:`_Ref` for its tensors, and the slot's memory
    when the training process has not been sent it yet."""

    def __init__(self, owner: int, token: int, slot: int, seq: int, skeleton: Any,
                 memory: torch.Tensor | None):
        self.owner, self.token, self.slot, self.seq = owner, token, slot, seq
        self.skeleton, self.memory = skeleton, memory
        self._received = self._taken = False

    @property
    def key(self) -> tuple[int, int, int]:
        return self.owner, self.token, self.slot

    def __getstate__(self) -> dict[str, Any]:
        return {"owner": self.owner, "token": self.token, "slot": self.slot, "seq": self.seq,
                "skeleton": self.skeleton, "memory": self.memory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._received, self._taken = True, False
        if self.memory is not None:  # register now: this batch may be discarded unread
            with _received_lock:
                _received[self.key] = self.memory
            self.memory = None

    def _slot_memory(self) -> torch.Tensor:
        with _received_lock:
            return _received[self.key]

    def __del__(self) -> None:
        if getattr(self, "_received", False) and not self._taken:
            with contextlib.suppress(Exception):  # a finaliser: at worst the slot stays lent
                _header(self._slot_memory())[1] = self.seq


class SlotWriter:
    """A worker's slots for the batches of the :class:`SlotReader` ``owner``: copies batches
    into free ones (see the module's text)."""

    def __init__(self, slots: int, owner: int):
        self.slots, self.owner = max(1, slots), owner
        self.token = random.getrandbits(62) + 1  # this worker process's slots, not another's
        self._memory: list[torch.Tensor | None] = [None] * self.slots
        self._sent = [False] * self.slots
        self._seq = 0

    def pack(self, batch: Any) -> Any:
        """``batch`` as a :class:`Packed` in a free slot, or as it is when it holds no
        tensor or no slot is free."""
        tensors: list[torch.Tensor] = []
        end = HEADER

        def place(t: torch.Tensor) -> _Ref:
            nonlocal end
            tensors.append(t.contiguous())
            ref = _Ref(end, t.dtype, tuple(t.shape))
            end += -(-t.numel() * t.element_size() // ALIGN) * ALIGN
            return ref

        skeleton = _map(batch, _packable, place)
        if not tensors:
            return batch
        slot = self._free_slot(end)
        if slot is None:
            return batch
        memory = self._memory[slot]
        assert memory is not None
        for t, ref in zip(tensors, _refs_of(skeleton), strict=True):
            _view(memory, ref).copy_(t)
        self._seq += 1
        _header(memory)[0] = self._seq  # after the data: the slot is lent from here on
        first = not self._sent[slot]
        self._sent[slot] = True
        return Packed(self.owner, self.token, slot, self._seq, skeleton,
                      memory if first else None)

    def _free_slot(self, nbytes: int) -> int | None:
        """A free slot of at least ``nbytes``: one that is that large, else a slot not made
        yet or a free one too small, (re)made large enough; None when every slot is lent."""
        spare = None
        for i, memory in enumerate(self._memory):
            if memory is not None:
                written, released = _header(memory).tolist()
                if written != released:
                    continue  # lent
                if memory.numel() >= nbytes:
                    return i
            if spare is None:
                spare = i
        if spare is None:
            return None
        self._memory[spare] = torch.zeros(max(MIN_SLOT, int(nbytes * GROWTH)),
                                          dtype=torch.uint8).share_memory_()
        self._sent[spare] = False
        return spare


class SlotReader:
    """The training process's side: turns a :class:`Packed` into the batch (views of its
    slot) and releases slots once nothing holds their views. Its workers' slots are known by
    its :attr:`owner` number; their memory is let go when it is collected."""

    def __init__(self) -> None:
        self.owner = random.getrandbits(62) + 1
        self._lent: list[tuple[torch.Tensor, int, int]] = []  # (memory, seq, idle count)
        weakref.finalize(self, _forget, self.owner)

    def unpack(self, packed: Packed) -> Any:
        memory = packed._slot_memory()
        idle = _use_count(memory)
        batch = _map(packed.skeleton, _is_ref, lambda ref: _view(memory, ref))
        packed._taken = True
        self._lent.append((memory, packed.seq, idle))
        return batch

    def reclaim(self) -> None:
        """Release the slots whose views are all gone."""
        still = []
        for memory, seq, idle in self._lent:
            if _use_count(memory) > idle:
                still.append((memory, seq, idle))
            else:
                _header(memory)[1] = seq
        self._lent = still

    def forget(self) -> None:
        """The workers are gone (or about to be): drop the memory of their slots, but for
        the slots still lent (their views keep it)."""
        self.reclaim()
        _forget(self.owner)


def _forget(owner: int) -> None:
    with _received_lock:
        for key in [k for k in _received if k[0] == owner]:
            del _received[key]


def _view(memory: torch.Tensor, ref: _Ref) -> torch.Tensor:
    nbytes = ref.dtype.itemsize
    for n in ref.shape:
        nbytes *= n
    return memory[ref.offset:ref.offset + nbytes].view(ref.dtype).view(ref.shape)


def _packable(value: Any) -> bool:
    return (isinstance(value, torch.Tensor) and value.device.type == "cpu"
            and value.layout == torch.strided and not value.is_quantized
            and not value.requires_grad and not value.is_complex())


def _map(value: Any, leaf: Callable[[Any], bool], fn: Callable[[Any], Any],
         depth: int = 0) -> Any:
    """``value`` with each part that is a ``leaf`` replaced by ``fn(part)``, looking into
    dicts, lists, tuples and namedtuples (not deeper than a few levels)."""
    if leaf(value):
        return fn(value)
    if depth > 8:
        return value
    if type(value) is dict:
        return {k: _map(v, leaf, fn, depth + 1) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_map(v, leaf, fn, depth + 1) for v in value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(_map(v, leaf, fn, depth + 1) for v in value))
    return value


def _is_ref(value: Any) -> bool:
    return isinstance(value, _Ref)


def _refs_of(skeleton: Any) -> list[_Ref]:
    """The :class:`_Ref` parts of ``skeleton``, in :func:`_map`'s order."""
    refs: list[_Ref] = []
    _map(skeleton, _is_ref, refs.append)
    return refs
