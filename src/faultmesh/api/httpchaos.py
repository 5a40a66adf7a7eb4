"""HTTPChaos: abort, delay, rewrite or patch the HTTP traffic of the selected pods.

A proxy in the pod's network namespace intercepts one port; the spec selects messages by
target (Request or Response), path, method, status code and headers, and says what to do
with them. Unlike Chaos Mesh, faultmesh refuses an HTTPChaos with no action at all (it would
proxy traffic untouched) and fields that have no effect on the chosen target.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from pydantic import ConfigDict, Field

from .base import CrdInfo, Issue, RuleContext, quote
from .common import ChaosResource, ChaosStatus, PodSelector, spec_optional_in_crd
from .podhttpchaos import (
    HTTP_METHODS,
    PodHttpChaosActions,
    PodHttpChaosTarget,
    PodHttpChaosTLS,
    header_map_issues,
    method_issues,
    path_pattern_issues,
    port_issues,
    status_code_issues,
    target_issues,
)
from .registry import register
from .types import Duration, Int32, Int64


class HTTPChaosSpec(PodSelector, PodHttpChaosActions):
    """Which pods, which port and messages, and the actions (inline: abort, delay, replace, patch)."""

    target: PodHttpChaosTarget = Field(description="Request or Response: which side of the exchange is hit.")
    port: Int32 | None = Field(default=None, description="The TCP port whose HTTP traffic is intercepted.")
    path: str | None = Field(default=None, description='Wildcard pattern of the URI path ("*" and "?"), e.g. "/api/*".')
    method: str | None = Field(default=None, description="HTTP method of the request, e.g. GET.")
    code: Int32 | None = Field(default=None, description="Status code of the response (target Response).")
    request_headers: dict[str, str] | None = Field(
        default=None, alias="request_headers", description="Headers the request must carry (name → value)."
    )
    response_headers: dict[str, str] | None = Field(
        default=None, alias="response_headers", description="Headers the response must carry (name → value)."
    )
    tls: PodHttpChaosTLS | None = Field(
        default=None, description="Certificate and key to terminate HTTPS with, from a Secret."
    )
    duration: Duration | None = Field(
        default=None, description='How long the chaos lasts, a Go duration such as "30s".'
    )
    remote_cluster: str | None = None

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from PodSelector.rules(self, ctx)
        yield from port_issues(("port",), self.port)
        yield from path_pattern_issues(("path",), self.path)
        if self.method is not None and self.target == "Request" and self.method not in HTTP_METHODS:
            yield Issue(
                ("method",),
                f"{quote(self.method)} is not a request method; use one of {', '.join(HTTP_METHODS)}",
            )
        else:
            yield from method_issues(("method",), self.method)
        yield from status_code_issues(("code",), self.code)
        yield from header_map_issues(("request_headers",), self.request_headers)
        yield from header_map_issues(("response_headers",), self.response_headers)
        if not self.has_action():
            yield Issue((), "no action is set: set abort: true, delay, replace or patch")
        yield from target_issues(self.target, self, code=self.code, response_headers=self.response_headers)


class HTTPChaosStatus(ChaosStatus):
    """The common chaos status plus the PodHttpChaos generation applied per pod."""

    instances: dict[str, Int64] | None = Field(
        default=None, description="Pod (namespace/name) → generation of its PodHttpChaos holding these rules."
    )


@register
class HTTPChaos(ChaosResource):
    """HTTPChaos makes a pod's HTTP server or client see aborted, slow or altered messages."""

    model_config = ConfigDict(json_schema_extra=spec_optional_in_crd)

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="httpchaos",
        # As Chaos Mesh: `subresources: {}`, status written with the object itself.
        status_subresource=False,
        empty_subresources=True,
        printer_columns=(("duration", ".spec.duration", "string", "How long the chaos lasts"),),
    )

    spec: HTTPChaosSpec
    status: HTTPChaosStatus | None = None
