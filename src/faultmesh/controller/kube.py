"""The controller's one door to the Kubernetes API (kubernetes_asyncio).

Everything in the controller that talks to the API server goes through :class:`Kube`, so the
client construction (kubeconfig or in-cluster service account), the error shape
(:class:`KubeError`, one readable line) and the calls the controller makes live in one place.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

#: Set by the kubelet in every pod: the sign that the in-cluster service account is there.
IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"

WebhookKind = Literal["mutating", "validating"]


class KubeError(Exception):
    """A Kubernetes API call failed; the message says which call and why, in one line."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UserInfo:
    """Who sent a request, as the API server tells an admission webhook (``request.userInfo``)."""

    username: str
    uid: str | None = None
    groups: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_review(cls, data: dict[str, Any] | None) -> UserInfo:
        data = data or {}
        extra = {str(key): tuple(str(v) for v in values or ()) for key, values in (data.get("extra") or {}).items()}
        return cls(
            username=str(data.get("username") or ""),
            uid=data.get("uid") or None,
            groups=tuple(str(group) for group in data.get("groups") or ()),
            extra=extra,
        )


@dataclass(frozen=True)
class AccessDecision:
    """A SubjectAccessReview's answer: allowed or not, and the authorizer's reason if it gave one."""

    allowed: bool
    reason: str = ""


def _describe(error: ApiException) -> str:
    """The API server's own message from an error response (a Status object), else its HTTP reason."""
    body = getattr(error, "body", None)
    if body:
        try:
            status = json.loads(body)
        except (TypeError, ValueError):
            status = None
        if isinstance(status, dict) and status.get("message"):
            return str(status["message"])
    return f"HTTP {error.status} {error.reason}"


class Kube:
    """An API client bound to one cluster; use ``async with await Kube.connect(...)`` or close it."""

    def __init__(self, api: client.ApiClient):
        self.api = api

    @classmethod
    async def connect(cls, kubeconfig: Path | None = None, context: str | None = None) -> Kube:
        """A client from ``kubeconfig``; without one, in-cluster inside a pod, else $KUBECONFIG or ~/.kube/config.

        The client's configuration is private to it (never the library's process-wide default), so
        two clients for two clusters can live in one process.
        """
        configuration = client.Configuration()
        try:
            if kubeconfig is None and os.environ.get(IN_CLUSTER_ENV):
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                path = kubeconfig or _default_kubeconfig()
                await config.load_kube_config(
                    config_file=str(path), context=context, client_configuration=configuration, persist_config=False
                )
        except (ConfigException, OSError) as error:
            where = f"kubeconfig {kubeconfig}" if kubeconfig else "the Kubernetes client configuration"
            raise KubeError(f"cannot load {where}: {error}") from None
        return cls(client.ApiClient(configuration=configuration))

    async def close(self) -> None:
        await self.api.close()

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def _call(self, what: str, call: Any) -> Any:
        """Await one API call, turning the library's errors into a :class:`KubeError` naming ``what``."""
        try:
            return await call
        except ApiException as error:
            raise KubeError(f"{what}: {_describe(error)}", status=error.status) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise KubeError(f"{what}: cannot reach the API server: {error or type(error).__name__}") from None

    async def can(
        self, user: UserInfo, verb: str, group: str, resource: str, namespace: str = ""
    ) -> AccessDecision:
        """Ask the API server (SubjectAccessReview) whether ``user`` may ``verb`` the resource.

        ``namespace=""`` asks about the whole cluster (all namespaces), as Kubernetes defines it.
        """
        review = client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user.username,
                uid=user.uid,
                groups=list(user.groups) or None,
                extra={key: list(values) for key, values in user.extra.items()} or None,
                resource_attributes=client.V1ResourceAttributes(
                    namespace=namespace, verb=verb, group=group, resource=resource
                ),
            )
        )
        where = f"namespace {namespace}" if namespace else "the cluster"
        answer = await self._call(
            f"SubjectAccessReview of {user.username} {verb} {resource}.{group} in {where}",
            client.AuthorizationV1Api(self.api).create_subject_access_review(review),
        )
        status = answer.status
        return AccessDecision(allowed=bool(status and status.allowed), reason=(status.reason or "") if status else "")

    async def namespace_annotations(self, name: str) -> dict[str, str] | None:
        """The annotations of namespace ``name``; None when there is no such namespace."""
        try:
            namespace = await self._call(f"get namespace {name}", client.CoreV1Api(self.api).read_namespace(name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise
        return dict(namespace.metadata.annotations or {})

    async def set_webhook_ca_bundle(self, kind: WebhookKind, name: str, ca_bundle_pem: bytes) -> bool:
        """Write ``ca_bundle_pem`` into every webhook of one webhook configuration; False if already there.

        The JSON patch tests each webhook's name and the configuration's resourceVersion first, so
        a configuration changed meanwhile is refused rather than patched at the wrong index.
        """
        api = client.AdmissionregistrationV1Api(self.api)
        what = f"{kind} webhook configuration {name}"
        if kind == "mutating":
            current = await self._call(f"get {what}", api.read_mutating_webhook_configuration(name))
        else:
            current = await self._call(f"get {what}", api.read_validating_webhook_configuration(name))
        encoded = base64.b64encode(ca_bundle_pem).decode()
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": current.metadata.resource_version}
        ]
        for index, webhook in enumerate(current.webhooks or []):
            if webhook.client_config.ca_bundle == encoded:
                continue
            patch.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook.name})
            patch.append({"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded})
        if len(patch) == 1:
            return False
        if kind == "mutating":
            await self._call(f"patch {what}", api.patch_mutating_webhook_configuration(name, patch))
        else:
            await self._call(f"patch {what}", api.patch_validating_webhook_configuration(name, patch))
        return True


def _default_kubeconfig() -> Path:
    # The first file of $KUBECONFIG, as kubectl would read it (merging several is kubectl's business).
    listed = os.environ.get("KUBECONFIG", "")
    first = next((part for part in listed.split(os.pathsep) if part), None)
    return Path(first) if first else Path.home() / ".kube" / "config"
