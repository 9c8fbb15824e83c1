"""The commands about the store itself: ``info``, ``init``, ``recover``, ``fsck`` and
``demo``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..config import CONFIG_NAME, CONFIG_TEMPLATE, Config, config_from_toml, load_config
from ..redaction import redact
from ..store import AuditReport, RecoveryReport, Store
from .base import EXIT_FAILURE, PROG, CommandError, command, version, with_store
from .output import human, plural, print_json

__all__ = ["add_admin_commands", "add_init_command", "store_info"]


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


def _recovery_json(report: RecoveryReport) -> dict[str, Any]:
    return {"rolled_back": [{"key": k, "tier": t} for k, t in report.rolled_back],
            "finished": [{"key": k, "tier": t} for k, t in report.finished],
            "skipped": report.skipped}


async def _cmd_recover(store: Store, args: argparse.Namespace) -> int:
    report = await store.recover()
    if args.json:
        print_json(_recovery_json(report))
        return 0
    copies = plural(len(report.rolled_back), "interrupted copy", "interrupted copies")
    print(f"rolled back {copies}, finished {plural(len(report.finished), 'removal')}, left "
          f"{plural(report.skipped, 'replica')} to live processes")
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
        lines.append(f"pending: {plural(report.pending, 'replica')} copying or deleting "
                     "(`tierstore recover` finishes work of processes that died)")
    check = "sizes and checksums" if deep else "sizes"
    problems = len(report.orphans) + len(report.missing) + bool(report.pending)
    lines.append(f"ok ({check} checked)" if report.ok else f"{plural(problems, 'problem')} "
                                                           f"found ({check} checked)")
    return "\n".join(lines)


async def _cmd_fsck(store: Store, args: argparse.Namespace) -> int:
    report = await store.audit(deep=args.deep)
    if args.json:
        print_json(_audit_json(report, args.deep))
    else:
        print(_format_audit(report, args.deep))
    return 0 if report.ok else EXIT_FAILURE


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run  # numpy and pyarrow load only for the demo

    run(args.config)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    info = store_info(config, args.config)
    if args.json:
        print_json(info)
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
        "version": version(), "config": config.source, "chosen_by": chosen_by,
        "home": str(config.home.absolute()), "catalog": redact(config.catalog),
        "exists": sqlite.exists() if sqlite is not None else None,
        "site": config.site, "default_tier": config.default_tier,
        "tiers": [{"name": t.name, "class": t.tier_class.name.lower(), "url": redact(t.url),
                   "capacity": t.capacity, "site": t.site} for t in config.tiers.values()],
        "extras": {extra: importlib.util.find_spec(module) is not None for extra, module
                   in (("loader", "torch"), ("postgres", "psycopg"), ("bench", "matplotlib"))},
    }


def add_init_command(sub: Any) -> None:
    command(sub, "info", _cmd_info, "which store the commands use, and how it was chosen",
            data=True)
    init = command(sub, "init", _cmd_init, "write a commented config file")
    init.add_argument("--home", metavar="DIR",
                      help="store folder (default: $TIERSTORE_HOME, else ./.tierstore)")
    init.add_argument("--force", action="store_true", help="overwrite an existing config")


def add_admin_commands(sub: Any) -> None:
    command(sub, "recover", with_store(_cmd_recover, recover=False),
            "finish or roll back work of processes that died", data=True)
    fsck = command(sub, "fsck", with_store(_cmd_fsck, recover=False, reads_only=True),
                   "check that tiers and catalog agree (exit 1 if not)", data=True)
    fsck.add_argument("--deep", action="store_true", help="verify every checksum too")
    command(sub, "demo", _cmd_demo, "a guided tour on a small synthetic dataset")
