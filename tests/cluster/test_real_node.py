"""A real node (kubelet + containerd CRI + bridge CNI) joins a test-bed cluster and really runs pods.

The module's cluster is started with `testbed/cluster up --kubelet` and removed with `down`; the fixture
then checks that nothing of the node is left on the host: processes, mounts, the bridge, CNI network
namespaces, cgroups, files in the few host paths the kubelet and containerd hard-code, firewall rules.
Those checks look only at this node's objects (its bridge, subnet, cgroup parent, state directory), so
another test run on the same machine cannot disturb them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from testbed.node import TAINT_KEY, Node
from testbed.node import host as node_host

from .conftest import EXIT_NO_GO, REPO, UP_TIMEOUT_S, Cluster, run_cli

BUSYBOX = "faultmesh.local/busybox:latest"
POD_TIMEOUT_S = 90.0


def firewall_rules() -> set[str]:
    """iptables rules (not chain headers or counters) that a node stack could add: CNI, KUBE, 198.18."""
    saved = node_host.run(["iptables-save"], check=False).stdout
    return {
        line for line in saved.splitlines()
        if not line.startswith(("#", ":")) and re.search(r"198\.18\.|fmkb|CNI-|KUBE-", line)
    }


def traces_of(node: Node, netns: list[str], rules_before: set[str]) -> dict[str, list[str]]:
    """What the host still holds of `node`, looked up directly rather than through its own bookkeeping."""
    workdir = str(node.workdir)
    found = {
        "bridge": [node.bridge] if node_host.link_exists(node.bridge) else [],
        "netns": [path for path in netns if Path(path).exists()],
        "mounts": node_host.mounts_under(node.cluster_dir),
        "cgroups": [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{node.cgroup_root.strip('/')}")],
        "processes": [f"{pid} {' '.join(argv)[:100]}" for pid, argv in node_host.processes()
                      if any(workdir in arg for arg in argv)],
        "firewall": sorted(firewall_rules() - rules_before),
    }
    return {key: value for key, value in found.items() if value}


@dataclass(frozen=True)
class RealCluster:
    cluster: Cluster
    node_name: str

    def node(self) -> Node:
        """The node's current state (re-read: a test may take the node down and up again)."""
        return Node.attach(self.cluster.state_dir)


def bridge_port_namespaces(bridge: str) -> set[str]:
    """The network namespaces (by name) at the far end of each veth plugged into `bridge`."""
    out = node_host.run(["ip", "-o", "link", "show", "master", bridge]).stdout
    return set(re.findall(r"link-netns (\S+)", out))


def node_cli(state_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "testbed.node", *args, f"--cluster-dir={state_dir}"],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
    )


@pytest.fixture(scope="module")
def real() -> Iterator[RealCluster]:
    if os.geteuid() != 0:
        pytest.skip("a real node needs root: it mounts, makes cgroups, a bridge and network namespaces")
    rules_before = firewall_rules()
    # Short: containerd's socket paths live below it and must stay under 108 bytes.
    state_dir = Path(tempfile.mkdtemp(prefix="fm-rn-"))
    try:
        up = run_cli("up", f"--state-dir={state_dir}", "--no-kwok", "--kubelet", f"--owner-pid={os.getpid()}",
                     timeout=UP_TIMEOUT_S)
        if up.returncode == EXIT_NO_GO:
            pytest.skip(f"cannot build Kubernetes here: {up.stderr.strip()}")
        if up.returncode != 0:
            pytest.fail(f"testbed/cluster up --kubelet failed ({up.returncode}):\n{up.stderr}", pytrace=False)
        state = json.loads((state_dir / "cluster.json").read_text())
        cluster = Cluster(kubeconfig=Path(state["kubeconfig"]), kubectl_path=Path(state["kubectl"]),
                          server=state["server"], state_dir=state_dir)
        yield RealCluster(cluster=cluster, node_name=state["node"])
    finally:
        node = Node.attach(state_dir) if (state_dir / "node" / "node.json").exists() else None
        netns = [s["netns"] for s in node.sandboxes()] if node is not None else []
        down = run_cli("down", f"--state-dir={state_dir}", timeout=300)
        residue = node.residue() if node is not None else []
        traces = traces_of(node, netns, rules_before) if node is not None else {}
        if not node_host.mounts_under(state_dir):  # never delete through a mount
            shutil.rmtree(state_dir, ignore_errors=True)
        assert down.returncode == 0, f"testbed/cluster down failed ({down.returncode}):\n{down.stderr}"
        assert residue == [], f"the node left behind: {residue}"
        assert traces == {}, f"the host still holds: {traces}"


def pod_manifest(name: str, namespace: str, command: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {"faultmesh.io/node": "real"},
            "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "main", "image": BUSYBOX, "imagePullPolicy": "Never", "command": command}
            ],
        },
    }


def start_pods(real: RealCluster, namespace: str, *names: str) -> dict[str, dict[str, Any]]:
    """Create busybox pods that log a line and sleep; wait until all run; return them by name."""
    cluster = real.cluster
    for name in names:
        manifest = pod_manifest(name, namespace, ["sh", "-c", f"echo hello from {name}; exec sleep 3600"])
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    cluster.kubectl("wait", "--for=condition=Ready", *(f"pod/{n}" for n in names), "-n", namespace,
                    f"--timeout={POD_TIMEOUT_S:.0f}s", timeout=POD_TIMEOUT_S + 30)
    return {name: cluster.get_json("pod", name, "-n", namespace) for name in names}


@pytest.fixture
def pod_namespace(real: RealCluster) -> Iterator[str]:
    name = f"rn-{uuid.uuid4().hex[:8]}"
    real.cluster.kubectl("create", "namespace", name)
    kubectl = real.cluster.kubectl
    real.cluster.wait_for(
        f"serviceaccount default in {name}",
        lambda: kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
    )
    try:
        yield name
    finally:
        real.cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_node_registers_ready_with_its_bridge_address(real: RealCluster) -> None:
    node = real.node()
    status = real.cluster.get_json("node", real.node_name)
    conditions = {c["type"]: c["status"] for c in status["status"]["conditions"]}
    assert conditions["Ready"] == "True", conditions
    addresses = {a["type"]: a["address"] for a in status["status"]["addresses"]}
    assert addresses["InternalIP"] == node.node_ip
    assert node.node_ip.startswith("198.18.")
    assert {"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"} in status["spec"]["taints"]
    assert status["metadata"]["labels"]["faultmesh.io/node"] == "real"
    info = status["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.36.3"
    assert info["containerRuntimeVersion"].startswith("containerd://1.6")
    assert node_host.link_exists(node.bridge)


def test_pod_runs_with_a_pod_ip_and_answers_exec_and_logs(real: RealCluster, pod_namespace: str) -> None:
    node = real.node()
    started = time.monotonic()
    pod = start_pods(real, pod_namespace, "solo")["solo"]
    elapsed = time.monotonic() - started
    assert pod["spec"]["nodeName"] == real.node_name
    assert pod["status"]["phase"] == "Running"
    pod_ip = pod["status"]["podIP"]
    assert pod_ip.startswith(node.pod_subnet.rsplit(".", 1)[0] + "."), (pod_ip, node.pod_subnet)
    assert pod["status"]["hostIP"] == node.node_ip
    # exec goes apiserver -> kubelet (on the bridge address) -> containerd's stream server -> runc.
    in_pod = ("exec", "solo", "-n", pod_namespace, "--")
    shown = real.cluster.kubectl(*in_pod, "ip", "-4", "addr", "show", "eth0")
    assert f"inet {pod_ip}/24" in shown.stdout
    hostname = real.cluster.kubectl(*in_pod, "hostname").stdout.strip()
    assert hostname == "solo"
    assert "hello from solo" in real.cluster.kubectl("logs", "solo", "-n", pod_namespace).stdout
    assert elapsed < POD_TIMEOUT_S


def test_two_pods_ping_each_other_by_pod_ip(real: RealCluster, pod_namespace: str) -> None:
    pods = start_pods(real, pod_namespace, "ping-a", "ping-b")
    ip_a, ip_b = pods["ping-a"]["status"]["podIP"], pods["ping-b"]["status"]["podIP"]
    assert ip_a != ip_b
    for source, target in (("ping-a", ip_b), ("ping-b", ip_a)):
        result = real.cluster.kubectl("exec", source, "-n", pod_namespace, "--",
                                      "ping", "-c", "3", "-W", "2", target, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "3 packets received" in result.stdout, result.stdout
    # The bridge plugin runs without masquerade and without being a gateway: no firewall rule of its own.
    node = real.node()
    assert not [rule for rule in firewall_rules() if node.bridge in rule or node.pod_subnet[:-4] in rule]


def test_deleting_a_pod_removes_its_sandbox(real: RealCluster, pod_namespace: str) -> None:
    node = real.node()
    pod = start_pods(real, pod_namespace, "doomed")["doomed"]
    pod_ip = pod["status"]["podIP"]
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    sandboxes = [s for s in node.sandboxes() if (s["namespace"], s["name"]) == (pod_namespace, "doomed")]
    assert len(sandboxes) == 1, node.sandboxes()
    sandbox = sandboxes[0]
    assert Path(sandbox["netns"]).exists()
    assert {container_id, sandbox["id"]} <= set(node.running_tasks())
    assert (node.ipam_dir / node.network_name / pod_ip).exists()
    netns_name = Path(sandbox["netns"]).name
    assert netns_name in bridge_port_namespaces(node.bridge)
    pod_cgroup = f"pod{pod['metadata']['uid']}"
    assert any(p.name == pod_cgroup for p in node_host.cgroup_dirs(node.cgroup_root))

    real.cluster.kubectl("delete", "pod", "doomed", "-n", pod_namespace, "--wait=true", timeout=POD_TIMEOUT_S)

    def sandbox_remains() -> list[str]:
        checks = {
            "tasks": bool({container_id, sandbox["id"]} & set(node.running_tasks())),
            "network namespace": Path(sandbox["netns"]).exists(),
            "IP lease": (node.ipam_dir / node.network_name / pod_ip).exists(),
            "veth on the bridge": netns_name in bridge_port_namespaces(node.bridge),
            "pod cgroup": any(p.name == pod_cgroup for p in node_host.cgroup_dirs(node.cgroup_root)),
            "sandbox bundle": sandbox["id"] in {s["id"] for s in node.sandboxes()},
        }
        return [what for what, present in checks.items() if present]

    deadline = time.monotonic() + 30
    while sandbox_remains() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sandbox_remains() == [], f"pod doomed's sandbox {sandbox['id'][:12]} still has these after 30 s"


def test_node_down_and_up_again_leave_nothing_behind(real: RealCluster, pod_namespace: str) -> None:
    """`python -m testbed.node down` with a pod running removes every trace; `up` brings a Ready node back."""
    rules_before = firewall_rules()
    start_pods(real, pod_namespace, "survivor")
    node = real.node()
    netns = [s["netns"] for s in node.sandboxes()]
    assert netns
    down = node_cli(real.cluster.state_dir, "down")
    assert down.returncode == 0, down.stderr
    assert node.residue() == []
    assert traces_of(node, netns, rules_before) == {}
    assert real.cluster.kubectl("get", "node", real.node_name, check=False).returncode != 0
    assert real.cluster.get_json("pods", "-n", pod_namespace)["items"] == []

    up = node_cli(real.cluster.state_dir, "up", f"--name={real.node_name}")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == real.node_name
    conditions = real.cluster.get_json("node", real.node_name)["status"]["conditions"]
    assert {c["type"]: c["status"] for c in conditions}["Ready"] == "True"
