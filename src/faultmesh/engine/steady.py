"""Steady-state judgment: turn probe samples into a verdict, with Chaos Mesh's StatusCheck semantics.

Pure: the sampler (``faultmesh.host.steady``) measures, this module decides. A check fails when
``failure_threshold`` executions in a row fail; a Synchronous check succeeds when ``success_threshold``
executions in a row succeed; a check with a duration completes when that duration has elapsed. The first
of these ends the judgment, and later samples no longer change it, as a Chaos Mesh StatusCheck stops its
worker at its first verdict.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["Healthy", "Failed"]
CheckMode = Literal["Synchronous", "Continuous"]
# The names of Chaos Mesh's StatusCheck conditions that complete a check.
CompletionReason = Literal["FailureThresholdExceed", "SuccessThresholdExceed", "DurationExceed"]

_CODE_DIGITS = frozenset("0123456789")
#: The CRD's upper bound for ``recordsHistoryLimit``.
MAX_RECORDS_HISTORY = 1000


@dataclass(frozen=True)
class Sample:
    """One probe execution: when it started, whether it passed, how long it took, and what it saw."""

    at: float
    ok: bool
    latency_ms: float | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The sample as the run journal writes it (``probe.samples[]``)."""
        return {"at": self.at, "ok": self.ok, "latency_ms": self.latency_ms, "detail": self.detail}


@dataclass(frozen=True)
class Thresholds:
    """The StatusCheckSpec numbers that drive the judgment (see ``faultmesh.api.statuscheck``)."""

    mode: CheckMode = "Synchronous"
    failure_threshold: int = 3
    success_threshold: int = 1
    records_history_limit: int = 100
    duration_seconds: float | None = None

    def __post_init__(self) -> None:
        problems = thresholds_problems(
            mode=self.mode,
            failure_threshold=self.failure_threshold,
            success_threshold=self.success_threshold,
            records_history_limit=self.records_history_limit,
            duration_seconds=self.duration_seconds,
        )
        if problems:
            raise ValueError("; ".join(problems))


def thresholds_problems(
    *,
    mode: object,
    failure_threshold: object,
    success_threshold: object,
    records_history_limit: object,
    duration_seconds: object,
) -> list[str]:
    """What is wrong with these StatusCheckSpec numbers, each naming its field; empty when all is well."""
    problems = []
    if mode not in ("Synchronous", "Continuous"):
        problems.append(f"mode: {mode!r} is neither Synchronous nor Continuous")
    for name, value, most in (
        ("failureThreshold", failure_threshold, None),
        ("successThreshold", success_threshold, None),
        ("recordsHistoryLimit", records_history_limit, MAX_RECORDS_HISTORY),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{name}: {value!r} is not a whole number ≥ 1")
        elif most is not None and value > most:
            problems.append(f"{name}: {value} is more than {most}")
    duration = duration_seconds
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, int | float) or not math.isfinite(duration)
        or duration <= 0
    ):
        problems.append(f"duration: {duration!r} seconds is not a positive duration")
    return problems


@dataclass
class Judge:
    """Feeds on samples in time order and keeps the verdict, the current run and the capped history."""

    thresholds: Thresholds
    started_at: float
    verdict: Verdict = "Healthy"
    completed: bool = False
    reason: CompletionReason | None = None
    completed_at: float | None = None
    # Executions judged so far (Chaos Mesh's status.count); the history below is capped, this is not.
    count: int = 0
    last_ok: bool | None = None
    run_length: int = 0
    _records: deque[Sample] = field(default_factory=deque, repr=False)

    @property
    def records(self) -> tuple[Sample, ...]:
        """The newest ``records_history_limit`` judged samples, oldest first."""
        return tuple(self._records)

    @property
    def deadline(self) -> float | None:
        """When the check's duration runs out, or None when it runs until stopped."""
        if self.thresholds.duration_seconds is None:
            return None
        return self.started_at + self.thresholds.duration_seconds

    @property
    def success_threshold_met(self) -> bool:
        """Whether the latest executions are ``success_threshold`` successes in a row.

        A Workflow aborts on a completed check for which this is false (Chaos Mesh's abortWithStatusCheck).
        """
        return self.last_ok is True and self.run_length >= self.thresholds.success_threshold

    def tick(self, now: float) -> bool:
        """Note that time ``now`` has come; completes the check when its duration has elapsed.

        Returns True when this call completed the check.
        """
        deadline = self.deadline
        if self.completed or deadline is None or now <= deadline:
            return False
        self._complete("DurationExceed", deadline)
        return True

    def record(self, sample: Sample) -> bool:
        """Judge one sample; returns False when it came after the check completed and was ignored."""
        self.tick(sample.at)
        if self.completed:
            return False
        self.count += 1
        if sample.ok == self.last_ok:
            self.run_length += 1
        else:
            self.last_ok = sample.ok
            self.run_length = 1
        self._records.append(sample)
        while len(self._records) > self.thresholds.records_history_limit:
            self._records.popleft()
        if not sample.ok and self.run_length >= self.thresholds.failure_threshold:
            self.verdict = "Failed"
            self._complete("FailureThresholdExceed", sample.at)
        elif self.thresholds.mode == "Synchronous" and self.success_threshold_met:
            self._complete("SuccessThresholdExceed", sample.at)
        return True

    def _complete(self, reason: CompletionReason, at: float) -> None:
        self.completed = True
        self.reason = reason
        self.completed_at = at


def judge_samples(thresholds: Thresholds, samples: Iterable[Sample], started_at: float | None = None) -> Judge:
    """A judge that has seen ``samples`` (in order); it starts at the first sample unless told otherwise."""
    ordered = list(samples)
    start = started_at if started_at is not None else (ordered[0].at if ordered else 0.0)
    judge = Judge(thresholds, start)
    for sample in ordered:
        judge.record(sample)
    return judge


def status_code_matches(criteria: str, status_code: int) -> bool:
    """Whether ``status_code`` meets a StatusCheck's ``criteria.statusCode``: ``200`` or an inclusive ``200-299``.

    Criteria that are neither match nothing (manifest validation refuses them before a probe runs).
    """
    code = _integer(criteria)
    if code is not None:
        return code == status_code
    first, dash, last = criteria.partition("-")
    low, high = _integer(first), _integer(last)
    return bool(dash) and low is not None and high is not None and low <= status_code <= high


def _integer(text: str) -> int | None:
    # Go's strconv.Atoi: an optional sign, then decimal digits, nothing else.
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not set(digits) <= _CODE_DIGITS:
        return None
    return int(text)


@dataclass(frozen=True)
class SampleSummary:
    """How a probe fared over a stretch of time: counts, availability and latency of the passing samples."""

    count: int
    ok: int
    failed: int
    latency_median_ms: float | None
    latency_p95_ms: float | None
    latency_max_ms: float | None

    @property
    def availability(self) -> float | None:
        """The share of samples that passed, 0..1; None without samples."""
        return self.ok / self.count if self.count else None

    def sentence(self) -> str:
        """One line for people: ``10/10 ok (100%), latency median 0.4 ms, p95 0.9 ms``."""
        if not self.count:
            return "no samples"
        share = f"{self.ok}/{self.count} ok ({100 * self.ok / self.count:.0f}%)"
        if self.latency_median_ms is None or self.latency_p95_ms is None:
            return share
        return f"{share}, latency median {_ms(self.latency_median_ms)}, p95 {_ms(self.latency_p95_ms)}"


def summarize(samples: Iterable[Sample], start: float | None = None, end: float | None = None) -> SampleSummary:
    """Summarize the samples taken in ``[start, end]`` (either bound may be open)."""
    chosen = [s for s in samples if (start is None or s.at >= start) and (end is None or s.at <= end)]
    latencies = sorted(s.latency_ms for s in chosen if s.ok and s.latency_ms is not None)
    ok = sum(1 for s in chosen if s.ok)
    return SampleSummary(
        count=len(chosen),
        ok=ok,
        failed=len(chosen) - ok,
        latency_median_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        latency_max_ms=latencies[-1] if latencies else None,
    )


def percentile(ordered: Sequence[float], percent: float) -> float | None:
    """The nearest-rank percentile of an ascending sequence; None when it is empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"
