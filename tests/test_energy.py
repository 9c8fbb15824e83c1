"""The energy model: every figure an estimate, from documented defaults."""

from __future__ import annotations

import pytest

from tierstore.energy import ACCELERATOR_WATTS, DEFAULT_INTENSITY, EnergyModel
from tierstore.errors import ConfigError


def test_an_accelerators_wait_as_energy_and_emissions() -> None:
    model = EnergyModel.of("a100-sxm", intensity=100.0)
    assert model.accelerator_watts == ACCELERATOR_WATTS["a100-sxm"] == 400.0
    idle = model.idle(9.0, accelerators=2)
    assert idle.joules == 9.0 * 2 * 400.0
    assert idle.grams_co2e == pytest.approx(7200.0 / 3.6e6 * 100.0)
    assert idle.as_dict()["estimate"] is True and "estimates" in model.describe()
    assert EnergyModel.of().intensity == DEFAULT_INTENSITY


def test_an_unknown_accelerator_needs_its_watts() -> None:
    with pytest.raises(ConfigError, match="unknown accelerator 'tpu-v9'"):
        EnergyModel.of("tpu-v9")
    assert EnergyModel.of("tpu-v9", watts=200.0).idle(1.0).joules == 200.0
    with pytest.raises(ConfigError):
        EnergyModel.of("l4", watts=0.0)
