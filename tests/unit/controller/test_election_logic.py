"""Leader election's pure decisions: who may take or keep the Lease, and what record is written."""

from __future__ import annotations

import datetime as dt
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.controller.election import LeaderElector, LeaseRecord, decide, micro_time, released
from faultmesh.controller.kube import Kube

WALL = 1_700_000_000.25  # 2023-11-14T22:13:20.25Z
STAMP = "2023-11-14T22:13:20.250000Z"


def held_by(holder: str, duration: int = 15, transitions: int = 3) -> LeaseRecord:
    return LeaseRecord(holder, duration, "2023-11-14T20:00:00.000000Z", "2023-11-14T22:00:00.000000Z", transitions)


def test_micro_time_is_rfc3339_utc_with_microseconds() -> None:
    assert micro_time(WALL) == STAMP
    assert dt.datetime.strptime(micro_time(0), "%Y-%m-%dT%H:%M:%S.%fZ") == dt.datetime(1970, 1, 1)


def test_the_first_candidate_creates_the_record() -> None:
    record = decide(None, "a", lease_duration_s=15, observed_at=100, now=100, wall_now=WALL)
    assert record == LeaseRecord("a", 15, STAMP, STAMP, 0)


def test_a_lease_another_holder_renewed_recently_is_left_alone() -> None:
    current = held_by("b")
    assert decide(current, "a", lease_duration_s=15, observed_at=100, now=100, wall_now=WALL) is None
    assert decide(current, "a", lease_duration_s=15, observed_at=100, now=114.9, wall_now=WALL) is None


def test_a_lease_not_renewed_for_its_duration_is_taken_over_as_a_new_term() -> None:
    record = decide(held_by("b", transitions=3), "a", lease_duration_s=15, observed_at=100, now=115, wall_now=WALL)
    assert record == LeaseRecord("a", 15, STAMP, STAMP, 4)


def test_expiry_counts_the_holders_duration_not_the_candidates() -> None:
    current = held_by("b", duration=30)
    assert decide(current, "a", lease_duration_s=10, observed_at=100, now=125, wall_now=WALL) is None
    taken = decide(current, "a", lease_duration_s=10, observed_at=100, now=130, wall_now=WALL)
    assert taken is not None and taken.lease_duration_s == 10


def test_expiry_is_judged_by_when_the_record_was_seen_to_change_not_by_its_renew_time() -> None:
    # The holder's clock is an hour behind: its renewTime looks ancient, yet it just renewed.
    current = LeaseRecord("b", 15, "2000-01-01T00:00:00.000000Z", "2000-01-01T00:00:00.000000Z", 1)
    assert decide(current, "a", lease_duration_s=15, observed_at=500, now=501, wall_now=WALL) is None


def test_the_holder_renews_keeping_its_acquire_time_and_transitions() -> None:
    current = held_by("a", transitions=3)
    record = decide(current, "a", lease_duration_s=15, observed_at=0, now=10_000, wall_now=WALL)
    assert record == LeaseRecord("a", 15, current.acquire_time, STAMP, 3)


def test_a_released_lease_is_taken_at_once() -> None:
    current = released(held_by("b", transitions=3), WALL - 1)
    record = decide(current, "a", lease_duration_s=15, observed_at=100, now=100, wall_now=WALL)
    assert record == LeaseRecord("a", 15, STAMP, STAMP, 4)


def test_release_empties_the_holder_and_keeps_the_transitions() -> None:
    record = released(held_by("a", transitions=7), WALL)
    assert record == LeaseRecord("", 1, STAMP, STAMP, 7)
    assert record.to_spec()["holderIdentity"] == ""


def test_the_record_round_trips_through_a_lease_spec() -> None:
    record = held_by("a")
    assert LeaseRecord.from_spec(record.to_spec()) == record
    assert LeaseRecord.from_spec(None) == LeaseRecord()
    spec = {"holderIdentity": "x", "leaseDurationSeconds": 15, "renewTime": STAMP}
    assert LeaseRecord.from_spec(spec) == LeaseRecord("x", 15, None, STAMP, 0)


@given(
    holder=st.sampled_from(["", "a", "b"]),
    duration=st.integers(1, 60),
    transitions=st.integers(0, 1000),
    observed_at=st.floats(0, 1000),
    elapsed=st.integers(0, 120),
)
def test_at_most_one_candidate_may_write_while_a_lease_is_valid(
    holder: str, duration: int, transitions: int, observed_at: float, elapsed: int
) -> None:
    """Whoever holds a valid lease is the only one allowed to write; after expiry anyone may; the
    transitions count goes up exactly when the holder changes."""
    current = held_by(holder, duration, transitions)
    now = observed_at + elapsed
    allowed = {
        candidate: decide(current, candidate, lease_duration_s=15, observed_at=observed_at, now=now, wall_now=WALL)
        for candidate in ("a", "b", "c")
    }
    if holder and elapsed < duration:
        assert [c for c, record in allowed.items() if record is not None] == [holder]
    else:
        assert all(record is not None for record in allowed.values())
    for candidate, record in allowed.items():
        if record is not None:
            assert record.holder == candidate
            assert record.transitions == transitions + (candidate != holder)


@pytest.mark.parametrize(
    ("lease_duration", "renew_deadline", "retry_period", "message"),
    [
        (10, 10, 2, "lease_duration .* must be greater than renew_deadline"),
        (15, 2, 2, r"renew_deadline .* must be greater than 1.2 × retry_period"),
        (15, 10, 0, "must be positive"),
    ],
)
def test_timings_that_could_let_two_lead_are_refused(
    lease_duration: float, renew_deadline: float, retry_period: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LeaderElector(cast(Kube, None), "ns", "lease", "a", lease_duration, renew_deadline, retry_period)


def test_an_empty_identity_is_refused() -> None:
    with pytest.raises(ValueError, match="identity"):
        LeaderElector(cast(Kube, None), "ns", "lease", "")
