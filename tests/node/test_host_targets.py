"""Host mode's local targets on a real machine: testbed containerd containers, a process, a netns holder."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from testbed.containerd import Container, Containerd, NetworkLab

from faultmesh.api.loader import load_text
from faultmesh.host import build_inventory
from faultmesh.selection import plan_experiment

MakeContainer = Callable[..., Container]  # the make_container fixture of conftest.py

POD_KILL = """
apiVersion: chaos-mesh.org/v1alpha1
kind: PodChaos
metadata: {name: kill-one, namespace: NAMESPACE}
spec:
  action: pod-kill
  mode: all
  selector:
    labelSelectors: {app: web, run: RUN}
"""


@pytest.fixture
def sleeper() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A `sleep` with a unique argument, so a pgrep pattern finds exactly it; killed afterwards."""
    seconds = f"3600.{secrets.randbelow(10**6):06d}"
    process = subprocess.Popen(["sleep", seconds])
    try:
        yield process, seconds
    finally:
        process.kill()
        process.wait()


def test_containerd_containers_and_inventory_processes_are_targets(
    containerd: Containerd, make_container: MakeContainer, lab: NetworkLab,
    sleeper: tuple[subprocess.Popen[bytes], str], tmp_path: Path,
) -> None:
    run = secrets.token_hex(3)
    web = make_container(labels={"app": "web", "run": run}, name="web")
    db = make_container(labels={"app": "db", "run": run}, name="db")
    process, seconds = sleeper
    netns = lab.namespace("h")
    holder = subprocess.Popen(["ip", "netns", "exec", netns.name, "sleep", "3600"])
    try:
        inventory_file = tmp_path / "inventory.yaml"
        inventory_file.write_text(
            "targets:\n"
            f"  - {{namespace: procs, name: sleeper, labels: {{app: sleeper}}, command: 'sleep {seconds}'}}\n"
            f"  - {{namespace: procs, name: netns-h, netns: {netns.name}}}\n"
        )
        # The holder is forked by `ip netns exec`; wait until it has entered the namespace.
        for _ in range(100):
            found = build_inventory(inventory_file, containerd.socket, containerd.namespace)
            by_key = {pod.key: pod for pod in found.pods}
            if by_key["procs/netns-h"].phase == "Running":
                break
            subprocess.run(["sleep", "0.05"], check=True)

        ns = containerd.namespace
        for container in (web, db):
            pod = by_key[f"{ns}/{container.id}"]
            assert {key: pod.labels.get(key) for key in ("app", "run")} == container.labels
            assert pod.phase == "Running"
            assert pod.container_id(pod.containers[0].name) == f"containerd://{container.id}"
        assert by_key["procs/sleeper"].container_id("sleeper") == f"process://{process.pid}"
        assert by_key["procs/netns-h"].container_id("netns-h") == f"process://{holder.pid}"

        (experiment,) = load_text(POD_KILL.replace("NAMESPACE", ns).replace("RUN", run)).objects
        (plan,) = plan_experiment(experiment, found, seed=1)
        assert [pod.name for pod in plan.selection.pods] == [web.id]
    finally:
        holder.kill()
        holder.wait()
