"""From selectors to chosen pods and containers: the strict forms and the planning API."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from faultmesh.api.base import Model
from faultmesh.api.common import PodSelector
from faultmesh.api.loader import ManifestError, load_text
from faultmesh.selection import (
    NoPodSelectedError,
    Scope,
    SelectionError,
    plan_experiment,
    plan_selection,
    select_containers,
    select_pods,
    selectors_of,
)

from .builders import cluster, container_selector, inventory, keys, pod, selector

WEB_ABCDE = "shop/web-7d9c8f6b5-abcde"


# --- containers -------------------------------------------------------------------------------


def test_no_container_names_means_each_pods_first_container() -> None:
    targets = select_containers(
        container_selector(labelSelectors={"app": "web"}, namespaces=["shop"], podPhaseSelectors=["Running"]),
        cluster(),
        rng=random.Random(0),
    )
    assert [(target.id, target.container_id) for target in targets] == [
        (
            "shop/web-6c8b7a9d4-pqrst/web",
            "containerd://7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d",
        ),
        (
            "shop/web-7d9c8f6b5-abcde/web",
            "containerd://4f6a0c1e9b2d3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f80",
        ),
        (
            "shop/web-7d9c8f6b5-fghij/web",
            "containerd://5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b",
        ),
    ]


def test_named_containers_in_pod_order_and_missing_ones_skipped() -> None:
    selection = plan_selection(
        container_selector(
            container_names=["istio-proxy", "web", "sidecar"], fieldSelectors={"metadata.name": "web-7d9c8f6b5-abcde"}
        ),
        cluster(),
        seed=1,
    )
    assert [target.id for target in selection.containers] == [f"{WEB_ABCDE}/web", f"{WEB_ABCDE}/istio-proxy"]
    assert selection.notes == (f"pod {WEB_ABCDE} has no container named sidecar",)
    assert selection.reason is None and selection.selects_containers


def test_a_pending_container_has_no_id_yet() -> None:
    (target,) = select_containers(container_selector(podPhaseSelectors=["Pending"]), cluster(), rng=random.Random(0))
    assert (target.id, target.container_id) == ("shop/web-7d9c8f6b5-klmno/web", None)


def test_reason_when_no_chosen_pod_has_the_container() -> None:
    selection = plan_selection(container_selector(container_names=["redis"], namespaces=["shop"]), cluster(), seed=0)
    assert len(selection.pods) == 5 and selection.containers == ()
    assert selection.reason == "no container chosen: none of the 5 chosen pods has a container named redis"


def test_pod_without_containers() -> None:
    selection = plan_selection(container_selector(), inventory(pod("bare", containers=())), seed=0)
    assert selection.reason == "no container chosen: the chosen pod default/bare has no containers"
    assert selection.notes == ("pod default/bare has no containers, skipped",)


# --- pods and modes together ---------------------------------------------------------------------


def test_plan_selection_applies_the_mode_to_the_matched_pods() -> None:
    selection = plan_selection(selector("fixed-percent", "50", namespaces=["shop"]), cluster(), seed=7)
    assert len(selection.matched) == 5
    assert len(selection.pods) == 3
    assert set(keys(selection.pods)) <= set(keys(selection.matched))
    assert selection.explanation == "mode fixed-percent 50%: 3 of 5 matched pods (ceil(5·50/100))"
    assert selection.containers == () and not selection.selects_containers


def test_same_seed_same_plan_and_dump_order_does_not_matter() -> None:
    base = cluster()
    shuffled = inventory(*reversed(base.pods), nodes=list(base.nodes or ()), namespaces=list(base.namespaces or ()))
    plans = {tuple(keys(plan_selection(selector("fixed", "2"), inv, seed=123).pods)) for inv in (base, shuffled, base)}
    assert len(plans) == 1


def test_plan_reports_why_nothing_matched() -> None:
    selection = plan_selection(selector("one", labelSelectors={"app": "cache"}), cluster(), seed=0)
    assert selection.empty and selection.pods == () and selection.matched == ()
    assert selection.reason == ("no pod matched: 7 pods in the cluster; none of them match labelSelectors app=cache")


def test_plan_reports_a_zero_draw_of_random_max_percent() -> None:
    empty = None
    for seed in range(100):
        selection = plan_selection(selector("random-max-percent", "10", namespaces=["shop"]), cluster(), seed=seed)
        if not selection.pods:
            empty = selection
            break
    assert empty is not None
    assert empty.reason == ("no pod chosen: mode random-max-percent 10%: drew 0%, 0 of 5 matched pods (ceil(5·0/100))")


def test_terminating_pods_are_noted() -> None:
    selection = plan_selection(selector(pods={"shop": ["web-6c8b7a9d4-pqrst"]}), cluster(), seed=0)
    assert keys(selection.pods) == ["shop/web-6c8b7a9d4-pqrst"]
    assert selection.notes == (
        "pod shop/web-6c8b7a9d4-pqrst is terminating (deletionTimestamp 2024-05-03T10:06:30Z); "
        "Chaos Mesh selects it all the same",
    )


def test_bad_mode_value_is_an_error_even_when_nothing_matched() -> None:
    with pytest.raises(SelectionError, match=r'^value: "0" must be greater than 0 with mode fixed$'):
        plan_selection(selector("fixed", "0", labelSelectors={"app": "cache"}), cluster(), seed=0)


def test_selection_errors_are_placed_under_selector() -> None:
    with pytest.raises(SelectionError, match=r"^selector\.fieldSelectors\.spec\.containers: "):
        plan_selection(selector(fieldSelectors={"spec.containers": "x"}), cluster(), seed=0)


# --- the strict forms ------------------------------------------------------------------------------


def test_select_pods_raises_when_nothing_matched() -> None:
    with pytest.raises(NoPodSelectedError, match="no pod matched: there is no pod in namespace ghost"):
        select_pods(selector(namespaces=["ghost"]), cluster(), rng=random.Random(0))


def test_select_pods_in_a_namespace_scoped_controller() -> None:
    scope = Scope(cluster_scoped=False, target_namespace="kube-system")
    assert keys(select_pods(selector(), cluster(), rng=random.Random(0), scope=scope)) == [
        "kube-system/kube-proxy-7xq2z"
    ]
    with pytest.raises(SelectionError, match=r'^selector\.namespaces\[0\]: "shop" is outside'):
        select_pods(selector(namespaces=["shop"]), cluster(), rng=random.Random(0), scope=scope)


def test_select_pods_mode_one() -> None:
    chosen = select_pods(selector("one", namespaces=["shop"]), cluster(), rng=random.Random(3))
    assert len(chosen) == 1 and chosen[0].namespace == "shop"


# --- experiments ------------------------------------------------------------------------------


POD_CHAOS = """
apiVersion: chaos-mesh.org/v1alpha1
kind: PodChaos
metadata:
  name: kill-web
  namespace: shop
spec:
  action: container-kill
  mode: fixed
  value: "2"
  containerNames: [istio-proxy]
  selector:
    labelSelectors:
      app: web
    podPhaseSelectors: [Running]
"""


def test_plan_experiment_for_a_loaded_pod_chaos() -> None:
    (experiment,) = load_text(POD_CHAOS).objects
    (plan,) = plan_experiment(experiment, cluster(), seed=42)
    assert plan.where == "spec"
    selection = plan.selection
    # The loader defaulted selector.namespaces to the experiment's namespace.
    assert {pod.namespace for pod in selection.matched} == {"shop"}
    assert len(selection.matched) == 3 and len(selection.pods) == 2
    assert [target.container_name for target in selection.containers] == ["istio-proxy", "istio-proxy"]
    assert plan_experiment(experiment, cluster(), seed=42) == plan_experiment(experiment, cluster(), seed=42)


def test_plan_experiment_names_the_full_path_of_a_bad_selector() -> None:
    (experiment,) = load_text(POD_CHAOS.replace("app: web", "app: web/x")).objects
    with pytest.raises(SelectionError, match=r'^spec\.selector\.labelSelectors\.app: "web/x" is not a label value'):
        plan_experiment(experiment, cluster(), seed=1)


class _TwoSelectors(Model):
    """Shaped like a NetworkChaos: a selector of its own and a target selector."""

    source: PodSelector
    target: PodSelector | None = None


def test_each_selector_of_an_experiment_is_planned_on_its_own_stream() -> None:
    source = selector("fixed", "2", namespaces=["shop"])
    target = selector("one", namespaces=["shop"])
    model = _TwoSelectors(source=source, target=target)
    assert [path for path, _ in selectors_of(model)] == [("source",), ("target",)]
    plans = plan_experiment(model, cluster(), seed=5)
    assert [plan.where for plan in plans] == ["source", "target"]
    # Removing the target does not change what the source picks.
    alone = plan_experiment(_TwoSelectors(source=source), cluster(), seed=5)
    assert alone[0].selection == plans[0].selection


def test_an_error_about_the_inventory_is_not_placed_under_a_field() -> None:
    with pytest.raises(SelectionError) as caught:
        plan_selection(selector(), inventory(pod("a")), seed=0, scope=Scope(filter_namespaces=True))
    assert str(caught.value) == (
        "the namespace filter is on, but the inventory holds no Namespace objects to read the "
        "chaos-mesh.org/inject annotation from"
    )


EXAMPLES = Path(__file__).resolve().parents[4] / "shared" / "reference" / "chaos-mesh" / "examples"


def test_every_selector_in_chaos_mesh_examples_can_be_planned() -> None:
    planned = 0
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        try:
            objects = load_text(path.read_text(), source=path.name).objects
        except ManifestError:
            continue  # test_examples.py answers for manifests that do not load
        for experiment in objects:
            for plan in plan_experiment(experiment, cluster(), seed=0):
                planned += 1
                assert plan.selection.pods or plan.selection.reason, plan.where
    assert planned > 0
