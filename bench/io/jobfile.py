"""fio's two ways of writing jobs: job files (INI) and command lines.

A job file has an optional ``[global]`` section and one section per job; lines are
``option=value`` or a bare ``option`` (a flag), ``#`` and ``;`` start comments, and ``${VAR}``
is replaced by the environment variable. On the command line, options before the first
``--name`` are global and each ``--name=NAME`` starts a job; positional arguments are job
files. Options are ``--option=value``, ``--option value`` or a bare ``--flag``.

Precedence, lowest first: the job file's ``[global]``, the command line's global options, then
the job's own options. Every option name is checked here, with its file and line, so a typo
is an error before anything runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..common.errors import BenchError, UnsupportedOption
from .options import BOOL_OPTIONS, KNOWN_OPTIONS, JobOptions, canonical_name, job_options

__all__ = ["OUTPUT_FORMATS", "Invocation", "JobSection", "parse_command_line",
           "parse_job_file"]

OUTPUT_FORMATS = ("normal", "json", "json+")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_COMMAND_ONLY = {"output-format", "output", "help", "version", "results"}


@dataclass(frozen=True)
class JobSection:
    """One job as written: its name and its own options (text, in order)."""

    name: str
    options: dict[str, str]


@dataclass
class Invocation:
    """Everything a ``tierstore bench io`` command line asks for."""

    global_options: dict[str, str] = field(default_factory=dict)
    jobs: list[JobSection] = field(default_factory=list)
    output_format: str = "normal"
    output: str | None = None
    results: str | None = None  # tierstore's own: the results folder, or "none"
    help: bool = False
    version: bool = False

    def job_options(self) -> list[JobOptions]:
        """Each job's validated options, global options merged in."""
        if not self.jobs:
            raise BenchError("no jobs: give --name=NAME and options, or a job file")
        return [job_options(job.name, {**self.global_options, **job.options}, job.options)
                for job in self.jobs]


def _check_name(name: str, where: str) -> str:
    canonical = canonical_name(name)
    if canonical not in KNOWN_OPTIONS:
        raise UnsupportedOption(name, where)
    return canonical


def _expand(text: str, where: str) -> str:
    def value(match: re.Match[str]) -> str:
        if match.group(1) not in os.environ:
            raise BenchError(f"{where}: environment variable {match.group(1)} is not set")
        return os.environ[match.group(1)]

    return _ENV.sub(value, text)


def parse_job_file(text: str, source: str) -> tuple[dict[str, str], list[JobSection]]:
    """(global options, jobs) of a job file's text."""
    global_options: dict[str, str] = {}
    jobs: list[JobSection] = []
    current: dict[str, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{source}:{number}"
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise BenchError(f"{where}: malformed section header {line!r}")
            section = line[1:-1].strip()
            if section == "global":
                current = global_options
            else:
                jobs.append(JobSection(section, {}))
                current = jobs[-1].options
            continue
        if current is None:
            raise BenchError(f"{where}: option {line!r} outside any [section]")
        name, sep, value = (part.strip() for part in line.partition("="))
        name = _check_name(name, where)
        if name == "name":
            raise BenchError(f"{where}: a job's name is its [section] header")
        current[name] = _expand(value, where) if sep else _flag(name, where)
    return global_options, jobs


def _flag(name: str, where: str) -> str:
    if name not in BOOL_OPTIONS:
        raise BenchError(f"{where}: option {name!r} needs a value ({name}=...)")
    return "1"


def _split(args: Sequence[str], i: int) -> tuple[str, str | None, int]:
    """(name, value or None, next index) of the option at ``args[i]``."""
    body = args[i][2:]
    name, sep, value = body.partition("=")
    if sep:
        return name, value, i + 1
    flag = canonical_name(name) in BOOL_OPTIONS or name in ("help", "version")
    if not flag and i + 1 < len(args) and not args[i + 1].startswith("--"):
        return name, args[i + 1], i + 2
    return name, None, i + 1


def parse_command_line(args: Sequence[str]) -> Invocation:
    """An :class:`Invocation` from ``tierstore bench io``'s arguments."""
    out = Invocation()
    cmdline_globals: dict[str, str] = {}
    file_globals: dict[str, str] = {}
    current = cmdline_globals
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            out.help, i = True, i + 1
            continue
        if arg.startswith("-") and not arg.startswith("--"):
            raise BenchError(f"unknown option {arg!r}: fio's options are --option=value")
        if not arg.startswith("--"):
            found_globals, found_jobs = parse_job_file(_read(arg), arg)
            file_globals.update(found_globals)
            out.jobs.extend(found_jobs)
            i += 1
            continue
        name, value, i = _split(args, i)
        if name in _COMMAND_ONLY:
            _command_option(out, name, value)
            continue
        name = _check_name(name, "command line")
        if value is None:
            value = _flag(name, "command line")
        if name == "name":
            out.jobs.append(JobSection(value, {"name": value}))
            current = out.jobs[-1].options
        else:
            current[name] = value
    out.global_options = {**file_globals, **cmdline_globals}
    return out


def _command_option(out: Invocation, name: str, value: str | None) -> None:
    if name == "help":
        out.help = True
    elif name == "version":
        out.version = True
    elif value is None:
        raise BenchError(f"--{name} needs a value (--{name}=...)")
    elif name == "output":
        out.output = value
    elif name == "results":
        out.results = value
    elif value not in OUTPUT_FORMATS:
        raise UnsupportedOption(f"output-format={value}", f"supported: "
                                f"{', '.join(OUTPUT_FORMATS)}")
    else:
        out.output_format = value


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"{path}: cannot read job file ({exc.strerror})") from None
