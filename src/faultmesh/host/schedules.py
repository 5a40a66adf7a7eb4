"""Schedules in ``faultmesh serve``: fire cron runs, forbid overlaps, keep ``historyLimit`` runs, follow pauses.

The decisions are Chaos Mesh's (:mod:`faultmesh.engine.schedule`); this module reads the store, acts on them and
writes back. Each Schedule is looked at about once a second (sooner when its next run is due, and right away
when something changes), as Chaos Mesh's controllers reconcile it on every change:

- a run spawns an experiment named ``<schedule>-<5 random characters>`` in the Schedule's namespace, labelled
  ``managed-by: <schedule>`` and owned (``ownerReferences``) by the Schedule, with the embedded spec;
  ``status.time`` becomes the spawn time and ``status.active`` lists every experiment the Schedule made that is
  still recorded;
- pausing a Schedule (annotation ``experiment.chaos-mesh.org/pause``) stops it firing and pauses its
  experiments; resuming resumes them;
- past runs beyond ``historyLimit`` are deleted, oldest first (their run directories too: that is the history
  being bounded); deleting the Schedule deletes every experiment it made, as Kubernetes' garbage collector
  does, recovering those still running.

Where host mode differs: a run whose experiment cannot be made (no target matched, say) counts as a run and
leaves a ``Failed`` event, where Chaos Mesh would try again on its next reconcile; host mode's failures are
rarely transient, and retrying every second would only repeat the event. A halted host fires nothing (the run
stays unmet until ``halt --release``). The Schedule's events live in the serving process (the last 100).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import random
import shutil
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from faultmesh.api.base import GROUP_VERSION, Resource
from faultmesh.api.cron import CronSchedule
from faultmesh.api.embed import EMBEDDED_KINDS
from faultmesh.api.loader import ManifestError, parse_object
from faultmesh.api.schedule import Schedule
from faultmesh.engine.lifecycle import Event
from faultmesh.engine.schedule import Child, decide_firing, generate_name, history_cleanup
from faultmesh.kinds.experiment import duration_of, is_one_shot
from faultmesh.selection import Inventory

from .runner import RunRefusedError, prepare
from .state import Layout
from .store import AlreadyExistsError, ExperimentRow, NotFoundError, ScheduleRow, Store, StoreError
from .views import made_by, parse_timestamp, rfc3339

log = logging.getLogger(__name__)

#: The label Chaos Mesh puts on what a Schedule makes.
MANAGED_BY_LABEL = "managed-by"
#: Events kept per Schedule.
EVENT_LIMIT = 100


class ScheduleRefusedError(Exception):
    """The Schedule cannot be created; ``status`` is the HTTP status that fits, each problem one line."""

    def __init__(self, problems: Sequence[str], status: int = 422) -> None:
        self.problems = list(problems)
        self.status = status
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class ScheduleEvent:
    at: float
    type: str
    reason: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "time": rfc3339(self.at), "type": self.type, "reason": self.reason,
                "message": self.message}


class Launcher(Protocol):
    """What the scheduler needs from the serving process: start an experiment, delete one."""

    @property
    def owner(self) -> str: ...

    async def launch_child(self, resource: Resource) -> ExperimentRow: ...

    async def delete_experiment(self, row: ExperimentRow, *, drop_history: bool) -> None: ...


@dataclass(frozen=True)
class _Plan:
    """A Schedule's spec as the scheduler uses it, parsed once."""

    cron: CronSchedule
    kind: str
    forbid: bool
    history_limit: int | None
    starting_deadline: float | None


def child_object(schedule: ScheduleRow, name: str) -> dict[str, Any]:
    """The experiment one run of ``schedule`` makes: its embedded spec, owned by and labelled for the Schedule."""
    spec = schedule.manifest.get("spec") or {}
    kind = str(spec.get("type", ""))
    embedded = spec.get(EMBEDDED_KINDS.get(kind, ""), {})
    return {
        "apiVersion": GROUP_VERSION,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": schedule.namespace,
            "labels": {MANAGED_BY_LABEL: schedule.name},
            "ownerReferences": [{
                "apiVersion": GROUP_VERSION,
                "kind": "Schedule",
                "name": schedule.name,
                "uid": schedule.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }],
        },
        "spec": copy.deepcopy(embedded),
    }


def active_refs(children: Sequence[ExperimentRow]) -> list[dict[str, Any]]:
    """``status.active``: a reference to each experiment the Schedule made that is still recorded, by name."""
    refs = [{"apiVersion": GROUP_VERSION, "kind": row.kind, "namespace": row.namespace, "name": row.name,
             "uid": row.uid} for row in children]
    return sorted(refs, key=lambda ref: ref["name"])


def check_schedule(schedule: Schedule, inventory: Inventory) -> list[str]:
    """Refuse a Schedule host mode could never run (a workflow, a kind without local targets); notes otherwise."""
    spec = schedule.spec
    if spec.type == "Workflow":
        raise ScheduleRefusedError(["spec.type: Workflow schedules are not supported in host mode (no workflow "
                                    "engine); schedule a chaos kind such as StressChaos"])
    probe_row = ScheduleRow(
        uid="check", namespace=schedule.metadata.namespace or "default", name=schedule.metadata.name or "schedule",
        manifest=schedule.model_dump(mode="json", by_alias=True, exclude_none=True), created_at=0.0, paused=False,
        status={}, owner="",
    )
    try:
        child = parse_object(child_object(probe_row, probe_row.name + "-check"), probe_row.namespace)
    except ManifestError as error:
        field = EMBEDDED_KINDS.get(spec.type, "type")
        raise ScheduleRefusedError([f"spec.{field}: {problem}" for problem in error.problems]) from None
    try:
        prepare(child, inventory, "check")
    except RunRefusedError as refused:
        problems = [line.replace(f"{child.kind} {probe_row.namespace}/{probe_row.name}-check: ", "")
                    for line in refused.problems]
        if any("no target matched" in line for line in problems):
            # Targets come and go on a host; each run selects again when it fires.
            return [f"no target matches now ({'; '.join(problems)}); each run selects again when it fires"]
        raise ScheduleRefusedError([f"spec.{EMBEDDED_KINDS.get(spec.type, 'type')}: {line}"
                                    for line in problems]) from None
    return []


class Scheduler:
    """Runs every Schedule in the store for one serving process."""

    def __init__(
        self,
        store: Store,
        layout: Layout,
        launcher: Launcher,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        max_wait: float = 1.0,
    ) -> None:
        self.store = store
        self.layout = layout
        self.launcher = launcher
        self.clock = clock
        self.rng = rng or random.Random()
        self.max_wait = max_wait
        self._wake = asyncio.Event()
        #: One look at the Schedules at a time: two at once could both find a run due and both spawn it.
        self._lock = asyncio.Lock()
        self._events: dict[str, deque[ScheduleEvent]] = {}
        self._plans: dict[str, _Plan] = {}
        self._children: dict[str, tuple[bool, float | None]] = {}
        self._seen_paused: dict[str, bool] = {}

    # ---- requests from the API -----------------------------------------------------------------------

    def create(self, schedule: Schedule, inventory: Inventory) -> tuple[ScheduleRow, list[str]]:
        """Record a checked Schedule (owned by this process) and look at it right away."""
        notes = check_schedule(schedule, inventory)
        manifest = schedule.model_dump(mode="json", by_alias=True, exclude_none=True)
        row = ScheduleRow(
            uid=str(uuid.uuid4()), namespace=schedule.metadata.namespace or "default",
            name=schedule.metadata.name or "", manifest=manifest, created_at=self.clock(),
            paused=schedule.is_paused(), status={}, owner=self.launcher.owner,
        )
        try:
            self.store.create_schedule(row)
        except AlreadyExistsError as error:
            raise ScheduleRefusedError([str(error)], 409) from None
        spec = schedule.spec
        self._record(row.uid, Event("Normal", "Created", f"Schedule created: {spec.schedule!r} makes {spec.type}"))
        self.wake()
        return row, notes

    def set_paused(self, row: ScheduleRow, paused: bool) -> None:
        self.store.set_schedule_paused(row.uid, paused)
        self.wake()

    async def delete(self, row: ScheduleRow) -> list[ExperimentRow]:
        """Drop the Schedule (it fires no more) and delete what it made; returns those experiments."""
        async with self._lock:
            self.store.remove_schedule(row.uid)
            self._forget(row.uid)
            children = made_by(row, self.store.list())
            for child in children:
                await self.launcher.delete_experiment(child, drop_history=False)
        self.wake()
        return children

    def events(self, uid: str) -> list[ScheduleEvent]:
        return list(self._events.get(uid, ()))

    def wake(self) -> None:
        self._wake.set()

    def adopt(self) -> None:
        """Take over every stored Schedule (a previous serving process may have left them)."""
        for row in self.store.list_schedules():
            if row.owner != self.launcher.owner:
                self.store.set_schedule_owner(row.uid, self.launcher.owner)

    def release(self) -> None:
        """Say nobody fires the Schedules any more (this process is stopping)."""
        with contextlib.suppress(StoreError):
            for row in self.store.list_schedules():
                if row.owner == self.launcher.owner:
                    self.store.set_schedule_owner(row.uid, "")

    # ---- the loop ------------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                wait = await self.reconcile_all()
            except StoreError as error:
                log.warning("schedules: %s", error)
                wait = self.max_wait
            except Exception:
                # A bug must not stop every Schedule for good: say so loudly and look again shortly.
                log.exception("schedules: reconciling failed")
                wait = self.max_wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def reconcile_all(self) -> float:
        """Look at every Schedule once; returns how long to sleep until one needs looking at again."""
        async with self._lock:
            schedules = self.store.list_schedules()
            experiments = self.store.list()
            halted = self.store.halted() is not None
            wait = self.max_wait
            for row in schedules:
                try:
                    recheck = await self.reconcile(row, made_by(row, experiments), halted=halted)
                except StoreError:
                    raise
                except Exception as error:
                    # One Schedule's failure (a bug) must not hold back the others.
                    log.exception("schedule %s failed", row.key)
                    self._record(row.uid, Event("Warning", "Failed", f"Failed to reconcile: {error}"))
                    continue
                if recheck is not None:
                    wait = min(wait, max(recheck - self.clock(), 0.02))
            present = {row.uid for row in schedules}
            for uid in [uid for uid in self._plans if uid not in present]:
                self._forget(uid)
            return wait

    async def reconcile(self, row: ScheduleRow, children: list[ExperimentRow], *, halted: bool = False) -> float | None:
        """One look at one Schedule; returns when (epoch seconds) it next needs one, None if only on a change."""
        plan = self._plan(row)
        if plan is None:
            return None
        now = self.clock()
        self._follow_pause(row, children)
        last = parse_timestamp(str(row.status.get("time") or ""))
        facts = [self._child(child) for child in children]
        recheck: float | None = None
        if not halted:
            firing = decide_firing(
                plan.cron, created_at=row.created_at, last_schedule=last, now=now,
                starting_deadline=plan.starting_deadline, forbid=plan.forbid, paused=row.paused, children=facts,
            )
            for event in firing.events:
                self._record(row.uid, event)
            recheck = firing.next_run
            if firing.spawn:
                made = await self._spawn(row, {child.name for child in self.store.list(namespace=row.namespace)})
                if made is not None:
                    children = [*children, made]
                    facts.append(self._child(made))
                last = now
                self._record(row.uid, Event("Normal", "Updated", "Successfully update lastScheduleTime of resource"))
        cleanup = history_cleanup(facts, plan.history_limit, self.clock())
        if cleanup.delete:
            by_uid = {child.uid: child for child in children}
            for uid in cleanup.delete:
                await self.launcher.delete_experiment(by_uid[uid], drop_history=True)
            gone = set(cleanup.delete)
            children = [child for child in children if child.uid not in gone or by_uid[child.uid].active]
        if cleanup.recheck_in is not None:
            at = self.clock() + cleanup.recheck_in
            recheck = at if recheck is None else min(recheck, at)
        status: dict[str, Any] = {"active": active_refs(children)}
        if last is not None:
            status["time"] = rfc3339(last)
        if status != row.status:
            with contextlib.suppress(NotFoundError):
                self.store.set_schedule_status(row.uid, status)
        return recheck

    # ---- helpers -------------------------------------------------------------------------------------

    async def _spawn(self, row: ScheduleRow, taken: set[str]) -> ExperimentRow | None:
        name = generate_name(row.name + "-", self.rng, taken)
        try:
            resource = parse_object(child_object(row, name), row.namespace)
            made = await self.launcher.launch_child(resource)
        except ManifestError as error:
            self._record(row.uid, Event("Warning", "Failed", f"Failed to generate new object: {error}"))
            return None
        except RunRefusedError as refused:
            self._record(row.uid, Event("Warning", "Failed",
                                        f"Failed to create new object: {'; '.join(refused.problems)}"))
            return None
        self._record(row.uid, Event("Normal", "Spawned", f"Create new object: {name}"))
        return made

    def _follow_pause(self, row: ScheduleRow, children: list[ExperimentRow]) -> None:
        """On a change of the Schedule's pause state, bring its running experiments into line (both ways)."""
        seen = self._seen_paused.get(row.uid)
        if seen == row.paused:
            return
        for child in children:
            if child.active and child.paused != row.paused:
                with contextlib.suppress(NotFoundError):
                    self.store.set_paused(child.uid, row.paused)
        self._seen_paused[row.uid] = row.paused
        if row.paused:
            self._record(row.uid, Event("Normal", "Paused", "Schedule paused: no new runs; its experiments pause"))
        elif seen is not None:
            self._record(row.uid, Event("Normal", "Resumed", "Schedule resumed: its experiments resume"))

    def _plan(self, row: ScheduleRow) -> _Plan | None:
        plan = self._plans.get(row.uid)
        if plan is not None:
            return plan
        try:
            schedule = parse_object(row.manifest, row.namespace)
        except ManifestError as error:
            self._record(row.uid, Event("Warning", "Failed", f"Failed to read the schedule: {error}"))
            return None
        if not isinstance(schedule, Schedule):
            self._record(row.uid, Event("Warning", "Failed", f"Failed to read the schedule: a {schedule.kind}"))
            return None
        spec = schedule.spec
        deadline = spec.starting_deadline_seconds
        plan = _Plan(
            cron=spec.cron(),
            kind=spec.type,
            forbid=spec.concurrency_policy != "Allow",
            history_limit=spec.history_limit,
            starting_deadline=float(deadline) if deadline is not None else None,
        )
        self._plans[row.uid] = plan
        return plan

    def _child(self, row: ExperimentRow) -> Child:
        known = self._children.get(row.uid)
        if known is None:
            try:
                resource = parse_object(row.manifest, row.namespace)
                known = (is_one_shot(resource), duration_of(resource))
            except (ManifestError, ValueError):
                known = (False, None)
            self._children[row.uid] = known
        one_shot, duration = known
        return Child(row.uid, row.name, row.created_at, finished=not row.active, one_shot=one_shot,
                     duration=duration)

    def _record(self, uid: str, event: Event) -> None:
        events = self._events.setdefault(uid, deque(maxlen=EVENT_LIMIT))
        if events and (events[-1].reason, events[-1].message) == (event.reason, event.message):
            return  # the same news again (a Forbid while the run lasts): once is enough
        events.append(ScheduleEvent(self.clock(), event.type, event.reason, event.message))
        log.info("schedule %s: %s %s", uid, event.reason, event.message)

    def _forget(self, uid: str) -> None:
        self._plans.pop(uid, None)
        self._seen_paused.pop(uid, None)
        self._events.pop(uid, None)


def drop_run_dir(layout: Layout, row: ExperimentRow) -> None:
    """Remove a finished run's directory (journal, report): history beyond ``historyLimit`` goes entirely."""
    if not row.run_id or "/" in row.run_id or row.run_id.startswith("."):
        return
    shutil.rmtree(layout.run_dir(row.run_id), ignore_errors=True)
