"""The engine: applies, recovers and reconciles injections over the journal and the executor.

Every injection belongs to a *group*: ``injection/<id>`` for a fault that plans alone, or
``slot/<key>`` when it shares a slot (several NetworkChaos on one device must form one tc tree).
The engine is level-triggered per group: the wanted injections of a group determine one plan (the
kind's planner, or its slot planner for all members at once); :meth:`Engine._converge` makes the
system hold exactly that plan: it recovers every other run of the group (undo in reverse, then every
probe must say absent) and then applies the new one (journal the intent, run, journal the result;
then every probe must say present). A failure to verify is retried with backoff, never dropped.

Public API (asyncio; every call survives cancellation of its caller, the work is shielded)::

    engine = Engine(Journal(path), Executor(resolver), planners)
    await engine.start()                         # replay + reconcile_at_start + lease watcher
    view = await engine.apply(InjectionRequest(...))     # raises ApplyFailedError (rolled back)
    view = await engine.recover(injection_id, reason)     # phase "recovered" once verified
    expiry = await engine.renew(injection_id, owner, ttl); await engine.renew_owner(owner, ttl)
    views = await engine.halt(reason); engine.release()
    engine.list(); engine.get(injection_id)
    engine.add_observer(callback)                # PhaseChanged / LeaseExpired / HaltChanged, as they happen
    await engine.close()
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from faultmesh.agent.exec import ExecError, ExecTimeoutError, Executor, NamespaceGoneError, ProbeResult, Scope
from faultmesh.agent.journal import (
    Done,
    InjectionState,
    Journal,
    JournalState,
    LeaseRenewed,
    Record,
    Recovered,
    RecoverRequested,
    Registered,
    RunFinished,
    RunRecovered,
    RunStarted,
    RunState,
    StepApplied,
    StepFailed,
    StepIntent,
    UndoDone,
    UndoIntent,
    group_of,
    replay,
)
from faultmesh.agent.journal import Failed as FailedRecord
from faultmesh.agent.lease import Clock, LeaseBook, LeaseError, LeaseWatcher
from faultmesh.kinds.plan import Plan, Target

log = logging.getLogger(__name__)
T = TypeVar("T")

#: (spec in wire form, target) → the plan of one injection.
Planner = Callable[[Mapping[str, Any], Target], Plan]
#: ([(injection id, spec), ...] in arrival order, target) → one plan for every member of a slot.
SlotPlanner = Callable[[Sequence[tuple[str, Mapping[str, Any]]], Target], Plan]

LEASE_EXPIRED = "lease expired"
#: Reason prefix of a recovery that rolls back a failed apply (the injection ends "failed").
APPLY_FAILED = "apply failed: "

Phase = Literal["injecting", "injected", "recovering", "recovered", "failed", "done"]


@dataclass
class PlannerRegistry:
    """Kind → planner. Kinds register here; a kind used with a slot needs a slot planner."""

    planners: dict[str, Planner] = field(default_factory=dict)
    slot_planners: dict[str, SlotPlanner] = field(default_factory=dict)

    def register(self, kind: str, planner: Planner) -> None:
        self.planners[kind] = planner

    def register_slot(self, kind: str, planner: SlotPlanner) -> None:
        self.slot_planners[kind] = planner


#: An empty registry, the default for engines built in tests; the agent process uses
#: :func:`faultmesh.agent.planners.builtin_planners`.
PLANNERS = PlannerRegistry()


@dataclass(frozen=True)
class InjectionRequest:
    """One fault on one target, as its owner asks for it."""

    id: str
    kind: str
    #: The fault's spec in wire form (JSON object, as journalled and given to the planner).
    spec: Mapping[str, Any]
    target: Target
    owner: str
    lease_ttl: float
    slot: str | None = None


@dataclass(frozen=True)
class InjectionView:
    """What ``list`` shows of an injection."""

    id: str
    kind: str
    owner: str
    container_id: str
    record_id: str
    slot: str | None
    phase: Phase
    lease_expires: float
    #: Why it was recovered / failed / done (or is being recovered).
    reason: str
    #: The last error while applying or recovering (retries go on until verified).
    last_error: str
    #: The phase was read back, not assumed: ``injected`` once the run's probes all saw it present,
    #: ``recovered`` / ``failed`` once they all saw it absent (or nothing was ever applied). Never
    #: true while ``injecting`` or ``recovering``, nor for ``done`` (a one-shot has nothing to probe).
    verified: bool = False


@dataclass(frozen=True)
class PhaseChanged:
    """An injection's phase changed (as :meth:`Engine.get` would now show it)."""

    id: str
    kind: str
    #: None: the engine had not known the injection (a new one).
    previous: Phase | None
    #: None: the engine forgot it (finished long ago, aged out of its memory).
    phase: Phase | None


@dataclass(frozen=True)
class LeaseExpired:
    """The agent is recovering an injection on its own because its lease ran out."""

    id: str
    kind: str


@dataclass(frozen=True)
class HaltChanged:
    """The agent was halted (``reason``) or released (None)."""

    reason: str | None


EngineEvent = PhaseChanged | LeaseExpired | HaltChanged
#: Called synchronously on the event loop for each event; it must not block, and what it raises is
#: logged, never passed on to the engine.
Observer = Callable[[EngineEvent], None]


class EngineError(RuntimeError):
    """Base of the engine's refusals and failures; the RPC maps each to a status code."""


class HaltedError(EngineError):
    """The agent is halted: it recovered everything and takes no new injection until released."""


class ApplyFailedError(EngineError):
    """An apply failed; what it had done was rolled back (or is being, see ``rolled_back``)."""

    def __init__(self, message: str, rolled_back: bool = True) -> None:
        super().__init__(message)
        self.rolled_back = rolled_back


class RecoveryError(EngineError):
    """Recovery is not verified yet (an undo failed or a probe did not say absent); it is retried."""


class ConflictError(EngineError):
    """The id is in use for something else, or the request contradicts the slot it names."""


class UnknownInjectionError(EngineError):
    """No injection with this id is known to this agent."""


class NoPlannerError(EngineError):
    """No planner is registered for the kind (or no slot planner, when a slot is given)."""


class Engine:
    def __init__(self, journal: Journal, executor: Executor, planners: PlannerRegistry = PLANNERS, *,
                 wall: Clock = time.time, monotonic: Clock = time.monotonic, retry_initial: float = 0.5,
                 retry_max: float = 30.0, probe_attempts: int = 5, probe_interval: float = 0.05,
                 compact_threshold: int = 1000, keep_finished: int = 1000) -> None:
        self.journal = journal
        self.executor = executor
        self.planners = planners
        self._wall = wall
        self.state = JournalState()
        self.leases = LeaseBook(wall, monotonic)
        self.watcher = LeaseWatcher(self.leases, self._lease_expired)
        self._locks: dict[str, asyncio.Lock] = {}
        self._errors: dict[str, str] = {}
        self._retries: dict[str, asyncio.Task[None]] = {}
        self._retry_initial, self._retry_max = retry_initial, retry_max
        self._probe_attempts, self._probe_interval = probe_attempts, probe_interval
        self._compact_threshold = self._compact_minimum = compact_threshold
        self._finished: OrderedDict[str, InjectionView] = OrderedDict()
        self._keep_finished = keep_finished
        self._background: set[asyncio.Task[Any]] = set()
        self._halted: str | None = None
        self._started = False
        self._observers: builtins.list[Observer] = []
        #: id → (kind, phase) as last announced to observers: what a phase change is measured against.
        self._phases: dict[str, tuple[str, Phase]] = {}
        #: Live runs whose probes all said present after they were applied (or at start).
        self._verified_runs: set[str] = set()

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the journal, replay it, reconcile the system with it, then watch leases."""
        self.state = replay(self.journal.open())
        for injection in self.state.injections.values():
            if injection.wanted:
                self.leases.restore(injection.id, injection.owner, injection.lease_ttl, injection.lease_expires)
        # What the journal says is where this process starts from, not a change it made.
        self._phases = {i.id: (i.kind, self._view(i).phase) for i in self.state.injections.values()}
        self._started = True
        await self.reconcile_at_start()
        self.watcher.start()

    async def close(self) -> None:
        """Stop background work (leaves injections in place: a restart reconciles them)."""
        await self.watcher.stop()
        for task in [*self._retries.values(), *self._background]:
            task.cancel()
        await asyncio.gather(*self._retries.values(), *self._background, return_exceptions=True)
        self._retries.clear()
        self.journal.close()

    @property
    def halted(self) -> str | None:
        """Why the agent is halted, or None."""
        return self._halted

    def add_observer(self, observer: Observer) -> None:
        """Call ``observer`` on every phase change, lease expiry and halt/release from now on."""
        self._observers.append(observer)

    def remove_observer(self, observer: Observer) -> None:
        self._observers.remove(observer)

    # ------------------------------------------------------------------------------ public API

    async def apply(self, request: InjectionRequest) -> InjectionView:
        """Apply one injection and verify it (its probes say present); idempotent for the same request."""
        return await self._shielded(self._apply(request))

    async def recover(self, injection_id: str, reason: str = "recovered by its owner") -> InjectionView:
        """Undo an injection and verify it is gone; on failure it stays ``recovering`` and is retried."""
        return await self._shielded(self._recover(injection_id, reason))

    async def renew(self, injection_id: str, owner: str, ttl: float | None = None) -> float:
        """Extend the lease of one injection (by its owner); returns the new wall-clock expiry."""
        injection = self.state.injections.get(injection_id)
        if injection is None or not injection.wanted:
            raise LeaseError(f"injection {injection_id!r} has no lease (unknown, expired or recovered)")
        lease = self.leases.renew(injection_id, owner, ttl)
        self._append(LeaseRenewed(injection_id, lease.expires_at, self._wall()))
        return lease.expires_at

    async def renew_owner(self, owner: str, ttl: float | None = None) -> dict[str, float]:
        """Extend every lease ``owner`` holds; returns id → new expiry."""
        return {injection_id: await self.renew(injection_id, owner, ttl)
                for injection_id in self.leases.owned_by(owner)}

    async def halt(self, reason: str = "halted") -> builtins.list[InjectionView]:
        """Refuse new injections and recover every injection there is; returns their views."""
        previous, self._halted = self._halted, reason
        if previous != reason:
            self._emit(HaltChanged(reason))
        wanted = [i.id for i in self.state.injections.values() if i.outcome is None]
        views = await asyncio.gather(*(self.recover(injection_id, reason) for injection_id in wanted))
        return list(views)

    def release(self) -> None:
        """Accept injections again after a halt."""
        if self._halted is not None:
            self._halted = None
            self._emit(HaltChanged(None))

    def list(self) -> builtins.list[InjectionView]:
        """Every injection the agent knows (finished ones until they age out), in arrival order."""
        current = {i.id: self._view(i) for i in self.state.injections.values()}
        finished = [view for key, view in self._finished.items() if key not in current]
        return finished + list(current.values())

    def get(self, injection_id: str) -> InjectionView:
        injection = self.state.injections.get(injection_id)
        if injection is not None:
            return self._view(injection)
        if injection_id in self._finished:
            return self._finished[injection_id]
        raise UnknownInjectionError(f"no injection {injection_id!r} on this agent")

    async def reconcile_at_start(self) -> None:
        """Converge every group the journal names: re-apply what is wanted but missing, undo the rest."""
        now = self._wall()
        for injection in list(self.state.injections.values()):
            if injection.wanted and injection.lease_expires <= now:
                self._append(RecoverRequested(injection.id, LEASE_EXPIRED, now))
                self.leases.drop(injection.id)
                self._emit(LeaseExpired(injection.id, injection.kind))
        for run in self.state.live_runs():
            if run.plan.one_shot:
                self._settle_one_shot_after_restart(run)
        for group in self.state.groups():
            async with self._lock(group):
                keep = await self._current_still_holds(group)
                await self._converge_or_retry(group, keep_current=keep)
        self._compact(force=True)

    # ------------------------------------------------------------------------------ internals

    async def _shielded(self, work: Coroutine[Any, Any, T]) -> T:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return await asyncio.shield(task)

    async def _apply(self, request: InjectionRequest) -> InjectionView:
        if not self._started:
            raise EngineError("the engine is not started (start() reconciles the journal first)")
        self._check_halted()
        self._check_planner(request)
        group = group_of(request.id, request.slot)
        async with self._lock(group):
            self._check_halted()  # a halt may have come while this waited for the lock
            existing = self.state.injections.get(request.id)
            if existing is not None and existing.outcome is None:
                return await self._reapply(existing, request)
            if request.slot:
                for member in self.state.wanted(group):
                    if member.target.container_id != request.target.container_id or member.kind != request.kind:
                        raise ConflictError(
                            f"slot {request.slot!r} holds {member.kind} on {member.target.container_id}; "
                            f"{request.id!r} is {request.kind} on {request.target.container_id}")
            now = self._wall()
            self._finished.pop(request.id, None)
            self._append(Registered(request.id, request.kind, dict(request.spec), request.target, request.owner,
                                    request.lease_ttl, now + request.lease_ttl, request.slot or None, now))
            await self._converge_or_retry(group, newcomer=request.id)
        view = self.get(request.id)
        if view.phase == "failed":
            raise ApplyFailedError(f"{request.id}: {view.reason}")
        if view.phase == "recovering" and view.reason.startswith(APPLY_FAILED):
            raise ApplyFailedError(f"{request.id}: {view.reason.removeprefix(APPLY_FAILED)}; "
                                   f"rolling back is not verified yet: {view.last_error}", rolled_back=False)
        return view

    async def _reapply(self, existing: InjectionState, request: InjectionRequest) -> InjectionView:
        same = (existing.kind == request.kind and dict(existing.spec) == dict(request.spec)
                and existing.target.container_id == request.target.container_id
                and (existing.slot or None) == (request.slot or None) and existing.owner == request.owner)
        if not same:
            raise ConflictError(f"injection {request.id!r} exists with another kind, spec, target, slot or owner")
        if existing.recover_reason is not None:
            raise ConflictError(f"injection {request.id!r} is being recovered ({existing.recover_reason})")
        lease = self.leases.renew(request.id, request.owner, request.lease_ttl)
        self._append(LeaseRenewed(request.id, lease.expires_at, self._wall()))
        return self._view(existing)

    async def _recover(self, injection_id: str, reason: str) -> InjectionView:
        injection = self.state.injections.get(injection_id)
        if injection is None:
            return self.get(injection_id)  # finished long ago, or unknown (raises)
        async with self._lock(injection.group):
            injection = self.state.injections.get(injection_id)  # the one current now, under the lock
            if injection is not None and injection.outcome is None:
                if injection.recover_reason is None:
                    self._append(RecoverRequested(injection_id, reason, self._wall()))
                    self.leases.drop(injection_id)
                    if reason == LEASE_EXPIRED:
                        self._emit(LeaseExpired(injection_id, injection.kind))
                await self._converge_or_retry(injection.group)
        return self.get(injection_id)

    def _check_halted(self) -> None:
        if self._halted is not None:
            raise HaltedError(f"the agent is halted ({self._halted}); release it to inject again")

    async def _lease_expired(self, injection_id: str) -> InjectionView:
        return await self.recover(injection_id, LEASE_EXPIRED)

    def _check_planner(self, request: InjectionRequest) -> None:
        if request.slot:
            if request.kind not in self.planners.slot_planners:
                raise NoPlannerError(f"kind {request.kind} has no slot planner on this agent (slot {request.slot!r})")
        elif request.kind not in self.planners.planners:
            raise NoPlannerError(f"kind {request.kind} has no planner on this agent")

    def _lock(self, group: str) -> asyncio.Lock:
        return self._locks.setdefault(group, asyncio.Lock())

    def _append(self, record: Record) -> None:
        self.journal.append(record)
        self.state.apply(record)
        if isinstance(record, Registered):
            self.leases.restore(record.id, record.owner, record.lease_ttl, record.lease_expires)
        elif isinstance(record, RecoverRequested | Recovered | FailedRecord | Done):
            self.leases.drop(record.id)
            if not isinstance(record, RecoverRequested):
                self._remember_finished(record.id)
        if isinstance(record, UndoIntent | RunRecovered | RunFinished):  # from its first undo on, no longer whole
            self._verified_runs.discard(record.run)
        if isinstance(record, Registered | RecoverRequested | Recovered | FailedRecord | Done):
            self._announce((record.id,))
        elif not isinstance(record, LeaseRenewed):
            run = self.state.runs.get(record.run)
            self._announce(run.members if run is not None else ())

    def _remember_finished(self, injection_id: str) -> None:
        injection = self.state.injections.get(injection_id)
        if injection is None:
            return
        self._finished[injection_id] = self._view(injection)
        self._finished.move_to_end(injection_id)
        while len(self._finished) > self._keep_finished:
            evicted, _ = self._finished.popitem(last=False)
            self._announce((evicted,))

    # ---- observers

    def _emit(self, event: EngineEvent) -> None:
        for observer in builtins.list(self._observers):
            try:
                observer(event)
            except Exception:  # an observer's bug must not stop the engine halfway through a change
                log.exception("engine observer %r failed on %s", observer, event)

    def _announce(self, injection_ids: Iterable[str]) -> None:
        """Tell observers about each of these injections whose phase is not the one last announced."""
        for injection_id in injection_ids:
            known = self._phases.get(injection_id)
            view = self._known_view(injection_id)
            if view is None:
                if known is not None:
                    del self._phases[injection_id]
                    self._emit(PhaseChanged(injection_id, known[0], known[1], None))
                continue
            if known is not None and known == (view.kind, view.phase):
                continue
            self._phases[injection_id] = (view.kind, view.phase)
            if known is not None and known[0] != view.kind:  # re-registered as another kind
                self._emit(PhaseChanged(injection_id, known[0], known[1], None))
                known = None
            self._emit(PhaseChanged(injection_id, view.kind, known[1] if known else None, view.phase))

    def _known_view(self, injection_id: str) -> InjectionView | None:
        injection = self.state.injections.get(injection_id)
        if injection is not None:
            return self._view(injection)
        return self._finished.get(injection_id)

    # ---- convergence

    async def _converge_or_retry(self, group: str, *, newcomer: str | None = None,
                                 keep_current: bool = True) -> None:
        """Converge now; if it cannot be verified, note the error and keep retrying in the background."""
        try:
            await self._converge(group, newcomer=newcomer, keep_current=keep_current)
        except Exception as error:  # every failure is reported and retried, none is dropped
            self._errors[group] = str(error)
            log.warning("group %s did not converge: %s", group, error)
            self._schedule_retry(group)
        else:
            self._errors.pop(group, None)
            self._compact()

    async def _converge(self, group: str, *, newcomer: str | None = None, keep_current: bool = True) -> None:
        """Make the system hold exactly the plan of the group's wanted injections, verified."""
        while True:
            wanted = self.state.wanted(group)
            members = tuple(i.id for i in wanted)
            live = self.state.live_runs(group)
            current = live[-1] if live else None
            keep = (keep_current and current is not None and current.complete and current.members == members
                    and bool(members))
            for run in live:
                if not (keep and run is current):
                    await self._recover_run(run)
            self._finish_recovered(group)
            if not members or keep:
                return
            try:
                await self._apply_run(group, wanted)
                return
            except ApplyFailedError as error:
                blamed = [newcomer] if newcomer in members and len(members) > 1 else list(members)
                for injection_id in blamed:
                    self._append(RecoverRequested(injection_id, APPLY_FAILED + str(error), self._wall()))
                newcomer = None
                keep_current = True
                # loop: the failed run is recovered (verified), the others are re-planned

    def _finish_recovered(self, group: str) -> None:
        """Injections whose recovery was asked for and that no live run holds any more are done."""
        holding = {member for run in self.state.live_runs(group) for member in run.members}
        for injection in list(self.state.injections.values()):
            if injection.group != group or injection.outcome is not None or injection.recover_reason is None:
                continue
            if injection.id in holding:
                continue
            reason = injection.recover_reason
            if reason.startswith(APPLY_FAILED):
                self._append(FailedRecord(injection.id, reason.removeprefix(APPLY_FAILED), self._wall()))
            else:
                self._append(Recovered(injection.id, reason, self._wall()))

    def _plan(self, group: str, wanted: Sequence[InjectionState]) -> Plan:
        last = wanted[-1]
        if group.startswith("slot/"):
            return self.planners.slot_planners[last.kind]([(i.id, i.spec) for i in wanted], last.target)
        return self.planners.planners[last.kind](last.spec, last.target)

    async def _apply_run(self, group: str, wanted: Sequence[InjectionState]) -> None:
        members = tuple(i.id for i in wanted)
        try:
            plan = self._plan(group, wanted)
        except KeyError as error:
            raise ApplyFailedError(f"no planner for {error}") from None
        except Exception as error:  # a planner's refusal (bad spec for this target) is the caller's error
            raise ApplyFailedError(f"planning failed: {error}") from error
        target = wanted[-1].target
        try:
            location = await self.executor.locate(target)
        except ExecError as error:
            raise ApplyFailedError(str(error)) from None
        run_id = f"{group}@{secrets.token_hex(4)}"
        self._append(RunStarted(run_id, group, members, plan, location, self._wall()))
        run = self.state.runs[run_id]
        scope = Scope(tag=run_id, location=location)
        for index, step in enumerate(plan.steps):
            self._append(StepIntent(run_id, index, self._wall()))
            try:
                spawned = await self.executor.run(step.apply, target, scope)
            except Exception as error:
                if isinstance(error, ExecError) and not isinstance(error, ExecTimeoutError):
                    self._append(StepFailed(run_id, index, str(error), self._wall()))
                raise ApplyFailedError(f"step {index + 1} ({step.name}): {error}") from error
            self._append(StepApplied(run_id, index, spawned, self._wall()))
        if plan.one_shot:
            # Done before RunFinished: a crash between them must not leave a wanted injection with
            # no live run, which a restart would apply (kill) a second time.
            for injection_id in members:
                self._append(Done(injection_id, "one-shot fault applied", self._wall()))
            self._append(RunFinished(run_id, self._wall()))
            return
        missing = [f"{name}: {verdict.state} ({verdict.detail})"
                   for name, verdict in await self._probe_run(run, scope, want="present")
                   if verdict.state != "present"]
        if missing:
            raise ApplyFailedError("not in effect after apply: " + "; ".join(missing))
        self._verified_runs.add(run_id)

    async def _recover_run(self, run: RunState) -> None:
        """Undo every step that may exist, in reverse, then prove every probe says absent."""
        target = run.plan.target
        scope = Scope(tag=run.run, location=run.location, processes=run.spawned())
        for index in sorted(run.possibly_present(), reverse=True):
            step = run.plan.steps[index]
            if step.undo is None:
                continue
            self._append(UndoIntent(run.run, index, self._wall()))
            try:
                await self.executor.run(step.undo, target, scope)
            except NamespaceGoneError:
                pass  # the namespace and everything in it are gone
            except Exception as error:
                raise RecoveryError(f"undo of step {index + 1} ({step.name}) failed: {error}") from error
            self._append(UndoDone(run.run, index, self._wall()))
        remaining = [f"{name}: {verdict.state} ({verdict.detail})"
                     for name, verdict in await self._probe_run(run, scope, want="absent")
                     if verdict.state != "absent"]
        if remaining:
            raise RecoveryError("not verified gone: " + "; ".join(remaining))
        self._append(RunRecovered(run.run, self._wall()))

    async def _probe_run(self, run: RunState, scope: Scope, want: Literal["present", "absent"]
                         ) -> builtins.list[tuple[str, ProbeResult]]:
        """Probe every step that may have changed something; a verdict other than ``want`` is retried briefly."""
        verdicts: builtins.list[tuple[str, ProbeResult]] = []
        for index in sorted(run.touched()):
            step = run.plan.steps[index]
            if step.probe is None:
                continue
            for attempt in range(self._probe_attempts):
                verdict = await self.executor.probe(step.probe, run.plan.target, scope)
                if verdict.state == want:
                    break
                if attempt + 1 < self._probe_attempts:
                    await asyncio.sleep(self._probe_interval * (attempt + 1))
            verdicts.append((step.name, verdict))
        return verdicts

    async def _current_still_holds(self, group: str) -> bool:
        """At start: is the group's last run complete, for the wanted members, and still in effect?"""
        live = self.state.live_runs(group)
        members = tuple(i.id for i in self.state.wanted(group))
        if not live or not members or live[-1].members != members or not live[-1].complete:
            return False
        run = live[-1]
        scope = Scope(tag=run.run, location=run.location, processes=run.spawned())
        verdicts = await self._probe_run(run, scope, want="present")
        holds = all(verdict.state == "present" for _, verdict in verdicts)
        if holds:
            self._verified_runs.add(run.run)
        return holds

    def _settle_one_shot_after_restart(self, run: RunState) -> None:
        """A one-shot run cut short: if it began, it is not repeated; if not, it can run again."""
        if run.intents:
            for injection_id in run.members:
                injection = self.state.injections.get(injection_id)
                if injection is not None and injection.outcome is None:
                    self._append(Done(injection_id, "the agent restarted during this one-shot fault; "
                                                    "it is not repeated", self._wall()))
            self._append(RunFinished(run.run, self._wall()))
        else:
            self._append(RunRecovered(run.run, self._wall()))

    def _schedule_retry(self, group: str) -> None:
        if group in self._retries and not self._retries[group].done():
            return
        self._retries[group] = asyncio.create_task(self._retry(group), name=f"converge:{group}")

    async def _retry(self, group: str) -> None:
        delay = self._retry_initial
        while True:
            await asyncio.sleep(delay)
            async with self._lock(group):
                try:
                    await self._converge(group)
                except Exception as error:
                    self._errors[group] = str(error)
                    log.warning("group %s still does not converge: %s", group, error)
                else:
                    self._errors.pop(group, None)
                    self._retries.pop(group, None)
                    self._compact()
                    return
            delay = min(delay * 2, self._retry_max)

    def _compact(self, *, force: bool = False) -> None:
        """Rewrite the journal without what is finished, once it has grown past the threshold.

        Synchronous (no await inside), so no other coroutine appends halfway; live runs stay the
        same objects, so work in progress in other groups keeps writing to the state it holds.
        """
        if not force and self.journal.record_count < self._compact_threshold:
            return
        # Finished injections not remembered yet (replayed at start, or evicted already) are older than
        # every remembered one: they go first in line to age out, never ahead of a newer one.
        unremembered = [injection for injection in self.state.injections.values()
                        if injection.outcome is not None and injection.id not in self._finished]
        for injection in reversed(unremembered):
            if len(self._finished) >= self._keep_finished:
                break
            self._finished[injection.id] = self._view(injection)
            self._finished.move_to_end(injection.id, last=False)
        pruned = [key for key, injection in self.state.injections.items() if injection.outcome is not None]
        self.state.prune()
        self._verified_runs &= set(self.state.runs)
        self._announce(pruned)
        snapshot = self.state.snapshot()
        self.journal.compact(snapshot)
        self._compact_threshold = max(self._compact_minimum, 2 * len(snapshot))

    # ---- views

    def _view(self, injection: InjectionState) -> InjectionView:
        phase: Phase
        reason = injection.outcome_reason
        verified = False
        if injection.outcome is not None:
            phase = injection.outcome
            # Recovered and Failed are journalled only once every run holding it was verified gone.
            verified = phase != "done"
        elif injection.recover_reason is not None:
            phase, reason = "recovering", injection.recover_reason
        else:
            holding = [run for run in self.state.live_runs(injection.group)
                       if run.complete and injection.id in run.members]
            phase = "injected" if holding else "injecting"
            verified = any(run.run in self._verified_runs for run in holding)
        lease = self.leases.get(injection.id)
        return InjectionView(
            id=injection.id, kind=injection.kind, owner=injection.owner,
            container_id=injection.target.container_id, record_id=injection.target.record_id,
            slot=injection.slot, phase=phase,
            lease_expires=lease.expires_at if lease is not None else injection.lease_expires,
            reason=reason, last_error=self._errors.get(injection.group, "") if injection.outcome is None else "",
            verified=verified)
