"""The errors of ``tierstore bench``: a job that cannot run as written."""

from __future__ import annotations

from tierstore.errors import TierstoreError

__all__ = ["BenchError", "TargetError", "UnsupportedOption"]


class BenchError(TierstoreError, ValueError):
    """A benchmark job is malformed or cannot run on its target (exit status 2 from the CLI)."""


class UnsupportedOption(BenchError):
    """A fio option that ``tierstore bench io`` does not implement: never silently ignored."""

    def __init__(self, name: str, where: str = ""):
        at = f" ({where})" if where else ""
        super().__init__(f"unsupported fio option {name!r}{at}: tierstore bench io implements "
                         "a subset of fio's options (see 'tierstore bench io --help')")
        self.name = name


class TargetError(TierstoreError, OSError):
    """A benchmark's files could not be laid out, opened, read or written (exit status 1)."""
