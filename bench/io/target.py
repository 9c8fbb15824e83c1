"""Where a job's files live, and how one I/O reaches them: the one abstract base of targets.

A target's life has two sides. In the process that starts the run it measures and lays out
the files (``existing_size``, ``layout``) and, after every job has finished, removes what must
not stay (``cleanup``). In the job's own process it is opened, serves ``read`` and ``write``
calls, and is closed. So a target is plain picklable data until ``open``.

:func:`make_target` picks the implementation from a job's options: a local path
(:mod:`.target_local`), any fsspec URL (:mod:`.target_fsspec`), a ``tier://`` key through the
store's read path or a configured tier by name (:mod:`.target_store`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from tierstore.redaction import redact

from ..common.errors import BenchError
from .options import JobOptions

__all__ = ["LAYOUT_CHUNK", "BlockingTarget", "Target", "filler", "job_paths", "make_target"]

LAYOUT_CHUNK = 4 * 2**20


def filler(size: int) -> Iterator[bytes]:
    """``size`` bytes of incompressible data (as fio lays out files), in chunks."""
    chunk = os.urandom(min(size, LAYOUT_CHUNK))
    left = size
    while left > 0:
        piece = chunk[:left] if left < len(chunk) else chunk
        yield piece
        left -= len(piece)


class Target(ABC):
    """The files of one job and the I/O on them.

    ``read`` and ``write`` are coroutines: an object store keeps ``iodepth`` requests in flight
    on one event loop. ``blocking`` targets (local files) also offer synchronous calls, which
    the engine runs in one thread per in-flight request, without an event-loop hop per I/O.
    """

    blocking: ClassVar[bool] = False

    def __init__(self, options: JobOptions, paths: Sequence[str]):
        self.options = options
        self.paths = list(paths)

    # -- the starting process ------------------------------------------------------------

    @abstractmethod
    async def existing_size(self, index: int) -> int | None:
        """The size of file ``index`` now, or None when it does not exist."""

    @abstractmethod
    async def layout(self, size: int, *, fill: bool) -> None:
        """Make every file at least ``size`` bytes; ``fill`` writes data (jobs that read)."""

    async def cleanup(self) -> None:
        """After every job: remove what this target must not leave behind (nothing, unless
        a target says otherwise)."""
        return None

    # -- the job process -----------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None:
        """Get ready for I/O (in the job's process, before the clock starts)."""

    @abstractmethod
    async def read(self, index: int, offset: int, length: int) -> int:
        """Read ``length`` bytes of file ``index`` at ``offset``; the bytes read."""

    @abstractmethod
    async def write(self, index: int, offset: int, data: memoryview) -> int:
        """Write ``data`` to file ``index`` at ``offset``; the bytes written."""

    def new_pass(self) -> None:
        """A time-based job begins another pass over its files (fio re-opens them here)."""
        return None

    async def close(self) -> None:
        """Release what ``open`` took (and remove objects written, where required)."""
        return None

    def describe(self) -> dict[str, Any]:
        """What this target is, safe to print (no credentials)."""
        return {"kind": type(self).__name__, "files": [redact(p) for p in self.paths]}


class BlockingTarget(Target):
    """A target with synchronous positional I/O on file descriptors (local files)."""

    blocking = True

    @abstractmethod
    def fileno(self, index: int) -> int:
        """The open file descriptor of file ``index``."""

    @abstractmethod
    def fsync(self, index: int) -> None:
        """Flush file ``index`` to stable storage."""


def job_paths(options: JobOptions, jobnum: int) -> list[str]:
    """The files of clone ``jobnum`` of a job, as fio names them: ``filename`` (a ``:``-list
    for local paths), else ``NAME.JOBNUM.FILENUM`` in ``directory``."""
    if options.filename:
        names = [options.filename] if "://" in options.filename else \
            options.filename.split(":")
    else:
        names = [f"{options.name}.{jobnum}.{i}" for i in range(options.nrfiles)]
    if not options.directory:
        return names
    return [name if "://" in name or name.startswith("/") else
            f"{options.directory.rstrip('/')}/{name}" for name in names]


def make_target(options: JobOptions, jobnum: int) -> Target:
    """The target of clone ``jobnum`` of a job."""
    from .target_fsspec import FsspecTarget  # s3fs and friends load only when used
    from .target_local import LocalTarget
    from .target_store import StoreTarget, TierTarget

    paths = job_paths(options, jobnum)
    if options.tier:
        return TierTarget(options, paths)
    kinds = {_kind(path) for path in paths}
    if len(kinds) > 1:
        raise BenchError(f"job {options.name!r}: files on different kinds of storage: "
                         f"{', '.join(map(redact, paths))}")
    kind = kinds.pop()
    if kind == "tier":
        return StoreTarget(options, paths)
    if kind == "fsspec":
        return FsspecTarget(options, paths)
    if options.endpoint_url or options.storage_options:
        raise BenchError(f"job {options.name!r}: endpoint_url and storage_options apply to "
                         "fsspec URLs such as s3://bucket/key")
    return LocalTarget(options, [p.removeprefix("file://") for p in paths])


def _kind(path: str) -> str:
    if path.startswith("tier://"):
        return "tier"
    if "://" in path and not path.startswith("file://"):
        return "fsspec"
    return "local"
