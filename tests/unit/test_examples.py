"""Chaos Mesh's own example manifests: each loads, validates and survives load → dump → load.

The two RemoteCluster examples omit ``spec.version``, which the CRD requires; they must be
refused with that field named (see shared/reference/chaos-mesh/README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from faultmesh.api.loader import ManifestError, load_text

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "chaos-mesh" / "examples"
STALE = {"remote-cluster.yaml", "remote-cluster/remote-cluster.yaml"}
ALL = sorted(EXAMPLES.rglob("*.yaml"))


def _rel(path: Path) -> str:
    return str(path.relative_to(EXAMPLES))


@pytest.mark.parametrize("path", [p for p in ALL if _rel(p) not in STALE], ids=_rel)
def test_example_validates_and_round_trips(path: Path) -> None:
    result = load_text(path.read_text(), source=_rel(path))
    for obj in result.objects:
        dumped = obj.to_dict()
        again = load_text(yaml.safe_dump(dumped), source="dumped").objects[0]
        assert again.to_dict() == dumped
        assert type(again) is type(obj)


def test_every_chaos_mesh_object_in_examples_is_loaded() -> None:
    count = 0
    for path in ALL:
        if _rel(path) in STALE:
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and str(document.get("apiVersion", "")).startswith("chaos-mesh.org/"):
                count += 1
        result = load_text(path.read_text())
        assert all(obj.api_version.startswith("chaos-mesh.org/") for obj in result.objects)
    assert count >= 38


@pytest.mark.parametrize("name", sorted(STALE))
def test_stale_remote_cluster_examples_are_refused_naming_version(name: str) -> None:
    with pytest.raises(ManifestError) as caught:
        load_text((EXAMPLES / name).read_text())
    assert any(problem.path == ("spec", "version") for problem in caught.value.problems)
