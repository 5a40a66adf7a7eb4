"""Prometheus metrics of the agent, served over HTTP on their own port.

Each agent owns a registry (not prometheus_client's global one), so several agents can run in
one process -- as tests and host mode do. The engine's state is counted from its events (an
observer, :meth:`AgentMetrics.observe`): every phase transition and lease expiry is counted as it
happens, not sampled. The gauges keep a snapshot that the event loop updates and the HTTP thread
reads; the HTTP thread never calls into the engine.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from faultmesh.agent.injections import EngineEvent, HaltChanged, InjectionView, LeaseExpired, PhaseChanged

PREFIX = "faultmesh_agent"
#: RPC latency buckets: probes make apply/recover take tens of milliseconds to seconds.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def phase_name(phase: str) -> str:
    """``injected`` → ``Injected``: the spelling of Chaos Mesh's records and of metrics labels."""
    return phase.capitalize()


@dataclass(frozen=True)
class JournalSize:
    bytes: int
    records: int


class _StateCollector(Collector):
    """Gauges computed at scrape time from the latest published snapshot."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        injections = GaugeMetricFamily(
            f"{PREFIX}_injections", "Injections the agent holds, by kind and phase.", labels=["kind", "phase"]
        )
        for (kind, phase), count in sorted(self._metrics.injection_counts().items()):
            injections.add_metric([kind, phase], count)
        yield injections
        journal = self._metrics.journal_size()
        yield GaugeMetricFamily(f"{PREFIX}_journal_size_bytes", "Size of the journal file.", value=journal.bytes)
        yield GaugeMetricFamily(f"{PREFIX}_journal_records", "Records in the journal.", value=journal.records)
        yield GaugeMetricFamily(f"{PREFIX}_halted", "1 while the agent is halted.", value=int(self._metrics.halted))


class AgentMetrics:
    """The agent's metrics and the registry that holds them."""

    def __init__(self, journal_size: Callable[[], JournalSize] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.rpc_duration = Histogram(
            f"{PREFIX}_rpc_duration_seconds",
            "Time to answer an RPC, by method and gRPC status code.",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.transitions = Counter(
            f"{PREFIX}_injection_transitions",
            "Injections that reached a phase, by kind and phase.",
            ["kind", "phase"],
            registry=self.registry,
        )
        self.lease_expiries = Counter(
            f"{PREFIX}_lease_expiries",
            "Injections the agent recovered on its own because their lease expired, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self._journal_size = journal_size or (lambda: JournalSize(0, 0))
        self._counts: dict[tuple[str, str], int] = {}
        self.halted = False
        self._lock = threading.Lock()
        self.registry.register(_StateCollector(self))

    def publish(self, injections: Iterable[tuple[str, str]], halted: bool) -> None:
        """Replace the snapshot: one (kind, phase) pair per injection held."""
        counts = dict(Tally(injections))
        with self._lock:
            self._counts = counts
            self.halted = halted

    def start_from(self, views: Iterable[InjectionView], halted: str | None) -> None:
        """The snapshot of an engine now; :meth:`observe` its events from here on (no await in between)."""
        self.publish(((view.kind, phase_name(view.phase)) for view in views), halted is not None)

    def observe(self, event: EngineEvent) -> None:
        """An engine observer: moves the injection between phases in the snapshot and counts the events."""
        if isinstance(event, PhaseChanged):
            with self._lock:
                if event.previous is not None:
                    key = (event.kind, phase_name(event.previous))
                    self._counts[key] = self._counts.get(key, 0) - 1
                    if self._counts[key] <= 0:
                        del self._counts[key]
                if event.phase is not None:
                    key = (event.kind, phase_name(event.phase))
                    self._counts[key] = self._counts.get(key, 0) + 1
            if event.phase is not None:
                self.transitions.labels(kind=event.kind, phase=phase_name(event.phase)).inc()
        elif isinstance(event, LeaseExpired):
            self.lease_expiries.labels(kind=event.kind).inc()
        elif isinstance(event, HaltChanged):
            with self._lock:
                self.halted = event.reason is not None

    def injection_counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def journal_size(self) -> JournalSize:
        return self._journal_size()

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.rpc_duration.labels(method=method, code=code).observe(seconds)


def split_address(address: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` → (host, port); the message names what is wrong."""
    host, separator, port_text = address.rpartition(":")
    if not separator:
        raise ValueError(f'"{address}" is not an address: expected HOST:PORT')
    host = host.removeprefix("[").removesuffix("]") or default_host
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f'"{address}" is not an address: "{port_text}" is not a port number') from None
    if not 0 <= port <= 65535:
        raise ValueError(f'"{address}" is not an address: port {port} is out of range')
    return host, port


class MetricsServer:
    """The HTTP endpoint (``/metrics``) for one registry, on a daemon thread."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @classmethod
    def start(cls, address: str, registry: CollectorRegistry) -> MetricsServer:
        host, port = split_address(address)
        httpd, thread = start_http_server(port, addr=host, registry=registry)
        return cls(httpd, thread)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
