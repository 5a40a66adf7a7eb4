"""WorkflowNode: one running step of a Workflow, made by the controller from a template.

Users do not write these; the model exists so the controller, the CLI and the dashboard read
and write them typed. The node copies its template (with ``deadline`` turned into a time) and
records what it spawned: the experiment, the child nodes, the branch decisions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from pydantic import Field

from .base import CrdInfo, Issue, Model, Resource, RuleContext, quote
from .embed import EMBEDDED_KINDS, EmbedChaos
from .k8s.core import LocalObjectReference, TypedLocalObjectReference
from .k8s.scalars import DateTime
from .registry import register
from .schedule import ScheduleSpec
from .statuscheck import StatusCheckSpec
from .workflow import TEMPLATE_TYPES, ConditionalBranch, Task

#: Label naming the workflow a node belongs to.
WORKFLOW_LABEL = "chaos-mesh.org/workflow"
#: Label naming the node that created an object.
CONTROLLED_BY_LABEL = "chaos-mesh.org/controlled-by"
#: Annotation on a Workflow asking it to abort.
ABORT_ANNOTATION = "workflow.chaos-mesh.org/abort"


class WorkflowNodeSpec(EmbedChaos):
    """The template this node runs, from which workflow, and when it started and must end."""

    template_name: str
    workflow_name: str
    type: str = Field(description="The template type the node runs.")
    start_time: DateTime
    deadline: DateTime | None = None
    task: Task | None = None
    children: list[str] | None = None
    conditional_branches: list[ConditionalBranch] | None = None
    schedule: ScheduleSpec | None = None
    status_check: StatusCheckSpec | None = None
    abort_with_status_check: bool | None = None

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if self.type in EMBEDDED_KINDS:
            yield from self.chaos_issues(self.type, "type")
        elif self.type not in TEMPLATE_TYPES:
            types = ", ".join(TEMPLATE_TYPES)
            yield Issue(("type",), f"{quote(self.type)} is not a template type; use one of {types}")


class ConditionalBranchStatus(Model):
    """Whether one branch's expression held (True, False, Unknown)."""

    target: str
    evaluation_result: str


class ConditionalBranchesStatus(Model):
    branches: list[ConditionalBranchStatus] | None = None
    #: The values the expressions saw (exit code, stdout).
    context: list[str] | None = None


class WorkflowNodeCondition(Model):
    type: str
    status: str
    reason: str


class WorkflowNodeStatus(Model):
    chaos_resource: TypedLocalObjectReference | None = None
    conditional_branches_status: ConditionalBranchesStatus | None = None
    active_children: list[LocalObjectReference] | None = None
    finished_children: list[LocalObjectReference] | None = None
    conditions: list[WorkflowNodeCondition] | None = None


@register
class WorkflowNode(Resource):
    """WorkflowNode is one running step of a Workflow, created and updated by the controller."""

    crd: ClassVar[CrdInfo] = CrdInfo(plural="workflownodes", short_names=("wfn",))

    spec: WorkflowNodeSpec
    status: WorkflowNodeStatus | None = None
