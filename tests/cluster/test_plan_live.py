"""`faultmesh plan --kubeconfig`: which pods an experiment would hit, read from a live API server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import REPO, Cluster


def plan(cluster: Cluster, manifest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faultmesh.cli", "plan", str(manifest), "--kubeconfig", str(cluster.kubeconfig),
         *extra], capture_output=True, text=True, check=False, cwd=REPO, timeout=120,
    )


def test_plan_reads_the_clusters_pods_and_touches_nothing(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    for name, app in (("web-1", "web"), ("web-2", "web"), ("db-1", "db")):
        cluster.kubectl("run", name, "-n", namespace, "--image=busybox", f"--labels=app={app}", "--restart=Never")
    manifest = tmp_path / "chaos.yaml"
    manifest.write_text(f"""\
apiVersion: chaos-mesh.org/v1alpha1
kind: NetworkChaos
metadata: {{name: cut, namespace: {namespace}}}
spec:
  action: partition
  mode: all
  selector: {{labelSelectors: {{app: web}}}}
  target: {{mode: all, selector: {{labelSelectors: {{app: db}}}}}}
""")
    result = plan(cluster, manifest, "-o", "json")
    assert result.returncode == 0, result.stderr
    [document] = json.loads(result.stdout)
    chosen = {selector["path"]: sorted(selector["pods"]) for selector in document["selectors"]}
    assert chosen == {"spec": [f"{namespace}/web-1", f"{namespace}/web-2"], "spec.target": [f"{namespace}/db-1"]}
    assert "NetworkChaos" not in cluster.kubectl("get", "events", "-n", namespace).stdout  # it only read


def test_plan_needs_exactly_one_source_of_pods(cluster: Cluster, tmp_path: Path) -> None:
    manifest = REPO / "examples" / "host" / "03-stress.yaml"
    both = plan(cluster, manifest, "--pods", str(manifest))
    assert both.returncode == 2 and "--pods FILE" in both.stderr and "Traceback" not in both.stderr
    broken = tmp_path / "kubeconfig"
    broken.write_text("not: a kubeconfig\n")
    result = subprocess.run([sys.executable, "-m", "faultmesh.cli", "plan", str(manifest), "--kubeconfig", str(broken)],
                            capture_output=True, text=True, check=False, cwd=REPO, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr and result.stderr.strip()
