"""The Schedule grammar (robfig/cron as Chaos Mesh configures it) and next-run computation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultmesh.api.cron import CronError, next_run, parse_schedule, schedule_problem

START = datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    "text",
    [
        "* * * * *",
        "*/5 * * * *",
        "0 */2 * * *",
        "30 4 1,15 * *",
        "0 0 * * 1-5",
        "0 12 * JAN-mar SUN",
        "0 12 * * mon,WED,fri",
        "5/20 * * * *",
        "? * * * *",
        "0 0 ? * 1",
        "15 * * * * *",
        "*/10 * * * * *",
        "0 0 1,,15 * *",
        "+5 * * * *",
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
        "@every 5s",
        "@every 1h30m",
        "@every 500ms",
        "CRON_TZ=Asia/Tokyo 0 9 * * mon-fri",
        "TZ=UTC @hourly",
        "0 0 30 2 *",
    ],
)
def test_valid_schedules_parse(text: str) -> None:
    assert schedule_problem(text) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("* * *", "has 3 fields"),
        ("* * * * * * *", "has 7 fields"),
        ("61 * * * *", 'minute "61": 61 is above the maximum 59'),
        ("* 24 * * *", 'hour "24": 24 is above the maximum 23'),
        ("* * 0 * *", 'day of month "0": 0 is below the minimum 1'),
        ("* * 32 * *", "above the maximum 31"),
        ("* * * 13 *", 'month "13"'),
        ("* * * * 7", 'day of week "7": 7 is above the maximum 6'),
        ("60 * * * * *", 'second "60"'),
        ("5-1 * * * *", "the range starts at 5, after its end 1"),
        ("*/0 * * * *", "the step must be a positive number"),
        ("1-2-3 * * * *", 'more than one "-"'),
        ("1/2/3 * * * *", 'more than one "/"'),
        ("x * * * *", '"x" is not a number (0-59)'),
        ("* * * foo *", "or a name such as jan"),
        ("* * * * L", '"L" is not a number'),
        ("0 0 L * *", "day of month"),
        ("0 0 * * 1#2", "day of week"),
        ("@every", "unknown descriptor @every"),
        ("@every 5x", '"5x" is not one'),
        ("@every 5 minutes", '"5 minutes" is not one'),
        ("@Hourly", "unknown descriptor @Hourly"),
        ("@reboot", "unknown descriptor @reboot"),
        ("TZ=Nowhere/Special * * * * *", '"Nowhere/Special" is not a known time zone'),
        ("TZ=UTC", "must be followed by a space"),
    ],
)
def test_invalid_schedules_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_schedule(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*/15 * * * *", ["00:15:00", "00:30:00", "00:45:00"]),
        ("* * * * * *", ["00:00:01", "00:00:02", "00:00:03"]),
        ("5/20 * * * *", ["00:05:00", "00:25:00", "00:45:00"]),
        ("@hourly", ["01:00:00", "02:00:00", "03:00:00"]),
        ("@every 90s", ["00:01:30", "00:03:00", "00:04:30"]),
        ("@every 500ms", ["00:00:01", "00:00:02", "00:00:03"]),
    ],
)
def test_next_runs_on_the_first_day(text: str, expected: list[str]) -> None:
    runs = parse_schedule(text).next_runs(START, 3)
    assert [run.strftime("%H:%M:%S") for run in runs] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@weekly", ["2024-01-07", "2024-01-14"]),  # Sundays
        ("@monthly", ["2024-02-01", "2024-03-01"]),
        ("@yearly", ["2025-01-01", "2026-01-01"]),
        ("0 0 29 2 *", ["2024-02-29", "2028-02-29"]),
        ("0 0 * * 1-5", ["2024-01-02", "2024-01-03"]),
        # Both day fields restricted: either one is enough (the 13th, or any Friday).
        ("0 0 13 * 5", ["2024-01-05", "2024-01-12", "2024-01-13", "2024-01-19"]),
        # One day field left as *: only the other counts.
        ("0 0 * * 5", ["2024-01-05", "2024-01-12", "2024-01-19"]),
        ("0 0 ? * 5", ["2024-01-05", "2024-01-12", "2024-01-19"]),
        # */2 restricts the field, so the either-day rule applies: odd days or Sundays.
        ("0 0 */2 * 0", ["2024-01-03", "2024-01-05", "2024-01-07", "2024-01-09"]),
    ],
)
def test_next_run_days(text: str, expected: list[str]) -> None:
    runs = parse_schedule(text).next_runs(START, len(expected))
    assert [run.date().isoformat() for run in runs] == expected


def test_a_schedule_that_never_fires_has_no_next_run() -> None:
    assert next_run("0 0 30 2 *", START) is None
    assert parse_schedule("0 0 31 4 *").next_runs(START, 3) == []


def test_next_run_is_strictly_after_and_at_whole_seconds() -> None:
    moment = datetime(2024, 1, 1, 0, 15, 0, 250_000, tzinfo=UTC)
    assert next_run("*/15 * * * *", moment) == datetime(2024, 1, 1, 0, 30, tzinfo=UTC)
    assert next_run("@every 10s", moment) == datetime(2024, 1, 1, 0, 15, 10, tzinfo=UTC)


def test_naive_moments_are_utc() -> None:
    assert next_run("@hourly", datetime(2024, 1, 1, 5, 30)) == datetime(2024, 1, 1, 6, 0, tzinfo=UTC)


def test_time_zone_prefix() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    # START is 09:00 in Tokyo already, so the next 09:00 there is a day later.
    run = next_run("CRON_TZ=Asia/Tokyo 0 9 * * *", START)
    assert run == datetime(2024, 1, 2, 9, 0, tzinfo=tokyo)
    assert run is not None and run.astimezone(UTC) == START + timedelta(hours=24)


def test_default_time_zone_applies_without_prefix() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    schedule = parse_schedule("0 9 * * *", default_timezone=berlin)
    assert schedule.next_after(START) == datetime(2024, 1, 1, 9, 0, tzinfo=berlin)


def test_matches_refuses_every_schedules() -> None:
    with pytest.raises(ValueError, match="@every"):
        parse_schedule("@every 1m").matches(START)


# --- property tests -------------------------------------------------------------------------

_BOUNDS = {"minute": (0, 59), "hour": (0, 23), "dom": (1, 31), "month": (1, 12), "dow": (0, 6)}


@st.composite
def _item(draw: st.DrawFn, low: int, high: int) -> str:
    shape = draw(st.sampled_from(["star", "number", "range", "step", "star-step"]))
    if shape == "star":
        return draw(st.sampled_from(["*", "?"]))
    if shape == "star-step":
        return f"*/{draw(st.integers(1, high - low + 1))}"
    start = draw(st.integers(low, high))
    if shape == "number":
        return str(start)
    end = draw(st.integers(start, high))
    if shape == "range":
        return f"{start}-{end}"
    return f"{start}-{end}/{draw(st.integers(1, 10))}"


@st.composite
def _field(draw: st.DrawFn, name: str, star_weight: int) -> str:
    low, high = _BOUNDS[name]
    if draw(st.integers(0, 9)) < star_weight:
        return "*"
    return ",".join(draw(st.lists(_item(low, high), min_size=1, max_size=3)))


# Mostly-star fields keep runs close together, so a minute-by-minute search can check them.
five_field_schedules = st.tuples(
    _field("minute", 2),
    _field("hour", 5),
    _field("dom", 6),
    _field("month", 8),
    _field("dow", 6),
).map(" ".join)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 12, 31), timezones=st.just(UTC)
)


def _brute_force_next(text: str, moment: datetime, limit: timedelta) -> datetime | None:
    schedule = parse_schedule(text)
    current = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while current - moment <= limit:
        if schedule.matches(current):
            return current
        current += timedelta(minutes=1)
    return None


@settings(max_examples=60, deadline=None)
@given(five_field_schedules, moments)
def test_next_run_agrees_with_a_minute_by_minute_search(text: str, moment: datetime) -> None:
    limit = timedelta(days=3)
    expected = _brute_force_next(text, moment, limit)
    found = next_run(text, moment)
    if expected is not None:
        assert found == expected
    else:
        assert found is None or found - moment > limit


@settings(max_examples=80, deadline=None)
@given(five_field_schedules, moments)
def test_runs_are_increasing_and_match_the_schedule(text: str, moment: datetime) -> None:
    schedule = parse_schedule(text)
    runs = schedule.next_runs(moment, 4)
    for earlier, later in zip([moment, *runs], runs, strict=False):
        assert later > earlier
    for run in runs:
        assert run.second == 0
        assert schedule.matches(run)


@given(st.integers(0, 86_400 * 3), st.sampled_from(["s", "m", "h"]), moments)
def test_every_waits_its_delay_from_the_whole_second(amount: int, unit: str, moment: datetime) -> None:
    seconds = amount * {"s": 1, "m": 60, "h": 3600}[unit]
    run = next_run(f"@every {amount}{unit}", moment)
    assert run == moment.replace(microsecond=0) + timedelta(seconds=max(seconds, 1))


@given(
    st.sampled_from(list(_BOUNDS.items())),
    st.integers(-5, 200),
)
def test_out_of_range_numbers_are_refused_naming_the_field(
    bounds: tuple[str, tuple[int, int]], number: int
) -> None:
    name, (low, high) = bounds
    fields = ["*"] * 5
    fields[list(_BOUNDS).index(name)] = str(number)
    text = " ".join(fields)
    problem = schedule_problem(text)
    if low <= number <= high:
        assert problem is None
    else:
        assert problem is not None
        field_name = {"dom": "day of month", "dow": "day of week"}.get(name, name)
        assert problem.startswith(f'{field_name} "{number}"')
