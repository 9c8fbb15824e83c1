"""Configuration: frozen dataclasses loaded from TOML, and the embedded default.

Environment variables (``TIERSTORE_CONFIG``, ``TIERSTORE_HOME``, ``TIERSTORE_SITE``) are read
only by :func:`load_config`, the entry point; everything below it takes explicit values.
"""

from __future__ import annotations

import enum
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, UnknownTier
from .locality.settings import LocalitySettings
from .locality.topology import parse_site
from .redaction import redact  # re-exported: where callers have long found it
from .units import parse_duration, parse_size  # parse_size re-exported, as redact

__all__ = [
    "Config",
    "TierClass",
    "TierConfig",
    "default_config",
    "load_config",
    "parse_size",
    "redact",
]

CONFIG_NAME = "tierstore.toml"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class TierClass(enum.IntEnum):
    """A tier's class; the integer is its rank on the read path (lower reads first)."""

    HOT = 0
    WARM = 1
    COLD = 2

    @classmethod
    def parse(cls, value: object, *, source: str | None, field: str) -> TierClass:
        """Read a tier class from a config value, whatever its case.

        Parameters
        ----------
        value : object
            ``hot``, ``warm`` or ``cold``.
        source : str or None
            The config file, for the error.
        field : str
            The config field, for the error.

        Returns
        -------
        TierClass
            The class.

        Raises
        ------
        ConfigError
            If ``value`` names no class.
        """
        try:
            return cls[str(value).upper()]
        except KeyError:
            raise ConfigError(
                f"expected one of hot, warm, cold, got {value!r}", source=source, field=field
            ) from None




@dataclass(frozen=True, kw_only=True)
class TierConfig:
    """One tier: an fsspec URL (filesystem plus root), its class, capacity and site.

    Attributes
    ----------
    name : str
        The tier's name: letters, digits, ``-`` and ``_``.
    tier_class : TierClass
        Its class: the read path prefers hot.
    url : str
        An fsspec URL: the filesystem plus the root folder (or bucket and prefix).
    options : mapping of str to Any
        The filesystem's options (an S3 endpoint, a profile, ...).
    capacity : int or None
        The hard limit in bytes, checked before a byte is written; None for none.
    high_watermark, low_watermark : float
        The soft limits, as fractions of ``capacity`` (``0 < low <= high <= 1``; 0.9 and
        0.75 by default): the daemon moves objects out above the high one until usage is
        under the low one.
    site : str
        Where the tier is, ``region/zone/node`` widest first.
    max_concurrency : int
        Requests to the tier at a time (16 by default).
    timeout : float
        Seconds a request may take (30 by default).
    fsync : bool
        Local folders: a new replica's bytes and folder entries are on disk (fsync) before
        the catalog commit that lets an old copy go. False trades that for speed (scratch
        data).

    Raises
    ------
    ConfigError
        If the name, the watermarks, ``max_concurrency``, ``timeout`` or the site is invalid.
    """

    name: str
    tier_class: TierClass
    url: str
    options: Mapping[str, Any] = field(default_factory=dict)
    capacity: int | None = None
    high_watermark: float = 0.9
    low_watermark: float = 0.75
    site: str = "local"
    max_concurrency: int = 16
    timeout: float = 30.0
    # Local folders: a new replica's bytes and folder entries are on disk (fsync) before the
    # catalog commit that lets an old copy go. False trades that for speed (scratch data).
    fsync: bool = True

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError("tier names are letters, digits, - and _", field=self.name)
        if not 0.0 < self.low_watermark <= self.high_watermark <= 1.0:
            raise ConfigError(
                "expected 0 < low_watermark <= high_watermark <= 1, got "
                f"{self.low_watermark} and {self.high_watermark}",
                field=f"tiers.{self.name}",
            )
        if self.max_concurrency < 1 or not math.isfinite(self.timeout) or self.timeout <= 0:
            raise ConfigError("max_concurrency and timeout must be positive",
                              field=f"tiers.{self.name}")
        parse_site(self.site, field=f"tiers.{self.name}.site")  # region/zone/node

    def __repr__(self) -> str:
        return (f"TierConfig(name={self.name!r}, class={self.tier_class.name.lower()}, "
                f"url={redact(self.url)!r}, options={redact(self.options)!r}, "
                f"site={self.site!r})")


@dataclass(frozen=True, kw_only=True)
class Config:
    """A store: where its catalog lives, its tiers, the default tier for writes, its site.

    Attributes
    ----------
    home : pathlib.Path
        The data directory: the catalog and the default tier folders.
    catalog : str
        The catalog's URL: ``sqlite:///<file>`` (embedded) or a PostgreSQL URL (shared).
    tiers : mapping of str to TierConfig
        The tiers by name (at least one).
    default_tier : str
        Where ``put`` writes unless told otherwise; one of ``tiers``.
    site : str
        This reader's site, ``region/zone/node`` widest first.
    verify_reads : bool
        Check whole-object reads against the recorded checksum (False by default).
    adopted_check : float
        A copy of an adopted object (one whose file other tools may write over) is served
        only once its file is seen as it was adopted: looked at again after this many
        seconds.
    source : str or None
        The file the config was read from, for messages.
    policies : mapping of str to Any
        The ``[policies]`` table as written (empty when absent); the migration policies
        parse and validate it
        (:meth:`PolicyConfig.from_config <tierstore.policies.PolicyConfig.from_config>`),
        so the core knows nothing of them.
    carbon : mapping of str to Any
        The ``[carbon]`` table as written (empty when absent: no move is deferred); parsed
        and checked by :meth:`tierstore.carbon.CarbonSettings.from_config` where moves are
        scheduled.
    energy : mapping of str to Any
        The ``[energy]`` table as written (empty: the defaults); parsed and checked by
        :meth:`tierstore.energy.EnergyModel.from_config`.
    locality : LocalitySettings
        Replica selection, health and hedging (:mod:`tierstore.locality`).

    Raises
    ------
    ConfigError
        If the site is invalid, no tier is configured or ``default_tier`` names none.
    """

    home: Path
    catalog: str
    tiers: Mapping[str, TierConfig]
    default_tier: str
    site: str = "local"
    verify_reads: bool = False
    # A copy of an adopted object (one whose file other tools may write over) is served only
    # once its file is seen as it was adopted: looked at again after this many seconds.
    adopted_check: float = 0.0
    source: str | None = None
    policies: Mapping[str, Any] = field(default_factory=dict)
    # The [carbon] table as written (empty when absent: no move is deferred); parsed and
    # checked by tierstore.carbon.CarbonSettings.from_config where moves are scheduled.
    carbon: Mapping[str, Any] = field(default_factory=dict)
    # The [energy] table as written (empty: the defaults); parsed and checked by
    # tierstore.energy.EnergyModel.from_config.
    energy: Mapping[str, Any] = field(default_factory=dict)
    # Replica selection, health and hedging (tierstore.locality); site is "region/zone/node".
    locality: LocalitySettings = field(default_factory=LocalitySettings)

    def __post_init__(self) -> None:
        parse_site(self.site, source=self.source, field="site")
        if not self.tiers:
            raise ConfigError("at least one tier is required", source=self.source, field="tiers")
        if self.default_tier not in self.tiers:
            raise ConfigError(
                f"names no configured tier (configured: {', '.join(self.tiers)})",
                source=self.source, field="default_tier",
            )

    def __repr__(self) -> str:
        return (f"Config(home={str(self.home)!r}, catalog={redact(self.catalog)!r}, "
                f"tiers={list(self.tiers.values())!r}, default_tier={self.default_tier!r}, "
                f"site={self.site!r}, source={self.source!r})")

    @property
    def sqlite_path(self) -> Path | None:
        """The file of an embedded (SQLite) catalog; None for a shared one."""
        prefix = "sqlite:///"
        return Path(self.catalog[len(prefix):]) if self.catalog.startswith(prefix) else None

    def tier(self, name: str) -> TierConfig:
        """The configured tier called ``name``.

        Parameters
        ----------
        name : str
            The tier's name.

        Returns
        -------
        TierConfig
            Its configuration.

        Raises
        ------
        UnknownTier
            If no tier of that name is configured.
        """
        try:
            return self.tiers[name]
        except KeyError:
            raise UnknownTier(name, list(self.tiers)) from None


def default_config(home: Path, *, site: str = "local") -> Config:
    """Make the embedded default: three local folders (hot, warm, cold) under ``home``.

    Parameters
    ----------
    home : pathlib.Path
        The data directory; the catalog is ``home/catalog.db``, the tiers ``home/tiers/*``.
    site : str, default "local"
        The tiers' and the reader's site.

    Returns
    -------
    Config
        Writes go to ``warm`` by default.
    """
    home = home.absolute()
    tiers = {
        name: TierConfig(name=name, tier_class=TierClass[name.upper()],
                         url=(home / "tiers" / name).as_uri(), site=site)
        for name in ("hot", "warm", "cold")
    }
    return Config(home=home, catalog=f"sqlite:///{home / 'catalog.db'}", tiers=tiers,
                  default_tier="warm", site=site, source="<embedded default>")


_TOP_KEYS = {"home", "catalog", "default_tier", "site", "verify_reads", "adopted_check", "tiers",
             "policies", "carbon", "energy",
             "locality"}
_TIER_KEYS = {"class", "url", "options", "capacity", "high_watermark", "low_watermark", "site",
              "max_concurrency", "timeout", "fsync"}


def expect(value: object, kind: type | tuple[type, ...], what: str, *, source: str | None,
           field: str) -> Any:
    """``value`` if it is of ``kind`` (a bool only where ``kind`` names bool), else the
    :class:`ConfigError` that names the file, the field and ``what`` was expected."""
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in (
            kind if isinstance(kind, tuple) else (kind,))):
        raise ConfigError(f"expected {what}, got {value!r}", source=source, field=field)
    return value


def _tier_from_toml(name: str, raw: object, *, source: str, site: str, home: Path) -> TierConfig:
    where = f"tiers.{name}"
    table = expect(raw, dict, "a table", source=source, field=where)
    unknown = sorted(set(table) - _TIER_KEYS)
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} (expected one of "
                          f"{', '.join(sorted(_TIER_KEYS))})", source=source, field=where)
    for required in ("class", "url"):
        if required not in table:
            raise ConfigError("is required", source=source, field=f"{where}.{required}")
    url = expect(table["url"], str, "an fsspec URL string", source=source, field=f"{where}.url")
    if "://" not in url:  # a bare path: relative to home, as a local folder
        url = (home / url).absolute().as_uri()
    capacity = table.get("capacity")
    num = (int, float)
    try:
        return TierConfig(
            name=name,
            tier_class=TierClass.parse(table["class"], source=source, field=f"{where}.class"),
            url=url,
            options=expect(table.get("options", {}), dict, "a table of fsspec options",
                            source=source, field=f"{where}.options"),
            capacity=None if capacity is None else parse_size(
                capacity, source=source, field=f"{where}.capacity"),
            high_watermark=float(expect(table.get("high_watermark", 0.9), num, "a fraction",
                                         source=source, field=f"{where}.high_watermark")),
            low_watermark=float(expect(table.get("low_watermark", 0.75), num, "a fraction",
                                        source=source, field=f"{where}.low_watermark")),
            site=expect(table.get("site", site), str, "a site name", source=source,
                         field=f"{where}.site"),
            max_concurrency=expect(table.get("max_concurrency", 16), int, "an integer",
                                    source=source, field=f"{where}.max_concurrency"),
            timeout=float(expect(table.get("timeout", 30.0), num, "seconds", source=source,
                                  field=f"{where}.timeout")),
            fsync=expect(table.get("fsync", True), bool, "true or false", source=source,
                          field=f"{where}.fsync"),
        )
    except ConfigError as exc:
        if exc.source is None:
            raise ConfigError(str(exc), source=source) from None
        raise


def config_from_toml(text: str, *, source: str, home: Path | None = None,
                     site: str | None = None) -> Config:
    """Build a :class:`Config` from TOML text; errors name ``source``, the field and the fix."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML ({exc})", source=source) from None
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} (expected one of "
                          f"{', '.join(sorted(_TOP_KEYS))})", source=source)
    home = Path(expect(raw.get("home", str(home or ".tierstore")), str, "a folder path",
                        source=source, field="home")).absolute()
    site = site or expect(raw.get("site", "local"), str, "a site name", source=source,
                           field="site")
    tiers_raw = expect(raw.get("tiers", {}), dict, "a table of tiers", source=source,
                        field="tiers")
    tiers = {name: _tier_from_toml(name, table, source=source, site=site, home=home)
             for name, table in tiers_raw.items()}
    default_tier = expect(raw.get("default_tier", next(iter(tiers), "")), str, "a tier name",
                           source=source, field="default_tier")
    catalog = expect(raw.get("catalog", f"sqlite:///{home / 'catalog.db'}"), str,
                      "a catalog URL such as sqlite:///path/catalog.db", source=source,
                      field="catalog")
    return Config(home=home, catalog=catalog, tiers=tiers, default_tier=default_tier,
                  site=site, source=source,
                  verify_reads=expect(raw.get("verify_reads", False), bool, "true or false",
                                       source=source, field="verify_reads"),
                  adopted_check=parse_duration(raw.get("adopted_check", 0), source=source,
                                               field="adopted_check"),
                  policies=expect(raw.get("policies", {}), dict, "a table of policy settings",
                                   source=source, field="policies"),
                  carbon=expect(raw.get("carbon", {}), dict, "a table naming an intensity "
                                 "source", source=source, field="carbon"),
                  energy=expect(raw.get("energy", {}), dict, "a table of energy figures",
                                 source=source, field="energy"),
                  locality=LocalitySettings.from_mapping(raw.get("locality", {}),
                                                         source=source))


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the configuration a user means.

    In order: ``path``; ``$TIERSTORE_CONFIG``; ``tierstore.toml`` in ``$TIERSTORE_HOME``
    (default ``./.tierstore``); else the embedded default under that home. ``$TIERSTORE_SITE``
    overrides the reader's site.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The TOML file to read; looked for as above if None.

    Returns
    -------
    Config
        The configuration.

    Raises
    ------
    ConfigError
        If the file cannot be read, is not UTF-8, or is malformed (the message names the
        file and the field), or ``$TIERSTORE_SITE`` is not a site.
    """
    home = Path(os.environ.get("TIERSTORE_HOME", ".tierstore"))
    site = os.environ.get("TIERSTORE_SITE") or None
    if site is not None:
        parse_site(site, source="$TIERSTORE_SITE")
    chosen = path or os.environ.get("TIERSTORE_CONFIG")
    candidate = Path(chosen) if chosen else home / CONFIG_NAME
    if chosen or candidate.is_file():
        try:
            text = candidate.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config ({exc.strerror})", source=str(candidate)) \
                from None
        except UnicodeDecodeError as exc:  # TOML is UTF-8 by definition
            raise ConfigError(f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                              f"{exc.start}); save the file as UTF-8", source=str(candidate)) \
                from None
        return config_from_toml(text, source=str(candidate), home=home, site=site)
    return default_config(home, site=site or "local")


CONFIG_TEMPLATE = '''\
# tierstore configuration (TOML). Reference: README.md, "Configuration".
# Credentials are never written here: S3 tiers take them from the usual AWS environment
# variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or an AWS profile (options.profile).

home = "{home}"                      # data directory: the catalog and default tier folders
catalog = "sqlite:///{home}/catalog.db"   # SQLite in WAL mode; one file per store
default_tier = "warm"                # where `put` writes unless told otherwise
site = "local"                       # this reader's site, "region/zone/node" widest first
                                     # (one to three parts; overridden by $TIERSTORE_SITE)
verify_reads = false                 # verify the checksum of every whole-object read
adopted_check = "0s"                 # an adopted object's copy is served once its file is seen
                                     # unchanged, looked at again after this long (0: each read)

[tiers.hot]
class = "hot"                        # hot | warm | cold: the read path prefers hot
url = "{home}/tiers/hot"             # any fsspec URL; a bare path is a local folder
capacity = "50GiB"                   # optional; the daemon keeps usage under the watermarks
high_watermark = 0.9
low_watermark = 0.75
# fsync = true                       # new replicas on disk before an old copy goes (local)

[tiers.warm]
class = "warm"
url = "{home}/tiers/warm"
# An S3-compatible warm tier instead (MinIO, Ceph RGW, AWS S3):
# url = "s3://my-bucket/datasets"
# [tiers.warm.options]
# endpoint_url = "http://127.0.0.1:9000"
# max_concurrency = 16                # requests in flight to this tier

[tiers.cold]
class = "cold"
url = "{home}/tiers/cold"
# site = "eu-west/az-b"              # where a tier lives (default: the reader's site); reads
                                     # prefer the same node, then zone, then region

# [locality]                         # replica selection (README, "Locality"); the defaults:
# read_deadline = 60.0               # seconds before a read gives up with one clear error
# trip_after = 3                     # consecutive failures that take an endpoint out of rotation
# cooldown = 5.0                     # seconds out of rotation, then one probe read decides
# hedge = true                       # hedge small reads after the chosen replica's p95
# hedge_max_bytes = "1MiB"
# hotter_wins_within = 0.5           # a hotter copy is read unless measured >50% costlier
# hot_wins_within = 3.0              # a hot (staged) copy unless measured >4x costlier
# repair_on_read = true              # a replica a verified read finds corrupt is replaced
# [locality.placement]               # per tier class: replicas, spread over node|zone|region
# warm = {{ replicas = 2, spread = "zone" }}  # put writes them; the daemon repairs them
'''
