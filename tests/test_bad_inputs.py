"""The table of bad inputs: each gets a clear, typed error and leaves no partial state."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from storefixtures import make_config

from tierstore import (
    ConfigError,
    InvalidKey,
    NoReadableReplica,
    SyncStore,
    TierConfig,
    TierUnavailable,
    UnknownTier,
    load_config,
    open_store,
)

BAD_KEYS = ["", "/abs/path", "../up", "a/../../b", "a//b", "a/./b", "trailing/", "tab\there",
            "nul\x00", "newline\n", "back\\slash", "x" * 1025, "s/" + "y" * 256,
            ".tierstore/partial/x", "\udcff-surrogate", 42, None]


def assert_nothing_left(store: SyncStore) -> None:
    assert store.find() == []
    report = store.audit()
    assert report.ok, report


def test_invalid_keys(store: SyncStore) -> None:
    for key in BAD_KEYS:
        for call in (store.put, store.cat, store.move, store.rm, store.exists):
            args = (key, b"data") if call == store.put else (key, "hot") if call == store.move \
                else (key,)
            with pytest.raises(InvalidKey) as info:
                call(*args)  # type: ignore[operator]
            assert isinstance(info.value, ValueError), (call, key)
    assert_nothing_left(store)


def test_unknown_tier(store: SyncStore) -> None:
    with pytest.raises(UnknownTier, match=r"'lukewarm'.*configured: cold, hot, warm"):
        store.put("k", b"data", tier="lukewarm")
    assert_nothing_left(store)
    store.put("k", b"data")
    with pytest.raises(UnknownTier):
        store.move("k", "lukewarm")
    assert store.stat("k").tiers == ["warm"]


MALFORMED = [
    ("tiers = [", "not valid TOML"),
    ('colour = "blue"', "unknown option 'colour'"),
    ('[tiers.hot]\nurl = "/x"', "tiers.hot.class: is required"),
    ('[tiers.hot]\nclass = "tepid"\nurl = "/x"', "tiers.hot.class: expected one of hot"),
    ('[tiers.hot]\nclass = "hot"\nurl = "/x"\ncapacity = "lots"', "tiers.hot.capacity"),
    ('[tiers.hot]\nclass = "hot"\nurl = "/x"\nhigh_watermark = 0.5\nlow_watermark = 0.9',
     "low_watermark <= high_watermark"),
    ('[tiers.hot]\nclass = "hot"\nurl = "/x"\nspeed = 3', "unknown option 'speed'"),
    ('default_tier = "nope"\n[tiers.hot]\nclass = "hot"\nurl = "/x"', "default_tier"),
    ('[tiers.hot]\nclass = "hot"\nurl = 7', "tiers.hot.url: expected an fsspec URL"),
    ("tiers = 3", "tiers: expected a table"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_malformed_config_names_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tierstore.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")


def _with_warm(config, **changes):  # type: ignore[no-untyped-def]
    tiers = dict(config.tiers)
    tiers["warm"] = dataclasses.replace(tiers["warm"], **changes)
    return dataclasses.replace(config, tiers=tiers)


def test_missing_bucket(tmp_path: Path, moto_server) -> None:  # type: ignore[no-untyped-def]
    config = make_config(tmp_path, "moto", moto_server, "no-such-bucket")
    with open_store(config) as store:
        with pytest.raises(TierUnavailable, match="bucket"):
            store.put("k", b"data")
        assert store.aio.catalog.objects() == []


def test_server_down(tmp_path: Path, moto_server, dead_endpoint: str) -> None:  # type: ignore[no-untyped-def]
    bucket = moto_server.new_bucket()
    config = make_config(tmp_path, "moto", moto_server, bucket)
    with open_store(config) as store:
        store.put("both", b"on warm and hot")
        store.add_replica("both", "hot")
        store.put("warm-only", b"on warm")
    options = dict(config.tiers["warm"].options, secret="s3cr3t-do-not-print",
                   client_kwargs={"endpoint_url": dead_endpoint})
    down: TierConfig = config.tiers["warm"]
    with open_store(_with_warm(config, options=options, timeout=5.0)) as store:
        assert store.cat("both") == b"on warm and hot"  # hot answers first anyway
        with pytest.raises(TierUnavailable) as put_failed:
            store.put("new", b"data")
        with pytest.raises(NoReadableReplica) as read_failed:
            store.cat("warm-only")
        for failure in (put_failed.value, read_failed.value):
            assert "s3cr3t-do-not-print" not in str(failure)
            assert "\n" not in str(failure)
        assert "warm" in str(read_failed.value)
        assert not store.exists("new")
    assert down.options == moto_server.storage_options()
    with open_store(config) as store:  # the server is back: its rollback is finished
        assert store.aio.catalog.pending() == []
        assert store.audit().ok
        assert store.find() == ["both", "warm-only"]


def test_a_read_fails_over_when_the_nearest_server_is_down(tmp_path: Path, moto_server,  # type: ignore[no-untyped-def]
                                                          dead_endpoint: str) -> None:
    bucket = moto_server.new_bucket()
    config = make_config(tmp_path, "moto", moto_server, bucket)
    # warm is the nearest here: hot is made a remote site's tier
    with open_store(config) as store:
        store.put("k", b"payload")
        store.add_replica("k", "cold")
    options = dict(config.tiers["warm"].options, client_kwargs={"endpoint_url": dead_endpoint})
    with open_store(_with_warm(config, options=options, timeout=5.0)) as store:
        assert store.cat("k") == b"payload"  # warm failed, cold answered
        assert store.aio.fallbacks == 1
