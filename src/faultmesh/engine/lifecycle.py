"""An experiment's lifecycle as Chaos Mesh runs it: desired phase, per-target records, conditions, events.

Both front ends (the Kubernetes controller and host mode's runner) hold an experiment's status in this
shape and move it with these functions; only how they persist it and how they reach the agent differ.

- :func:`desired_phase` decides Run or Stop: deleted → Stop; one-shot → Run (so a kill is never repeated nor
  "recovered"); duration elapsed since creation → Stop; paused → Stop; else Run. Each change carries the
  event Chaos Mesh emits (Deleted, TimeUp, Paused, Started; none for a one-shot).
- :func:`operation` tells what one record needs: apply when Run and not injected, recover when Stop and
  injected. :func:`after_apply` / :func:`after_recover` fold an outcome into the record (phase, counts, a
  capped list of record events) and give the Kubernetes event (Applied, Recovered, Failed).
- :func:`conditions` derives Selected, AllInjected, AllRecovered and Paused from the records.

Everything here is pure: time comes in as an argument (epoch seconds).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

DesiredPhase = Literal["Run", "Stop"]
RUN: Final = "Run"
STOP: Final = "Stop"

#: Chaos Mesh's record phases.
NOT_INJECTED: Final = "Not Injected"
INJECTED: Final = "Injected"

#: Chaos Mesh keeps this many events per record by default (the controller's ``MAX_EVENTS``).
MAX_RECORD_EVENTS: Final = 100

PAUSE_ANNOTATION: Final = "experiment.chaos-mesh.org/pause"

Operation = Literal["apply", "recover"]
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    """A Kubernetes-style event about the experiment (reason and message as Chaos Mesh words them)."""

    type: EventType
    reason: str
    message: str


def started() -> Event:
    return Event("Normal", "Started", "Experiment has started")


def paused_event() -> Event:
    return Event("Normal", "Paused", "Experiment has been paused")


def time_up() -> Event:
    return Event("Normal", "TimeUp", "Time up according to the duration")


def deleted_event() -> Event:
    return Event("Normal", "Deleted", "Experiment has been deleted")


def applied(record_id: str) -> Event:
    return Event("Normal", "Applied", f"Successfully apply chaos for {record_id}")


def recovered(record_id: str) -> Event:
    return Event("Normal", "Recovered", f"Successfully recover chaos for {record_id}")


def failed(activity: str, error: str) -> Event:
    return Event("Warning", "Failed", f"Failed to {activity}: {error}")


@dataclass(frozen=True)
class Facts:
    """What decides the desired phase of an experiment."""

    #: Creation time (epoch seconds); a duration counts from here, as in Chaos Mesh.
    created_at: float
    #: ``spec.duration`` in seconds; None runs until deleted.
    duration: float | None
    one_shot: bool
    paused: bool
    deleted: bool


@dataclass(frozen=True)
class Decision:
    phase: DesiredPhase
    #: Events to emit when the phase differs from the current one.
    events: tuple[Event, ...]
    #: Seconds until the decision changes by itself (the duration runs out); None: not by time.
    recheck_in: float | None


def desired_phase(facts: Facts, current: str | None, now: float) -> Decision:
    """Run or Stop for an experiment whose status says ``current`` (None before the first decision)."""
    if facts.deleted:
        return Decision(STOP, () if current == STOP else (deleted_event(),), None)
    if facts.one_shot:
        # Chaos Mesh announces no Started for a one-shot: only the Applied of each record follows.
        return Decision(RUN, (), None)
    recheck_in: float | None = None
    if facts.duration is not None:
        left = facts.created_at + facts.duration - now
        if left <= 0:
            return Decision(STOP, () if current == STOP else (time_up(),), None)
        recheck_in = left
    if facts.paused:
        return Decision(STOP, () if current == STOP else (paused_event(),), recheck_in)
    return Decision(RUN, () if current == RUN else (started(),), recheck_in)


# ---- records -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordEvent:
    """One outcome on one record (``type`` Succeeded/Failed, ``operation`` Apply/Recover)."""

    type: Literal["Succeeded", "Failed"]
    operation: Literal["Apply", "Recover"]
    at: float
    message: str = ""


@dataclass(frozen=True)
class Record:
    """One target of an experiment: a pod (``ns/name``) or a container (``ns/name/container``)."""

    id: str
    selector_key: str
    phase: str = NOT_INJECTED
    injected_count: int = 0
    recovered_count: int = 0
    events: tuple[RecordEvent, ...] = ()

    @property
    def injected(self) -> bool:
        return self.phase == INJECTED


def operation(desired: DesiredPhase, record: Record) -> Operation | None:
    """What ``record`` needs to match ``desired``, or None when it already does."""
    if desired == RUN and record.phase != INJECTED:
        return "apply" if record.phase.startswith(NOT_INJECTED) else "recover"
    if desired == STOP and record.phase != NOT_INJECTED:
        return "apply" if record.phase.startswith(NOT_INJECTED) else "recover"
    return None


def _with_event(record: Record, event: RecordEvent, max_events: int) -> tuple[RecordEvent, ...]:
    kept = record.events[-(max_events - 1):] if max_events > 1 else ()
    return (*kept, event)


def after_apply(
    record: Record, error: str | None, now: float, *, max_events: int = MAX_RECORD_EVENTS
) -> tuple[Record, Event]:
    """The record after an apply that succeeded (``error`` None) or failed (it stays as it was, to retry)."""
    return _after(record, "Apply", error, now, max_events)


def after_recover(
    record: Record, error: str | None, now: float, *, max_events: int = MAX_RECORD_EVENTS
) -> tuple[Record, Event]:
    """The record after a recovery that was verified (``error`` None) or failed (it stays injected, to retry)."""
    return _after(record, "Recover", error, now, max_events)


def _after(record: Record, stage: Literal["Apply", "Recover"], error: str | None, now: float,
           max_events: int) -> tuple[Record, Event]:
    if error is not None:
        event = RecordEvent("Failed", stage, now, error)
        activity = "apply chaos" if stage == "Apply" else "recover chaos"
        return replace(record, events=_with_event(record, event, max_events)), failed(activity, error)
    events = _with_event(record, RecordEvent("Succeeded", stage, now), max_events)
    if stage == "Apply":
        return replace(record, phase=INJECTED, injected_count=record.injected_count + 1, events=events), applied(
            record.id)
    return replace(record, phase=NOT_INJECTED, recovered_count=record.recovered_count + 1, events=events), recovered(
        record.id)


# ---- conditions ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    type: str
    status: Literal["True", "False"]


def conditions(records: Sequence[Record] | None, paused: bool) -> tuple[Condition, ...]:
    """Chaos Mesh's four conditions. ``records`` None: targets not selected yet."""

    def flag(value: bool) -> Literal["True", "False"]:
        return "True" if value else "False"

    selected = records is not None
    return (
        Condition("Selected", flag(selected)),
        Condition("AllInjected", flag(selected and all(r.phase == INJECTED for r in records or ()))),
        Condition("AllRecovered", flag(selected and all(r.phase == NOT_INJECTED for r in records or ()))),
        Condition("Paused", flag(paused)),
    )


def finished(decision: DesiredPhase, records: Sequence[Record] | None, *, one_shot: bool) -> bool:
    """Whether nothing is left to do: stopped and all recovered, or a one-shot with every record applied."""
    if records is None:
        return False
    if one_shot and decision == RUN:
        return all(r.phase == INJECTED for r in records)
    return decision == STOP and all(r.phase == NOT_INJECTED for r in records)


# ---- wire form -----------------------------------------------------------------------------------------


def timestamp(at: float) -> str:
    """RFC 3339 UTC, second precision, as Kubernetes writes metav1.Time."""
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


@dataclass(frozen=True)
class Status:
    """An experiment's status: what ``status`` holds in Chaos Mesh's wire form."""

    desired: DesiredPhase | None = None
    records: tuple[Record, ...] | None = None
    paused: bool = False

    def to_wire(self) -> dict[str, Any]:
        experiment: dict[str, Any] = {}
        if self.desired is not None:
            experiment["desiredPhase"] = self.desired
        if self.records is not None:
            experiment["containerRecords"] = [_record_to_wire(r) for r in self.records]
        return {
            "conditions": [{"type": c.type, "status": c.status} for c in conditions(self.records, self.paused)],
            "experiment": experiment,
        }

    @classmethod
    def from_wire(cls, status: Mapping[str, Any] | None, *, paused: bool = False) -> Status:
        experiment = (status or {}).get("experiment") or {}
        desired = experiment.get("desiredPhase")
        wire_records = experiment.get("containerRecords")
        records = None if wire_records is None else tuple(_record_from_wire(r) for r in wire_records)
        return cls(desired if desired in (RUN, STOP) else None, records, paused)


def _record_to_wire(record: Record) -> dict[str, Any]:
    return {
        "id": record.id,
        "selectorKey": record.selector_key,
        "phase": record.phase,
        "injectedCount": record.injected_count,
        "recoveredCount": record.recovered_count,
        "events": [
            {"type": e.type, "operation": e.operation, "timestamp": timestamp(e.at), **({"message": e.message}
                                                                                        if e.message else {})}
            for e in record.events
        ],
    }


def _record_from_wire(data: Mapping[str, Any]) -> Record:
    return Record(
        id=str(data["id"]),
        selector_key=str(data.get("selectorKey", ".")),
        phase=str(data.get("phase", NOT_INJECTED)),
        injected_count=int(data.get("injectedCount", 0)),
        recovered_count=int(data.get("recoveredCount", 0)),
        events=tuple(
            RecordEvent(e["type"], e["operation"], parse_timestamp(e["timestamp"]), e.get("message", ""))
            for e in data.get("events") or ()
        ),
    )
