"""The controller finds the agent of a real node through a real API server and calls it over mutual TLS.

The agent runs as a DaemonSet on the real node (`testbed/cluster up --kubelet`), shaped like deploy/'s: the
same labels, privileged, the host's PID namespace, its own network namespace (reached at its pod IP), a
readiness probe on its gRPC port, and a headless Service whose EndpointSlices list it. The test-bed has no
registry for a faultmesh image, so the pod runs the local busybox image and enters the host's root (a hostPath
volume) with chroot to start this checkout's `faultmesh agent`: the agent process is the pod's own container,
living and dying with the pod, and its certificates are made by `faultmesh agent-certs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from testbed.node import TAINT_KEY

from faultmesh.agent.rpc.client import TargetRef
from faultmesh.agent.rpc.tls import CA_FILE, CLIENT_CERT_FILE, CLIENT_KEY_FILE, TlsFiles
from faultmesh.controller.agents import AgentPool, AgentUnavailableError
from faultmesh.controller.kube import Kube

from . import test_real_node
from .conftest import REPO
from .test_real_node import BUSYBOX, POD_TIMEOUT_S, RealCluster, start_pods

# The real-node cluster (one per module) and a namespace per test, shared with test_real_node.py.
real = test_real_node.real
pod_namespace = test_real_node.pod_namespace

T = TypeVar("T")
FAULTMESH = REPO / ".venv" / "bin" / "faultmesh"
#: deploy/manifests/agent.yaml's pod labels, port and the name its certificate carries.
AGENT_LABELS = {"app.kubernetes.io/name": "faultmesh", "app.kubernetes.io/component": "agent"}
AGENT_SELECTOR = ",".join(f"{key}={value}" for key, value in AGENT_LABELS.items())
AGENT_PORT = 31767
SERVER_NAME = "faultmesh-agent.faultmesh.svc"
OWNER = "faultmesh-controller-test"
READY_TIMEOUT_S = 120


def make_certs(directory: Path) -> TlsFiles:
    """`faultmesh agent-certs` as an operator would run it; the client's side of the bundle."""
    subprocess.run([str(FAULTMESH), "agent-certs", str(directory), "--host", SERVER_NAME],
                   check=True, capture_output=True, text=True, timeout=60)
    return TlsFiles(directory / CA_FILE, directory / CLIENT_CERT_FILE, directory / CLIENT_KEY_FILE)


def agent_daemonset(name: str, namespace: str, workdir: Path, runtime_socket: Path, labels: dict[str, str],
                    *, host_network: bool = False, port: int = AGENT_PORT) -> dict[str, Any]:
    tls = workdir / "tls"
    command = [
        "chroot", "/host", str(FAULTMESH), "agent", f"--listen=0.0.0.0:{port}",
        f"--tls-ca={tls / CA_FILE}", f"--tls-cert={tls / 'server.crt'}", f"--tls-key={tls / 'server.key'}",
        f"--journal={workdir / name}.jsonl", "--metrics-address=", "--grace=1",
        "--runtime=containerd", f"--runtime-socket={runtime_socket}", "--containerd-namespace=k8s.io",
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "hostPID": True,
                    "hostNetwork": host_network,
                    "nodeSelector": {"faultmesh.io/node": "real"},
                    "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "agent",
                        "image": BUSYBOX,
                        "imagePullPolicy": "Never",
                        "command": command,
                        "ports": [{"name": "grpc", "containerPort": port, "protocol": "TCP"}],
                        # The port opens once the journal is reconciled: Ready means serving.
                        "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1},
                        "securityContext": {"privileged": True},
                        "volumeMounts": [{"name": "host", "mountPath": "/host"}],
                    }],
                    "volumes": [{"name": "host", "hostPath": {"path": "/", "type": "Directory"}}],
                },
            },
        },
    }


def headless_service(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": "None", "selector": labels,
                 "ports": [{"name": "grpc", "port": AGENT_PORT, "targetPort": "grpc", "protocol": "TCP"}]},
    }


@dataclass(frozen=True)
class Agents:
    """The agent DaemonSet of the module, and what a controller needs to reach it."""

    real: RealCluster
    namespace: str
    workdir: Path
    tls: TlsFiles

    @property
    def node(self) -> str:
        return self.real.node_name

    def apply(self, manifest: dict[str, Any]) -> None:
        self.real.cluster.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))

    def agent_pods(self, selector: str = AGENT_SELECTOR) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.real.cluster.get_json("pods", "-n", self.namespace, "-l", selector)["items"]
        return items

    def wait_serving(self, daemonset: str) -> None:
        self.real.cluster.kubectl("rollout", "status", f"daemonset/{daemonset}", "-n", self.namespace,
                                  f"--timeout={READY_TIMEOUT_S}s", timeout=READY_TIMEOUT_S + 30)

    def wait_no_pods(self, selector: str) -> None:
        self.real.cluster.wait_for(f"agent pods {selector} gone", lambda: not self.agent_pods(selector),
                                   timeout=READY_TIMEOUT_S)

    def pool(self, **overrides: Any) -> Callable[[Kube], AgentPool]:
        settings: dict[str, Any] = {"namespace": self.namespace, "label_selector": AGENT_SELECTOR,
                                    "port": AGENT_PORT, "tls": self.tls, "server_name": SERVER_NAME,
                                    "timeout": 5.0, **overrides}
        return lambda kube: AgentPool(kube, **settings)


@pytest.fixture(scope="module")
def agents(real: RealCluster) -> Iterator[Agents]:
    workdir = Path(tempfile.mkdtemp(prefix="fm-agents-"))
    namespace = f"fm-agents-{uuid.uuid4().hex[:6]}"
    deployment = Agents(real, namespace, workdir, make_certs(workdir / "tls"))
    real.cluster.kubectl("create", "namespace", namespace)
    try:
        real.cluster.wait_for(f"serviceaccount default in {namespace}", lambda: real.cluster.kubectl(
            "get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0)
        deployment.apply(agent_daemonset("faultmesh-agent", namespace, workdir, real.node().socket, AGENT_LABELS))
        deployment.apply(headless_service("faultmesh-agent", namespace, AGENT_LABELS))
        deployment.wait_serving("faultmesh-agent")
        yield deployment
    finally:
        # The agents stop with their pods; their journals and certificates go with the directory afterwards.
        real.cluster.kubectl("delete", "namespace", namespace, "--wait=true", f"--timeout={READY_TIMEOUT_S}s",
                             check=False, timeout=READY_TIMEOUT_S + 30)
        shutil.rmtree(workdir, ignore_errors=True)


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
