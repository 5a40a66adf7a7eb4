"""``faultmesh serve``: host mode as a long-running REST API that runs many experiments and cron Schedules.

One process holds this host's engine (role ``serve``) for its whole life, with the same watchdog as
``faultmesh run``, and drives every experiment submitted to it as an asyncio task of
:class:`~faultmesh.host.driver.ExperimentDriver`. Experiments live in the same store as ``faultmesh run``'s,
owned by ``serve:<pid>:<start>``, so the CLI (``faultmesh get|pause|delete|halt``) steers them too: each driver
reads its row every tick.

- SIGKILL: the watchdog sees the process go and recovers every fault it held, verified.
- SIGTERM (or Ctrl-C): stop accepting, recover every running experiment (verified; they end Interrupted), exit 0.
  A second signal exits at once and leaves recovery to the watchdog.

The API is JSON under ``/api/v1`` (OpenAPI at ``/openapi.json``, docs at ``/docs``), protected by a bearer token
compared in constant time. Every error is ``{"error": "...", "problems": ["..."]}``, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import random
import re
import shlex
import signal
import socket
import stat
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import uvicorn
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRouter
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from faultmesh import __version__
from faultmesh.api.base import Resource
from faultmesh.api.loader import LoadResult, ManifestError, ManifestProblem, load_text
from faultmesh.api.schedule import Schedule
from faultmesh.api.statuscheck import StatusCheck
from faultmesh.engine.schedule import ScheduleTimeError, generate_name, recent_unmet
from faultmesh.selection import Inventory

from .driver import OUTCOME_ABORTED, OUTCOME_FAILED, OUTCOME_INTERRUPTED, OUTCOME_RECOVERED, ExperimentDriver
from .hostengine import DEFAULT_LEASE_TTL, HostEngine, Watchdog, WatchdogError, spawn_watchdog
from .runjournal import JOURNAL_NAME, RunJournal
from .runner import (
    EXIT_BUSY,
    RunGuard,
    RunRefusedError,
    TargetOptions,
    check_not_halted,
    close_experiment,
    guard_for_run,
    new_uid,
    prepare,
    record_experiment,
)
from .schedules import ScheduleEvent, Scheduler, ScheduleRefusedError, drop_run_dir
from .settle import settle
from .state import EngineBusyError, Layout, owner_alive
from .state import state_dir as resolve_state_dir
from .store import AmbiguousError, ExperimentRow, NotFoundError, ScheduleRow, Store, StoreError
from .targets import HostTargetsError
from .views import (
    ViewError,
    experiment_object,
    experiment_phase,
    made_by,
    parse_timestamp,
    resolve_kind,
    rfc3339,
    schedule_object,
)
from .views import target_counts as counts_of

log = logging.getLogger("faultmesh.serve")

DEFAULT_LISTEN = "127.0.0.1:8737"
API_PREFIX = "/api/v1"
#: The largest request body accepted (a manifest is a few KiB).
MAX_BODY = 1024 * 1024
#: How long a request that asked to wait (``?wait=true``) waits for a verified recovery by default.
DEFAULT_WAIT = 120.0
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"})
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130


# ---- errors -------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered as ``{"error": ..., "problems": [...]}`` with ``status``."""

    def __init__(self, status: int, error: str, problems: Sequence[str] = (),
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.error = error
        self.problems = list(problems)
        self.headers = headers
        super().__init__(error)


class ServeError(Exception):
    """``faultmesh serve`` cannot start; the message is printable, ``exit_code`` what to exit with."""

    def __init__(self, message: str, exit_code: int = EXIT_INVALID) -> None:
        self.exit_code = exit_code
        super().__init__(message)


def _refused(refused: RunRefusedError, error: str) -> ApiError:
    """A refusal of the runner as an API error: bad input is 422, a host that cannot run it now is 409."""
    return ApiError(409 if refused.exit_code == EXIT_BUSY else 422, error, refused.problems)


# ---- wire models (for the OpenAPI spec and the answers) -----------------------------------------------


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, in one sentence.")
    problems: list[str] = Field(description="Each problem on its own line, naming the field when there is one.")


class ProbeOptions(BaseModel):
    """A steady-state probe guarding the run, as ``faultmesh run --probe-*`` (the StatusCheck fields it stands for)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "probe"
    url: str | None = Field(default=None, description="HTTP probe: the URL to request; 2xx is healthy by default.")
    command: list[str] | str | None = Field(
        default=None, description="Command probe: argv (or one string, split as a shell would); exit 0 is healthy.")
    method: str = "GET"
    headers: dict[str, list[str]] | None = None
    body: str | None = None
    status_code: str | None = Field(default=None, description="Healthy status codes, e.g. 200 or 200-299.")
    mode: Literal["Continuous", "Synchronous"] = "Continuous"
    interval_seconds: float = 1.0
    timeout_seconds: float = 1.0
    failure_threshold: int = Field(default=3, description="Failures in a row that abort the run (and recover).")
    success_threshold: int = 1
    records_history_limit: int = 100
    duration: str | None = None
    from_target: str | None = Field(
        default=None, description="Probe from inside this target's network namespace (namespace/name).")


class Submission(BaseModel):
    """An experiment to run, with an optional steady-state probe and selection seed."""

    model_config = ConfigDict(extra="forbid")

    manifest: dict[str, Any] | str = Field(
        description="The experiment: a Chaos Mesh object, or manifest text (YAML, may hold a StatusCheck too).")
    probe: ProbeOptions | None = None
    seed: str | None = Field(default=None, description="Seed for the random modes (reproducible selection).")


class EventOut(BaseModel):
    at: float
    time: str
    type: str
    reason: str
    message: str


class ExperimentSummary(BaseModel):
    uid: str
    kind: str
    namespace: str
    name: str
    run_id: str
    phase: str = Field(description="Injecting, Running, Paused, Recovering, Deleting, Finished or Pending.")
    paused: bool
    active: bool
    injected: int = Field(description="Targets injected now.")
    selected: int = Field(description="Targets selected.")
    owner: str
    created_at: str
    finished_at: str | None
    outcome: str | None
    reason: str
    schedule: str | None = Field(default=None, description="The Schedule that made it (its name), if any.")
    links: dict[str, str]


class ExperimentCreated(ExperimentSummary):
    targets: list[str]
    notes: list[str]


class ExperimentDetail(ExperimentSummary):
    status: dict[str, Any] = Field(description="Chaos Mesh's status in wire form (conditions, experiment records).")
    object: dict[str, Any] = Field(description="The object as `kubectl get -o json` would show it.")
    events: list[EventOut]


class ExperimentList(BaseModel):
    items: list[ExperimentSummary]


class Removed(BaseModel):
    uid: str
    kind: str
    namespace: str
    name: str
    state: Literal["deleted", "deleting", "recovered", "recovering"]
    outcome: str | None
    message: str


class ScheduleSummary(BaseModel):
    uid: str
    namespace: str
    name: str
    schedule: str
    type: str
    concurrency_policy: str
    history_limit: int | None
    starting_deadline_seconds: int | None
    paused: bool
    owner: str
    created_at: str
    last_schedule_time: str | None
    next_run: str | None
    active: list[dict[str, Any]]
    links: dict[str, str]


class ScheduleCreated(ScheduleSummary):
    notes: list[str]


class ScheduleDetail(ScheduleSummary):
    object: dict[str, Any]
    experiments: list[ExperimentSummary]
    events: list[EventOut]


class ScheduleList(BaseModel):
    items: list[ScheduleSummary]


class ScheduleRemoved(BaseModel):
    uid: str
    namespace: str
    name: str
    experiments: list[str] = Field(description="The experiments it made, deleted with it (recovered first).")
    state: Literal["deleted", "deleting"]


class HaltRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = "halted through faultmesh serve"


class HaltState(BaseModel):
    halted: bool
    reason: str | None
    since: str | None
    stopped: list[str] = []
    errors: list[str] = []


class Health(BaseModel):
    status: Literal["ok", "stopping"]
    version: str
    owner: str
    running: int
    halted: bool


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No or a wrong bearer token."},
    404: {"model": ErrorBody, "description": "No such object."},
    409: {"model": ErrorBody, "description": "Conflicts with the host's state (halted, exists, ambiguous)."},
    422: {"model": ErrorBody, "description": "Invalid input; each problem names its field."},
}


# ---- summaries ----------------------------------------------------------------------------------------


def _links(row: ExperimentRow) -> dict[str, str]:
    where = f"{API_PREFIX}/experiments/{row.namespace}/{row.name}?kind={row.kind}"
    links = {"self": where}
    if row.run_id:
        links["journal"] = f"{API_PREFIX}/runs/{row.run_id}/journal"
        links["report"] = f"{API_PREFIX}/runs/{row.run_id}/report"
    return links


def _made_by_schedule(row: ExperimentRow) -> str | None:
    for ref in (row.manifest.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("kind") == "Schedule":
            return str(ref.get("name", ""))
    return None


def experiment_summary(row: ExperimentRow) -> dict[str, Any]:
    injected, selected = counts_of(row)
    return {
        "uid": row.uid, "kind": row.kind, "namespace": row.namespace, "name": row.name, "run_id": row.run_id,
        "phase": experiment_phase(row), "paused": row.paused, "active": row.active,
        "injected": injected, "selected": selected, "owner": row.owner,
        "created_at": rfc3339(row.created_at),
        "finished_at": rfc3339(row.finished_at) if row.finished_at is not None else None,
        "outcome": row.outcome or None, "reason": row.reason, "schedule": _made_by_schedule(row),
        "links": _links(row),
    }


def _event(at: float, type_: str, reason: str, message: str) -> dict[str, Any]:
    return {"at": at, "time": rfc3339(at), "type": type_, "reason": reason, "message": message}


def schedule_summary(row: ScheduleRow, now: float) -> dict[str, Any]:
    spec = row.manifest.get("spec") or {}
    last_text = row.status.get("time")
    last = parse_timestamp(str(last_text or ""))
    next_run = None
    if not row.paused:
        try:
            schedule = Schedule.model_validate(row.manifest, by_alias=True)
            deadline = spec.get("startingDeadlineSeconds")
            unmet = recent_unmet(schedule.spec.cron(), created_at=row.created_at, last_schedule=last, now=now,
                                 starting_deadline=float(deadline) if deadline is not None else None)
            due = unmet.missed if unmet.missed is not None else unmet.next_run
            next_run = rfc3339(due) if due is not None else None
        except (ValidationError, ScheduleTimeError, ValueError):
            next_run = None
    where = f"{API_PREFIX}/schedules/{row.namespace}/{row.name}"
    return {
        "uid": row.uid, "namespace": row.namespace, "name": row.name, "schedule": str(spec.get("schedule", "")),
        "type": str(spec.get("type", "")), "concurrency_policy": str(spec.get("concurrencyPolicy") or "Forbid"),
        "history_limit": spec.get("historyLimit"), "starting_deadline_seconds": spec.get("startingDeadlineSeconds"),
        "paused": row.paused, "owner": row.owner, "created_at": rfc3339(row.created_at),
        "last_schedule_time": str(last_text) if last_text else None, "next_run": next_run,
        "active": list(row.status.get("active") or []), "links": {"self": where},
    }


# ---- request bodies -----------------------------------------------------------------------------------


@dataclass
class Body:
    """A request body reduced to manifest text plus the options that came beside it."""

    text: str
    probe: ProbeOptions | None = None
    seed: str | None = None
    #: Whether ``text`` is what the client wrote (so line numbers mean something to it).
    as_written: bool = True


def _validation_problems(error: ValidationError, prefix: str = "") -> list[str]:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        problems.append(f"{prefix}{where}: {item['msg']}" if where else f"{prefix.rstrip('.')}: {item['msg']}")
    return problems


def read_body(raw: bytes, content_type: str | None, *, wrapper: bool) -> Body:
    """Manifest text from YAML or JSON; with ``wrapper``, JSON may also be ``{"manifest": ..., "probe": ...}``."""
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"the body is larger than {MAX_BODY} bytes")
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            data = json.loads(raw)
        except ValueError as error:
            raise ApiError(400, "the body is not JSON", [str(error)]) from None
        if wrapper and isinstance(data, dict) and "manifest" in data and "kind" not in data:
            try:
                submission = Submission.model_validate(data)
            except ValidationError as error:
                raise ApiError(422, "invalid submission", _validation_problems(error)) from None
            manifest = submission.manifest
            if isinstance(manifest, str):
                return Body(manifest, submission.probe, submission.seed)
            return Body(json.dumps(manifest), submission.probe, submission.seed, as_written=False)
        return Body(json.dumps(data), as_written=False)
    if media in YAML_TYPES or not media:
        try:
            return Body(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise ApiError(400, "the body is not UTF-8 text", [str(error)]) from None
    raise ApiError(415, f"content type {media!r} is not accepted",
                   ["send application/yaml (manifest text) or application/json"])


def load_body(body: Body, namespace: str) -> LoadResult:
    """Load and validate the manifest text; every problem names its field path."""
    try:
        return load_text(body.text, source=None, namespace=namespace)
    except ManifestError as error:
        several = any((problem.doc or 1) > 1 for problem in error.problems)
        problems = [_problem_line(problem, several, body.as_written) for problem in error.problems]
        raise ApiError(422, "invalid manifest", problems) from None


def _problem_line(problem: ManifestProblem, several_docs: bool, with_line: bool) -> str:
    line = f"line {problem.line}: " if problem.line and with_line else ""
    return line + str(replace(problem, doc=problem.doc if several_docs else None, line=None))


def _guard(body: Body, status_check: StatusCheck | None, inventory: Inventory) -> RunGuard | None:
    """The run's guard from the manifest's StatusCheck or the submission's probe options."""
    from .steady import Guard, GuardError

    probe = body.probe
    if status_check is not None and probe is not None:
        raise ApiError(422, "two steady-state probes", ["the manifest has a StatusCheck and the submission has a "
                                                        "probe: give one of them"])
    if status_check is None and probe is None:
        return None
    try:
        if status_check is not None:
            guard = Guard.from_status_check(status_check)
        else:
            assert probe is not None
            command = shlex.split(probe.command) if isinstance(probe.command, str) else probe.command
            guard = Guard.from_options(
                name=probe.name, url=probe.url, command=command, method=probe.method, headers=probe.headers,
                body=probe.body, status_code=probe.status_code, mode=probe.mode,
                interval_seconds=probe.interval_seconds, timeout_seconds=probe.timeout_seconds,
                failure_threshold=probe.failure_threshold, success_threshold=probe.success_threshold,
                records_history_limit=probe.records_history_limit, duration=probe.duration,
                from_target=probe.from_target,
            )
        return guard_for_run(guard, inventory)
    except GuardError as error:
        raise ApiError(422, "invalid steady-state probe", list(error.problems)) from None
    except RunRefusedError as refused:
        raise _refused(refused, "invalid steady-state probe") from None


# ---- the serving process ------------------------------------------------------------------------------


@dataclass
class Running:
    """One experiment this process drives."""

    uid: str
    driver: ExperimentDriver
    journal: RunJournal
    guard: RunGuard | None
    task: asyncio.Task[None] | None = None


@dataclass
class ServeOptions:
    state_dir: Path
    targets: TargetOptions = field(default_factory=TargetOptions)
    lease_ttl: float = DEFAULT_LEASE_TTL
    watchdog: bool = True
    tick: float = 0.25


class HostServer:
    """The state of one ``faultmesh serve``: the engine it holds, the experiments it drives, its Schedules."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.layout = Layout(options.state_dir)
        self.host = HostEngine(self.layout, "serve", runtime=options.targets.runtime(), lease_ttl=options.lease_ttl)
        self.store: Store | None = None
        self.running: dict[str, Running] = {}
        self.scheduler: Scheduler | None = None
        self.stopping = False
        self.stop_reason = ""
        self.failures: list[str] = []
        self._scheduler_task: asyncio.Task[None] | None = None
        self._entered = False
        self.watchdog: Watchdog | None = None

    @property
    def owner(self) -> str:
        return self.host.owner

    @property
    def db(self) -> Store:
        assert self.store is not None, "start the server first"
        return self.store

    # ---- life ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the engine, start the watchdog, settle what dead owners left, and start firing Schedules."""
        try:
            self.layout.prepare()
            self.store = Store.open(self.layout.root)
        except (OSError, StoreError) as error:
            raise ServeError(f"cannot open host-mode state in {self.layout.root}: {error}", EXIT_BUSY) from None
        try:
            await self.host.__aenter__()
        except EngineBusyError as error:
            raise ServeError(str(error), EXIT_BUSY) from None
        self._entered = True
        if self.options.watchdog:
            log_file = self.layout.root / "serve-watchdog.log"
            try:
                self.watchdog = await asyncio.to_thread(spawn_watchdog, self.layout, self.owner, log_file,
                                                        self.options.targets.containerd_namespace)
            except WatchdogError as error:
                raise ServeError(str(error), EXIT_BUSY) from None
        await self._settle_orphans()
        self.scheduler = Scheduler(self.db, self.layout, self)
        self.scheduler.adopt()
        self._scheduler_task = asyncio.create_task(self.scheduler.run())

    async def _settle_orphans(self) -> None:
        """Experiments whose owner died without its watchdog finishing: recover and close them now."""
        for row in self.db.list():
            if row.active and row.owner != self.owner and not owner_alive(row.owner):
                reason = f"its owner ({row.owner or 'nobody'}) was gone; recovered by faultmesh serve on start"
                errors = await settle(self.host, self.db, self.layout, row, outcome=OUTCOME_INTERRUPTED, reason=reason)
                self.failures += errors
                log.info("%s: %s", row.key, reason)

    def begin_shutdown(self, reason: str) -> None:
        """Stop accepting and ask every driver to recover; :meth:`finish_shutdown` waits for them."""
        if self.stopping:
            return
        self.stopping = True
        self.stop_reason = reason
        if self._scheduler_task is not None:
            self._scheduler_task.cancel()
        for running in list(self.running.values()):
            running.driver.request_stop(OUTCOME_INTERRUPTED, reason)

    async def finish_shutdown(self) -> list[str]:
        """Wait until every experiment is recovered, release the Schedules and the engine; returns failures."""
        self.begin_shutdown(self.stop_reason or "faultmesh serve is stopping")
        if self._scheduler_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler_task
        while self.running:
            tasks = [running.task for running in self.running.values() if running.task is not None]
            if not tasks:
                break
            await asyncio.wait(tasks)
        if self.scheduler is not None:
            self.scheduler.release()
        await self.close(clean=not self.failures)
        return self.failures

    async def close(self, *, clean: bool = False) -> None:
        """Leave the engine; the watchdog stands down if everything was recovered (``clean``), else it takes over."""
        if self._entered:
            self._entered = False
            await self.host.__aexit__(None, None, None)
        if self.store is not None:
            self.store.close()
        if self.watchdog is not None:
            if clean:
                await asyncio.to_thread(self.watchdog.stand_down)
            else:
                self.watchdog.abandon()  # it recovers whatever is left once the engine is free
            self.watchdog = None

    # ---- experiments -----------------------------------------------------------------------------------

    def _accepting(self) -> None:
        if self.stopping:
            raise ApiError(503, "faultmesh serve is shutting down; nothing new is accepted")

    async def inventory(self) -> Inventory:
        try:
            return await asyncio.to_thread(self.options.targets.inventory)
        except HostTargetsError as error:
            raise ApiError(503, "cannot list this host's targets", error.problems) from None

    async def submit(self, body: Body, namespace: str) -> tuple[ExperimentRow, list[str], list[str]]:
        """Validate, select and start driving one experiment; returns its row, target ids and notes."""
        self._accepting()
        result = load_body(body, namespace)
        checks = [obj for obj in result.objects if isinstance(obj, StatusCheck)]
        schedules = [obj for obj in result.objects if isinstance(obj, Schedule)]
        experiments = [obj for obj in result.objects if not isinstance(obj, StatusCheck | Schedule)]
        if schedules:
            raise ApiError(422, "a Schedule is not an experiment", [f"kind: Schedule {schedules[0].metadata.name}: "
                                                                    f"POST it to {API_PREFIX}/schedules"])
        if len(checks) > 1:
            raise ApiError(422, "too many StatusChecks", [f"{len(checks)} StatusChecks; a run is guarded by one"])
        if len(experiments) != 1:
            names = ", ".join(f"{obj.kind}/{obj.metadata.name}" for obj in experiments) or "none"
            raise ApiError(422, "one experiment per request",
                           [f"found {len(experiments)} experiments ({names}); submit them one by one"
                            + (f" (notes: {'; '.join(result.notes)})" if result.notes else "")])
        inventory = await self.inventory()
        resource = experiments[0]
        running = await self._launch(resource, inventory, body=body, status_check=checks[0] if checks else None)
        row = self.db.get_uid(running.uid)
        return row, [work.record_id for work in running.driver.works.values()], list(result.notes) + list(
            inventory.notes)

    async def launch_child(self, resource: Resource) -> ExperimentRow:
        """Start an experiment a Schedule made (the scheduler's :class:`~faultmesh.host.schedules.Launcher`)."""
        if self.stopping:
            raise RunRefusedError(["faultmesh serve is shutting down"], EXIT_BUSY)
        try:
            inventory = await self.inventory()
        except ApiError as error:
            raise RunRefusedError([error.error, *error.problems], EXIT_BUSY) from None
        try:
            running = await self._launch(resource, inventory, body=None, status_check=None)
        except ApiError as error:
            raise RunRefusedError(error.problems or [error.error], EXIT_BUSY) from None
        return self.db.get_uid(running.uid)

    async def _launch(self, resource: Resource, inventory: Inventory, *, body: Body | None,
                      status_check: StatusCheck | None) -> Running:
        try:
            check_not_halted(self.db)
        except RunRefusedError as refused:
            raise _refused(refused, "host mode is halted") from None
        if not resource.metadata.name and resource.metadata.generate_name:
            taken = {row.name for row in self.db.list(namespace=resource.metadata.namespace)}
            resource.metadata.name = generate_name(resource.metadata.generate_name, _RNG, taken)
        uid = new_uid()
        seed = body.seed if body is not None else None
        try:
            prepared = await asyncio.to_thread(prepare, resource, inventory, uid, seed=seed)
        except RunRefusedError as refused:
            raise _refused(refused, "cannot run the experiment") from None
        guard = _guard(body, status_check, inventory) if body is not None else None
        if guard is not None:
            try:
                await guard.start(self.host.runtimes)
            except RunRefusedError as refused:
                raise _refused(refused, "the steady-state probe cannot start") from None
        if self.stopping:
            if guard is not None:
                await guard.stop()
            self._accepting()
        try:
            journal = record_experiment(self.db, self.layout, self.owner, prepared, uid)
        except RunRefusedError as refused:
            if guard is not None:
                await guard.stop()
            raise _refused(refused, "cannot record the experiment") from None
        driver = ExperimentDriver(self.host, self.db, uid, prepared.resource, prepared.works, journal, guard=guard,
                                  tick=self.options.tick)
        running = Running(uid, driver, journal, guard)
        self.running[uid] = running
        running.task = asyncio.create_task(self._drive(running), name=f"drive {resource.kind} {uid}")
        if self.stopping:  # a shutdown began while this one was being set up
            driver.request_stop(OUTCOME_INTERRUPTED, self.stop_reason)
        return running

    async def _drive(self, running: Running) -> None:
        """Drive one experiment to its end and close it; a failure of the driving itself still recovers."""
        driver, journal, guard = running.driver, running.journal, running.guard
        try:
            try:
                outcome, reason = await driver.run()
            finally:
                if guard is not None:
                    await guard.stop()
                    journal.probe = guard.journal_entry()
            close_experiment(self.db, journal, running.uid, outcome, reason)
        except Exception as error:
            log.exception("driving %s failed; recovering it", driver.label)
            journal.write()
            reason = f"driving it failed ({type(error).__name__}: {error}); recovered"
            try:
                row = self.db.get_uid(running.uid)
            except NotFoundError:
                return
            errors = await settle(self.host, self.db, self.layout, row, outcome=OUTCOME_FAILED, reason=reason)
            self.failures += errors
        finally:
            self.running.pop(running.uid, None)
            if self.scheduler is not None:
                self.scheduler.wake()

    def find(self, namespace: str, name: str, kind: str | None) -> ExperimentRow:
        """The experiment ``namespace/name`` (of ``kind``): the active one, else the newest run of that name."""
        kind_name = _kind(kind)
        rows = [row for row in self.db.list(kind=kind_name, namespace=namespace) if row.name == name]
        if not rows:
            known = sorted({f"{row.kind}/{row.namespace}/{row.name}" for row in self.db.list(namespace=namespace)})
            hint = f"known in {namespace}: {', '.join(known[:10])}" if known else f"nothing is recorded in {namespace}"
            what = f"{kind_name} " if kind_name else "experiment "
            raise ApiError(404, f"{what}{namespace}/{name} not found", [hint])
        kinds = sorted({row.kind for row in rows})
        if len(kinds) > 1:
            raise ApiError(409, f"{namespace}/{name} is ambiguous: several kinds have that name",
                           [f"{k}/{namespace}/{name}" for k in kinds] + ["add ?kind=KIND"])
        active = [row for row in rows if row.active]
        return active[0] if active else rows[0]

    async def stop_experiment(self, row: ExperimentRow, *, remove: bool, wait: bool, timeout: float) -> dict[str, Any]:
        """Recover an experiment (verified) and delete it (``remove``) or keep it as Recovered."""
        done_state = "deleted" if remove else "recovered"
        pending_state = "deleting" if remove else "recovering"
        if not row.active:
            if remove:
                with contextlib.suppress(NotFoundError):
                    self.db.remove(row.uid)
                return _removed(row, "deleted", f"{row.key} deleted (it had finished: {row.outcome})")
            return _removed(row, "recovered", f"{row.key} had already finished ({row.outcome}: {row.reason})")
        if row.uid not in self.running and not owner_alive(row.owner):
            reason = f"{done_state} on request; its owner was gone"
            errors = await settle(self.host, self.db, self.layout, row,
                                  outcome="Deleted" if remove else OUTCOME_RECOVERED, reason=reason, remove=remove)
            if errors:
                raise ApiError(500, f"{row.key}: not verified recovered", errors)
            return _removed(self._fresh(row), done_state, f"{row.key} {done_state} (recovered here, verified)")
        if remove:
            self.db.request_delete(row.uid, time.time())
        else:
            from .driver import RECOVER_REASON

            self.db.request_recover(row.uid, time.time(), RECOVER_REASON)
        if not wait:
            return _removed(self._fresh(row), pending_state, f"{row.key}: recovering")
        await self.wait_finished(row.uid, gone=remove, timeout=timeout)
        return _removed(self._fresh(row), done_state, f"{row.key} {done_state}, verified")

    async def delete_experiment(self, row: ExperimentRow, *, drop_history: bool) -> None:
        """For the scheduler: delete a run it made (finished: drop it, and its run dir with ``drop_history``)."""
        if not row.active:
            with contextlib.suppress(NotFoundError):
                self.db.remove(row.uid)
            if drop_history:
                drop_run_dir(self.layout, row)
            return
        await self.stop_experiment(row, remove=True, wait=False, timeout=0)

    def _fresh(self, row: ExperimentRow) -> ExperimentRow:
        try:
            return self.db.get_uid(row.uid)
        except NotFoundError:
            return row

    async def wait_finished(self, uid: str, *, gone: bool, timeout: float) -> None:
        """Wait until the experiment ended (``gone``: was removed); 504 when it takes longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        running = self.running.get(uid)
        if running is not None and running.task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(running.task), timeout)
        while time.monotonic() < deadline:
            try:
                row = self.db.get_uid(uid)
            except NotFoundError:
                return
            if not row.active and not gone:
                return
            await asyncio.sleep(0.1)
        raise ApiError(504, f"not recovered after {timeout:g} s",
                       ["recovery goes on, retried until verified; GET the experiment to see why"])

    async def halt(self, reason: str, timeout: float) -> dict[str, Any]:
        """Refuse new runs, stop every experiment (they end Aborted), and recover anything else the journal holds."""
        self.db.halt(reason, time.time())
        active = [row for row in self.db.list() if row.active]
        errors: list[str] = []
        tasks = [running.task for running in self.running.values() if running.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            errors += [f"{task.get_name()}: still recovering after {timeout:g} s" for task in late]
        for row in self.db.list():
            if row.active and row.uid not in self.running and not owner_alive(row.owner):
                errors += await settle(self.host, self.db, self.layout, row, outcome=OUTCOME_ABORTED,
                                       reason=f"halted: {reason}")
        views = await self.host.agent.halt(f"halted: {reason}")
        errors += [f"{view.id}: {view.last_error}" for view in views
                   if view.phase not in ("recovered", "failed", "done")]
        self.host.agent.release()  # the store keeps host mode halted; the engine takes work again on release
        state = self.halt_state()
        state.update(stopped=[row.key for row in active], errors=errors)
        return state

    def halt_state(self) -> dict[str, Any]:
        halted = self.db.halted()
        if halted is None:
            return {"halted": False, "reason": None, "since": None}
        return {"halted": True, "reason": halted[0], "since": rfc3339(halted[1])}

    # ---- schedules -------------------------------------------------------------------------------------

    @property
    def schedules(self) -> Scheduler:
        assert self.scheduler is not None, "start the server first"
        return self.scheduler

    async def submit_schedule(self, body: Body, namespace: str) -> tuple[ScheduleRow, list[str]]:
        self._accepting()
        result = load_body(body, namespace)
        schedules = [obj for obj in result.objects if isinstance(obj, Schedule)]
        others = [obj for obj in result.objects if not isinstance(obj, Schedule)]
        if len(schedules) != 1 or others:
            found = ", ".join(f"{obj.kind}/{obj.metadata.name}" for obj in result.objects) or "nothing"
            raise ApiError(422, "one Schedule per request", [f"kind: found {found}; POST one Schedule (experiments go "
                                                             f"to {API_PREFIX}/experiments)"])
        inventory = await self.inventory()
        try:
            row, notes = self.schedules.create(schedules[0], inventory)
        except ScheduleRefusedError as refused:
            raise ApiError(refused.status, "cannot schedule it", refused.problems) from None
        return row, notes + list(result.notes)

    def find_schedule(self, namespace: str, name: str) -> ScheduleRow:
        try:
            return self.db.get_schedule(namespace, name)
        except NotFoundError as error:
            raise ApiError(404, f"schedule {namespace}/{name} not found", [str(error)]) from None

    def schedule_children(self, row: ScheduleRow) -> list[ExperimentRow]:
        return made_by(row, self.db.list())

    def schedule_events(self, uid: str) -> list[ScheduleEvent]:
        return self.schedules.events(uid)


#: Names for objects that only give ``generateName``.
_RNG = random.SystemRandom()


def _removed(row: ExperimentRow, state: str, message: str) -> dict[str, Any]:
    return {"uid": row.uid, "kind": row.kind, "namespace": row.namespace, "name": row.name, "state": state,
            "outcome": row.outcome or None, "message": message}


def _kind(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    try:
        return resolve_kind(text.strip())
    except ViewError as error:
        raise ApiError(422, "unknown kind", [f"kind: {error}"]) from None


# ---- the HTTP application -----------------------------------------------------------------------------


def create_app(server: HostServer, token: str | None) -> FastAPI:
    """The REST API over ``server``; ``token`` None means no authentication (``--insecure-no-auth``)."""
    app = FastAPI(
        title="faultmesh serve",
        version=__version__,
        description="Host mode over HTTP: run Chaos Mesh experiments and Schedules on this machine. Every route "
                    f"under {API_PREFIX} needs `Authorization: Bearer <token>`.",
    )
    async def authorize(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        if token is None:
            return
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None:
            raise ApiError(401, "authentication required",
                           ["send the header `Authorization: Bearer <token>` with the token in serve's --token-file"],
                           challenge)
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise ApiError(401, "invalid token", ["the bearer token does not match serve's --token-file"], challenge)

    _install_error_handlers(app)
    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(authorize)], responses=ERRORS)
    _experiment_routes(api, server)
    _schedule_routes(api, server)
    _host_routes(api, server)
    app.include_router(api)

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> dict[str, Any]:
        """Liveness: no authentication, no details beyond counts."""
        return {"status": "stopping" if server.stopping else "ok", "version": __version__, "owner": server.owner,
                "running": len(server.running), "halted": server.db.halted() is not None}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            submission = Submission.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(submission.pop("$defs", {}))
            components["Submission"] = submission
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _error(status: int, error: str, problems: Sequence[str] = (),
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "problems": list(problems)}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return _error(error.status, error.error, error.problems, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item.get("loc", ()))
            problems.append(f"{where}: {item.get('msg', 'invalid')}")
        return _error(422, "invalid request", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail), [], getattr(error, "headers", None))

    @app.exception_handler(AmbiguousError)
    async def ambiguous(request: Request, error: AmbiguousError) -> JSONResponse:
        return _error(409, str(error), error.candidates)

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, error: NotFoundError) -> JSONResponse:
        return _error(404, str(error))

    @app.exception_handler(StoreError)
    async def store_error(request: Request, error: StoreError) -> JSONResponse:
        return _error(503, "the store cannot answer", [str(error)])

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"internal error: {type(error).__name__}: {error}", ["see the serve log for details"])


_MANIFEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string", "description": "Manifest text (YAML or JSON)."}},
            "application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/Submission"},
                {"type": "object", "description": "The object itself (apiVersion, kind, metadata, spec)."},
            ]}},
        },
    }
}
_SCHEDULE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string", "description": "A Schedule manifest (YAML)."}},
            "application/json": {"schema": {"type": "object", "description": "A Schedule object."}},
        },
    }
}

#: FastAPI reads the annotations of route functions in this module's globals, so these live here.
BEARER = HTTPBearer(auto_error=False, description="The token in serve's --token-file.")
NamespaceQuery = Annotated[str, Query(description="Namespace for objects that name none.")]
KindQuery = Annotated[str | None, Query(description="The experiment's kind, when several kinds share the name.")]
WaitQuery = Annotated[bool, Query(description="Answer only once its faults are recovered, verified.")]
TimeoutQuery = Annotated[float, Query(gt=0, le=3600, description="Seconds to wait at most with wait=true.")]


def _experiment_routes(api: APIRouter, server: HostServer) -> None:
    @api.post("/experiments", status_code=201, response_model=ExperimentCreated, tags=["experiments"],
              openapi_extra=_MANIFEST_BODY)
    async def create_experiment(request: Request, namespace: NamespaceQuery = "default") -> dict[str, Any]:
        """Validate, select and start an experiment (a manifest, optionally with a StatusCheck or probe options)."""
        body = read_body(await request.body(), request.headers.get("content-type"), wrapper=True)
        row, targets, notes = await server.submit(body, namespace)
        return {**experiment_summary(row), "targets": targets, "notes": notes}

    @api.get("/experiments", response_model=ExperimentList, tags=["experiments"])
    async def list_experiments(kind: KindQuery = None, namespace: Annotated[str | None, Query()] = None,
                               active: Annotated[bool | None, Query(description="Only running (true) or "
                                                                                "finished (false) ones.")] = None,
                               ) -> dict[str, Any]:
        """Every recorded experiment, newest first."""
        rows = server.db.list(kind=_kind(kind), namespace=namespace)
        if active is not None:
            rows = [row for row in rows if row.active == active]
        return {"items": [experiment_summary(row) for row in rows]}

    @api.get("/experiments/{namespace}/{name}", response_model=ExperimentDetail, tags=["experiments"])
    async def get_experiment(namespace: str, name: str, kind: KindQuery = None) -> dict[str, Any]:
        """One experiment: its summary, status in Chaos Mesh's wire form, the object, and its events."""
        row = server.find(namespace, name, kind)
        events = [_event(e.at, e.type, e.reason, e.message) for e in server.db.events(row.uid)]
        return {**experiment_summary(row), "status": row.status, "object": experiment_object(row), "events": events}

    async def set_paused(namespace: str, name: str, kind: str | None, paused: bool) -> dict[str, Any]:
        row = server.find(namespace, name, kind)
        if not row.active:
            verb = "pause" if paused else "resume"
            raise ApiError(409, f"{row.key} already finished ({row.outcome}); nothing to {verb}", [row.reason])
        if row.paused != paused:
            server.db.set_paused(row.uid, paused)
        return experiment_summary(server.db.get_uid(row.uid))

    @api.post("/experiments/{namespace}/{name}/pause", response_model=ExperimentSummary, tags=["experiments"])
    async def pause_experiment(namespace: str, name: str, kind: KindQuery = None) -> dict[str, Any]:
        """Pause: its faults are recovered until resumed (its duration keeps counting, as in Chaos Mesh)."""
        return await set_paused(namespace, name, kind, True)

    @api.post("/experiments/{namespace}/{name}/resume", response_model=ExperimentSummary, tags=["experiments"])
    async def resume_experiment(namespace: str, name: str, kind: KindQuery = None) -> dict[str, Any]:
        """Resume: its faults are injected again while its duration lasts."""
        return await set_paused(namespace, name, kind, False)

    @api.post("/experiments/{namespace}/{name}/recover", response_model=Removed, tags=["experiments"],
              responses={202: {"model": Removed, "description": "Recovery started (wait=false)."}})
    async def recover_experiment(namespace: str, name: str, kind: KindQuery = None, wait: WaitQuery = False,
                                 timeout: TimeoutQuery = DEFAULT_WAIT) -> JSONResponse:
        """End it now: recover its faults (verified); it stays listed with outcome Recovered."""
        row = server.find(namespace, name, kind)
        answer = await server.stop_experiment(row, remove=False, wait=wait, timeout=timeout)
        return JSONResponse(answer, status_code=202 if answer["state"] == "recovering" else 200)

    @api.delete("/experiments/{namespace}/{name}", response_model=Removed, tags=["experiments"],
                responses={202: {"model": Removed, "description": "Deletion started (wait=false)."}})
    async def delete_experiment(namespace: str, name: str, kind: KindQuery = None, wait: WaitQuery = False,
                                timeout: TimeoutQuery = DEFAULT_WAIT) -> JSONResponse:
        """Recover its faults (verified) and remove it; wait=true answers once that is done."""
        row = server.find(namespace, name, kind)
        answer = await server.stop_experiment(row, remove=True, wait=wait, timeout=timeout)
        return JSONResponse(answer, status_code=202 if answer["state"] == "deleting" else 200)

    @api.get("/runs/{run_id}/journal", tags=["runs"])
    async def run_journal(run_id: str) -> JSONResponse:
        """The run journal (``runs/<run-id>/journal.json``): per-target times, windows, probe samples, events."""
        path = _run_dir(server, run_id) / JOURNAL_NAME
        try:
            return JSONResponse(json.loads(path.read_text()))
        except FileNotFoundError:
            raise ApiError(404, f"run {run_id} has no journal") from None
        except (OSError, ValueError) as error:
            raise ApiError(500, f"run {run_id}: cannot read its journal", [str(error)]) from None

    @api.get("/runs/{run_id}/report", response_class=HTMLResponse, tags=["runs"])
    async def run_report(run_id: str) -> Response:
        """The run's HTML report (rendered now from the journal while the run is still going)."""
        return await _report(server, run_id)


def _run_dir(server: HostServer, run_id: str) -> Path:
    if not RUN_ID.match(run_id) or ".." in run_id:
        raise ApiError(422, "invalid run id", [f"run_id: {run_id!r} is not a run id (e.g. stresschaos-web-…)"])
    run_dir = server.layout.run_dir(run_id)
    if not run_dir.is_dir():
        raise ApiError(404, f"run {run_id} not found", [f"no directory {run_dir}"])
    return run_dir


async def _report(server: HostServer, run_id: str) -> Response:
    from .report import HTML_NAME, JournalError, page, plot_png

    run_dir = _run_dir(server, run_id)
    try:
        journal = json.loads((run_dir / JOURNAL_NAME).read_text())
    except FileNotFoundError:
        raise ApiError(404, f"run {run_id} has no journal") from None
    except (OSError, ValueError) as error:
        raise ApiError(500, f"run {run_id}: cannot read its journal", [str(error)]) from None
    report = run_dir / HTML_NAME
    if journal.get("finished_at") is not None and report.is_file():
        return HTMLResponse(report.read_text())

    def render() -> str:
        return page(journal, plot_png(journal) if journal.get("probe") else None)

    try:
        return HTMLResponse(await asyncio.to_thread(render))
    except JournalError as error:
        raise ApiError(500, f"run {run_id}: its journal cannot be rendered", list(error.problems)) from None


def _schedule_routes(api: APIRouter, server: HostServer) -> None:
    def detail(row: ScheduleRow) -> dict[str, Any]:
        children = server.schedule_children(row)
        events = [event.to_json() for event in server.schedule_events(row.uid)]
        return {**schedule_summary(row, time.time()), "object": schedule_object(row),
                "experiments": [experiment_summary(child) for child in children], "events": events}

    @api.post("/schedules", status_code=201, response_model=ScheduleCreated, tags=["schedules"],
              openapi_extra=_SCHEDULE_BODY)
    async def create_schedule(request: Request, namespace: NamespaceQuery = "default") -> dict[str, Any]:
        """Record a Schedule (Chaos Mesh's kind) and start firing it."""
        body = read_body(await request.body(), request.headers.get("content-type"), wrapper=False)
        row, notes = await server.submit_schedule(body, namespace)
        return {**schedule_summary(row, time.time()), "notes": notes}

    @api.get("/schedules", response_model=ScheduleList, tags=["schedules"])
    async def list_schedules(namespace: Annotated[str | None, Query()] = None) -> dict[str, Any]:
        """Every Schedule, newest first."""
        now = time.time()
        return {"items": [schedule_summary(row, now) for row in server.db.list_schedules(namespace=namespace)]}

    @api.get("/schedules/{namespace}/{name}", response_model=ScheduleDetail, tags=["schedules"])
    async def get_schedule(namespace: str, name: str) -> dict[str, Any]:
        """One Schedule: its status, the experiments it made (newest first) and its recent events."""
        return detail(server.find_schedule(namespace, name))

    async def set_paused(namespace: str, name: str, paused: bool) -> dict[str, Any]:
        row = server.find_schedule(namespace, name)
        if row.paused != paused:
            server.schedules.set_paused(row, paused)
            await server.schedules.reconcile_all()  # its experiments follow before the answer
        return detail(server.find_schedule(namespace, name))

    @api.post("/schedules/{namespace}/{name}/pause", response_model=ScheduleDetail, tags=["schedules"])
    async def pause_schedule(namespace: str, name: str) -> dict[str, Any]:
        """Stop firing and pause the experiments it made that still run."""
        return await set_paused(namespace, name, True)

    @api.post("/schedules/{namespace}/{name}/resume", response_model=ScheduleDetail, tags=["schedules"])
    async def resume_schedule(namespace: str, name: str) -> dict[str, Any]:
        """Fire again (a missed run fires now, within startingDeadlineSeconds) and resume its experiments."""
        return await set_paused(namespace, name, False)

    @api.delete("/schedules/{namespace}/{name}", response_model=ScheduleRemoved, tags=["schedules"],
                responses={202: {"model": ScheduleRemoved, "description": "Its experiments are still recovering."}})
    async def delete_schedule(namespace: str, name: str, wait: WaitQuery = False,
                              timeout: TimeoutQuery = DEFAULT_WAIT) -> JSONResponse:
        """Stop firing and delete every experiment it made (running ones are recovered first, verified)."""
        row = server.find_schedule(namespace, name)
        children = await server.schedules.delete(row)
        if wait:
            for child in children:
                await server.wait_finished(child.uid, gone=True, timeout=timeout)
        still = [child for child in children if _exists(server.db, child.uid)]
        answer = {"uid": row.uid, "namespace": row.namespace, "name": row.name,
                  "experiments": [child.name for child in children], "state": "deleting" if still else "deleted"}
        return JSONResponse(answer, status_code=202 if still else 200)


def _exists(store: Store, uid: str) -> bool:
    try:
        store.get_uid(uid)
    except NotFoundError:
        return False
    return True


def _host_routes(api: APIRouter, server: HostServer) -> None:
    @api.post("/halt", response_model=HaltState, tags=["host"])
    async def halt(request: HaltRequest | None = None, timeout: TimeoutQuery = DEFAULT_WAIT) -> dict[str, Any]:
        """Stop and recover every experiment (they end Aborted) and refuse new runs until released."""
        reason = (request or HaltRequest()).reason
        return await server.halt(reason, timeout)

    @api.post("/halt/release", response_model=HaltState, tags=["host"])
    async def release() -> dict[str, Any]:
        """Accept runs again after a halt."""
        server.db.release()
        server.schedules.wake()
        return server.halt_state()

    @api.get("/halt", response_model=HaltState, tags=["host"])
    async def halt_state() -> dict[str, Any]:
        """Whether host mode is halted, since when and why."""
        return server.halt_state()


# ---- starting it --------------------------------------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (loopback) → (host, port); :class:`ServeError` otherwise."""
    match = re.fullmatch(r"\[(?P<v6>[0-9A-Fa-f:.]+)\]:(?P<port6>\d+)|(?P<host>[^:\[\]]*):(?P<port>\d+)", text.strip())
    if match is None:
        raise ServeError(f"--listen: {text!r} is not HOST:PORT (e.g. {DEFAULT_LISTEN}, [::1]:8737, :8737)")
    host = match.group("v6") or match.group("host") or "127.0.0.1"
    port = int(match.group("port6") or match.group("port"))
    if not 0 <= port <= 65535:
        raise ServeError(f"--listen: port {port} is not between 0 and 65535")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: Path) -> str:
    """The bearer token in ``path`` (surrounding whitespace dropped); refuses a missing, empty or short one."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ServeError(f"--token-file: {path}: no such file (make one, e.g. `openssl rand -hex 32 > {path}`)") \
            from None
    except (OSError, UnicodeDecodeError) as error:
        raise ServeError(f"--token-file: {path}: cannot read it: {error}") from None
    token = text.strip()
    if not token:
        raise ServeError(f"--token-file: {path} is empty")
    if any(ch.isspace() for ch in token):
        raise ServeError(f"--token-file: {path}: the token must be one word (no spaces or line breaks inside)")
    if len(token) < 16:
        raise ServeError(f"--token-file: {path}: the token has {len(token)} characters; use at least 16 "
                         "(e.g. `openssl rand -hex 32`)")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("--token-file %s can be read by other users (mode %o); chmod 600 it", path,
                    stat.S_IMODE(info.st_mode))
    return token


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the engine is taken so that a busy port costs nothing."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ServeError(f"--listen: cannot resolve {host!r}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise ServeError(f"--listen: cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: serve's handlers recover experiments before the process ends."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(options: ServeOptions, sock: socket.socket, token: str | None, *,
                log_level: str = "info", announce: Any = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code (0 when everything was recovered, verified)."""
    server = HostServer(options)
    loop = asyncio.get_running_loop()
    web: _Uvicorn | None = None
    signals_seen: list[str] = []

    def on_signal(name: str) -> None:
        signals_seen.append(name)
        if len(signals_seen) > 1:
            log.warning("second signal (%s): exiting now; the watchdog recovers what is left", name)
            os._exit(EXIT_INTERRUPTED)
        log.info("%s: stopping; recovering every running experiment", name)
        server.begin_shutdown(f"faultmesh serve stopped by {name}; recovered")
        if web is not None:
            web.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        try:
            await server.start()
        except BaseException:
            await server.close()
            raise
        config = uvicorn.Config(create_app(server, token), lifespan="off", log_level=log_level,
                                server_header=False, timeout_graceful_shutdown=10)
        web = _Uvicorn(config)
        if signals_seen:
            web.should_exit = True
        if announce is not None:
            announce(server)
        try:
            await web.serve(sockets=[sock])
        finally:
            # However the HTTP side ended, recover what this process drives before it goes.
            server.begin_shutdown(server.stop_reason or "faultmesh serve is stopping")
            failures = await server.finish_shutdown()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    for failure in failures:
        log.error("not verified recovered: %s", failure)
    return EXIT_FAILED if failures else EXIT_OK


def serve_command(
    listen: Annotated[str, typer.Option(help="Address to listen on: HOST:PORT, [V6]:PORT or :PORT.")] = DEFAULT_LISTEN,
    token_file: Annotated[Path | None, typer.Option(
        help="File holding the bearer token clients must send (`Authorization: Bearer TOKEN`).")] = None,
    insecure_no_auth: Annotated[bool, typer.Option(
        "--insecure-no-auth", help="Serve without authentication: anyone who reaches the port can inject faults.",
    )] = False,
    state_dir: Annotated[Path | None, typer.Option(
        help="Host mode's state (store, journal, runs); default $FAULTMESH_STATE_DIR or /var/lib/faultmesh.")] = None,
    inventory: Annotated[Path | None, typer.Option(help="Inventory file of processes and network namespaces.")] = None,
    containerd_socket: Annotated[Path | None, typer.Option(help="containerd's socket.")] = None,
    containerd_namespace: Annotated[str, typer.Option(help="containerd namespace of the targets.")] = "default",
    lease: Annotated[float, typer.Option(help="Seconds a fault outlives this process if it and its watchdog "
                                              "vanish.")] = DEFAULT_LEASE_TTL,
    log_level: Annotated[str, typer.Option(help="critical, error, warning, info or debug.")] = "info",
) -> None:
    """Serve host mode over HTTP: run experiments and cron Schedules for remote callers, token-protected."""
    from rich.console import Console
    from rich.markup import escape

    err = Console(stderr=True, soft_wrap=True)
    level = log_level.lower()
    if level not in ("critical", "error", "warning", "info", "debug"):
        err.print(f"[red]✗[/red] --log-level: {escape(log_level)!r} is not one of critical, error, warning, info, "
                  "debug", highlight=False)
        raise typer.Exit(EXIT_INVALID)
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        if insecure_no_auth and token_file is not None:
            raise ServeError("give either --token-file or --insecure-no-auth, not both")
        if not insecure_no_auth and token_file is None:
            raise ServeError("--token-file is required (a file holding the bearer token, e.g. made with "
                             "`openssl rand -hex 32 > token`); --insecure-no-auth serves without one")
        token = read_token(token_file) if token_file is not None else None
        host, port = parse_listen(listen)
        if lease <= 0:
            raise ServeError(f"--lease: {lease:g} is not a positive number of seconds")
        sock = bind(host, port)
    except ServeError as error:
        err.print(f"[red]✗[/red] {escape(str(error))}", highlight=False)
        raise typer.Exit(error.exit_code) from None
    if token is None:
        exposed = "" if is_loopback(host) else f" ON {host}, REACHABLE FROM OTHER MACHINES"
        err.print(f"[bold red]WARNING: --insecure-no-auth: NO AUTHENTICATION{escape(exposed)}. Anyone who can "
                  "reach this port can inject faults into this machine.[/bold red]", highlight=False)
    options = ServeOptions(
        state_dir=resolve_state_dir(state_dir),
        targets=TargetOptions(inventory, containerd_socket, containerd_namespace),
        lease_ttl=lease,
    )
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host

    def announce(server: HostServer) -> None:
        err.print(f"faultmesh serve: listening on http://{escape(shown)}:{bound_port} (docs at /docs), state in "
                  f"{escape(str(options.state_dir))}, engine held as {escape(server.owner)}", highlight=False)

    try:
        code = asyncio.run(serve(options, sock, token, log_level=level, announce=announce))
    except ServeError as error:
        err.print(f"[red]✗[/red] {escape(str(error))}", highlight=False)
        raise typer.Exit(error.exit_code) from None
    finally:
        sock.close()
    raise typer.Exit(code)
