"""RemoteCluster: another Kubernetes cluster that experiments can target by name.

The controller installs Chaos Mesh (``spec.version``, into ``spec.namespace``) in the remote
cluster using the kubeconfig kept in a Secret; experiments then name it in ``remoteCluster``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from pydantic import Field

from .base import CrdInfo, Issue, Model, Resource, RuleContext
from .registry import register
from .types import Int64


class RemoteClusterSecretRef(Model):
    """A key of a Secret, in any namespace, that holds a kubeconfig."""

    namespace: str
    name: str
    key: str

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        for name in ("namespace", "name", "key"):
            if not getattr(self, name):
                yield Issue((name,), "must not be empty")


class RemoteClusterKubeConfig(Model):
    """Where the kubeconfig for the remote cluster is kept."""

    secret_ref: RemoteClusterSecretRef


class RemoteClusterSpec(Model):
    """Which cluster to reach, and which Chaos Mesh version to install there."""

    namespace: str = Field(description="Namespace in the remote cluster to install into.")
    version: str = Field(description="The Chaos Mesh (Helm chart) version to install.")
    kube_config: RemoteClusterKubeConfig
    config_override: dict[str, Any] | None = Field(
        default=None, description="Helm values merged over the defaults of the installed release."
    )

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if not self.namespace:
            yield Issue(("namespace",), "must not be empty")
        if not self.version:
            yield Issue(("version",), 'must not be empty; name the version to install, e.g. "2.7.0"')


class RemoteClusterCondition(Model):
    """One condition of the remote installation: Installed or Ready."""

    type: str
    status: str
    reason: str | None = None


class RemoteClusterStatus(Model):
    current_version: str
    conditions: list[RemoteClusterCondition] | None = None
    observed_generation: Int64 | None = None


@register
class RemoteCluster(Resource):
    """RemoteCluster makes another cluster reachable to experiments (cluster-scoped).

    Its spec cannot change once created: Chaos Mesh's generated webhook refuses any spec update.
    """

    crd: ClassVar[CrdInfo] = CrdInfo(plural="remoteclusters", scope="Cluster")
    immutable_spec = True

    # Optional in the CRD (Go's omitempty), but every field inside it is required.
    spec: RemoteClusterSpec | None = None
    status: RemoteClusterStatus | None = None
