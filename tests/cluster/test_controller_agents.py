"""The controller finds the agent of a real node through a real API server and calls it over mutual TLS.

The agent runs as a DaemonSet on the real node (`testbed/cluster up --kubelet`), shaped like deploy/'s; how it
is deployed (busybox chrooting into the host to run this checkout's `faultmesh agent`) is in controller_fixtures.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from testbed.node import TAINT_KEY

from faultmesh.agent.rpc.client import TargetRef
from faultmesh.controller.agents import AgentPool, AgentUnavailableError
from faultmesh.controller.kube import Kube

from . import controller_fixtures, test_real_node
from .controller_fixtures import (
    AGENT_PORT,
    READY_TIMEOUT_S,
    Agents,
    agent_daemonset,
    make_certs,
)
from .test_real_node import BUSYBOX, POD_TIMEOUT_S, start_pods

# The real-node cluster (one per module) and a namespace per test, shared with test_real_node.py.
real = test_real_node.real
pod_namespace = test_real_node.pod_namespace
agents = controller_fixtures.agents

T = TypeVar("T")
OWNER = "faultmesh-controller-test"


def with_pool(agents: Agents, body: Callable[[AgentPool], Awaitable[T]], **overrides: Any) -> T:
    async def main() -> T:
        kube = await Kube.connect(agents.real.cluster.kubeconfig)
        async with kube, agents.pool(**overrides)(kube) as pool:
            return await body(pool)

    return asyncio.run(main())


def unavailable(agents: Agents, **overrides: Any) -> str:
    async def body(pool: AgentPool) -> str:
        with pytest.raises(AgentUnavailableError) as caught:
            await pool.client_for(agents.node)
        assert caught.value.node == agents.node
        return str(caught.value)

    return with_pool(agents, body, **overrides)


def test_the_agent_pod_of_the_node_answers_over_mutual_tls(agents: Agents) -> None:
    (pod,) = agents.agent_pods()
    assert pod["spec"]["nodeName"] == agents.node

    async def body(pool: AgentPool) -> None:
        client = await pool.client_for(agents.node)
        health = await client.health()
        assert (health.serving, health.halted) == (True, False)
        endpoint = pool.endpoint_of(agents.node)
        assert endpoint is not None
        assert endpoint.pod == f"{agents.namespace}/{pod['metadata']['name']}"
        assert endpoint.address == f"{pod['status']['podIP']}:{AGENT_PORT}"
        assert await pool.client_for(agents.node) is client

    with_pool(agents, body)


def test_the_agent_is_found_through_the_endpoint_slices_of_its_service(agents: Agents) -> None:
    def listed_ready() -> bool:
        slices = agents.real.cluster.get_json("endpointslices", "-n", agents.namespace,
                                              "-l", "kubernetes.io/service-name=faultmesh-agent")["items"]
        return any(e.get("nodeName") == agents.node and e["conditions"].get("ready")
                   for s in slices for e in s.get("endpoints") or ())

    agents.real.cluster.wait_for("the agent in the service's EndpointSlices", listed_ready)
    (pod,) = agents.agent_pods()

    async def body(pool: AgentPool) -> None:
        assert (await (await pool.client_for(agents.node)).health()).serving
        endpoint = pool.endpoint_of(agents.node)
        assert endpoint is not None
        assert endpoint.address == f"{pod['status']['podIP']}:{AGENT_PORT}"

    with_pool(agents, body, label_selector=None, service="faultmesh-agent")


def test_an_unreachable_agent_is_unavailable_with_the_reason(agents: Agents) -> None:
    node, namespace = agents.node, agents.namespace
    (pod,) = agents.agent_pods()
    where = f"the agent pod {namespace}/{pod['metadata']['name']} at {pod['status']['podIP']}:{AGENT_PORT}"

    assert unavailable(agents, label_selector="app.kubernetes.io/component=no-such-agent") == (
        f"agent of node {node} unavailable: no agent pod on node {node} "
        f"(no pod labelled app.kubernetes.io/component=no-such-agent in namespace {namespace} runs there)"
    )
    # Certificates of another CA: the agent refuses the client, and the client the agent.
    stranger = make_certs(agents.workdir / "stranger")
    assert unavailable(agents, tls=stranger).startswith(
        f"agent of node {node} unavailable: connection to {where} failed: UNAVAILABLE: ")
    assert unavailable(agents, tls=None).startswith(
        f"agent of node {node} unavailable: connection to {where} failed: UNAVAILABLE: ")
    # The right certificates, but checked against the pod IP, which the shared certificate does not carry.
    assert "Hostname Verification Check failed" in unavailable(agents, server_name=None)

    # A pod that runs but never gets Ready (the agent still reconciling, or stuck): not called at all.
    labels = {"app.kubernetes.io/component": "agent-unready"}
    manifest = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "agent-unready", "namespace": namespace, "labels": labels},
        "spec": {
            "nodeSelector": {"faultmesh.io/node": "real"},
            "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "agent", "image": BUSYBOX, "imagePullPolicy": "Never",
                            "args": ["sh", "-c", "exec sleep 3600"],
                            "readinessProbe": {"tcpSocket": {"port": AGENT_PORT}, "periodSeconds": 1}}],
        },
    }
    agents.apply(manifest)
    try:
        agents.real.cluster.kubectl("wait", "--for=jsonpath={.status.phase}=Running", "pod/agent-unready",
                                    "-n", namespace, f"--timeout={POD_TIMEOUT_S:.0f}s", timeout=POD_TIMEOUT_S + 30)
        assert unavailable(agents, label_selector="app.kubernetes.io/component=agent-unready") == (
            f"agent of node {node} unavailable: the agent pod {namespace}/agent-unready is not Ready "
            "(phase Running; container agent not ready)"
        )
    finally:
        agents.real.cluster.kubectl("delete", "pod", "agent-unready", "-n", namespace, "--wait=true")


def test_a_replaced_agent_pod_is_found_at_its_new_address(agents: Agents) -> None:
    (old,) = agents.agent_pods()
    old_key = f"{agents.namespace}/{old['metadata']['name']}"

    async def body(pool: AgentPool) -> list[str]:
        assert (await pool.run(agents.node, lambda c: c.health())).serving
        await asyncio.to_thread(agents.real.cluster.kubectl, "delete", "pod", old["metadata"]["name"],
                                "-n", agents.namespace, "--wait=false")
        reasons: list[str] = []
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert time.monotonic() < deadline, f"the replacement agent never answered: {reasons}"
            try:
                health = await pool.run(agents.node, lambda c: c.health())
            except AgentUnavailableError as error:
                reasons.append(error.reason)
            else:
                endpoint = pool.endpoint_of(agents.node)
                assert endpoint is not None
                if endpoint.pod != old_key:  # until then the old agent still answers while it terminates
                    assert health.serving
                    return reasons
            await asyncio.sleep(0.5)

    reasons = with_pool(agents, body)
    (new,) = agents.agent_pods()
    assert f"{agents.namespace}/{new['metadata']['name']}" != old_key
    # Between the two, each refusal said why: terminating, not Ready yet, gone, or not answering.
    expected = ("is terminating", "is not Ready", "no agent pod on node", "failed: UNAVAILABLE")
    assert all(any(why in reason for why in expected) for reason in reasons), reasons


def test_leases_are_kept_and_an_injection_the_agent_recovered_is_no_longer_alive(
    agents: Agents, pod_namespace: str
) -> None:
    victim = start_pods(agents.real, pod_namespace, "victim")["victim"]
    container_id = victim["status"]["containerStatuses"][0]["containerID"]
    injection_id = f"{pod_namespace}/burn/uid-1/{pod_namespace}/victim"
    spec = {"selector": {"namespaces": [pod_namespace]}, "mode": "all",
            "stressors": {"cpu": {"workers": 1, "load": 5}}}
    ttl = 3.0

    def stress_in_victim() -> bool:
        ps = agents.real.cluster.kubectl("exec", "victim", "-n", pod_namespace, "--", "ps").stdout
        return "stress-ng" in ps

    async def body(pool: AgentPool) -> None:
        target = TargetRef(container_id, f"{pod_namespace}/victim")
        injection = await pool.apply(agents.node, injection_id, OWNER, "StressChaos", spec, target, ttl)
        assert (injection.phase, injection.verified) == ("Injected", True)
        keeper = asyncio.create_task(pool.keep_leases(OWNER, ttl=ttl, interval=1.0))
        try:
            await asyncio.sleep(ttl + 2)  # past the first lease: only the renewals keep it
            assert pool.alive_injections(agents.node) == {injection_id}
            assert await asyncio.to_thread(stress_in_victim)
        finally:
            keeper.cancel()  # the controller goes away
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        client = await pool.client_for(agents.node)
        deadline = time.monotonic() + ttl + 20
        while (listed := {i.injection_id: i for i in await client.list(OWNER)})[injection_id].phase != "Recovered":
            assert time.monotonic() < deadline, f"the agent did not recover the expired lease: {listed}"
            await asyncio.sleep(0.5)
        assert listed[injection_id].reason == "lease expired"
        # Until the next round the pool still believes the last answer; that round learns it is gone.
        assert pool.alive_injections(agents.node) == {injection_id}
        report = (await pool.renew_leases(OWNER, ttl))[agents.node]
        assert report.alive == frozenset()
        assert pool.alive_injections(agents.node) == set()

    with_pool(agents, body)
    assert not stress_in_victim()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def test_a_host_network_agent_is_reached_at_the_node_ip(agents: Agents) -> None:
    labels = {"app.kubernetes.io/name": "faultmesh", "app.kubernetes.io/component": "agent-hostnet"}
    selector = ",".join(f"{key}={value}" for key, value in labels.items())
    port = free_port()
    agents.apply(agent_daemonset("faultmesh-agent-hostnet", agents.namespace, agents.workdir,
                                 agents.real.node().socket, labels, host_network=True, port=port))
    try:
        agents.wait_serving("faultmesh-agent-hostnet")

        async def body(pool: AgentPool) -> None:
            assert (await (await pool.client_for(agents.node)).health()).serving
            endpoint = pool.endpoint_of(agents.node)
            assert endpoint is not None
            assert endpoint.address == f"{agents.real.node().node_ip}:{port}"

        with_pool(agents, body, label_selector=selector, port=port)
    finally:
        agents.real.cluster.kubectl("delete", "daemonset", "faultmesh-agent-hostnet", "-n", agents.namespace)
        agents.wait_no_pods(selector)
