"""Where benchmark results go: one JSON document per run, in a results folder.

Every tierstore benchmark (``io``, ``loader``, ``migrate``, ``catalog``, ``tiers``, ...)
describes one run as a :func:`result_document`: what was measured (``benchmark``), the exact
command with credentials hidden, when, the machine it ran on, and its ``results`` list, plus
whatever the benchmark adds. :func:`save_result` writes it atomically under a results folder
(``--results DIR``, else ``$TIERSTORE_RESULTS``, else ``./bench-results``), named by benchmark
and time, so ``tierstore bench report DIR/*.json`` can compare runs later.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tierstore import __version__
from tierstore.redaction import redact

from .machine import describe_machine

__all__ = ["NO_RESULTS", "RESULTS_ENV", "load_result", "result_document", "results_dir",
           "safe_command", "save_and_say", "save_result", "write_json"]

RESULTS_ENV = "TIERSTORE_RESULTS"
NO_RESULTS = ("none", "no", "off", "0")  # --results=none: save nothing
_DEFAULT_DIR = "bench-results"


def results_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The folder results are saved in: ``explicit``, else ``$TIERSTORE_RESULTS``, else
    ``./bench-results``."""
    return Path(explicit or os.environ.get(RESULTS_ENV) or _DEFAULT_DIR)


def safe_command(argv: Sequence[str] | None = None) -> str:
    """The command line (default: this process's), with credentials hidden (``user:password@``
    parts of URLs, ``--secret=...``-like arguments: :func:`~tierstore.redaction.redact`)."""
    args = list(sys.argv if argv is None else argv)
    if args and args[0].endswith(("/tierstore", "__main__.py")):
        args[0] = "tierstore"
    return " ".join(redact(a) for a in args)


def result_document(benchmark: str, results: list[dict[str, Any]], *,
                    argv: Sequence[str] | None = None, command: str | None = None,
                    disks: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
    """One run of ``benchmark``: its ``results`` with the command, time and machine.

    ``command`` is the command as already made safe to show; else ``argv`` (default: this
    process's arguments) goes through :func:`safe_command`."""
    now = time.time()
    return {"benchmark": benchmark, "tierstore_version": __version__,
            "command": command if command is not None else safe_command(argv),
            "timestamp": int(now),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "machine": describe_machine(disks), **extra, "results": results}


def save_result(document: dict[str, Any], directory: str | os.PathLike[str] | None = None
                ) -> Path:
    """Write ``document`` as ``<benchmark>-<UTC time>.json`` under :func:`results_dir`
    (created if missing), atomically; returns the path."""
    folder = results_dir(directory)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(document.get("timestamp")))
    path = folder / f"{document['benchmark']}-{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{document['benchmark']}-{stamp}-{n}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def save_and_say(document: dict[str, Any], directory: str | None = None) -> Path | None:
    """What every benchmark does with its document: :func:`save_result` (nothing when
    ``directory`` is one of :data:`NO_RESULTS`), saying where on stderr; a folder that cannot
    be written is a warning, not a failed benchmark."""
    if directory is not None and directory.lower() in NO_RESULTS:
        return None
    try:
        path = save_result(document, directory)
    except OSError as exc:
        print(f"tierstore: warning: result not saved in {results_dir(directory)}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return None
    print(f"tierstore: result saved to {path}", file=sys.stderr)
    return path


def write_json(document: dict[str, Any], json_file: str | None) -> None:
    """``--json FILE``: the document as indented JSON into FILE, or on stdout for ``-``
    (nothing for None)."""
    if not json_file:
        return
    text = json.dumps(document, indent=2) + "\n"
    if json_file == "-":
        sys.stdout.write(text)
    else:
        Path(json_file).write_text(text, encoding="utf-8")


def load_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A saved result; ValueError naming the file if it is not one."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable JSON result ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("results"), list):
        raise ValueError(f"{path}: not a tierstore benchmark result (no 'results' list)")
    return document
