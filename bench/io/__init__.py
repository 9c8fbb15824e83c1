"""``tierstore bench io`` (fio's options, job files, engine, targets, text and JSON
output) and ``python -m tierstore.cli.bench.io.compare_fio``; ``bench tiers`` runs its
engine too."""
