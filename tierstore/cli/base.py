"""What every command shares: the parser's global options, a command's registration, the
store a command runs against, and the one-line errors of a command that cannot go on."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from ..config import Config, load_config
from ..errors import ConfigError, TierstoreError
from ..store import Store
from ..units import parse_duration, parse_size

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_TERMINATED",
           "EXIT_USAGE", "PROG",
           "Command", "CommandError", "Parser", "add_options", "argument", "command", "duration",
           "positive_duration", "refuse_absent", "size", "version", "with_store"]

PROG = "tierstore"

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 1, 2, 130, 141
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended

Command = Callable[[Store, argparse.Namespace], Awaitable[int]]
T = TypeVar("T", int, float)


class CommandError(TierstoreError):
    """A command cannot do what it was asked (exit status 1)."""


class Parser(argparse.ArgumentParser):
    """Usage errors as one line: ``tierstore: error: <message> (see '<prog> --help')``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def add_options(parser: argparse.ArgumentParser, *, data: bool, top: bool = False) -> None:
    """The global options, accepted before or after the command."""
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    parser.add_argument("--config", metavar="PATH", default=default(None),
                        help="config file (default: $TIERSTORE_CONFIG, else "
                             "$TIERSTORE_HOME/tierstore.toml, else the embedded default)")
    parser.add_argument("-v", "--verbose", action="count", default=default(0),
                        help="log more, and show tracebacks of errors")
    if data:
        parser.add_argument("--json", action="store_true", default=default(False),
                            help="machine-readable output")


def command(sub: Any, name: str, run: Callable[[argparse.Namespace], int], help: str, *,
             data: bool = False) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
    add_options(parser, data=data)
    parser.set_defaults(run=run)
    return parser


def with_store(command: Command, *, recover: bool = True, reads_only: bool = False
                ) -> Callable[[argparse.Namespace], int]:
    """Run ``command`` on one event loop against the configured store, closed afterwards.
    ``reads_only``: a command that only looks, which never makes a store where there is none
    (an embedded catalog that does not exist is an error that says where it looked)."""

    async def session(args: argparse.Namespace) -> int:
        config = load_config(args.config)
        if reads_only:
            refuse_absent(config)
        store = await Store.connect(config, recover=recover)
        try:
            return await command(store, args)
        finally:
            await store.close()

    return lambda args: asyncio.run(session(args))


def refuse_absent(config: Config) -> None:
    if (path := config.sqlite_path) is not None and not path.exists():
        raise CommandError(f"no store at {config.home} (its catalog {path} does not exist): "
                           "put something first, or pick a store with --config or "
                           "$TIERSTORE_HOME")


def version() -> str:
    from tierstore import __version__

    return __version__


def argument(parse: Callable[[str], T], *, positive: bool = False) -> Callable[[str], T]:
    """``parse`` (a size, a duration: :mod:`tierstore.units`) as an argparse ``type``: what
    it refuses is a usage error, in its words; with ``positive``, 0 is refused too."""

    def convert(text: str) -> T:
        try:
            value = parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None
        if positive and not value > 0:
            raise argparse.ArgumentTypeError(f"expected more than 0, got {text!r}")
        return value

    return convert


duration = argument(parse_duration)  # 90s, 5m, 12h, 30d, 2w or seconds, as argparse types
positive_duration = argument(parse_duration, positive=True)
size = argument(parse_size)  # 500MiB, 100GB or bytes
