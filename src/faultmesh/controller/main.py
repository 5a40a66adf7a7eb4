"""``faultmesh controller``: the cluster front end as one process.

Every replica serves the admission webhooks (on certificate files given, or on certificates it keeps itself:
:mod:`.certrotation`) and metrics; the one that holds the ``coordination.k8s.io`` Lease also runs the
reconcilers: informers over pods and every experiment kind, a work queue with backoff, the agents' owner
leases kept alive, and :class:`~.reconciler.Reconciler` passes.

Agent leases are owned by the controller *deployment* (``faultmesh-controller/<namespace>``), not a
replica: a new leader renews what the last one applied, so a failover does not recover running faults;
when no replica renews them (the controller is gone), the agents recover them on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import signal
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from faultmesh.agent.rpc.client import AgentError, TargetRef
from faultmesh.agent.rpc.tls import TlsFiles
from faultmesh.api.registry import kinds
from faultmesh.engine.lifecycle import INJECTED
from faultmesh.kinds.experiment import AgentWork, injection_id
from faultmesh.selection import Inventory, Namespace, Pod, Scope, parse_namespace, parse_pod

from . import podactions
from .agents import DEFAULT_AGENT_PORT, AgentPool, AgentUnavailableError
from .certreload import RELOAD_INTERVAL_S
from .certrotation import SelfManagedCerts, WebhookCertOptionError, kept_certificates, webhook_cert_options
from .election import LeaderElector
from .informer import Change, Informer
from .kube import DEFAULT_BURST, DEFAULT_QPS, NAMESPACES, PODS, Kube, KubeError, ResourceType, chaos_resource
from .metrics import ControllerMetrics, Sources, chaos_status, serve_metrics
from .ownwrites import RECHECK_S, OwnWrites
from .reconciler import Outcome, Reconciler
from .recordindex import RecordIndex, record_pod_key
from .workqueue import WorkQueue, run_workers

log = logging.getLogger("faultmesh.controller")

Key = tuple[str, str, str]  # (kind, namespace, name)
#: How often every experiment is looked at again even without a change (level-triggered safety net).
RESYNC_SECONDS = 30.0


@dataclass
class ControllerConfig:
    kubeconfig: Path | None = None
    context: str | None = None
    #: The controller's own namespace (its Lease lives there; agents are looked up there too by default).
    namespace: str = "faultmesh"
    lease_name: str = "faultmesh-controller"
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}")
    agent_namespace: str | None = None
    agent_selector: str = "app.kubernetes.io/component=agent"
    agent_port: int = DEFAULT_AGENT_PORT
    agent_tls: TlsFiles | None = None
    agent_server_name: str | None = None
    agent_timeout: float = 30.0
    lease_ttl: float = 30.0
    workers: int = 4
    #: The API client's rate limit (Chaos Mesh's QPS and BURST settings); qps <= 0 is unlimited.
    kube_qps: float = DEFAULT_QPS
    kube_burst: int = DEFAULT_BURST
    metrics_port: int | None = 10080
    webhook_cert: Path | None = None
    webhook_key: Path | None = None
    #: Instead of the two files: certificates the controller keeps itself (``--webhook-cert-dir``).
    webhook_certs: SelfManagedCerts | None = None
    webhook_cert_reload_interval: float = RELOAD_INTERVAL_S
    webhook_port: int = 9443
    webhook_auth: bool = True
    filter_namespaces: bool = False
    allow_host_network: bool = False
    pause_image: str = podactions.configured_pause_image()
    #: Experiment kinds to watch (all of them by default; only the supported ones get records).
    kinds: Sequence[str] = ()

    @property
    def owner(self) -> str:
        return f"faultmesh-controller/{self.namespace}"


@dataclass(frozen=True)
class WatchedPod:
    """A pod as the pod informer keeps it: parsed for selection, and the part a pod-failure swap is planned from."""

    pod: Pod
    swap_basis: Mapping[str, Any]

    @classmethod
    def of(cls, obj: dict[str, Any]) -> WatchedPod:
        return cls(parse_pod(obj), podactions.swap_basis(obj))


class PodIndex:
    """Pods (and namespaces, for the opt-in filter) from informers, as the selection's :class:`Inventory`.

    The inventory is rebuilt only when a pod or namespace changed since the last one was made.
    """

    def __init__(self, kube: Kube, on_change: Any = None) -> None:
        self.pods_informer: Informer[WatchedPod] = Informer(kube, PODS, transform=WatchedPod.of,
                                                            on_change=on_change, name="pods")
        self.namespaces_informer: Informer[Namespace] = Informer(kube, NAMESPACES, transform=parse_namespace,
                                                                 name="namespaces")
        self._built: tuple[int, int] | None = None
        self._inventory = Inventory(pods=())
        self._by_key: dict[str, Pod] = {}

    def start(self) -> None:
        self.pods_informer.start()
        self.namespaces_informer.start()

    async def stop(self) -> None:
        await self.pods_informer.stop()
        await self.namespaces_informer.stop()

    async def wait_synced(self) -> None:
        await self.pods_informer.wait_synced()
        await self.namespaces_informer.wait_synced()

    def _refresh(self) -> None:
        version = (self.pods_informer.version, self.namespaces_informer.version)
        if version != self._built:
            pods = tuple(watched.pod for watched in self.pods_informer.cache.values())
            self._inventory = Inventory(pods=pods, namespaces=tuple(self.namespaces_informer.cache.values()))
            self._by_key = {pod.key: pod for pod in pods}
            self._built = version

    def inventory(self) -> Inventory:
        self._refresh()
        return self._inventory

    def pods(self) -> Mapping[str, Pod]:
        self._refresh()
        return self._by_key

    def swap_basis(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """What the watch last saw of the pod that a pod-failure swap is planned from; None when not cached."""
        watched = self.pods_informer.get(namespace, name)
        return None if watched is None else watched.swap_basis


class KubeActions:
    """The reconciler's API side: experiment updates, events, and PodChaos's pod-kill and pod-failure."""

    def __init__(self, kube: Kube, resources: Mapping[str, ResourceType], pause_image: str, pods: PodIndex) -> None:
        self.kube = kube
        self.resources = resources
        self.pause_image = pause_image
        self.pods = pods

    async def update_experiment(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.kube.replace(self.resources[kind], obj)

    async def emit(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        await self.kube.record_event(obj, type_, reason, message)

    async def kill_pod(self, namespace: str, name: str, grace_period: int | None) -> None:
        await podactions.kill_pod(self.kube, namespace, name, grace_period)

    async def fail_pod(self, namespace: str, name: str, chaos_name: str, containers: Sequence[str]) -> None:
        await podactions.fail_pod(self.kube, namespace, name, chaos_name=chaos_name, pause_image=self.pause_image,
                                  containers=containers, watched=self.pods.swap_basis(namespace, name))

    async def restore_pod(self, namespace: str, name: str, chaos_name: str) -> None:
        await podactions.restore_pod(self.kube, namespace, name, chaos_name=chaos_name,
                                     watched=self.pods.swap_basis(namespace, name))


class AgentActions:
    """The reconciler's agent side: apply and recover through the pool; answers are verified phases."""

    def __init__(self, pool: AgentPool) -> None:
        self.pool = pool

    async def apply(self, node: str, work: AgentWork, owner: str, lease_ttl: float) -> str | None:
        target = TargetRef(work.target.container_id, work.target.record_id, dict(work.target.facts))
        try:
            injection = await self.pool.apply(node, work.injection_id, owner, work.kind, work.spec, target, lease_ttl,
                                              slot=work.slot or "")
        except (AgentUnavailableError, AgentError) as error:
            return str(error)
        if injection.phase not in ("Injected", "Done"):
            return f"agent on {node}: the injection ended {injection.phase}: {'; '.join(injection.errors)}"
        return None

    async def recover(self, node: str, injection: str, reason: str) -> str | None:
        try:
            answer = await self.pool.recover(node, injection, reason)
        except AgentError as error:
            if error.code.name == "NOT_FOUND":
                return None  # the agent never had it, or finished with it long ago
            return str(error)
        except AgentUnavailableError as error:
            return str(error)
        if answer.phase in ("Recovered", "Failed", "Done"):
            return None
        return f"agent on {node}: still {answer.phase}: {'; '.join(answer.errors)}"

    def alive(self, node: str) -> set[str] | None:
        # Faults the status records as injected there are this deployment's to keep alive, whichever replica
        # applied them: without this, a restarted controller would neither renew nor re-check them.
        self.pool.watch(node)
        return self.pool.alive_injections(node)


def experiment_kinds(wanted: Sequence[str]) -> dict[str, ResourceType]:
    """The experiment kinds to watch, with where they are served."""
    from faultmesh.api.common import ChaosResource

    found: dict[str, ResourceType] = {}
    for kind, cls in kinds().items():
        if not issubclass(cls, ChaosResource) or (wanted and kind not in wanted):
            continue
        crd = getattr(cls, "crd", None)
        plural = getattr(crd, "plural", None) or kind.lower()
        found[kind] = chaos_resource(kind, plural)
    return found


def resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def worth_reconciling(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether an update changed more than the records' event lists (Chaos Mesh's StatusRecordEventsChangePredicate).

    A failed pass writes a Failed record event; reacting to that write would retry at once, in a loop as fast as
    the API server answers, and the queue's backoff would never apply.
    """
    return _without_record_events(old) != _without_record_events(new)


def _without_record_events(obj: Mapping[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(dict(obj))
    metadata = stripped.get("metadata") or {}
    for volatile in ("resourceVersion", "generation", "managedFields"):
        metadata.pop(volatile, None)
    for record in ((stripped.get("status") or {}).get("experiment") or {}).get("containerRecords") or ():
        if isinstance(record, dict):
            record.pop("events", None)
    return stripped


class Controller:
    """The leading replica's work: informers, queue, workers, lease keeping, resync."""

    def __init__(self, kube: Kube, config: ControllerConfig, metrics: ControllerMetrics) -> None:
        self.kube = kube
        self.config = config
        self.metrics = metrics
        self.resources = experiment_kinds(config.kinds)
        self.queue: WorkQueue[Key] = WorkQueue(name="experiments")
        self.records = RecordIndex()
        self.own_writes: OwnWrites[Key] = OwnWrites()
        self.informers: dict[str, Informer[dict[str, Any]]] = {
            kind: Informer(kube, resource, on_change=self._experiment_changed(kind), name=kind)
            for kind, resource in self.resources.items()
        }
        self.pods = PodIndex(kube, on_change=self._pod_changed)
        self.pool = AgentPool(kube, namespace=config.agent_namespace or config.namespace, port=config.agent_port,
                              tls=config.agent_tls, label_selector=config.agent_selector,
                              server_name=config.agent_server_name, timeout=config.agent_timeout)
        self.reconciler = Reconciler(
            KubeActions(kube, self.resources, config.pause_image, self.pods), AgentActions(self.pool), self.pods,
            owner=config.owner, lease_ttl=config.lease_ttl, scope=Scope(filter_namespaces=config.filter_namespaces),
            allow_host_network=config.allow_host_network, observe=self._observe, wrote=self._wrote,
        )
        metrics.sources = Sources(experiments=self._phases)

    def _experiment_changed(self, kind: str) -> Any:
        def changed(change: Change[dict[str, Any]]) -> None:
            namespace, name = change.key
            key = (kind, namespace, name)
            if change.type == "deleted":
                self.records.remove(key)
                self.own_writes.forget(key)
                return
            self.records.update(key, change.obj)
            if change.type == "updated" and change.old is not None and not worth_reconciling(change.old, change.obj):
                return
            self.queue.add(key)
        return changed

    def _pod_changed(self, change: Change[WatchedPod]) -> None:
        """A pod came, went or changed: experiments waiting for targets, or recording it, look again."""
        for key in self.records.experiments("/".join(change.key)):
            self.queue.add(key)

    def _wrote(self, kind: str, obj: Mapping[str, Any], replaced: str) -> None:
        metadata = obj.get("metadata") or {}
        self.own_writes.wrote((kind, str(metadata.get("namespace") or ""), str(metadata.get("name") or "")), replaced)

    def _observe(self, kind: str, what: str, seconds: float) -> None:
        (self.metrics.observe_inject if what == "inject" else self.metrics.observe_recover)(kind, seconds)

    def _phases(self) -> list[tuple[str, str, str]]:
        import time

        rows = []
        for kind, informer in self.informers.items():
            for (namespace, _), obj in informer.cache.items():
                one_shot = kind == "PodChaos" and (obj.get("spec") or {}).get("action") in ("pod-kill",
                                                                                            "container-kill")
                rows.append((namespace, kind, chaos_status(obj, one_shot=one_shot, now=time.time())))
        return rows

    async def handle(self, key: Key) -> float | None:
        kind, namespace, name = key
        cached = self.informers[kind].get(namespace, name)
        if cached is None:
            self.own_writes.forget(key)
            return None
        if self.own_writes.stale(key, resource_version(cached)):
            # The cache has not seen our last write yet; a pass from it would redo what that write recorded.
            self.queue.add_after(key, RECHECK_S)
            return None
        try:
            outcome: Outcome = await self.reconciler.reconcile(kind, copy.deepcopy(cached))
        except KubeError as error:
            if error.status == 409:
                self.queue.add_after(key, RECHECK_S)  # the cache will bring the newer version; look again then
                return None
            if error.status == 404:
                return None
            raise
        if outcome.retry:
            raise RetryError(f"{kind} {namespace}/{name}: a record did not reach its phase; retrying with backoff")
        return outcome.recheck_in

    async def run(self) -> None:
        self.pods.start()
        for informer in self.informers.values():
            informer.start()
        await self.pods.wait_synced()
        for informer in self.informers.values():
            await informer.wait_synced()
        log.info("caches synced: %d pods, %d experiment kinds", len(self.pods.pods()), len(self.informers))
        keeper = asyncio.create_task(self.pool.keep_leases(self.config.owner, self.config.lease_ttl,
                                                           self.config.lease_ttl / 3))
        resync = asyncio.create_task(self._resync())
        lost = asyncio.create_task(self._watch_lost())
        try:
            await run_workers(self.queue, self.config.workers, self.handle)
        finally:
            for task in (keeper, resync, lost):
                task.cancel()
            await asyncio.gather(keeper, resync, lost, return_exceptions=True)
            for informer in self.informers.values():
                await informer.stop()
            await self.pods.stop()
            await self.pool.close()

    async def _watch_lost(self) -> None:
        """After each lease round, look at once at experiments whose agent no longer holds a recorded fault."""
        while True:
            await asyncio.sleep(self.config.lease_ttl / 3)
            for key in self.lost_faults():
                self.queue.add(key)

    def lost_faults(self) -> list[Key]:
        """Experiments recording a fault as Injected that the agent of its pod's node says it does not hold."""
        pods = self.pods.pods()
        found: list[Key] = []
        for kind, informer in self.informers.items():
            if kind == "PodChaos":
                continue  # kills are one-shot and pod-failure lives in the pod spec: no agent holds them
            for (namespace, name), obj in informer.cache.items():
                uid = str((obj.get("metadata") or {}).get("uid") or "")
                records = ((obj.get("status") or {}).get("experiment") or {}).get("containerRecords") or []
                for record in records:
                    if record.get("phase") != INJECTED:
                        continue
                    record_id = str(record.get("id", ""))
                    pod = pods.get(record_pod_key(record_id))
                    alive = self.pool.alive_injections(pod.node_name) if pod is not None and pod.node_name else None
                    if alive is not None and injection_id(uid, str(record.get("selectorKey", ".")),
                                                           record_id) not in alive:
                        found.append((kind, namespace, name))
                        break
        return found

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            for kind, informer in self.informers.items():
                for namespace, name in list(informer.cache):
                    self.queue.add((kind, namespace, name))


class RetryError(Exception):
    """A pass left work undone; the queue retries the key with backoff."""


async def run_controller(config: ControllerConfig) -> None:
    kube = await Kube.connect(config.kubeconfig, config.context, qps=config.kube_qps, burst=config.kube_burst)
    metrics = ControllerMetrics(Sources())
    kube.event_observer = metrics.count_event
    tasks: list[asyncio.Task[Any]] = []
    metrics_server = await serve_metrics(metrics, config.metrics_port) if config.metrics_port else None
    try:
        if config.webhook_cert is not None or config.webhook_certs is not None:
            tasks.append(asyncio.create_task(serve_webhooks(kube, config)))
        elector = LeaderElector(kube, config.namespace, config.lease_name, config.identity)

        async def lead() -> None:
            log.info("%s leads; reconciling", config.identity)
            await Controller(kube, config, metrics).run()

        await elector.run(lead)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if metrics_server is not None:
            await metrics_server.close()
        await kube.close()


async def serve_webhooks(kube: Kube, config: ControllerConfig) -> None:
    """The admission webhooks of this replica, on the files given or on the certificates it keeps itself."""
    from .webhooks import WebhookSettings, serve

    settings = WebhookSettings(auth=config.webhook_auth, filter_namespaces=config.filter_namespaces,
                               kubeconfig=config.kubeconfig, context=config.context)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if config.webhook_certs is not None:
                await stack.enter_async_context(kept_certificates(kube, config.webhook_certs))
                cert, key = config.webhook_certs.cert_file, config.webhook_certs.key_file
            else:
                assert config.webhook_cert is not None and config.webhook_key is not None
                cert, key = config.webhook_cert, config.webhook_key
            await serve(settings, cert=cert, key=key, host="0.0.0.0", port=config.webhook_port,
                        reload_interval=config.webhook_cert_reload_interval)
    except Exception:
        # The task's result is read only at shutdown: say it now, or a replica would just never become ready.
        log.exception("the admission webhooks stopped")
        raise


def controller_command(
    kubeconfig: Annotated[Path | None, typer.Option(help="kubeconfig (default: in-cluster, else $KUBECONFIG).")] = None,
    context: Annotated[str | None, typer.Option(help="kubeconfig context.")] = None,
    namespace: Annotated[str, typer.Option(help="The controller's namespace (its Lease, the agents).")] = "faultmesh",
    agent_namespace: Annotated[str | None, typer.Option(help="The agent pods' namespace (default: --namespace).")] = (
        None),
    agent_selector: Annotated[str, typer.Option(help="Label selector of the agent pods.")] = (
        "app.kubernetes.io/component=agent"),
    agent_port: Annotated[int, typer.Option(help="The agents' gRPC port.")] = DEFAULT_AGENT_PORT,
    agent_ca: Annotated[Path | None, typer.Option(help="CA that signed the agents' certificates.")] = None,
    agent_cert: Annotated[Path | None, typer.Option(help="Client certificate for the agents (mTLS).")] = None,
    agent_key: Annotated[Path | None, typer.Option(help="Its key.")] = None,
    agent_server_name: Annotated[str | None, typer.Option(help="Name the agents' certificates carry.")] = None,
    insecure_agents: Annotated[bool, typer.Option(help="Talk to agents without TLS (test clusters only).")] = False,
    lease_ttl: Annotated[float, typer.Option(help="Seconds a fault outlives a controller that stopped.")] = 30.0,
    workers: Annotated[int, typer.Option(help="Concurrent reconciles.")] = 4,
    kube_qps: Annotated[float, typer.Option(help="API requests per second, sustained (0: unlimited).")] = (
        DEFAULT_QPS),
    kube_burst: Annotated[int, typer.Option(help="API requests at once above that rate.")] = DEFAULT_BURST,
    metrics_port: Annotated[int, typer.Option(help="Port of /metrics (0: off).")] = 10080,
    webhook_cert: Annotated[Path | None, typer.Option(help="Serving certificate of the admission webhooks.")] = None,
    webhook_key: Annotated[Path | None, typer.Option(help="Its key.")] = None,
    webhook_port: Annotated[int, typer.Option(help="Port of the admission webhooks.")] = 9443,
    webhook_cert_reload_interval: Annotated[float, typer.Option(
        help="Seconds between looks for a replaced webhook certificate, which is then served without a restart.")] = (
        RELOAD_INTERVAL_S),
    webhook_cert_dir: Annotated[Path | None, typer.Option(
        help="Instead of --webhook-cert/--webhook-key: keep the webhooks' own CA and certificate in this writable"
             " directory, renewed before expiry, shared by the replicas through --webhook-secret, and write the CA"
             " into the webhook configurations.")] = None,
    webhook_service: Annotated[str | None, typer.Option(
        help="With --webhook-cert-dir: the Service (in --namespace) the API server calls the webhooks through;"
             " the certificate names it. [default: faultmesh-controller]")] = None,
    webhook_host: Annotated[list[str] | None, typer.Option(
        help="With --webhook-cert-dir: another DNS name or IP address the certificate names (repeatable).")] = None,
    webhook_secret: Annotated[str | None, typer.Option(
        help="With --webhook-cert-dir: the Secret in --namespace that holds the certificates for every replica."
             " [default: faultmesh-webhook-certs]")] = None,
    webhook_configuration: Annotated[list[str] | None, typer.Option(
        help="With --webhook-cert-dir: a webhook configuration (mutating or validating) to write the CA into"
             " (repeatable). [default: faultmesh-mutation, faultmesh-validation, faultmesh-validate-auth]")] = None,
    webhook_cert_check_interval: Annotated[float | None, typer.Option(
        help="With --webhook-cert-dir: seconds between checks of the certificates and the caBundle."
             " [default: 3600]")] = None,
    filter_namespaces: Annotated[bool, typer.Option(
        help="Only act in namespaces annotated chaos-mesh.org/inject=enabled.")] = False,
    allow_host_network: Annotated[bool, typer.Option(help="Allow network faults on hostNetwork pods.")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the controller: reconcile chaos-mesh.org experiments, serve admission webhooks and metrics."""
    from rich.console import Console

    err = Console(stderr=True)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if insecure_agents == any(p is not None for p in (agent_ca, agent_cert, agent_key)):
        err.print("[red]✗[/red] give --agent-ca, --agent-cert and --agent-key (mTLS), or --insecure-agents")
        raise typer.Exit(2)
    tls = None
    if not insecure_agents:
        missing = [name for name, path in (("--agent-ca", agent_ca), ("--agent-cert", agent_cert),
                                           ("--agent-key", agent_key)) if path is None or not path.is_file()]
        if missing:
            err.print(f"[red]✗[/red] {', '.join(missing)}: missing or not a file")
            raise typer.Exit(2)
        assert agent_ca is not None and agent_cert is not None and agent_key is not None
        tls = TlsFiles(ca=agent_ca, cert=agent_cert, key=agent_key)
    if webhook_cert_reload_interval <= 0:
        err.print(f"[red]✗[/red] --webhook-cert-reload-interval: {webhook_cert_reload_interval:g} must be more than 0")
        raise typer.Exit(2)
    try:
        webhook_certs = webhook_cert_options(
            cert=webhook_cert, key=webhook_key, cert_dir=webhook_cert_dir, namespace=namespace,
            service=webhook_service, hosts=webhook_host or (), secret=webhook_secret,
            configurations=webhook_configuration or (), check_interval=webhook_cert_check_interval,
        )
    except WebhookCertOptionError as error:
        err.print(f"[red]✗[/red] {error}")
        raise typer.Exit(2) from None
    config = ControllerConfig(
        kubeconfig=kubeconfig, context=context, namespace=namespace, agent_namespace=agent_namespace,
        agent_selector=agent_selector, agent_port=agent_port, agent_tls=tls, agent_server_name=agent_server_name,
        lease_ttl=lease_ttl, workers=workers, kube_qps=kube_qps, kube_burst=kube_burst,
        metrics_port=metrics_port or None, webhook_cert=webhook_cert,
        webhook_key=webhook_key, webhook_certs=webhook_certs, webhook_cert_reload_interval=webhook_cert_reload_interval,
        webhook_port=webhook_port, filter_namespaces=filter_namespaces,
        allow_host_network=allow_host_network,
    )

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: task.cancel() if task else None)
        with contextlib.suppress(asyncio.CancelledError):
            await run_controller(config)

    try:
        asyncio.run(main())
    except KubeError as error:
        err.print(f"[red]✗[/red] {error}")
        raise typer.Exit(1) from None


if os.environ.get("FAULTMESH_CONTROLLER_DEBUG"):
    logging.getLogger("faultmesh").setLevel(logging.DEBUG)
