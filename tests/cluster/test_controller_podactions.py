"""PodChaos through the API on a real node: pod-kill really stops the pod, pod-failure really runs the pause image.

The cluster is `testbed/cluster up --kubelet` (the `real` fixture of test_real_node.py, one per module): pods run
under a real kubelet and containerd, so what is checked is what the kubelet did, not what the API stored.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from testbed.image import PAUSE
from testbed.node import TAINT_KEY

from faultmesh.controller.kube import PODS, Kube, KubeError
from faultmesh.controller.podactions import (
    Outcome,
    fail_pod,
    image_annotation_key,
    kill_pod,
    plan_restore,
    restore_pod,
    swap_basis,
)

from . import test_real_node
from .test_real_node import BUSYBOX, POD_TIMEOUT_S, RealCluster

# The real-node cluster (one per module) and a namespace per test, shared with test_real_node.py.
real = test_real_node.real
pod_namespace = test_real_node.pod_namespace

T = TypeVar("T")
CHAOS = "web-failure"


def api(real: RealCluster, call: Callable[[Kube], Awaitable[T]]) -> T:
    async def main() -> T:
        async with await Kube.connect(real.cluster.kubeconfig) as kube:
            return await call(kube)

    return asyncio.run(main())


def get_pod(real: RealCluster, namespace: str, name: str) -> dict[str, Any] | None:
    async def read(kube: Kube) -> dict[str, Any] | None:
        try:
            return await kube.get(PODS, name, namespace)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    return api(real, read)


def start_pod(real: RealCluster, namespace: str, name: str, spec: dict[str, Any], grace: int = 1) -> dict[str, Any]:
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeSelector": {"faultmesh.io/node": "real"},
            "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            # The kubelet's own kills (an image swapped) wait this long for a container that ignores SIGTERM.
            "terminationGracePeriodSeconds": grace,
            **spec,
        },
    }
    real.cluster.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    real.cluster.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "-n", namespace,
                         f"--timeout={POD_TIMEOUT_S:.0f}s", timeout=POD_TIMEOUT_S + 30)
    pod = get_pod(real, namespace, name)
    assert pod is not None
    return pod


def busybox(name: str, script: str, **extra: Any) -> dict[str, Any]:
    # `args`, not `command`: the image's entrypoint stays, so the pause image (whose entrypoint is its loop)
    # really runs pause when swapped in, as a pause image with the pod's arguments would.
    return {"name": name, "image": BUSYBOX, "imagePullPolicy": "Never", "args": ["sh", "-c", script], **extra}


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A host directory a pod writes into through a hostPath volume (what it saw survives the pod)."""
    path = Path(tempfile.mkdtemp(prefix="fm-podactions-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_pod_kill_sends_sigterm_and_keeps_to_the_grace_period(
    real: RealCluster, pod_namespace: str, host_dir: Path
) -> None:
    # The container notes SIGTERM and carries on, so only the kubelet's SIGKILL at the grace period ends it.
    script = "trap 'echo TERM >> /out/signals' TERM; while true; do sleep 0.2; done"
    pod = start_pod(real, pod_namespace, "stubborn", {
        "containers": [busybox("main", script, volumeMounts=[{"name": "out", "mountPath": "/out"}])],
        "volumes": [{"name": "out", "hostPath": {"path": str(host_dir), "type": "Directory"}}],
    }, grace=30)
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    assert container_id in real.node().running_tasks()

    grace = 4
    started = time.monotonic()
    assert api(real, lambda kube: kill_pod(kube, pod_namespace, "stubborn", grace)) is Outcome.CHANGED
    deleting = get_pod(real, pod_namespace, "stubborn")
    assert deleting is not None
    assert deleting["metadata"]["deletionGracePeriodSeconds"] == grace  # ours, not the pod's own 30 s
    signals = host_dir / "signals"
    wait_until("SIGTERM in the container", lambda: signals.exists() and "TERM" in signals.read_text(), timeout=grace)
    assert get_pod(real, pod_namespace, "stubborn") is not None  # TERM ignored: still there until the grace ends

    wait_until("the pod to be gone", lambda: get_pod(real, pod_namespace, "stubborn") is None, timeout=30)
    assert time.monotonic() - started >= grace - 0.5
    assert container_id not in real.node().running_tasks()
    # Again: the pod is gone already, which is fine.
    assert api(real, lambda kube: kill_pod(kube, pod_namespace, "stubborn", grace)) is Outcome.GONE


def test_pod_kill_with_grace_zero_and_the_uid_guard(real: RealCluster, pod_namespace: str) -> None:
    pod = start_pod(real, pod_namespace, "quick", {"containers": [busybox("main", "exec sleep 3600")]})
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")

    # A uid that is not this pod's (the one selected was replaced by a namesake): nothing is deleted.
    assert api(real, lambda kube: kill_pod(kube, pod_namespace, "quick", 0, uid="not-this-pod")) is Outcome.GONE
    assert get_pod(real, pod_namespace, "quick") is not None

    uid = pod["metadata"]["uid"]
    assert api(real, lambda kube: kill_pod(kube, pod_namespace, "quick", 0, uid=uid)) is Outcome.CHANGED
    assert get_pod(real, pod_namespace, "quick") is None  # grace 0: the object goes at once
    wait_until("the kubelet to stop the container", lambda: container_id not in real.node().running_tasks())
    # A pod that is gone is recovered, whatever its pod-failure state was.
    assert api(real, lambda kube: restore_pod(kube, pod_namespace, "quick", chaos_name=CHAOS)) is Outcome.GONE
    assert api(real, lambda kube: fail_pod(kube, pod_namespace, "quick", chaos_name=CHAOS,
                                           pause_image=PAUSE.name)) is Outcome.GONE


def container_status(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in pod["status"]["containerStatuses"] if s["name"] == name)


def processes(real: RealCluster, namespace: str, name: str) -> str:
    return real.cluster.kubectl("exec", name, "-n", namespace, "-c", "main", "--", "ps").stdout


def test_pod_failure_runs_the_pause_image_then_restores_the_originals(real: RealCluster, pod_namespace: str) -> None:
    node_images = real.node().ctr("images", "ls", "-q").stdout.split()
    assert PAUSE.name in node_images, f"the real node lacks the pause image {PAUSE.name}: {node_images}"
    pod = start_pod(real, pod_namespace, "web", {
        "initContainers": [busybox("setup", "echo ready")],
        "containers": [busybox("main", "echo serving; exec sleep 3600")],
    })
    first_container = container_status(pod, "main")["containerID"]
    assert "sleep 3600" in processes(real, pod_namespace, "web")

    def fail(watched: dict[str, Any] | None = None) -> Outcome:
        return api(real, lambda kube: fail_pod(kube, pod_namespace, "web", chaos_name=CHAOS, pause_image=PAUSE.name,
                                               watched=watched))

    # As the controller does: planned from a watched copy (here the pod as read once Ready).
    assert fail(swap_basis(pod)) is Outcome.CHANGED
    # That copy is stale now: its patch is refused, and the pod, read again, needs nothing more.
    assert fail(swap_basis(pod)) is Outcome.UNCHANGED
    assert fail() is Outcome.UNCHANGED
    failed = get_pod(real, pod_namespace, "web")
    assert failed is not None
    assert [c["image"] for c in failed["spec"]["initContainers"] + failed["spec"]["containers"]] == [PAUSE.name] * 2
    saved = {key: value for key, value in failed["metadata"]["annotations"].items() if key.startswith("chaos-mesh-")}
    assert saved == {image_annotation_key(CHAOS, "setup", init=True): BUSYBOX,
                     image_annotation_key(CHAOS, "main", init=False): BUSYBOX}
    assert saved.keys() == {f"chaos-mesh-{CHAOS}-pod-failure-setup-init-image",
                            f"chaos-mesh-{CHAOS}-pod-failure-main-normal-image"}

    def kubelet_runs(image: str, restarts: int) -> Callable[[], bool]:
        def check() -> bool:
            current = get_pod(real, pod_namespace, "web")
            status = container_status(current, "main") if current else {}
            return (status.get("image") == image and status.get("restartCount", 0) >= restarts
                    and "running" in status.get("state", {}) and status.get("ready") is True)
        return check

    # The kubelet sees the new image, kills the container and starts the pause image in its place.
    wait_until("the kubelet to run the pause image", kubelet_runs(PAUSE.name, 1))
    paused = get_pod(real, pod_namespace, "web")
    assert paused is not None
    assert container_status(paused, "main")["containerID"] != first_container
    running = processes(real, pod_namespace, "web")
    assert "trap 'exit 0' TERM INT" in running and "sleep 3600" in running  # pause's loop, not our command
    assert "exec sleep 3600" in running  # our args reach the pause loop only as its unused arguments

    def restore(watched: dict[str, Any] | None = None) -> Outcome:
        return api(real, lambda kube: restore_pod(kube, pod_namespace, "web", chaos_name=CHAOS, watched=watched))

    # The kubelet has changed the pod's status since `failed` was read: a patch planned from that copy is refused
    # whole by the server (the guard a watched copy relies on), and restore_pod then reads and plans again.
    stale = swap_basis(failed)
    stale_patch = plan_restore(stale, CHAOS).operations(stale["metadata"]["resourceVersion"], has_annotations=True)
    with pytest.raises(KubeError) as refused:
        api(real, lambda kube: kube.json_patch(PODS, "web", stale_patch, pod_namespace))
    assert refused.value.status == 409
    assert restore(stale) is Outcome.CHANGED
    assert restore() is Outcome.UNCHANGED
    restored = get_pod(real, pod_namespace, "web")
    assert restored is not None
    assert [c["image"] for c in restored["spec"]["initContainers"] + restored["spec"]["containers"]] == [BUSYBOX] * 2
    assert not any(key.startswith("chaos-mesh-") for key in restored["metadata"].get("annotations") or {})

    wait_until("the kubelet to run the original image again", kubelet_runs(BUSYBOX, 2))
    running = processes(real, pod_namespace, "web")
    assert "trap" not in running and "sleep 3600" in running
    logs = real.cluster.kubectl("logs", "web", "-n", pod_namespace, "-c", "main").stdout
    assert "serving" in logs  # the original command ran again
