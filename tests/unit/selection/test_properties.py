"""Property tests: indexed selection equals a plain reference reading of the selector.

The reference below is written straight from Chaos Mesh's rules, pod by pod, with no index; any
disagreement points at the index or at a selector kind's semantics.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from faultmesh.api.common import POD_PHASES
from faultmesh.selection import Inventory, Node, Pod, match_pods, plan_selection

from .builders import selector, spec

NAMESPACES = ["a", "b", "c"]
NODES = ["n1", "n2", "n3"]
KEYS = ["app", "tier", "zone"]
VALUES = ["x", "y", "z"]

label_maps = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=3)


@st.composite
def inventories(draw: st.DrawFn) -> Inventory:
    names = draw(st.lists(st.tuples(st.sampled_from(NAMESPACES), st.integers(0, 30)), unique=True, max_size=40))
    pods = [
        Pod(
            namespace=namespace,
            name=f"p{number}",
            labels=draw(label_maps),
            annotations=draw(label_maps),
            node_name=draw(st.sampled_from([*NODES, ""])),
            phase=draw(st.sampled_from(POD_PHASES)),
            host_network=draw(st.booleans()),
        )
        for namespace, number in names
    ]
    nodes = [Node(name, labels=draw(label_maps)) for name in NODES]
    return Inventory(pods=tuple(pods), nodes=tuple(nodes))


@st.composite
def selector_fields(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if draw(st.booleans()):
        fields["namespaces"] = draw(st.lists(st.sampled_from(NAMESPACES), min_size=1, max_size=3))
    if draw(st.booleans()):
        fields["labelSelectors"] = draw(label_maps)
    if draw(st.booleans()):
        fields["expressionSelectors"] = draw(
            st.lists(
                st.one_of(
                    st.builds(
                        lambda key, op, values: {"key": key, "operator": op, "values": values},
                        st.sampled_from(KEYS),
                        st.sampled_from(["In", "NotIn"]),
                        st.lists(st.sampled_from(VALUES), min_size=1, max_size=2),
                    ),
                    st.builds(
                        lambda key, op: {"key": key, "operator": op},
                        st.sampled_from(KEYS),
                        st.sampled_from(["Exists", "DoesNotExist"]),
                    ),
                ),
                max_size=2,
            )
        )
    if draw(st.booleans()):
        fields["annotationSelectors"] = draw(label_maps)
    if draw(st.booleans()):
        fields["fieldSelectors"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "spec.nodeName": st.sampled_from(NODES),
                    "status.phase": st.sampled_from(POD_PHASES),
                    "metadata.namespace": st.sampled_from(NAMESPACES),
                    "spec.hostNetwork": st.sampled_from(["true", "false"]),
                },
            )
        )
    if draw(st.booleans()):
        fields["nodes"] = draw(st.lists(st.sampled_from(NODES), max_size=2))
    if draw(st.booleans()):
        fields["nodeSelectors"] = draw(label_maps)
    if draw(st.booleans()):
        fields["podPhaseSelectors"] = draw(
            st.lists(st.sampled_from([*POD_PHASES, *(f"!{phase}" for phase in POD_PHASES)]), max_size=3)
        )
    return fields


def reference(fields: dict[str, Any], inventory: Inventory) -> list[str]:
    """Chaos Mesh's selection, read literally: every non-empty selector must hold."""
    nodes = inventory.nodes or ()
    node_names = set(fields.get("nodes") or [])
    node_labels = fields.get("nodeSelectors") or {}
    if node_labels:
        node_names |= {n.name for n in nodes if all(n.labels.get(k) == v for k, v in node_labels.items())}
    use_nodes = bool(fields.get("nodes") or node_labels)
    phases = fields.get("podPhaseSelectors") or []
    include = {p for p in phases if not p.startswith("!")}
    exclude = {p[1:] for p in phases if p.startswith("!")}

    def holds(pod: Pod) -> bool:
        if fields.get("namespaces") and pod.namespace not in fields["namespaces"]:
            return False
        if any(pod.labels.get(k) != v for k, v in (fields.get("labelSelectors") or {}).items()):
            return False
        for expression in fields.get("expressionSelectors") or []:
            key, op, values = expression["key"], expression["operator"], expression.get("values") or []
            present = key in pod.labels
            if op == "In" and not (present and pod.labels[key] in values):
                return False
            if op == "NotIn" and present and pod.labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        if any(pod.annotations.get(k) != v for k, v in (fields.get("annotationSelectors") or {}).items()):
            return False
        actual = {
            "spec.nodeName": pod.node_name,
            "status.phase": pod.phase,
            "metadata.namespace": pod.namespace,
            "spec.hostNetwork": str(pod.host_network).lower(),
        }
        if any(actual[k] != v for k, v in (fields.get("fieldSelectors") or {}).items()):
            return False
        if use_nodes and pod.node_name not in node_names:
            return False
        if include and pod.phase not in include:
            return False
        return pod.phase not in exclude

    return sorted(pod.key for pod in inventory.pods if holds(pod))


@settings(max_examples=150, deadline=None)
@given(inventory=inventories(), fields=selector_fields())
def test_indexed_match_equals_the_reference(inventory: Inventory, fields: dict[str, Any]) -> None:
    match = match_pods(spec(**fields), inventory)
    got = [pod.key for pod in match.pods]
    assert got == reference(fields, inventory)
    assert (match.reason is None) == bool(got)


@st.composite
def modes(draw: st.DrawFn) -> tuple[str, str | None]:
    mode = draw(st.sampled_from(["one", "all", "fixed", "fixed-percent", "random-max-percent"]))
    if mode == "fixed":
        return mode, str(draw(st.integers(1, 50)))
    if mode in ("fixed-percent", "random-max-percent"):
        return mode, str(draw(st.integers(1, 100)))
    return mode, None


@settings(max_examples=100, deadline=None)
@given(inventory=inventories(), fields=selector_fields(), mode=modes(), seed=st.integers(0, 2**31))
def test_plan_is_a_bounded_reproducible_subset(
    inventory: Inventory, fields: dict[str, Any], mode: tuple[str, str | None], seed: int
) -> None:
    name, value = mode
    chosen = plan_selection(selector(name, value, **fields), inventory, seed=seed)
    again = plan_selection(selector(name, value, **fields), inventory, seed=seed)
    assert chosen == again
    matched = [pod.key for pod in chosen.matched]
    picked = [pod.key for pod in chosen.pods]
    assert set(picked) <= set(matched) and len(set(picked)) == len(picked)
    count = len(matched)
    if count == 0:
        assert chosen.reason is not None and picked == []
        return
    if name == "one":
        assert len(picked) == 1
    elif name == "all":
        assert picked == matched
    elif name == "fixed":
        assert len(picked) == min(int(value or 0), count)
    elif name == "fixed-percent":
        assert len(picked) == math.ceil(count * int(value or 0) / 100)
    else:
        assert len(picked) <= math.ceil(count * int(value or 0) / 100)
