"""Carbon-intensity sources (tierstore.carbon): a constant, forecast files (CSV, JSON, each
API's saved answer), a real HTTP server in the shapes of the Carbon Aware SDK and Electricity
Maps, and the [carbon] table; bad input is one typed line naming its source, never a token."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from intensityserver import TOKEN, IntensityServer, iso

from tierstore.carbon import (
    CarbonSettings,
    ConstantIntensity,
    Forecast,
    ForecastFile,
    HttpIntensity,
    Step,
    move_grams,
)
from tierstore.config import config_from_toml
from tierstore.errors import ConfigError, IntensityMalformed, IntensityUnavailable

T0 = 1780272000.0  # 2026-06-01T00:00Z
HOUR = 3600.0


def hours(*values: float) -> list[tuple[float, float]]:
    return [(T0 + i * HOUR, v) for i, v in enumerate(values)]


def test_a_forecast_is_a_step_function_and_says_what_it_does_not_know() -> None:
    forecast = Forecast.from_points([(T0, 500, None), (T0 + HOUR, 200, None),
                                     (T0 + 2 * HOUR, 300, None)])
    assert forecast.at(T0 - 1) is None  # before the first point: unknown, not guessed
    assert forecast.at(T0) == 500 and forecast.at(T0 + HOUR - 1) == 500
    assert forecast.at(T0 + HOUR) == 200
    assert forecast.at(T0 + 3 * HOUR - 1) == 300  # the last point lasts the usual step
    assert forecast.at(T0 + 3 * HOUR) is None
    assert forecast.between(T0 + 1800, T0 + HOUR + 60) == [
        Step(T0 + 1800, T0 + HOUR, 500), Step(T0 + HOUR, T0 + HOUR + 60, 200)]
    # a point's own duration ends it sooner: a gap in the forecast stays unknown
    gappy = Forecast.from_points([(T0, 400, 600.0), (T0 + HOUR, 100, None)])
    assert gappy.at(T0 + 300) == 400 and gappy.at(T0 + 900) is None


def test_constant_intensity_and_move_emissions() -> None:
    flat = ConstantIntensity(480)
    assert flat.intensity(T0) == 480 and flat.forecast(T0, T0 + 10).at(T0 + 5) == 480
    assert move_grams(2**30, 480) > move_grams(2**30, 100) > 0
    with pytest.raises(ValueError):
        ConstantIntensity(-1)


@pytest.mark.parametrize("text", [
    "time,gco2e_per_kwh\n2026-06-01T00:00Z,500\n2026-06-01T01:00Z,200\n",
    "2026-06-01T00:00:00+00:00,500\n2026-06-01T01:00:00+00:00,200\n",  # no header
    f"timestamp,intensity\n{T0:.0f},500\n{T0 + HOUR:.0f},200\n",  # epoch seconds
    "# a comment\ntime,value,site\n2026-06-01T00:00,500,eu\n2026-06-01T01:00,200,eu\n"
    "2026-06-01T00:00,50,ca\n",  # naive ISO is UTC
])
def test_csv_forecasts(tmp_path: Path, text: str) -> None:
    path = tmp_path / "f.csv"
    path.write_text(text)
    forecast = ForecastFile(path).forecast(T0, T0 + 2 * HOUR, "eu")
    assert forecast.at(T0 + 10) == 500 and forecast.at(T0 + HOUR + 10) == 200


def test_a_file_per_site_and_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("time,gco2e_per_kwh,site\n2026-06-01T00:00Z,500,eu\n"
                    "2026-06-01T00:00Z,40,ca\n")
    source = ForecastFile(path)
    assert source.intensity(T0, "eu") == 500 and source.intensity(T0, "ca") == 40
    with pytest.raises(IntensityMalformed, match=r"no intensity for site 'us'.*ca, eu"):
        source.intensity(T0, "us")
    path.write_text("time,gco2e_per_kwh\n2026-06-01T00:00Z,123\n")
    assert source.intensity(T0, "us") == 123


@pytest.mark.parametrize("data", [
    {iso(T0): 500, iso(T0 + HOUR): 200},  # time -> intensity
    {"eu": {iso(T0): 500, iso(T0 + HOUR): 200}},  # site -> (time -> intensity)
    [{"time": iso(T0), "gco2e_per_kwh": 500}, {"time": T0 + HOUR, "gco2e_per_kwh": 200}],
    {"zone": "eu", "forecast": [{"carbonIntensity": 500, "datetime": iso(T0)},  # EM
                                {"carbonIntensity": 200, "datetime": iso(T0 + HOUR)}]},
    [{"location": "eu", "forecastData": [  # the Carbon Aware SDK's forecast
        {"location": "eu", "timestamp": iso(T0), "duration": 60, "value": 500},
        {"location": "eu", "timestamp": iso(T0 + HOUR), "duration": 60, "value": 200}]}],
    [{"location": "eu", "time": iso(T0), "rating": 500, "duration": "01:00:00"},  # SDK
     {"location": "eu", "time": iso(T0 + HOUR), "rating": 200, "duration": "01:00:00"}],
])
def test_json_forecasts_in_every_shape(tmp_path: Path, data: object) -> None:
    path = tmp_path / "f.json"
    path.write_text(json.dumps(data))
    forecast = ForecastFile(path).forecast(T0, T0 + 2 * HOUR, "eu")
    assert forecast.at(T0 + 10) == 500 and forecast.at(T0 + HOUR + 10) == 200
    assert forecast.at(T0 + 2 * HOUR + 10) is None


@pytest.mark.parametrize(("text", "match"), [
    ("time,gco2e_per_kwh\n2026-06-01T00:00Z,lots\n", r"f\.csv, line 2: .*intensity"),
    ("time,gco2e_per_kwh\nyesterday,400\n", r"f\.csv, line 2: .*ISO 8601"),
    ("time,gco2e_per_kwh\n2026-06-01T00:00Z,-5\n", r"line 2: .*0 gCO2e/kWh or more"),
    ("time,gco2e_per_kwh\n2026-06-01T00:00Z\n", r"line 2: expected time,gco2e_per_kwh"),
    ("time,site\n2026-06-01T00:00Z,eu\n", r"line 1: the header has no intensity column"),
    ("time,gco2e_per_kwh\n", r"no intensity in it"),
    ('{"forecast": [{"datetime": "2026-06-01T00:00Z"}]', r"not valid JSON"),
    ('{"forecast": [{"datetime": "2026-06-01T00:00Z"}]}', r"expected a time .* intensity"),
    ('[1, 2]', r"expected an object"),
    ("[]", r"no intensity in it"),
])
def test_a_malformed_file_is_one_typed_line_naming_it(tmp_path: Path, text: str,
                                                      match: str) -> None:
    path = tmp_path / ("f.json" if text[:1] in "[{" else "f.csv")
    path.write_text(text)
    with pytest.raises(IntensityMalformed, match=match) as caught:
        ForecastFile(path).forecast(T0, T0 + HOUR)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IntensityMalformed, match=r"nope\.csv: cannot read the forecast"):
        ForecastFile(tmp_path / "nope.csv").forecast(T0, T0 + 1)


def test_the_carbon_aware_sdk_forecast(intensity_server: IntensityServer) -> None:
    intensity_server.points = hours(500, 200, 300)
    source = HttpIntensity(intensity_server.url, location="eastus")
    forecast = source.forecast(T0, T0 + 3 * HOUR)
    assert [forecast.at(T0 + i * HOUR + 1) for i in range(3)] == [500, 200, 300]
    assert intensity_server.requests == ["/emissions/forecasts/current"]


def test_an_sdk_without_forecasts_gives_its_emissions_by_location(
        intensity_server: IntensityServer) -> None:
    intensity_server.points = hours(500, 200)
    intensity_server.forecasts = False
    forecast = HttpIntensity(intensity_server.url).forecast(T0, T0 + 2 * HOUR, "westus")
    assert forecast.at(T0 + HOUR + 1) == 200
    assert intensity_server.requests == ["/emissions/forecasts/current",
                                         "/emissions/bylocations"]


def test_electricity_maps_with_its_token_kept_for_a_while(
        intensity_server: IntensityServer) -> None:
    intensity_server.points = hours(300, 100)
    now = [0.0]
    source = HttpIntensity(intensity_server.url, api="electricity-maps", location="DE",
                           token=TOKEN, cache_for=600, clock=lambda: now[0])
    assert source.forecast(T0, T0 + HOUR).at(T0 + HOUR) == 100
    intensity_server.points = hours(999, 999)
    assert source.forecast(T0, T0 + HOUR).at(T0) == 300  # kept
    now[0] = 601.0
    assert source.forecast(T0, T0 + HOUR).at(T0) == 999  # asked again
    assert len(intensity_server.requests) == 2
    assert TOKEN not in repr(source) and TOKEN not in source.describe()


def test_a_refused_token_is_an_error_that_does_not_show_it(
        intensity_server: IntensityServer) -> None:
    intensity_server.points = hours(300)
    source = HttpIntensity(intensity_server.url, api="electricity-maps", location="DE",
                           token="wrong-" + TOKEN)
    with pytest.raises(IntensityUnavailable, match="HTTP 401") as caught:
        source.forecast(T0, T0 + HOUR)
    assert TOKEN not in str(caught.value) and isinstance(caught.value, ConnectionError)


def test_an_answer_that_is_not_json(intensity_server: IntensityServer) -> None:
    intensity_server.broken = True
    with pytest.raises(IntensityMalformed, match="the answer is not JSON"):
        HttpIntensity(intensity_server.url).forecast(T0, T0 + HOUR)


def test_a_server_that_is_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nobody listens
    url = f"http://user:hunter2@127.0.0.1:{port}"
    with pytest.raises(IntensityUnavailable, match="cannot reach") as caught:
        HttpIntensity(url, timeout=2).forecast(T0, T0 + HOUR)
    assert "hunter2" not in str(caught.value) and "\n" not in str(caught.value)


def test_the_carbon_table(tmp_path: Path) -> None:
    settings = CarbonSettings.from_table({"forecast": "grid.csv", "max_deferral": "12h"},
                                         home=tmp_path)
    assert settings.forecast == tmp_path / "grid.csv" and settings.max_deferral == 43200
    source = CarbonSettings.from_table(
        {"url": "http://127.0.0.1:1", "api": "electricity-maps", "token_env": "MY_TOKEN"}
    ).make_source({"MY_TOKEN": TOKEN})
    assert isinstance(source, HttpIntensity) and source._token == TOKEN
    text = '[tiers.hot]\nclass = "hot"\nurl = "hot"\n[carbon]\nconstant = 300\n'
    config = config_from_toml(text, source="t.toml", home=tmp_path)
    found = CarbonSettings.from_config(config)
    assert found is not None and found.max_deferral == 86400
    assert CarbonSettings.from_config(config_from_toml(text.split("[carbon]")[0],
                                                       source="t.toml")) is None


@pytest.mark.parametrize(("table", "match"), [
    ({}, r"carbon: expected exactly one source"),
    ({"constant": 300, "url": "http://x"}, r"exactly one source.*\(got constant, url\)"),
    ({"constant": "lots"}, r"carbon\.constant: expected an intensity"),
    ({"url": "ftp://x"}, r"carbon\.url: expected an http"),
    ({"url": "http://x", "api": "watttime"}, r"carbon\.api: expected one of"),
    ({"constant": 1, "max_deferral": "soon"}, r"carbon\.max_deferral: expected a duration"),
    ({"constant": 1, "tokn_env": "X"}, r"unknown option 'tokn_env'"),
])
def test_a_bad_carbon_table_names_the_field(table: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as caught:
        CarbonSettings.from_table(table, source="t.toml")
    assert str(caught.value).startswith("t.toml: carbon")
