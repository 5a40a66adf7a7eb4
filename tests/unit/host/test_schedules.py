"""Schedule arithmetic (faultmesh.engine.schedule): when a run is due, Forbid, missed runs, history, names.

Times are epoch seconds from a fixed origin, so every case is exact; the properties drive the decisions
with a fake clock the way the serving process does, tick by tick.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultmesh.api.cron import CronSchedule, parse_schedule
from faultmesh.engine.schedule import (
    MAX_MISSED,
    NAME_ALPHABET,
    Child,
    ScheduleTimeError,
    decide_firing,
    generate_name,
    history_cleanup,
    next_after,
    recent_unmet,
)


def at(text: str) -> float:
    """Epoch seconds of ``HH:MM:SS`` on 2026-03-02 (a Monday), UTC."""
    hour, minute, second = (int(part) for part in text.split(":"))
    return datetime(2026, 3, 2, hour, minute, second, tzinfo=UTC).timestamp()


EVERY_5_MIN = parse_schedule("*/5 * * * *")


# ---- recent_unmet ---------------------------------------------------------------------------------------


def test_the_most_recent_missed_run_and_the_next_one() -> None:
    unmet = recent_unmet(EVERY_5_MIN, created_at=at("10:00:02"), last_schedule=None, now=at("10:07:30"))
    assert unmet.missed == at("10:05:00")
    assert unmet.next_run == at("10:10:00")


def test_nothing_is_due_before_the_first_run_time() -> None:
    unmet = recent_unmet(EVERY_5_MIN, created_at=at("10:00:02"), last_schedule=None, now=at("10:04:59"))
    assert unmet.missed is None
    assert unmet.next_run == at("10:05:00")


def test_a_run_time_equal_to_now_is_due() -> None:
    unmet = recent_unmet(EVERY_5_MIN, created_at=at("10:00:02"), last_schedule=None, now=at("10:05:00"))
    assert unmet.missed == at("10:05:00")


def test_counting_starts_at_the_last_run_not_the_creation() -> None:
    unmet = recent_unmet(EVERY_5_MIN, created_at=at("09:00:00"), last_schedule=at("10:05:00"), now=at("10:07:30"))
    assert unmet.missed is None
    assert unmet.next_run == at("10:10:00")


def test_the_starting_deadline_ignores_runs_older_than_it() -> None:
    common = {"created_at": at("10:00:00"), "last_schedule": None, "now": at("10:07:30")}
    assert recent_unmet(EVERY_5_MIN, starting_deadline=60, **common).missed is None
    assert recent_unmet(EVERY_5_MIN, starting_deadline=200, **common).missed == at("10:05:00")


def test_every_counts_whole_seconds_from_the_last_run() -> None:
    every_2s = parse_schedule("@every 2s")
    # robfig/cron drops the fraction first: the first run after 100.7 is 102, not 102.7.
    assert next_after(every_2s, 100.7) == 102.0
    unmet = recent_unmet(every_2s, created_at=100.7, last_schedule=None, now=103.0)
    assert (unmet.missed, unmet.next_run) == (102.0, 104.0)


def test_more_than_a_hundred_missed_runs_is_an_error_without_a_deadline() -> None:
    every_1s = parse_schedule("@every 1s")
    with pytest.raises(ScheduleTimeError, match=r"too many missed start times.*startingDeadlineSeconds"):
        recent_unmet(every_1s, created_at=1000.0, last_schedule=None, now=1000.0 + MAX_MISSED + 5)
    exactly = recent_unmet(every_1s, created_at=1000.0, last_schedule=None, now=1000.0 + MAX_MISSED)
    assert exactly.missed == 1000.0 + MAX_MISSED
    bounded = recent_unmet(every_1s, created_at=1000.0, last_schedule=None, now=5000.0, starting_deadline=10)
    assert bounded.missed == 5000.0


def test_a_last_run_in_the_future_is_an_error() -> None:
    with pytest.raises(ScheduleTimeError, match="later than now"):
        recent_unmet(EVERY_5_MIN, created_at=at("10:00:00"), last_schedule=at("11:00:00"), now=at("10:30:00"))


def test_a_schedule_that_never_fires_has_no_next_run() -> None:
    february_30 = parse_schedule("0 0 30 2 *")
    unmet = recent_unmet(february_30, created_at=at("10:00:00"), last_schedule=None, now=at("11:00:00"))
    assert (unmet.missed, unmet.next_run) == (None, None)


# ---- decide_firing --------------------------------------------------------------------------------------


def running(name: str, created_at: float = 0.0) -> Child:
    return Child(uid=f"uid-{name}", name=name, created_at=created_at, finished=False)


def done(name: str, created_at: float = 0.0) -> Child:
    return Child(uid=f"uid-{name}", name=name, created_at=created_at, finished=True)


DUE = {"created_at": at("10:00:00"), "last_schedule": None, "now": at("10:05:01")}


def test_a_due_run_spawns() -> None:
    firing = decide_firing(EVERY_5_MIN, **DUE)
    assert firing.spawn
    assert firing.missed == at("10:05:00")
    assert firing.events == ()


def test_a_paused_schedule_never_spawns_and_says_nothing() -> None:
    firing = decide_firing(EVERY_5_MIN, paused=True, **DUE)
    assert not firing.spawn
    assert firing.events == ()


def test_forbid_skips_while_a_run_lasts_naming_it() -> None:
    firing = decide_firing(EVERY_5_MIN, forbid=True, children=[done("a"), running("web-zz"), running("web-bb")],
                           **DUE)
    assert not firing.spawn
    (event,) = firing.events
    assert (event.type, event.reason) == ("Warning", "Forbid")
    # Kubernetes lists objects by name; the first unfinished one is named.
    assert event.message == "Forbid spawning new job because: web-bb is still running"


def test_forbid_spawns_once_every_run_finished_and_allow_never_waits() -> None:
    assert decide_firing(EVERY_5_MIN, forbid=True, children=[done("a"), done("b")], **DUE).spawn
    assert decide_firing(EVERY_5_MIN, forbid=False, children=[running("a")], **DUE).spawn


def test_a_run_skipped_by_forbid_fires_once_the_last_one_ends() -> None:
    # The skipped run is not consumed (status.time stays): it is still the most recent unmet run.
    common = {"created_at": at("10:00:00"), "last_schedule": None, "forbid": True}
    assert not decide_firing(EVERY_5_MIN, now=at("10:05:01"), children=[running("a")], **common).spawn
    later = decide_firing(EVERY_5_MIN, now=at("10:06:30"), children=[done("a")], **common)
    assert later.spawn and later.missed == at("10:05:00")


def test_too_many_missed_runs_give_a_failed_event() -> None:
    firing = decide_firing(parse_schedule("@every 1s"), created_at=0.0, last_schedule=None, now=500.0)
    assert not firing.spawn
    (event,) = firing.events
    assert (event.type, event.reason) == ("Warning", "Failed")
    assert event.message.startswith("Failed to get run time: too many missed start times")


# ---- history_cleanup ------------------------------------------------------------------------------------


def test_history_keeps_the_newest_runs() -> None:
    children = [done(f"r{index}", created_at=float(index)) for index in range(5)]
    cleanup = history_cleanup(children, 2, now=100.0)
    assert cleanup.delete == ("uid-r0", "uid-r1", "uid-r2")
    assert cleanup.recheck_in is None


def test_without_a_history_limit_no_finished_run_is_kept() -> None:
    cleanup = history_cleanup([done("a", 1.0), done("b", 2.0), running("c", 3.0)], None, now=10.0)
    # c runs until deleted (no duration): waiting would never end it, so it goes too, as in Chaos Mesh.
    assert cleanup.delete == ("uid-a", "uid-b", "uid-c")


def test_a_run_beyond_the_limit_that_will_end_by_itself_is_waited_for() -> None:
    lasting = Child("uid-l", "l", created_at=0.0, finished=False, duration=30.0)
    one_shot = Child("uid-k", "k", created_at=1.0, finished=False, one_shot=True)
    over = Child("uid-o", "o", created_at=2.0, finished=False, duration=5.0)  # its duration is over: recovering
    newest = done("n", created_at=50.0)
    cleanup = history_cleanup([lasting, one_shot, over, newest], 1, now=20.0)
    assert cleanup.delete == ("uid-o",)
    assert cleanup.recheck_in == 1.0  # the one-shot is looked at again a second later; the other in 10 s


def test_history_within_the_limit_deletes_nothing() -> None:
    assert history_cleanup([done("a"), running("b")], 2, now=0.0).delete == ()


@given(
    finished=st.lists(st.booleans(), max_size=12),
    limit=st.one_of(st.none(), st.integers(min_value=1, max_value=6)),
)
def test_history_deletes_only_the_oldest_beyond_the_limit(finished: list[bool], limit: int | None) -> None:
    children = [Child(f"u{index}", f"n{index}", float(index), done, duration=1000.0)
                for index, done in enumerate(finished)]
    cleanup = history_cleanup(children, limit, now=10.0)
    excess = max(len(children) - (limit or 0), 0)
    oldest = {child.uid for child in children[:excess]}
    assert set(cleanup.delete) <= oldest
    # Every old finished run goes; a still-running one (its duration not over) stays.
    assert set(cleanup.delete) == {child.uid for child in children[:excess] if child.finished}
    assert list(cleanup.delete) == sorted(cleanup.delete, key=lambda uid: int(uid[1:]))


# ---- names ----------------------------------------------------------------------------------------------


def test_generated_names_are_base_plus_five_characters() -> None:
    rng = random.Random(1)
    name = generate_name("burn-", rng)
    assert name.startswith("burn-") and len(name) == len("burn-") + 5
    assert set(name[5:]) <= set(NAME_ALPHABET)


def test_a_long_base_is_cut_to_fit_63_characters() -> None:
    name = generate_name("x" * 80 + "-", random.Random(2))
    assert len(name) == 63
    assert name.startswith("x" * 58)


def test_a_taken_name_is_not_generated_again() -> None:
    first = generate_name("s-", random.Random(3))
    again = generate_name("s-", random.Random(3), taken={first})
    assert again != first


# ---- properties: the schedule driven tick by tick -------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    every=st.integers(min_value=1, max_value=30),
    run_time=st.floats(min_value=0.1, max_value=40.0),
    tick=st.floats(min_value=0.05, max_value=1.0),
    start=st.floats(min_value=1_700_000_000.0, max_value=1_800_000_000.0),
    forbid=st.booleans(),
)
def test_driving_an_every_schedule_with_a_fake_clock(every: int, run_time: float, tick: float, start: float,
                                                    forbid: bool) -> None:
    """Runs spawn no closer than the schedule allows, never overlap under Forbid, and keep coming."""
    cron = parse_schedule(f"@every {every}s")
    horizon = 10 * every + 3 * run_time
    now, last = start, None
    spawned: list[tuple[float, float]] = []  # (spawned at, finishes at)
    while now < start + horizon:
        children = [Child(f"u{index}", f"r{index:04d}", begin, finished=end <= now)
                    for index, (begin, end) in enumerate(spawned)]
        firing = decide_firing(cron, created_at=start, last_schedule=last, now=now, forbid=forbid, children=children)
        if firing.spawn:
            assert firing.missed is not None and firing.missed <= now
            if forbid:
                assert all(end <= now for _, end in spawned), "Forbid spawned while a run lasted"
            if spawned:
                # status.time holds whole seconds (metav1.Time): the next run is due from there.
                assert now >= math.floor(spawned[-1][0]) + every
            spawned.append((now, now + run_time))
            last = float(math.floor(now))
        now += tick
    # Liveness: a run at least every (period + run time, under Forbid) + a tick + a second of truncation.
    gap = every + (run_time if forbid else 0.0) + tick + 1.0
    assert len(spawned) >= int(horizon // gap) - 1


def matches_between(cron: CronSchedule, earliest: float, now: float) -> int:
    """How many run times lie in (earliest, now], counted one by one up to one past MAX_MISSED."""
    count, upcoming = 0, next_after(cron, earliest)
    while upcoming is not None and upcoming <= now and count <= MAX_MISSED:
        count += 1
        upcoming = next_after(cron, upcoming)
    return count


CRONS = ["*/5 * * * *", "0 * * * *", "30 9 * * mon-fri", "*/15 */2 * * *", "0 0 1 * *", "*/20 * * * * *"]


@settings(max_examples=80, deadline=None)
@given(
    text=st.sampled_from(CRONS),
    created=st.floats(min_value=1_700_000_000.0, max_value=1_800_000_000.0),
    elapsed=st.floats(min_value=0.0, max_value=3 * 86_400.0),
    deadline=st.one_of(st.none(), st.integers(min_value=1, max_value=7200)),
)
def test_the_missed_run_is_the_latest_matching_time(text: str, created: float, elapsed: float,
                                                    deadline: int | None) -> None:
    cron = parse_schedule(text)
    now = created + elapsed
    try:
        unmet = recent_unmet(cron, created_at=created, last_schedule=None, now=now, starting_deadline=deadline)
    except ScheduleTimeError:
        # Too many: more than MAX_MISSED matching times lie in the look-back window (an unbounded one, or a
        # deadline longer than MAX_MISSED periods of a frequent schedule).
        assert matches_between(cron, created if deadline is None else max(created, now - deadline), now) > MAX_MISSED
        return
    earliest = created if deadline is None else max(created, now - deadline)
    if unmet.next_run is not None:
        assert unmet.next_run > now
        assert cron.matches(datetime.fromtimestamp(unmet.next_run, UTC))
    if unmet.missed is None:
        first = next_after(cron, earliest)
        assert first is None or first > now
        return
    assert earliest < unmet.missed <= now
    assert cron.matches(datetime.fromtimestamp(unmet.missed, UTC))
    following = next_after(cron, unmet.missed)
    assert following is None or following > now
