"""The test-bed control plane behaves as a real cluster: pinned release, RBAC, admission, CRDs, kwok pods."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import REFERENCE_EXAMPLES, Cluster, pinned_versions, run_cli

# The console script installed beside the interpreter running the tests (the project's venv).
FAULTMESH = Path(sys.executable).with_name("faultmesh")
EXAMPLES = sorted(REFERENCE_EXAMPLES.rglob("*.yaml")) if REFERENCE_EXAMPLES.is_dir() else []
# Chaos Mesh's own CRD requires spec.version too, so the real API rejects these upstream examples alike.
REJECTED_UPSTREAM_TOO = {
    "remote-cluster.yaml": "spec.version: Required value",
    "remote-cluster/remote-cluster.yaml": "spec.version: Required value",
}


def faultmesh_crds() -> list[dict[str, Any]]:
    output = subprocess.run([str(FAULTMESH), "crds"], capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


@pytest.fixture(scope="module")
def installed_crds(cluster: Cluster) -> list[str]:
    """Every CRD `faultmesh crds` prints, applied to the cluster and Established."""
    crds = faultmesh_crds()
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(crds))
    names = [crd["metadata"]["name"] for crd in crds]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names))
    return names


def test_kubectl_and_apiserver_report_the_pinned_release(cluster: Cluster) -> None:
    pinned = pinned_versions()["KUBE_VERSION"]
    versions = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert versions["clientVersion"]["gitVersion"] == pinned
    assert versions["serverVersion"]["gitVersion"] == pinned


def test_anonymous_requests_are_denied_by_rbac(cluster: Cluster) -> None:
    # Verify the server certificate against the test-bed CA, but present no client certificate.
    context = ssl.create_default_context(cafile=str(cluster.state_dir / "pki" / "ca.crt"))
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"{cluster.server}/api/v1/namespaces/default/secrets", context=context, timeout=10)
    assert denied.value.code == 403
    assert "system:anonymous" in denied.value.read().decode()


def test_rbac_answers_for_an_unprivileged_user(cluster: Cluster) -> None:
    assert cluster.kubectl("auth", "can-i", "create", "pods", "--as=alice", check=False).stdout.strip() == "no"
    assert cluster.kubectl("auth", "can-i", "create", "pods").stdout.strip() == "yes"


def test_admission_rejects_objects_in_a_missing_namespace(cluster: Cluster) -> None:
    result = cluster.kubectl("create", "configmap", "orphan", "--namespace=does-not-exist", check=False)
    assert result.returncode != 0
    assert 'namespaces "does-not-exist" not found' in result.stderr


def test_new_namespace_is_active_with_a_default_service_account(cluster: Cluster) -> None:
    name = f"t-fresh-{os.getpid() % 100000}"
    cluster.kubectl("create", "namespace", name)
    try:
        assert cluster.get_json("namespace", name)["status"]["phase"] == "Active"
        # The controller-manager's service-account controller is running, as in a real cluster.
        cluster.wait_for(
            f"serviceaccount default in {name}",
            lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        )
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false")


def test_deleted_namespace_is_emptied_and_removed(cluster: Cluster) -> None:
    name = f"t-doomed-{os.getpid() % 100000}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("create", "configmap", "left-behind", f"--namespace={name}")
    cluster.kubectl("delete", "namespace", name, "--wait=false")
    # The namespace controller deletes its content, then the namespace itself.
    cluster.wait_for(
        f"namespace {name} gone", lambda: cluster.kubectl("get", "namespace", name, check=False).returncode != 0
    )


def test_every_faultmesh_crd_is_established(cluster: Cluster, installed_crds: list[str]) -> None:
    assert "podchaos.chaos-mesh.org" in installed_crds
    served = {item["metadata"]["name"] for item in cluster.get_json("crd")["items"]}
    assert set(installed_crds) <= served


def test_podchaos_round_trips_through_the_api(cluster: Cluster, installed_crds: list[str], namespace: str) -> None:
    manifest = {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "PodChaos",
        "metadata": {"name": "kill-one-web", "namespace": namespace},
        "spec": {
            "action": "pod-kill",
            "mode": "one",
            "selector": {"namespaces": [namespace], "labelSelectors": {"app": "web"}},
            "gracePeriod": 5,
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    stored = cluster.get_json("podchaos", "kill-one-web", "-n", namespace)
    assert stored["kind"] == "PodChaos"
    assert stored["metadata"]["uid"]
    assert stored["spec"] == manifest["spec"]
    listed = cluster.get_json("podchaos", "-n", namespace)["items"]
    assert [item["metadata"]["name"] for item in listed] == ["kill-one-web"]


def test_crd_schema_rejects_an_invalid_action(cluster: Cluster, installed_crds: list[str], namespace: str) -> None:
    manifest = {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "PodChaos",
        "metadata": {"name": "bad-action", "namespace": namespace},
        "spec": {"action": "explode", "mode": "one", "selector": {"namespaces": [namespace]}},
    }
    result = cluster.kubectl("apply", "-f", "-", stdin=json.dumps(manifest), check=False)
    assert result.returncode != 0
    assert "spec.action" in result.stderr
    assert 'Unsupported value: "explode"' in result.stderr
    assert cluster.kubectl("get", "podchaos", "bad-action", "-n", namespace, check=False).returncode != 0


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: str(path.relative_to(REFERENCE_EXAMPLES)))
def test_reference_example_passes_server_side_validation(
    cluster: Cluster, installed_crds: list[str], namespace: str, example: Path
) -> None:
    """Each Chaos Mesh example goes through the served CRD schemas and admission (dry run: nothing stored)."""
    documents = [doc for doc in yaml.safe_load_all(example.read_text()) if doc]
    for doc in documents:
        if ns := doc.get("metadata", {}).get("namespace"):
            cluster.kubectl("create", "namespace", ns, check=False)  # shared by examples; may exist already
    explicit_namespace = any(doc.get("metadata", {}).get("namespace") for doc in documents)
    target = [] if explicit_namespace else [f"--namespace={namespace}"]
    result = cluster.kubectl("apply", "--dry-run=server", *target, "-f", str(example), check=False)
    expected_error = REJECTED_UPSTREAM_TOO.get(str(example.relative_to(REFERENCE_EXAMPLES)))
    if expected_error:
        assert result.returncode != 0
        assert expected_error in result.stderr
    else:
        assert result.returncode == 0, result.stderr


def kwok_node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"},
        },
        # Keep everything but pods meant for simulation off this node.
        "spec": {"taints": [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]},
    }


def test_kwok_node_runs_a_pod_placed_by_the_scheduler(cluster: Cluster, namespace: str) -> None:
    node = f"kwok-node-{os.getpid() % 10000}"
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(kwok_node(node)))
    try:
        cluster.wait_for(f"node {node} Ready", lambda: node_ready(cluster, node))
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": namespace, "labels": {"app": "web"}},
            "spec": {
                "nodeSelector": {"type": "kwok"},
                "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
                "containers": [{"name": "web", "image": "busybox"}],
            },
        }
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
        cluster.wait_for(
            "pod web Running",
            lambda: cluster.get_json("pod", "web", "-n", namespace).get("status", {}).get("phase") == "Running",
        )
        running = cluster.get_json("pod", "web", "-n", namespace)
        assert running["spec"]["nodeName"] == node
        assert running["status"]["podIP"]
        assert running["spec"]["serviceAccountName"] == "default"
    finally:
        cluster.kubectl("delete", "node", node, "--wait=false", check=False)


def node_ready(cluster: Cluster, node: str) -> bool:
    conditions = cluster.get_json("node", node).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def process_running(pid: int) -> bool:
    """True for a live process; an exited one may linger as a zombie until its new parent reaps it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def port_is_open(url: str) -> bool:
    host, port = url.removeprefix("https://").rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def test_cli_up_env_down_leaves_nothing_behind(cluster: Cluster) -> None:
    """A second, minimal cluster beside the session's: `down` stops every process and frees every port."""
    state_dir = Path(tempfile.mkdtemp(prefix="faultmesh-cli-"))
    try:
        up = run_cli("up", f"--state-dir={state_dir}", "--minimal", "--no-kwok", timeout=600)
        assert up.returncode == 0, up.stderr
        state = json.loads((state_dir / "cluster.json").read_text())
        assert up.stdout.strip() == state["kubeconfig"]
        env = run_cli("env", f"--state-dir={state_dir}")
        assert f"export KUBECONFIG={state['kubeconfig']}" in env.stdout.splitlines()
        assert [p["name"] for p in state["processes"]] == ["etcd", "kube-apiserver"]
        assert run_cli("status", f"--state-dir={state_dir}").returncode == 0
        assert port_is_open(state["server"])
        pids = [p["pid"] for p in state["processes"]]

        down = run_cli("down", f"--state-dir={state_dir}")
        assert down.returncode == 0, down.stderr
        assert not state_dir.exists()
        assert not [pid for pid in pids if process_running(pid)]
        assert not port_is_open(state["server"])
        assert not port_is_open(state["etcd"])
        assert run_cli("env", f"--state-dir={state_dir}").returncode != 0
    finally:
        run_cli("down", f"--state-dir={state_dir}")
