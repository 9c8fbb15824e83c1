"""``tierstore bench loader``: the dataset, the training processes, the measures,
the baselines and the peers' loaders (:mod:`.peers`), ``--find-max``."""
