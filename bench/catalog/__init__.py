"""``tierstore bench catalog``: SQLite vs PostgreSQL (a temporary server if none
is given)."""
