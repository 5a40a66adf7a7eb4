"""Prometheus metrics of the controller, under Chaos Mesh's names where Chaos Mesh has the metric.

- ``chaos_controller_manager_chaos_experiments{namespace,kind,phase}``: experiments by the phase Chaos
  Mesh's dashboard shows (``injecting``, ``running``, ``paused``, ``finished``, ``deleting``), counted at
  scrape time from the controller's caches as Chaos Mesh's collector counts them from its own;
- ``chaos_controller_manager_chaos_schedules{namespace}``, ``..._chaos_workflows{namespace}``: likewise;
- ``chaos_controller_manager_emitted_event_total{type,reason,namespace}``: every event recorded;
- ``faultmesh_controller_inject_seconds{kind}`` / ``faultmesh_controller_recover_seconds{kind}``: how long a
  record took from the decision to apply (recover) it to the agent's verified answer.

The HTTP endpoint runs on the controller's event loop, so a scrape reads the caches between two of the
loop's steps, never while an informer is changing them.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from faultmesh.api.types import duration_seconds
from faultmesh.engine.lifecycle import INJECTED, NOT_INJECTED, RUN, parse_timestamp

SUBSYSTEM: Final = "chaos_controller_manager"

#: The phases of ``chaos_experiments`` (Chaos Mesh's ``pkg/status``).
INJECTING: Final = "injecting"
RUNNING: Final = "running"
PAUSED: Final = "paused"
FINISHED: Final = "finished"
DELETING: Final = "deleting"

#: Apply and recover go through the agent with verification: tens of milliseconds to tens of seconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def chaos_status(obj: Mapping[str, Any], *, one_shot: bool, now: float) -> str:
    """The phase Chaos Mesh reports for an experiment object (its JSON), as ``status.GetChaosStatus`` derives it.

    Deleting while a deletionTimestamp is set; paused while the Paused condition is true; finished when
    a one-shot has every record injected, or when the duration is over and every record recovered;
    running when Selected and AllInjected are true; injecting otherwise.
    """
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return DELETING
    status = obj.get("status") or {}
    true_conditions = {c.get("type") for c in status.get("conditions") or () if c.get("status") == "True"}
    if "Paused" in true_conditions:
        return PAUSED
    if _finished(obj, status, one_shot=one_shot, now=now):
        return FINISHED
    if {"Selected", "AllInjected"} <= true_conditions:
        return RUNNING
    return INJECTING


def _finished(obj: Mapping[str, Any], status: Mapping[str, Any], *, one_shot: bool, now: float) -> bool:
    experiment = status.get("experiment") or {}
    records = experiment.get("containerRecords") or []
    if one_shot:
        return bool(records) and all(record.get("phase") == INJECTED for record in records)
    finished = experiment.get("desiredPhase") != RUN and all(
        record.get("phase") == NOT_INJECTED for record in records
    )
    duration = (obj.get("spec") or {}).get("duration")
    if not duration:
        return False  # runs until deleted: never finished by itself
    try:
        ends = parse_timestamp(str((obj.get("metadata") or {}).get("creationTimestamp"))) + duration_seconds(
            str(duration)
        )
    except ValueError:
        return finished  # Chaos Mesh, too, falls back to the records when the duration cannot be read
    return finished and ends < now


@dataclass(frozen=True)
class Sources:
    """Where the scrape-time gauges come from: the controller's caches, read on the event loop."""

    #: (namespace, kind, phase) per experiment.
    experiments: Callable[[], Iterable[tuple[str, str, str]]] | None = None
    #: The namespace of each Schedule.
    schedules: Callable[[], Iterable[str]] | None = None
    #: The namespace of each Workflow.
    workflows: Callable[[], Iterable[str]] | None = None


class _CacheCollector(Collector):
    def __init__(self, metrics: ControllerMetrics):
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        sources = self._metrics.sources
        experiments = GaugeMetricFamily(
            f"{SUBSYSTEM}_chaos_experiments", "Chaos experiments by namespace, kind and phase.",
            labels=["namespace", "kind", "phase"],
        )
        for (namespace, kind, phase), count in sorted(Tally(sources.experiments() if sources.experiments
                                                            else ()).items()):
            experiments.add_metric([namespace, kind, phase], count)
        yield experiments
        for name, source, what in (("chaos_schedules", sources.schedules, "Schedules"),
                                   ("chaos_workflows", sources.workflows, "Workflows")):
            family = GaugeMetricFamily(f"{SUBSYSTEM}_{name}", f"{what} by namespace.", labels=["namespace"])
            for namespace, count in sorted(Tally(source() if source else ()).items()):
                family.add_metric([namespace], count)
            yield family


class ControllerMetrics:
    """The controller's collectors, in a registry of their own (several controllers may share a process in tests)."""

    def __init__(self, sources: Sources | None = None, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.sources = sources or Sources()
        self.emitted_events = Counter(
            f"{SUBSYSTEM}_emitted_event", "Events recorded by the controller, by type, reason and namespace.",
            ["type", "reason", "namespace"], registry=self.registry,
        )
        self.inject_seconds = Histogram(
            "faultmesh_controller_inject_seconds",
            "Seconds from deciding to inject a record to the agent's verified answer, by kind.",
            ["kind"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.recover_seconds = Histogram(
            "faultmesh_controller_recover_seconds",
            "Seconds from deciding to recover a record to the agent's verified answer, by kind.",
            ["kind"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.registry.register(_CacheCollector(self))

    def count_event(self, type: str, reason: str, namespace: str) -> None:
        """An event observer for :attr:`faultmesh.controller.kube.Kube.event_observer`."""
        self.emitted_events.labels(type=type, reason=reason, namespace=namespace).inc()

    def observe_inject(self, kind: str, seconds: float) -> None:
        self.inject_seconds.labels(kind=kind).observe(seconds)

    def observe_recover(self, kind: str, seconds: float) -> None:
        self.recover_seconds.labels(kind=kind).observe(seconds)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


class MetricsServer:
    """``/metrics`` (and ``/healthz``) over HTTP on the running event loop; :meth:`close` stops it."""

    def __init__(self, runner: web.AppRunner, port: int):
        self._runner = runner
        self.port = port

    async def close(self) -> None:
        await self._runner.cleanup()


async def serve_metrics(metrics: ControllerMetrics, port: int, host: str = "0.0.0.0") -> MetricsServer:
    """Serve ``metrics`` on ``host:port`` (port 0: any free port, see :attr:`MetricsServer.port`)."""

    async def scrape(_: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise OSError(f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from None
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
            break
    return MetricsServer(runner, bound)
