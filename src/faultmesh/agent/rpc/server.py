"""The agent's gRPC service (async grpcio) over the engine of ``agent.injections``.

The service is a thin door: it checks each request completely before the engine sees it, maps the
engine's answers to the proto and its refusals to status codes, and times every call. Codes:

* ``INVALID_ARGUMENT`` -- a field is wrong; the message starts with the field's path
  (``spec_json.delay.latency: "10x" is not a duration ...``).
* ``NOT_FOUND`` -- no such injection, or the target container/process does not exist.
* ``FAILED_PRECONDITION`` -- the agent is halted.
* ``ALREADY_EXISTS`` -- the injection id is taken by a different fault, or is being recovered.
* ``PERMISSION_DENIED`` -- renewing another owner's lease.
* ``UNIMPLEMENTED`` -- no planner for the kind on this agent.
* ``UNAVAILABLE`` -- the container runtime cannot be reached.
* ``INTERNAL`` -- anything else: one line naming the error; the traceback goes to the agent's log.

A fault that fails to apply is not an RPC error: Apply answers ``FAILED`` with the reason (what
it had done is rolled back and verified), so the caller can record it against the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

import grpc
import grpc.aio
from typing_extensions import override

from faultmesh import __version__
from faultmesh.agent.exec import RuntimeUnreachableError, TargetGoneError
from faultmesh.agent.injections import (
    ApplyFailedError,
    ConflictError,
    Engine,
    HaltedError,
    InjectionRequest,
    InjectionView,
    NoPlannerError,
    UnknownInjectionError,
)
from faultmesh.agent.lease import LeaseError
from faultmesh.kinds.plan import Target

from . import agent_pb2, agent_pb2_grpc
from .metrics import AgentMetrics
from .tls import TlsFiles, server_credentials
from .validation import InvalidRequestError, check_apply, check_ttl, require_identifier

log = logging.getLogger(__name__)

#: Engine phase → proto phase.
PHASES = {
    "injecting": agent_pb2.INJECTING,
    "injected": agent_pb2.INJECTED,
    "recovering": agent_pb2.RECOVERING,
    "recovered": agent_pb2.RECOVERED,
    "failed": agent_pb2.FAILED,
    "done": agent_pb2.DONE,
}
#: Phases in which the agent no longer holds anything of the fault.
FINISHED = frozenset({"recovered", "failed", "done"})
#: Longest status message: enough for every field problem of a request, short enough for a log line.
MAX_MESSAGE = 2000


class RefusedError(Exception):
    """A request the service answers with a non-OK status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """Status details are one line: newlines folded, length capped (never a traceback)."""
    flat = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class AgentService(agent_pb2_grpc.AgentServicer):
    """Implements ``faultmesh.agent.v1.Agent`` over one :class:`Engine`."""

    def __init__(self, engine: Engine, metrics: AgentMetrics | None = None, *, version: str = __version__) -> None:
        self.engine = engine
        self.metrics = metrics or AgentMetrics()
        self.version = version
        self._observing = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Count the engine's injections from now on: its state now, then each of its events."""
        if not self._observing:
            self.metrics.start_from(self.engine.list(), self.engine.halted)
            self.engine.add_observer(self.metrics.observe)
            self._observing = True

    async def close(self) -> None:
        if self._observing:
            self.engine.remove_observer(self.metrics.observe)
            self._observing = False

    # ------------------------------------------------------------------ the RPC methods

    @override
    async def Apply(self, request: agent_pb2.ApplyRequest, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await self._serve("Apply", context, self._apply(request, context))

    @override
    async def Recover(self, request: agent_pb2.RecoverRequest, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await self._serve("Recover", context, self._recover(request))

    @override
    async def List(self, request: agent_pb2.ListRequest, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await self._serve("List", context, self._list(request))

    @override
    async def RenewLease(
        self, request: agent_pb2.RenewLeaseRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        return await self._serve("RenewLease", context, self._renew(request))

    @override
    async def Halt(self, request: agent_pb2.HaltRequest, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await self._serve("Halt", context, self._halt(request, context))

    @override
    async def Health(self, request: agent_pb2.HealthRequest, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await self._serve("Health", context, self._health())

    async def _serve(self, method: str, context: grpc.aio.ServicerContext[Any, Any], work: Awaitable[Any]) -> Any:
        started = time.monotonic()
        code = grpc.StatusCode.OK
        message = ""
        try:
            return await work
        except InvalidRequestError as error:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, "; ".join(error.problems)
        except RefusedError as refusal:
            code, message = refusal.code, refusal.message
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:
            log.exception("%s failed", method)
            code, message = grpc.StatusCode.INTERNAL, f"{method} failed: {type(error).__name__}: {error}"
        finally:
            self.metrics.observe_rpc(method, code.name, time.monotonic() - started)
        await context.abort(code, one_line(message))

    # ------------------------------------------------------------------ handlers

    async def _apply(self, request: agent_pb2.ApplyRequest, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        checked = check_apply(
            injection_id=request.injection_id,
            owner=request.owner,
            kind=request.kind,
            spec_json=request.spec_json,
            container_id=request.target.container_id,
            record_id=request.target.record_id,
            facts_json=request.target.facts_json,
            lease_ttl_seconds=request.lease_ttl_seconds,
            slot=request.slot,
            planner_kinds={*self.engine.planners.planners, *self.engine.planners.slot_planners},
        )
        target = Target(checked.container_id, checked.record_id, checked.facts)
        self._check_plan(checked.injection_id, checked.kind, checked.spec, target, checked.slot)
        self._refuse_when_halted()
        await self._resolve(target)
        log.info("Apply %s (%s on %s) from %s", checked.injection_id, checked.kind, checked.container_id,
                 peer_name(context))
        engine_request = InjectionRequest(
            id=checked.injection_id,
            kind=checked.kind,
            spec=checked.spec,
            target=target,
            owner=checked.owner,
            lease_ttl=checked.lease_ttl_seconds,
            slot=checked.slot or None,
        )
        try:
            view = await self.engine.apply(engine_request)
        except HaltedError as error:
            raise RefusedError(grpc.StatusCode.FAILED_PRECONDITION, str(error)) from None
        except ConflictError as error:
            raise RefusedError(grpc.StatusCode.ALREADY_EXISTS, f"injection_id: {error}") from None
        except NoPlannerError as error:
            raise RefusedError(grpc.StatusCode.UNIMPLEMENTED, f"kind: {error}") from None
        except ApplyFailedError as error:
            # The fault did not take (rolled back, or being rolled back): an answer, not an RPC error.
            return self._status(self.engine.get(checked.injection_id), extra_errors=[one_line(str(error))])
        return self._status(view)

    async def _recover(self, request: agent_pb2.RecoverRequest) -> Any:
        require_identifier("injection_id", request.injection_id)
        try:
            view = await self.engine.recover(request.injection_id, request.reason or "recovered by its owner")
        except UnknownInjectionError as error:
            raise RefusedError(grpc.StatusCode.NOT_FOUND, f"injection_id: {error}") from None
        return self._status(view)

    async def _list(self, request: agent_pb2.ListRequest) -> Any:
        views = [view for view in self.engine.list() if not request.owner or view.owner == request.owner]
        return agent_pb2.ListResponse(injections=[self._status(view) for view in views])

    async def _renew(self, request: agent_pb2.RenewLeaseRequest) -> Any:
        require_identifier("owner", request.owner)
        ttl: float | None = None
        if request.ttl_seconds != 0:
            check_ttl("ttl_seconds", request.ttl_seconds)
            ttl = request.ttl_seconds
        if request.all:
            expiries = await self.engine.renew_owner(request.owner, ttl)
            return agent_pb2.RenewLeaseResponse(
                renewed=sorted(expiries), lease_expires_at=min(expiries.values(), default=0.0)
            )
        ids = list(dict.fromkeys(request.injection_ids))
        if not ids:
            raise InvalidRequestError(["injection_ids: name at least one injection, or set all"])
        for injection_id in ids:
            require_identifier("injection_ids", injection_id)
        owners: dict[str, str] = {}
        for injection_id in ids:
            with contextlib.suppress(UnknownInjectionError):
                owners[injection_id] = self.engine.get(injection_id).owner
        foreign = [f"{key} (owned by {owner})" for key, owner in owners.items() if owner != request.owner]
        if foreign:
            raise RefusedError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"injection_ids: {request.owner} does not own {', '.join(foreign)}",
            )
        renewed: dict[str, float] = {}
        missing: list[str] = []
        for injection_id in ids:
            try:
                renewed[injection_id] = await self.engine.renew(injection_id, request.owner, ttl)
            except LeaseError:
                missing.append(injection_id)
        if not renewed:
            raise RefusedError(
                grpc.StatusCode.NOT_FOUND,
                f"injection_ids: no lease to renew for {', '.join(missing)} (unknown, expired or recovered)",
            )
        return agent_pb2.RenewLeaseResponse(
            renewed=list(renewed), lease_expires_at=min(renewed.values()), missing=missing
        )

    async def _halt(self, request: agent_pb2.HaltRequest, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        caller = peer_name(context)
        if request.release:
            log.warning("halt released by %s", caller)
            self.engine.release()
            return agent_pb2.HaltResponse(halted=False)
        log.warning("halt requested by %s: recovering every injection", caller)
        views = await self.engine.halt(f"agent halted by {caller}")
        return agent_pb2.HaltResponse(halted=True, recovered=[self._status(view) for view in views])

    async def _health(self) -> Any:
        views = self.engine.list()
        return agent_pb2.HealthResponse(
            serving=True,
            halted=self.engine.halted is not None,
            active_injections=sum(1 for view in views if view.phase not in FINISHED),
            journal_bytes=self.engine.journal.size_bytes,
            journal_records=self.engine.journal.record_count,
            version=self.version,
        )

    # ------------------------------------------------------------------ helpers

    def _refuse_when_halted(self) -> None:
        if self.engine.halted is not None:
            raise RefusedError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the agent is halted ({self.engine.halted}); Halt with release=true to accept faults again",
            )

    def _check_plan(self, injection_id: str, kind: str, spec: Mapping[str, Any], target: Target, slot: str) -> None:
        """Plan once, purely, before anything is journalled: a spec the planner refuses is the caller's error."""
        registry = self.engine.planners
        try:
            if slot:
                if kind not in registry.slot_planners:
                    message = f"kind: {kind} has no slot planner on this agent (slot {slot!r} given)"
                    raise RefusedError(grpc.StatusCode.UNIMPLEMENTED, message)
                registry.slot_planners[kind]([(injection_id, spec)], target)
            else:
                if kind not in registry.planners:
                    raise RefusedError(grpc.StatusCode.UNIMPLEMENTED, f"kind: {kind} has no planner on this agent")
                registry.planners[kind](spec, target)
        except RefusedError:
            raise
        except Exception as error:  # planners refuse with ValueError naming the field; any refusal counts
            raise InvalidRequestError([f"spec_json: {one_line(str(error))}"]) from None

    async def _resolve(self, target: Target) -> None:
        """Is the target there? Asked before anything is journalled, so a typo costs nothing."""
        try:
            await self.engine.executor.resolve(target)
        except RuntimeUnreachableError as error:
            raise RefusedError(grpc.StatusCode.UNAVAILABLE, f"target.container_id: {error}") from None
        except TargetGoneError as error:
            raise RefusedError(grpc.StatusCode.NOT_FOUND, f"target.container_id: {error}") from None

    def _status(self, view: InjectionView, extra_errors: Iterable[str] = ()) -> Any:
        state = self.engine.state.injections.get(view.id)
        facts = dict(state.target.facts) if state is not None else {}
        errors = [view.last_error] if view.last_error else []
        errors.extend(error for error in extra_errors if error not in errors)
        return agent_pb2.InjectionStatus(
            injection_id=view.id,
            owner=view.owner,
            kind=view.kind,
            target=agent_pb2.Target(
                container_id=view.container_id,
                record_id=view.record_id,
                facts_json=_json(facts) if facts else "",
            ),
            slot=view.slot or "",
            phase=PHASES.get(view.phase, agent_pb2.PHASE_UNSPECIFIED),
            verified=view.verified and not errors,
            errors=errors,
            lease_expires_at=0.0 if view.phase in FINISHED else view.lease_expires,
            reason=view.reason,
        )


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def peer_name(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's certificate common name (or its address, without TLS), for the log."""
    with contextlib.suppress(Exception):
        names = list(context.auth_context().get("x509_common_name", ()))
        if names:
            return f"{names[0].decode(errors='replace')} ({context.peer()})"
    with contextlib.suppress(Exception):
        return str(context.peer())
    return "unknown"


async def start_server(service: AgentService, listen: str, tls: TlsFiles | None) -> tuple[grpc.aio.Server, int]:
    """Bind and start; returns the server and the port it got (``listen`` may ask for port 0).

    Without ``tls`` the port is plaintext: :mod:`faultmesh.agent.main` allows that only with
    ``--insecure``.
    """
    # No SO_REUSEPORT: a second agent on the same port must fail, not silently share the traffic.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    agent_pb2_grpc.add_AgentServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    try:
        if tls is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, server_credentials(tls))
    except RuntimeError as error:
        raise OSError(f"cannot listen on {listen}: {error}") from None
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    service.start()
    return server, port
