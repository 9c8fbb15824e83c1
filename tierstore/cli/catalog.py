"""``tierstore catalog migrate [--check] [--json]``: the catalog's schema, and migrating it.

Opening a catalog still migrates it (so a fresh store just works), but upgrading a shared
catalog is an operator's step: run ``tierstore catalog migrate`` once after installing a new
tierstore, before its daemons start. ``--check`` only looks (exit 1 when a migration is
pending, for deploy scripts and init containers). The catalog is named by its location only
(``sqlite:///PATH`` or ``postgresql://user@host:port/dbname``): never a password.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..catalog import open_catalog
from ..config import load_config
from .base import add_options
from .output import print_json

__all__ = ["add_catalog_command", "run_migrate"]


def run_migrate(args: argparse.Namespace) -> int:
    """Show the catalog's schema version and this tierstore's; migrate unless ``--check``."""

    config = load_config(args.config)
    catalog = open_catalog(config.catalog, migrate=False)
    try:
        before, current = catalog.schema_versions()
        pending = catalog.pending_migrations()  # CatalogError if the catalog is newer
        applied = [] if args.check or not pending else catalog.migrate()
        after = applied[-1] if applied else before
    finally:
        catalog.close()
    if args.json:
        print_json({"catalog": catalog.location, "schema_version": after,
                     "previous_version": before, "tierstore_schema_version": current,
                     "pending": [] if applied else pending, "applied": applied,
                     "check": bool(args.check)})
    else:
        print(f"catalog:  {catalog.location}")
        print(f"schema:   {after} (this tierstore: {current})")
        if applied:
            print(f"migrated: {before} -> {after}")
        elif pending:
            steps = ", ".join(map(str, pending))
            print(f"pending:  {len(pending)} migration{'s' if len(pending) > 1 else ''} "
                  f"(to {steps}); run 'tierstore catalog migrate'")
        else:
            print("up to date")
    return 1 if args.check and pending else 0


def add_catalog_command(sub: Any) -> None:
    """Register ``tierstore catalog migrate`` on the CLI's subparsers."""

    catalog = sub.add_parser("catalog", help="the catalog's schema: versions and migrations",
                             description="the catalog's schema: versions and migrations")
    actions = catalog.add_subparsers(metavar="ACTION", required=True)
    text = ("show the catalog's schema version and this tierstore's, and migrate the catalog "
            "to this tierstore's (the documented way to upgrade a shared catalog)")
    migrate = actions.add_parser("migrate", help=text, description=text)
    add_options(migrate, data=True)
    migrate.add_argument("--check", action="store_true",
                         help="change nothing; exit 1 if a migration is pending")
    migrate.set_defaults(run=run_migrate)
