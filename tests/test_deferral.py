"""Carbon-aware scheduling (tierstore.policies.deferral, .carbonsim): which moves may wait,
the cleanest hour before each deadline within the bandwidth, held moves' deadlines that do not
slide, room needed now never deferred; and the offline optimum, exact (against a min-cost
flow) and never beaten by any schedule that meets its deadlines."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tierstore.carbon import Forecast, Step, move_grams
from tierstore.config import TierClass
from tierstore.policies import (
    Move,
    ObjectState,
    Plan,
    PreloadRequest,
    Snapshot,
    TierState,
    default_engine,
)
from tierstore.policies.carbonsim import Lane, _pieces, carbon_aware, immediate, optimum
from tierstore.policies.deferral import CarbonScheduler, Job, place

T0 = 1780272000.0  # 2026-06-01T00:00Z, a midnight
HOUR = 3600.0
DAY = 86400.0
GiB = 2**30


def forecast(*values: float) -> Forecast:
    return Forecast([Step(T0 + i * HOUR, T0 + (i + 1) * HOUR, v) for i, v in enumerate(values)])


def tiers(hot_capacity: int | None = None, hot_used: int = 0) -> tuple[TierState, ...]:
    return (TierState(name="hot", tier_class=TierClass.HOT, capacity=hot_capacity,
                      used=hot_used),
            TierState(name="warm", tier_class=TierClass.WARM),
            TierState(name="cold", tier_class=TierClass.COLD))


def obj(key: str, *replicas: str, size: int = GiB, **kw: object) -> ObjectState:
    return ObjectState(key=key, size=size, replicas=replicas, **kw)  # type: ignore[arg-type]


# -- which moves may wait: marked where the policies make them --------------------------------


def test_demotions_may_wait_and_promotions_and_staging_may_not() -> None:
    now = T0 + 100 * DAY
    snapshot = Snapshot((obj("old", "hot", last_access=now - 40 * DAY, created=T0),
                         obj("read", "warm", last_access=now - 60, count=3, created=T0),
                         obj("next", "warm", next_use=now + 60, created=T0)),
                        tiers(), now)
    plan = default_engine().plan(snapshot)
    kinds = {m.key: m.deferrable for m in plan}
    assert kinds == {"old": True, "read": False, "next": False}


def test_a_watermark_demotion_waits_only_below_the_high_watermark() -> None:
    now = T0
    objects = tuple(obj(f"o{i}", "hot", size=10, last_access=now - i * 60, created=T0)
                    for i in range(10))
    snapshot = Snapshot(objects, tiers(hot_capacity=100, hot_used=100), now)
    moves = [m for m in default_engine().plan(snapshot) if m.policy == "watermarks"]
    # 100 bytes: to the high watermark (90) is room needed now; on to the low (75) may wait
    assert [m.deferrable for m in moves] == [False, True, True]


def test_a_preload_may_wait_until_its_own_deadline() -> None:
    by = T0 + 6 * HOUR
    snapshot = Snapshot((obj("ds/a", "warm", created=T0),), tiers(), T0)
    plan = default_engine(preloads=[PreloadRequest(prefix="ds", tier="hot", by=by)]).plan(
        snapshot)
    [move] = plan.moves
    assert move.deferrable and move.due == by


# -- the scheduler ---------------------------------------------------------------------------


def demotion(key: str = "old", size: int = GiB) -> Move:
    return Move(key, "hot", "warm", size, "recency", "not read for 40d", deferrable=True)


def one(move: Move, snapshot: Snapshot, forecast: Forecast | None, now: float,
        scheduler: CarbonScheduler | None = None, **kw: object):  # type: ignore[no-untyped-def]
    scheduler = scheduler or CarbonScheduler(DAY)
    schedule = scheduler.schedule(Plan((move,), now), snapshot, forecast, now=now, **kw)
    return schedule.timings[0], schedule


def test_a_demotion_is_held_for_the_cleanest_hour_before_its_deadline() -> None:
    snapshot = Snapshot((obj("old", "hot"),), tiers(), T0)
    grid = forecast(540, 500, 212, 100, 450)
    timing, schedule = one(demotion(), snapshot, grid, T0 + 600)
    assert timing.when == T0 + 3 * HOUR and timing.intensity == 100
    assert timing.why.startswith("deferred: 100 gCO2e/kWh at 2026-06-01T03:00Z vs 540 now")
    assert schedule.now.moves == () and len(schedule.held) == 1
    # a deadline before that hour: the cleanest hour before it
    timing, _ = one(demotion(), snapshot, grid, T0 + 600, CarbonScheduler(2.5 * HOUR))
    assert timing.when == T0 + 2 * HOUR and timing.intensity == 212


def test_runs_now_when_now_is_cleanest_flat_or_unknown() -> None:
    snapshot = Snapshot((obj("old", "hot"),), tiers(), T0)
    timing, _ = one(demotion(), snapshot, forecast(100, 300, 200), T0)
    assert timing.when == T0 and timing.why.startswith("now: 100 gCO2e/kWh, the cleanest")
    timing, _ = one(demotion(), snapshot, Forecast([Step(T0, T0 + DAY, 480)]), T0)
    assert timing.when == T0  # a flat grid: nothing to wait for
    timing, _ = one(demotion(), snapshot, None, T0, unavailable="server down")
    assert timing.when == T0 and "no intensity forecast (server down)" in timing.why
    timing, _ = one(demotion(), snapshot, forecast(500, 100), T0 - HOUR)
    assert timing.when == T0 - HOUR and "does not cover now" in timing.why


def test_urgent_moves_run_now_and_say_why() -> None:
    snapshot = Snapshot((obj("s", "warm"),), tiers(), T0)
    staging = Move("s", None, "hot", GiB, "next_use", "announced read in 5m")
    timing, _ = one(staging, snapshot, forecast(900, 10), T0)
    assert timing.when == T0 and timing.why == "urgent: next-use staging"


def test_a_held_moves_deadline_does_not_slide() -> None:
    snapshot = Snapshot((obj("old", "hot"),), tiers(), T0)
    grid = forecast(*([500] * 30 + [10]))  # clean only after the deadline
    grid_later = forecast(*([500] * 3 + [100] + [500] * 27))
    scheduler = CarbonScheduler(4 * HOUR)
    first, _ = one(demotion(), snapshot, grid_later, T0, scheduler)
    assert first.when == T0 + 3 * HOUR and first.deadline == T0 + 4 * HOUR
    # planned again two hours on: still due 4h after it was first planned
    again, _ = one(demotion(), snapshot, grid_later, T0 + 2 * HOUR, scheduler)
    assert again.deadline == T0 + 4 * HOUR and again.when == T0 + 3 * HOUR
    late, _ = one(demotion(), snapshot, grid, T0 + 4 * HOUR, scheduler)
    assert late.when == T0 + 4 * HOUR and late.why == "now: its deadline has come"


def test_a_preload_keeps_time_for_its_copy() -> None:
    snapshot = Snapshot((obj("ds/a", "warm"),), tiers(), T0)
    copy = Move("ds/a", None, "hot", 360 * 2**20, "preload", "preload ds", deferrable=True,
                due=T0 + 4 * HOUR)
    grid = forecast(500, 400, 300, 200, 10)
    timing, _ = one(copy, snapshot, grid, T0, CarbonScheduler(DAY, bandwidth=2**20 / 10))
    # 360 MiB at 0.1 MiB/s takes an hour: due by 03:00, so the 02:00 hour, not 03:00
    assert timing.deadline == T0 + 3 * HOUR and timing.when == T0 + 2 * HOUR


def test_room_needed_now_takes_the_held_demotion_with_it() -> None:
    snapshot = Snapshot((obj("old", "hot"), obj("hotly-read", "warm")),
                        tiers(hot_capacity=GiB, hot_used=GiB), T0)
    promotion = Move("hotly-read", None, "hot", GiB, "recency", "read 1m ago")
    plan = Plan((demotion(), promotion), T0)
    schedule = CarbonScheduler(DAY).schedule(plan, snapshot, forecast(500, 100), now=T0)
    assert [t.when for t in schedule.timings] == [T0, T0]
    assert schedule.timings[0].why == "now: frees room on hot that hotly-read needs now"
    # a move that may wait, but not that long, takes it too
    soon = Move("hotly-read", None, "hot", GiB, "preload", "preload by 00:30",
                deferrable=True, due=T0 + 1800)
    schedule = CarbonScheduler(DAY).schedule(Plan((demotion(), soon), T0), snapshot,
                                             forecast(500, 100), now=T0)
    assert [t.when for t in schedule.timings] == [T0, T0]


def test_a_move_that_may_wait_waits_for_the_room_a_held_move_frees() -> None:
    # two demotions off a full hot tier, at one GiB an hour: one fits the clean hour now,
    # the other waits for the next clean one; a third replica onto hot needs both gone
    snapshot = Snapshot((obj("a", "hot"), obj("b", "hot"), obj("c", "warm")),
                        tiers(hot_capacity=2 * GiB, hot_used=2 * GiB), T0)
    third = Move("c", None, "hot", GiB, "placement", "a third replica", deferrable=True)
    plan = Plan((demotion("a"), demotion("b"), third), T0)
    schedule = CarbonScheduler(DAY, bandwidth=GiB / HOUR).schedule(
        plan, snapshot, forecast(100, 500, 500, 100, 500), now=T0)
    assert [t.when for t in schedule.timings] == [T0, T0 + 3 * HOUR, T0 + 3 * HOUR]
    assert "waits for the room held moves free on hot" in schedule.timings[2].why


def test_place_shares_the_cleanest_hours_out_within_the_bandwidth() -> None:
    rate = GiB / HOUR  # one GiB an hour
    jobs = [Job(i, GiB, T0, T0 + 4 * HOUR, "lane") for i in range(3)]
    starts = place(jobs, T0, forecast(500, 100, 200, 300),
                   lambda lane, a, b: rate * (b - a))
    assert sorted(starts.values()) == [T0 + HOUR, T0 + 2 * HOUR, T0 + 3 * HOUR]
    unlimited = place(jobs, T0, forecast(500, 100, 200, 300), None)
    assert set(unlimited.values()) == {T0 + HOUR}


# -- the offline optimum and the schedules measured against it --------------------------------


def flow_optimum(jobs: list[Job], lane: Lane) -> tuple[float, bool]:
    """The same problem as a min-cost flow (networkx): jobs -> pieces of free time."""
    nx = pytest.importorskip("networkx")
    pieces = _pieces(jobs, lane)
    graph = nx.DiGraph()
    total = sum(j.bytes for j in jobs)
    graph.add_node("s", demand=-total)
    graph.add_node("t", demand=total)
    graph.add_edge("s", "t", capacity=total, weight=10**12)  # bytes that cannot be carried
    for n, job in enumerate(jobs):
        graph.add_edge("s", ("j", n), capacity=job.bytes, weight=0)
        for k, (a, b, cost, _) in enumerate(pieces):
            if job.release <= a and b <= job.deadline:
                graph.add_edge(("j", n), ("p", k), weight=int(cost))
    for k, (_, _, _, room) in enumerate(pieces):
        # the room is whole bytes here; float arithmetic may leave it a hair under (158 bytes
        # of room computed as 157.99999999999997 made this reference, not the optimum, wrong)
        graph.add_edge(("p", k), "t", capacity=math.floor(room + 1e-6), weight=0)
    flow = nx.min_cost_flow(graph)
    grams = sum(move_grams(sum(flow[u][("p", k)] for u in graph.predecessors(("p", k))), cost)
                for k, (_, _, cost, _) in enumerate(pieces))
    return grams, flow["s"]["t"] == 0


cases = st.tuples(
    st.lists(st.sampled_from([100, 200, 300, 450, 600]), min_size=4, max_size=10),
    st.sampled_from([5.0, 20.0, 100.0]),
    st.lists(st.tuples(st.integers(0, 80), st.integers(1, 60), st.integers(1, 400)),
             min_size=1, max_size=8),
    st.lists(st.tuples(st.integers(0, 80), st.integers(1, 300)), max_size=3))


@settings(max_examples=150, deadline=None)
@given(cases)
def test_the_optimum_is_exact_and_no_schedule_beats_it(case) -> None:  # type: ignore[no-untyped-def]
    values, rate, raw_jobs, raw_urgent = case
    grid = Forecast([Step(i * 10.0, i * 10.0 + 10, v) for i, v in enumerate(values)])
    end = 10.0 * len(values)
    urgent = [Job(("u", i), size, float(at), float(at), "L")
              for i, (at, size) in enumerate(raw_urgent)]
    lane = Lane(rate, urgent, grid)
    jobs = [Job(i, size, float(min(at, end - 1)), float(min(at + slack, end)), "L")
            for i, (at, slack, size) in enumerate(raw_jobs)]
    best, feasible = optimum(jobs, lane)
    exact, exact_feasible = flow_optimum(jobs, lane)
    assert feasible == exact_feasible
    if not feasible:
        return
    assert best == pytest.approx(exact, rel=1e-9, abs=1e-12)
    for outcome in (immediate(jobs, {"L": lane}), carbon_aware(jobs, {"L": lane}, grid)):
        if outcome.met == outcome.moves:  # a schedule of whole moves that meets every deadline
            assert outcome.grams >= best * (1 - 1e-9)
    unlimited = Lane(None, [], grid)
    aware, best = carbon_aware(jobs, {"L": unlimited}, grid), optimum(jobs, unlimited)[0]
    assert aware.met == len(jobs) and aware.grams == pytest.approx(best, rel=1e-9)
