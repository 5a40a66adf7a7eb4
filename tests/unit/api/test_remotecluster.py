"""RemoteCluster: cluster scope, required version, free-form Helm overrides, immutable spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from faultmesh.api.admission import admit_update
from faultmesh.api.base import ObjectMeta, format_path
from faultmesh.api.crd import crd_for
from faultmesh.api.loader import ManifestError, load_text, validate_object
from faultmesh.api.remotecluster import (
    RemoteCluster,
    RemoteClusterKubeConfig,
    RemoteClusterSecretRef,
    RemoteClusterSpec,
    RemoteClusterStatus,
)

EXAMPLES = Path(__file__).resolve().parents[4] / "shared" / "reference" / "chaos-mesh" / "examples"

SPEC: dict[str, Any] = {
    "namespace": "chaos-mesh",
    "version": "2.7.0",
    "kubeConfig": {"secretRef": {"name": "remote-kubeconfig", "namespace": "default", "key": "kubeconfig"}},
}


def _manifest(spec: dict[str, Any] | None) -> str:
    document: dict[str, Any] = {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "RemoteCluster",
        "metadata": {"name": "cluster-2"},
    }
    if spec is not None:
        document["spec"] = spec
    return yaml.safe_dump(document)


def _problems(spec: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ManifestError) as caught:
        load_text(_manifest(spec))
    return {format_path(problem.path): problem.message for problem in caught.value.problems}


def test_valid_remote_cluster_is_cluster_scoped() -> None:
    cluster = load_text(_manifest(SPEC), namespace="team-a").objects[0]
    assert isinstance(cluster, RemoteCluster)
    # A cluster-scoped object takes no namespace from the context.
    assert cluster.metadata.namespace is None
    assert cluster.spec is not None
    assert cluster.spec.kube_config.secret_ref.key == "kubeconfig"
    assert crd_for(RemoteCluster)["spec"]["scope"] == "Cluster"
    assert crd_for(RemoteCluster)["spec"]["versions"][0]["subresources"] == {"status": {}}


@pytest.mark.parametrize("name", ["remote-cluster.yaml", "remote-cluster/remote-cluster.yaml"])
def test_stale_examples_without_version_are_refused(name: str) -> None:
    with pytest.raises(ManifestError) as caught:
        load_text((EXAMPLES / name).read_text())
    assert [(format_path(problem.path), problem.message) for problem in caught.value.problems] == [
        ("spec.version", "is required")
    ]


def test_empty_strings_are_refused() -> None:
    spec = {**SPEC, "version": "", "namespace": ""}
    spec["kubeConfig"] = {"secretRef": {"name": "", "namespace": "default", "key": ""}}
    assert _problems(spec) == {
        "spec.namespace": "must not be empty",
        "spec.version": 'must not be empty; name the version to install, e.g. "2.7.0"',
        "spec.kubeConfig.secretRef.name": "must not be empty",
        "spec.kubeConfig.secretRef.key": "must not be empty",
    }


def test_missing_kubeconfig_and_secret_fields() -> None:
    spec = {key: value for key, value in SPEC.items() if key != "kubeConfig"}
    assert _problems(spec) == {"spec.kubeConfig": "is required"}
    spec["kubeConfig"] = {"secretRef": {"name": "n"}}
    assert _problems(spec) == {
        "spec.kubeConfig.secretRef.namespace": "is required",
        "spec.kubeConfig.secretRef.key": "is required",
    }


def test_config_override_is_free_form_and_round_trips() -> None:
    override = {"controllerManager": {"replicaCount": 1, "env": [{"name": "X", "value": "1"}]}, "dashboard": None}
    cluster = load_text(_manifest({**SPEC, "configOverride": override})).objects[0]
    assert isinstance(cluster, RemoteCluster)
    assert cluster.spec is not None
    assert cluster.spec.config_override == override
    again = load_text(yaml.safe_dump(cluster.to_dict())).objects[0]
    assert again.to_dict() == cluster.to_dict()
    schema = crd_for(RemoteCluster)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    config_override = schema["properties"]["spec"]["properties"]["configOverride"]
    assert config_override["type"] == "object"
    assert config_override["x-kubernetes-preserve-unknown-fields"] is True


def test_sdk_build_and_status() -> None:
    cluster = RemoteCluster(
        metadata=ObjectMeta(name="cluster-2"),
        spec=RemoteClusterSpec(
            namespace="chaos-mesh",
            version="2.7.0",
            kube_config=RemoteClusterKubeConfig(
                secret_ref=RemoteClusterSecretRef(namespace="default", name="kc", key="config")
            ),
        ),
        status=RemoteClusterStatus(current_version="2.6.0", observed_generation=3),
    )
    assert validate_object(cluster) == []
    dumped = cluster.to_dict()
    assert dumped["spec"]["kubeConfig"] == {"secretRef": {"namespace": "default", "name": "kc", "key": "config"}}
    assert dumped["status"] == {"currentVersion": "2.6.0", "observedGeneration": 3}
    status = RemoteClusterStatus.model_validate(
        {"currentVersion": "2.7.0", "conditions": [{"type": "Installed", "status": "True"}]}
    )
    assert status.conditions is not None
    assert status.conditions[0].reason is None


def test_spec_cannot_be_updated() -> None:
    old = load_text(_manifest(SPEC)).objects[0]
    new = load_text(_manifest({**SPEC, "version": "2.7.1"})).objects[0]
    issues = admit_update(old, new)
    assert [issue.where() for issue in issues] == ["spec"]
    assert "cannot be updated" in issues[0].message
    relabelled = load_text(_manifest(SPEC)).objects[0]
    relabelled.metadata.labels = {"env": "prod"}
    assert admit_update(old, relabelled) == []
