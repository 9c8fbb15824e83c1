"""The ``tierstore`` command's entry point.

It takes control before the command line's imports (a third of a second on 2 cores), so that
Ctrl-C then is what it is later: one line, ``tierstore: error: interrupted``, exit status 130,
no traceback.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

EXIT_INTERRUPTED = 130


def main() -> None:
    try:
        from .cli import main as run

        status = run()
    except KeyboardInterrupt:
        print("tierstore: error: interrupted", file=sys.stderr)
        status = EXIT_INTERRUPTED
    raise SystemExit(status)
