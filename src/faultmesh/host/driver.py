"""Drives one experiment to its end on this host: the shared lifecycle engine over the in-process agent.

The loop is level-triggered, as the controller's is: each tick it reads the experiment's row in the store
(paused? delete or stop requested? host halted?), decides the desired phase with :mod:`faultmesh.engine.lifecycle`,
moves every record toward it through the agent engine, and writes status, events and the run journal back.
Other processes steer a running experiment only by writing the store (``faultmesh pause`` and friends).

A record is injected when every injection of it was applied *and verified*; recovered when every probe says
the fault is gone. A record whose apply keeps failing (``max_apply_failures`` times in a row) ends the run
as Failed and everything is recovered; recovery itself is retried until it is verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from faultmesh.agent.injections import EngineError, InjectionRequest, UnknownInjectionError
from faultmesh.api.base import Resource
from faultmesh.engine.lifecycle import (
    NOT_INJECTED,
    RUN,
    STOP,
    Event,
    Facts,
    Record,
    Status,
    after_apply,
    after_recover,
    desired_phase,
    finished,
    operation,
)
from faultmesh.kinds.experiment import AgentWork, RecordWork, duration_of, is_one_shot
from faultmesh.kinds.plan import PlanError

from .hostengine import HostEngine
from .runjournal import RunJournal
from .store import NotFoundError, Store

log = logging.getLogger(__name__)

OUTCOME_COMPLETED = "Completed"
OUTCOME_ABORTED = "Aborted"
OUTCOME_FAILED = "Failed"
OUTCOME_INTERRUPTED = "Interrupted"
OUTCOME_DELETED = "Deleted"
OUTCOME_RECOVERED = "Recovered"

#: Marks a stop asked for through the store by ``faultmesh recover``; the row is kept (delete removes it).
RECOVER_REASON = "recovered on request"


class Guard(Protocol):
    """A steady-state probe the driver watches (see :mod:`faultmesh.host.steady`)."""

    def failure(self) -> str | None: ...


@dataclass(frozen=True)
class Progress:
    """One line of what is happening, for a live display."""

    at: float
    type: str
    reason: str
    message: str


class ExperimentDriver:
    def __init__(
        self,
        host: HostEngine,
        store: Store,
        uid: str,
        resource: Resource,
        works: Sequence[RecordWork],
        journal: RunJournal,
        *,
        guard: Guard | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        tick: float = 0.25,
        max_apply_failures: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.store = store
        self.uid = uid
        self.resource = resource
        self.works = {work.record_id + "\0" + work.selector_key: work for work in works}
        self.journal = journal
        self.guard = guard
        self.on_progress = on_progress
        self.tick = tick
        self.max_apply_failures = max_apply_failures
        self.clock = clock
        self.one_shot = is_one_shot(resource)
        self.duration = duration_of(resource)
        self.status = Status(records=tuple(Record(w.record_id, w.selector_key) for w in works))
        self._apply_failures: dict[str, int] = {}
        #: (outcome, reason) once something decided to stop the run (abort, failure, interrupt, halt).
        self.stop: tuple[str, str] | None = None
        self._wake = asyncio.Event()
        self.label = f"{resource.kind} {resource.metadata.namespace}/{resource.metadata.name}"

    # ---- steering from this process ------------------------------------------------------------------

    def request_stop(self, outcome: str, reason: str) -> None:
        if self.stop is None:
            self.stop = (outcome, reason)
            self._emit(Event("Warning" if outcome != OUTCOME_COMPLETED else "Normal", "Stopping", reason))
        self._wake.set()

    # ---- the loop ----------------------------------------------------------------------------------------

    async def run(self) -> tuple[str, str]:
        """Drive the experiment until nothing is left to do; returns (outcome, reason)."""
        removed = False
        while True:
            now = self.clock()
            try:
                row = self.store.get_uid(self.uid)
            except NotFoundError:
                row, removed = None, True
            self._check_outside()
            delete_requested = row is not None and row.delete_requested_at is not None
            paused = bool(row.paused) if row is not None else False
            facts = Facts(
                created_at=row.created_at if row is not None else now,
                duration=self.duration,
                one_shot=self.one_shot,
                paused=paused,
                deleted=removed or delete_requested or self.stop is not None,
            )
            decision = desired_phase(facts, self.status.desired, now)
            for event in decision.events:
                self._emit(event)
            self.status = replace(self.status, desired=decision.phase, paused=paused)
            await self._converge(decision.phase)
            self._save()
            # A pause stops the faults but not the experiment: it ends only when it would stop unpaused too.
            held_by_pause = paused and desired_phase(replace(facts, paused=False), decision.phase, now).phase == RUN
            if finished(decision.phase, self.status.records, one_shot=self.one_shot) and not held_by_pause:
                return self._outcome(delete_requested or removed, row.reason if row is not None else "")
            wait = self.tick if decision.recheck_in is None else max(0.01, min(self.tick, decision.recheck_in))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _check_outside(self) -> None:
        """Stop on what happened outside this loop: a halt, a recover request, a lost steady state."""
        halted = self.store.halted()
        if halted is not None:
            self.request_stop(OUTCOME_ABORTED, f"host mode halted: {halted[0]}")
        if self.guard is not None:
            failure = self.guard.failure()
            if failure is not None:
                self.request_stop(OUTCOME_ABORTED, f"steady state lost: {failure}")

    def _outcome(self, deleted: bool, row_reason: str) -> tuple[str, str]:
        if self.stop is not None:
            return self.stop
        if deleted:
            if row_reason == RECOVER_REASON:
                return OUTCOME_RECOVERED, RECOVER_REASON
            return OUTCOME_DELETED, "deleted on request"
        if self.one_shot:
            return OUTCOME_COMPLETED, "one-shot fault applied"
        return OUTCOME_COMPLETED, "duration elapsed"

    async def _converge(self, desired: str) -> None:
        records = list(self.status.records or ())
        for index, record in enumerate(records):
            op = operation(RUN if desired == RUN else STOP, record)
            if op is None:
                continue
            work = self.works[record.id + "\0" + record.selector_key]
            now = self.clock()
            if op == "apply":
                error, verified = await self._apply(work)
                records[index], event = after_apply(record, error, self.clock())
                self._note_apply(work, record, error, verified, now)
            else:
                error, verified = await self._recover(work)
                records[index], event = after_recover(record, error, self.clock())
                self._note_recover(work, error, verified)
            self._emit(event)
        self.status = replace(self.status, records=tuple(records))
        if records and all(r.phase == NOT_INJECTED for r in records):
            self.journal.close_window(self.clock())

    def _note_apply(self, work: RecordWork, record: Record, error: str | None, verified: bool, started: float) -> None:
        times = self.journal.target(work.record_id)
        if error is None:
            self._apply_failures.pop(record.id, None)
            times.injected_at, times.injected_verified, times.error = self.clock(), verified, ""
            times.recovered_at, times.recovered_verified = None, False
            self.journal.open_window(started, self.label)
            if self.one_shot:
                self.journal.close_window(self.clock())
            return
        times.error = error
        failures = self._apply_failures.get(record.id, 0) + 1
        self._apply_failures[record.id] = failures
        if failures >= self.max_apply_failures:
            self.request_stop(OUTCOME_FAILED, f"could not apply on {record.id}: {error}")

    def _note_recover(self, work: RecordWork, error: str | None, verified: bool) -> None:
        times = self.journal.target(work.record_id)
        if error is None:
            times.recovered_at, times.recovered_verified, times.error = self.clock(), verified, ""
        else:
            times.error = error

    # ---- agent calls -------------------------------------------------------------------------------------

    async def _apply(self, record: RecordWork) -> tuple[str | None, bool]:
        """Apply every injection of a record; on a failure, take back the ones already applied."""
        done: list[AgentWork] = []
        verified = True
        for work in record.works:
            request = InjectionRequest(
                id=work.injection_id,
                kind=work.kind,
                spec=work.spec,
                target=work.target,
                owner=self.host.owner,
                lease_ttl=self.host.lease_ttl,
                slot=work.slot,
            )
            try:
                view = await self.host.agent.apply(request)
            except (EngineError, PlanError, ValueError) as error:
                for applied in reversed(done):
                    await self._recover_one(applied)
                return str(error), False
            if view.phase not in ("injected", "done"):
                for applied in reversed(done):
                    await self._recover_one(applied)
                return view.last_error or f"the injection ended {view.phase}", False
            verified = verified and (view.verified or view.phase == "done")
            done.append(work)
        return None, verified

    async def _recover(self, record: RecordWork) -> tuple[str | None, bool]:
        errors: list[str] = []
        verified = True
        for work in reversed(record.works):
            error, ok = await self._recover_one(work)
            if error is not None:
                errors.append(error)
            verified = verified and ok
        return ("; ".join(errors) if errors else None), verified

    async def _recover_one(self, work: AgentWork) -> tuple[str | None, bool]:
        reason = self.stop[1] if self.stop is not None else "recovered by its owner"
        try:
            view = await self.host.agent.recover(work.injection_id, reason)
        except UnknownInjectionError:
            return None, True  # never applied, or finished long ago: nothing is there
        except EngineError as error:
            return str(error), False
        if view.phase in ("recovered", "failed"):
            return None, view.verified
        if view.phase == "done":
            return None, True  # a one-shot fault has nothing to take back
        return view.last_error or f"still {view.phase}", False

    # ---- output ------------------------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        at = self.clock()
        with contextlib.suppress(NotFoundError):
            self.store.add_event(self.uid, at, event.type, event.reason, event.message)
        self.journal.event(at, event.type, event.reason, event.message)
        if self.on_progress is not None:
            self.on_progress(Progress(at, event.type, event.reason, event.message))

    def _save(self) -> None:
        with contextlib.suppress(NotFoundError):
            self.store.set_status(self.uid, self.status.to_wire())
        self.journal.write()
