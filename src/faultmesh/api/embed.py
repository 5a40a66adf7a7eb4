"""EmbedChaos: one optional field per chaos kind, for Schedule and Workflow templates.

A Schedule or a Workflow template says which kind it makes (``type: NetworkChaos``) and
carries that kind's spec in the field of the same name (``networkChaos:``). The spec is the
kind's own ``<Kind>Spec`` model, so its grammar, rules and defaults (the selector namespace)
apply inside the template exactly as in a standalone experiment, with field paths such as
``spec.networkChaos.delay.latency``.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from .awschaos import AWSChaosSpec
from .azurechaos import AzureChaosSpec
from .base import Issue, Model, quote
from .blockchaos import BlockChaosSpec
from .dnschaos import DNSChaosSpec
from .gcpchaos import GCPChaosSpec
from .httpchaos import HTTPChaosSpec
from .iochaos import IOChaosSpec
from .jvmchaos import JVMChaosSpec
from .kernelchaos import KernelChaosSpec
from .networkchaos import NetworkChaosSpec
from .physicalmachinechaos import PhysicalMachineChaosSpec
from .podchaos import PodChaosSpec
from .stresschaos import StressChaosSpec
from .timechaos import TimeChaosSpec

#: Chaos kind → the wire name of the field holding its spec.
EMBEDDED_KINDS: dict[str, str] = {
    "AWSChaos": "awsChaos",
    "AzureChaos": "azureChaos",
    "BlockChaos": "blockChaos",
    "DNSChaos": "dnsChaos",
    "GCPChaos": "gcpChaos",
    "HTTPChaos": "httpChaos",
    "IOChaos": "ioChaos",
    "JVMChaos": "jvmChaos",
    "KernelChaos": "kernelChaos",
    "NetworkChaos": "networkChaos",
    "PhysicalMachineChaos": "physicalmachineChaos",
    "PodChaos": "podChaos",
    "StressChaos": "stressChaos",
    "TimeChaos": "timeChaos",
}


class EmbedChaos(Model):
    """The spec of the experiment a template makes; only the field named by its type is used."""

    aws_chaos: AWSChaosSpec | None = None
    azure_chaos: AzureChaosSpec | None = None
    block_chaos: BlockChaosSpec | None = None
    dns_chaos: DNSChaosSpec | None = None
    gcp_chaos: GCPChaosSpec | None = None
    http_chaos: HTTPChaosSpec | None = None
    io_chaos: IOChaosSpec | None = None
    jvm_chaos: JVMChaosSpec | None = None
    kernel_chaos: KernelChaosSpec | None = None
    network_chaos: NetworkChaosSpec | None = None
    physicalmachine_chaos: PhysicalMachineChaosSpec | None = Field(default=None, alias="physicalmachineChaos")
    pod_chaos: PodChaosSpec | None = None
    stress_chaos: StressChaosSpec | None = None
    time_chaos: TimeChaosSpec | None = None

    def chaos_spec(self, kind: str) -> Model | None:
        """The embedded spec of ``kind`` (``"PodChaos"``), or None if absent or not a chaos kind."""
        wire_name = EMBEDDED_KINDS.get(kind)
        if wire_name is None:
            return None
        value: Model | None = getattr(self, _FIELD_BY_WIRE_NAME[wire_name])
        return value

    def embedded_kinds(self) -> list[str]:
        """The chaos kinds whose spec is present, in EMBEDDED_KINDS order."""
        return [kind for kind in EMBEDDED_KINDS if self.chaos_spec(kind) is not None]

    def chaos_issues(self, kind: str, type_field: str) -> Iterator[Issue]:
        """The spec named by ``kind`` must be there; ``type_field`` is where the kind was given."""
        wire_name = EMBEDDED_KINDS.get(kind)
        if wire_name is None:
            kinds = ", ".join(EMBEDDED_KINDS)
            yield Issue((type_field,), f"{quote(kind)} is not a chaos kind; use one of {kinds}")
        elif self.chaos_spec(kind) is None:
            yield Issue((wire_name,), f"is required with {type_field} {kind} (the {kind} spec)")


_FIELD_BY_WIRE_NAME = {info.alias or name: name for name, info in EmbedChaos.model_fields.items()}
