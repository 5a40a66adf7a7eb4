"""PodIOChaos: every IO fault wanted in one pod, as the agent's FUSE injector serves them.

The controller writes one per pod, merging the IOChaos experiments that select the pod; each
action records which experiment it came from (``source``) so that experiment's recovery
removes exactly its own actions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from pydantic import ConfigDict, Field

from .base import CrdInfo, Issue, Model, Resource, RuleContext, not_one_of, quote
from .common import spec_optional_in_crd
from .iochaos import (
    IO_CHAOS_TYPES,
    AttrOverrideSpec,
    MistakeSpec,
    UInt32,
    errno_issues,
    latency_issues,
    method_issues,
    mistake_issues,
)
from .registry import register
from .types import Duration, Int32, Int64, Percent


class IOFilter(Model):
    """Which operations an action applies to: a path glob, the operations, and a chance."""

    path: str = Field(description="A glob of the paths the action applies to.")
    methods: list[str] | None = Field(default=None, description="The operations; unset, all of them.")
    percent: Percent = Field(description="The chance, in percent, that a matching operation is hit.")

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from method_issues(self.methods)
        yield from super().rules(ctx)


class IoFault(Model):
    """One errno to return, and its weight among the action's faults."""

    errno: UInt32
    weight: Int32 = Field(ge=0)


class IOChaosAction(IOFilter, AttrOverrideSpec):
    """One injector rule: a filter plus what to do (delay, errors, attributes or a mistake)."""

    type: str = Field(description="latency / fault / attrOverride / mistake")
    faults: list[IoFault] | None = Field(default=None, description="The errors to return (type fault).")
    latency: Duration | None = Field(default=None, description="The delay to add (type latency).")
    mistake: MistakeSpec | None = Field(default=None, description="How to corrupt data (type mistake).")
    source: str | None = Field(default=None, description="The experiment this action belongs to.")

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from super().rules(ctx)
        if self.type not in IO_CHAOS_TYPES:
            yield Issue(
                ("type",),
                not_one_of(self.type, "an IO chaos type", IO_CHAOS_TYPES),
            )
        elif self.type == "latency":
            yield from latency_issues(self.latency, ("latency",), "type latency")
        elif self.type == "fault":
            if not self.faults:
                yield Issue(("faults",), "is required with type fault (at least one errno)")
            for index, fault in enumerate(self.faults or []):
                yield from errno_issues(fault.errno, ("faults", index, "errno"), "type fault")
        elif self.type == "attrOverride":
            if not self.overrides_anything():
                yield Issue(
                    ("type",),
                    "attrOverride needs at least one attribute set: "
                    + ", ".join(AttrOverrideSpec.ATTRIBUTES),
                )
        elif self.type == "mistake":
            yield from mistake_issues(self.mistake, ("mistake",), "type mistake")


class PodIOChaosSpec(Model):
    """The volume (mount path) the injector sits on, the container, and the actions."""

    volume_mount_path: str = Field(description="The mount path of the volume; it must be a mount root.")
    container: str | None = Field(default=None, description="The container whose volume is injected.")
    actions: list[IOChaosAction] | None = None

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if not self.volume_mount_path.startswith("/"):
            yield Issue(
                ("volumeMountPath",),
                f"{quote(self.volume_mount_path)} is not an absolute path",
            )


class PodIOChaosStatus(Model):
    """What the agent reports about the injector process of this pod."""

    pid: Int64 | None = Field(default=None, description="The injector's process id.")
    start_time: Int64 | None = Field(default=None, description="When the injector started.")
    failed_message: str | None = None
    observed_generation: Int64 | None = None


@register
class PodIOChaos(Resource):
    """PodIOChaos is the controller's per-pod list of IO fault rules for the agent to serve."""

    model_config = ConfigDict(json_schema_extra=spec_optional_in_crd)

    crd: ClassVar[CrdInfo] = CrdInfo(plural="podiochaos", status_subresource=True)

    spec: PodIOChaosSpec
    status: PodIOChaosStatus | None = None
