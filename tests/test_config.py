"""Configuration loading, the embedded default, sizes, redaction, and key validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierstore import ConfigError, InvalidKey, TierClass, load_config
from tierstore.config import CONFIG_TEMPLATE, TierConfig, parse_size, redact
from tierstore.keys import validate_key, validate_prefix


def test_embedded_default_has_three_local_tiers(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIERSTORE_CONFIG", raising=False)
    monkeypatch.setenv("TIERSTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TIERSTORE_SITE", "rack-7")
    config = load_config()
    assert [(t.name, t.tier_class) for t in config.tiers.values()] == [
        ("hot", TierClass.HOT), ("warm", TierClass.WARM), ("cold", TierClass.COLD)]
    assert config.tiers["hot"].url == (tmp_path / "home" / "tiers" / "hot").as_uri()
    assert config.catalog == f"sqlite:///{tmp_path / 'home' / 'catalog.db'}"
    assert config.site == "rack-7"


def test_template_loads_and_env_selects_it(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tierstore.toml"
    path.write_text(CONFIG_TEMPLATE.format(home=tmp_path))
    monkeypatch.setenv("TIERSTORE_CONFIG", str(path))
    config = load_config()
    assert config.source == str(path)
    assert config.tiers["hot"].capacity == 50 * 2**30
    assert config.default_tier == "warm"


def test_home_config_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIERSTORE_CONFIG", raising=False)
    monkeypatch.setenv("TIERSTORE_HOME", str(tmp_path))
    (tmp_path / "tierstore.toml").write_text(
        '[tiers.only]\nclass = "warm"\nurl = "data"\n')
    config = load_config()
    assert list(config.tiers) == ["only"]
    assert config.tiers["only"].url == (tmp_path / "data").as_uri()  # relative to home


@pytest.mark.parametrize(("text", "size"), [("100GiB", 100 * 2**30), ("1.5 TB", 1_500_000_000_000),
                                            ("512M", 512_000_000), ("7", 7), (4096, 4096),
                                            ("2kib", 2048)])
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["lots", "-5", "1.2.3GB", True, -1])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ConfigError):
        parse_size(bad)


def test_credentials_are_redacted_from_reprs() -> None:
    tier = TierConfig(name="w", tier_class=TierClass.WARM, url="s3://b/p",
                      options={"key": "AKIA-visible-id", "secret": "very-secret",
                               "client_kwargs": {"endpoint_url": "http://x",
                                                 "aws_secret_access_key": "hidden-too"}})
    text = repr(tier)
    assert "very-secret" not in text and "hidden-too" not in text
    assert "http://x" in text
    assert redact({"password": "p", "profile": "dev"}) == {"password": "***", "profile": "dev"}


@pytest.mark.parametrize("key", ["a", "a/b/c.tar", "ünïcode/ファイル", "/".join(["x" * 203] * 5),
                                 "dots.in/names..ok", "tierstore/x", ".hidden/file"])
def test_valid_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", ["", "/a", "a/", "a//b", "./a", "a/..", "a\x7fb", "a\\b",
                                 "x" * 1025, ".tierstore/x", ".tierstore"])
def test_invalid_keys(key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)


def test_prefixes() -> None:
    assert validate_prefix("") == ""
    assert validate_prefix("a/b/") == "a/b/"
    with pytest.raises(InvalidKey):
        validate_prefix("../")


def test_a_catalog_password_is_never_printed(tmp_path: Path) -> None:
    from tierstore.config import config_from_toml
    from tierstore.telemetry import secrets_of

    config = config_from_toml(
        'catalog = "postgresql://ts:pa%24%24word@db:5432/tierstore"\n'
        '[tiers.hot]\nclass = "hot"\nurl = "hot"\n', source="t.toml", home=tmp_path)
    assert "pa%24%24word" not in repr(config) and "ts:***@" not in repr(config)
    assert "***@db:5432" in repr(config)
    assert {"pa%24%24word", "pa$$word"} <= set(secrets_of(config))
