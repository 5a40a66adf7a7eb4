"""AWSChaos: stop or restart an EC2 instance, or detach an EBS volume from it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Literal

from pydantic import Field

from .base import CrdInfo, Issue, Model, RuleContext
from .common import ChaosResource, ChaosStatus
from .registry import register
from .types import Duration

AWSChaosAction = Literal["ec2-stop", "ec2-restart", "detach-volume"]

ACTION_COLUMNS = (
    ("action", ".spec.action", "string", "The fault to inject."),
    ("duration", ".spec.duration", "string", "How long the fault lasts."),
)


def non_empty_issues(model: Model, names: tuple[str, ...]) -> Iterator[Issue]:
    """One issue per named field that is set to ``""``: a cloud API cannot look up an empty ID."""
    fields = type(model).model_fields
    for name in names:
        if getattr(model, name) == "":
            info = fields[name]
            yield Issue((info.alias or name,), "must not be empty")


class AWSSelector(Model):
    """Which EC2 instance (and, for detach-volume, which volume on which device)."""

    endpoint: str | None = Field(default=None, description="AWS API endpoint override (for tests).")
    aws_region: str = Field(alias="awsRegion", description="The AWS region of the instance.")
    ec2_instance: str = Field(alias="ec2Instance", description="The EC2 instance ID.")
    volume_id: str | None = Field(default=None, alias="volumeID", description="The EBS volume ID (detach-volume).")
    device_name: str | None = Field(
        default=None, alias="deviceName", description="The device the volume is attached as (detach-volume)."
    )


class AWSChaosSpec(AWSSelector):
    """What to do to the selected EC2 instance."""

    action: AWSChaosAction = Field(description="ec2-stop / ec2-restart / detach-volume")
    duration: Duration | None = Field(default=None, description="How long the fault lasts, a Go duration.")
    secret_name: str | None = Field(
        default=None, description="Secret holding the AWS credentials; none means the ambient ones."
    )
    remote_cluster: str | None = None

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from non_empty_issues(self, ("aws_region", "ec2_instance"))
        if self.action == "detach-volume":
            if self.volume_id is None:
                yield Issue(("volumeID",), "is required with action detach-volume")
            if self.device_name is None:
                yield Issue(("deviceName",), "is required with action detach-volume")


class AWSChaosStatus(ChaosStatus):
    """The shared chaos status; AWSChaos adds nothing."""


@register
class AWSChaos(ChaosResource):
    """AWSChaos stops or restarts an EC2 instance, or detaches one of its EBS volumes."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="awschaos", status_subresource=False, empty_subresources=True, printer_columns=ACTION_COLUMNS
    )

    spec: AWSChaosSpec
    status: AWSChaosStatus | None = None

    def is_one_shot(self) -> bool:
        """A restart happens once; a stop or a detach lasts until recovered."""
        return self.spec.action == "ec2-restart"
