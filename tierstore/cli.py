"""The ``tierstore`` command line.

::

    tierstore [--config PATH] [-v] [--json] COMMAND [ARGS]

Each store command is one coroutine, ``_cmd_<name>(store, args) -> exit status``, run on one
event loop against the async :class:`~tierstore.store.Store`; ``init`` and ``demo`` need no
open store. Bulk commands keep a few objects in flight and show progress on a terminal only.

Failures are one line on stderr, ``tierstore: error: <message>``, with exit status 2 for bad
usage, 130 for an interrupt and 1 for anything else; ``-v`` adds the traceback. Nothing here
prints storage options, so credentials never reach the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import os
import posixpath
import stat
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from ._progress import Transfer, each, put_files
from .bench.cli import add_bench_commands
from .catalog.command import add_catalog_command
from .config import CONFIG_NAME, CONFIG_TEMPLATE, Config, config_from_toml, load_config
from .daemon import add_daemon_command
from .errors import ObjectNotFound, TierstoreError
from .keys import validate_key
from .policies.command import add_plan_command, add_preload_command
from .policies.simulate import add_simulate_command
from .redaction import redact
from .store import AuditReport, ObjectInfo, RecoveryReport, Store, TierReport

__all__ = ["build_parser", "format_du", "format_objects", "human", "main", "plan_put"]

PROG = "tierstore"
EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 1, 2, 130, 141
Command = Callable[[Store, argparse.Namespace], Awaitable[int]]


class CommandError(TierstoreError):
    """A command cannot do what it was asked (exit status 1)."""


# -- output helpers ---------------------------------------------------------------------------


def human(size: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``: binary units, one decimal from KiB up."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]],
           right: frozenset[int] = frozenset()) -> str:
    """Rows as aligned plain-text columns (never truncated; easy to grep)."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(headers), *map(line, rows)])


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2))


_OBJECT_COLUMNS = ["SIZE", "TIERS", "PINNED", "READS", "KEY"]
_OBJECT_RIGHT = frozenset({0, 3})
_CLASS_ORDER = ("hot", "warm", "cold", "unknown")


def _tiers(info: ObjectInfo) -> list[str]:
    """The tiers of an object's ready replicas, hottest first."""
    ready = sorted((r for r in info.replicas if r.state == "ready"),
                   key=lambda r: _CLASS_ORDER.index(r.tier_class))
    return [r.tier for r in ready]


def _object_row(info: ObjectInfo) -> list[str]:
    return [human(info.size), ",".join(_tiers(info)) or "-", info.pinned or "-",
            str(info.access.count if info.access else 0), info.key]


def format_objects(infos: Sequence[ObjectInfo]) -> str:
    """What lives where: size, ready tiers, pin and reads of each object, key last."""
    return _table(_OBJECT_COLUMNS, [_object_row(i) for i in infos], _OBJECT_RIGHT)


def format_du(reports: Sequence[TierReport]) -> str:
    """Per tier: objects and bytes held against capacity and watermarks."""
    rows = [[r.tier, r.tier_class, str(r.objects), human(r.bytes), human(r.capacity),
             "-" if r.fill is None else f"{r.fill:.1%}",
             f"{r.high_watermark:.0%}/{r.low_watermark:.0%}", redact(r.url)]
            for r in reports]
    return _table(["TIER", "CLASS", "OBJECTS", "SIZE", "CAPACITY", "FILL", "HIGH/LOW", "URL"],
                  rows, right=frozenset({2, 3, 4, 5}))


def _info_json(info: ObjectInfo) -> dict[str, Any]:
    return {**dataclasses.asdict(info), "tiers": _tiers(info)}


def _format_stat(info: ObjectInfo) -> str:
    access = info.access
    reads = (f"{access.count} (last {_when(access.last_access)}, score {access.score:.2f})"
             if access else "0")
    head = [("key", info.key), ("size", f"{human(info.size)} ({info.size} bytes)"),
            ("checksum", info.checksum), ("created", _when(info.created)),
            ("pinned", info.pinned or "-"), ("reads", reads)]
    # RANK and SCORE (a cost in ms, lower reads first) are how this process ranks the ready
    # replicas now, the first read first; LAT/P95 what it measured of each endpoint; HEALTH
    # its circuit breaker, in words.
    ranked = sorted(info.replicas, key=lambda r: (r.rank is None, r.rank or 0))
    replicas = _table(
        ["TIER", "CLASS", "SITE", "DISTANCE", "STATE", "RANK", "SCORE", "LAT/P95", "HEALTH"],
        [[r.tier, r.tier_class, r.site, r.distance, r.state, _or_dash(r.rank),
          "-" if r.score_ms is None else f"{r.score_ms:.1f}ms",
          "-" if r.latency_ms is None else f"{r.latency_ms:.1f}/{_or_dash(r.p95_ms, '.1f')}ms",
          _HEALTH.get(r.health, r.health)] for r in ranked])
    lines = [f"{name + ':':<10}{value}" for name, value in head]
    return "\n".join([*lines, "replicas:", *("  " + line for line in replicas.splitlines())])


_HEALTH = {"closed": "healthy", "open": "failing: skipped for now",
           "half-open": "on probation: the next read tries it"}


def _or_dash(value: float | None, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


# -- choosing objects and files ---------------------------------------------------------------


async def _under(store: Store, prefix: str) -> list[str]:
    """The key ``prefix`` and every key in the folder ``prefix/`` (all keys for ``""``)."""
    name = prefix.rstrip("/")
    if not name:
        return await store.find("")
    keys = await store.find(name + "/")
    if await store.exists(name):
        keys.insert(0, name)
    if not keys:
        raise ObjectNotFound(prefix, "nothing at or under this prefix")
    return keys


async def _objects(store: Store, names: Sequence[str], recursive: bool) -> list[ObjectInfo]:
    """Every object named (folders too, with ``recursive``); all checked before any work."""
    keys: list[str] = []
    for name in names:
        keys += await _under(store, name) if recursive else [name]
    return [await store.stat(key) for key in dict.fromkeys(keys)]


def _walk(folder: Path, rel: str = "", above: frozenset[tuple[int, int]] = frozenset()
          ) -> Iterator[tuple[Path, str]]:
    """Files under ``folder`` and their ``/`` paths, following symbolic links to files and
    folders as ``aws s3 sync`` and ``gsutil cp -r`` do: an object store holds no links, and
    a dataset folder often links in shards kept elsewhere, so skipping them would store an
    incomplete dataset. A link that leads back to a folder above it (a cycle), a broken link
    and anything not a regular file or folder are refused, naming them, before anything is
    put."""
    here = folder.stat()
    above = above | {(here.st_dev, here.st_ino)}
    with os.scandir(folder) as found:
        entries = sorted(found, key=lambda entry: entry.name)
    for entry in entries:
        path, name = Path(entry.path), _join(rel, entry.name)
        try:
            info = entry.stat()  # of what a link leads to
        except FileNotFoundError:
            raise CommandError(f"{path}: a broken symbolic link{_leads_to(path)}") from None
        if stat.S_ISDIR(info.st_mode):
            if (info.st_dev, info.st_ino) in above:
                raise CommandError(f"{path}: a link to a folder it is in{_leads_to(path)}, "
                                   "a cycle")
            yield from _walk(path, name, above)
        elif stat.S_ISREG(info.st_mode):
            yield path, name
        else:
            raise CommandError(f"{path}: not a regular file or folder")


def _leads_to(path: Path) -> str:
    with contextlib.suppress(OSError):
        return f" (to {os.readlink(path)})"
    return ""


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def plan_put(sources: Sequence[str], dest: str, *, recursive: bool = True
             ) -> list[tuple[Path, str]]:
    """(local file, key) for each file to put.

    A folder's files go to ``dest/<path in the folder>`` (only ``recursive``: else a folder
    is refused, as ``cp`` does); a file goes to ``dest`` itself when it is the only source and
    ``dest`` does not end in ``/``, else to ``dest/<file name>``. ``""``, ``.`` or ``/`` as
    ``dest`` is the top of the store.
    """
    prefix = "" if dest.strip("/") in ("", ".") else dest.rstrip("/")
    as_key = len(sources) == 1 and bool(prefix) and not dest.endswith("/")
    pairs: list[tuple[Path, str]] = []
    for source in map(Path, sources):
        if source.is_dir() and not recursive:
            raise CommandError(f"{source} is a folder: use -r")
        if source.is_dir():
            pairs += [(path, _join(prefix, rel)) for path, rel in _walk(source)]
        elif source.is_file():
            pairs.append((source, prefix if as_key else _join(prefix, source.name)))
        elif source.exists():
            raise CommandError(f"{source}: not a regular file or folder")
        else:
            raise FileNotFoundError(errno.ENOENT, "no such file or folder", str(source))
    return _checked_keys(pairs)


def _checked_keys(pairs: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    if not pairs:
        raise CommandError("nothing to put: the folders given hold no files")
    seen: dict[str, Path] = {}
    for path, key in pairs:
        if (first := seen.setdefault(validate_key(key), path)) is not path:
            raise CommandError(f"{first} and {path} would both be stored as {key!r}")
    return pairs


async def _refuse_existing(store: Store, keys: Sequence[str]) -> None:
    taken = [key for key in keys if await store.exists(key)]
    if taken:
        more = f" (and {_plural(len(taken) - 1, 'other')})" if len(taken) > 1 else ""
        raise CommandError(f"object exists: {taken[0]!r}{more}; pass --overwrite to replace")


async def _refuse_overfill(store: Store, pairs: Sequence[tuple[Path, str]], tier: str) -> None:
    """Refuse files that together would take ``tier`` past its capacity before one is put
    (the store checks each put again as it is written)."""
    room = await store.capacity.room(tier)
    if room is None:
        return
    need = 0
    for path, key in pairs:
        record = store.catalog.get(key)
        replaced = record.size if record is not None and record.on(tier) else None
        need += path.stat().st_size - (replaced or 0)
    if need > room:
        capacity = store.tier(tier).config.capacity
        raise CommandError(f"{_plural(len(pairs), 'file')} ({human(need)}) would take tier "
                           f"{tier!r} past its capacity ({human(room)} of {human(capacity)} "
                           "free); nothing was put")


# -- commands ---------------------------------------------------------------------------------


def _cmd_init(args: argparse.Namespace) -> int:
    home = Path(args.home or os.environ.get("TIERSTORE_HOME") or ".tierstore").absolute()
    target = home / CONFIG_NAME
    if target.exists() and not args.force:
        raise CommandError(f"{target} exists; pass --force to overwrite it")
    text = CONFIG_TEMPLATE.format(home=json.dumps(str(home))[1:-1])  # a TOML-escaped string
    config_from_toml(text, source=str(target))  # what we write must load
    home.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{CONFIG_NAME}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, target)
    print(f"wrote {target}")
    if home != Path(os.environ.get("TIERSTORE_HOME") or ".tierstore").absolute():
        print(f"use it with: export TIERSTORE_HOME={home}   (or --config {target})")
    return 0


async def _cmd_put(store: Store, args: argparse.Namespace) -> int:
    pairs = plan_put(args.sources, args.dest, recursive=args.recursive)
    tier = store.tier(args.tier or store.config.default_tier).name
    if not args.overwrite:
        await _refuse_existing(store, [key for _, key in pairs])
    await _refuse_overfill(store, pairs, tier)
    # what an overwrite replaces (without --overwrite nothing is there: refused above)
    before = {key: _content(store, key) for _, key in pairs} if args.overwrite else {}
    try:
        infos = await put_files(store, pairs, tier=tier, overwrite=args.overwrite)
    except (asyncio.CancelledError, KeyboardInterrupt):
        # what Ctrl-C left: each object is all there or not at all, and it may have landed
        # after its bytes were committed; say which, as the catalog has it now
        saved = [key for _, key in pairs
                 if _content(store, key) not in (None, before.get(key))]
        args.outcome = _saved_line(saved, len(pairs))
        raise
    what = repr(infos[0].key) if len(infos) == 1 else _plural(len(infos), "object")
    print(f"put {what} ({human(sum(i.size for i in infos))}) on tier {tier}")
    return 0


def _content(store: Store, key: str) -> tuple[int | None, str | None] | None:
    """What ``key`` holds now (size and checksum of a ready object), None if nothing."""
    record = store.catalog.get(key)
    return (record.size, record.checksum) if record is not None and record.ready else None


def _saved_line(saved: Sequence[str], total: int) -> str:
    if not saved:
        return "nothing was saved (what was being written was rolled back)"
    what = repr(saved[0]) if len(saved) == 1 else _plural(len(saved), "object")
    rest = "" if len(saved) == total else \
        f"; the other {total - len(saved)} were not (rolled back, or never begun)"
    return f"{what} {'was' if len(saved) == 1 else 'were'} saved whole before it{rest}"


async def _cmd_adopt(store: Store, args: argparse.Namespace) -> int:
    tier = store.tier(args.tier).name
    if args.jobs < 1:
        raise CommandError(f"--jobs must be at least 1, not {args.jobs}")
    if args.index:  # before any work: the index is the loader's (MissingExtra without it)
        from .loader.index import awrite_index
    with contextlib.ExitStack() as stack:
        shown: list[Transfer] = []

        def planned(nbytes: int, files: int) -> None:
            shown.append(stack.enter_context(Transfer(f"adopt into {tier}", nbytes, files)))

        report = await store.adopt(args.prefix, tier, jobs=args.jobs, planned=planned,
                                   hashed=lambda n: shown[0].file_done(n))
    keys = [key for key, _ in report.adopted]
    if args.pin:
        for key in keys:
            await store.pin(key, tier)
    index: dict[str, Any] | None = None
    if args.index and (keys or report.known):
        written = await awrite_index(store, args.prefix.rstrip("/"), tier=tier,
                                     overwrite=True)
        index = {"key": f"{written.prefix}/index.json", "shards": len(written.shards)}
    if args.json:
        _print_json({**dataclasses.asdict(report), "bytes": report.bytes, "pinned": args.pin,
                     "index": index})
    else:
        print(f"adopted {_plural(len(keys), 'object')} ({human(report.bytes)}) on tier {tier}"
              f"{', pinned there' if args.pin and keys else ''}; {report.known} adopted before")
        for key, _ in report.changed:
            print(f"changed {key}: written over since it was adopted; its new content taken "
                  "in, copies of the old removed")
        for key in report.vanished:
            print(f"vanished {key}: its file is gone; the object removed")
        if index is not None:
            print(f"indexed {_plural(index['shards'], 'shard')}: {index['key']}")
        for path, why in report.refused:
            print(f"refused {path}: {why}", file=sys.stderr)
    return 1 if report.refused else 0


def _get_targets(infos: Sequence[ObjectInfo], name: str, dest: str | None
                 ) -> tuple[dict[str, Path], Path]:
    """Where each object goes, and the file or folder to name: one object to a file (or
    into a folder that exists), a prefix into a folder (default: the prefix's last name)."""
    prefix = name.strip("/")
    if len(infos) == 1 and infos[0].key == prefix:
        target = Path(dest or posixpath.basename(prefix))
        target = target / posixpath.basename(prefix) if target.is_dir() else target
        return {prefix: target}, target
    root = Path(dest or posixpath.basename(prefix) or ".")
    return {i.key: root / i.key[len(prefix):].lstrip("/") for i in infos}, root


async def _cmd_get(store: Store, args: argparse.Namespace) -> int:
    infos = await _objects(store, [args.key], args.recursive)
    targets, where = _get_targets(infos, args.key, args.dest)

    async def get(info: ObjectInfo) -> None:
        targets[info.key].parent.mkdir(parents=True, exist_ok=True)
        await store.get(info.key, targets[info.key])

    total = await each("get", infos, get)
    print(f"got {_plural(len(infos), 'object')} ({human(total)}) into {where}")
    return 0


async def _cmd_ls(store: Store, args: argparse.Namespace) -> int:
    if args.recursive:
        entries = [{"name": key, "type": "file"} for key in await _under(store, args.prefix)]
    else:
        entries = await store.ls(args.prefix)
    files = [e["name"] for e in entries if e["type"] == "file"]
    infos = {k: await store.stat(k) for k in files} if args.long or args.json else {}
    if not entries and not args.json:
        return 0
    if args.json:
        _print_json([{"type": "file", **_info_json(infos[e["name"]])} if e["type"] == "file" else
                     {"key": e["name"] + "/", "type": "directory", "size": e["size"]}
                     for e in entries])
    elif args.long:
        _print_long(entries, infos)
    else:
        print("\n".join(e["name"] + ("/" if e["type"] == "directory" else "") for e in entries))
    return 0


def _print_long(entries: Sequence[dict[str, Any]], infos: dict[str, ObjectInfo]) -> None:
    rows = [_object_row(infos[e["name"]]) if e["type"] == "file" else
            [human(e["size"]), "-", "-", "-", e["name"] + "/"] for e in entries]
    print(_table(_OBJECT_COLUMNS, rows, _OBJECT_RIGHT))


async def _cmd_stat(store: Store, args: argparse.Namespace) -> int:
    info = await store.stat(args.key)
    if args.json:
        _print_json(_info_json(info))
    else:
        print(_format_stat(info))
    return 0


async def _cmd_du(store: Store, args: argparse.Namespace) -> int:
    reports = await store.usage()
    if args.json:
        _print_json([{**dataclasses.asdict(r), "url": redact(r.url), "fill": r.fill}
                     for r in reports])
    else:
        print(format_du(reports))
    return 0


async def _cmd_mv(store: Store, args: argparse.Namespace) -> int:
    tier = store.tier(args.tier).name
    infos = await _objects(store, args.keys, args.recursive)
    total = await each(f"move to {tier}", infos, lambda info: store.move(info.key, tier))
    print(f"moved {_plural(len(infos), 'object')} ({human(total)}) to tier {tier}")
    return 0


async def _cmd_pin(store: Store, args: argparse.Namespace) -> int:
    info = await store.pin(args.key, args.tier)
    print(f"pinned {info.key!r} to tier {info.pinned} (on {', '.join(info.tiers)})")
    return 0


async def _cmd_unpin(store: Store, args: argparse.Namespace) -> int:
    info = await store.unpin(args.key)
    print(f"unpinned {info.key!r} (on {', '.join(info.tiers)})")
    return 0


async def _cmd_rm(store: Store, args: argparse.Namespace) -> int:
    infos = await _objects(store, args.keys, args.recursive)
    total = await each("remove", infos, lambda info: store.rm(info.key))
    print(f"removed {_plural(len(infos), 'object')} ({human(total)})")
    return 0


def _recovery_json(report: RecoveryReport) -> dict[str, Any]:
    return {"rolled_back": [{"key": k, "tier": t} for k, t in report.rolled_back],
            "finished": [{"key": k, "tier": t} for k, t in report.finished],
            "skipped": report.skipped}


async def _cmd_recover(store: Store, args: argparse.Namespace) -> int:
    report = await store.recover()
    if args.json:
        _print_json(_recovery_json(report))
        return 0
    copies = _plural(len(report.rolled_back), "interrupted copy", "interrupted copies")
    print(f"rolled back {copies}, finished {_plural(len(report.finished), 'removal')}, left "
          f"{_plural(report.skipped, 'replica')} to live processes")
    for key, tier in report.rolled_back:
        print(f"  rolled back {key} on {tier}")
    for key, tier in report.finished:
        print(f"  removed {key} from {tier}")
    return 0


def _audit_json(report: AuditReport, deep: bool) -> dict[str, Any]:
    return {"ok": report.ok, "deep": deep,
            "orphans": [{"tier": t, "path": p} for t, p in report.orphans],
            "missing": [{"key": k, "tier": t, "why": w} for k, t, w in report.missing],
            "pending": report.pending}


def _format_audit(report: AuditReport, deep: bool) -> str:
    lines = [f"orphan: {tier}: {path}" for tier, path in report.orphans]
    lines += [f"missing: {key} on {tier}: {why}" for key, tier, why in report.missing]
    if report.pending:
        lines.append(f"pending: {_plural(report.pending, 'replica')} copying or deleting "
                     "(`tierstore recover` finishes work of processes that died)")
    check = "sizes and checksums" if deep else "sizes"
    problems = len(report.orphans) + len(report.missing) + bool(report.pending)
    lines.append(f"ok ({check} checked)" if report.ok else f"{_plural(problems, 'problem')} "
                                                           f"found ({check} checked)")
    return "\n".join(lines)


async def _cmd_fsck(store: Store, args: argparse.Namespace) -> int:
    report = await store.audit(deep=args.deep)
    if args.json:
        _print_json(_audit_json(report, args.deep))
    else:
        print(_format_audit(report, args.deep))
    return 0 if report.ok else EXIT_FAILURE


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run  # numpy and pyarrow load only for the demo

    run(args.config)
    return 0


# -- the parser -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line: ``tierstore: error: <message> (see '<prog> --help')``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def _options(parser: argparse.ArgumentParser, *, data: bool, top: bool = False) -> None:
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


def _command(sub: Any, name: str, run: Callable[[argparse.Namespace], int], help: str, *,
             data: bool = False) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
    _options(parser, data=data)
    parser.set_defaults(run=run)
    return parser


def _with_store(command: Command, *, recover: bool = True, reads_only: bool = False
                ) -> Callable[[argparse.Namespace], int]:
    """Run ``command`` on one event loop against the configured store, closed afterwards.
    ``reads_only``: a command that only looks, which never makes a store where there is none
    (an embedded catalog that does not exist is an error that says where it looked)."""

    async def session(args: argparse.Namespace) -> int:
        config = load_config(args.config)
        if reads_only:
            _refuse_absent(config)
        store = await Store.connect(config, recover=recover)
        try:
            return await command(store, args)
        finally:
            await store.close()

    return lambda args: asyncio.run(session(args))


def _add_transfer_commands(sub: Any) -> None:
    put = _command(sub, "put", _with_store(_cmd_put), "store local files and folders")
    put.add_argument("sources", nargs="+", metavar="SRC", help="local files or folders")
    put.add_argument("dest", metavar="KEY_OR_PREFIX",
                     help="the key (one file) or the prefix to store under")
    put.add_argument("--tier", help="tier to write to (default: the config's default_tier)")
    put.add_argument("--overwrite", action="store_true", help="replace objects that exist")
    put.add_argument("-r", "--recursive", action="store_true",
                     help="store folders, recursively (a folder without it is refused, as "
                          "cp does; symbolic links in it are followed)")
    get = _command(sub, "get", _with_store(_cmd_get, reads_only=True),
                   "copy objects to local files")
    get.add_argument("key", metavar="KEY")
    get.add_argument("dest", nargs="?", metavar="DEST", help="file or folder (default: ./NAME)")
    get.add_argument("-r", "--recursive", action="store_true", help="KEY is a prefix (folder)")


def _add_adopt_command(sub: Any) -> None:
    adopt = _command(sub, "adopt", _with_store(_cmd_adopt),
                     "catalog files already on a tier as objects, in place (no copy)",
                     data=True)
    adopt.add_argument("prefix", metavar="PREFIX",
                       help="the files' folder under the tier's root (their keys start so)")
    adopt.add_argument("--tier", required=True, help="the tier the files are on")
    adopt.add_argument("--jobs", type=int, default=8, help="files read at once (default 8)")
    adopt.add_argument("--pin", action="store_true",
                       help="keep them on that tier (the policies never move them away)")
    adopt.add_argument("--index", action="store_true",
                       help="index PREFIX's shards for TierDataset too (tar: WebDataset's)")


def _refuse_absent(config: Config) -> None:
    if (path := config.sqlite_path) is not None and not path.exists():
        raise CommandError(f"no store at {config.home} (its catalog {path} does not exist): "
                           "put something first, or pick a store with --config or "
                           "$TIERSTORE_HOME")


def _add_listing_commands(sub: Any) -> None:
    ls = _command(sub, "ls", _with_store(_cmd_ls, reads_only=True), "list objects and folders",
                  data=True)
    ls.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    ls.add_argument("-l", "--long", action="store_true", help="size, tiers, pin and reads")
    ls.add_argument("-r", "--recursive", action="store_true", help="every object under PREFIX")
    stat = _command(sub, "stat", _with_store(_cmd_stat, reads_only=True),
                    "an object's replicas and statistics", data=True)
    stat.add_argument("key", metavar="KEY")
    _command(sub, "du", _with_store(_cmd_du, reads_only=True), "usage per tier", data=True)


def _add_placement_commands(sub: Any) -> None:
    mv = _command(sub, "mv", _with_store(_cmd_mv), "move objects to one tier")
    mv.add_argument("keys", nargs="+", metavar="KEY")
    mv.add_argument("--tier", required=True, help="the tier to move to")
    mv.add_argument("-r", "--recursive", action="store_true", help="KEYs are prefixes")
    pin = _command(sub, "pin", _with_store(_cmd_pin), "keep an object on a tier")
    pin.add_argument("key", metavar="KEY")
    pin.add_argument("--tier", help="default: the object's best current tier")
    unpin = _command(sub, "unpin", _with_store(_cmd_unpin), "let policies move an object again")
    unpin.add_argument("key", metavar="KEY")
    rm = _command(sub, "rm", _with_store(_cmd_rm), "delete objects and all their replicas")
    rm.add_argument("keys", nargs="+", metavar="KEY")
    rm.add_argument("-r", "--recursive", action="store_true", help="KEYs are prefixes")


def _cmd_info(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    info = store_info(config, args.config)
    if args.json:
        _print_json(info)
        return 0
    print(f"{PROG} {info['version']}")
    print(f"config:  {info['config']} ({info['chosen_by']})")
    print(f"home:    {info['home']}")
    exists = "exists" if info["exists"] is not False else "none yet: the first put makes it"
    print(f"catalog: {info['catalog']} ({exists})")
    print(f"site:    {info['site']}; writes go to tier {info['default_tier']!r}")
    width = max(len(t["name"]) for t in info["tiers"])
    for tier in info["tiers"]:
        capacity = "no capacity limit" if tier["capacity"] is None else \
            f"capacity {human(tier['capacity'])}"
        print(f"  {tier['name']:<{width}}  {tier['class']:<4}  {tier['url']}  ({capacity}, "
              f"site {tier['site']})")
    extras = ", ".join(f"{name} {'yes' if there else 'no'}" for name, there
                       in info["extras"].items())
    print(f"extras:  {extras}")
    return 0


def store_info(config: Config, given: str | None) -> dict[str, Any]:
    """Which store the command line uses and how it was chosen: for ``tierstore info``.
    Credentials never appear (URLs and options go through :func:`redact`)."""
    import importlib.util

    home = "$TIERSTORE_HOME" if os.environ.get("TIERSTORE_HOME") else "./.tierstore"
    if given:
        chosen_by = "--config"
    elif os.environ.get("TIERSTORE_CONFIG"):
        chosen_by = "$TIERSTORE_CONFIG"
    elif config.source == "<embedded default>":
        chosen_by = f"no {CONFIG_NAME} in {home}: the embedded default there"
    else:
        chosen_by = f"the {CONFIG_NAME} in {home}"
    sqlite = config.sqlite_path
    return {
        "version": _version(), "config": config.source, "chosen_by": chosen_by,
        "home": str(config.home.absolute()), "catalog": redact(config.catalog),
        "exists": sqlite.exists() if sqlite is not None else None,
        "site": config.site, "default_tier": config.default_tier,
        "tiers": [{"name": t.name, "class": t.tier_class.name.lower(), "url": redact(t.url),
                   "capacity": t.capacity, "site": t.site} for t in config.tiers.values()],
        "extras": {extra: importlib.util.find_spec(module) is not None for extra, module
                   in (("loader", "torch"), ("postgres", "psycopg"), ("bench", "matplotlib"))},
    }


def _add_init_command(sub: Any) -> None:
    _command(sub, "info", _cmd_info, "which store the commands use, and how it was chosen",
             data=True)
    init = _command(sub, "init", _cmd_init, "write a commented config file")
    init.add_argument("--home", metavar="DIR",
                      help="store folder (default: $TIERSTORE_HOME, else ./.tierstore)")
    init.add_argument("--force", action="store_true", help="overwrite an existing config")


def _add_admin_commands(sub: Any) -> None:
    _command(sub, "recover", _with_store(_cmd_recover, recover=False),
             "finish or roll back work of processes that died", data=True)
    fsck = _command(sub, "fsck", _with_store(_cmd_fsck, recover=False, reads_only=True),
                    "check that tiers and catalog agree (exit 1 if not)", data=True)
    fsck.add_argument("--deep", action="store_true", help="verify every checksum too")
    _command(sub, "demo", _cmd_demo, "a guided tour on a small synthetic dataset")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Tiered storage for machine-learning training.")
    _options(parser, data=True, top=True)
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(metavar="COMMAND", required=True)
    for add in (_add_init_command, _add_transfer_commands, _add_adopt_command,
                _add_listing_commands,
                _add_placement_commands, _add_admin_commands,
                add_plan_command, add_preload_command, add_daemon_command, add_bench_commands,
                add_simulate_command, add_catalog_command):
        add(sub)
    return parser


def _version() -> str:
    from tierstore import __version__

    return __version__


# -- the entry point --------------------------------------------------------------------------


class _Formatter(logging.Formatter):
    """``tierstore: warning: <message>``, like the error lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"


def _configure_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger = logging.getLogger(PROG)  # never the root logger: botocore's DEBUG shows headers
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if not verbose else
                    logging.INFO if verbose == 1 else logging.DEBUG)
    logger.propagate = False


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return f"interrupted: {exc}" if str(exc) else "interrupted"
    if isinstance(exc, OSError) and not isinstance(exc, TierstoreError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())  # one line, whatever the message


def _fail(exc: BaseException, verbose: int, status: int) -> int:
    if verbose:
        traceback.print_exception(exc)
    print(f"{PROG}: error: {_message(exc)}", file=sys.stderr)
    return status


def _silence_stdout() -> None:
    """After a closed pipe (``tierstore ls | head``), let the interpreter exit quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tierstore`` with ``argv`` (default: the process's arguments); the exit status."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        status: int = args.run(args)
        sys.stdout.flush()
        return status
    except KeyboardInterrupt as exc:
        outcome = getattr(args, "outcome", None)  # what a command found it had done
        return _fail(exc if outcome is None else KeyboardInterrupt(outcome), args.verbose,
                     EXIT_INTERRUPTED)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (TierstoreError, OSError, ValueError) as exc:
        return _fail(exc, args.verbose, EXIT_FAILURE)


if __name__ == "__main__":
    sys.exit(main())
