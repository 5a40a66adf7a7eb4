"""BlockChaos: slow down block I/O on a volume of the selected pods.

The fault sits below the filesystem, on the block device that backs ``volumeName`` on the
pod's node; ``delay`` shapes every request's latency (with jitter and correlation, as netem).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from .base import CrdInfo, Issue, Model, RuleContext, quote
from .common import ChaosResource, ChaosStatus, ContainerSelector
from .registry import register
from .types import Duration, FloatStr, duration_seconds

BlockChaosAction = Literal["delay"]


class BlockDelaySpec(Model):
    """The latency distribution of each I/O request."""

    latency: Duration | None = Field(default=None, description='Added latency of each request, e.g. "1s".')
    correlation: FloatStr = Field(
        default="0", description="Percent (0-100) by which a request's delay follows the previous one."
    )
    jitter: Duration = Field(default="0ms", description="Random variation around the latency, a Go duration.")

    @field_validator("correlation", "jitter", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        # As Chaos Mesh's defaulting webhook: an empty string takes the field's default.
        if value == "" and info.field_name is not None:
            return cls.model_fields[info.field_name].default
        return value

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if not self.latency:
            yield Issue(("latency",), 'is required: the delay each request gets, e.g. "100ms"')
        elif duration_seconds(self.latency) < 0:
            yield Issue(("latency",), f"{quote(self.latency)} is negative; a latency must be ≥ 0")
        if duration_seconds(self.jitter) < 0:
            yield Issue(("jitter",), f"{quote(self.jitter)} is negative; jitter must be ≥ 0")
        if not 0 <= float(self.correlation) <= 100:
            yield Issue(("correlation",), f"{quote(self.correlation)} is not a percent in 0..100")


class ContainerNodeVolumePathSelector(ContainerSelector):
    """Containers, and the volume of theirs whose backing block device is hit."""

    volume_name: str = Field(description="Name of a volume of the pod, backed by a block device on the node.")

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from super().rules(ctx)
        if not self.volume_name:
            yield Issue(("volumeName",), "is empty: name the pod volume whose block device is delayed")


class BlockChaosSpec(ContainerNodeVolumePathSelector):
    """Which volume of which pods, and how its I/O is slowed."""

    action: BlockChaosAction = Field(description="delay: add latency to every block I/O request.")
    delay: BlockDelaySpec | None = None
    duration: Duration | None = Field(
        default=None, description='How long the chaos lasts, a Go duration such as "30s".'
    )
    remote_cluster: str | None = None

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from super().rules(ctx)
        if self.action == "delay" and self.delay is None:
            yield Issue(("delay",), "is required with action delay")


class BlockChaosStatus(ChaosStatus):
    """The common chaos status plus the agent's injection id per target."""

    injection_ids: dict[str, int] | None = Field(
        default=None, alias="ids", description="Target → id of its injection, used to take it out again."
    )


@register
class BlockChaos(ChaosResource):
    """BlockChaos adds latency to the block I/O behind a volume of the selected pods."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="blockchaos",
        # As Chaos Mesh: `subresources: {}`, status written with the object itself.
        status_subresource=False,
        empty_subresources=True,
        printer_columns=(
            ("action", ".spec.action", "string", "The block fault"),
            ("duration", ".spec.duration", "string", "How long the chaos lasts"),
        ),
    )

    spec: BlockChaosSpec
    status: BlockChaosStatus | None = None
