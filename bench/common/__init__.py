"""What the benchmarks share: their errors, fio's value syntax (:mod:`.units`), the
machine a result was measured on, result documents, and the single-node Ceph
and free ports. Imports nothing from the groups beside it."""
