"""The commands on objects: ``put``, ``get``, ``adopt``, ``ls``, ``stat``, ``du``, ``mv``,
``pin``, ``unpin`` and ``rm``. Each is one coroutine, ``_cmd_<name>(store, args) -> exit
status``, run on one event loop against the async :class:`~tierstore.store.Store`; bulk
commands keep a few objects in flight and show progress on a terminal only."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import os
import posixpath
import stat
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ObjectNotFound
from ..keys import validate_key
from ..redaction import redact
from ..store import ObjectInfo, Store
from .base import CommandError, command, with_store
from .output import (
    format_du,
    format_stat,
    human,
    info_json,
    plural,
    print_json,
    print_long,
    table,
)
from .progress import Transfer, each, put_files

__all__ = ["add_adopt_command", "add_listing_commands", "add_placement_commands",
           "add_transfer_commands", "plan_put"]


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
        more = f" (and {plural(len(taken) - 1, 'other')})" if len(taken) > 1 else ""
        raise CommandError(f"object exists: {taken[0]!r}{more}; pass --overwrite to replace")


async def _refuse_overfill(store: Store, pairs: Sequence[tuple[Path, str]], tier: str) -> None:
    """Refuse files that together would take ``tier`` past its capacity before one is put
    (the store checks each put again as it is written)."""
    room = await store.capacity.room(tier)
    if room is None:
        return
    need = 0
    for path, key in pairs:
        record = await store.db.get(key)
        replaced = record.size if record is not None and record.on(tier) else None
        need += path.stat().st_size - (replaced or 0)
    if need > room:
        capacity = store.tier(tier).config.capacity
        raise CommandError(f"{plural(len(pairs), 'file')} ({human(need)}) would take tier "
                           f"{tier!r} past its capacity ({human(room)} of {human(capacity)} "
                           "free); nothing was put")


async def _cmd_put(store: Store, args: argparse.Namespace) -> int:
    pairs = plan_put(args.sources, args.dest, recursive=args.recursive)
    tier = store.tier(args.tier or store.config.default_tier).name
    if not args.overwrite:
        await _refuse_existing(store, [key for _, key in pairs])
    await _refuse_overfill(store, pairs, tier)
    # what an overwrite replaces (without --overwrite nothing is there: refused above)
    before = {key: _content(store, key) for _, key in pairs} if args.overwrite else {}
    try:
        total = await put_files(store, pairs, tier=tier, overwrite=args.overwrite)
    except (asyncio.CancelledError, KeyboardInterrupt):
        # what Ctrl-C left: each object is all there or not at all, and it may have landed
        # after its bytes were committed; say which, as the catalog has it now
        saved = [key for _, key in pairs
                 if _content(store, key) not in (None, before.get(key))]
        args.outcome = _saved_line(saved, len(pairs))
        raise
    what = repr(pairs[0][1]) if len(pairs) == 1 else plural(len(pairs), "object")
    print(f"put {what} ({human(total)}) on tier {tier}")
    return 0


def _content(store: Store, key: str) -> tuple[int | None, str | None] | None:
    """What ``key`` holds now (size and checksum of a ready object), None if nothing."""
    # Called where nothing else runs on the loop (before the puts, and on Ctrl-C, whose
    # handler must not wait on the loop): the catalog itself, not its async face.
    record = store.catalog.get(key)
    return (record.size, record.checksum) if record is not None and record.ready else None


def _saved_line(saved: Sequence[str], total: int) -> str:
    if not saved:
        return "nothing was saved (what was being written was rolled back)"
    what = repr(saved[0]) if len(saved) == 1 else plural(len(saved), "object")
    rest = "" if len(saved) == total else \
        f"; the other {total - len(saved)} were not (rolled back, or never begun)"
    return f"{what} {'was' if len(saved) == 1 else 'were'} saved whole before it{rest}"


async def _cmd_adopt(store: Store, args: argparse.Namespace) -> int:
    tier = store.tier(args.tier).name
    if args.jobs < 1:
        raise CommandError(f"--jobs must be at least 1, not {args.jobs}")
    if args.index:  # before any work: the index is the loader's (MissingExtra without it)
        from ..loader.index import awrite_index
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
        print_json({**dataclasses.asdict(report), "bytes": report.bytes, "pinned": args.pin,
                     "index": index})
    else:
        print(f"adopted {plural(len(keys), 'object')} ({human(report.bytes)}) on tier {tier}"
              f"{', pinned there' if args.pin and keys else ''}; {report.known} adopted before")
        for key, _ in report.changed:
            print(f"changed {key}: written over since it was adopted; its new content taken "
                  "in, copies of the old removed")
        for key in report.vanished:
            print(f"vanished {key}: its file is gone; the object removed")
        if index is not None:
            print(f"indexed {plural(index['shards'], 'shard')}: {index['key']}")
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
    print(f"got {plural(len(infos), 'object')} ({human(total)}) into {where}")
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
        print_json([{"type": "file", **info_json(infos[e["name"]])} if e["type"] == "file" else
                     {"key": e["name"] + "/", "type": "directory", "size": e["size"]}
                     for e in entries])
    elif args.long:
        print_long(entries, infos)
    else:
        print("\n".join(e["name"] + ("/" if e["type"] == "directory" else "") for e in entries))
    return 0


async def _cmd_stat(store: Store, args: argparse.Namespace) -> int:
    info = await store.stat(args.key)
    if args.json:
        print_json(info_json(info))
    else:
        print(format_stat(info))
    return 0


async def _cmd_du(store: Store, args: argparse.Namespace) -> int:
    reports = await store.usage()
    if args.json:
        print_json([{**dataclasses.asdict(r), "url": redact(r.url), "fill": r.fill}
                     for r in reports])
    else:
        print(format_du(reports))
    return 0


async def _cmd_locate(store: Store, args: argparse.Namespace) -> int:
    holdings = await store.locate(args.prefix)
    if args.json:  # for a scheduler: a job placed where its data already is
        print_json([{**dataclasses.asdict(h), "complete": h.complete} for h in holdings])
        return 0
    print(table(["SITE", "COMPLETE", "OBJECTS", "SIZE", "MISSING", "MISSING SIZE", "TIERS"],
                [[h.site, "yes" if h.complete else "no", str(h.objects), human(h.bytes),
                  str(h.missing), human(h.missing_bytes), ",".join(h.tiers)]
                 for h in holdings], right=frozenset({2, 3, 4, 5})))
    return 0


async def _cmd_mv(store: Store, args: argparse.Namespace) -> int:
    tier = store.tier(args.tier).name
    infos = await _objects(store, args.keys, args.recursive)
    total = await each(f"move to {tier}", infos, lambda info: store.move(info.key, tier))
    print(f"moved {plural(len(infos), 'object')} ({human(total)}) to tier {tier}")
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
    print(f"removed {plural(len(infos), 'object')} ({human(total)})")
    return 0


def add_transfer_commands(sub: Any) -> None:
    put = command(sub, "put", with_store(_cmd_put), "store local files and folders")
    put.add_argument("sources", nargs="+", metavar="SRC", help="local files or folders")
    put.add_argument("dest", metavar="KEY_OR_PREFIX",
                     help="the key (one file) or the prefix to store under")
    put.add_argument("--tier", help="tier to write to (default: the config's default_tier)")
    put.add_argument("--overwrite", action="store_true", help="replace objects that exist")
    put.add_argument("-r", "--recursive", action="store_true",
                     help="store folders, recursively (a folder without it is refused, as "
                          "cp does; symbolic links in it are followed)")
    get = command(sub, "get", with_store(_cmd_get, reads_only=True),
                  "copy objects to local files")
    get.add_argument("key", metavar="KEY")
    get.add_argument("dest", nargs="?", metavar="DEST", help="file or folder (default: ./NAME)")
    get.add_argument("-r", "--recursive", action="store_true", help="KEY is a prefix (folder)")


def add_adopt_command(sub: Any) -> None:
    adopt = command(sub, "adopt", with_store(_cmd_adopt),
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


def add_listing_commands(sub: Any) -> None:
    ls = command(sub, "ls", with_store(_cmd_ls, reads_only=True), "list objects and folders",
                 data=True)
    ls.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    ls.add_argument("-l", "--long", action="store_true", help="size, tiers, pin and reads")
    ls.add_argument("-r", "--recursive", action="store_true", help="every object under PREFIX")
    stat = command(sub, "stat", with_store(_cmd_stat, reads_only=True),
                   "an object's replicas and statistics", data=True)
    stat.add_argument("key", metavar="KEY")
    command(sub, "du", with_store(_cmd_du, reads_only=True), "usage per tier", data=True)
    locate = command(sub, "locate", with_store(_cmd_locate, reads_only=True),
                     "which sites hold all of a prefix (where to run a job)", data=True)
    locate.add_argument("prefix", metavar="PREFIX", nargs="?", default="",
                        help="a key prefix, e.g. datasets/imagenet/ (default: everything)")


def add_placement_commands(sub: Any) -> None:
    mv = command(sub, "mv", with_store(_cmd_mv), "move objects to one tier")
    mv.add_argument("keys", nargs="+", metavar="KEY")
    mv.add_argument("--tier", required=True, help="the tier to move to")
    mv.add_argument("-r", "--recursive", action="store_true", help="KEYs are prefixes")
    pin = command(sub, "pin", with_store(_cmd_pin), "keep an object on a tier")
    pin.add_argument("key", metavar="KEY")
    pin.add_argument("--tier", help="default: the object's best current tier")
    unpin = command(sub, "unpin", with_store(_cmd_unpin), "let policies move an object again")
    unpin.add_argument("key", metavar="KEY")
    rm = command(sub, "rm", with_store(_cmd_rm), "delete objects and all their replicas")
    rm.add_argument("keys", nargs="+", metavar="KEY")
    rm.add_argument("-r", "--recursive", action="store_true", help="KEYs are prefixes")
