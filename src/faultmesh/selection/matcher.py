"""Which pods a ``PodSelectorSpec`` matches, with Chaos Mesh's semantics.

Two paths, as in Chaos Mesh's ``SelectPods``:

- **``pods`` is set**: exactly the named pods (namespace → names) are taken, and every other
  selector is ignored -- Chaos Mesh fetches them by name and never runs its selector chain. A
  name that does not exist is passed over with a note. Namespaces outside a namespace-scoped
  controller's target, or not opted in when the namespace filter is on, are passed over too.
- **otherwise** every selector narrows the pods in scope (they are ANDed):
  ``namespaces`` (none: the whole cluster, or the target namespace of a namespace-scoped
  controller), ``labelSelectors`` + ``expressionSelectors`` (one Kubernetes label selector),
  ``fieldSelectors`` (exact matches on Kubernetes' selectable pod fields),
  ``annotationSelectors`` (exact matches), ``nodes`` + ``nodeSelectors`` (the pod's node is
  one of the named nodes *or* of the nodes whose labels match -- the two lists are united),
  and ``podPhaseSelectors`` (``Running`` includes, ``!Failed`` excludes: a pod must have one of
  the included phases, if any are given, and none of the excluded ones).

The namespace filter (the controller's ``enableFilterNamespace``) keeps only namespaces
annotated ``chaos-mesh.org/inject: enabled``. Chaos Mesh checks it for the listed namespaces
only; faultmesh also applies it to cluster-wide selection so the opt-in cannot be bypassed by
leaving ``namespaces`` empty (Chaos Mesh's webhook always fills it in, so this does not arise
there). Pods being deleted (``deletionTimestamp`` set) are selected like any other, as in
Chaos Mesh. Matched pods come back sorted by namespace and name, without duplicates (Chaos Mesh
would list a namespace named twice twice).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from faultmesh.api.base import Path, quote
from faultmesh.api.common import INJECT_ANNOTATION, POD_PHASES, PodSelectorSpec

from .errors import SelectionError
from .fields import field_value, pod_field
from .index import PodIndex
from .labels import OPERATORS, Requirement, label_key_problem, label_value_problem, matches_all
from .objects import Inventory, Pod


@dataclass(frozen=True)
class Scope:
    """The controller settings that bound selection (Chaos Mesh's controller configuration).

    ``cluster_scoped=False`` confines selection to ``target_namespace``; ``filter_namespaces``
    turns on the opt-in filter (Chaos Mesh's ``enableFilterNamespace``).
    """

    cluster_scoped: bool = True
    target_namespace: str | None = None
    filter_namespaces: bool = False

    def __post_init__(self) -> None:
        if not self.cluster_scoped and not self.target_namespace:
            raise ValueError("a namespace-scoped selection needs a target namespace")


@dataclass(frozen=True)
class Match:
    """The pods a selector matched (before any mode), why none did, and what was passed over."""

    pods: tuple[Pod, ...]
    reason: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stage:
    """One selector kind, compiled: a predicate on a pod and, where possible, an index lookup."""

    name: str
    description: str
    predicate: Callable[[Pod], bool]
    lookup: Callable[[PodIndex], set[int]] | None = None


@dataclass
class CompiledSelector:
    """A validated ``PodSelectorSpec``, ready to run against an inventory's index."""

    stages: list[Stage] = field(default_factory=list)

    def matches(self, pod: Pod) -> bool:
        """Whether ``pod`` passes every selector (the namespace scope aside)."""
        return all(stage.predicate(pod) for stage in self.stages)


def _dedupe(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _names(values: Iterable[str]) -> str:
    return ", ".join(values)


# ---------------------------------------------------------------------------------------------
# Compiling the selector kinds


def _label_stage(spec: PodSelectorSpec) -> Stage | None:
    requirements: list[Requirement] = []
    for key, value in (spec.label_selectors or {}).items():
        problem = label_key_problem(key) or label_value_problem(value)
        if problem:
            raise SelectionError(problem, ("labelSelectors", key))
        requirements.append(Requirement(key, "Equals", frozenset((value,))))
    for position, expression in enumerate(spec.expression_selectors or []):
        path: Path = ("expressionSelectors", position)
        key_problem = label_key_problem(expression.key)
        if key_problem:
            raise SelectionError(key_problem, (*path, "key"))
        if expression.operator not in OPERATORS:
            raise SelectionError(
                f"{quote(expression.operator)} is not an operator; use one of {', '.join(OPERATORS)}",
                (*path, "operator"),
            )
        values = expression.values or []
        if expression.operator in ("In", "NotIn") and not values:
            raise SelectionError(f"must be non-empty for operator {expression.operator}", (*path, "values"))
        if expression.operator in ("Exists", "DoesNotExist") and values:
            raise SelectionError(f"must be empty for operator {expression.operator}", (*path, "values"))
        for value_position, value in enumerate(values):
            value_problem = label_value_problem(value)
            if value_problem:
                raise SelectionError(value_problem, (*path, "values", value_position))
        requirements.append(Requirement(expression.key, expression.operator, frozenset(values)))
    if not requirements:
        return None
    indexed = [req for req in requirements if req.operator in ("Equals", "In")]

    def lookup(index: PodIndex) -> set[int]:
        found: set[int] | None = None
        for requirement in indexed:
            positions = index.with_label(requirement.key, requirement.values)
            found = positions if found is None else found & positions
        return found if found is not None else set()

    return Stage(
        name="labelSelectors/expressionSelectors" if spec.expression_selectors else "labelSelectors",
        description=", ".join(requirement.describe() for requirement in requirements),
        predicate=lambda pod: matches_all(requirements, pod.labels),
        lookup=lookup if indexed else None,
    )


def _field_stage(spec: PodSelectorSpec) -> Stage | None:
    terms: list[tuple[str, str]] = []
    for key, value in (spec.field_selectors or {}).items():
        try:
            terms.append((pod_field(key), value))
        except ValueError as error:
            raise SelectionError(str(error), ("fieldSelectors", key)) from None
    if not terms:
        return None
    nodes = {value for key, value in terms if key == "spec.nodeName"}
    phases = {value for key, value in terms if key == "status.phase"}

    def lookup(index: PodIndex) -> set[int]:
        found: set[int] | None = None
        if nodes:
            found = index.on_nodes(nodes) if len(nodes) == 1 else set()
        if phases:
            by_phase = index.in_phases(phases) if len(phases) == 1 else set()
            found = by_phase if found is None else found & by_phase
        return found if found is not None else set()

    return Stage(
        name="fieldSelectors",
        description=", ".join(f"{key}={value}" for key, value in terms),
        predicate=lambda pod: all(field_value(pod, key) == value for key, value in terms),
        lookup=lookup if nodes or phases else None,
    )


def _annotation_stage(spec: PodSelectorSpec) -> Stage | None:
    terms: list[tuple[str, str]] = []
    for key, value in (spec.annotation_selectors or {}).items():
        if not key:
            continue  # Chaos Mesh drops an empty key when it builds the selector string.
        problem = label_key_problem(key) or label_value_problem(value)
        if problem:
            raise SelectionError(
                f"{problem} (annotation selectors are matched with label selector syntax)",
                ("annotationSelectors", key),
            )
        terms.append((key, value))
    if not terms:
        return None

    def predicate(pod: Pod) -> bool:
        annotations = pod.annotations
        return all(key in annotations and annotations[key] == value for key, value in terms)

    return Stage(
        name="annotationSelectors",
        description=", ".join(f"{key}={value}" for key, value in terms),
        predicate=predicate,
    )


def _node_stage(spec: PodSelectorSpec, inventory: Inventory) -> Stage | None:
    if not spec.nodes and not spec.node_selectors:
        return None
    table = inventory.node_table
    names: set[str] = set()
    parts: list[str] = []
    for position, name in enumerate(spec.nodes or []):
        if table is not None and name not in table:
            raise SelectionError(f"node {quote(name)} does not exist", ("nodes", position))
        names.add(name)
    if spec.nodes:
        parts.append(_names(_dedupe(spec.nodes)))
    if spec.node_selectors:
        if table is None:
            raise SelectionError(
                "needs the cluster's Node objects to read node labels, and the inventory holds none",
                ("nodeSelectors",),
            )
        wanted = spec.node_selectors
        selected = sorted(
            node.name
            for node in table.values()
            if all(key in node.labels and node.labels[key] == value for key, value in wanted.items())
        )
        names.update(selected)
        terms = ", ".join(f"{key}={value}" for key, value in wanted.items())
        found = f"nodes {_names(selected)}" if selected else "no node"
        parts.append(f"{terms} (matching {found})")
    return Stage(
        name="nodes/nodeSelectors"
        if spec.nodes and spec.node_selectors
        else ("nodes" if spec.nodes else "nodeSelectors"),
        description="; ".join(parts),
        predicate=lambda pod: pod.node_name in names,
        lookup=lambda index: index.on_nodes(names),
    )


def _phase_stage(spec: PodSelectorSpec) -> Stage | None:
    include: set[str] = set()
    exclude: set[str] = set()
    for position, text in enumerate(spec.pod_phase_selectors or []):
        phase = text.removeprefix("!")
        if phase not in POD_PHASES:
            raise SelectionError(
                f"{quote(text)} is not a pod phase; use one of {', '.join(POD_PHASES)} (a leading ! excludes it)",
                ("podPhaseSelectors", position),
            )
        (exclude if text.startswith("!") else include).add(phase)
    if not include and not exclude:
        return None

    def predicate(pod: Pod) -> bool:
        return (not include or pod.phase in include) and pod.phase not in exclude

    return Stage(
        name="podPhaseSelectors",
        description=", ".join(spec.pod_phase_selectors or []),
        predicate=predicate,
        lookup=(lambda index: index.in_phases(include)) if include else None,
    )


def compile_selector(spec: PodSelectorSpec, inventory: Inventory) -> CompiledSelector:
    """Validate ``spec`` and compile its selectors (namespaces and ``pods`` aside).

    Raises :class:`SelectionError` (path relative to the selector spec) for a selector that
    Kubernetes or Chaos Mesh would refuse.
    """
    stages = [
        _label_stage(spec),
        _field_stage(spec),
        _annotation_stage(spec),
        _node_stage(spec, inventory),
        _phase_stage(spec),
    ]
    return CompiledSelector([stage for stage in stages if stage is not None])


# ---------------------------------------------------------------------------------------------
# Namespaces


class _NamespaceGate:
    """The namespace opt-in filter, with the notes it leaves when it turns a namespace away."""

    def __init__(self, inventory: Inventory, scope: Scope):
        self.enabled = scope.filter_namespaces
        self.table = inventory.namespace_table
        self.notes: list[str] = []
        if self.enabled and self.table is None:
            raise SelectionError(
                "the namespace filter is on, but the inventory holds no Namespace objects to read "
                f"the {INJECT_ANNOTATION} annotation from"
            )

    def allows(self, namespace: str) -> bool:
        if not self.enabled or self.table is None:
            return True
        found = self.table.get(namespace)
        if found is None:
            self.notes.append(f"namespace {quote(namespace)} does not exist, so it cannot have opted in")
            return False
        if not found.inject_enabled:
            self.notes.append(f"namespace {quote(namespace)} has not opted in ({INJECT_ANNOTATION}: enabled), skipped")
            return False
        return True


def _check_namespace_scope(spec: PodSelectorSpec, scope: Scope) -> None:
    # Chaos Mesh refuses, rather than narrows, namespaces a namespace-scoped controller cannot see.
    if scope.cluster_scoped:
        return
    namespaces = spec.namespaces or []
    if len(namespaces) > 1:
        raise SelectionError(
            f"names {len(namespaces)} namespaces, but a namespace-scoped controller selects only in "
            f"{quote(scope.target_namespace)}",
            ("namespaces",),
        )
    if namespaces and namespaces[0] != scope.target_namespace:
        raise SelectionError(
            f"{quote(namespaces[0])} is outside the controller's target namespace {quote(scope.target_namespace)}",
            ("namespaces", 0),
        )


# ---------------------------------------------------------------------------------------------
# Matching


def match_pods(spec: PodSelectorSpec, inventory: Inventory, scope: Scope | None = None) -> Match:
    """The pods ``spec`` matches in ``inventory``, sorted by namespace and name.

    Never raises for "nothing matched" (``Match.reason`` says why); raises
    :class:`SelectionError` for a selector that cannot be evaluated.
    """
    scope = scope or Scope()
    if spec.pods:
        return _match_named(spec, inventory, scope)
    _check_namespace_scope(spec, scope)
    compiled = compile_selector(spec, inventory)
    gate = _NamespaceGate(inventory, scope)
    index = inventory.index

    if spec.namespaces:
        wanted: list[str] | None = _dedupe(spec.namespaces)
    elif not scope.cluster_scoped:
        wanted = [scope.target_namespace or ""]
    else:
        wanted = None
    listed = wanted if wanted is not None else index.namespaces
    allowed = sorted(namespace for namespace in listed if gate.allows(namespace))
    if wanted is None and gate.enabled:
        where = "in opted-in namespaces"
    elif wanted is None:
        where = "in the cluster"
    else:
        # Name the namespaces actually searched: the filter may have turned some away.
        shown = allowed if gate.enabled and allowed else wanted
        where = f"in namespace{'s' if len(shown) > 1 else ''} {_names(shown)}"

    candidates: set[int] | None = None
    for stage in compiled.stages:
        if stage.lookup is not None:
            found = stage.lookup(index)
            candidates = found if candidates is None else candidates & found
    if candidates is None:
        positions: Iterable[int] = (position for namespace in allowed for position in index.in_namespace(namespace))
    else:
        allowed_set = set(allowed)
        positions = sorted(position for position in candidates if index.pods[position].namespace in allowed_set)
    pods = tuple(pod for pod in (index.pods[position] for position in positions) if compiled.matches(pod))
    if pods:
        return Match(pods, None, tuple(gate.notes))
    scoped = [index.pods[position] for namespace in allowed for position in index.in_namespace(namespace)]
    reason = _explain(compiled, scoped, where=where, wanted=wanted, gate=gate, inventory=inventory)
    return Match((), reason, tuple(gate.notes))


def _explain(
    compiled: CompiledSelector,
    scoped: list[Pod],
    *,
    where: str,
    wanted: list[str] | None,
    gate: _NamespaceGate,
    inventory: Inventory,
) -> str:
    """Why nothing matched: the first selector, in order, that left no pod standing."""
    if not scoped:
        detail = ""
        if gate.notes:
            detail = f" ({'; '.join(gate.notes)})"
        elif wanted is not None and inventory.namespace_table is not None:
            missing = [name for name in wanted if name not in inventory.namespace_table]
            if missing:
                detail = f" (no such namespace: {_names(missing)})"
        return f"no pod matched: there is no pod {where}{detail}"
    steps = [f"{_plural(len(scoped), 'pod')} {where}"]
    remaining = scoped
    for stage in compiled.stages:
        remaining = [pod for pod in remaining if stage.predicate(pod)]
        if not remaining:
            steps.append(f"none of them match {stage.name} {stage.description}")
            break
        steps.append(f"{len(remaining)} of them match {stage.name} {stage.description}")
    return "no pod matched: " + "; ".join(steps)


_IGNORED_WITH_PODS = (
    ("labelSelectors", "label_selectors"),
    ("expressionSelectors", "expression_selectors"),
    ("annotationSelectors", "annotation_selectors"),
    ("fieldSelectors", "field_selectors"),
    ("nodes", "nodes"),
    ("nodeSelectors", "node_selectors"),
    ("podPhaseSelectors", "pod_phase_selectors"),
)


def _ignored_with_pods(spec: PodSelectorSpec) -> Iterator[str]:
    for alias, name in _IGNORED_WITH_PODS:
        if getattr(spec, name):
            yield alias


def _match_named(spec: PodSelectorSpec, inventory: Inventory, scope: Scope) -> Match:
    gate = _NamespaceGate(inventory, scope)
    index = inventory.index
    notes: list[str] = []
    ignored = list(_ignored_with_pods(spec))
    if ignored:
        notes.append(
            f"pods names the pods outright, so (as in Chaos Mesh) {_names(ignored)} "
            f"{'is' if len(ignored) == 1 else 'are'} ignored"
        )
    positions: set[int] = set()
    missing: list[str] = []
    for namespace, names in sorted((spec.pods or {}).items()):
        if not scope.cluster_scoped and namespace != scope.target_namespace:
            notes.append(
                f"namespace {quote(namespace)} is outside the controller's target namespace "
                f"{quote(scope.target_namespace)}, skipped"
            )
            continue
        if not gate.allows(namespace):
            continue
        for name in _dedupe(names):
            position = index.position(namespace, name)
            if position is None:
                missing.append(f"{namespace}/{name}")
            else:
                positions.add(position)
    if missing:
        notes.append(f"no such pod: {_names(missing)} (passed over)")
    notes[len(notes) :] = gate.notes
    pods = tuple(index.pods[position] for position in sorted(positions))
    reason = None
    if not pods:
        skipped = [note for note in notes if not note.startswith("pods names")]
        reason = "no pod matched: none of the pods named in pods could be taken"
        if skipped:
            reason += f" ({'; '.join(skipped)})"
    return Match(pods, reason, tuple(notes))
