"""Finishing experiments whose owner is gone: recover their faults (verified) and close their records.

Used by the watchdog when the runner it watches dies, and by ``faultmesh delete|recover|halt`` when the
experiment they name has no live owner. The caller holds the engine (:class:`HostEngine`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import replace

from faultmesh.agent.injections import EngineError, UnknownInjectionError
from faultmesh.engine.lifecycle import INJECTED, STOP, Event, Status, after_recover, failed

from .hostengine import HostEngine
from .runjournal import JOURNAL_NAME, RunJournal
from .state import Layout
from .store import ExperimentRow, NotFoundError, Store

log = logging.getLogger(__name__)


def injections_of(host: HostEngine, uid: str) -> list[str]:
    """Ids of the wanted (not finished) injections of experiment ``uid`` (ids start with the uid)."""
    return [view.id for view in host.agent.list()
            if view.id.startswith(uid + "/") and view.phase in ("injecting", "injected", "recovering")]


async def recover_injections(host: HostEngine, ids: Iterable[str], reason: str,
                             *, patience: float = 120.0) -> list[str]:
    """Recover each injection and wait until verified; returns the errors of those still not recovered."""
    pending = list(ids)
    deadline = time.monotonic() + patience
    errors: dict[str, str] = {}
    while pending:
        still: list[str] = []
        for injection_id in pending:
            try:
                view = await host.agent.recover(injection_id, reason)
            except UnknownInjectionError:
                continue
            except EngineError as error:
                errors[injection_id] = str(error)
                still.append(injection_id)
                continue
            if view.phase in ("recovered", "failed", "done"):
                errors.pop(injection_id, None)
            else:
                errors[injection_id] = view.last_error or f"still {view.phase}"
                still.append(injection_id)
        pending = still
        if not pending or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5)  # the engine retries with backoff meanwhile
    return [f"{injection_id}: {errors[injection_id]}" for injection_id in pending]


async def settle(host: HostEngine, store: Store, layout: Layout, row: ExperimentRow, *, outcome: str,
                 reason: str, remove: bool = False) -> list[str]:
    """Recover what experiment ``row`` still holds, mark its records recovered, and finish (or remove) it."""
    errors = await recover_injections(host, injections_of(host, row.uid), reason)
    now = time.time()
    status = Status.from_wire(row.status, paused=row.paused)
    records = list(status.records or ())
    events: list[Event] = []
    for index, record in enumerate(records):
        if record.phase != INJECTED:
            continue
        mine = [e for e in errors if e.startswith(f"{row.uid}/") and e.split("/", 2)[-1].startswith(record.id)]
        records[index], event = after_recover(record, "; ".join(mine) if mine else None, now)
        events.append(event)
    status = replace(status, desired=STOP, records=tuple(records) if status.records is not None else None)
    if errors:
        events.append(failed("recover chaos", "; ".join(errors)))
    try:
        store.set_status(row.uid, status.to_wire())
        store.add_event(row.uid, now, "Warning", "Stopped", reason)
        for event in events:
            store.add_event(row.uid, now, event.type, event.reason, event.message)
        if remove and not errors:
            store.remove(row.uid)
        else:
            store.finish(row.uid, now, outcome if not errors else "Failed", reason if not errors else
                         f"{reason}; not verified recovered: {'; '.join(errors)}")
            store.set_owner(row.uid, "")
    except NotFoundError:
        pass
    _finish_run_journal(layout, row, now, outcome, reason, errors)
    return errors


def _finish_run_journal(layout: Layout, row: ExperimentRow, now: float, outcome: str, reason: str,
                        errors: list[str]) -> None:
    path = layout.run_dir(row.run_id) / JOURNAL_NAME
    if not row.run_id or not path.exists():
        return
    try:
        journal = RunJournal.load(path)
    except (OSError, ValueError, KeyError) as error:
        log.warning("cannot update the run journal %s: %s", path, error)
        return
    if journal.finished_at is None:
        for times in journal.targets:
            if times.injected_at is not None and times.recovered_at is None:
                times.recovered_at, times.recovered_verified = now, not errors
        journal.event(now, "Warning", "Stopped", reason)
        journal.finish(now, outcome, reason)
        journal.write()
        try:
            from .report import render

            render(journal.to_json(), path.parent)
        except Exception as error:
            log.warning("cannot render the report of %s: %s", row.run_id, error)
