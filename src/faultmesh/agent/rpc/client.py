"""The Python client of the agent's gRPC service (async), for the controller and for tests.

It speaks plain Python: specs go in as mappings, injections come back as :class:`Injection`
dataclasses, and a refusal raises :class:`AgentError` carrying the gRPC status code and the
agent's message (which names the request field at fault).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from . import agent_pb2, agent_pb2_grpc
from .tls import TlsFiles, channel_credentials

#: Phase names as the engine and Chaos Mesh's records spell them, by proto enum value.
PHASE_NAMES = {
    agent_pb2.PHASE_UNSPECIFIED: "Unknown",
    agent_pb2.INJECTING: "Injecting",
    agent_pb2.INJECTED: "Injected",
    agent_pb2.RECOVERING: "Recovering",
    agent_pb2.RECOVERED: "Recovered",
    agent_pb2.FAILED: "Failed",
    agent_pb2.DONE: "Done",
}


class AgentError(Exception):
    """The agent refused or failed a call; ``code`` is the gRPC status, ``message`` its details."""

    def __init__(self, method: str, code: grpc.StatusCode, message: str) -> None:
        self.method = method
        self.code = code
        self.message = message
        super().__init__(f"{method}: {code.name}: {message}")


@dataclass(frozen=True)
class TargetRef:
    """The container (or host process) a fault acts on, and the facts its planner may use."""

    container_id: str
    record_id: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Injection:
    """One fault on one target, as the agent reports it."""

    injection_id: str
    owner: str
    kind: str
    target: TargetRef
    slot: str
    #: Injecting, Injected, Recovering, Recovered, Failed, or Done (a one-shot fault ran).
    phase: str
    #: The phase was read back by the plan's probes, not assumed.
    verified: bool
    errors: tuple[str, ...]
    #: Wall-clock seconds since the epoch; 0 once recovered.
    lease_expires_at: float
    reason: str

    @classmethod
    def from_proto(cls, message: agent_pb2.InjectionStatus) -> Injection:
        facts = json.loads(message.target.facts_json) if message.target.facts_json else {}
        return cls(
            injection_id=message.injection_id,
            owner=message.owner,
            kind=message.kind,
            target=TargetRef(message.target.container_id, message.target.record_id, facts),
            slot=message.slot,
            phase=PHASE_NAMES.get(message.phase, "Unknown"),
            verified=message.verified,
            errors=tuple(message.errors),
            lease_expires_at=message.lease_expires_at,
            reason=message.reason,
        )


@dataclass(frozen=True)
class Renewal:
    renewed: tuple[str, ...]
    #: The earliest new expiry (seconds since the epoch); 0 when nothing was renewed.
    lease_expires_at: float
    #: Named injections without a lease any more (expired or recovered).
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class HaltResult:
    halted: bool
    recovered: tuple[Injection, ...]


@dataclass(frozen=True)
class Health:
    serving: bool
    halted: bool
    active_injections: int
    journal_bytes: int
    journal_records: int
    version: str


def _target_proto(target: TargetRef) -> agent_pb2.Target:
    facts = json.dumps(dict(target.facts), sort_keys=True) if target.facts else ""
    return agent_pb2.Target(container_id=target.container_id, record_id=target.record_id, facts_json=facts)


class AgentClient:
    """One channel to one agent. Use as ``async with AgentClient(...) as agent:``.

    ``tls=None`` is a plaintext channel, only for an agent started with ``--insecure``.
    ``server_name`` overrides the name checked against the server's certificate (for an agent
    reached by an address its certificate does not list).
    """

    def __init__(
        self,
        address: str,
        tls: TlsFiles | None,
        *,
        server_name: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.address = address
        self.timeout = timeout
        options: list[tuple[str, Any]] = []
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if tls is None:
            self._channel = grpc.aio.insecure_channel(address, options=options)
        else:
            self._channel = grpc.aio.secure_channel(address, channel_credentials(tls), options=options)
        self._stub = agent_pb2_grpc.AgentStub(self._channel)  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: str, request: Any, timeout: float | None) -> Any:
        try:
            return await getattr(self._stub, method)(request, timeout=timeout or self.timeout)
        except grpc.aio.AioRpcError as error:
            raise AgentError(method, error.code(), error.details() or "") from None

    async def apply(
        self,
        injection_id: str,
        owner: str,
        kind: str,
        spec: Mapping[str, Any] | str,
        target: TargetRef,
        lease_ttl_seconds: float,
        slot: str = "",
        timeout: float | None = None,
    ) -> Injection:
        """Inject ``kind`` with ``spec`` (wire form, camelCase) on ``target``; returns once verified or failed."""
        spec_json = spec if isinstance(spec, str) else json.dumps(dict(spec))
        request = agent_pb2.ApplyRequest(
            injection_id=injection_id,
            owner=owner,
            kind=kind,
            spec_json=spec_json,
            target=_target_proto(target),
            lease_ttl_seconds=lease_ttl_seconds,
            slot=slot,
        )
        return Injection.from_proto(await self._call("Apply", request, timeout))

    async def recover(self, injection_id: str, reason: str = "", timeout: float | None = None) -> Injection:
        """Take the injection out; its phase is Recovered only when every probe confirmed it."""
        request = agent_pb2.RecoverRequest(injection_id=injection_id, reason=reason)
        return Injection.from_proto(await self._call("Recover", request, timeout))

    async def list(self, owner: str = "", timeout: float | None = None) -> list[Injection]:
        response = await self._call("List", agent_pb2.ListRequest(owner=owner), timeout)
        return [Injection.from_proto(item) for item in response.injections]

    async def renew_lease(
        self,
        owner: str,
        ttl_seconds: float,
        injection_ids: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> Renewal:
        """Renew the named injections of ``owner``, or all of them when ``injection_ids`` is None."""
        ids: Sequence[str] = list(injection_ids) if injection_ids is not None else []
        request = agent_pb2.RenewLeaseRequest(
            owner=owner, injection_ids=ids, all=injection_ids is None, ttl_seconds=ttl_seconds
        )
        response = await self._call("RenewLease", request, timeout)
        return Renewal(tuple(response.renewed), response.lease_expires_at, tuple(response.missing))

    async def halt(self, release: bool = False, timeout: float | None = None) -> HaltResult:
        """Recover everything and refuse new faults (``release=True`` lifts the halt)."""
        response = await self._call("Halt", agent_pb2.HaltRequest(release=release), timeout)
        return HaltResult(response.halted, tuple(Injection.from_proto(item) for item in response.recovered))

    async def health(self, timeout: float | None = None) -> Health:
        response = await self._call("Health", agent_pb2.HealthRequest(), timeout)
        return Health(
            serving=response.serving,
            halted=response.halted,
            active_injections=response.active_injections,
            journal_bytes=response.journal_bytes,
            journal_records=response.journal_records,
            version=response.version,
        )
