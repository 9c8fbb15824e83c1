"""tierstore.loader: shard formats, deterministic sharded shuffling, async prefetch and the
PyTorch ``TierLoader``. Empty until the loader issue lands; nothing here is public yet."""

__all__: list[str] = []
