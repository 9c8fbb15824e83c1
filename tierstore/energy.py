"""Energy and carbon, estimated: the model behind every such figure tierstore reports.

Every figure is an estimate, and says so where it is shown. The model so far:

- An accelerator waiting for data draws power for nothing. Its draw is taken as its board
  power (the vendor's TDP, :data:`ACCELERATOR_WATTS`): an upper estimate, since a waiting
  chip clocks down; where a GPU exists, NVML's reading would replace it (these machines have
  none).
- Bytes held on a tier draw power whether read or not, and reading or writing them costs
  energy per byte: per tier class, :data:`MEDIA` (watts per TB held, joules per GB read and
  written), from the data sheets of a drive typical of each class: the hot tier's drive sits
  in the compute node (its figures alone), the warm and cold tiers' behind storage servers
  (the drive's figures doubled for the servers and network in front: an assumption, not a
  measurement). So a TB on warm SSD object storage may draw more than on hot NVMe: what
  tiering saves there is the hot tier's capacity, not power; a TB on slow disks draws less.
- Bytes moved between sites cost network energy per byte by distance class,
  :data:`NETWORK_JOULES_PER_GB`: remote is the internet's transmission figure of Aslan et al.
  (*J. Ind. Ecol.* 2018: 0.06 kWh/GB in 2015, halving every two years, so about 0.004 kWh/GB
  by 2023); a region's, a zone's and a node's are assumed fractions of it (1/2, 1/10, none:
  a copy on one node costs only its drives).
- Emissions are energy times the grid's carbon intensity, by default the world average of
  about 480 gCO2e/kWh (Ember, *Global Electricity Review 2024*, for 2023); set it to your
  grid's, or let a carbon-intensity source tell it (:mod:`tierstore.carbon`).

Every default can be replaced in the config's ``[energy]`` table (:meth:`EnergyModel.from_config`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import TierClass, expect
from .errors import ConfigError
from .locality.topology import Distance

if TYPE_CHECKING:
    from .config import Config

__all__ = ["ACCELERATOR_WATTS", "DEFAULT_ACCELERATOR", "DEFAULT_INTENSITY", "JOULES_PER_KWH",
           "MEDIA", "NETWORK_JOULES_PER_GB", "EnergyDay", "EnergyLedger", "EnergyModel",
           "Estimate", "Media"]

# Board power (TDP) in watts, from each vendor's data sheet.
ACCELERATOR_WATTS: Mapping[str, float] = {
    "h100-sxm": 700.0,  # NVIDIA H100 SXM5
    "h100-pcie": 350.0,  # NVIDIA H100 PCIe
    "a100-sxm": 400.0,  # NVIDIA A100 SXM4
    "a100-pcie": 300.0,  # NVIDIA A100 PCIe 80GB
    "l40s": 350.0,  # NVIDIA L40S
    "l4": 72.0,  # NVIDIA L4
    "v100-sxm": 300.0,  # NVIDIA V100 SXM2
    "mi300x": 750.0,  # AMD Instinct MI300X
}
DEFAULT_ACCELERATOR = "h100-sxm"
DEFAULT_INTENSITY = 480.0  # gCO2e/kWh: the world's average in 2023 (Ember)
JOULES_PER_KWH = 3.6e6
TB, GB = 1e12, 1e9


@dataclass(frozen=True, slots=True)
class Media:
    """What a tier class's storage draws, estimated.

    Attributes
    ----------
    watts_per_tb : float
        Watts per TB held, read or not.
    joules_per_gb_read, joules_per_gb_written : float
        Joules per GB read and written.
    """

    watts_per_tb: float
    joules_per_gb_read: float
    joules_per_gb_written: float


MEDIA: Mapping[TierClass, Media] = {
    # an enterprise NVMe drive (Samsung PM9A3 U.2: up to 6.5 GB/s read and 3.5 GB/s
    # written, as announced; ~3.5 W idle and ~13 W busy for a 3.84 TB one, an estimate)
    TierClass.HOT: Media(watts_per_tb=1.0, joules_per_gb_read=2.0, joules_per_gb_written=3.7),
    # object storage on SSD: the same drives, doubled for the servers and network in front
    TierClass.WARM: Media(watts_per_tb=2.0, joules_per_gb_read=4.0, joules_per_gb_written=7.4),
    # slow disks behind servers (Seagate Exos X20 20 TB: ~5.4 W idle, ~9.4 W busy at ~270
    # MB/s), doubled as warm's
    TierClass.COLD: Media(watts_per_tb=0.54, joules_per_gb_read=70.0,
                          joules_per_gb_written=70.0),
}
NETWORK_JOULES_PER_GB: Mapping[Distance, float] = {
    Distance.NODE: 0.0,
    Distance.ZONE: 0.1 * 0.004 * JOULES_PER_KWH,
    Distance.REGION: 0.5 * 0.004 * JOULES_PER_KWH,
    Distance.REMOTE: 0.004 * JOULES_PER_KWH,  # Aslan et al. (2018), extrapolated to 2023
}


@dataclass(frozen=True, slots=True)
class Estimate:
    """Energy and emissions of something, estimated.

    Attributes
    ----------
    joules : float
        Energy, in J.
    grams_co2e : float
        Emissions, in gCO2e.
    """

    joules: float
    grams_co2e: float

    def as_dict(self) -> dict[str, Any]:
        """The estimate as JSON: rounded, and marked ``"estimate": True``.

        Returns
        -------
        dict
            ``joules``, ``grams_co2e`` and ``estimate``.
        """
        return {"joules": round(self.joules, 3), "grams_co2e": round(self.grams_co2e, 4),
                "estimate": True}


@dataclass(frozen=True, slots=True)
class EnergyModel:
    """What energy and carbon figures are computed with (see the module).

    Attributes
    ----------
    accelerator : str
        The accelerator's name (a key of :data:`ACCELERATOR_WATTS`, or any name).
    accelerator_watts : float
        Its draw while waiting, in W: its board power (TDP), an upper estimate.
    intensity : float
        The grid's carbon intensity, in gCO2e/kWh.
    media : mapping of TierClass to Media
        What each tier class's storage draws (:data:`MEDIA` by default).
    network : mapping of Distance to float
        Joules per GB moved, per distance class (:data:`NETWORK_JOULES_PER_GB`).
    """

    accelerator: str = DEFAULT_ACCELERATOR
    accelerator_watts: float = ACCELERATOR_WATTS[DEFAULT_ACCELERATOR]
    intensity: float = DEFAULT_INTENSITY  # gCO2e/kWh
    media: Mapping[TierClass, Media] = field(default_factory=lambda: dict(MEDIA))
    network: Mapping[Distance, float] = field(
        default_factory=lambda: dict(NETWORK_JOULES_PER_GB))

    @classmethod
    def of(cls, accelerator: str = DEFAULT_ACCELERATOR, *, watts: float | None = None,
           intensity: float = DEFAULT_INTENSITY) -> EnergyModel:
        """Make the model for an accelerator.

        Parameters
        ----------
        accelerator : str, default DEFAULT_ACCELERATOR
            A name of :data:`ACCELERATOR_WATTS`, or any name with ``watts``.
        watts : float, optional
            Its draw in W; looked up by name if None.
        intensity : float, default DEFAULT_INTENSITY
            The grid's carbon intensity, in gCO2e/kWh.

        Returns
        -------
        EnergyModel
            The model, with the default media and network figures.

        Raises
        ------
        ConfigError
            If the accelerator is unknown without ``watts``, ``watts`` is not positive or
            ``intensity`` is negative.
        """
        if watts is None:
            if accelerator not in ACCELERATOR_WATTS:
                raise ConfigError(f"unknown accelerator {accelerator!r}: one of "
                                  f"{', '.join(ACCELERATOR_WATTS)}, or give its watts",
                                  field="energy.accelerator")
            watts = ACCELERATOR_WATTS[accelerator]
        if not (watts > 0 and intensity >= 0):
            raise ConfigError(f"expected watts > 0 and an intensity >= 0, got {watts!r} and "
                              f"{intensity!r}", field="energy")
        return cls(accelerator, float(watts), float(intensity))

    @classmethod
    def from_config(cls, config: Config) -> EnergyModel:
        """Make the model a config's ``[energy]`` table describes.

        The defaults stand for what it leaves out::

            [energy]
            accelerator = "a100-sxm"      # or any name with accelerator_watts
            accelerator_watts = 400
            intensity = 250               # gCO2e/kWh, when no [carbon] source says
            [energy.media.warm]           # per tier class: hot, warm, cold
            watts_per_tb = 3.5
            joules_per_gb_read = 5
            joules_per_gb_written = 8
            [energy.network]              # joules per GB moved, per distance class
            region = 2000

        Parameters
        ----------
        config : Config
            The store's config.

        Returns
        -------
        EnergyModel
            The model.

        Raises
        ------
        ConfigError
            If the table has an unknown key, tier class or distance, or a value that is not
            a number >= 0 (or a table where one is expected).
        """
        table, source = dict(config.energy), config.source
        unknown = set(table) - {"accelerator", "accelerator_watts", "intensity", "media",
                                "network"}
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(sorted(unknown))}: expected "
                              "accelerator, accelerator_watts, intensity, media, network",
                              source=source, field="energy")
        watts = (_number(table, "accelerator_watts", source, "energy.accelerator_watts")
                 if "accelerator_watts" in table else None)
        model = cls.of(str(table.get("accelerator", DEFAULT_ACCELERATOR)), watts=watts,
                       intensity=_number(table, "intensity", source, "energy.intensity",
                                         default=DEFAULT_INTENSITY))
        media = dict(model.media)
        for name in _table(table, "media", source, "energy.media"):
            tier_class = TierClass.parse(name, source=source, field="energy.media")
            given = _table(table["media"], name, source, f"energy.media.{name}")
            known = {"watts_per_tb", "joules_per_gb_read", "joules_per_gb_written"}
            if set(given) - known:
                raise ConfigError(f"unknown key(s) {', '.join(sorted(set(given) - known))}: "
                                  f"expected {', '.join(sorted(known))}", source=source,
                                  field=f"energy.media.{name}")
            media[tier_class] = replace(media[tier_class], **{
                key: _number(given, key, source, f"energy.media.{name}.{key}")
                for key in given})
        network = dict(model.network)
        for name in _table(table, "network", source, "energy.network"):
            try:
                distance = Distance[str(name).upper()]
            except KeyError:
                raise ConfigError(f"unknown distance {name!r}: expected node, zone, region "
                                  "or remote", source=source, field="energy.network") from None
            network[distance] = _number(table["network"], name, source,
                                        f"energy.network.{name}")
        return replace(model, media=media, network=network)

    def idle(self, seconds: float, accelerators: int = 1) -> Estimate:
        """Estimate what accelerators waiting for data cost.

        Parameters
        ----------
        seconds : float
            How long each waited.
        accelerators : int, default 1
            How many waited.

        Returns
        -------
        Estimate
            Their energy and emissions.
        """
        return self.estimate(seconds * accelerators * self.accelerator_watts)

    def estimate(self, joules: float, intensity: float | None = None) -> Estimate:
        """Estimate the emissions of some energy.

        Parameters
        ----------
        joules : float
            The energy, in J.
        intensity : float, optional
            gCO2e/kWh; the model's if None.

        Returns
        -------
        Estimate
            ``joules`` and their emissions.
        """
        at = self.intensity if intensity is None else intensity
        return Estimate(joules, joules / JOULES_PER_KWH * at)

    def storage_watts(self, tier_class: TierClass, nbytes: float) -> float:
        """Estimate what bytes held on a tier draw.

        Parameters
        ----------
        tier_class : TierClass
            The tier's class.
        nbytes : float
            The bytes held.

        Returns
        -------
        float
            Their draw, in W.
        """
        return nbytes / TB * self.media[tier_class].watts_per_tb

    def not_carried(self, counts: Mapping[tuple[Distance, Distance], int]) -> float:
        """Estimate the network energy locality saved.

        Parameters
        ----------
        counts : Mapping[tuple[Distance, Distance], int]
            Bytes read at the second distance of each key where a reader blind to sites
            would have carried them from the first (``Locality.not_carried``).

        Returns
        -------
        float
            The energy, in J: each count's bytes at the first distance's J/GB less the
            second's.
        """
        return sum(n / GB * (self.network[far] - self.network[near])
                   for (far, near), n in counts.items())

    def move_joules(self, nbytes: float, src: TierClass | None, dst: TierClass,
                    distance: Distance) -> float:
        """Estimate the energy of moving bytes: read, carried, written.

        Parameters
        ----------
        nbytes : float
            The bytes moved.
        src : TierClass or None
            The class of the tier read; None when not read from a tier.
        dst : TierClass
            The class of the tier written.
        distance : Distance
            How far they are carried.

        Returns
        -------
        float
            The energy, in J.
        """
        read = 0.0 if src is None else self.media[src].joules_per_gb_read
        return nbytes / GB * (read + self.network[distance]
                              + self.media[dst].joules_per_gb_written)

    def describe(self) -> str:
        """Describe the model in one line, for reports.

        Returns
        -------
        str
            The accelerator, its draw and the intensity, marked as estimates.
        """
        return (f"{self.accelerator} at {self.accelerator_watts:g} W board power, "
                f"{self.intensity:g} gCO2e/kWh: estimates")


def _table(table: Mapping[str, Any], key: str, source: str | None, field: str
           ) -> Mapping[str, Any]:
    return expect(table.get(key, {}), dict, "a table", source=source, field=field)


def _number(table: Mapping[str, Any], key: str, source: str | None, field: str, *,
            default: float | None = None) -> float:
    value = expect(table.get(key, default), (int, float), "a number >= 0", source=source,
                   field=field)
    if value < 0:
        raise ConfigError(f"expected a number >= 0, got {value!r}", source=source,
                          field=field)
    return float(value)


# -- the daemon's record of what storage and moves cost, day by day --------------------------

LEDGER_GAP_MAX = 86400.0  # seconds of storage power one entry counts at most (a long pause)


@dataclass(frozen=True, slots=True)
class EnergyDay:
    """One UTC day of a ledger; every figure an estimate.

    Attributes
    ----------
    day : str
        The day, ``YYYY-MM-DD``.
    storage_joules : dict of str to float
        Joules of bytes held, per tier.
    move_joules : float
        Joules of moves.
    grams_co2e : float
        gCO2e of all of it.
    idle_joules : float
        Joules of accelerators waiting for data, as loaders reported each pass.
    """

    day: str  # YYYY-MM-DD
    storage_joules: dict[str, float]
    move_joules: float
    grams_co2e: float
    idle_joules: float = 0.0  # accelerators waiting for data, as loaders reported each pass

    @property
    def joules(self) -> float:
        return sum(self.storage_joules.values()) + self.move_joules + self.idle_joules

    def as_dict(self) -> dict[str, Any]:
        """The day as JSON, with its total :attr:`joules`, marked ``"estimate": True``.

        Returns
        -------
        dict
            The fields, ``joules`` and ``estimate``.
        """
        return {"day": self.day, "storage_joules": self.storage_joules,
                "move_joules": self.move_joules, "idle_joules": self.idle_joules,
                "joules": self.joules, "grams_co2e": self.grams_co2e, "estimate": True}


class EnergyLedger:
    """What a store's storage, moves and readers cost, as JSON lines.

    The lines are in ``path`` (the store's ``energy.jsonl``): the daemon's, one per cycle, with
    the tiers' power then, counted over the time since its previous line (at most
    :data:`LEDGER_GAP_MAX`), and the energy and emissions of the cycle's moves; each loader's,
    one per pass it finished, with its accelerator's waiting for data (:meth:`add_idle`).
    ``tierstore report energy`` sums them by day.

    Parameters
    ----------
    path : str or os.PathLike
        The JSON-lines file.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._last: float | None = None

    @staticmethod
    def of(config: Config) -> EnergyLedger:
        """Open a store's ledger, ``<home>/energy.jsonl``.

        Parameters
        ----------
        config : Config
            The store's config.

        Returns
        -------
        EnergyLedger
            The ledger.
        """
        return EnergyLedger(Path(config.home) / "energy.jsonl")

    def append(self, *, watts: Mapping[str, float], move_joules: float, move_grams: float,
               intensity: float, at: float | None = None) -> None:
        """Append one daemon cycle's line.

        The line is written whole, appended: a crash loses at most that line. Its storage
        power counts over the time since the daemon's previous line, at most
        :data:`LEDGER_GAP_MAX` seconds.

        Parameters
        ----------
        watts : mapping of str to float
            Each tier's estimated power now, in W.
        move_joules : float
            The energy of the cycle's moves, in J.
        move_grams : float
            Their emissions, in gCO2e.
        intensity : float
            The grid's carbon intensity now, in gCO2e/kWh.
        at : float, optional
            When, in seconds since the epoch; now if None.
        """
        now = time.time() if at is None else at
        if self._last is None:
            self._last = self._last_time()
        seconds = 0.0 if self._last is None else min(max(0.0, now - self._last),
                                                     LEDGER_GAP_MAX)
        self._write({"time": now, "seconds": seconds, "watts": dict(watts),
                     "move_joules": move_joules, "move_grams": move_grams,
                     "intensity": intensity})
        self._last = now

    def add_idle(self, idle: Estimate, *, rank: int, at: float | None = None) -> None:
        """Append a loader's line: its accelerator waited for data over a pass, at this cost.

        Parameters
        ----------
        idle : Estimate
            The cost of the waiting.
        rank : int
            The loader's rank.
        at : float, optional
            When, in seconds since the epoch; now if None.
        """
        self._write({"time": time.time() if at is None else at, "rank": rank,
                     "idle_joules": idle.joules, "idle_grams": idle.grams_co2e})

    def _write(self, entry: Mapping[str, Any]) -> None:
        """One line, written whole in one append (processes share the file)."""
        line = json.dumps(entry) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as out:
            if out.tell() and not _ends_a_line(self.path):
                line = "\n" + line  # after a line a crash cut short, a line of its own
            out.write(line.encode())

    def _last_time(self) -> float | None:
        """When the daemon's last line was written (None: none yet)."""
        last = None
        with contextlib.suppress(FileNotFoundError):
            for entry in self.entries():
                if "watts" in entry:
                    last = entry["time"]
        return last

    def entries(self) -> Iterable[dict[str, Any]]:
        """Read its lines, in order; a line cut short by a crash is skipped.

        Yields
        ------
        dict
            Each line's entry.

        Raises
        ------
        FileNotFoundError
            If the ledger has no file yet.
        """
        with open(self.path, encoding="utf-8") as lines:
            for line in lines:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict) and "time" in entry:
                        yield entry

    def days(self, since: float | None = None) -> list[EnergyDay]:
        """Sum its lines by UTC day.

        Parameters
        ----------
        since : float, optional
            Only lines from then on, in seconds since the epoch.

        Returns
        -------
        list of EnergyDay
            One per day, in order; empty without a file.
        """
        storage: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        moves: dict[str, float] = defaultdict(float)
        idle: dict[str, float] = defaultdict(float)
        grams: dict[str, float] = defaultdict(float)
        try:
            for entry in self.entries():
                if since is not None and entry["time"] < since:
                    continue
                day = datetime.fromtimestamp(entry["time"], UTC).strftime("%Y-%m-%d")
                held = 0.0
                for tier, watts in entry.get("watts", {}).items():
                    storage[day][tier] += watts * entry.get("seconds", 0.0)
                    held += watts * entry.get("seconds", 0.0)
                moves[day] += entry.get("move_joules", 0.0)
                idle[day] += entry.get("idle_joules", 0.0)
                grams[day] += (held / JOULES_PER_KWH * entry.get("intensity", DEFAULT_INTENSITY)
                               + entry.get("move_grams", 0.0) + entry.get("idle_grams", 0.0))
        except FileNotFoundError:
            return []
        return [EnergyDay(day, dict(storage[day]), moves[day], grams[day], idle[day])
                for day in sorted(set(storage) | set(moves) | set(idle))]


def _ends_a_line(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
