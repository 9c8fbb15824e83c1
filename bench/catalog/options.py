"""The options of ``tierstore bench catalog``.

Kept free of heavy imports: every ``tierstore`` command builds the parser."""

from __future__ import annotations

import argparse

__all__ = ["add_catalog_arguments"]


def add_catalog_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--objects", default="10k,100k,1m", metavar="LIST",
                     help="catalog sizes, filled in turn (default: 10k,100k,1m)")
    cmd.add_argument("--postgres", metavar="URL",
                     help="a PostgreSQL server to measure (tables in a schema of their own, "
                          "dropped afterwards); default: a temporary server, if PostgreSQL "
                          "is installed")
    cmd.add_argument("--backends", default="sqlite,postgresql", metavar="LIST",
                     help="which catalogs (default: sqlite,postgresql)")
    cmd.add_argument("--lookups", type=int, default=20_000, metavar="N",
                     help="timed gets per size and backend (default: 20000)")
    cmd.add_argument("--batch", type=int, default=1000, metavar="N",
                     help="reads per record_access batch (default: 1000)")
    cmd.add_argument("--batches", type=int, default=50, metavar="N",
                     help="timed record_access batches per size and backend (default: 50)")
    cmd.add_argument("--dir", metavar="DIR",
                     help="where the SQLite file and a temporary server live (default: a new "
                          "folder in the temporary folder, removed afterwards)")
    cmd.add_argument("--json", metavar="FILE", dest="json_file",
                     help="also write the result document to FILE ('-': stdout)")
    cmd.add_argument("--results", metavar="DIR", help="results folder (default: "
                     "$TIERSTORE_RESULTS, else ./bench-results; 'none': do not save)")
