"""Where things are: sites as ``region/zone/node`` paths, and the static distance between them.

A site is written widest first, ``"eu-west/az-a/node-17"``: a region, a zone in it, a node in
that. Fewer parts name a wider place: ``"eu-west/az-a"`` is a zone-wide site (a zone's shared
object store), ``"eu-west"`` a region-wide one, and a single name such as the default
``"local"`` is a site of its own. The reader's site (``site`` at the top of the config, or
``$TIERSTORE_SITE``) and every tier's ``site`` are written the same way.

The distance between two sites is the class of what they share:

- :attr:`Distance.NODE` -- the same site (equal strings), or the same region, zone and node;
- :attr:`Distance.ZONE` -- the same region and zone;
- :attr:`Distance.REGION` -- the same region;
- :attr:`Distance.REMOTE` -- nothing in common.

So a zone-wide tier ``"eu/a"`` is at zone distance from a reader on ``"eu/a/n1"``, and a
reader whose site is ``"rack-7"`` is at node distance from tiers of site ``"rack-7"`` and
remote from everything else.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["Distance", "Site", "distance", "parse_site"]

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class Distance(enum.IntEnum):
    """How far a replica is from the reader, nearest first."""

    NODE = 0
    ZONE = 1
    REGION = 2
    REMOTE = 3

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Site:
    """A parsed site: its parts, widest first (region, then zone, then node)."""

    parts: tuple[str, ...]

    def __str__(self) -> str:
        return "/".join(self.parts)

    @property
    def region(self) -> str:
        return self.parts[0]

    @property
    def zone(self) -> str | None:
        return self.parts[1] if len(self.parts) > 1 else None

    @property
    def node(self) -> str | None:
        return self.parts[2] if len(self.parts) > 2 else None


def parse_site(text: object, *, source: str | None = None, field: str = "site") -> Site:
    """Parse ``"region/zone/node"`` (one to three parts); a malformed one is a ConfigError
    naming ``source`` and ``field``."""
    if not isinstance(text, str):
        raise ConfigError(f"expected a site such as \"region/zone/node\", got {text!r}",
                          source=source, field=field)
    parts = tuple(text.split("/"))
    if len(parts) > 3 or not all(_PART.match(p) for p in parts):
        raise ConfigError(
            f"expected a site \"region/zone/node\" (one to three parts of letters, digits, "
            f"'.', '-' and '_', widest first), got {text!r}", source=source, field=field)
    return Site(parts)


def distance(reader: Site | str, other: Site | str) -> Distance:
    """The static distance class from the ``reader``'s site to ``other``."""
    a = reader if isinstance(reader, Site) else parse_site(reader)
    b = other if isinstance(other, Site) else parse_site(other)
    if a.parts == b.parts:
        return Distance.NODE
    shared = 0
    for x, y in zip(a.parts, b.parts, strict=False):
        if x != y:
            break
        shared += 1
    return (Distance.REMOTE, Distance.REGION, Distance.ZONE)[min(shared, 2)]
