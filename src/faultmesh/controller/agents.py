"""The agents of the nodes: finding the one that serves a node, mTLS clients to it, and the owner's leases.

**Discovery.** The agent runs as a DaemonSet, so the agent of node N is the DaemonSet's pod whose
``spec.nodeName`` is N. :class:`AgentPool` finds it in one of two ways, both reading the same facts:

- ``label_selector``: the agent pods themselves, listed by label and by node (a field selector);
- ``service``: the EndpointSlices of the agents' headless Service, whose endpoints carry each pod's node and
  readiness. This is how Chaos Mesh finds its chaos-daemon.

Only a Ready pod that is not terminating serves: its readiness probe passes only once the agent has
reconciled its journal and opened its port. It is reached at its pod IP, or at the node's IP (``status.hostIP``)
when it runs in the host's network, on the configured port. The certificate check uses ``server_name`` (the
name the agents' shared certificate carries), since one certificate cannot list every pod IP.

**Clients** are made per node and kept. A call that finds the agent unreachable drops the client; the next
call looks the agent up again (a replaced agent pod has a new address) and reads the TLS files again, so
rotated certificates take effect on reconnect. Failures are :class:`AgentUnavailableError`, whose message
says which node and why: no agent pod there, not Ready, or the connection failed.

**Leases.** Every injection carries a lease of its owner (this controller); :meth:`AgentPool.keep_leases`
renews all of the owner's leases on every agent the pool has used, and keeps each agent's answer: the
injections it still holds. One missing from that answer was recovered by the agent on its own (its lease ran
out while the controller was away); :meth:`AgentPool.alive_injections` lets the reconciler notice.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import grpc

from faultmesh.agent.rpc.client import AgentClient, AgentError, Injection, TargetRef
from faultmesh.agent.rpc.tls import TlsConfigError, TlsFiles

from .kube import PODS, Kube, KubeError, ResourceType

log = logging.getLogger(__name__)

#: Chaos Mesh's chaos-daemon gRPC port, which the agent listens on by default.
DEFAULT_AGENT_PORT = 31767
#: The labels of the agent DaemonSet's pods in deploy/.
DEFAULT_AGENT_LABELS = "app.kubernetes.io/name=faultmesh,app.kubernetes.io/component=agent"
ENDPOINT_SLICES = ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
#: The label the EndpointSlice controller puts on every slice of a Service.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
#: A dropped client is closed this long after, so calls still in flight on it (an apply may have a longer
#: deadline of its own) can finish rather than be cancelled.
RETIRED_CLIENT_GRACE_S = 60.0

T = TypeVar("T")


class AgentUnavailableError(Exception):
    """No agent can be called for ``node`` right now; ``reason`` says why (one line)."""

    def __init__(self, node: str, reason: str) -> None:
        self.node = node
        self.reason = reason
        super().__init__(f"agent of node {node} unavailable: {reason}")


@dataclass(frozen=True)
class AgentEndpoint:
    """Where the agent of ``node`` listens; ``pod`` is its pod (``namespace/name``) for messages."""

    node: str
    pod: str
    address: str


@dataclass(frozen=True)
class LeaseReport:
    """One renewal round's answer from one agent: the owner's injections it still holds, or why it did not say."""

    #: The injection ids the agent renewed (it holds them, under lease); None when the renewal failed.
    alive: frozenset[str] | None
    #: ``time.monotonic()`` when the renewal was sent: later applies are not in ``alive`` yet.
    sent_at: float
    error: str = ""


def _host_port(ip: str, port: int) -> str:
    try:
        is_v6 = ipaddress.ip_address(ip).version == 6
    except ValueError:
        is_v6 = False
    return f"[{ip}]:{port}" if is_v6 else f"{ip}:{port}"


def _pod_ready(pod: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the pod is Ready, and if not, the most telling reason the status gives."""
    status = pod.get("status") or {}
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready":
            if condition.get("status") == "True":
                return True, ""
            break
    waiting = [
        f"container {c.get('name')} {c['state']['waiting'].get('reason') or 'waiting'}"
        for c in status.get("containerStatuses") or ()
        if (c.get("state") or {}).get("waiting")
    ]
    if waiting:
        return False, "; ".join(waiting)
    not_ready = [f"container {c.get('name')} not ready" for c in status.get("containerStatuses") or ()
                 if not c.get("ready")]
    return False, "; ".join([f"phase {status.get('phase') or 'Pending'}", *not_ready])


def pick_agent_pod(pods: Iterable[Mapping[str, Any]], node: str, port: int, selector: str) -> AgentEndpoint | str:
    """The endpoint of the agent pod serving ``node``, or why there is none (pods: the agent pods listed)."""
    on_node = [p for p in pods if (p.get("spec") or {}).get("nodeName") == node]
    if not on_node:
        return f"no agent pod on node {node} (no pod labelled {selector} runs there)"
    # Newest first: during a rolling update the new pod is the one that will stay.
    on_node.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""), reverse=True)
    reasons: list[str] = []
    for pod in on_node:
        metadata = pod.get("metadata") or {}
        key = f"{metadata.get('namespace')}/{metadata.get('name')}"
        if metadata.get("deletionTimestamp"):
            reasons.append(f"the agent pod {key} is terminating")
            continue
        ready, why = _pod_ready(pod)
        if not ready:
            reasons.append(f"the agent pod {key} is not Ready ({why})")
            continue
        status = pod.get("status") or {}
        host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
        ip = (status.get("hostIP") or status.get("podIP")) if host_network else status.get("podIP")
        if not ip:
            reasons.append(f"the agent pod {key} has no IP yet")
            continue
        return AgentEndpoint(node, key, _host_port(str(ip), port))
    return "; ".join(reasons)


def pick_agent_endpoint(
    slices: Iterable[Mapping[str, Any]], node: str, port: int, service: str
) -> AgentEndpoint | str:
    """The endpoint serving ``node`` among a Service's EndpointSlices, or why there is none."""
    reasons: list[str] = []
    for endpoint_slice in slices:
        namespace = (endpoint_slice.get("metadata") or {}).get("namespace")
        for endpoint in endpoint_slice.get("endpoints") or ():
            if endpoint.get("nodeName") != node:
                continue
            target = endpoint.get("targetRef") or {}
            key = f"{target.get('namespace') or namespace}/{target.get('name') or '?'}"
            conditions = endpoint.get("conditions") or {}
            addresses = endpoint.get("addresses") or ()
            if conditions.get("terminating"):
                reasons.append(f"the agent pod {key} is terminating")
            elif conditions.get("ready") is False:  # unset means "unknown", which the API says to treat as ready
                reasons.append(f"the agent pod {key} is not Ready")
            elif not addresses:
                reasons.append(f"the agent pod {key} has no address")
            else:
                return AgentEndpoint(node, key, _host_port(str(addresses[0]), port))
    if not reasons:
        return f"no agent pod on node {node} (service {service} has no endpoint there)"
    return "; ".join(reasons)


@dataclass
class _Connection:
    endpoint: AgentEndpoint
    client: AgentClient


class AgentPool:
    """Agent clients by node, found through the API; use ``async with`` or :meth:`close`.

    Give exactly one of ``label_selector`` (the agent pods' labels) or ``service`` (the agents' headless
    Service); both are looked up in ``namespace``. ``tls=None`` talks plaintext to agents run ``--insecure``.
    ``timeout`` is the default deadline of each call, the connection check included.
    """

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        port: int = DEFAULT_AGENT_PORT,
        tls: TlsFiles | None,
        label_selector: str | None = None,
        service: str | None = None,
        server_name: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        if (label_selector is None) == (service is None):
            raise ValueError("agent discovery needs exactly one of label_selector or service")
        if not 0 < port < 65536:
            raise ValueError(f"agent port {port} is not a TCP port (1-65535)")
        if timeout <= 0:
            raise ValueError(f"agent call timeout {timeout:g} must be more than 0 seconds")
        self.kube = kube
        self.namespace = namespace
        self.port = port
        self.tls = tls
        self.label_selector = label_selector
        self.service = service
        self.server_name = server_name
        self.timeout = timeout
        self._connections: dict[str, _Connection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        #: Nodes whose agent the owner's leases are renewed on: every node the pool was asked for.
        self._used: set[str] = set()
        self._reports: dict[str, LeaseReport] = {}
        #: Injections applied through the pool, by node: id → when (monotonic), until a renewal round covers them.
        self._applied: dict[str, dict[str, float]] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> AgentPool:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every client (calls still in flight are cancelled)."""
        connections, self._connections = list(self._connections.values()), {}
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        for connection in connections:
            await connection.client.close()

    # ---- discovery and clients -------------------------------------------------------------------------

    async def find(self, node: str) -> AgentEndpoint:
        """Look up the agent serving ``node`` now (no cache); raises :class:`AgentUnavailableError`."""
        try:
            if self.service is not None:
                slices, _ = await self.kube.list_all(
                    ENDPOINT_SLICES, self.namespace, label_selector=f"{SERVICE_NAME_LABEL}={self.service}"
                )
                found = pick_agent_endpoint(slices, node, self.port, f"{self.namespace}/{self.service}")
            else:
                assert self.label_selector is not None
                pods, _ = await self.kube.list_all(
                    PODS, self.namespace, label_selector=self.label_selector, field_selector=f"spec.nodeName={node}"
                )
                found = pick_agent_pod(pods, node, self.port, f"{self.label_selector} in namespace {self.namespace}")
        except KubeError as error:
            raise AgentUnavailableError(node, f"cannot look up the agent pods: {error}") from None
        if isinstance(found, str):
            raise AgentUnavailableError(node, found)
        return found

    async def client_for(self, node: str) -> AgentClient:
        """A client to the agent of ``node``, checked with a Health call when it is made, then kept."""
        if not node:
            raise AgentUnavailableError("(none)", "the pod is not scheduled on a node yet")
        self._used.add(node)
        connection = self._connections.get(node)
        if connection is not None:
            return connection.client
        async with self._locks.setdefault(node, asyncio.Lock()):
            connection = self._connections.get(node)
            if connection is None:
                connection = await self._connect(await self.find(node))
                self._connections[node] = connection
            return connection.client

    async def _connect(self, endpoint: AgentEndpoint) -> _Connection:
        where = f"the agent pod {endpoint.pod} at {endpoint.address}"
        try:
            client = AgentClient(endpoint.address, self.tls, server_name=self.server_name, timeout=self.timeout)
        except TlsConfigError as error:
            raise AgentUnavailableError(endpoint.node, f"cannot connect to {where}: {error}") from None
        try:
            await client.health(timeout=self.timeout)
        except AgentError as error:
            await client.close()
            raise AgentUnavailableError(
                endpoint.node, f"connection to {where} failed: {error.code.name}: {error.message}"
            ) from None
        except BaseException:
            await client.close()
            raise
        log.info("connected to %s for node %s", where, endpoint.node)
        return _Connection(endpoint, client)

    def endpoint_of(self, node: str) -> AgentEndpoint | None:
        """Where the current client of ``node`` is connected; None when there is none."""
        connection = self._connections.get(node)
        return connection.endpoint if connection is not None else None

    def invalidate(self, node: str) -> None:
        """Drop the client of ``node``: the next call looks the agent up again. Calls in flight may finish."""
        connection = self._connections.pop(node, None)
        if connection is not None:
            task = asyncio.get_running_loop().create_task(self._retire(connection.client))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _retire(self, client: AgentClient) -> None:
        try:
            await asyncio.sleep(max(self.timeout, RETIRED_CLIENT_GRACE_S))
        finally:
            await client.close()

    def forget(self, node: str) -> None:
        """Stop using the agent of ``node`` (a node that left the cluster): no client, no lease renewal there."""
        self.invalidate(node)
        self._used.discard(node)
        self._reports.pop(node, None)
        self._applied.pop(node, None)

    async def run(self, node: str, call: Callable[[AgentClient], Awaitable[T]]) -> T:
        """``call`` with the agent of ``node``; an unreachable agent raises :class:`AgentUnavailableError`.

        When the agent cannot be reached and a fresh look-up finds it elsewhere (its pod was replaced), the
        call is made once more there, so ``call`` should be idempotent, as the agent's calls are. Refusals
        by the agent stay :class:`AgentError`.
        """
        client = await self.client_for(node)
        try:
            return await call(client)
        except AgentError as error:
            if error.code == grpc.StatusCode.DEADLINE_EXCEEDED:
                self.invalidate(node)  # a hung connection is not reused; the next call checks the agent anew
            if error.code != grpc.StatusCode.UNAVAILABLE:
                raise
            failed_at, failure = client.address, f"{error.code.name}: {error.message}"
        self.invalidate(node)
        client = await self.client_for(node)
        if client.address == failed_at:
            raise AgentUnavailableError(node, f"call to the agent at {failed_at} failed: {failure}")
        log.info("the agent of node %s moved from %s to %s; calling again", node, failed_at, client.address)
        try:
            return await call(client)
        except AgentError as error:
            if error.code != grpc.StatusCode.UNAVAILABLE:
                raise
            self.invalidate(node)
            raise AgentUnavailableError(
                node, f"call to the agent at {client.address} failed: {error.code.name}: {error.message}"
            ) from None

    async def apply(
        self,
        node: str,
        injection_id: str,
        owner: str,
        kind: str,
        spec: Mapping[str, Any] | str,
        target: TargetRef,
        lease_ttl_seconds: float,
        slot: str = "",
        timeout: float | None = None,
    ) -> Injection:
        """Apply one injection on the agent of ``node`` and count it alive there until a renewal round says."""
        injection = await self.run(node, lambda client: client.apply(
            injection_id, owner, kind, spec, target, lease_ttl_seconds, slot=slot, timeout=timeout))
        self.note_applied(node, injection.injection_id)
        return injection

    async def recover(self, node: str, injection_id: str, reason: str = "", timeout: float | None = None) -> Injection:
        """Recover one injection on the agent of ``node``."""
        injection = await self.run(node, lambda client: client.recover(injection_id, reason, timeout=timeout))
        self._applied.get(node, {}).pop(injection_id, None)
        return injection

    # ---- leases ------------------------------------------------------------------------------------------

    def note_applied(self, node: str, injection_id: str) -> None:
        """Count an injection applied outside :meth:`apply` as alive until a renewal round sent later says."""
        self._used.add(node)
        self._applied.setdefault(node, {})[injection_id] = time.monotonic()

    def watch(self, node: str) -> None:
        """Renew the owner's leases on the agent of ``node`` from the next round on, without calling it now.

        A controller that starts learns from the experiments' status where a previous one applied faults; those
        agents must be renewed, and asked what they still hold, before this pool has any other reason to call them.
        """
        if node:
            self._used.add(node)

    def alive_injections(self, node: str) -> set[str] | None:
        """The owner's injections the agent of ``node`` holds, as of the last renewal; None: not known.

        Injections applied after that renewal was sent count as alive: the answer could not name them yet.
        """
        report = self._reports.get(node)
        if report is None or report.alive is None:
            return None
        recent = {key for key, at in self._applied.get(node, {}).items() if at >= report.sent_at}
        return set(report.alive) | recent

    def lease_report(self, node: str) -> LeaseReport | None:
        """The last renewal round's answer from the agent of ``node`` (with the error if it failed)."""
        return self._reports.get(node)

    async def renew_leases(self, owner: str, ttl: float) -> dict[str, LeaseReport]:
        """One round: renew all of ``owner``'s leases on every agent used, concurrently; the answers by node."""
        nodes = sorted(self._used)
        reports = await asyncio.gather(*(self._renew_on(node, owner, ttl) for node in nodes))
        return dict(zip(nodes, reports, strict=True))

    async def _renew_on(self, node: str, owner: str, ttl: float) -> LeaseReport:
        sent_at = time.monotonic()
        try:
            renewal = await self.run(node, lambda client: client.renew_lease(owner, ttl))
        except (AgentUnavailableError, AgentError) as error:
            report = LeaseReport(None, sent_at, str(error))
            log.warning("renewing the leases of %s on node %s: %s", owner, node, error)
        else:
            report = LeaseReport(frozenset(renewal.renewed), sent_at)
            applied = self._applied.get(node)
            if applied:  # covered by this round: the answer now speaks for them
                for key in [key for key, at in applied.items() if at < sent_at]:
                    del applied[key]
        if node in self._used:  # not forgotten meanwhile
            self._reports[node] = report
        return report

    async def keep_leases(self, owner: str, ttl: float, interval: float) -> None:
        """Renew ``owner``'s leases every ``interval`` seconds until cancelled (run it as a task)."""
        if not 0 < interval < ttl:
            raise ValueError(
                f"lease renewal interval {interval:g} s must be more than 0 and shorter than the lease ({ttl:g} s)"
            )
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.renew_leases(owner, ttl)
            except Exception:  # a round never ends the keeper: per-node failures are in the reports already
                log.exception("lease renewal round of %s failed", owner)
            await asyncio.sleep(max(0.0, interval - (loop.time() - started)))
