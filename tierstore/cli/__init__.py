"""The ``tierstore`` command line.

::

    tierstore [--config PATH] [-v] [--json] COMMAND [ARGS]

One module per group of commands (:mod:`.objects`, :mod:`.admin`, :mod:`.policies`,
:mod:`.simulate`, :mod:`.daemon`, :mod:`.catalog`; ``bench`` registers its own), the parser
pieces they share in :mod:`.base` and what they print in :mod:`.output`. argparse and rich are
used here only: no library module imports the command line.

Failures are one line on stderr, ``tierstore: error: <message>``, with exit status 2 for bad
usage, 130 for an interrupt and 1 for anything else; ``-v`` adds the traceback. Nothing here
prints storage options, so credentials never reach the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import Any

from ..errors import Terminated, TierstoreError, one_line
from ..telemetry import log_pairs
from .admin import add_admin_commands, add_init_command
from .base import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    PROG,
    Parser,
    add_options,
    version,
)
from .bench.cli import add_bench_commands
from .catalog import add_catalog_command
from .daemon import add_daemon_command
from .objects import (
    add_adopt_command,
    add_listing_commands,
    add_placement_commands,
    add_transfer_commands,
    plan_put,
)
from .output import format_du, format_objects, human
from .policies import add_plan_command, add_preload_command
from .report import add_report_command
from .simulate import add_simulate_command

__all__ = ["build_parser", "format_du", "format_objects", "human", "main", "plan_put"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Tiered storage for machine-learning training.")
    add_options(parser, data=True, top=True)
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    sub = parser.add_subparsers(metavar="COMMAND", required=True)
    for add in (add_init_command, add_transfer_commands, add_adopt_command,
                add_listing_commands,
                add_placement_commands, add_admin_commands,
                add_plan_command, add_preload_command, add_daemon_command, add_bench_commands,
                add_simulate_command, add_catalog_command, add_report_command):
        add(sub)
    return parser


class _Formatter(logging.Formatter):
    """``tierstore: warning: <message> key=value ...`` (the record's fields, as a daemon's
    move has), like the error lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        pairs = log_pairs(getattr(record, "fields", {}))
        return f"{PROG}: {record.levelname.lower()}: {record.getMessage()} {pairs}".rstrip()


def _configure_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger = logging.getLogger(PROG)  # never the root logger: botocore's DEBUG shows headers
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if not verbose else
                    logging.INFO if verbose == 1 else logging.DEBUG)
    logger.propagate = False


def _fail(exc: BaseException, verbose: int, status: int) -> int:
    if verbose:
        traceback.print_exception(exc)
    print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
    return status


def _silence_stdout() -> None:
    """After a closed pipe (``tierstore ls | head``), let the interpreter exit quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


class _SigtermAsInterrupt:
    """SIGTERM (``kill``, ``timeout``, a scheduler stopping a job) taken as Ctrl-C is: what is
    under way rolls back or cleans up (a server a benchmark started for its run is stopped)
    before the command exits. It is handed on as SIGINT, so that ``asyncio.run`` cancels its
    main task as it does on Ctrl-C (an exception raised by the handler itself may land in a
    finalizer or a task and be lost); where SIGINT is ignored (a shell's background job),
    the handler does what ``asyncio.run``'s would, or raises outside one.
    A command that stops gracefully on SIGTERM (the daemon) sets its own handler meanwhile;
    the one before is put back after."""

    def __init__(self) -> None:
        self.came = False
        self._before: Any = None

    def __enter__(self) -> _SigtermAsInterrupt:
        with contextlib.suppress(ValueError):  # not the main thread: not this call's to handle
            self._before = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._before is not None:
            signal.signal(signal.SIGTERM, self._before)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.came = True
        if callable(signal.getsignal(signal.SIGINT)):
            signal.raise_signal(signal.SIGINT)
            return
        # SIGINT ignored (a shell's background job), so asyncio.run took no Ctrl-C handler:
        # do what its handler does, where an asyncio.run is under way (an exception raised
        # here would land in whichever task runs, and be reported as that task's)
        running = _asyncio_run_under(frame)
        if running is None:
            raise Terminated
        runner, main_task = running
        runner._on_sigint(signum, frame, main_task)


def _asyncio_run_under(frame: FrameType | None) -> tuple[Any, asyncio.Task[Any]] | None:
    """The :class:`asyncio.Runner` and its main task of the ``asyncio.run`` that ``frame``
    (the main thread's, interrupted by a signal) runs under, if any."""
    while frame is not None:
        if frame.f_code is asyncio.Runner.run.__code__:
            return frame.f_locals["self"], frame.f_locals["task"]
        frame = frame.f_back
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tierstore`` with ``argv`` (default: the process's arguments); the exit status."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    sigterm = _SigtermAsInterrupt()
    try:
        with sigterm:
            status: int = args.run(args)
            sys.stdout.flush()
        return status
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        # asyncio.run raises the interrupt as CancelledError where its main task was also
        # cancelled by other means (a task group whose task failed with it)
        outcome = getattr(args, "outcome", None)  # what a command found it had done
        kind = Terminated if sigterm.came else KeyboardInterrupt
        if outcome is not None or not isinstance(exc, kind):
            exc = kind() if outcome is None else kind(outcome)
        return _fail(exc, args.verbose, EXIT_TERMINATED if sigterm.came else EXIT_INTERRUPTED)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (TierstoreError, OSError, ValueError) as exc:
        return _fail(exc, args.verbose, EXIT_FAILURE)
