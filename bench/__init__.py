"""tierstore.bench: fio-like I/O, loader and migration benchmarks and their reports. Empty
until the benchmark issue lands; nothing here is public yet."""

__all__: list[str] = []
