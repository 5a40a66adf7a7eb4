"""Workflow: experiments, schedules, checks, custom tasks and pauses, run in series or in parallel.

A workflow is a list of named templates and the name of the one to start with (``entry``).
Serial and Parallel templates name their children; a Task runs a container and picks the
next templates by ``conditionalBranches``; chaos templates embed one experiment spec and
last for the template's ``deadline`` (a ``duration`` in the embedded spec is refused).
The checks mirror Chaos Mesh's workflow webhook, plus references of conditional branches
and loops, which Chaos Mesh only discovers while running.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import ClassVar, Literal

from pydantic import Field

from .base import CrdInfo, Issue, Model, Path, Resource, RuleContext, quote
from .cron import schedule_problem
from .embed import EMBEDDED_KINDS, EmbedChaos
from .k8s.core import Container, Volume
from .k8s.scalars import DateTime, Int64
from .registry import register
from .statuscheck import StatusCheckSpec
from .types import Duration, parse_go_duration

#: Template types that are not an experiment.
FLOW_TEMPLATE_TYPES = ("Task", "Serial", "Parallel", "Suspend", "StatusCheck", "Schedule")
#: Every template type, as Chaos Mesh lists them.
TEMPLATE_TYPES = (*FLOW_TEMPLATE_TYPES, *EMBEDDED_KINDS)
#: What a Schedule may make: an experiment, or (a standalone Schedule only) a Workflow.
SCHEDULE_TYPES = (*EMBEDDED_KINDS, "Workflow")

ConcurrencyPolicy = Literal["Forbid", "Allow"]

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def dns1123_subdomain_problem(name: str) -> str | None:
    """Why ``name`` is not a DNS-1123 subdomain (how Kubernetes names objects), or None."""
    if len(name) > 253:
        return f"{quote(name)} is longer than 253 characters"
    if not _DNS1123_SUBDOMAIN.match(name):
        return (
            f"{quote(name)} is not a DNS-1123 subdomain: lowercase letters, digits, '-' and '.',"
            " starting and ending with a letter or digit"
        )
    return None


class ChaosOnlyScheduleSpec(EmbedChaos):
    """A Schedule inside a workflow template: a cron schedule of one experiment kind."""

    #: Whether ``type: Workflow`` is allowed (only a standalone Schedule can make workflows).
    allows_workflow: ClassVar[bool] = False

    schedule: str = Field(description="When to run: cron fields, a descriptor, or @every <duration>.")
    starting_deadline_seconds: Int64 | None = Field(
        default=None,
        ge=0,
        json_schema_extra={"nullable": True},
        description="How late, in seconds, a missed run may still start.",
    )
    concurrency_policy: ConcurrencyPolicy | None = Field(
        default=None, description="Forbid: skip a run while the previous one lasts; Allow: overlap."
    )
    history_limit: int | None = Field(default=None, ge=1, description="Finished runs kept.")
    type: str = Field(description="The kind each run makes, e.g. PodChaos.")

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        problem = schedule_problem(self.schedule)
        if problem:
            yield Issue(("schedule",), f"{quote(self.schedule)} is not a valid schedule: {problem}")
        yield from self.type_issues()

    def type_issues(self) -> Iterator[Issue]:
        if self.type in EMBEDDED_KINDS:
            yield from self.chaos_issues(self.type, "type")
        elif self.type == "Workflow" and self.allows_workflow:
            return
        else:
            allowed = SCHEDULE_TYPES if self.allows_workflow else tuple(EMBEDDED_KINDS)
            yield Issue(
                ("type",), f"{quote(self.type)} is not a schedule type; use one of {', '.join(allowed)}"
            )


class ConditionalBranch(Model):
    """After a Task: run ``target`` if ``expression`` (over exitCode, stdout) holds; empty: always."""

    target: str
    expression: str | None = None


class Task(Model):
    """A custom step: one container in a pod, with its volumes and pod labels."""

    container: Container | None = None
    volumes: list[Volume] | None = None
    labels: dict[str, str] | None = None


class Template(EmbedChaos):
    """One named step of a workflow; ``templateType`` says which of the other fields it uses."""

    name: str
    template_type: str = Field(
        description="Task, Serial, Parallel, Suspend, StatusCheck, Schedule, or a chaos kind."
    )
    deadline: Duration | None = Field(default=None, description="How long the step may run, a Go duration.")
    task: Task | None = None
    children: list[str] | None = None
    conditional_branches: list[ConditionalBranch] | None = None
    schedule: ChaosOnlyScheduleSpec | None = None
    status_check: StatusCheckSpec | None = None
    abort_with_status_check: bool | None = Field(
        default=None, description="Abort the workflow when the status check fails (StatusCheck only)."
    )

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if not self.name:
            yield Issue(("name",), "is required")
        else:
            problem = dns1123_subdomain_problem(self.name)
            if problem:
                yield Issue(("name",), problem)
        if self.deadline and parse_go_duration(self.deadline) < 0:
            yield Issue(("deadline",), f"{quote(self.deadline)} is negative; a deadline must be ≥ 0")
        kind = self.template_type
        if kind not in TEMPLATE_TYPES:
            types = ", ".join(TEMPLATE_TYPES)
            yield Issue(("templateType",), f"{quote(kind)} is not a template type; use one of {types}")
            return
        yield from self._content_issues(kind)

    def _content_issues(self, kind: str) -> Iterator[Issue]:
        if kind == "Suspend" and not self.deadline:
            yield Issue(("deadline",), "is required with templateType Suspend (how long to pause)")
        if kind == "Task":
            if self.task is None:
                yield Issue(("task",), "is required with templateType Task (the container to run)")
            elif self.task.container is None:
                yield Issue(("task", "container"), "is required with templateType Task")
        if kind == "Schedule" and self.schedule is None:
            yield Issue(("schedule",), "is required with templateType Schedule")
        if kind == "StatusCheck" and self.status_check is None:
            yield Issue(("statusCheck",), "is required with templateType StatusCheck")
        if kind in EMBEDDED_KINDS:
            yield from self.chaos_issues(kind, "templateType")
            spec = self.chaos_spec(kind)
            if spec is not None and getattr(spec, "duration", None) is not None:
                yield Issue(
                    (EMBEDDED_KINDS[kind], "duration"),
                    "must not be set in a workflow; give the template a deadline instead",
                )
        yield from self._unused_field_issues(kind)

    def _unused_field_issues(self, kind: str) -> Iterator[Issue]:
        unused: list[tuple[Path, bool]] = [
            (("task",), self.task is not None and kind != "Task"),
            (("children",), bool(self.children) and kind not in ("Serial", "Parallel")),
            (("conditionalBranches",), bool(self.conditional_branches) and kind != "Task"),
            (("schedule",), self.schedule is not None and kind != "Schedule"),
        ]
        for path, is_unused in unused:
            if is_unused:
                yield Issue(path, f"is not used by templateType {kind}; remove it")
        if kind not in EMBEDDED_KINDS:
            for embedded in self.embedded_kinds():
                yield Issue(
                    (EMBEDDED_KINDS[embedded],),
                    f"is not used by templateType {kind}; only chaos templates embed a spec",
                )

    def references(self, children_only: bool = False) -> Iterator[tuple[Path, str]]:
        """Every template name this one refers to, with the path of the reference."""
        for index, child in enumerate(self.children or []):
            yield ("children", index), child
        if not children_only:
            for index, branch in enumerate(self.conditional_branches or []):
                yield ("conditionalBranches", index, "target"), branch.target


class WorkflowSpec(Model):
    """The templates, and the one to start with."""

    entry: str
    templates: list[Template]

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        names = [template.name for template in self.templates]
        if not self.entry:
            yield Issue(("entry",), "is required: the name of the template to start with")
        elif self.entry not in names:
            yield Issue(("entry",), f"{quote(self.entry)} names no template{_known(names)}")
        if not self.templates:
            yield Issue(("templates",), "must hold at least one template")
            return
        seen: set[str] = set()
        for index, name in enumerate(names):
            if name in seen:
                message = f"{quote(name)} is used by an earlier template; names must be unique"
                yield Issue(("templates", index, "name"), message)
            seen.add(name)
        for index, template in enumerate(self.templates):
            for path, target in template.references():
                if target not in seen:
                    message = f"{quote(target)} names no template{_known(names)}"
                    yield Issue(("templates", index, *path), message)
        yield from self._loop_issues()

    def _loop_issues(self) -> Iterator[Issue]:
        # A Serial or Parallel template that is its own descendant would spawn nodes forever.
        # Loops through conditional branches end when the condition fails (a retry), so pass.
        by_name = {template.name: (index, template) for index, template in enumerate(self.templates)}
        reported: set[str] = set()
        for index, template in enumerate(self.templates):
            loop = self._loop_through(template.name, by_name)
            if loop and template.name not in reported:
                reported.update(loop)
                yield Issue(
                    ("templates", index),
                    f"template {quote(template.name)} leads back to itself ({' → '.join([*loop, loop[0]])})",
                )

    @staticmethod
    def _loop_through(start: str, by_name: dict[str, tuple[int, Template]]) -> list[str] | None:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        visited: set[str] = set()
        while stack:
            name, trail = stack.pop()
            _, template = by_name[name]
            for _, target in template.references(children_only=True):
                if target == start:
                    return trail
                if target in by_name and target not in visited:
                    visited.add(target)
                    stack.append((target, [*trail, target]))
        return None


def _known(names: list[str]) -> str:
    shown = [quote(name) for name in names[:8]]
    more = ", …" if len(names) > 8 else ""
    return f" (templates: {', '.join(shown)}{more})" if names else ""


class WorkflowCondition(Model):
    type: str
    status: str
    reason: str
    start_time: DateTime | None = None


class WorkflowStatus(Model):
    entry_node: str | None = None
    start_time: DateTime | None = None
    end_time: DateTime | None = None
    conditions: list[WorkflowCondition] | None = None


@register
class Workflow(Resource):
    """Workflow runs experiments, schedules, status checks and tasks in series or in parallel."""

    crd: ClassVar[CrdInfo] = CrdInfo(plural="workflows", short_names=("wf",))

    spec: WorkflowSpec
    status: WorkflowStatus | None = None
