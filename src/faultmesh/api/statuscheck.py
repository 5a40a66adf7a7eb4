"""StatusCheck: probe an application (HTTP) while chaos runs, and judge it healthy or not.

Used on its own or as a Workflow template (``templateType: StatusCheck``), where a failing
check can abort the workflow. The spec may not change once created, as in Chaos Mesh.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from .base import CrdInfo, Issue, Model, Resource, RuleContext, quote
from .k8s.scalars import DateTime, Int64
from .registry import register
from .types import Duration

StatusCheckMode = Literal["Synchronous", "Continuous"]
StatusCheckType = Literal["HTTP"]
HTTPRequestMethod = Literal["GET", "POST"]

#: Chaos Mesh's webhook default for ``mode`` (the CRD itself has none).
DEFAULT_MODE: StatusCheckMode = "Synchronous"

# Go's url.ParseRequestURI: an absolute URI (scheme:...) or an absolute path, no spaces or controls.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://(?P<authority>[^/?#]*)")
_CODE = re.compile(r"^[+-]?[0-9]+$")


def request_uri_problem(url: str) -> str | None:
    """Why ``url`` would not do as an HTTP request URI, or None."""
    if any(character.isspace() or ord(character) < 0x20 or ord(character) == 0x7F for character in url):
        return "contains a space or a control character"
    if url.startswith("/"):
        return None
    if not _SCHEME.match(url):
        return "is not an absolute URL (e.g. http://10.0.0.1:8080/health)"
    authority = _AUTHORITY.match(url)
    if authority:
        host_port = authority.group("authority").rpartition("@")[2]
        if host_port.startswith("["):
            port = host_port.partition("]")[2].removeprefix(":")
        else:
            port = host_port.rpartition(":")[2] if ":" in host_port else ""
        if port and not port.isdigit():
            return f"has port {quote(port)}, which is not a number"
    return None


def status_code_problem(text: str) -> str | None:
    """Why ``text`` is not a status code (``200``) or an inclusive range (``200-299``), or None."""
    if text == "":
        return "is required: a status code (200) or an inclusive range (200-299)"
    if _CODE.match(text):
        return None if 0 < int(text) < 1000 else f"{quote(text)} is not an HTTP status code (1-999)"
    start, dash, end = text.partition("-")
    if not dash:
        return f"{quote(text)} is neither a status code (200) nor a range (200-299)"
    for bound in (start, end):
        if not _CODE.match(bound):
            return f"{quote(text)}: {quote(bound)} is not a number; write a range as 200-299"
        if not 0 < int(bound) < 1000:
            return f"{quote(text)}: {bound} is not an HTTP status code (1-999)"
    if int(start) > int(end):
        return f"{quote(text)}: the range starts at {start}, after its end {end}"
    return None


class HTTPCriteria(Model):
    """What counts as a successful request."""

    status_code: str = Field(description="The expected status code (200) or an inclusive range (200-299).")

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        problem = status_code_problem(self.status_code)
        if problem:
            yield Issue(("statusCode",), problem)


class HTTPStatusCheck(Model):
    """One HTTP request per execution; the response is judged by ``criteria``."""

    url: str
    method: HTTPRequestMethod = "GET"
    headers: dict[str, list[str]] | None = None
    body: str | None = None
    criteria: HTTPCriteria

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if not self.url:
            yield Issue(("url",), "is required (e.g. http://10.0.0.1:8080/health)")
            return
        problem = request_uri_problem(self.url)
        if problem:
            yield Issue(("url",), f"{quote(self.url)} {problem}")


def _type_is_required(schema: dict[str, Any]) -> None:
    # Chaos Mesh's CRD lists ``type`` as required although it defaults to HTTP; keep it so.
    required = schema.setdefault("required", [])
    if "type" not in required:
        required.append("type")


class StatusCheckSpec(Model):
    """How to probe, how often, and how many outcomes in a row decide success or failure."""

    model_config = ConfigDict(json_schema_extra=_type_is_required)

    mode: StatusCheckMode | None = Field(
        default=None, description="Synchronous: stop at the first verdict; Continuous: run for the duration."
    )
    type: StatusCheckType = "HTTP"
    duration: Duration | None = Field(default=None, description="How long the check runs (Go duration).")
    timeout_seconds: int = Field(default=1, ge=1, description="Seconds after which one execution times out.")
    interval_seconds: int = Field(default=10, ge=1, description="Seconds between executions.")
    failure_threshold: int = Field(default=3, ge=1, description="Failures in a row that make the check fail.")
    success_threshold: int = Field(
        default=1, ge=1, description="Successes in a row that make a Synchronous check succeed."
    )
    records_history_limit: int = Field(default=100, ge=1, le=1000, description="Execution records kept.")
    http: HTTPStatusCheck | None = None

    def apply_defaults(self, ctx: RuleContext) -> None:
        if self.mode is None:
            self.mode = DEFAULT_MODE

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if self.type == "HTTP" and self.http is None:
            yield Issue(("http",), "is required with type HTTP (url, method, criteria)")


class StatusCheckCondition(Model):
    type: str
    status: str
    reason: str
    last_probe_time: DateTime
    last_transition_time: DateTime


class StatusCheckRecord(Model):
    """The outcome (Success, Failure) of one execution."""

    start_time: DateTime
    outcome: str


class StatusCheckStatus(Model):
    start_time: DateTime | None = None
    completion_time: DateTime | None = None
    count: Int64 | None = None
    conditions: list[StatusCheckCondition] | None = None
    records: list[StatusCheckRecord] | None = None


@register
class StatusCheck(Resource):
    """StatusCheck probes an application while chaos runs and records whether it stays healthy."""

    crd: ClassVar[CrdInfo] = CrdInfo(plural="statuschecks")
    # Chaos Mesh refuses spec changes to a StatusCheck, as it does for experiments.
    immutable_spec: ClassVar[bool] = True

    spec: StatusCheckSpec
    status: StatusCheckStatus | None = None
