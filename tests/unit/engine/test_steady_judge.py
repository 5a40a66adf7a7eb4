"""The steady-state judge: Chaos Mesh's StatusCheck thresholds (consecutive outcomes), history cap, duration."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.engine.steady import (
    Judge,
    Sample,
    Thresholds,
    judge_samples,
    percentile,
    status_code_matches,
    summarize,
)

outcomes = st.lists(st.booleans(), max_size=60)
threshold = st.integers(min_value=1, max_value=6)


def samples_of(oks: list[bool], start: float = 100.0, step: float = 1.0) -> list[Sample]:
    return [Sample(at=start + index * step, ok=ok, latency_ms=1.0 + index, detail="") for index, ok in enumerate(oks)]


def chaos_mesh_worker(oks: list[bool], mode: str, failure_threshold: int, success_threshold: int) -> tuple[str, int]:
    """Chaos Mesh's worker.execute, transcribed: (how it stopped, executions judged). Its lastResult starts false."""
    last, same = False, 0
    for index, ok in enumerate(oks):
        if ok == last:
            same += 1
        else:
            last, same = ok, 1
        if ok and mode == "Synchronous" and same >= success_threshold:
            return "SuccessThresholdExceed", index + 1
        if not ok and same >= failure_threshold:
            return "FailureThresholdExceed", index + 1
    return "", len(oks)


@given(oks=outcomes, failure_threshold=threshold, success_threshold=threshold,
       mode=st.sampled_from(["Synchronous", "Continuous"]))
def test_the_judge_stops_where_chaos_mesh_s_worker_stops(
    oks: list[bool], failure_threshold: int, success_threshold: int, mode: str
) -> None:
    thresholds = Thresholds(mode=mode, failure_threshold=failure_threshold,  # type: ignore[arg-type]
                            success_threshold=success_threshold)
    judge = judge_samples(thresholds, samples_of(oks))
    reason, judged = chaos_mesh_worker(oks, mode, failure_threshold, success_threshold)
    assert judge.count == judged
    assert (judge.reason or "") == reason
    assert judge.completed == bool(reason)
    assert judge.verdict == ("Failed" if reason == "FailureThresholdExceed" else "Healthy")
    if judge.completed:
        assert judge.completed_at == 100.0 + judged - 1


@given(oks=outcomes, failure_threshold=threshold)
def test_continuous_fails_exactly_when_failure_threshold_failures_come_in_a_row(
    oks: list[bool], failure_threshold: int
) -> None:
    judge = judge_samples(Thresholds(mode="Continuous", failure_threshold=failure_threshold), samples_of(oks))
    longest, run = 0, 0
    for ok in oks:
        run = 0 if ok else run + 1
        longest = max(longest, run)
    assert (judge.verdict == "Failed") == (longest >= failure_threshold)
    if judge.verdict == "Healthy":
        assert judge.count == len(oks) and not judge.completed


@given(oks=outcomes, limit=st.integers(min_value=1, max_value=10))
def test_history_keeps_the_newest_records_only(oks: list[bool], limit: int) -> None:
    samples = samples_of(oks)
    judge = judge_samples(Thresholds(mode="Continuous", failure_threshold=1000, records_history_limit=limit), samples)
    assert judge.records == tuple(samples[-limit:]) if samples else judge.records == ()
    assert judge.count == len(samples)


def test_failures_that_are_not_consecutive_do_not_fail() -> None:
    thresholds = Thresholds(mode="Continuous", failure_threshold=3)
    judge = judge_samples(thresholds, samples_of([False, False, True, False, False, True, False, False]))
    assert judge.verdict == "Healthy" and not judge.completed
    judge.record(Sample(at=200.0, ok=False))
    assert (judge.verdict, judge.reason, judge.completed_at) == ("Failed", "FailureThresholdExceed", 200.0)


def test_samples_after_the_verdict_are_ignored() -> None:
    judge = judge_samples(Thresholds(mode="Continuous", failure_threshold=1), samples_of([True, False]))
    assert judge.verdict == "Failed"
    assert judge.record(Sample(at=500.0, ok=True)) is False
    assert judge.verdict == "Failed" and judge.count == 2


def test_a_synchronous_check_succeeds_after_success_threshold_successes_in_a_row() -> None:
    judge = judge_samples(Thresholds(mode="Synchronous", success_threshold=2), samples_of([True, False, True, True]))
    assert (judge.completed, judge.reason, judge.verdict, judge.count) == (True, "SuccessThresholdExceed", "Healthy", 4)
    assert judge.success_threshold_met


def test_duration_completes_the_check_and_later_samples_are_not_judged() -> None:
    judge = Judge(Thresholds(mode="Continuous", failure_threshold=2, duration_seconds=5.0), started_at=100.0)
    assert judge.deadline == 105.0
    assert judge.record(Sample(at=101.0, ok=False))
    assert not judge.tick(105.0)  # the deadline itself is still inside the duration
    assert judge.record(Sample(at=106.0, ok=False)) is False
    assert (judge.completed, judge.reason, judge.completed_at, judge.verdict) == (True, "DurationExceed", 105.0,
                                                                                   "Healthy")
    assert judge.tick(200.0) is False  # completes once


def test_success_threshold_met_follows_the_latest_run() -> None:
    judge = judge_samples(Thresholds(mode="Continuous", success_threshold=2), samples_of([True, True, False]))
    assert not judge.success_threshold_met
    judge.record(Sample(at=200.0, ok=True))
    judge.record(Sample(at=201.0, ok=True))
    assert judge.success_threshold_met


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_threshold": 0}, "failureThreshold: 0 is not a whole number ≥ 1"),
        ({"success_threshold": True}, "successThreshold: True is not a whole number ≥ 1"),
        ({"records_history_limit": 1001}, "recordsHistoryLimit: 1001 is more than 1000"),
        ({"duration_seconds": -1.0}, "duration: -1.0 seconds is not a positive duration"),
        ({"mode": "Eventually"}, "mode: 'Eventually' is neither Synchronous nor Continuous"),
    ],
)
def test_thresholds_refuse_bad_numbers_naming_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        Thresholds(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("criteria", "code", "matches"),
    [
        ("200", 200, True), ("200", 201, False), ("+200", 200, True), ("200-299", 200, True),
        ("200-299", 299, True), ("200-299", 300, False), ("200-299", 199, False), ("abc", 200, False),
        ("200-", 200, False), ("-200", 200, False), ("", 200, False), ("2 00", 200, False),
    ],
)
def test_status_code_criteria(criteria: str, code: int, matches: bool) -> None:
    assert status_code_matches(criteria, code) is matches


@given(low=st.integers(1, 999), high=st.integers(1, 999), code=st.integers(1, 999))
def test_a_status_code_range_is_inclusive(low: int, high: int, code: int) -> None:
    assert status_code_matches(f"{low}-{high}", code) == (low <= code <= high)


@given(values=st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=50),
       percent=st.floats(min_value=0, max_value=100))
def test_percentile_is_one_of_the_values_and_ordered(values: list[float], percent: float) -> None:
    ordered = sorted(values)
    result = percentile(ordered, percent)
    assert result in ordered
    assert percentile(ordered, 0) == ordered[0] and percentile(ordered, 100) == ordered[-1]


def test_summary_counts_and_latency_of_passing_samples_in_the_stretch() -> None:
    samples = [Sample(1.0, True, 2.0), Sample(2.0, False, 900.0), Sample(3.0, True, 4.0), Sample(4.0, True, 6.0),
               Sample(9.0, True, 100.0)]
    summary = summarize(samples, start=1.0, end=4.0)
    assert (summary.count, summary.ok, summary.failed) == (4, 3, 1)
    assert (summary.latency_median_ms, summary.latency_p95_ms, summary.latency_max_ms) == (4.0, 6.0, 6.0)
    assert summary.availability == 0.75
    assert summary.sentence() == "3/4 ok (75%), latency median 4.0 ms, p95 6.0 ms"
    assert summarize([]).sentence() == "no samples" and summarize([]).availability is None
    assert Sample(1.0, True, 2.0, "200").to_json() == {"at": 1.0, "ok": True, "latency_ms": 2.0, "detail": "200"}
