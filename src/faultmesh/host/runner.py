"""``faultmesh run FILE``: one experiment on this host, from manifest to verified recovery.

In order, and refusing before anything is touched when something is wrong: load and validate the manifest
(one experiment; a StatusCheck beside it guards it), refuse if host mode is halted, list the local targets,
select (mode, value, seed), turn the records into agent work, take the engine lock, record the experiment
in the store, start the watchdog, and only then drive it (:class:`~faultmesh.host.driver.ExperimentDriver`).

Exit codes: 0 the experiment ran its course (or was deleted/recovered on request); 1 it ended Failed or
Aborted (its steady state was lost, or host mode was halted); 2 bad input (file, manifest, no target
matched); 3 host mode cannot run it now (halted, or another process drives the engine); 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from faultmesh.agent.runtime import RuntimeConfig
from faultmesh.agent.runtime.base import RuntimeName
from faultmesh.api.base import Resource
from faultmesh.api.loader import ManifestError
from faultmesh.api.statuscheck import StatusCheck
from faultmesh.files import read_manifest
from faultmesh.kinds.experiment import RecordWork, records_work, selector_key
from faultmesh.kinds.plan import PlanError
from faultmesh.selection import Inventory, SelectionError, plan_experiment

from .driver import (
    OUTCOME_ABORTED,
    OUTCOME_COMPLETED,
    OUTCOME_DELETED,
    OUTCOME_FAILED,
    OUTCOME_INTERRUPTED,
    OUTCOME_RECOVERED,
    ExperimentDriver,
    Progress,
)
from .hostengine import DEFAULT_LEASE_TTL, HostEngine, Watchdog, WatchdogError, spawn_watchdog
from .runjournal import JOURNAL_NAME, RunJournal, TargetTimes, new_run_id
from .state import EngineBusyError, Layout
from .store import AlreadyExistsError, ExperimentRow, NotFoundError, Store, StoreError
from .targets import build_inventory

EXIT_OK = 0
EXIT_OUTCOME = 1
EXIT_INVALID = 2
EXIT_BUSY = 3
EXIT_INTERRUPTED = 130

EXIT_BY_OUTCOME = {
    OUTCOME_COMPLETED: EXIT_OK,
    OUTCOME_DELETED: EXIT_OK,
    OUTCOME_RECOVERED: EXIT_OK,
    OUTCOME_ABORTED: EXIT_OUTCOME,
    OUTCOME_FAILED: EXIT_OUTCOME,
    OUTCOME_INTERRUPTED: EXIT_INTERRUPTED,
}


class RunRefusedError(Exception):
    """The run cannot start; nothing was touched. Each problem is one printable line."""

    def __init__(self, problems: Sequence[str], exit_code: int = EXIT_INVALID) -> None:
        self.problems = list(problems)
        self.exit_code = exit_code
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class TargetOptions:
    """Where host mode looks for targets (as ``faultmesh targets`` takes them)."""

    inventory_file: Path | None = None
    containerd_socket: Path | None = None
    containerd_namespace: str = "default"
    docker_socket: Path | None = None
    crio_socket: Path | None = None

    def inventory(self) -> Inventory:
        return build_inventory(
            inventory_file=self.inventory_file,
            containerd_socket=self.containerd_socket,
            containerd_namespace=self.containerd_namespace,
            docker_socket=self.docker_socket,
            crio_socket=self.crio_socket,
        )

    def runtime(self) -> RuntimeConfig:
        sockets: dict[RuntimeName, Path] = {}
        if self.containerd_socket is not None:
            sockets["containerd"] = self.containerd_socket
        if self.docker_socket is not None:
            sockets["docker"] = self.docker_socket
        if self.crio_socket is not None:
            sockets["cri-o"] = self.crio_socket
        return RuntimeConfig(containerd_namespace=self.containerd_namespace, other_sockets=sockets)


@dataclass
class PreparedRun:
    """An experiment ready to run: validated, selected, planned into agent work."""

    resource: Resource
    manifest: dict[str, Any]
    works: list[RecordWork]
    status_check: StatusCheck | None = None
    notes: list[str] = field(default_factory=list)


def load_experiment(path: Path, namespace: str = "default") -> tuple[Resource, StatusCheck | None, list[str]]:
    """The one experiment in ``path`` and the StatusCheck that guards it, if the file holds one."""
    try:
        result = read_manifest(path, namespace)
    except ManifestError as error:
        raise RunRefusedError([str(problem) for problem in error.problems]) from None
    checks = [obj for obj in result.objects if isinstance(obj, StatusCheck)]
    experiments = [obj for obj in result.objects if not isinstance(obj, StatusCheck)]
    where = str(path)
    if len(checks) > 1:
        raise RunRefusedError([f"{where}: {len(checks)} StatusChecks; host mode guards a run with at most one"])
    if not experiments:
        raise RunRefusedError([f"{where}: no experiment in the file (found {len(result.objects)} object(s) of "
                          "chaos-mesh.org; notes: " + "; ".join(result.notes) + ")"])
    if len(experiments) > 1:
        names = ", ".join(f"{o.kind}/{o.metadata.name}" for o in experiments)
        raise RunRefusedError([f"{where}: {len(experiments)} experiments ({names}); `faultmesh run` takes one per "
                          "file (`faultmesh serve` runs several)"])
    return experiments[0], (checks[0] if checks else None), list(result.notes)


def prepare(resource: Resource, inventory: Inventory, uid: str, *, seed: str | None = None) -> PreparedRun:
    """Select and plan; :class:`RunRefusedError` names the field when nothing matched or the fault cannot be done."""
    where = f"{resource.kind} {resource.metadata.namespace}/{resource.metadata.name}"
    try:
        plans = plan_experiment(resource, inventory, seed=seed)
    except SelectionError as error:
        raise RunRefusedError([f"{where}: {error}"]) from None
    if not plans:
        raise RunRefusedError([f"{where}: {resource.kind} has no pod selector; host mode runs PodChaos, NetworkChaos "
                          "and StressChaos"])
    selections = {}
    for plan in plans:
        if plan.selection.empty:
            raise RunRefusedError([f"{where}: {plan.where}.selector: no target matched: {plan.selection.reason} "
                              "(see `faultmesh targets`)"])
        selections[selector_key(plan.path)] = plan.selection
    try:
        works = records_work(resource, uid, selections, resolve=_resolve)
    except PlanError as error:
        raise RunRefusedError([f"{where}: {error}"]) from None
    manifest = resource.model_dump(mode="json", by_alias=True, exclude_none=True)
    return PreparedRun(resource, manifest, works, notes=list(inventory.notes))


def _resolve(host: str) -> list[str]:
    import socket

    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


# ---- running ---------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    uid: str
    run_id: str
    outcome: str
    reason: str
    run_dir: Path

    @property
    def exit_code(self) -> int:
        return EXIT_BY_OUTCOME.get(self.outcome, EXIT_OUTCOME)


class RunGuard:
    """A steady-state guard as the driver watches it: a Sampler started before the fault and stopped after."""

    def __init__(self, pending: PendingGuard) -> None:
        self.pending = pending
        self.sampler: Any = None

    async def start(self, runtimes: Any) -> None:
        from .steady import ProbeError, Sampler

        pending = self.pending
        guard = pending.guard
        if pending.from_target is not None:
            try:
                pid = await runtimes.resolve(pending.container_id)
            except Exception as error:
                problem = f"probe origin {pending.from_target}: cannot find its process: {error}"
                raise RunRefusedError([problem]) from None
            guard = guard.resolved(pid, pending.from_target)
        self.sampler = Sampler(guard)
        try:
            await self.sampler.start()
        except ProbeError as error:
            raise RunRefusedError([f"steady-state probe: {error}"]) from None
        # The first sample is the steady state before the fault: nothing is injected until it is taken (a
        # sample always ends, within the probe's timeout).
        while not self.sampler.samples and self.sampler.running:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.sampler is not None:
            await self.sampler.stop()

    def failure(self) -> str | None:
        if self.sampler is None or self.sampler.verdict != "Failed":
            return None
        samples = self.sampler.samples
        last = samples[-1].detail if samples else ""
        guard = self.sampler.guard
        return f"{guard.describe()} failed {guard.failure_threshold} time(s) in a row ({last})"

    def journal_entry(self) -> dict[str, Any] | None:
        return self.sampler.journal_probe() if self.sampler is not None else None


@dataclass(frozen=True)
class PendingGuard:
    """A guard whose origin target is known by name and container id until the runtime gives its PID."""

    guard: Any
    from_target: str | None
    container_id: str


def build_guard(status_check: StatusCheck | None, inventory: Inventory, *, url: str | None, command: str | None,
                from_target: str | None, interval: float, timeout: float, failure_threshold: int) -> RunGuard | None:
    """The run's guard from the manifest's StatusCheck or the --probe-* options; None when there is none."""
    import shlex

    from .steady import Guard, GuardError

    if status_check is not None and (url or command):
        raise RunRefusedError(["the manifest has a StatusCheck and --probe-* options were given: use one of them"])
    if status_check is None and not url and not command:
        if from_target:
            raise RunRefusedError(["--probe-from: needs --probe-url or --probe-command"])
        return None
    try:
        if status_check is not None:
            guard = Guard.from_status_check(status_check)
        else:
            guard = Guard.from_options(
                name="probe", url=url, command=shlex.split(command) if command else None,
                interval_seconds=interval, timeout_seconds=timeout, failure_threshold=failure_threshold,
                from_target=from_target,
            )
    except GuardError as error:
        raise RunRefusedError(list(error.problems)) from None
    return guard_for_run(guard, inventory)


def guard_for_run(guard: Any, inventory: Inventory) -> RunGuard:
    """A built guard as a run watches it; its origin target (if any) must be a running host-mode target."""
    origin = guard.from_target
    if origin is None:
        return RunGuard(PendingGuard(guard, None, ""))
    pods = {pod.key: pod for pod in inventory.pods}
    pod = pods.get(origin)
    if pod is None:
        known = ", ".join(sorted(pods)) or "none"
        raise RunRefusedError([f"probe origin {origin!r} is not a host-mode target (known: {known})"])
    started = [status.container_id for status in pod.container_statuses if status.container_id]
    if not started:
        raise RunRefusedError([f"probe origin {origin}: no container of it runs"])
    return RunGuard(PendingGuard(guard, origin, str(started[0])))


def check_not_halted(store: Store) -> None:
    halted = store.halted()
    if halted is not None:
        raise RunRefusedError([f"host mode is halted since {_when(halted[1])} ({halted[0]}); nothing was injected. "
                               "`faultmesh halt --release` accepts runs again"], EXIT_BUSY)


def record_experiment(store: Store, layout: Layout, owner: str, prepared: PreparedRun, uid: str) -> RunJournal:
    """Store the experiment (owned by ``owner``) and open its run directory and journal, before any injection."""
    resource = prepared.resource
    name = resource.metadata.name or "unnamed"
    run_id = new_run_id(resource.kind, name)
    run_dir = layout.run_dir(run_id)
    now = time.time()
    row = ExperimentRow(
        uid=uid, kind=resource.kind, namespace=resource.metadata.namespace or "default",
        name=name, manifest=prepared.manifest, created_at=now, paused=_paused(resource),
        delete_requested_at=None, status={}, run_id=run_id, owner=owner, finished_at=None,
        outcome="", reason="",
    )
    try:
        store.create(row)
    except AlreadyExistsError as error:
        raise RunRefusedError([str(error)], EXIT_BUSY) from None
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "manifest.yaml").write_text(yaml.safe_dump(prepared.manifest, sort_keys=False))
    journal = RunJournal(
        run_dir / JOURNAL_NAME, run_id,
        {"kind": resource.kind, "namespace": row.namespace, "name": row.name, "uid": uid}, now,
        targets=[TargetTimes(w.record_id, w.selector_key, w.works[0].target.container_id if w.works else "")
                 for w in prepared.works],
    )
    journal.write()
    return journal


def close_experiment(store: Store, journal: RunJournal, uid: str, outcome: str, reason: str) -> None:
    """Write the end into the journal and the store (a deleted experiment is removed), and render the report."""
    finished_at = time.time()
    journal.finish(finished_at, outcome, reason)
    journal.write()
    with contextlib.suppress(NotFoundError):
        if outcome == OUTCOME_DELETED:
            store.remove(uid)
        else:
            store.finish(uid, finished_at, outcome, reason)
    _render_report(journal)


async def run_prepared(
    layout: Layout,
    prepared: PreparedRun,
    uid: str,
    target_options: TargetOptions,
    *,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    guard: Any = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_started: Callable[[str, Path], None] | None = None,
    watchdog: bool = True,
) -> RunResult:
    """Take the engine, record the experiment, and drive it to its end (refusing with :class:`RunRefusedError`)."""
    store = _open_store(layout)
    check_not_halted(store)
    host = HostEngine(layout, "run", runtime=target_options.runtime(), lease_ttl=lease_ttl)
    try:
        async with host:
            keeper: Watchdog | None = None
            if watchdog:
                # Before the experiment is recorded: its duration runs from then, and a watchdog takes a moment
                # to start. A runner killed before it records anything leaves the watchdog nothing to do.
                try:
                    keeper = spawn_watchdog(layout, host.owner, layout.root / "watchdog.log",
                                            target_options.containerd_namespace)
                except WatchdogError as error:
                    raise RunRefusedError([str(error)], EXIT_BUSY) from None
            journal: RunJournal | None = None
            try:
                journal = record_experiment(store, layout, host.owner, prepared, uid)
                run_dir = journal.path.parent
                if on_started is not None:
                    on_started(journal.run, run_dir)
                driver = ExperimentDriver(host, store, uid, prepared.resource, prepared.works, journal, guard=guard,
                                          on_progress=on_progress)
                outcome, reason = await _drive(driver, guard, journal)
                close_experiment(store, journal, uid, outcome, reason)
            except RunRefusedError as refused:
                # Refused before anything was injected (a name in use, a guard that cannot start): close the
                # record, if there is one, as such.
                if journal is not None:
                    close_experiment(store, journal, uid, OUTCOME_FAILED, "; ".join(refused.problems))
                if keeper is not None:
                    keeper.stand_down()
                raise
            except BaseException:
                if keeper is not None:
                    keeper.abandon()  # whatever was left in place, the watchdog recovers once the engine is free
                raise
        if keeper is not None:
            keeper.stand_down()
    except EngineBusyError as error:
        raise RunRefusedError([str(error) + "; nothing was injected"], EXIT_BUSY) from None
    return RunResult(uid, journal.run, outcome, reason, run_dir)


async def _drive(driver: ExperimentDriver, guard: Any, journal: RunJournal) -> tuple[str, str]:
    """Run the driver with the guard sampling beside it; SIGINT/SIGTERM stop the run (a second one exits)."""
    loop = asyncio.get_running_loop()
    interrupts = 0

    def interrupted(name: str) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            driver.request_stop(OUTCOME_INTERRUPTED, f"interrupted by {name}; recovering")
        else:
            # Out at once, whatever is in flight: the kernel closes the watchdog's pipe and drops the engine
            # lock, and the watchdog recovers whatever is left, verified. (Unwinding instead could hang on work
            # that is itself waiting for the kernel, with the lock still held.)
            sys.stderr.write("interrupted again: leaving the recovery to the watchdog\n")
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted, sig.name)
    try:
        if guard is not None:
            await guard.start(driver.host.runtimes)
        try:
            return await driver.run()
        finally:
            if guard is not None:
                await guard.stop()
                journal.probe = guard.journal_entry()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _render_report(journal: RunJournal) -> None:
    try:
        from .report import render
    except ImportError:
        return
    render(journal.to_json(), journal.path.parent)


def _open_store(layout: Layout) -> Store:
    layout.prepare()
    try:
        return Store.open(layout.root)
    except StoreError as error:
        raise RunRefusedError([str(error)], EXIT_BUSY) from None


def _paused(resource: Resource) -> bool:
    annotations = resource.metadata.annotations or {}
    return annotations.get("experiment.chaos-mesh.org/pause") == "true"


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def new_uid() -> str:
    return str(uuid.uuid4())


@contextlib.contextmanager
def refusals_printed(printer: Callable[[str], None]) -> Any:
    """Print a :class:`RunRefusedError` line by line and exit with its code (for CLI commands)."""
    import typer

    try:
        yield
    except RunRefusedError as refused:
        for line in refused.problems:
            printer(line)
        raise typer.Exit(refused.exit_code) from None
