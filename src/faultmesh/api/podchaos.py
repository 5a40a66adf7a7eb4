"""PodChaos: kill pods, make them fail (image swap), or kill containers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Literal

from pydantic import Field

from .base import CrdInfo, Issue, RuleContext
from .common import ChaosResource, ChaosStatus, ContainerSelector
from .registry import register
from .types import Duration, Int64

PodChaosAction = Literal["pod-kill", "pod-failure", "container-kill"]


class PodChaosSpec(ContainerSelector):
    """What to do to the selected pods."""

    action: PodChaosAction = Field(
        description="pod-kill / pod-failure / container-kill",
    )
    duration: Duration | None = Field(
        default=None,
        description='How long the chaos lasts, a Go duration such as "300ms" or "2h45m".',
    )
    grace_period: Int64 | None = Field(
        default=None,
        ge=0,
        description="Seconds before a killed pod is deleted (pod-kill); 0 deletes at once.",
    )
    remote_cluster: str | None = None

    def selects_containers(self) -> bool:
        # pod-kill and pod-failure act on whole pods even though the spec can name containers.
        return self.action == "container-kill"

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from super().rules(ctx)
        if self.action == "container-kill" and not self.container_names:
            yield Issue(("containerNames",), "is required with action container-kill")


@register
class PodChaos(ChaosResource):
    """PodChaos kills pods, makes them fail by swapping their images, or kills containers."""

    crd: ClassVar[CrdInfo] = CrdInfo(plural="podchaos", status_subresource=False)

    spec: PodChaosSpec
    status: ChaosStatus | None = None

    def is_one_shot(self) -> bool:
        """pod-kill and container-kill happen once; only pod-failure lasts."""
        return self.spec.action in ("pod-kill", "container-kill")
