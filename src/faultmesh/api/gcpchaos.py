"""GCPChaos: stop or reset a Compute Engine instance, or detach its disks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Literal

from pydantic import Field

from .awschaos import ACTION_COLUMNS, non_empty_issues
from .base import CrdInfo, Issue, Model, RuleContext
from .common import ChaosResource, ChaosStatus
from .registry import register
from .types import Duration

GCPChaosAction = Literal["node-stop", "node-reset", "disk-loss"]


class GCPSelector(Model):
    """Which instance (and, for disk-loss, which of its disks)."""

    project: str = Field(description="The GCP project ID.")
    zone: str = Field(description="The zone of the instance.")
    instance: str = Field(description="The instance name.")
    device_names: list[str] | None = Field(default=None, description="Device names of the disks to detach (disk-loss).")


class GCPChaosSpec(GCPSelector):
    """What to do to the selected instance."""

    action: GCPChaosAction = Field(description="node-stop / node-reset / disk-loss")
    duration: Duration | None = Field(default=None, description="How long the fault lasts, a Go duration.")
    secret_name: str | None = Field(
        default=None, description="Secret holding the GCP credentials; none means the ambient ones."
    )
    remote_cluster: str | None = None

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from non_empty_issues(self, ("project", "zone", "instance"))
        # Chaos Mesh only refuses an absent list; an empty one would detach nothing, so it is refused too.
        if self.action == "disk-loss" and not self.device_names:
            yield Issue(("deviceNames",), "needs at least one device name with action disk-loss")
        for index, name in enumerate(self.device_names or []):
            if not name:
                yield Issue(("deviceNames", index), "must not be empty")


class GCPChaosStatus(ChaosStatus):
    """The shared chaos status plus the disks detached by disk-loss, kept to re-attach them."""

    attached_disk_strings: list[str] | None = Field(
        default=None, description="The detached disks' attachment records (JSON), for recovery."
    )


@register
class GCPChaos(ChaosResource):
    """GCPChaos stops or resets a Compute Engine instance, or detaches some of its disks."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="gcpchaos", status_subresource=False, empty_subresources=True, printer_columns=ACTION_COLUMNS
    )

    spec: GCPChaosSpec
    status: GCPChaosStatus | None = None

    def is_one_shot(self) -> bool:
        """A reset happens once; a stop or a disk loss lasts until recovered."""
        return self.spec.action == "node-reset"
