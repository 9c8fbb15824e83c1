"""tierstore.policies: pure migration policies (recency, frequency, watermarks, pins,
pre-load, next-use), each a function from a catalog snapshot to a plan of moves. Empty until
the migration issue lands; nothing here is public yet."""

__all__: list[str] = []
