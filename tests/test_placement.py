"""Placement rules per tier class (issue 5): the decision and the repair policy on plain data,
then put, the daemon's repair, corrupt replicas and a wiped site on real local tiers that
live at different sites (folders; only the sites' names say where they are)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from storefixtures import run_cycles

from tierstore import Config, ConfigError, TierClass, TierConfig, open_store
from tierstore.config import config_from_toml
from tierstore.locality import LocalitySettings
from tierstore.locality.placement import PlacementRule, placement
from tierstore.policies import (
    PRECEDENCE,
    Move,
    ObjectState,
    PlacementPolicy,
    PolicyConfig,
    Snapshot,
    TierState,
    default_engine,
)
from tierstore.store import Store
from tierstore.sync import SyncStore

ZONE2 = PlacementRule(2, "zone")

# -- the decision -----------------------------------------------------------------------------


def test_placement_spreads_over_domains_and_keeps_the_pinned() -> None:
    # one replica, in z1: the copy goes to another zone, not to the other tier of z1
    assert placement(ZONE2, [("a", "r/z1")], [("b", "r/z1/n2"), ("c", "r/z2")]) == (["c"], [])
    # two in one zone while another is free: move one of them there
    assert placement(ZONE2, [("a", "r/z1"), ("b", "r/z1/n2")], [("c", "r/z2")]) == (
        ["c"], ["b"])
    # ... keeping the pinned one
    assert placement(ZONE2, [("a", "r/z1"), ("b", "r/z1/n2")], [("c", "r/z2")],
                     pinned="b") == (["c"], ["a"])
    # surplus: three replicas over two zones -> the duplicate goes
    assert placement(ZONE2, [("a", "r/z1"), ("b", "r/z1/n2"), ("c", "r/z2")], []) == (
        [], ["b"])
    # a pinned surplus replica stays
    assert placement(PlacementRule(1), [("a", "x"), ("b", "y")], [], pinned="b") == ([], ["a"])
    # not enough zones: share one rather than keep fewer replicas
    assert placement(PlacementRule(3, "zone"), [("a", "r/z1")],
                     [("b", "r/z1/n2"), ("c", "r/z2")]) == (["c", "b"], [])
    # regions: r/z1 and r/z2 are one region
    assert placement(PlacementRule(2, "region"), [("a", "r/z1")],
                     [("b", "r/z2"), ("c", "s/z1")]) == (["c"], [])


def test_placement_config_parses_and_names_bad_fields(tmp_path: Path) -> None:
    s = LocalitySettings.from_mapping({"placement": {"warm": {"replicas": 2, "spread": "zone"},
                                                     "cold": {"replicas": 1}}})
    assert s.placement == {"warm": ZONE2, "cold": PlacementRule(1, "node")}
    assert LocalitySettings.from_mapping({}).placement == {}
    base = f'home = "{tmp_path}"\n[tiers.w]\nclass = "warm"\nurl = "w"\n[locality.placement]\n'
    for bad, field in [('warm = { replicas = 0 }', "locality.placement.warm.replicas"),
                       ('warm = { spread = "rack" }', "locality.placement.warm.spread"),
                       ('warm = { copies = 2 }', "locality.placement.warm"),
                       ('tepid = { replicas = 2 }', "locality.placement")]:
        with pytest.raises(ConfigError) as raised:
            config_from_toml(base + bad + "\n", source="/etc/ts.toml")
        assert str(raised.value).startswith(f"/etc/ts.toml: {field}"), str(raised.value)


# -- the repair policy, on plain data ---------------------------------------------------------

SITES = {"hot": ("r/z1/n1", TierClass.HOT), "wa": ("r/z1", TierClass.WARM),
         "wb": ("r/z2", TierClass.WARM), "wc": ("r/z1", TierClass.WARM),
         "cold": ("r/z3", TierClass.COLD)}


def snap(*objects: ObjectState, capacity: dict[str, int] | None = None) -> Snapshot:
    capacity = capacity or {}
    tiers = tuple(TierState(name=n, tier_class=cls, site=site, capacity=capacity.get(n),
                            used=sum(o.size for o in objects if n in o.replicas))
                  for n, (site, cls) in SITES.items())
    return Snapshot(objects, tiers, 1000.0)


def obj(key: str, *replicas: str, **fields: object) -> ObjectState:
    return ObjectState(key=key, size=100, replicas=replicas, **fields)  # type: ignore[arg-type]


def moves(plan: list[Move] | tuple[Move, ...]) -> set[tuple[str, str | None, str]]:
    return {(m.key, m.src, m.dst) for m in plan}


def test_policy_tops_up_moves_and_drops() -> None:
    policy = PlacementPolicy({"warm": ZONE2})
    s = snap(obj("short", "wa"), obj("same-zone", "wa", "wc"), obj("surplus", "wa", "wb", "wc"),
             obj("ok", "wa", "wb"), obj("busy", "wa", busy=True),
             obj("cold-only", "cold"), obj("cached", "hot", "wa"))
    assert moves(policy.decide(s)) == {
        ("short", None, "wb"),  # a copy in the other zone
        ("same-zone", "wc", "wb"),  # copy to the free zone, then drop the duplicate
        ("surplus", "wc", "wa"),  # drop: dst is a replica kept, nothing is copied
        ("cached", None, "wb"),  # warm is its coldest class: the hot cache does not count
    }
    reasons = {m.key: m.reason for m in policy.decide(s)}
    assert reasons["short"] == "1 warm replica; the rule asks 2 over zones"


def test_policy_leaves_hotter_classes_and_demoted_objects_alone() -> None:
    policy = PlacementPolicy({"warm": ZONE2, "hot": PlacementRule(1)})
    # on warm and cold: cold is where it lives (a demotion is under way); warm is not topped up
    # and its one replica is no surplus
    s = snap(obj("demoted", "wa", "cold"), obj("hot-twice", "hot", "wa", "wb"))
    assert moves(policy.decide(s)) == set()
    SITES["hot2"] = ("r/z2/n1", TierClass.HOT)
    try:
        s = snap(obj("two-hot", "hot", "hot2", "wa", "wb"))
        assert moves(policy.decide(s)) == {("two-hot", "hot2", "hot")}  # hot surplus only
    finally:
        del SITES["hot2"]


def test_policy_respects_capacity_and_pins_in_the_engine() -> None:
    config = PolicyConfig(placement={"warm": ZONE2})
    engine = default_engine(config)
    assert PRECEDENCE["placement"] == PRECEDENCE["pins"] == 0
    assert [p.name for p in engine.policies][:2] == ["placement", "pins"]
    # wb has no room: nowhere in another zone, so the copy shares zone z1 on wc
    full = snap(obj("a", "wa"), capacity={"wb": 100})
    assert moves(engine.plan(full)) == {("a", None, "wc")}
    # a pinned surplus replica is never dropped; the other one goes
    pinned = snap(obj("p", "wa", "wb", "wc", pinned="wc"))
    assert moves(engine.plan(pinned)) == {("p", "wa", "wb")}
    # a pin not met yet is the pins policy's: its copy goes first
    unmet = snap(obj("u", "wa", pinned="hot"))
    plan = engine.plan(unmet)
    assert moves(plan) == {("u", None, "hot")} and plan.moves[0].policy == "pins"
    # never the last replica: a rule of one on a lone replica asks nothing
    assert moves(PlacementPolicy({"warm": PlacementRule(1)}).decide(snap(obj("x", "wa")))) \
        == set()


# -- real tiers at different sites ------------------------------------------------------------


def site_config(home: Path, *, placement_rules: dict[str, object] | None = None,
                **locality: object) -> Config:
    """Three warm tiers in two zones and a hot tier at the reader's node (local folders)."""
    where = {"hot": ("r/z1/n1", TierClass.HOT), "wa": ("r/z1", TierClass.WARM),
             "wb": ("r/z2", TierClass.WARM), "wc": ("r/z1", TierClass.WARM)}
    tiers = {name: TierConfig(name=name, tier_class=cls, url=(home / name).as_uri(), site=site)
             for name, (site, cls) in where.items()}
    rules = placement_rules if placement_rules is not None else {
        "warm": {"replicas": 2, "spread": "zone"}}
    return Config(home=home, catalog=f"sqlite:///{home / 'catalog.db'}", tiers=tiers,
                  default_tier="wa", site="r/z1/n1",
                  locality=LocalitySettings.from_mapping({"placement": rules, **locality}))


def tiers_of(store: SyncStore, key: str) -> set[str]:
    return {r.tier for r in store.stat(key).replicas if r.state == "ready"}


def test_put_honours_the_rule_and_the_daemon_repairs(tmp_path: Path) -> None:
    config = site_config(tmp_path)
    with open_store(config) as store:
        store.put("k", b"payload" * 100)  # to wa (zone z1): the second replica goes to z2
        assert tiers_of(store, "k") == {"wa", "wb"}
        store.put("h", b"hot data", tier="hot")  # hot has no rule: one replica
        assert tiers_of(store, "h") == {"hot"}
        store.drop_replica("k", "wb")
        store.add_replica("k", "wc")  # two replicas, but both in zone z1
    assert run_cycles(config)[0]["done"] == 1
    with open_store(config) as store:
        assert tiers_of(store, "k") == {"wa", "wb"}  # moved from wc to the free zone
        store.add_replica("k", "wc")  # a surplus replica
    run_cycles(config)
    with open_store(config) as store:
        assert tiers_of(store, "k") == {"wa", "wb"}
        assert store.cat("k", verify=True) == b"payload" * 100
        assert not (tmp_path / "wc" / "k").exists()


def flip_byte(path: Path, offset: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_is_served_around_and_repaired_by_the_reader(tmp_path: Path) -> None:
    config = site_config(tmp_path)
    payload = os.urandom(50_000)
    with open_store(config) as store:
        store.put("k", payload, tier="wa")
        assert tiers_of(store, "k") == {"wa", "wb"}
        flip_byte(tmp_path / "wa" / "k")  # the nearest replica (zone z1) is corrupt
        assert store.cat("k", verify=True) == payload  # served from wb, no error
        assert store.aio.corrupt == [("k", "wa")] and store.aio.fallbacks == 1
    # closing waited for the repair the read started: wa holds the right bytes again
    assert (tmp_path / "wa" / "k").read_bytes() == payload
    with open_store(config) as store:
        assert tiers_of(store, "k") == {"wa", "wb"}
        assert store.cat("k", verify=True) == payload and store.aio.fallbacks == 0


def test_the_daemon_scrub_finds_and_repairs_a_flipped_byte(tmp_path: Path) -> None:
    config = site_config(tmp_path, repair_on_read=False)
    payload = os.urandom(20_000)
    with open_store(config) as store:
        store.put("k", payload, tier="wa")
        store.put("pinned", payload[:500], tier="wa")
        store.pin("pinned", "wb")
    flip_byte(tmp_path / "wb" / "k")
    flip_byte(tmp_path / "wb" / "pinned")  # a pinned replica is repaired too (pin kept)
    shallow = run_cycles(config, scrub_every=0)[0]  # sizes are right: not found
    assert shallow.get("scrub_bad", 0) == 0
    deep = run_cycles(config, scrub_every=0, scrub_deep=True)[0]
    assert deep["scrub_bad"] == 2 and deep["scrub_repaired"] == 2
    assert (tmp_path / "wb" / "k").read_bytes() == payload
    with open_store(config) as store:
        assert tiers_of(store, "k") == {"wa", "wb"} and store.stat("pinned").pinned == "wb"
        assert store.cat("pinned", verify=True) == payload[:500]
        assert store.aio.fallbacks == 0


def test_repair_restores_the_replica_count_after_a_site_is_wiped(tmp_path: Path) -> None:
    config = site_config(tmp_path, placement_rules={"warm": {"replicas": 3, "spread": "node"}})
    data = {f"ds/{i}": os.urandom(3000 + i) for i in range(6)}
    with open_store(config) as store:
        for key, value in data.items():
            store.put(key, value, tier="wb")
            assert tiers_of(store, key) == {"wa", "wb", "wc"}
        lonely = store.put("lonely", b"only here", tier="hot")  # no rule: one replica
    shutil.rmtree(tmp_path / "wb")  # the site's data is gone
    shutil.rmtree(tmp_path / "hot")
    outcomes = run_cycles(config, scrub_every=0)[0]
    assert outcomes["scrub_bad"] == 7 and outcomes["scrub_repaired"] == 6
    with open_store(config) as store:
        for key, value in data.items():
            assert tiers_of(store, key) == {"wa", "wb", "wc"}
            assert (tmp_path / "wb" / key).read_bytes() == value
        # its only replica is gone: reported, never "repaired" from nothing
        assert tiers_of(store, "lonely") == {r.tier for r in lonely.replicas}
    report = asyncio.run(_scrub(config))
    assert report.bad == [("lonely", "hot", "no such file")] and report.failed


async def _scrub(config: Config) -> object:
    from tierstore.scrub import scrub

    store = Store(config)
    try:
        return await scrub(store)
    finally:
        await store.close()
