"""Chaos Mesh's admission webhooks, served over TLS (AdmissionReview v1).

Three kinds of endpoint, at Chaos Mesh's paths so its webhook configurations fit unchanged:

- ``/mutate-chaos-mesh-org-v1alpha1-<kind>``: applies the models' defaults -- exactly what
  ``faultmesh validate`` applies -- and answers with a JSON patch of what changed in ``spec``.
- ``/validate-chaos-mesh-org-v1alpha1-<kind>``: the models' rules, every refusal naming the field
  path; on UPDATE, the spec of an experiment may not change (``api.admission.admit_update``),
  while metadata and status changes (finalizers, the pause annotation, status writes) pass.
- ``/validate-auth``: the requesting user must be allowed to ``create`` the kind in every
  namespace the object's pod selectors reach, asked of the API server with a
  SubjectAccessReview; with the namespace filter on, at least one reached namespace must be
  opted in with ``chaos-mesh.org/inject: enabled``.

The decisions are functions of the review (:func:`mutate`, :func:`validate`, :func:`authorize`);
the FastAPI app (:func:`create_app`) only moves reviews in and out. Run the server with
``python -m faultmesh.controller.webhooks --cert tls.crt --key tls.key``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import ssl
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from faultmesh.api.admission import admit_update
from faultmesh.api.base import API_GROUP, API_VERSION, Resource, context_for, default, format_path
from faultmesh.api.base import Path as FieldPath
from faultmesh.api.common import INJECT_ANNOTATION
from faultmesh.api.loader import DEFAULT_NAMESPACE, ManifestError, parse_object
from faultmesh.api.registry import kinds
from faultmesh.selection import selectors_of

from .certreload import RELOAD_INTERVAL_S, CertificateReloader, watch_certificate
from .kube import Kube, KubeError, UserInfo

# A fixed name: run as ``python -m`` this module is __main__.
log = logging.getLogger("faultmesh.controller.webhooks")

MUTATE_PREFIX = f"/mutate-{API_GROUP.replace('.', '-')}-{API_VERSION}-"
VALIDATE_PREFIX = f"/validate-{API_GROUP.replace('.', '-')}-{API_VERSION}-"
AUTH_PATH = "/validate-auth"
HEALTH_PATH = "/healthz"

#: The kinds Chaos Mesh registers mutating and validating webhooks for (its chart's webhook.CRDS).
WEBHOOK_KINDS = (
    "PodChaos", "IOChaos", "TimeChaos", "NetworkChaos", "KernelChaos", "StressChaos", "AWSChaos", "AzureChaos",
    "GCPChaos", "DNSChaos", "JVMChaos", "Schedule", "Workflow", "HTTPChaos", "BlockChaos", "PhysicalMachineChaos",
    "PhysicalMachine", "StatusCheck", "RemoteCluster",
)
#: Kinds the auth webhook lets through unchecked, as Chaos Mesh does: objects the controller writes
#: itself, and kinds that select no pods.
AUTH_EXEMPT_KINDS = frozenset({
    "AWSChaos", "GCPChaos", "PodNetworkChaos", "PodIOChaos", "PodHttpChaos", "PhysicalMachine", "StatusCheck",
    "RemoteCluster", "WorkflowNode",
})
ENABLED = "enabled"
DEFAULT_PORT = 9443

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]


# ---------------------------------------------------------------------------------------------
# JSON patch (RFC 6902) from one document to another


def json_patch(original: Any, target: Any, path: FieldPath = ()) -> list[dict[str, Any]]:
    """The operations that turn ``original`` into ``target``, touching only what differs.

    Mappings are compared key by key and lists of equal length item by item, so a default
    filled deep inside a list is one ``add``; a list whose length changed is replaced whole.
    """
    if isinstance(original, dict) and isinstance(target, dict):
        ops: list[dict[str, Any]] = []
        for key, value in original.items():
            if key not in target:
                ops.append({"op": "remove", "path": json_pointer((*path, key))})
            else:
                ops.extend(json_patch(value, target[key], (*path, key)))
        ops.extend(
            {"op": "add", "path": json_pointer((*path, key)), "value": value}
            for key, value in target.items()
            if key not in original
        )
        return ops
    if isinstance(original, list) and isinstance(target, list) and len(original) == len(target):
        return [op for index, pair in enumerate(zip(original, target, strict=True))
                for op in json_patch(pair[0], pair[1], (*path, index))]
    if _same_json(original, target):
        return []
    return [{"op": "replace", "path": json_pointer(path), "value": target}]


def json_pointer(path: FieldPath) -> str:
    """``("metadata", "labels", "app.kubernetes.io/name")`` → ``/metadata/labels/app.kubernetes.io~1name``."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _same_json(left: Any, right: Any) -> bool:
    # Python says True == 1 and 1 == 1.0; JSON keeps booleans apart from numbers.
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, dict | list) or isinstance(right, dict | list):
        return type(left) is type(right) and left == right
    return bool(left == right)


# ---------------------------------------------------------------------------------------------
# The AdmissionReview envelope


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class GroupVersionKind(_Wire):
    group: str = ""
    version: str = ""
    kind: str = ""


class GroupVersionResource(_Wire):
    group: str = ""
    version: str = ""
    resource: str = ""


class AdmissionRequest(_Wire):
    """The part of ``AdmissionReview.request`` the webhooks read."""

    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource = GroupVersionResource()
    sub_resource: str | None = None
    name: str | None = None
    namespace: str | None = None
    operation: str
    user_info: dict[str, Any] = {}
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = None
    dry_run: bool | None = None

    @property
    def user(self) -> UserInfo:
        return UserInfo.from_review(self.user_info)

    def where(self) -> str:
        name = self.name or (self.object or {}).get("metadata", {}).get("name") or "?"
        return f"{self.kind.kind} {self.namespace}/{name}" if self.namespace else f"{self.kind.kind} {name}"


class AdmissionReview(_Wire):
    api_version: str
    kind: str
    request: AdmissionRequest


@dataclass(frozen=True)
class Verdict:
    """A webhook's answer: allowed or refused (with an HTTP-like code and a message), a patch, warnings."""

    allowed: bool
    message: str = ""
    code: int = 200
    reason: str = ""
    patch: list[dict[str, Any]] | None = None
    warnings: tuple[str, ...] = ()

    @classmethod
    def allow(cls, message: str = "", warnings: Iterable[str] = ()) -> Verdict:
        return cls(True, message, warnings=tuple(warnings))

    @classmethod
    def deny(cls, message: str, code: int = 403, reason: str = "Forbidden") -> Verdict:
        return cls(False, message, code, reason)

    @classmethod
    def invalid(cls, message: str) -> Verdict:
        return cls(False, message, 422, "Invalid")


def review_response(review: AdmissionReview, verdict: Verdict) -> dict[str, Any]:
    """The AdmissionReview answer, in the API version the request came in."""
    response: dict[str, Any] = {"uid": review.request.uid, "allowed": verdict.allowed}
    if verdict.message or not verdict.allowed:
        status: dict[str, Any] = {"code": verdict.code, "message": verdict.message}
        if verdict.reason:
            status["reason"] = verdict.reason
        response["status"] = status
    if verdict.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(_json_bytes(verdict.patch)).decode()
    if verdict.warnings:
        response["warnings"] = list(verdict.warnings)
    return {"apiVersion": review.api_version, "kind": "AdmissionReview", "response": response}


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------
# Decisions


def _namespace_of(request: AdmissionRequest) -> str:
    return request.namespace or (request.object or {}).get("metadata", {}).get("namespace") or DEFAULT_NAMESPACE


def _defaulted(cls: type[Resource], data: dict[str, Any] | None, namespace: str) -> Resource | None:
    """The object as a model with every default applied, rules not checked; None if it does not parse."""
    if not isinstance(data, dict):
        return None
    try:
        obj = cls.model_validate(data, by_alias=True, by_name=False)
    except ValidationError:
        return None
    if not obj.metadata.namespace and cls.crd.scope == "Namespaced":
        obj.metadata.namespace = namespace
    default(obj, context_for(obj, obj.metadata.namespace))
    return obj


def _spec_of(obj: Resource | None, raw: dict[str, Any] | None) -> Any:
    if obj is not None:
        return obj.to_dict().get("spec")
    return (raw or {}).get("spec")


def _problems(error: ManifestError) -> str:
    return "; ".join(str(problem) for problem in error.problems)


def _wrong_kind(request: AdmissionRequest, cls: type[Resource]) -> Verdict | None:
    sent = (request.object or {}).get("kind") or request.kind.kind
    if sent != cls.kind_name():
        return Verdict.deny(
            f"this webhook serves {cls.kind_name()} objects, not {sent}; check the webhook configuration's rules",
            400, "BadRequest",
        )
    return None


def mutate(request: AdmissionRequest, cls: type[Resource]) -> Verdict:
    """Fill the defaults into the object's spec; the answer's patch holds only what changed.

    An object that does not parse is let through untouched: the validating webhook refuses it
    with the field path, which is the message the user should read.
    """
    if request.operation not in ("CREATE", "UPDATE") or request.object is None:
        return Verdict.allow()
    wrong = _wrong_kind(request, cls)
    if wrong:
        return wrong
    obj = _defaulted(cls, request.object, _namespace_of(request))
    if obj is None:
        return Verdict.allow()
    spec = obj.to_dict().get("spec")
    if "spec" not in request.object or spec is None:
        return Verdict.allow()
    patch = json_patch(request.object["spec"], spec, ("spec",))
    return Verdict(True, patch=patch or None)


def validate(request: AdmissionRequest, cls: type[Resource]) -> Verdict:
    """The models' rules on CREATE; on UPDATE also the spec immutability of experiments.

    An update that leaves the (defaulted) spec as stored is always let through, with any rule
    the stored spec breaks given as a warning: it was admitted once, and refusing now would
    only stick the object -- a finalizer could not be removed, nor the pause annotation set.
    """
    if request.operation not in ("CREATE", "UPDATE") or request.object is None:
        return Verdict.allow()
    wrong = _wrong_kind(request, cls)
    if wrong:
        return wrong
    namespace = _namespace_of(request)
    new: Resource | None
    try:
        new = parse_object(request.object, namespace=namespace)
        problems: ManifestError | None = None
    except ManifestError as error:
        new, problems = None, error

    if request.operation == "UPDATE" and request.old_object is not None:
        old = _defaulted(cls, request.old_object, namespace)
        lenient_new = new or _defaulted(cls, request.object, namespace)
        if _spec_of(old, request.old_object) == _spec_of(lenient_new, request.object):
            warnings = [f"the stored spec breaks a rule: {p}" for p in problems.problems] if problems else []
            return Verdict.allow(warnings=warnings)
        if problems is None and new is not None and old is not None:
            issues = admit_update(old, new, namespace)
            if issues:
                return Verdict.invalid("; ".join(str(issue) for issue in issues))
            return Verdict.allow()
        if problems is None and cls.immutable_spec:
            return Verdict.invalid(
                f"spec: the spec of a {cls.kind_name()} cannot be updated once created;"
                " delete it and create a new one"
            )
    if problems is not None:
        return Verdict.invalid(_problems(problems))
    return Verdict.allow()


@dataclass(frozen=True)
class Reach:
    """The namespaces an object's pod selectors reach, each with the first selector reaching it."""

    namespaces: dict[str, FieldPath] = field(default_factory=dict)
    #: Selectors that name no namespace at all and so reach every namespace.
    cluster_wide: tuple[FieldPath, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.namespaces and not self.cluster_wide


def namespace_reach(obj: Resource) -> Reach:
    """Every namespace a pod selector in ``obj`` names, in ``namespaces`` or as a key of ``pods``.

    Chaos Mesh's auth webhook looks at the same two fields of every pod selector in the object
    (the experiment's own, a NetworkChaos target, a Schedule's or Workflow's embedded ones).
    Call it on the defaulted object: defaulting gives a selector without namespaces the
    object's own, so only a selector left without any reaches the whole cluster.
    """
    reached: dict[str, FieldPath] = {}
    cluster_wide: list[FieldPath] = []
    for path, selector in selectors_of(obj):
        spec = selector.selector
        names = [*(spec.namespaces or ()), *(spec.pods or {})]
        if not names:
            cluster_wide.append((*path, "selector"))
        for name in names:
            reached.setdefault(name, (*path, "selector"))
    return Reach(dict(sorted(reached.items())), tuple(cluster_wide))


@dataclass(frozen=True)
class WebhookSettings:
    """What the webhooks enforce beyond the models' rules."""

    #: The SubjectAccessReview check of ``/validate-auth`` (Chaos Mesh's security mode).
    auth: bool = True
    #: Refuse experiments that reach no namespace annotated ``chaos-mesh.org/inject: enabled``.
    filter_namespaces: bool = False
    kubeconfig: Path | None = None
    context: str | None = None

    @property
    def needs_kube(self) -> bool:
        return self.auth or self.filter_namespaces


async def authorize(request: AdmissionRequest, kube: Kube | None, settings: WebhookSettings) -> Verdict:
    """Chaos Mesh's auth webhook: may this user ``create`` this kind in every namespace it reaches?

    The resource asked about is the kind's plural (``networkchaos``, ``schedules``); Chaos Mesh
    asks for the lower-cased kind, which misses ``schedules`` and ``workflows``. A selector
    reaching the whole cluster needs the right cluster-wide. With the namespace filter on, the
    object must also reach at least one namespace opted in to chaos.
    """
    if request.operation not in ("CREATE", "UPDATE") or request.object is None or not settings.needs_kube:
        return Verdict.allow()
    kind_name = request.kind.kind
    if kind_name in AUTH_EXEMPT_KINDS:
        return Verdict.allow(f"{kind_name} needs no rights check")
    cls = kinds().get(kind_name)
    if cls is None:
        return Verdict.deny(f"{kind_name} is not a {API_GROUP} kind this webhook knows", 400, "BadRequest")
    namespace = _namespace_of(request)
    obj = _defaulted(cls, request.object, namespace)
    if obj is None:
        try:
            parse_object(request.object, namespace=namespace)
        except ManifestError as error:
            return Verdict.invalid(_problems(error))
        return Verdict.invalid(f"the {kind_name} does not parse")
    reach = namespace_reach(obj)
    if reach.empty:
        return Verdict.allow()
    if kube is None:
        return Verdict.deny("the auth webhook has no Kubernetes client", 500, "InternalError")
    try:
        if settings.auth:
            refusal = await _check_rights(kube, request.user, cls, reach)
            if refusal:
                return refusal
        if settings.filter_namespaces and not reach.cluster_wide:
            return await _check_opt_in(kube, reach)
    except KubeError as error:
        return Verdict.deny(f"cannot decide on {request.where()}: {error}", 500, "InternalError")
    return Verdict.allow()


async def _check_rights(kube: Kube, user: UserInfo, cls: type[Resource], reach: Reach) -> Verdict | None:
    resource = cls.crd.plural
    who = f'user "{user.username}"'
    if reach.cluster_wide:
        decision = await kube.can(user, "create", API_GROUP, resource, "")
        if not decision.allowed:
            where = format_path(reach.cluster_wide[0])
            return Verdict.deny(
                f"{who} may not create {resource} in all namespaces, which {where} reaches by naming no namespace"
            )
        return None
    names = list(reach.namespaces)
    decisions = await asyncio.gather(*(kube.can(user, "create", API_GROUP, resource, name) for name in names))
    for name, decision in zip(names, decisions, strict=True):
        if not decision.allowed:
            where = format_path(reach.namespaces[name])
            return Verdict.deny(f'{who} may not create {resource} in namespace "{name}", which {where} selects')
    return None


async def _check_opt_in(kube: Kube, reach: Reach) -> Verdict:
    names = list(reach.namespaces)
    annotations = await asyncio.gather(*(kube.namespace_annotations(name) for name in names))
    closed = [name for name, found in zip(names, annotations, strict=True)
              if (found or {}).get(INJECT_ANNOTATION) != ENABLED]
    if len(closed) == len(names):
        listed = ", ".join(f'"{name}"' for name in names)
        return Verdict.deny(
            f"no namespace this object selects is open to chaos ({listed}): with the namespace filter on,"
            f" only namespaces annotated {INJECT_ANNOTATION}={ENABLED} are injected"
        )
    warnings = [f'namespace "{name}" is not annotated {INJECT_ANNOTATION}={ENABLED}; its pods will be passed over'
                for name in closed]
    return Verdict.allow(warnings=warnings)


# ---------------------------------------------------------------------------------------------
# The ASGI app


def create_app(settings: WebhookSettings | None = None, kube: Kube | None = None) -> FastAPI:
    """The webhook server's app; without ``kube`` it connects on start-up when the settings need one."""
    settings = settings or WebhookSettings()
    by_path = {cls.kind_name().lower(): cls for cls in kinds().values()}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned: Kube | None = None
        app.state.kube = kube
        if kube is None and settings.needs_kube:
            owned = await Kube.connect(settings.kubeconfig, settings.context)
            app.state.kube = owned
        try:
            yield
        finally:
            if owned is not None:
                await owned.close()

    app = FastAPI(title="faultmesh admission webhooks", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.kube = kube

    def kind_for(name: str) -> type[Resource]:
        cls = by_path.get(name)
        if cls is None:
            raise HTTPException(404, f"no {API_GROUP} kind is served at this path: {name!r}")
        return cls

    @app.get(HEALTH_PATH, response_class=PlainTextResponse)
    async def healthz() -> str:
        return "ok"

    @app.post(MUTATE_PREFIX + "{kind}")
    async def mutate_route(kind: str, request: Request) -> JSONResponse:
        cls = kind_for(kind)
        review = await _read_review(request)
        return _answer(review, "mutate", lambda: mutate(review.request, cls))

    @app.post(VALIDATE_PREFIX + "{kind}")
    async def validate_route(kind: str, request: Request) -> JSONResponse:
        cls = kind_for(kind)
        review = await _read_review(request)
        return _answer(review, "validate", lambda: validate(review.request, cls))

    @app.post(AUTH_PATH)
    async def auth_route(request: Request) -> JSONResponse:
        review = await _read_review(request)
        try:
            verdict = await authorize(review.request, request.app.state.kube, settings)
        except Exception as error:  # a bug must come back as a refusal with a message, not a 500 page
            log.exception("auth webhook failed on %s", review.request.where())
            verdict = Verdict.deny(f"internal error in the auth webhook: {error}", 500, "InternalError")
        _log(review, "auth", verdict)
        return JSONResponse(review_response(review, verdict))

    return app


async def _read_review(request: Request) -> AdmissionReview:
    try:
        return AdmissionReview.model_validate_json(await request.body())
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise HTTPException(400, f"not an AdmissionReview: {where}: {first['msg']}") from None


def _answer(review: AdmissionReview, what: str, decide: Any) -> JSONResponse:
    try:
        verdict: Verdict = decide()
    except Exception as error:  # a bug must come back as a refusal with a message, not a 500 page
        log.exception("%s webhook failed on %s", what, review.request.where())
        verdict = Verdict.deny(f"internal error in the {what} webhook: {error}", 500, "InternalError")
    _log(review, what, verdict)
    return JSONResponse(review_response(review, verdict))


def _log(review: AdmissionReview, what: str, verdict: Verdict) -> None:
    request = review.request
    user = request.user.username or "?"
    if request.dry_run:
        user += " (dry run)"
    if verdict.allowed:
        changed = f", {len(verdict.patch)} default(s) filled" if verdict.patch else ""
        log.info("%s: allowed %s of %s by %s%s", what, request.operation, request.where(), user, changed)
    else:
        log.info("%s: refused %s of %s by %s: %s", what, request.operation, request.where(), user, verdict.message)


# ---------------------------------------------------------------------------------------------
# Webhook configurations


@dataclass(frozen=True)
class ServiceRef:
    """The Service the API server calls the webhooks through (inside the cluster)."""

    namespace: str
    name: str
    port: int = 443


def webhook_configurations(
    *,
    name: str = "faultmesh",
    ca_bundle: bytes | None = None,
    url: str | None = None,
    service: ServiceRef | None = None,
    kinds_served: Sequence[str] = WEBHOOK_KINDS,
    namespace_selector: dict[str, Any] | None = None,
    failure_policy: Literal["Fail", "Ignore"] = "Fail",
    timeout_seconds: int = 5,
) -> list[dict[str, Any]]:
    """The Mutating-, Validating- and auth ValidatingWebhookConfiguration objects, as Chaos Mesh's chart makes them.

    Give either ``url`` (the server's base URL, e.g. ``https://127.0.0.1:9443``) or ``service``.
    ``ca_bundle`` may be left out and written later by :func:`.certs.inject_ca_bundle`. The auth
    rule is limited to namespaced objects: the only cluster-scoped kind (RemoteCluster) is exempt.
    """
    if (url is None) == (service is None):
        raise ValueError("give exactly one of url and service")
    table = kinds()
    unknown = [kind for kind in kinds_served if kind not in table]
    if unknown:
        raise ValueError(f"not {API_GROUP} kinds: {', '.join(unknown)}")

    def client_config(path: str) -> dict[str, Any]:
        config: dict[str, Any]
        if url is not None:
            config = {"url": url.rstrip("/") + path}
        else:
            assert service is not None
            config = {"service": {"namespace": service.namespace, "name": service.name, "path": path,
                                  "port": service.port}}
        if ca_bundle:
            config["caBundle"] = base64.b64encode(ca_bundle).decode()
        return config

    def webhook(webhook_name: str, path: str, resources: list[str], scope: str = "*") -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": webhook_name,
            "clientConfig": client_config(path),
            "rules": [{
                "apiGroups": [API_GROUP], "apiVersions": [API_VERSION], "operations": ["CREATE", "UPDATE"],
                "resources": resources, "scope": scope,
            }],
            "failurePolicy": failure_policy,
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": timeout_seconds,
        }
        if namespace_selector is not None:
            entry["namespaceSelector"] = namespace_selector
        return entry

    def per_kind(prefix: str, letter: str) -> list[dict[str, Any]]:
        return [
            webhook(f"{letter}{kind.lower()}.faultmesh.io", prefix + kind.lower(), [table[kind].crd.plural])
            for kind in kinds_served
        ]

    admission_api = "admissionregistration.k8s.io/v1"
    return [
        {"apiVersion": admission_api, "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": f"{name}-mutation"}, "webhooks": per_kind(MUTATE_PREFIX, "m")},
        {"apiVersion": admission_api, "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": f"{name}-validation"}, "webhooks": per_kind(VALIDATE_PREFIX, "v")},
        {"apiVersion": admission_api, "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": f"{name}-validation-auth"},
         "webhooks": [webhook("vauth.faultmesh.io", AUTH_PATH, ["*"], scope="Namespaced")]},
    ]


# ---------------------------------------------------------------------------------------------
# Serving


async def serve(
    settings: WebhookSettings, *, cert: Path, key: Path, host: str = "0.0.0.0", port: int = DEFAULT_PORT,
    reload_interval: float = RELOAD_INTERVAL_S, log_level: str = "info",
) -> bool:
    """Serve the webhooks over TLS until SIGINT/SIGTERM; False when the server could not start.

    A certificate and key replaced on disk are served to new connections within ``reload_interval`` seconds
    (:mod:`.certreload`); a pair that cannot be used is logged and the previous one kept.
    """
    import uvicorn

    # Connect here rather than in the app's lifespan, so a bad kubeconfig is one clear error.
    kube = await Kube.connect(settings.kubeconfig, settings.context) if settings.needs_kube else None
    watcher: asyncio.Task[None] | None = None
    try:
        config = uvicorn.Config(
            create_app(settings, kube), host=host, port=port, ssl_certfile=str(cert), ssl_keyfile=str(key),
            log_level=log_level, access_log=False, lifespan="on",
        )
        config.load()
        assert config.ssl is not None
        # The server keeps this context for good; the reloader loads renewed files into it.
        reloader = CertificateReloader(config.ssl, cert, key)
        reloader.check()
        watcher = asyncio.create_task(reloader.run(reload_interval))
        server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve())
        try:
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            # Stopped from outside (the controller shutting down): let uvicorn close its connections and run
            # the app's shutdown rather than be cut off mid-lifespan, which it reports with a traceback.
            server.should_exit = True
            await serving
            raise
        return server.started
    finally:
        if watcher is not None:
            watcher.cancel()
        if kube is not None:
            await kube.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m faultmesh.controller.webhooks",
        description="Serve faultmesh's admission webhooks (Chaos Mesh's paths) over TLS.",
    )
    parser.add_argument("--cert", type=Path, required=True, help="serving certificate (PEM)")
    parser.add_argument("--key", type=Path, required=True, help="its private key (PEM)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig (default: in-cluster, else $KUBECONFIG)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--no-auth", action="store_true",
                        help="skip the SubjectAccessReview check of /validate-auth (Chaos Mesh's securityMode off)")
    parser.add_argument("--filter-namespaces", action="store_true",
                        help=f"refuse objects reaching no namespace annotated {INJECT_ANNOTATION}={ENABLED}")
    parser.add_argument("--cert-reload-interval", type=float, default=RELOAD_INTERVAL_S,
                        help=f"seconds between checks for a changed certificate (default: {RELOAD_INTERVAL_S:g})")
    parser.add_argument("--log-level", default=os.environ.get("FAULTMESH_LOG_LEVEL", "info"),
                        choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)

    for what, path in (("certificate", args.cert), ("key", args.key), ("kubeconfig", args.kubeconfig)):
        if path is not None and not path.is_file():
            parser.error(f"the {what} {path} does not exist")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = WebhookSettings(
        auth=not args.no_auth, filter_namespaces=args.filter_namespaces, kubeconfig=args.kubeconfig,
        context=args.context,
    )
    try:
        started = asyncio.run(serve(settings, cert=args.cert, key=args.key, host=args.host, port=args.port,
                                    reload_interval=args.cert_reload_interval, log_level=args.log_level))
    except KubeError as error:
        print(f"faultmesh webhooks: {error}", file=sys.stderr)
        return 1
    except ssl.SSLError as error:
        print(f"faultmesh webhooks: cannot load the certificate {args.cert} / key {args.key}: {error}",
              file=sys.stderr)
        return 1
    return 0 if started else 1


__all__ = [
    "AUTH_EXEMPT_KINDS", "AUTH_PATH", "MUTATE_PREFIX", "VALIDATE_PREFIX", "WEBHOOK_KINDS", "AdmissionRequest",
    "AdmissionReview", "Reach", "ServiceRef", "Verdict", "WebhookSettings", "authorize",
    "create_app", "json_patch", "json_pointer", "main", "mutate", "namespace_reach", "review_response", "serve",
    "validate", "watch_certificate", "webhook_configurations",
]


if __name__ == "__main__":
    sys.exit(main())
