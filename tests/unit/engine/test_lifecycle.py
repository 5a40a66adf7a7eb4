"""The experiment lifecycle against Chaos Mesh's controllers: desired phase, record operations, conditions, wire."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.engine.lifecycle import (
    INJECTED,
    MAX_RECORD_EVENTS,
    NOT_INJECTED,
    PAUSE_ANNOTATION,
    RUN,
    STOP,
    Condition,
    Decision,
    DesiredPhase,
    Event,
    Facts,
    Record,
    RecordEvent,
    Status,
    after_apply,
    after_recover,
    conditions,
    desired_phase,
    finished,
    operation,
    parse_timestamp,
    timestamp,
)

CREATED = 1_700_000_000.0
STARTED = Event("Normal", "Started", "Experiment has started")
PAUSED = Event("Normal", "Paused", "Experiment has been paused")
TIME_UP = Event("Normal", "TimeUp", "Time up according to the duration")
DELETED = Event("Normal", "Deleted", "Experiment has been deleted")

#: Chaos Mesh's intermediate phases (NetworkChaos waits for the daemon to sync its PodNetworkChaos).
APPLY_WAIT = "Not Injected/Wait"
RECOVER_WAIT = "Injected/Wait"


def _facts(
    *, duration: float | None = None, one_shot: bool = False, paused: bool = False, deleted: bool = False
) -> Facts:
    return Facts(created_at=CREATED, duration=duration, one_shot=one_shot, paused=paused, deleted=deleted)


# --- desired phase ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "current", "now", "expected"),
    [
        # Deleted beats everything, one-shot included; the Deleted event comes once.
        (_facts(deleted=True), None, CREATED, Decision(STOP, (DELETED,), None)),
        (_facts(deleted=True), RUN, CREATED, Decision(STOP, (DELETED,), None)),
        (_facts(deleted=True), STOP, CREATED, Decision(STOP, (), None)),
        (_facts(deleted=True, one_shot=True, paused=True), RUN, CREATED, Decision(STOP, (DELETED,), None)),
        (_facts(deleted=True, duration=60), RUN, CREATED + 10, Decision(STOP, (DELETED,), None)),
        # A one-shot stays Run, paused or past its duration, and announces nothing (Chaos Mesh neither).
        (_facts(one_shot=True), None, CREATED, Decision(RUN, (), None)),
        (_facts(one_shot=True), STOP, CREATED, Decision(RUN, (), None)),
        (_facts(one_shot=True, paused=True), RUN, CREATED, Decision(RUN, (), None)),
        (_facts(one_shot=True, duration=30), RUN, CREATED + 3600, Decision(RUN, (), None)),
        # The duration counts from creation; once it is over, TimeUp, whether paused or not.
        (_facts(duration=60), RUN, CREATED + 61, Decision(STOP, (TIME_UP,), None)),
        (_facts(duration=60), None, CREATED + 61, Decision(STOP, (TIME_UP,), None)),
        (_facts(duration=60), STOP, CREATED + 61, Decision(STOP, (), None)),
        (_facts(duration=60, paused=True), RUN, CREATED + 61, Decision(STOP, (TIME_UP,), None)),
        # Paused: Stop, still rechecked when the duration runs out.
        (_facts(paused=True), RUN, CREATED, Decision(STOP, (PAUSED,), None)),
        (_facts(paused=True), None, CREATED, Decision(STOP, (PAUSED,), None)),
        (_facts(paused=True), STOP, CREATED, Decision(STOP, (), None)),
        (_facts(duration=60, paused=True), RUN, CREATED + 20, Decision(STOP, (PAUSED,), 40)),
        # Running: Started on the way in (first decision, or resumed), nothing while it stays.
        (_facts(), None, CREATED, Decision(RUN, (STARTED,), None)),
        (_facts(), STOP, CREATED + 5, Decision(RUN, (STARTED,), None)),
        (_facts(), RUN, CREATED + 5, Decision(RUN, (), None)),
        (_facts(duration=60), None, CREATED, Decision(RUN, (STARTED,), 60)),
        (_facts(duration=60), RUN, CREATED + 59.5, Decision(RUN, (), 0.5)),
    ],
)
def test_desired_phase_table(facts: Facts, current: str | None, now: float, expected: Decision) -> None:
    assert desired_phase(facts, current, now) == expected


def test_a_duration_in_the_past_at_creation_stops_at_once() -> None:
    # A zero duration ("0s") has run out as soon as the experiment exists.
    assert desired_phase(_facts(duration=0), None, CREATED).phase == STOP


@given(
    duration=st.none() | st.floats(min_value=0, max_value=1e6),
    one_shot=st.booleans(),
    paused=st.booleans(),
    deleted=st.booleans(),
    current=st.sampled_from([None, RUN, STOP]),
    elapsed=st.floats(min_value=0, max_value=2e6),
)
def test_events_only_on_change(
    duration: float | None, one_shot: bool, paused: bool, deleted: bool, current: str | None, elapsed: float
) -> None:
    facts = _facts(duration=duration, one_shot=one_shot, paused=paused, deleted=deleted)
    decision = desired_phase(facts, current, CREATED + elapsed)
    if decision.phase == current:
        assert decision.events == ()
    else:
        # One reason per change; a one-shot's Run is the only silent change.
        assert len(decision.events) == (0 if one_shot and not deleted else 1)
    # Deciding again from the phase just decided changes nothing and says nothing.
    again = desired_phase(facts, decision.phase, CREATED + elapsed)
    assert (again.phase, again.events) == (decision.phase, ())
    if decision.recheck_in is not None:
        assert decision.phase == RUN or paused
        assert 0 < decision.recheck_in <= (duration or 0) + 1e-6  # created + duration - now, in floats


def test_pause_annotation_is_chaos_meshs() -> None:
    assert PAUSE_ANNOTATION == "experiment.chaos-mesh.org/pause"


# --- operations ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "phase", "expected"),
    [
        (RUN, NOT_INJECTED, "apply"),
        (RUN, APPLY_WAIT, "apply"),
        (RUN, INJECTED, None),
        # Halfway through a recovery, Run must finish the recovery before applying again (Chaos Mesh's cycle).
        (RUN, RECOVER_WAIT, "recover"),
        (STOP, NOT_INJECTED, None),
        # Halfway through an apply, Stop must finish the apply first.
        (STOP, APPLY_WAIT, "apply"),
        (STOP, INJECTED, "recover"),
        (STOP, RECOVER_WAIT, "recover"),
    ],
)
def test_operation_table(desired: DesiredPhase, phase: str, expected: str | None) -> None:
    assert operation(desired, Record("shop/web-0", ".", phase=phase)) == expected


def test_successful_apply_injects_counts_and_announces() -> None:
    record, event = after_apply(Record("shop/web-0/app", "."), None, CREATED)
    assert record == Record(
        "shop/web-0/app",
        ".",
        phase=INJECTED,
        injected_count=1,
        events=(RecordEvent("Succeeded", "Apply", CREATED),),
    )
    assert record.injected
    assert event == Event("Normal", "Applied", "Successfully apply chaos for shop/web-0/app")


def test_failed_apply_stays_to_be_retried() -> None:
    before = Record("shop/web-0", ".", injected_count=2, recovered_count=2)
    record, event = after_apply(before, "no such container", CREATED)
    assert (record.phase, record.injected_count, record.recovered_count) == (NOT_INJECTED, 2, 2)
    assert record.events == (RecordEvent("Failed", "Apply", CREATED, "no such container"),)
    assert event == Event("Warning", "Failed", "Failed to apply chaos: no such container")
    assert operation(RUN, record) == "apply"


def test_successful_recover_and_failed_recover() -> None:
    injected = Record("shop/web-0", ".Target", phase=INJECTED, injected_count=1)
    record, event = after_recover(injected, None, CREATED + 5)
    assert (record.phase, record.injected_count, record.recovered_count) == (NOT_INJECTED, 1, 1)
    assert record.events == (RecordEvent("Succeeded", "Recover", CREATED + 5),)
    assert event == Event("Normal", "Recovered", "Successfully recover chaos for shop/web-0")

    record, event = after_recover(injected, "tc: RTNETLINK answers: busy", CREATED + 5)
    assert (record.phase, record.recovered_count) == (INJECTED, 0)
    assert record.events == (RecordEvent("Failed", "Recover", CREATED + 5, "tc: RTNETLINK answers: busy"),)
    assert event == Event("Warning", "Failed", "Failed to recover chaos: tc: RTNETLINK answers: busy")
    assert operation(STOP, record) == "recover"


def test_default_event_cap_is_chaos_meshs_max_events() -> None:
    assert MAX_RECORD_EVENTS == 100
    record = Record("shop/web-0", ".")
    for second in range(150):
        record, _ = after_apply(record, "boom", float(second))
    assert len(record.events) == MAX_RECORD_EVENTS
    assert [event.at for event in record.events] == [float(second) for second in range(50, 150)]


def test_a_record_loaded_with_too_many_events_is_brought_under_the_cap() -> None:
    loaded = Record("shop/web-0", ".", events=tuple(RecordEvent("Failed", "Apply", float(i), "x") for i in range(8)))
    record, _ = after_apply(loaded, None, 100.0, max_events=3)
    assert [event.at for event in record.events] == [6.0, 7.0, 100.0]


Outcome = tuple[str, str | None]
OUTCOMES = st.lists(st.tuples(st.sampled_from(["apply", "recover"]), st.none() | st.sampled_from(["boom", "gone"])))


@given(outcomes=OUTCOMES, max_events=st.integers(min_value=1, max_value=6))
def test_any_outcome_sequence_keeps_the_cap_and_counts_successes(outcomes: list[Outcome], max_events: int) -> None:
    record = Record("shop/web-0", ".")
    every_event: list[RecordEvent] = []
    for at, (kind, error) in enumerate(outcomes):
        fold = after_apply if kind == "apply" else after_recover
        phase_before = record.phase
        record, event = fold(record, error, float(at), max_events=max_events)
        every_event.append(record.events[-1])
        assert len(record.events) <= max_events
        assert event.type == ("Warning" if error else "Normal")
        if error is not None:
            assert record.phase == phase_before
        else:
            assert record.phase == (INJECTED if kind == "apply" else NOT_INJECTED)
    assert record.injected_count == sum(1 for kind, error in outcomes if kind == "apply" and error is None)
    assert record.recovered_count == sum(1 for kind, error in outcomes if kind == "recover" and error is None)
    # The cap drops the oldest: what is kept is the latest events, in order.
    assert list(record.events) == every_event[len(every_event) - len(record.events) :]
    assert len(record.events) == min(len(outcomes), max_events)


# --- conditions and finishing ----------------------------------------------------------------------------


def _records(*phases: str) -> tuple[Record, ...]:
    return tuple(Record(f"shop/web-{index}", ".", phase=phase) for index, phase in enumerate(phases))


def _flags(found: tuple[Condition, ...]) -> dict[str, str]:
    return {condition.type: condition.status for condition in found}


@pytest.mark.parametrize(
    ("records", "paused", "expected"),
    [
        (None, False, ("False", "False", "False", "False")),
        (None, True, ("False", "False", "False", "True")),
        (_records(NOT_INJECTED, NOT_INJECTED), False, ("True", "False", "True", "False")),
        (_records(INJECTED, INJECTED), False, ("True", "True", "False", "False")),
        (_records(INJECTED, NOT_INJECTED), True, ("True", "False", "False", "True")),
        # An intermediate phase is neither injected nor recovered.
        (_records(INJECTED, RECOVER_WAIT), False, ("True", "False", "False", "False")),
        (_records(NOT_INJECTED, APPLY_WAIT), False, ("True", "False", "False", "False")),
    ],
)
def test_conditions(records: tuple[Record, ...] | None, paused: bool, expected: tuple[str, ...]) -> None:
    found = conditions(records, paused)
    assert [condition.type for condition in found] == ["Selected", "AllInjected", "AllRecovered", "Paused"]
    assert tuple(condition.status for condition in found) == expected


@pytest.mark.parametrize(
    ("decision", "records", "one_shot", "expected"),
    [
        (STOP, None, False, False),
        (RUN, None, True, False),
        (STOP, _records(NOT_INJECTED, NOT_INJECTED), False, True),
        (STOP, _records(NOT_INJECTED, INJECTED), False, False),
        (STOP, _records(NOT_INJECTED, RECOVER_WAIT), False, False),
        (RUN, _records(INJECTED, INJECTED), False, False),
        (RUN, _records(INJECTED, INJECTED), True, True),
        (RUN, _records(INJECTED, NOT_INJECTED), True, False),
        # A deleted one-shot is done once its records are recovered (a kill's recovery does nothing).
        (STOP, _records(INJECTED), True, False),
        (STOP, _records(NOT_INJECTED), True, True),
    ],
)
def test_finished(decision: DesiredPhase, records: tuple[Record, ...] | None, one_shot: bool, expected: bool) -> None:
    assert finished(decision, records, one_shot=one_shot) is expected


# --- wire form -------------------------------------------------------------------------------------------


def test_wire_form_is_chaos_meshs_status() -> None:
    record = Record(
        "shop/web-0/app",
        ".",
        phase=INJECTED,
        injected_count=1,
        recovered_count=0,
        events=(
            RecordEvent("Failed", "Apply", 1_704_164_645.0, "no such container"),
            RecordEvent("Succeeded", "Apply", 1_704_164_650.0),
        ),
    )
    wire = Status(RUN, (record,), paused=False).to_wire()
    assert wire == {
        "conditions": [
            {"type": "Selected", "status": "True"},
            {"type": "AllInjected", "status": "True"},
            {"type": "AllRecovered", "status": "False"},
            {"type": "Paused", "status": "False"},
        ],
        "experiment": {
            "desiredPhase": "Run",
            "containerRecords": [
                {
                    "id": "shop/web-0/app",
                    "selectorKey": ".",
                    "phase": "Injected",
                    "injectedCount": 1,
                    "recoveredCount": 0,
                    "events": [
                        {
                            "type": "Failed",
                            "operation": "Apply",
                            "timestamp": "2024-01-02T03:04:05Z",
                            "message": "no such container",
                        },
                        {"type": "Succeeded", "operation": "Apply", "timestamp": "2024-01-02T03:04:10Z"},
                    ],
                }
            ],
        },
    }


def test_a_fresh_status_has_no_experiment_fields() -> None:
    wire = Status().to_wire()
    assert wire["experiment"] == {}
    assert {item["status"] for item in wire["conditions"]} == {"False"}
    assert Status.from_wire(None) == Status()
    assert Status.from_wire({}) == Status()


def test_reads_a_status_chaos_mesh_wrote() -> None:
    written: dict[str, Any] = {
        "conditions": [
            {"type": "AllRecovered", "status": "False"},
            {"type": "Paused", "status": "True"},
            {"type": "Selected", "status": "True"},
            {"type": "AllInjected", "status": "False"},
        ],
        "experiment": {
            "desiredPhase": "Stop",
            "containerRecords": [
                {
                    "id": "shop/db-0",
                    "selectorKey": ".Target",
                    "phase": "Injected/Wait",
                    "injectedCount": 1,
                    "recoveredCount": 0,
                    "events": [{"type": "Succeeded", "operation": "Apply", "timestamp": "2024-01-02T03:04:05Z"}],
                },
                # injectedCount and recoveredCount are written as 0 by Chaos Mesh, but older objects may lack them.
                {"id": "shop/web-0", "selectorKey": ".", "phase": "Not Injected"},
            ],
        },
    }
    status = Status.from_wire(written, paused=True)
    assert status.desired == STOP
    assert status.records == (
        Record(
            "shop/db-0",
            ".Target",
            phase=RECOVER_WAIT,
            injected_count=1,
            events=(RecordEvent("Succeeded", "Apply", 1_704_164_645.0),),
        ),
        Record("shop/web-0", "."),
    )
    assert _flags(conditions(status.records, status.paused)) == _flags(
        tuple(Condition(item["type"], item["status"]) for item in written["conditions"])
    )


def test_an_unknown_desired_phase_reads_as_undecided() -> None:
    assert Status.from_wire({"experiment": {"desiredPhase": "Paused"}}).desired is None


def test_timestamps_are_kubernetes_seconds() -> None:
    assert timestamp(1_704_164_645.75) == "2024-01-02T03:04:05Z"
    assert parse_timestamp("2024-01-02T03:04:05Z") == 1_704_164_645.0


PHASES = st.sampled_from([NOT_INJECTED, INJECTED, APPLY_WAIT, RECOVER_WAIT])
RECORD_EVENTS = st.builds(
    RecordEvent,
    type=st.sampled_from(["Succeeded", "Failed"]),
    operation=st.sampled_from(["Apply", "Recover"]),
    # metav1.Time keeps whole seconds.
    at=st.integers(min_value=0, max_value=4_102_444_800).map(float),
    message=st.text(max_size=20),
)
RECORDS = st.builds(
    Record,
    id=st.text(min_size=1, max_size=30),
    selector_key=st.sampled_from([".", ".Target"]),
    phase=PHASES,
    injected_count=st.integers(min_value=0, max_value=1000),
    recovered_count=st.integers(min_value=0, max_value=1000),
    events=st.lists(RECORD_EVENTS, max_size=4).map(tuple),
)
STATUSES = st.builds(
    Status,
    desired=st.sampled_from([None, RUN, STOP]),
    records=st.none() | st.lists(RECORDS, max_size=4).map(tuple),
    paused=st.booleans(),
)


@given(status=STATUSES)
def test_wire_round_trip(status: Status) -> None:
    # Through JSON, as the API server stores it.
    wire = json.loads(json.dumps(status.to_wire()))
    assert Status.from_wire(wire, paused=status.paused) == status
    assert _flags(tuple(Condition(item["type"], item["status"]) for item in wire["conditions"])) == _flags(
        conditions(status.records, status.paused)
    )
