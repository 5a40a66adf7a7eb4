"""Which pods and containers an experiment targets: Chaos Mesh's selectors and modes, purely.

Selection reads an :class:`Inventory` -- the cluster's pods, nodes and namespaces as plain
data, parsed from ``kubectl get pods,nodes,namespaces -o yaml`` with :func:`load_inventory`
(or from dicts with :func:`inventory_from_objects`) -- and does no I/O.

Typical use (what ``faultmesh plan FILE --pods PODS.yaml`` does)::

    inventory = load_inventory(text, source="pods.yaml")
    for plan in plan_experiment(experiment, inventory, seed=42):
        selection = plan.selection
        if selection.empty:
            print(plan.where, selection.reason)
        for target in selection.containers:
            print(target.id, target.container_id)

- :func:`plan_experiment` plans every selector of a loaded experiment; :func:`plan_selection`
  plans one. Both answer "nothing chosen" with ``Selection.reason`` and raise
  :class:`SelectionError` (with a field path) only for selectors that cannot be evaluated.
- :func:`select_pods` / :func:`select_containers` are the strict forms Chaos Mesh's controller
  uses: no match raises :class:`NoPodSelectedError`.
- :func:`match_pods` applies the selectors without a mode; :func:`choose` is the mode
  arithmetic alone.
- :class:`Scope` carries the controller settings: cluster- or namespace-scoped, and the
  ``chaos-mesh.org/inject: enabled`` namespace filter.

The exact semantics (how ``pods`` overrides the other selectors, phase exclusion, mode
rounding) are documented in :mod:`.matcher` and :mod:`.modes`.
"""

from __future__ import annotations

from .errors import InventoryError, NoPodSelectedError, SelectionError
from .fields import POD_FIELDS
from .index import PodIndex
from .matcher import Match, Scope, match_pods
from .modes import ModeChoice, choose, percent_count
from .objects import (
    Container,
    ContainerStatus,
    Inventory,
    Namespace,
    Node,
    Pod,
    inventory_from_objects,
    load_inventory,
    parse_namespace,
    parse_node,
    parse_pod,
)
from .targets import (
    ContainerTarget,
    Selection,
    SelectorPlan,
    plan_experiment,
    plan_selection,
    select_containers,
    select_pods,
    selectors_of,
)

__all__ = [
    "POD_FIELDS",
    "Container",
    "ContainerStatus",
    "ContainerTarget",
    "Inventory",
    "InventoryError",
    "Match",
    "ModeChoice",
    "Namespace",
    "NoPodSelectedError",
    "Node",
    "Pod",
    "PodIndex",
    "Scope",
    "Selection",
    "SelectionError",
    "SelectorPlan",
    "choose",
    "inventory_from_objects",
    "load_inventory",
    "match_pods",
    "parse_namespace",
    "parse_node",
    "parse_pod",
    "percent_count",
    "plan_experiment",
    "plan_selection",
    "select_containers",
    "select_pods",
    "selectors_of",
]
