"""The agent's metrics registry: what a scrape shows, and how addresses are read."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import generate_latest

from faultmesh.agent.injections import HaltChanged, LeaseExpired, PhaseChanged
from faultmesh.agent.rpc.metrics import AgentMetrics, JournalSize, MetricsServer, split_address


def scrape(metrics: AgentMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_snapshot_counts_injections_by_kind_and_phase() -> None:
    metrics = AgentMetrics(journal_size=lambda: JournalSize(bytes=2048, records=7))
    metrics.publish([("NetworkChaos", "Injected"), ("NetworkChaos", "Injected"), ("StressChaos", "Failed")],
                    halted=True)
    text = scrape(metrics)
    assert 'faultmesh_agent_injections{kind="NetworkChaos",phase="Injected"} 2.0' in text
    assert 'faultmesh_agent_injections{kind="StressChaos",phase="Failed"} 1.0' in text
    assert "faultmesh_agent_journal_size_bytes 2048.0" in text
    assert "faultmesh_agent_journal_records 7.0" in text
    assert "faultmesh_agent_halted 1.0" in text
    metrics.publish([], halted=False)
    assert "faultmesh_agent_injections{" not in scrape(metrics)


def test_engine_events_move_injections_between_phases_and_are_counted() -> None:
    metrics = AgentMetrics()
    metrics.publish([("PodChaos", "Injected")], halted=False)  # what the engine held when it was first observed
    for event in (PhaseChanged("n", "NetworkChaos", None, "injecting"),
                  PhaseChanged("n", "NetworkChaos", "injecting", "injected"),
                  PhaseChanged("n", "NetworkChaos", "injected", "recovering"), LeaseExpired("n", "NetworkChaos"),
                  PhaseChanged("n", "NetworkChaos", "recovering", "recovered"), HaltChanged("maintenance")):
        metrics.observe(event)
    text = scrape(metrics)
    assert [line for line in text.splitlines() if line.startswith("faultmesh_agent_injections{")] == [
        'faultmesh_agent_injections{kind="NetworkChaos",phase="Recovered"} 1.0',
        'faultmesh_agent_injections{kind="PodChaos",phase="Injected"} 1.0']
    for phase in ("Injecting", "Injected", "Recovering", "Recovered"):
        assert f'faultmesh_agent_injection_transitions_total{{kind="NetworkChaos",phase="{phase}"}} 1.0' in text
    assert 'faultmesh_agent_lease_expiries_total{kind="NetworkChaos"} 1.0' in text
    assert "faultmesh_agent_halted 1.0" in text
    metrics.observe(PhaseChanged("n", "NetworkChaos", "recovered", None))  # the engine forgot it
    metrics.observe(HaltChanged(None))
    text = scrape(metrics)
    assert 'faultmesh_agent_injections{kind="NetworkChaos"' not in text
    assert "faultmesh_agent_halted 0.0" in text


def test_rpc_latency_and_counters() -> None:
    metrics = AgentMetrics()
    metrics.observe_rpc("Apply", "OK", 0.02)
    metrics.observe_rpc("Apply", "INVALID_ARGUMENT", 0.0005)
    metrics.transitions.labels(kind="PodChaos", phase="Injected").inc()
    metrics.lease_expiries.labels(kind="PodChaos").inc()
    text = scrape(metrics)
    assert 'faultmesh_agent_rpc_duration_seconds_count{code="OK",method="Apply"} 1.0' in text
    assert 'faultmesh_agent_rpc_duration_seconds_bucket{code="INVALID_ARGUMENT",le="0.001",method="Apply"} 1.0' in text
    assert 'faultmesh_agent_injection_transitions_total{kind="PodChaos",phase="Injected"} 1.0' in text
    assert 'faultmesh_agent_lease_expiries_total{kind="PodChaos"} 1.0' in text


def test_two_agents_in_one_process_keep_separate_registries() -> None:
    first, second = AgentMetrics(), AgentMetrics()
    first.observe_rpc("Health", "OK", 0.001)
    assert "Health" not in scrape(second)


def test_served_over_http_on_loopback() -> None:
    metrics = AgentMetrics()
    metrics.publish([("PodChaos", "Injected")], halted=False)
    server = MetricsServer.start("127.0.0.1:0", metrics.registry)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as response:
            body = response.read().decode()
    finally:
        server.close()
    assert 'faultmesh_agent_injections{kind="PodChaos",phase="Injected"} 1.0' in body


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:9100", ("127.0.0.1", 9100)), (":9100", ("0.0.0.0", 9100)), ("[::1]:80", ("::1", 80))],
)
def test_addresses(address: str, expected: tuple[str, int]) -> None:
    assert split_address(address) == expected


@pytest.mark.parametrize(
    ("address", "message"),
    [("9100", "expected HOST:PORT"), ("host:http", '"http" is not a port number'), ("h:70000", "out of range")],
)
def test_bad_addresses_say_why(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_address(address)
