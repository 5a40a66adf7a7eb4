"""AzureChaos: stop or restart a virtual machine, or detach one of its data disks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Literal

from pydantic import Field

from .awschaos import ACTION_COLUMNS, non_empty_issues
from .base import CrdInfo, Issue, Model, RuleContext, quote
from .common import ChaosResource, ChaosStatus
from .registry import register
from .types import Duration

AzureChaosAction = Literal["vm-stop", "vm-restart", "disk-detach"]


class AzureSelector(Model):
    """Which virtual machine (and, for disk-detach, which data disk)."""

    subscription_id: str = Field(alias="subscriptionID", description="The Azure subscription ID.")
    resource_group_name: str = Field(description="The resource group of the VM.")
    vm_name: str = Field(description="The virtual machine name.")
    disk_name: str | None = Field(default=None, description="The data disk to detach (disk-detach).")
    lun: int | None = Field(default=None, description="The logical unit number of that data disk (disk-detach).")
    secret_name: str | None = Field(
        default=None, description="Secret holding the Azure credentials; none means the ambient ones."
    )
    remote_cluster: str | None = None


class AzureChaosSpec(AzureSelector):
    """What to do to the selected virtual machine."""

    action: AzureChaosAction = Field(description="vm-stop / vm-restart / disk-detach")
    duration: Duration | None = Field(default=None, description="How long the fault lasts, a Go duration.")

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from non_empty_issues(self, ("subscription_id", "resource_group_name", "vm_name"))
        if self.action == "disk-detach":
            if self.disk_name is None:
                yield Issue(("diskName",), "is required with action disk-detach")
            if self.lun is None:
                yield Issue(("lun",), "is required with action disk-detach")
        if self.lun is not None and self.lun < 0:
            yield Issue(("lun",), f"{quote(self.lun)} is not a LUN; it must be ≥ 0")


class AzureChaosStatus(ChaosStatus):
    """The shared chaos status; AzureChaos adds nothing."""


@register
class AzureChaos(ChaosResource):
    """AzureChaos stops or restarts a virtual machine, or detaches one of its data disks."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="azurechaos", status_subresource=False, empty_subresources=True, printer_columns=ACTION_COLUMNS
    )

    spec: AzureChaosSpec
    status: AzureChaosStatus | None = None

    def is_one_shot(self) -> bool:
        """A restart happens once; a stop or a detach lasts until recovered."""
        return self.spec.action == "vm-restart"
