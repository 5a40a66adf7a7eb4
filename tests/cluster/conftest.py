"""Cluster tier: one real control plane per test session, built from Go modules by testbed/.

The `cluster` fixture runs `testbed/cluster up` (which builds the binaries first when the cache
lacks them) in a fresh state directory and always runs `testbed/cluster down` afterwards. Should
this process die without its teardown, the watchdog started with `--owner-pid` stops the cluster.
The tier skips only when the machine has no Go toolchain to build Kubernetes with.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_CLI = REPO / "testbed" / "cluster"
VERSIONS_FILE = REPO / "testbed" / "kube" / "versions.env"
REFERENCE_EXAMPLES = REPO.parent / "shared" / "reference" / "chaos-mesh" / "examples"
EXIT_NO_GO = 3  # testbed/cluster's exit status when Go cannot build the binaries
# A cold build of the binaries on 2 shared cores takes minutes; a warm start takes seconds.
UP_TIMEOUT_S = 60 * 60
KUBECTL_TIMEOUT_S = 120


def pinned_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for raw_line in VERSIONS_FILE.read_text().splitlines():
        line = raw_line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key] = value
    return versions


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLUSTER_CLI), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass(frozen=True)
class Cluster:
    """A running test-bed cluster and a kubectl bound to it."""

    kubeconfig: Path
    kubectl_path: Path
    server: str
    state_dir: Path

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = KUBECTL_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        result = subprocess.run(
            [str(self.kubectl_path), *args],
            input=stdin, capture_output=True, text=True, env=env, timeout=timeout, check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}"
            )
        return result

    def get_json(self, *args: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return result

    def wait_for(
        self, what: str, predicate: Callable[[], bool], timeout: float = 60.0, interval: float = 0.5
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    state_dir = Path(tempfile.mkdtemp(prefix="faultmesh-cluster-"))
    try:
        up = run_cli("up", f"--state-dir={state_dir}", f"--owner-pid={os.getpid()}", timeout=UP_TIMEOUT_S)
        if up.returncode == EXIT_NO_GO:  # binaries missing and no Go >= the release's to build them
            pytest.skip(f"cannot build Kubernetes here: {up.stderr.strip()}")
        if up.returncode != 0:
            pytest.fail(f"testbed/cluster up failed ({up.returncode}):\n{up.stderr}", pytrace=False)
        state = json.loads((state_dir / "cluster.json").read_text())
        yield Cluster(
            kubeconfig=Path(state["kubeconfig"]),
            kubectl_path=Path(state["kubectl"]),
            server=state["server"],
            state_dir=state_dir,
        )
    finally:
        down = run_cli("down", f"--state-dir={state_dir}")
        # Whatever `down` says, nothing of this session may stay behind.
        shutil.rmtree(state_dir, ignore_errors=True)
        if down.returncode != 0:
            raise AssertionError(f"testbed/cluster down failed ({down.returncode}):\n{down.stderr}")


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the namespace controller really empties it)."""
    # Readable, and unique per test id: parametrized tests share a prefix, and a deleted namespace
    # lingers while Terminating.
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))[:40].strip("-")
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6]
    name = f"t-{slug}-{digest}"
    cluster.kubectl("create", "namespace", name)
    try:
        # As in any real cluster, pods are admitted only once the controller-manager has made the
        # namespace's default service account.
        cluster.wait_for(
            f"serviceaccount default in {name}",
            lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        )
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
