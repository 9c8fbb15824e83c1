"""Scrubbing: find replicas whose bytes are gone, short or corrupt, and repair them.

:func:`scrub` is the daemon's audit-and-repair step (``tierstore daemon --scrub-every``). It
lists every tier once and checks each ready replica: its file is there with the object's size
and, with ``deep``, its bytes hash to the object's checksum (a whole read). A replica proven
bad (no such file, a wrong size, a checksum mismatch) is repaired by
:meth:`Store.repair <tierstore.store.Store.repair>`: dropped, then copied again from a good
replica, verified. An object's only replica is never dropped; it is reported instead.

Only definite evidence counts: a tier that cannot be listed or read (its endpoint is down,
timing out, refusing) is *unreachable*, and its replicas are left as they are -- a site
that is away is not a site whose data is gone. Replicas that repair could not replace (no
good replica left, the destination refusing) are reported as failed, and the placement
policy adds replicas elsewhere when a rule asks for them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .errors import ChecksumMismatch, TierError, TierstoreError
from .store import Store

__all__ = ["ScrubReport", "scrub"]

log = logging.getLogger(__name__)


@dataclass
class ScrubReport:
    """What a scrub found and did: ``bad`` replicas as (key, tier, why), those ``repaired``,
    those that could not be (``failed``, with why), and tiers that were ``unreachable``."""

    checked: int = 0
    bad: list[tuple[str, str, str]] = field(default_factory=list)
    repaired: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"checked": self.checked, "bad": [list(b) for b in self.bad],
                "repaired": [list(r) for r in self.repaired],
                "failed": [list(f) for f in self.failed], "unreachable": self.unreachable}


async def scrub(store: Store, *, deep: bool = False, repair: bool = True,
                prefix: str = "") -> ScrubReport:
    """Check every ready replica of the objects under ``prefix`` (see the module) and, with
    ``repair``, replace the bad ones."""
    report = ScrubReport()
    records = await store.db.objects(prefix)  # before listing: a later commit is not "missing"
    sizes: dict[str, dict[str, int]] = {}
    for name, tier in store.tiers.items():
        try:
            sizes[name] = {found.path: found.size for found in await tier.walk()}
        except (TierstoreError, OSError) as exc:
            report.unreachable[name] = str(exc)
    for record in records:
        for replica in record.ready:
            listed = sizes.get(replica.tier)
            if listed is None:
                continue  # unreachable or no longer configured
            report.checked += 1
            size = listed.get(replica.path)
            why = None
            if size is None:
                why = "no such file"
            elif size != record.size:
                why = f"{size} bytes, expected {record.size}"
            elif deep:
                try:
                    hasher = await store.tier(replica.tier).hash(replica.path, size)
                    if hasher.hexdigest() != record.checksum:
                        raise ChecksumMismatch(record.key, replica.tier,
                                               str(record.checksum), hasher.hexdigest())
                except (ChecksumMismatch, FileNotFoundError) as exc:
                    why = str(exc)
                except (TierError, OSError) as exc:  # the endpoint, not the replica
                    report.unreachable.setdefault(replica.tier, str(exc))
                    continue
            if why is None:
                continue
            report.bad.append((record.key, replica.tier, why))
            log.warning("replica of %r on tier %r is bad: %s", record.key, replica.tier, why)
            if not repair:
                continue
            try:
                await store.repair(record.key, replica.tier, replica_id=replica.id)
                report.repaired.append((record.key, replica.tier))
            except (TierstoreError, OSError) as exc:
                report.failed.append((record.key, replica.tier, str(exc)))
                log.warning("could not repair %r on tier %r: %s", record.key, replica.tier,
                            exc)
    return report
