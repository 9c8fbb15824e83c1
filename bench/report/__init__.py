"""``tierstore bench report``: tables and plots from the benchmarks' results."""
