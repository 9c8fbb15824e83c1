"""Energy and carbon, estimated: the model behind every such figure tierstore reports.

Every figure is an estimate, and says so where it is shown. The model so far:

- An accelerator waiting for data draws power for nothing. Its draw is taken as its board
  power (the vendor's TDP, :data:`ACCELERATOR_WATTS`): an upper estimate, since a waiting
  chip clocks down; where a GPU exists, NVML's reading would replace it (these machines have
  none).
- Emissions are energy times the grid's carbon intensity, by default the world average of
  about 480 gCO2e/kWh (Ember, *Global Electricity Review 2024*, for 2023); set it to your
  grid's.

Not yet: storage power per tier class, the energy of bytes moved per distance class, and
carbon-aware scheduling (issue 17 asks for them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = ["ACCELERATOR_WATTS", "DEFAULT_ACCELERATOR", "DEFAULT_INTENSITY", "EnergyModel",
           "Estimate"]

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


@dataclass(frozen=True, slots=True)
class Estimate:
    """Energy (J) and emissions (gCO2e) of something, estimated."""

    joules: float
    grams_co2e: float

    def as_dict(self) -> dict[str, Any]:
        return {"joules": round(self.joules, 3), "grams_co2e": round(self.grams_co2e, 4),
                "estimate": True}


@dataclass(frozen=True, slots=True)
class EnergyModel:
    """What energy and carbon figures are computed with: the accelerator and its draw, and
    the grid's carbon intensity (see the module)."""

    accelerator: str = DEFAULT_ACCELERATOR
    accelerator_watts: float = ACCELERATOR_WATTS[DEFAULT_ACCELERATOR]
    intensity: float = DEFAULT_INTENSITY  # gCO2e/kWh

    @classmethod
    def of(cls, accelerator: str = DEFAULT_ACCELERATOR, *, watts: float | None = None,
           intensity: float = DEFAULT_INTENSITY) -> EnergyModel:
        """The model for ``accelerator`` (a name of :data:`ACCELERATOR_WATTS`, or any name
        with ``watts``)."""
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

    def idle(self, seconds: float, accelerators: int = 1) -> Estimate:
        """What ``accelerators`` waiting ``seconds`` each cost."""
        joules = seconds * accelerators * self.accelerator_watts
        return Estimate(joules, joules / JOULES_PER_KWH * self.intensity)

    def describe(self) -> str:
        return (f"{self.accelerator} at {self.accelerator_watts:g} W board power, "
                f"{self.intensity:g} gCO2e/kWh: estimates")
