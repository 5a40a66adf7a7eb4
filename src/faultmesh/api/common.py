"""Pieces shared by the experiment kinds: pod selectors, modes, and the chaos status.

Mirrors Chaos Mesh's ``selector.go``, ``common_types.go`` and ``common_webhook.go``.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from .base import Issue, Model, Resource, RuleContext, quote

PAUSE_ANNOTATION = "experiment.chaos-mesh.org/pause"
CLEAN_FINALIZER_ANNOTATION = "chaos-mesh.chaos-mesh.org/cleanFinalizer"
INJECT_ANNOTATION = "chaos-mesh.org/inject"
RECORDS_FINALIZER = "chaos-mesh/records"


class SelectorMode(StrEnum):
    ONE = "one"
    ALL = "all"
    FIXED = "fixed"
    FIXED_PERCENT = "fixed-percent"
    RANDOM_MAX_PERCENT = "random-max-percent"


Mode = Literal["one", "all", "fixed", "fixed-percent", "random-max-percent"]

POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")


class LabelSelectorRequirement(Model):
    """A set-based label expression: key, operator (In, NotIn, Exists, DoesNotExist), values."""

    key: str
    operator: str
    values: list[str] | None = Field(default=None, json_schema_extra={"x-kubernetes-list-type": "atomic"})

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        operators = ("In", "NotIn", "Exists", "DoesNotExist")
        if self.operator not in operators:
            yield Issue(
                ("operator",),
                f"{quote(self.operator)} is not an operator; use one of {', '.join(operators)}",
            )
        elif self.operator in ("In", "NotIn") and not self.values:
            yield Issue(("values",), f"must be non-empty for operator {self.operator}")
        elif self.operator in ("Exists", "DoesNotExist") and self.values:
            yield Issue(("values",), f"must be empty for operator {self.operator}")


class GenericSelectorSpec(Model):
    """Selects objects by namespace, fields, labels, label expressions and annotations."""

    namespaces: list[str] | None = None
    field_selectors: dict[str, str] | None = None
    label_selectors: dict[str, str] | None = None
    expression_selectors: list[LabelSelectorRequirement] | None = None
    annotation_selectors: dict[str, str] | None = None


class PodSelectorSpec(GenericSelectorSpec):
    """Adds nodes, node labels, explicit pod names and pod phases to the generic selector."""

    nodes: list[str] | None = None
    pods: dict[str, list[str]] | None = None
    node_selectors: dict[str, str] | None = None
    pod_phase_selectors: list[str] | None = None

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        for index, phase in enumerate(self.pod_phase_selectors or []):
            if phase.removeprefix("!") not in POD_PHASES:
                yield Issue(
                    ("podPhaseSelectors", index),
                    f"{quote(phase)} is not a pod phase; use one of {', '.join(POD_PHASES)}"
                    " (a leading ! excludes it)",
                )

    def default_namespace(self, namespace: str | None) -> None:
        if not self.namespaces and namespace:
            self.namespaces = [namespace]


class PodSelector(Model):
    """Which pods (selector), and how many of them (mode, value)."""

    selector: PodSelectorSpec
    mode: Mode
    value: str | None = None

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from mode_value_issues(self.mode, self.value)

    def selects_containers(self) -> bool:
        """Whether the targets are containers (else whole pods), as Chaos Mesh's GetSelectorSpecs says."""
        return False

    def apply_defaults(self, ctx: RuleContext) -> None:
        self.selector.default_namespace(ctx.namespace)


def mode_value_issues(mode: str, value: str | None) -> Iterator[Issue]:
    """Chaos Mesh's mode/value rule: fixed needs an integer > 0, percents one in (0, 100]."""
    text = value or ""
    if mode == SelectorMode.FIXED:
        try:
            number = int(text)
        except ValueError:
            yield Issue(("value",), f"{quote(text)} is not an integer; mode fixed needs a count > 0")
            return
        if number <= 0:
            yield Issue(("value",), f"{quote(text)} must be greater than 0 with mode fixed")
    elif mode in (SelectorMode.FIXED_PERCENT, SelectorMode.RANDOM_MAX_PERCENT):
        try:
            percent = int(text)
        except ValueError:
            yield Issue(
                ("value",), f"{quote(text)} is not an integer; mode {mode} needs a percent in (0,100]"
            )
            return
        if not 0 < percent <= 100:
            yield Issue(("value",), f"{quote(text)} must be in (0,100] with mode {mode}")


class ContainerSelector(PodSelector):
    """A pod selector plus the containers to hit (empty: the pod's first container)."""

    container_names: list[str] | None = None

    def selects_containers(self) -> bool:
        return True


class ChaosCondition(Model):
    type: str
    status: str
    reason: str | None = None


class RecordEvent(Model):
    """One apply or recover attempt on one target."""

    type: str = Field(description="Type means the stage of this event")
    operation: str = Field(description="Operation represents the operation we are doing")
    message: str | None = None
    timestamp: str = Field(json_schema_extra={"format": "date-time"})


class Record(Model):
    """The state of one target (pod or container) of an experiment."""

    id: str
    selector_key: str
    phase: str
    injected_count: int
    recovered_count: int
    events: list[RecordEvent] | None = None


class ExperimentStatus(Model):
    desired_phase: Literal["Run", "Stop"] | None = None
    container_records: list[Record] | None = None


class ChaosStatus(Model):
    """Conditions plus the experiment's records: the status every chaos kind shares."""

    conditions: list[ChaosCondition] | None = None
    experiment: ExperimentStatus


class ChaosResource(Resource):
    """An experiment kind: its spec may not change after creation, as in Chaos Mesh."""

    immutable_spec = True


def spec_optional_in_crd(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` for kinds whose Chaos Mesh CRD does not require ``spec``.

    Go's ``json:"spec,omitempty"`` leaves spec out of the CRD's required list (HTTPChaos,
    JVMChaos, ...); the model still requires it, so a manifest without one is refused on load.
    """
    required = [name for name in schema.get("required", []) if name != "spec"]
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)
