"""From a selector and an inventory to the chosen pods and containers.

:func:`select_pods` and :func:`select_containers` behave as Chaos Mesh's selectors do (no
match is an error). :func:`plan_selection` and :func:`plan_experiment` are what
``faultmesh plan`` calls: they answer "none" with a reason instead of raising, and keep the
notes a user should read (pods named but missing, containers absent, terminating pods).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from faultmesh.api.base import Model, Path, format_path, walk
from faultmesh.api.common import ContainerSelector, PodSelector

from .errors import NoPodSelectedError, SelectionError
from .matcher import Scope, match_pods
from .modes import choose
from .objects import Inventory, Pod


@dataclass(frozen=True)
class ContainerTarget:
    """One container to inject into: the pod, the container's name and its runtime id."""

    pod: Pod
    container_name: str
    #: ``<runtime>://<id>`` from the pod's status; None while the container has not started.
    container_id: str | None

    @property
    def id(self) -> str:
        """``namespace/pod/container``: the record id Chaos Mesh gives a container target."""
        return f"{self.pod.key}/{self.container_name}"


@dataclass(frozen=True)
class Selection:
    """What one selector picked: the matched pods, the chosen ones, and their containers."""

    #: Every pod the selector matched, before the mode chose among them.
    matched: tuple[Pod, ...]
    #: The pods the mode chose.
    pods: tuple[Pod, ...]
    #: The chosen containers (only for container selectors, else empty).
    containers: tuple[ContainerTarget, ...]
    #: Whether the selector picks containers (a ContainerSelector) or whole pods.
    selects_containers: bool
    #: How the mode arrived at its count (empty when nothing matched).
    explanation: str
    #: Why nothing was chosen, or None when something was.
    reason: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self.reason is not None


@dataclass(frozen=True)
class SelectorPlan:
    """One selector found in an experiment, where it sits, and what it selected."""

    path: Path
    selection: Selection

    @property
    def where(self) -> str:
        return format_path(self.path)


def _containers(selector: ContainerSelector, pods: tuple[Pod, ...]) -> tuple[tuple[ContainerTarget, ...], list[str]]:
    """Chaos Mesh's container rule: the named containers, in pod order; none named → the first."""
    targets: list[ContainerTarget] = []
    notes: list[str] = []
    names = set(selector.container_names or [])
    for pod in pods:
        if not names:
            if not pod.containers:
                notes.append(f"pod {pod.key} has no containers, skipped")
                continue
            first = pod.containers[0].name
            targets.append(ContainerTarget(pod, first, pod.container_id(first)))
            continue
        present = [container.name for container in pod.containers if container.name in names]
        absent = sorted(names.difference(present))
        if absent:
            notes.append(f"pod {pod.key} has no container named {', '.join(absent)}")
        targets.extend(ContainerTarget(pod, name, pod.container_id(name)) for name in present)
    return tuple(targets), notes


def plan_selection(
    selector: PodSelector,
    inventory: Inventory,
    *,
    rng: random.Random | None = None,
    seed: int | str | None = None,
    scope: Scope | None = None,
) -> Selection:
    """Select pods (and, for a ContainerSelector, containers) without raising on "none".

    ``rng`` (or a ``seed`` to make one) drives the mode's random choice, so the same seed and
    inventory give the same plan. Raises :class:`SelectionError` only when the selector cannot
    be evaluated (an unsupported field, a malformed label, a bad mode value), with the field
    path relative to ``selector``.
    """
    rng = rng or random.Random(seed)
    selects_containers = selector.selects_containers()
    try:
        match = match_pods(selector.selector, inventory, scope)
    except SelectionError as error:
        raise error.under(("selector",)) from None
    notes = list(match.notes)
    if not match.pods:
        # A bad mode value is an error even when nothing matched: report it, not the emptiness.
        choose(selector.mode, selector.value, 1, random.Random(0))
        return Selection((), (), (), selects_containers, "", match.reason, tuple(notes))
    choice = choose(selector.mode, selector.value, len(match.pods), rng)
    pods = tuple(match.pods[position] for position in choice.positions)
    notes.extend(
        f"pod {pod.key} is terminating (deletionTimestamp {pod.deletion_timestamp}); Chaos Mesh selects it all the same"
        for pod in pods
        if pod.terminating
    )
    if not pods:
        empty_reason = f"no pod chosen: {choice.explanation}"
        return Selection(match.pods, (), (), selects_containers, choice.explanation, empty_reason, tuple(notes))
    containers: tuple[ContainerTarget, ...] = ()
    reason: str | None = None
    if isinstance(selector, ContainerSelector) and selects_containers:
        containers, container_notes = _containers(selector, pods)
        notes.extend(container_notes)
        if not containers:
            named = ", ".join(selector.container_names or [])
            if len(pods) == 1:
                lacks = f"no container named {named}" if named else "no containers"
                reason = f"no container chosen: the chosen pod {pods[0].key} has {lacks}"
            else:
                wanted = f"a container named {named}" if named else "any container"
                reason = f"no container chosen: none of the {len(pods)} chosen pods has {wanted}"
    return Selection(match.pods, pods, containers, selects_containers, choice.explanation, reason, tuple(notes))


def select_pods(
    selector: PodSelector, inventory: Inventory, *, rng: random.Random, scope: Scope | None = None
) -> list[Pod]:
    """Chaos Mesh's ``SelectAndFilterPods``: the chosen pods, or :class:`NoPodSelectedError`."""
    try:
        match = match_pods(selector.selector, inventory, scope)
    except SelectionError as error:
        raise error.under(("selector",)) from None
    if not match.pods:
        raise NoPodSelectedError(match.reason or "no pod matched")
    choice = choose(selector.mode, selector.value, len(match.pods), rng)
    return [match.pods[position] for position in choice.positions]


def select_containers(
    selector: ContainerSelector, inventory: Inventory, *, rng: random.Random, scope: Scope | None = None
) -> list[ContainerTarget]:
    """Chaos Mesh's container selector: the chosen pods' named (or first) containers."""
    pods = select_pods(selector, inventory, rng=rng, scope=scope)
    targets, _ = _containers(selector, tuple(pods))
    return list(targets)


def selectors_of(model: Model) -> list[tuple[Path, PodSelector]]:
    """Every pod selector inside an experiment (or Schedule, Workflow), with its field path.

    A PodChaos has one (``spec``); a NetworkChaos with a target has two (``spec`` and
    ``spec.target``); a Workflow has one per templated experiment.
    """
    return [(path, node) for node, path in walk(model) if isinstance(node, PodSelector)]


def plan_experiment(
    model: Model,
    inventory: Inventory,
    *,
    seed: int | str | None = None,
    scope: Scope | None = None,
) -> list[SelectorPlan]:
    """Plan every selector of a loaded experiment against ``inventory``.

    Each selector draws from its own random stream, derived from ``seed`` and its path, so
    adding a selector elsewhere in the manifest does not change what another one picks. With
    ``seed=None`` the choice is random. A :class:`SelectionError` names the full field path.
    """
    plans: list[SelectorPlan] = []
    for path, selector in selectors_of(model):
        rng = random.Random(None if seed is None else f"{seed}/{format_path(path)}")
        try:
            selection = plan_selection(selector, inventory, rng=rng, scope=scope)
        except SelectionError as error:
            raise error.under(path) from None
        plans.append(SelectorPlan(path, selection))
    return plans
