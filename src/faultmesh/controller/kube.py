"""The controller's one door to the Kubernetes API (kubernetes_asyncio).

Everything in the controller that talks to the API server goes through :class:`Kube`, so the
client construction (kubeconfig or in-cluster service account), the error shape
(:class:`KubeError`, one readable line) and the calls the controller makes live in one place.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

#: Set by the kubelet in every pod: the sign that the in-cluster service account is there.
IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"

WebhookKind = Literal["mutating", "validating"]

_log = logging.getLogger(__name__)


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


# ---- generic resources ---------------------------------------------------------------------------------

#: client-go's defaults (5 qps, burst 10) stall a controller acting on thousands of pods; these do not.
DEFAULT_QPS = 50.0
DEFAULT_BURST = 100
#: A plain call that has not answered in this long has lost its connection (watches set their own read timeout).
DEFAULT_REQUEST_TIMEOUT_S = 30.0
#: Page size of lists: big enough to be few requests, small enough that one page never strains the server.
DEFAULT_PAGE_SIZE = 500
#: ``source.component`` of the Events the controller writes.
EVENT_COMPONENT = "faultmesh-controller"
CHAOS_GROUP = "chaos-mesh.org"
CHAOS_VERSION = "v1alpha1"

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class ResourceType:
    """Where a kind is served: API group (``""`` for core), version, plural, kind, and whether it is namespaced."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL path of the collection (``name`` None) or of one object; all namespaces when ``namespace`` None."""
        parts = [f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        return "/".join(parts)

    def describe(self, namespace: str | None = None, name: str | None = None) -> str:
        """``pods ns/name``, ``podchaos.chaos-mesh.org in all namespaces``: how messages name an object."""
        plural = f"{self.plural}.{self.group}" if self.group else self.plural
        if name is not None:
            return f"{plural} {namespace}/{name}" if self.namespaced and namespace else f"{plural} {name}"
        if not self.namespaced:
            return plural
        return f"{plural} in namespace {namespace}" if namespace else f"{plural} in all namespaces"


PODS = ResourceType("", "v1", "pods", "Pod")
NODES = ResourceType("", "v1", "nodes", "Node", namespaced=False)
NAMESPACES = ResourceType("", "v1", "namespaces", "Namespace", namespaced=False)
EVENTS = ResourceType("", "v1", "events", "Event")
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease")


def chaos_resource(kind: str, plural: str) -> ResourceType:
    """A ``chaos-mesh.org/v1alpha1`` kind, e.g. ``chaos_resource("PodChaos", "podchaos")``."""
    return ResourceType(CHAOS_GROUP, CHAOS_VERSION, plural, kind)


WatchEventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]


@dataclass(frozen=True)
class WatchEvent:
    """One change from a watch stream (``object`` is the object's JSON; a bookmark carries only a resourceVersion)."""

    type: WatchEventType
    object: dict[str, Any]

    @property
    def resource_version(self) -> str:
        return str((self.object.get("metadata") or {}).get("resourceVersion") or "")


class TokenBucket:
    """Client-side rate limit of every API call: ``qps`` sustained, ``burst`` at once; ``qps <= 0`` is unlimited.

    A caller reserves the next free slot and sleeps just until it, as Go's ``rate.Limiter`` does: thousands of
    queued calls cost one timer each, nothing polls, and they are served in the order they arrived.
    """

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.qps = qps
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()

    def reserve(self, now: float | None = None) -> float:
        """Take one token; the seconds the caller must wait before using it (0 when one was free)."""
        if self.qps <= 0:
            return 0.0
        if now is None:
            now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def cancel(self) -> None:
        """Give back a token reserved by a caller that will not make its call."""
        if self.qps > 0:
            self._tokens = min(float(self.burst), self._tokens + 1.0)

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay <= 0:
            return
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancel()
            raise


# ---- events ----------------------------------------------------------------------------------------------


@dataclass
class _Observed:
    """The last write of one event key: what a repeat patches."""

    count: int
    first_timestamp: str
    name: str


@dataclass
class _Similar:
    """Distinct messages seen for one (object, type, reason) within the aggregation window."""

    messages: set[str]
    last: float


class _Lru(OrderedDict[str, Any]):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_recent(self, key: str) -> Any:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key: str, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def _event_object_key(event: Mapping[str, Any]) -> str:
    source = event.get("source") or {}
    involved = event.get("involvedObject") or {}
    return "\x00".join(
        str(part or "")
        for part in (
            source.get("component"), source.get("host"), involved.get("kind"), involved.get("namespace"),
            involved.get("name"), involved.get("uid"), involved.get("apiVersion"),
        )
    )


def _event_key(event: Mapping[str, Any]) -> str:
    return "\x00".join((_event_object_key(event), str(event.get("type")), str(event.get("reason")),
                        str(event.get("message"))))


@dataclass(frozen=True)
class CorrelatedEvent:
    """What to write for one recorded event: a new Event (``patch`` None) or a patch of the one it repeats."""

    key: str
    event: dict[str, Any]
    patch: dict[str, Any] | None


class EventCorrelator:
    """client-go's event correlation, so a repeated event costs one counter bump instead of a new object.

    - the same object, type, reason and message again → the existing Event's ``count`` and ``lastTimestamp``
      are patched (client-go's event logger);
    - from the ``max_similar``-th different message with one reason on one object within ``similar_window_s``
      on, they are written as one Event ``(combined from similar events): <latest message>`` (the aggregator);
    - per object, ``spam_burst`` events then one per ``1/spam_qps`` seconds; the rest is dropped (the spam
      filter), so a crash-looping target cannot flood the API server.
    """

    def __init__(
        self,
        *,
        cache_size: int = 4096,
        max_similar: int = 10,
        similar_window_s: float = 600.0,
        spam_burst: int = 25,
        spam_qps: float = 1.0 / 300.0,
        clock: Callable[[], float] = time.time,
    ):
        self.max_similar = max_similar
        self.similar_window_s = similar_window_s
        self.spam_burst = spam_burst
        self.spam_qps = spam_qps
        self._clock = clock
        self._observed = _Lru(cache_size)
        self._similar = _Lru(cache_size)
        self._spam = _Lru(cache_size)

    def correlate(self, event: dict[str, Any]) -> CorrelatedEvent | None:
        """The write for a new ``event`` (as :func:`new_event` makes it); None when the spam filter drops it."""
        now = self._clock()
        event, key = self._aggregate(event, now)
        observed: _Observed | None = self._observed.get_recent(key)
        patch: dict[str, Any] | None = None
        if observed is not None:
            event = {**event, "metadata": {**event["metadata"], "name": observed.name},
                     "count": observed.count + 1, "firstTimestamp": observed.first_timestamp}
            patch = {"count": event["count"], "lastTimestamp": event["lastTimestamp"], "message": event["message"]}
        self._observed.put(key, _Observed(int(event["count"]), str(event["firstTimestamp"]),
                                          str(event["metadata"]["name"])))
        if not self._allow(_event_object_key(event), now):
            return None
        return CorrelatedEvent(key, event, patch)

    def written(self, correlated: CorrelatedEvent, stored: Mapping[str, Any]) -> None:
        """Remember the Event as the API server stored it, so the next repeat patches that object."""
        metadata = stored.get("metadata") or {}
        self._observed.put(correlated.key, _Observed(
            int(stored.get("count") or 1),
            str(stored.get("firstTimestamp") or correlated.event["firstTimestamp"]),
            str(metadata.get("name") or correlated.event["metadata"]["name"]),
        ))

    def _aggregate(self, event: dict[str, Any], now: float) -> tuple[dict[str, Any], str]:
        aggregate_key = "\x00".join((_event_object_key(event), str(event.get("type")), str(event.get("reason"))))
        similar: _Similar | None = self._similar.get_recent(aggregate_key)
        if similar is None or now - similar.last > self.similar_window_s:
            similar = _Similar(set(), now)
        similar.messages.add(str(event.get("message")))
        similar.last = now
        self._similar.put(aggregate_key, similar)
        if len(similar.messages) < self.max_similar:
            return event, _event_key(event)
        similar.messages.pop()  # the set stays bounded, as client-go's does
        combined = {**event, "message": f"(combined from similar events): {event.get('message')}"}
        return combined, aggregate_key

    def _allow(self, object_key: str, now: float) -> bool:
        bucket: TokenBucket | None = self._spam.get_recent(object_key)
        if bucket is None:
            bucket = TokenBucket(self.spam_qps, self.spam_burst, clock=self._clock)
        self._spam.put(object_key, bucket)
        if bucket.reserve(now) > 0:
            bucket.cancel()
            return False
        return True


def object_reference(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An ``ObjectReference`` to ``obj`` (apiVersion, kind, namespace, name, uid, resourceVersion)."""
    metadata = obj.get("metadata") or {}
    reference = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "uid": metadata.get("uid"),
        "resourceVersion": metadata.get("resourceVersion"),
    }
    return {key: value for key, value in reference.items() if value}


def new_event(
    involved: Mapping[str, Any], type: str, reason: str, message: str, *, component: str, now: float
) -> dict[str, Any]:
    """A core/v1 Event about ``involved`` as client-go's recorder first writes it (count 1)."""
    reference = object_reference(involved)
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{reference.get('name', 'unknown')}.{int(now * 1e9):x}",
            # Events about cluster-scoped objects live in "default", as client-go puts them.
            "namespace": reference.get("namespace") or "default",
        },
        "involvedObject": reference,
        "type": type,
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def _status_message(body: bytes, status: int, reason: str | None) -> str:
    """The API server's message from an error body (a Status object), else the HTTP status line."""
    try:
        decoded = json.loads(body) if body else None
    except (TypeError, ValueError):
        decoded = None
    if isinstance(decoded, dict) and decoded.get("message"):
        return str(decoded["message"])
    return f"HTTP {status} {reason or ''}".rstrip()


def _query(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Query parameters as the API server spells them (booleans lower-case), leaving out the unset ones."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        pairs.append((key, ("true" if value else "false") if isinstance(value, bool) else str(value)))
    return pairs



def _watch_event(what: str, line: bytes) -> WatchEvent:
    try:
        decoded = json.loads(line)
    except ValueError:
        raise KubeError(f"{what}: the stream sent something that is not JSON") from None
    kind = decoded.get("type") if isinstance(decoded, dict) else None
    obj = decoded.get("object") if isinstance(decoded, dict) else None
    if kind == "ERROR":
        status = obj if isinstance(obj, dict) else {}
        code = status.get("code")
        message = status.get("message") or status.get("reason") or "the server ended the watch with an error"
        raise KubeError(f"{what}: {message}", status=int(code) if code else None)
    if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK") or not isinstance(obj, dict):
        raise KubeError(f"{what}: unexpected watch event {line[:200]!r}")
    return WatchEvent(kind, obj)


@dataclass
class _KeyedLock:
    """A lock shared by the callers about one key, dropped when the last of them is done."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class Kube:
    """An API client bound to one cluster; use ``async with await Kube.connect(...)`` or close it."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    ):
        self.api = api
        self.limiter = TokenBucket(qps, burst)
        self.request_timeout = request_timeout
        self.events = EventCorrelator()
        self.event_component = EVENT_COMPONENT
        #: Called with (type, reason, namespace) for every event recorded (the emitted-events metric).
        self.event_observer: Callable[[str, str, str], None] | None = None
        self._event_locks: dict[str, _KeyedLock] = {}

    @classmethod
    async def connect(
        cls,
        kubeconfig: Path | None = None,
        context: str | None = None,
        *,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
    ) -> Kube:
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
        return cls(client.ApiClient(configuration=configuration), qps=qps, burst=burst)

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
            await self.limiter.acquire()
        except BaseException:
            call.close()  # never started: close it so it is not reported as never awaited
            raise
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

    # ---- generic calls (helper A): raw JSON in and out, every call through the rate limiter ---------------

    async def _send(
        self,
        what: str,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: aiohttp.ClientTimeout | float | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one request and return the open response (status < 400); errors become :class:`KubeError`.

        The caller reads and releases the response. Objects stay plain JSON dicts: the informers keep
        thousands of them, and the library's model classes would cost time and memory for nothing.
        """
        await self.limiter.acquire()
        try:
            response: aiohttp.ClientResponse = await self.api.call_api(
                path,
                method,
                query_params=_query(query or {}),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout if timeout is not None else self.request_timeout,
            )
        except ApiException as error:
            raise KubeError(f"{what}: {_describe(error)}", status=error.status) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise KubeError(f"{what}: cannot reach the API server: {error or type(error).__name__}") from None
        if response.status >= 400:
            try:
                body_bytes = await response.read()
            except (TimeoutError, aiohttp.ClientError, OSError):
                body_bytes = b""
            finally:
                response.release()
            raise KubeError(f"{what}: {_status_message(body_bytes, response.status, response.reason)}",
                            status=response.status)
        return response

    async def _request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """One request whose JSON answer is returned decoded."""
        response = await self._send(what, method, path, query=query, body=body, content_type=content_type)
        try:
            data = await response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise KubeError(f"{what}: the answer broke off: {error or type(error).__name__}") from None
        finally:
            response.release()
        try:
            return json.loads(data) if data else None
        except ValueError:
            raise KubeError(f"{what}: the API server answered with something that is not JSON") from None

    @staticmethod
    def _where(resource: ResourceType, namespace: str | None, what: str) -> str | None:
        if resource.namespaced and not namespace:
            raise ValueError(f"{what}: {resource.plural} are namespaced; a namespace is needed")
        return namespace if resource.namespaced else None

    async def get(self, resource: ResourceType, name: str, namespace: str | None = None) -> dict[str, Any]:
        """One object; a missing one raises :class:`KubeError` with status 404."""
        namespace = self._where(resource, namespace, f"get {resource.plural} {name}")
        obj: dict[str, Any] = await self._request(
            f"get {resource.describe(namespace, name)}", "GET", resource.path(namespace, name)
        )
        return obj

    async def list_page(
        self,
        resource: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """One page of a list (the List object: ``items``, ``metadata.resourceVersion``, ``metadata.continue``).

        Items lack ``apiVersion`` and ``kind`` in the API server's lists of built-in kinds; they are filled in,
        so an item reads the same whether it came from a list or a watch.
        """
        query = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "limit": limit,
            "continue": continue_token,
            "resourceVersion": resource_version,
        }
        page: dict[str, Any] = await self._request(
            f"list {resource.describe(namespace)}", "GET", resource.path(namespace), query=query
        )
        for item in page.get("items") or ():
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
        return page

    async def list_all(
        self,
        resource: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> tuple[list[dict[str, Any]], str]:
        """Every object (page by page) and the list's resourceVersion, from which a watch continues.

        A continuation that expired meanwhile (410) restarts as one unpaged list, as client-go's pager does.
        """
        items: list[dict[str, Any]] = []
        token: str | None = None
        limit: int | None = page_size
        while True:
            try:
                page = await self.list_page(resource, namespace, label_selector=label_selector,
                                            field_selector=field_selector, limit=limit, continue_token=token)
            except KubeError as error:
                if error.status != 410 or token is None:
                    raise
                items, token, limit = [], None, None
                continue
            items.extend(page.get("items") or ())
            metadata = page.get("metadata") or {}
            token = metadata.get("continue") or None
            if token is None:
                return items, str(metadata.get("resourceVersion") or "")

    async def watch(
        self,
        resource: ResourceType,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
        allow_bookmarks: bool = True,
    ) -> AsyncGenerator[WatchEvent, None]:
        """The changes after ``resource_version``, until the server ends the watch after ``timeout_seconds``.

        An ERROR event raises :class:`KubeError` with the Status's code (410: the version is too old; relist).
        Use inside ``contextlib.aclosing`` so that leaving the loop early closes the connection at once.
        """
        what = f"watch {resource.describe(namespace)}"
        query = {
            "watch": True,
            "resourceVersion": resource_version,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "timeoutSeconds": timeout_seconds,
            "allowWatchBookmarks": allow_bookmarks,
        }
        # No total limit: the server ends the stream; a silent connection is dead after the timeout plus slack.
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.request_timeout, sock_connect=self.request_timeout,
            sock_read=timeout_seconds + self.request_timeout,
        )
        response = await self._send(what, "GET", resource.path(namespace), query=query, timeout=timeout)
        buffer = bytearray()
        try:
            # Lines are split here rather than with readline(): one object can exceed aiohttp's line limit.
            async for chunk in response.content.iter_any():
                buffer.extend(chunk)
                while (end := buffer.find(b"\n")) >= 0:
                    line = bytes(buffer[:end])
                    del buffer[: end + 1]
                    if line.strip():
                        yield _watch_event(what, line)
            if buffer.strip():
                yield _watch_event(what, bytes(buffer))
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise KubeError(f"{what}: the stream broke off: {error or type(error).__name__}") from None
        finally:
            response.close()

    async def create(
        self, resource: ResourceType, body: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """Create ``body``; its namespace is taken from ``body.metadata.namespace`` unless given. 409: exists."""
        metadata = body.get("metadata") or {}
        namespace = self._where(resource, namespace or metadata.get("namespace"), f"create {resource.plural}")
        name = metadata.get("name") or metadata.get("generateName") or "?"
        obj: dict[str, Any] = await self._request(
            f"create {resource.describe(namespace, name)}", "POST", resource.path(namespace), body=dict(body)
        )
        return obj

    async def replace(
        self, resource: ResourceType, body: Mapping[str, Any], *, subresource: str | None = None
    ) -> dict[str, Any]:
        """Write ``body`` whole (an update, or ``subresource="status"``), guarded by its resourceVersion.

        A resourceVersion that is no longer current raises :class:`KubeError` with status 409: re-read, retry.
        """
        metadata = body.get("metadata") or {}
        name = str(metadata.get("name") or "")
        namespace = self._where(resource, metadata.get("namespace"), f"update {resource.plural} {name}")
        part = f" {subresource}" if subresource else ""
        obj: dict[str, Any] = await self._request(
            f"update {resource.describe(namespace, name)}{part}", "PUT",
            resource.path(namespace, name, subresource), body=dict(body),
        )
        return obj

    async def merge_patch(
        self,
        resource: ResourceType,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386): keys set to None are removed. Add ``metadata.resourceVersion`` to guard it."""
        namespace = self._where(resource, namespace, f"patch {resource.plural} {name}")
        part = f" {subresource}" if subresource else ""
        obj: dict[str, Any] = await self._request(
            f"patch {resource.describe(namespace, name)}{part}", "PATCH",
            resource.path(namespace, name, subresource), body=dict(patch), content_type=MERGE_PATCH,
        )
        return obj

    async def json_patch(
        self,
        resource: ResourceType,
        name: str,
        operations: Sequence[Mapping[str, Any]],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A JSON patch (RFC 6902); a failed ``test`` operation is refused whole (422)."""
        namespace = self._where(resource, namespace, f"patch {resource.plural} {name}")
        part = f" {subresource}" if subresource else ""
        obj: dict[str, Any] = await self._request(
            f"patch {resource.describe(namespace, name)}{part}", "PATCH",
            resource.path(namespace, name, subresource), body=[dict(op) for op in operations],
            content_type=JSON_PATCH,
        )
        return obj

    async def delete(
        self,
        resource: ResourceType,
        name: str,
        namespace: str | None = None,
        *,
        grace_period_seconds: int | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
        propagation_policy: str | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        """Delete one object (preconditions ``uid``/``resource_version`` guard against a namesake; 409 if unmet).

        Returns what the server answers (the object while finalizers hold it, else a Status); None when
        ``missing_ok`` and there was nothing to delete.
        """
        namespace = self._where(resource, namespace, f"delete {resource.plural} {name}")
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        preconditions = {key: value for key, value in (("uid", uid), ("resourceVersion", resource_version)) if value}
        if preconditions:
            options["preconditions"] = preconditions
        try:
            answer: dict[str, Any] = await self._request(
                f"delete {resource.describe(namespace, name)}", "DELETE", resource.path(namespace, name), body=options
            )
        except KubeError as error:
            if missing_ok and error.status == 404:
                return None
            raise
        return answer

    # ---- events --------------------------------------------------------------------------------------------

    async def record_event(
        self, involved: Mapping[str, Any], type: str, reason: str, message: str
    ) -> dict[str, Any] | None:
        """Write a core/v1 Event about ``involved`` (an object as read from the API), correlated as client-go does.

        Events are best effort, as in client-go: a failed write is logged and None returned; None too when the
        spam filter dropped it. ``event_observer`` (the emitted-events metric) sees every call.
        """
        event = new_event(involved, type, reason, message, component=self.event_component, now=time.time())
        if self.event_observer is not None:
            self.event_observer(type, reason, event["metadata"]["namespace"])
        object_key = _event_object_key(event)
        # Writes about one object go one at a time: a repeat must find the Event its predecessor created.
        guard = self._event_locks.get(object_key)
        if guard is None:
            guard = self._event_locks[object_key] = _KeyedLock()
        guard.users += 1
        try:
            async with guard.lock:
                correlated = self.events.correlate(event)
                if correlated is None:
                    return None
                return await self._write_event(correlated)
        finally:
            guard.users -= 1
            if guard.users == 0:
                del self._event_locks[object_key]

    async def _write_event(self, correlated: CorrelatedEvent) -> dict[str, Any] | None:
        event = correlated.event
        namespace = event["metadata"]["namespace"]
        try:
            stored: dict[str, Any] | None = None
            if correlated.patch is not None:
                try:
                    stored = await self.merge_patch(EVENTS, event["metadata"]["name"], correlated.patch, namespace)
                except KubeError as error:
                    if error.status != 404:  # an Event that expired meanwhile is written anew, as client-go does
                        raise
            if stored is None:
                stored = await self.create(EVENTS, event, namespace)
        except KubeError as error:
            _log.warning("event %s %s about %s/%s not recorded: %s", event["type"], event["reason"], namespace,
                         event["involvedObject"].get("name"), error)
            return None
        self.events.written(correlated, stored)
        return stored

    # ---- leases --------------------------------------------------------------------------------------------

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A coordination.k8s.io/v1 Lease; None when there is none."""
        try:
            return await self.get(LEASES, name, namespace)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    async def create_lease(self, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Lease with ``spec``; status 409 when another created it first."""
        body = {"apiVersion": LEASES.api_version, "kind": LEASES.kind,
                "metadata": {"name": name, "namespace": namespace}, "spec": dict(spec)}
        return await self.create(LEASES, body, namespace)

    async def update_lease(self, lease: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``lease`` back, guarded by its resourceVersion (409 when another wrote it meanwhile)."""
        return await self.replace(LEASES, lease)


def _default_kubeconfig() -> Path:
    # The first file of $KUBECONFIG, as kubectl would read it (merging several is kubectl's business).
    listed = os.environ.get("KUBECONFIG", "")
    first = next((part for part in listed.split(os.pathsep) if part), None)
    return Path(first) if first else Path.home() / ".kube" / "config"
