"""PodHttpChaos: the HTTP fault rules one pod's proxy carries, and the pieces HTTPChaos shares.

The controller writes one PodHttpChaos per target pod, merging the rules of every HTTPChaos
that selects it; the agent's HTTP proxy serves them. HTTPChaos embeds the action models
defined here (``abort``, ``delay``, ``replace``, ``patch``) and the TLS secret reference.

Besides Chaos Mesh's webhook rules, the checks here refuse what its proxy (chaos-tproxy) would
only reject -- or silently ignore -- at injection time: status codes outside 100..999, header
names that are not HTTP tokens, ``patch.body`` that is not JSON, and fields that have no effect
on the chosen target (``replace.code`` on a request, ``replace.path`` on a response, ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import ClassVar, Literal

from pydantic import Field

from .base import CrdInfo, Issue, Model, Path, Resource, RuleContext, quote
from .registry import register
from .types import Base64, Int32, Int64, NonNegativeDuration

#: Whether a rule acts on the request a pod receives or on the response it sends.
PodHttpChaosTarget = Literal["Request", "Response"]
HTTP_TARGETS: tuple[str, ...] = ("Request", "Response")

#: The methods Chaos Mesh's webhook accepts for a request selector (Go's net/http constants).
HTTP_METHODS: tuple[str, ...] = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT")

#: The body patch types the proxy understands (RFC 7396 JSON merge patch).
PATCH_BODY_TYPES: tuple[str, ...] = ("JSON",)

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_K8S_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_K8S_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def port_issues(path: Path, port: int | None) -> Iterator[Issue]:
    """A TCP port the proxy can intercept: 1..65535."""
    if port is None:
        yield Issue(path, "is required: the TCP port whose HTTP traffic is intercepted (1-65535)")
    elif not 0 < port <= 65535:
        yield Issue(path, f"{port} is not a TCP port; use 1-65535")


def status_code_issues(path: Path, code: int | None) -> Iterator[Issue]:
    """An HTTP status code as the proxy parses one: three digits, 100..999."""
    if code is not None and not 100 <= code <= 999:
        yield Issue(path, f"{code} is not an HTTP status code; use 100-999 (e.g. 404, 503)")


def method_issues(path: Path, method: str | None) -> Iterator[Issue]:
    """A method the proxy can parse: an HTTP token such as GET."""
    if method is not None and not _TOKEN.match(method):
        yield Issue(path, f"{quote(method)} is not an HTTP method; use e.g. {', '.join(HTTP_METHODS[:4])}")


def path_pattern_issues(path: Path, pattern: str | None) -> Iterator[Issue]:
    """A path selector: a wildcard pattern (``*``, ``?``) matched against the whole URI path."""
    if pattern is None:
        return
    if not pattern:
        yield Issue(path, 'is empty; a URI path is at least "/" (use "*" to match every path)')
    elif pattern[0] not in "/*?":
        # A request path always starts with "/", so this pattern could never match.
        yield Issue(path, f'{quote(pattern)} never matches: URI paths start with "/" (e.g. "/{pattern}" or "*")')


def _header_value_issues(path: Path, value: str) -> Iterator[Issue]:
    if any(not (32 <= ord(char) <= 126 or char == "\t") for char in value):
        # JSON quoting shows the offending control character (\n, \u0000) instead of printing it.
        yield Issue(path, f"{json.dumps(value)} is not a valid header value: visible ASCII, spaces and tabs only")


def _header_name_issues(path: Path, name: str) -> Iterator[Issue]:
    if not _TOKEN.match(name):
        yield Issue(path, f"{json.dumps(name)} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)")


def header_map_issues(path: Path, headers: Mapping[str, str] | None) -> Iterator[Issue]:
    """Header name → value pairs: names are HTTP tokens, values visible ASCII."""
    for name, value in (headers or {}).items():
        yield from _header_name_issues((*path, name), name)
        yield from _header_value_issues((*path, name), value)


def _pair_issues(path: Path, pairs: list[list[str]] | None, what: str) -> Iterator[Issue]:
    for index, pair in enumerate(pairs or []):
        if len(pair) != 2:
            count = f"{len(pair)} item" + ("" if len(pair) == 1 else "s")
            yield Issue((*path, index), f"has {count}; each {what} is a [name, value] pair")


class PodHttpChaosPatchBodyAction(Model):
    """A JSON merge patch (RFC 7396) applied to the message body."""

    type: str = Field(description='The patch format; only "JSON" (JSON merge patch) is supported.')
    value: str = Field(description="The patch itself, as JSON text.")

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if self.type not in PATCH_BODY_TYPES:
            yield Issue(("type",), f"{quote(self.type)} is not a patch type; use JSON (a JSON merge patch)")
        elif self.type == "JSON":
            try:
                json.loads(self.value)
            except ValueError as error:
                yield Issue(("value",), f"is not JSON ({error.args[0] if error.args else error})")


class PodHttpChaosPatchActions(Model):
    """Adds to a message: merge a JSON body patch, append queries or headers."""

    body: PodHttpChaosPatchBodyAction | None = None
    queries: list[list[str]] | None = Field(
        default=None, description="Query parameters appended to a request, as [name, value] pairs."
    )
    headers: list[list[str]] | None = Field(
        default=None, description="Headers appended to the message, as [name, value] pairs."
    )

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from _pair_issues(("queries",), self.queries, "query")
        yield from _pair_issues(("headers",), self.headers, "header")
        for index, pair in enumerate(self.headers or []):
            if len(pair) == 2:
                yield from _header_name_issues(("headers", index, 0), pair[0])
                yield from _header_value_issues(("headers", index, 1), pair[1])

    def is_empty(self) -> bool:
        return self.body is None and not self.queries and not self.headers


class PodHttpChaosReplaceActions(Model):
    """Overwrites parts of a message: path, method, queries (requests), code (responses), body, headers."""

    path: str | None = Field(default=None, description="New URI path of a request.")
    method: str | None = Field(default=None, description="New method of a request.")
    code: Int32 | None = Field(default=None, description="New status code of a response.")
    body: Base64 | None = Field(default=None, description="New message body, base64-encoded.")
    queries: dict[str, str] | None = Field(
        default=None, description="Query parameters of a request to set (added or overwritten)."
    )
    headers: dict[str, str] | None = Field(default=None, description="Headers to set (added or overwritten).")

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if self.path and not self.path.startswith("/"):
            yield Issue(("path",), f'{quote(self.path)} is not a URI path; it must start with "/"')
        elif self.path and any(char.isspace() or char in "?#" for char in self.path):
            yield Issue(("path",), f"{quote(self.path)} is not a URI path: no spaces, ? or #")
        yield from method_issues(("method",), self.method)
        yield from status_code_issues(("code",), self.code)
        yield from header_map_issues(("headers",), self.headers)

    def is_empty(self) -> bool:
        return (
            self.path is None
            and self.method is None
            and self.code is None
            and self.body is None
            and not self.queries
            and not self.headers
        )


class PodHttpChaosActions(Model):
    """What happens to a selected message: abort it, delay it, replace or patch parts of it."""

    abort: bool | None = Field(default=None, description="Drop the connection instead of passing the message.")
    delay: NonNegativeDuration | None = Field(
        default=None, description='Hold the message this long first, a Go duration such as "300ms".'
    )
    replace: PodHttpChaosReplaceActions | None = None
    patch: PodHttpChaosPatchActions | None = None

    def has_action(self) -> bool:
        """Whether any action is set; a rule without one would pass every message untouched."""
        return (
            bool(self.abort)
            or self.delay is not None
            or (self.replace is not None and not self.replace.is_empty())
            or (self.patch is not None and not self.patch.is_empty())
        )


def target_issues(
    target: str,
    actions: PodHttpChaosActions,
    *,
    code: int | None,
    response_headers: Mapping[str, str] | None,
    actions_path: Path = (),
    selector_path: Path = (),
) -> Iterator[Issue]:
    """Fields that only mean something for the other target, which the proxy would silently skip."""
    replace, patch = actions.replace, actions.patch
    if target == "Request":
        response_only: list[tuple[Path, bool]] = [
            ((*actions_path, "replace", "code"), replace is not None and replace.code is not None),
            ((*selector_path, "code"), code is not None),
            ((*selector_path, "response_headers"), bool(response_headers)),
        ]
        for path, is_set in response_only:
            if is_set:
                yield Issue(path, "applies to responses only; it has no effect with target Request")
    elif target == "Response":
        request_only: list[tuple[Path, bool]] = [
            ((*actions_path, "replace", "path"), replace is not None and replace.path is not None),
            ((*actions_path, "replace", "method"), replace is not None and replace.method is not None),
            ((*actions_path, "replace", "queries"), replace is not None and bool(replace.queries)),
            ((*actions_path, "patch", "queries"), patch is not None and bool(patch.queries)),
        ]
        for path, is_set in request_only:
            if is_set:
                yield Issue(path, "applies to requests only; it has no effect with target Response")


class PodHttpChaosTLS(Model):
    """Where the proxy finds its certificate and key (and optionally a CA): a Kubernetes Secret."""

    secret_name: str = Field(description="Name of the Secret holding the certificate and key.")
    secret_namespace: str = Field(description="Namespace of that Secret.")
    cert_name: str = Field(description='Key of the certificate in the Secret, e.g. "tls.crt".')
    key_name: str = Field(description='Key of the private key in the Secret, e.g. "tls.key".')
    ca_name: str | None = Field(default=None, description='Key of the CA certificate in the Secret, e.g. "ca.crt".')

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if len(self.secret_name) > 253 or not _K8S_SUBDOMAIN.match(self.secret_name):
            yield Issue(
                ("secretName",),
                f"{quote(self.secret_name)} is not a Secret name (lower-case letters, digits, - and .)",
            )
        if len(self.secret_namespace) > 63 or not _K8S_LABEL.match(self.secret_namespace):
            yield Issue(
                ("secretNamespace",),
                f"{quote(self.secret_namespace)} is not a namespace name (lower-case letters, digits and -)",
            )
        for field, value in (("certName", self.cert_name), ("keyName", self.key_name), ("caName", self.ca_name)):
            if value is None:
                continue
            if len(value) > 253 or not _SECRET_KEY.match(value) or value in (".", ".."):
                yield Issue(
                    (field,), f"{quote(value)} is not a Secret data key (letters, digits, -, _ and .; e.g. tls.crt)"
                )


class PodHttpChaosSelector(Model):
    """Which messages a rule hits: by port, path, method, status code and headers."""

    port: Int32 | None = None
    path: str | None = Field(default=None, description='Wildcard pattern of the URI path ("*", "?"), e.g. "/api/*".')
    method: str | None = None
    code: Int32 | None = Field(default=None, description="Status code of the response.")
    request_headers: dict[str, str] | None = Field(default=None, alias="request_headers")
    response_headers: dict[str, str] | None = Field(default=None, alias="response_headers")

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if self.port is not None:
            yield from port_issues(("port",), self.port)
        yield from path_pattern_issues(("path",), self.path)
        yield from method_issues(("method",), self.method)
        yield from status_code_issues(("code",), self.code)
        yield from header_map_issues(("request_headers",), self.request_headers)
        yield from header_map_issues(("response_headers",), self.response_headers)


class PodHttpChaosRule(Model):
    """One rule of a pod's proxy: on this port, for this target, these messages get these actions."""

    target: str = Field(description="Request or Response.")
    selector: PodHttpChaosSelector
    actions: PodHttpChaosActions
    source: str | None = Field(default=None, description="The HTTPChaos this rule came from (namespace/name).")
    port: Int32 = Field(description="The TCP port the proxy intercepts.")

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if self.target not in HTTP_TARGETS:
            yield Issue(("target",), f"{quote(self.target)} is not a target; use Request or Response")
        yield from port_issues(("port",), self.port)
        if not self.actions.has_action():
            yield Issue(("actions",), "no action is set: set abort: true, delay, replace or patch")
        yield from target_issues(
            self.target,
            self.actions,
            code=self.selector.code,
            response_headers=self.selector.response_headers,
            actions_path=("actions",),
            selector_path=("selector",),
        )


class PodHttpChaosSpec(Model):
    """The rules of one pod's HTTP proxy, and the TLS material it terminates with."""

    # Not "rules": that name is the validation hook every model has.
    http_rules: list[PodHttpChaosRule] | None = Field(default=None, alias="rules")
    tls: PodHttpChaosTLS | None = None


class PodHttpChaosStatus(Model):
    """What the agent reports about the proxy it runs for the pod."""

    pid: Int64 | None = Field(default=None, description="Process id of the running proxy.")
    start_time: Int64 | None = Field(default=None, description="Start time of that process, to tell pid reuse.")
    failed_message: str | None = None
    observed_generation: Int64 | None = Field(default=None, description="The spec generation the proxy serves.")


@register
class PodHttpChaos(Resource):
    """The HTTP rules in force on one pod, written by the controller and served by the agent."""

    crd: ClassVar[CrdInfo] = CrdInfo(plural="podhttpchaos")

    spec: PodHttpChaosSpec = Field(default_factory=PodHttpChaosSpec)
    status: PodHttpChaosStatus | None = None
