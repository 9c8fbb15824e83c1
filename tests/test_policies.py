"""The migration policies and their engine, on plain data: no store, no clock, no I/O."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tierstore import ConfigError, TierClass
from tierstore.policies import (
    DAY,
    HOUR,
    FrequencyPolicy,
    Move,
    ObjectState,
    PinPolicy,
    PolicyConfig,
    PolicyEngine,
    PreloadPolicy,
    PreloadRequest,
    RecencyPolicy,
    Snapshot,
    TierState,
    WatermarkPolicy,
    apply_plan,
    default_engine,
)
from tierstore.policies.base import Policy

NOW = 1_000 * DAY
TIERS = ("hot", "warm", "cold")


def obj(key: str, *replicas: str, size: int = 100, idle: float | None = None,
        count: int = 1, **fields: Any) -> ObjectState:
    """An object last read ``idle`` seconds before NOW (never read when None)."""
    last = None if idle is None else NOW - idle
    return ObjectState(key=key, size=size, replicas=replicas or ("warm",), last_access=last,
                       count=count if last is not None else 0,
                       created=fields.pop("created", NOW - 1000 * DAY), **fields)


def snap(*objects: ObjectState, capacity: dict[str, int] | None = None,
         extra: dict[str, int] | None = None, now: float = NOW) -> Snapshot:
    """hot, warm and cold (unbounded unless given a capacity), their usage summed from the
    objects (plus ``extra`` bytes of data no object accounts for)."""
    capacity, extra = capacity or {}, extra or {}
    tiers = [TierState(name=n, tier_class=TierClass[n.upper()], capacity=capacity.get(n),
                       used=sum(o.size for o in objects if n in o.replicas) + extra.get(n, 0))
             for n in reversed(TIERS)]
    return Snapshot(objects, tuple(tiers), now)


def moves(plan: Iterable[Move]) -> set[tuple[str, str | None, str]]:
    return {(m.key, m.src, m.dst) for m in plan}


# -- recency ----------------------------------------------------------------------------------


def test_recency_demotes_by_each_tiers_age_and_leaves_the_rest() -> None:
    s = snap(obj("fresh", "hot", idle=29 * DAY), obj("month", "hot", idle=31 * DAY),
             obj("quarter", "hot", idle=100 * DAY), obj("warm", "warm", idle=91 * DAY),
             obj("cold", "cold", idle=900 * DAY), obj("never", "hot"))
    assert moves(RecencyPolicy().decide(s)) == {
        ("month", "hot", "warm"), ("quarter", "hot", "cold"), ("warm", "warm", "cold"),
        ("never", "hot", "cold")}  # never read: idle since it was written


def test_recency_at_seconds_granularity_per_tier_name_or_class() -> None:
    config = PolicyConfig(demote_after={"hot": 60, "warm": 3600}, promote_within=30)
    s = snap(obj("a", "hot", idle=61), obj("b", "hot", idle=59), obj("c", "warm", idle=61))
    assert moves(RecencyPolicy(config).decide(s)) == {("a", "hot", "warm")}
    by_name = PolicyConfig(demote_after={"hot": 60, "cold": 2}, promote_within=1)
    nvme = TierState(name="nvme", tier_class=TierClass.HOT)
    assert by_name.demote_after_for(nvme) == 60
    assert PolicyConfig(demote_after={"nvme": 5, "hot": 60},
                        promote_within=1).demote_after_for(nvme) == 5


def test_recency_promotes_what_is_read_again_as_a_copy() -> None:
    s = snap(obj("recent", "warm", idle=HOUR, count=3), obj("stale", "warm", idle=2 * DAY),
             obj("cold", "cold", idle=10), obj("there", "hot", idle=10),
             obj("unread", "warm", created=NOW - DAY))
    plan = RecencyPolicy().decide(s)
    assert moves(plan) == {("cold", None, "hot"), ("recent", None, "hot")}
    assert [m.key for m in plan] == ["cold", "recent"]  # most recently read first
    once = PolicyConfig(promote_min_reads=2)
    assert moves(RecencyPolicy(once).decide(snap(obj("x", "warm", idle=10, count=1)))) == set()


def test_recency_demotion_drops_a_hot_copy_when_a_colder_replica_exists() -> None:
    s = snap(obj("a", "hot", "warm", idle=40 * DAY), obj("b", "hot", "cold", idle=40 * DAY))
    assert moves(RecencyPolicy().decide(s)) == {("a", "hot", "warm"), ("b", "hot", "cold")}
    after = apply_plan(s, RecencyPolicy().decide(s))
    assert {o.key: o.replicas for o in after.objects} == {"a": ("warm",), "b": ("cold",)}
    assert {t.name: t.used for t in after.tiers} == {"hot": 0, "warm": 100, "cold": 100}


def test_recency_clock_going_backwards_demotes_nothing() -> None:
    s = snap(obj("a", "hot", idle=40 * DAY), obj("b", "warm", idle=200 * DAY),
             now=NOW - 2000 * DAY)
    # reads stamped in the future count as just now: nothing is idle, b is promoted
    assert moves(RecencyPolicy().decide(s)) == {("b", None, "hot")}


def test_policies_on_empty_snapshots() -> None:
    for policy in (RecencyPolicy(), WatermarkPolicy(), PinPolicy(),
                   FrequencyPolicy(PolicyConfig(default_scoring="frequency")),
                   PreloadPolicy([PreloadRequest(prefix="", tier="hot", by=NOW)])):
        assert policy.decide(snap()) == []
        assert policy.decide(Snapshot((), (), NOW)) == []
    assert len(default_engine().plan(snap())) == 0


# -- frequency --------------------------------------------------------------------------------


def test_frequency_by_decayed_count() -> None:
    config = PolicyConfig(default_scoring="frequency")
    s = snap(obj("busy", "warm", idle=10, score=5.0), obj("some", "cold", idle=10, score=3.0),
             obj("rare", "hot", idle=2 * HOUR, score=0.1),
             obj("young", "hot", idle=60, score=0.1), obj("mid", "warm", idle=DAY, score=1.0))
    plan = FrequencyPolicy(config).decide(s)
    assert [(m.key, m.src, m.dst) for m in plan] == [
        ("rare", "hot", "warm"), ("busy", None, "hot"), ("some", None, "hot")]
    assert FrequencyPolicy().decide(s) == []  # every tier uses recency by default


def test_lrfu_weighs_the_count_by_recency() -> None:
    config = PolicyConfig(default_scoring="lrfu", recency_half_life=HOUR)
    s = snap(obj("now", "warm", idle=0, score=4.0), obj("earlier", "hot", idle=4 * HOUR,
                                                        score=4.0))
    assert moves(FrequencyPolicy(config).decide(s)) == {("now", None, "hot"),
                                                        ("earlier", "hot", "warm")}


def test_scoring_is_chosen_per_tier() -> None:
    config = PolicyConfig(scoring={"hot": "recency", "warm": "frequency"})
    s = snap(obj("a", "hot", idle=40 * DAY, score=9.0), obj("b", "warm", created=NOW - 2 * HOUR))
    assert moves(RecencyPolicy(config).decide(s)) == {("a", "hot", "warm")}
    assert moves(FrequencyPolicy(config).decide(s)) == {("b", "warm", "cold")}


# -- watermarks -------------------------------------------------------------------------------


def hot_objects(n: int, **fields: Any) -> list[ObjectState]:
    """``h0`` (coldest) ... ``h{n-1}``, 100 bytes each on hot."""
    return [obj(f"h{i}", "hot", idle=(n - i) * HOUR, **fields) for i in range(n)]


def test_watermarks_demote_coldest_first_to_the_low_watermark() -> None:
    s = snap(*hot_objects(10), capacity={"hot": 1000})  # 100% > 90%: down to 75%
    plan = WatermarkPolicy().decide(s)
    assert [(m.key, m.src, m.dst) for m in plan] == [("h0", "hot", "warm"),
                                                     ("h1", "hot", "warm"),
                                                     ("h2", "hot", "warm")]
    assert "hot at 100% > high watermark 90%" in plan[0].reason
    assert WatermarkPolicy().decide(snap(*hot_objects(9), capacity={"hot": 1000})) == []


def test_watermarks_order_by_the_tiers_scoring() -> None:
    objects = [obj(f"f{i}", "hot", idle=i, score=float(i)) for i in range(10)]
    config = PolicyConfig(default_scoring="frequency")
    plan = WatermarkPolicy(config).decide(snap(*objects, capacity={"hot": 1000}))
    assert [m.key for m in plan] == ["f0", "f1", "f2"]  # lowest count, not longest idle


def test_watermarks_cascade_and_respect_colder_capacity() -> None:
    s = snap(*hot_objects(10), obj("w", "warm", idle=DAY, size=800),
             capacity={"hot": 1000, "warm": 1000})
    plan = WatermarkPolicy().decide(s)
    # warm takes 200 bytes, to its capacity; then passes its own watermark and sheds
    assert moves(plan) == {("h0", "hot", "warm"), ("h1", "hot", "warm"), ("h2", "hot", "cold"),
                           ("w", "warm", "cold")}
    full = snap(*hot_objects(10), capacity={"hot": 1000, "warm": 850}, extra={"warm": 800})
    assert {m.dst for m in WatermarkPolicy().decide(full)} == {"cold"}


def test_watermarks_exceeded_by_pinned_data_move_what_they_can() -> None:
    pinned = [obj(f"p{i}", "hot", idle=DAY, pinned="hot") for i in range(9)]
    s = snap(*pinned, obj("free", "hot", idle=HOUR), capacity={"hot": 1000})
    assert moves(WatermarkPolicy().decide(s)) == {("free", "hot", "warm")}
    assert WatermarkPolicy().decide(snap(*pinned, capacity={"hot": 800})) == []
    stuck = snap(obj("c", "cold", size=950), capacity={"cold": 1000})
    assert WatermarkPolicy().decide(stuck) == []  # nowhere colder to go


# -- pins and pre-load ------------------------------------------------------------------------


def test_pins_hold_objects_and_copy_prefix_pins_to_their_tier() -> None:
    config = PolicyConfig(pins={"ds": "warm", "ds/hot": "hot"})
    s = snap(obj("ds/a", "cold", idle=400 * DAY), obj("ds/hot/b", "warm"),
             obj("ds/c", "hot", pinned="hot", idle=400 * DAY), obj("dsx", "hot"))
    pins = PinPolicy(config)
    assert moves(pins.decide(s)) == {("ds/a", None, "warm"), ("ds/hot/b", None, "hot")}
    assert pins.holds(s) == {"ds/a", "ds/hot/b", "ds/c"}
    assert moves(default_engine(config).plan(s)) == {
        ("ds/a", None, "warm"), ("ds/hot/b", None, "hot"), ("dsx", "hot", "cold")}


def test_everything_pinned_plans_nothing() -> None:
    s = snap(*[obj(f"p{i}", "hot", pinned="hot", idle=400 * DAY) for i in range(10)],
             capacity={"hot": 500})
    assert len(default_engine().plan(s)) == 0


def test_preload_stages_a_prefix_by_deadline_and_holds_it() -> None:
    early = PreloadRequest(prefix="ds/b", tier="hot", by=NOW + HOUR)
    late = PreloadRequest(prefix="ds", tier="warm", by=NOW + DAY)
    s = snap(obj("ds/a", "cold"), obj("ds/b/1", "cold"), obj("ds/b/2", "hot"),
             obj("other", "cold"))
    policy = PreloadPolicy([late, early])
    assert [(m.key, m.src, m.dst) for m in policy.decide(s)] == [
        ("ds/b/1", None, "hot"), ("ds/a", None, "warm")]
    assert policy.holds(s) == {"ds/b/2"}
    later = PreloadRequest(prefix="ds", tier="hot", by=NOW + DAY, lead=HOUR)
    gone = PreloadRequest(prefix="ds", tier="hot", by=NOW - 2 * DAY)
    nowhere = PreloadRequest(prefix="ds", tier="nvme", by=NOW)
    assert PreloadPolicy([later, gone, nowhere]).decide(s) == []
    with pytest.raises(ValueError):
        PreloadRequest(prefix="ds", tier="hot", by=math.nan)


def test_preload_outranks_recency_and_watermarks_outrank_preload() -> None:
    request = PreloadRequest(prefix="ds", tier="hot", by=NOW + HOUR)
    staged = snap(obj("ds/a", "hot", idle=400 * DAY))
    assert len(default_engine(preloads=[request]).plan(staged)) == 0
    full = snap(*hot_objects(9), obj("ds/a", "hot", idle=400 * DAY), obj("ds/b", "cold"),
                capacity={"hot": 1000})
    plan = default_engine(preloads=[request]).plan(full)
    assert ("ds/a", "hot", "warm") in moves(plan)  # the coldest, staged or not
    assert ("ds/b", None, "hot") in moves(plan)  # staged into the room made, under 90%


# -- the engine -------------------------------------------------------------------------------


class Proposes(Policy):
    """A policy that proposes whatever it is given."""

    def __init__(self, name: str, *proposed: Move):
        self.name, self.proposed = name, list(proposed)

    def decide(self, snapshot: Snapshot) -> list[Move]:
        return self.proposed


def test_engine_runs_by_precedence_and_one_move_per_object() -> None:
    s = snap(obj("a", "hot"), obj("b", "warm"))
    first = Move("a", "hot", "cold", 100, "watermarks", "first")
    engine = PolicyEngine([Proposes("recency", Move("a", "hot", "warm", 100, "recency", "x")),
                           Proposes("watermarks", first)])
    plan = engine.plan(s)
    assert plan.moves == (first,)
    assert [r.why for r in plan.refused] == ["already decided (moved by watermarks)"]
    with pytest.raises(ValueError, match="precedence"):
        PolicyEngine([Proposes("mine")])


def test_engine_refuses_unsafe_moves() -> None:
    s = snap(obj("a", "hot"), obj("p", "hot", "warm", pinned="hot"), obj("busy", "hot",
                                                                         busy=True))
    bad = [Move("a", "warm", "cold", 100, "recency", "not a replica"),
           Move("a", "hot", "hot", 100, "recency", "to itself"),
           Move("a", "hot", "tape", 100, "recency", "unknown tier"),
           Move("a", None, "hot", 100, "recency", "already there"),
           Move("gone", "hot", "warm", 100, "recency", "no such object"),
           Move("p", "hot", "warm", 100, "recency", "pinned replica"),
           Move("busy", "hot", "warm", 100, "recency", "in flight")]
    plan = PolicyEngine([Proposes("recency", *bad)]).plan(s)
    assert plan.moves == () and len(plan.refused) == len(bad)
    assert "pinned to hot" in plan.refused[5].why and "in flight" in plan.refused[6].why
    with pytest.raises(ValueError):
        apply_plan(s, bad[:1])


def test_promotions_stop_at_the_high_watermark() -> None:
    recent = [obj(f"r{i}", "warm", idle=i * 60) for i in range(5)]
    s = snap(*recent, capacity={"hot": 1000}, extra={"hot": 700})
    plan = default_engine().plan(s)
    assert [m.key for m in plan] == ["r0", "r1"]  # 700 + 200 = 90%: the most recent fit
    assert {r.why for r in plan.refused} == {"hot would pass its high watermark"}
    over = snap(*recent, capacity={"hot": 1000}, extra={"hot": 950})
    assert all(m.dst != "hot" for m in default_engine().plan(over))


def test_a_promotion_displaces_residents_read_less_and_longer_ago() -> None:
    # hot holds 900 of 1000 bytes (its high watermark): old, rarely read objects, one popular
    residents = [obj(f"old{i}", "hot", "warm", idle=(10 - i) * HOUR, score=1.0)
                 for i in range(8)] + [obj("popular", "hot", "warm", idle=5 * HOUR, score=9.0)]
    hit = obj("hit", "warm", idle=60, score=4.0, size=150)
    plan = default_engine().plan(snap(*residents, hit, capacity={"hot": 1000}))
    # the two coldest (fewest reads, longest idle) make room; their warm copies stay
    assert [(m.key, m.src, m.dst) for m in plan] == [
        ("old0", "hot", "warm"), ("old1", "hot", "warm"), ("hit", None, "hot")]
    assert plan.moves[0].reason.startswith("displaced by hit")
    # a candidate read not more than twice as often as the coldest resident displaces nobody
    once = obj("once", "warm", idle=60, score=1.5, size=150)
    plan = default_engine().plan(snap(*residents, once, capacity={"hot": 1000}))
    assert plan.moves == () and plan.refused[0].why == "hot would pass its high watermark"
    off = default_engine(PolicyConfig(displace_ratio=0))
    assert off.plan(snap(*residents, hit, capacity={"hot": 1000})).moves == ()


def test_displacement_never_drops_a_last_replica() -> None:
    # a resident with no colder replica is moved down (copied first), never dropped
    only_hot = [obj(f"h{i}", "hot", idle=HOUR, score=0.5) for i in range(9)]
    plan = default_engine().plan(snap(*only_hot, obj("hit", "warm", idle=1, score=3.0),
                                      capacity={"hot": 1000}))
    assert [(m.key, m.src, m.dst) for m in plan][-2:] == [("h0", "hot", "warm"),
                                                          ("hit", None, "hot")]


def test_next_use_stages_soonest_first_and_displaces_what_is_read_later() -> None:
    from tierstore.policies import NextUsePolicy

    # hot holds 8 of 10 objects' worth at its high watermark (900 of 1000)
    on_hot = [obj(f"s{i}", "hot", "warm", next_use=NOW + 600 + i) for i in range(6)]
    on_hot += [obj("gone", "hot", "warm", idle=60, score=5.0),  # read, not announced again
               obj("far", "hot", "warm", next_use=NOW + 9000)]
    soon = [obj(f"n{i}", "warm", next_use=NOW + 10 + i) for i in range(2)]
    later = obj("later", "warm", next_use=NOW + 50 * 60)
    beyond = obj("beyond", "warm", next_use=NOW + 2 * HOUR)  # past the 1 h horizon
    s = snap(*on_hot, obj("extra", "hot", "warm"), *soon, later, beyond,
             capacity={"hot": 1000})
    plan = default_engine().plan(s)
    staged = [(m.key, m.src, m.dst) for m in plan if m.policy == "next_use"]
    # unannounced residents go first (fewest reads first), then the furthest next use
    assert staged == [("extra", "hot", "warm"), ("n0", None, "hot"),
                      ("gone", "hot", "warm"), ("n1", None, "hot"),
                      ("far", "hot", "warm"), ("later", None, "hot")]
    assert all(m.key not in {f"s{i}" for i in range(6)} for m in plan)
    # what is about to be read is held: recency does not demote it, however old
    stale = snap(obj("s", "hot", "warm", idle=40 * DAY, next_use=NOW + 60))
    assert NextUsePolicy().holds(stale) == {"s"} and default_engine().plan(stale).moves == ()


def test_next_use_leaves_what_is_due_too_soon_to_the_reader() -> None:
    s = snap(obj("now", "warm", next_use=NOW + 2), obj("soon", "warm", next_use=NOW + 30),
             obj("held", "hot", "warm", idle=40 * DAY, next_use=NOW + 1),
             capacity={"hot": 1000})
    assert [m.key for m in default_engine().plan(s)] == ["now", "soon"]  # no lead by default
    patient = default_engine(PolicyConfig(next_use_lead=5))
    assert [m.key for m in patient.plan(s)] == ["soon"]  # "now" stays where it is (held)
    with pytest.raises(ConfigError):
        PolicyConfig(next_use_lead=2 * HOUR)


def test_next_use_stages_only_what_its_copy_lands_before_the_reader() -> None:
    """Issue 12, item 1: the daemon's staging fetched the shards the loader was fetching at
    that moment, so their bytes crossed twice. At the measured copy rate (100 B/s here),
    each copy queued behind those before it, what would land after its reader got there is
    left to the reader (whose read-through fill keeps it)."""
    s = dataclasses.replace(
        snap(obj("a", "warm", next_use=NOW + 1.5), obj("b", "warm", next_use=NOW + 2.5),
             obj("c", "warm", next_use=NOW + 2.9), obj("d", "warm", next_use=NOW + 600),
             capacity={"hot": 1000}), copy_bytes_per_s=100.0)
    # a lands at +1 (due 1.5), b at +2 (due 2.5); c would land at +3, after its read at 2.9
    assert [m.key for m in default_engine().plan(s)] == ["a", "b", "d"]
    unmeasured = dataclasses.replace(s, copy_bytes_per_s=None)
    assert [m.key for m in default_engine().plan(unmeasured)] == ["a", "b", "c", "d"]


def test_next_use_never_stages_what_a_reader_is_fetching_and_keeps_it() -> None:
    """A reader announces the shards its read-ahead has begun as FETCHING: a staging copy
    would fetch the same bytes again (issue 12, item 1); and they are about to be read, so
    nothing displaces or demotes them."""
    from tierstore.catalog import FETCHING
    from tierstore.policies import NextUsePolicy

    s = snap(obj("fetching", "warm", next_use=FETCHING), obj("later", "warm", next_use=NOW + 60),
             obj("held", "hot", "warm", idle=40 * DAY, next_use=FETCHING),
             capacity={"hot": 1000})
    assert [m.key for m in default_engine().plan(s)] == ["later"]
    assert NextUsePolicy().holds(s) == {"fetching", "later", "held"}


def test_watermarks_shed_unannounced_then_furthest_next_use_first() -> None:
    objects = [obj("soon", "hot", idle=DAY, next_use=NOW + 10),
               obj("late", "hot", idle=DAY, next_use=NOW + 5000),
               obj("latest", "hot", idle=DAY, next_use=NOW + 9000),
               obj("none", "hot", idle=1)]
    plan = WatermarkPolicy().decide(snap(*objects, capacity={"hot": 250}))
    # 400 of 250: "none" goes (to 300, over the high watermark, 225), then the furthest
    # announced one (to 200): under the high watermark, announced ones stay, though the
    # tier is still over its low watermark (187.5) and "late" is idle a day
    assert [m.key for m in plan] == ["none", "latest"]
    plan = WatermarkPolicy().decide(snap(*objects[:3], capacity={"hot": 240}))
    assert [m.key for m in plan] == ["latest"]  # 200 of 240: under the high one (216)


def test_demotions_stop_at_capacity() -> None:
    s = snap(obj("a", "hot", idle=40 * DAY), capacity={"warm": 1000}, extra={"warm": 950})
    plan = default_engine().plan(s)
    assert plan.moves == () and plan.refused[0].why == "warm would pass its capacity"


def test_policy_config_is_validated() -> None:
    for bad in ({"demote_after": {"hot": -1}}, {"promote_within": 40 * DAY},
                {"scoring": {"hot": "fifo"}}, {"min_idle": math.inf},
                {"promote_min_reads": 0}):
        with pytest.raises(ConfigError):
            PolicyConfig(**bad)
    assert PolicyConfig(scoring={"hot": "lrfu"}).scoring["hot"].value == "lrfu"


# -- the invariants, on any snapshot ----------------------------------------------------------

KEYS = [f"k{i}" for i in range(12)] + [f"ds/{i}" for i in range(6)]
times = st.floats(min_value=0, max_value=NOW + 400 * DAY)


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    objects = []
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=len(KEYS))):
        objects.append(ObjectState(
            key=key, size=draw(st.integers(0, 400)),
            replicas=tuple(draw(st.sets(st.sampled_from(TIERS), min_size=1))),
            pinned=draw(st.sampled_from([None, None, None, "hot", "cold", "gone"])),
            last_access=draw(st.none() | times), count=draw(st.integers(0, 5)),
            score=draw(st.floats(0, 10)), created=draw(times), busy=draw(st.booleans()),
            next_use=draw(st.none() | times)))
    tiers = []
    for name in TIERS:
        low = draw(st.floats(0.05, 1.0))
        tiers.append(TierState(
            name=name, tier_class=TierClass[name.upper()],
            capacity=draw(st.none() | st.integers(0, 3000)), low_watermark=low,
            high_watermark=draw(st.floats(low, 1.0)),
            used=sum(o.size for o in objects if name in o.replicas) + draw(st.integers(0, 500))))
    return Snapshot(tuple(objects), tuple(tiers), draw(times))


configs = st.builds(
    PolicyConfig, demote_after=st.just({"hot": 30 * DAY, "warm": 90 * DAY}),
    scoring=st.dictionaries(st.sampled_from(TIERS), st.sampled_from(["recency", "frequency",
                                                                     "lrfu"])),
    pins=st.dictionaries(st.sampled_from(["ds", "k1", "ds/2"]), st.sampled_from(TIERS)))
requests = st.lists(st.builds(PreloadRequest, prefix=st.sampled_from(["ds", "k", ""]),
                              tier=st.sampled_from(TIERS), by=times), max_size=3)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), configs, requests)
def test_a_plan_never_loses_a_replica_nor_overfills_by_promoting(
        s: Snapshot, config: PolicyConfig, preloads: list[PreloadRequest]) -> None:
    engine = default_engine(config, preloads)
    plan = engine.plan(s)
    assert plan == engine.plan(s)  # pure: same snapshot, same plan
    assert len({m.key for m in plan}) == len(plan)
    replicas = {o.key: set(o.replicas) for o in s.objects}
    used = {t.name: t.used for t in s.tiers}
    pins = PinPolicy(config)
    for move in plan:
        state, dst = s.get(move.key), s.tier(move.dst)
        assert state is not None and dst is not None and not state.busy
        pin = pins.pinned_to(state)
        assert pin is None or (move.src is None and move.dst == pin[0])
        promotion = s.rank(move.dst) < min(map(s.rank, replicas[move.key]))
        assert move.src is None or move.src in replicas[move.key]
        if move.dst not in replicas[move.key]:
            used[move.dst] += state.size
            assert used[move.dst] <= (dst.high_bytes if promotion else dst.limit)
        if move.src is not None:
            used[move.src] -= state.size
        replicas[move.key] = (replicas[move.key] - {move.src}) | {move.dst}
        assert replicas[move.key]
    assert {t.name: t.used for t in apply_plan(s, plan).tiers} == used
