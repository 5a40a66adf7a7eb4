"""Schedule: make an experiment (or a workflow) again and again, on a cron schedule.

``spec.schedule`` follows Chaos Mesh's grammar (see :mod:`faultmesh.api.cron`); ``type`` names
the kind each run makes, and that kind's spec sits in the field of the same name
(``podChaos:``), checked with the kind's own rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from pydantic import Field

from .base import CrdInfo, Issue, Model, Resource
from .common import PAUSE_ANNOTATION
from .cron import CronSchedule, parse_schedule
from .k8s.core import ObjectReference
from .k8s.scalars import DateTime, Int64
from .registry import register
from .workflow import ChaosOnlyScheduleSpec, ConcurrencyPolicy, WorkflowSpec


class ScheduleSpec(ChaosOnlyScheduleSpec):
    """A workflow template's schedule, plus ``type: Workflow`` and Chaos Mesh's Forbid default."""

    allows_workflow: ClassVar[bool] = True

    starting_deadline_seconds: Int64 | None = Field(
        default=None,
        gt=0,
        # OpenAPI v3.0 spelling, as Kubernetes wants it (pydantic would write exclusiveMinimum: 0).
        json_schema_extra={"minimum": 0, "exclusiveMinimum": True, "nullable": True},
        description="How late, in seconds, a missed run may still start.",
    )
    concurrency_policy: ConcurrencyPolicy = Field(
        default="Forbid", description="Forbid: skip a run while the previous one lasts; Allow: overlap."
    )
    workflow: WorkflowSpec | None = None

    def type_issues(self) -> Iterator[Issue]:
        yield from super().type_issues()
        if self.type == "Workflow" and self.workflow is None:
            yield Issue(("workflow",), "is required with type Workflow (the workflow spec)")

    def cron(self) -> CronSchedule:
        """The parsed schedule (valid once the object has been checked)."""
        return parse_schedule(self.schedule)


class ScheduleStatus(Model):
    """The experiments (or workflows) this schedule made that still run, and its last run."""

    active: list[ObjectReference] | None = None
    last_schedule_time: DateTime | None = Field(default=None, alias="time", json_schema_extra={"nullable": True})


@register
class Schedule(Resource):
    """Schedule makes an experiment or a workflow on a cron schedule, keeping a few past runs."""

    crd: ClassVar[CrdInfo] = CrdInfo(plural="schedules", status_subresource=False)

    spec: ScheduleSpec
    status: ScheduleStatus | None = None

    def is_paused(self) -> bool:
        return (self.metadata.annotations or {}).get(PAUSE_ANNOTATION) == "true"
