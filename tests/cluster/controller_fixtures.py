"""The agent DaemonSet on the real node, shared by the cluster tests that need agents (`agents` fixture).

The agent runs as a DaemonSet on the real node (`testbed/cluster up --kubelet`), shaped like deploy/'s: the
same labels, privileged, the host's PID namespace, its own network namespace (reached at its pod IP), a
readiness probe on its gRPC port, and a headless Service whose EndpointSlices list it. The test-bed has no
registry for a faultmesh image, so the pod runs the local busybox image and enters the host's root (a hostPath
volume) with chroot to start this checkout's `faultmesh agent`: the agent process is the pod's own container,
living and dying with the pod, and its certificates are made by `faultmesh agent-certs`.

A module that uses `agents` binds `real` (test_real_node's module-scoped cluster) in its own namespace.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from testbed.node import TAINT_KEY

from faultmesh.agent.rpc.tls import CA_FILE, CLIENT_CERT_FILE, CLIENT_KEY_FILE, TlsFiles
from faultmesh.controller.agents import AgentPool
from faultmesh.controller.kube import Kube

from .conftest import REPO
from .test_real_node import BUSYBOX, RealCluster

FAULTMESH = REPO / ".venv" / "bin" / "faultmesh"
#: deploy/manifests/agent.yaml's pod labels, port and the name its certificate carries.
AGENT_LABELS = {"app.kubernetes.io/name": "faultmesh", "app.kubernetes.io/component": "agent"}
AGENT_SELECTOR = ",".join(f"{key}={value}" for key, value in AGENT_LABELS.items())
AGENT_PORT = 31767
SERVER_NAME = "faultmesh-agent.faultmesh.svc"
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
