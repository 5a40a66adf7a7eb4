"""Each selector kind, their combinations, scope and the namespace filter (no mode involved)."""

from __future__ import annotations

import pytest

from faultmesh.selection import Namespace, Node, Scope, SelectionError, match_pods

from .builders import cluster, inventory, keys, pod, spec

WEB_PODS = [
    "shop/web-6c8b7a9d4-pqrst",
    "shop/web-7d9c8f6b5-abcde",
    "shop/web-7d9c8f6b5-fghij",
    "shop/web-7d9c8f6b5-klmno",
]


def matched(**fields: object) -> list[str]:
    return keys(match_pods(spec(**fields), cluster()).pods)


# --- one selector kind at a time ----------------------------------------------------------------


def test_no_selector_selects_the_whole_cluster_in_order() -> None:
    assert matched() == sorted(pod.key for pod in cluster().pods)


def test_namespaces() -> None:
    assert matched(namespaces=["shop"]) == ["shop/db-0", *WEB_PODS]
    assert matched(namespaces=["kube-system", "default"]) == [
        "default/nightly-report-28581720-x2v9q",
        "kube-system/kube-proxy-7xq2z",
    ]


def test_a_namespace_named_twice_lists_its_pods_once() -> None:
    assert matched(namespaces=["default", "default"]) == ["default/nightly-report-28581720-x2v9q"]


def test_label_selectors_must_all_match() -> None:
    assert matched(labelSelectors={"app": "web"}) == WEB_PODS
    assert matched(labelSelectors={"app": "web", "pod-template-hash": "6c8b7a9d4"}) == ["shop/web-6c8b7a9d4-pqrst"]
    assert matched(labelSelectors={"app": "nothing"}) == []


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"key": "tier", "operator": "In", "values": ["backend", "nowhere"]}, ["shop/db-0"]),
        (
            {"key": "tier", "operator": "NotIn", "values": ["frontend"]},
            # NotIn also takes the pods without the label at all.
            ["default/nightly-report-28581720-x2v9q", "kube-system/kube-proxy-7xq2z", "shop/db-0"],
        ),
        ({"key": "job-name", "operator": "Exists"}, ["default/nightly-report-28581720-x2v9q"]),
        (
            {"key": "app", "operator": "DoesNotExist"},
            ["default/nightly-report-28581720-x2v9q", "kube-system/kube-proxy-7xq2z"],
        ),
    ],
)
def test_expression_selectors(expression: dict[str, object], expected: list[str]) -> None:
    assert matched(expressionSelectors=[expression]) == expected


def test_label_and_expression_selectors_are_one_selector() -> None:
    assert (
        matched(
            labelSelectors={"app": "web"},
            expressionSelectors=[{"key": "pod-template-hash", "operator": "NotIn", "values": ["6c8b7a9d4"]}],
        )
        == WEB_PODS[1:]
    )
    # Chaos Mesh's own case: l1=l1 together with l2 In (l2) matches nothing.
    assert (
        matched(labelSelectors={"app": "web"}, expressionSelectors=[{"key": "app", "operator": "In", "values": ["db"]}])
        == []
    )


def test_annotation_selectors() -> None:
    assert matched(annotationSelectors={"prometheus.io/scrape": "true"}) == ["shop/web-7d9c8f6b5-abcde"]
    assert matched(annotationSelectors={"backup.velero.io/backup-volumes": "data", "other": "x"}) == []


def test_annotation_selector_with_empty_key_is_ignored_as_in_chaos_mesh() -> None:
    assert matched(annotationSelectors={"": "anything"}) == matched()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"metadata.name": "db-0"}, ["shop/db-0"]),
        ({"metadata.namespace": "kube-system"}, ["kube-system/kube-proxy-7xq2z"]),
        ({"spec.nodeName": "worker-2"}, ["shop/db-0", "shop/web-7d9c8f6b5-fghij"]),
        ({"spec.host": "worker-2"}, ["shop/db-0", "shop/web-7d9c8f6b5-fghij"]),
        ({"spec.restartPolicy": "Never"}, ["default/nightly-report-28581720-x2v9q"]),
        (
            {"spec.schedulerName": "default-scheduler", "spec.serviceAccountName": "kube-proxy"},
            ["kube-system/kube-proxy-7xq2z"],
        ),
        ({"spec.hostNetwork": "true"}, ["kube-system/kube-proxy-7xq2z"]),
        ({"status.phase": "Pending"}, ["shop/web-7d9c8f6b5-klmno"]),
        ({"status.podIP": "10.244.2.9"}, ["shop/web-7d9c8f6b5-fghij"]),
        ({"status.podIP": "fd00:10:244:2::9"}, []),  # only the first pod IP counts
        ({"status.nominatedNodeName": "worker-1"}, ["shop/web-7d9c8f6b5-klmno"]),
        ({"status.phase": "Running", "spec.nodeName": "worker-2"}, ["shop/db-0", "shop/web-7d9c8f6b5-fghij"]),
        ({"status.phase": "Failed", "spec.nodeName": "worker-2"}, []),
    ],
)
def test_field_selectors(fields: dict[str, str], expected: list[str]) -> None:
    assert matched(fieldSelectors=fields) == expected


def test_host_network_false_matches_the_others() -> None:
    assert "kube-system/kube-proxy-7xq2z" not in matched(fieldSelectors={"spec.hostNetwork": "false"})
    assert len(matched(fieldSelectors={"spec.hostNetwork": "false"})) == 6


def test_nodes() -> None:
    assert matched(nodes=["worker-2"]) == ["shop/db-0", "shop/web-7d9c8f6b5-fghij"]


def test_node_selectors_read_node_labels() -> None:
    assert matched(nodeSelectors={"disktype": "hdd"}) == ["shop/db-0", "shop/web-7d9c8f6b5-fghij"]
    assert matched(nodeSelectors={"disktype": "hdd", "topology.kubernetes.io/zone": "zone-a"}) == []


def test_nodes_and_node_selectors_are_united() -> None:
    # Chaos Mesh's case: nodeSelectors zone=az1 plus nodes [az2-node1] selects the pods of both.
    both = matched(nodes=["worker-2"], nodeSelectors={"topology.kubernetes.io/zone": "zone-a"})
    assert both == [key for key in matched() if key != "shop/web-7d9c8f6b5-klmno"]  # the unscheduled pod


def test_pod_phase_selectors_include_and_exclude() -> None:
    assert matched(podPhaseSelectors=["Pending"]) == ["shop/web-7d9c8f6b5-klmno"]
    assert matched(podPhaseSelectors=["Pending", "Succeeded"]) == [
        "default/nightly-report-28581720-x2v9q",
        "shop/web-7d9c8f6b5-klmno",
    ]
    # Only exclusions: every pod whose phase is not excluded.
    assert matched(podPhaseSelectors=["!Running"]) == matched(podPhaseSelectors=["Pending", "Succeeded"])
    # An exclusion wins over an inclusion of the same phase.
    assert matched(podPhaseSelectors=["Running", "Pending", "!Running"]) == ["shop/web-7d9c8f6b5-klmno"]


def test_terminating_pods_are_selected_like_any_other() -> None:
    assert "shop/web-6c8b7a9d4-pqrst" in matched(labelSelectors={"app": "web"}, podPhaseSelectors=["Running"])


# --- combinations ---------------------------------------------------------------------------------


def test_every_selector_kind_together() -> None:
    assert matched(
        namespaces=["shop"],
        labelSelectors={"app": "web"},
        expressionSelectors=[{"key": "tier", "operator": "In", "values": ["frontend"]}],
        annotationSelectors={"prometheus.io/scrape": "true"},
        fieldSelectors={"spec.serviceAccountName": "web"},
        nodeSelectors={"disktype": "ssd"},
        podPhaseSelectors=["Running"],
    ) == ["shop/web-7d9c8f6b5-abcde"]


def test_namespace_and_labels_across_namespaces() -> None:
    assert matched(namespaces=["default"], labelSelectors={"app": "web"}) == []
    assert matched(namespaces=["shop", "kube-system"], labelSelectors={"k8s-app": "kube-proxy"}) == [
        "kube-system/kube-proxy-7xq2z"
    ]


# --- the pods map ---------------------------------------------------------------------------------


def test_pods_map_takes_exactly_the_named_pods() -> None:
    match = match_pods(
        spec(pods={"shop": ["db-0", "web-7d9c8f6b5-abcde", "db-0"], "default": ["nightly-report-28581720-x2v9q"]}),
        cluster(),
    )
    assert keys(match.pods) == [
        "default/nightly-report-28581720-x2v9q",
        "shop/db-0",
        "shop/web-7d9c8f6b5-abcde",
    ]
    assert match.notes == ()


def test_pods_map_ignores_the_other_selectors_as_chaos_mesh_does() -> None:
    match = match_pods(
        spec(
            namespaces=["shop"], pods={"shop": ["db-0"]}, labelSelectors={"app": "web"}, podPhaseSelectors=["Pending"]
        ),
        cluster(),
    )
    assert keys(match.pods) == ["shop/db-0"]
    assert match.notes == (
        "pods names the pods outright, so (as in Chaos Mesh) labelSelectors, podPhaseSelectors are ignored",
    )


def test_pods_map_passes_over_missing_pods() -> None:
    match = match_pods(spec(pods={"shop": ["db-0", "db-9"], "nowhere": ["x"]}), cluster())
    assert keys(match.pods) == ["shop/db-0"]
    assert match.notes == ("no such pod: nowhere/x, shop/db-9 (passed over)",)
    empty = match_pods(spec(pods={"shop": ["db-9"]}), cluster())
    assert empty.pods == ()
    assert empty.reason == (
        "no pod matched: none of the pods named in pods could be taken (no such pod: shop/db-9 (passed over))"
    )


# --- scope and the namespace filter ------------------------------------------------------------


def test_namespace_scoped_controller_lists_only_its_namespace() -> None:
    scope = Scope(cluster_scoped=False, target_namespace="shop")
    assert keys(match_pods(spec(labelSelectors={"tier": "backend"}), cluster(), scope).pods) == ["shop/db-0"]
    assert keys(match_pods(spec(namespaces=["shop"], nodes=["worker-2"]), cluster(), scope).pods) == [
        "shop/db-0",
        "shop/web-7d9c8f6b5-fghij",
    ]


def test_namespace_scoped_controller_refuses_other_namespaces() -> None:
    scope = Scope(cluster_scoped=False, target_namespace="shop")
    with pytest.raises(SelectionError) as caught:
        match_pods(spec(namespaces=["default"]), cluster(), scope)
    assert str(caught.value) == ('namespaces[0]: "default" is outside the controller\'s target namespace "shop"')
    with pytest.raises(SelectionError, match=r"^namespaces: names 2 namespaces, but a namespace-scoped"):
        match_pods(spec(namespaces=["shop", "default"]), cluster(), scope)


def test_namespace_scoped_controller_skips_other_namespaces_in_pods_map() -> None:
    scope = Scope(cluster_scoped=False, target_namespace="shop")
    match = match_pods(spec(pods={"shop": ["db-0"], "default": ["nightly-report-28581720-x2v9q"]}), cluster(), scope)
    assert keys(match.pods) == ["shop/db-0"]
    assert match.notes == ('namespace "default" is outside the controller\'s target namespace "shop", skipped',)


def test_scope_needs_a_target_namespace() -> None:
    with pytest.raises(ValueError, match="needs a target namespace"):
        Scope(cluster_scoped=False)


def test_namespace_filter_keeps_opted_in_namespaces() -> None:
    scope = Scope(filter_namespaces=True)
    match = match_pods(spec(namespaces=["default", "shop"], labelSelectors={"tier": "backend"}), cluster(), scope)
    assert keys(match.pods) == ["shop/db-0"]
    assert match.notes == ('namespace "default" has not opted in (chaos-mesh.org/inject: enabled), skipped',)
    blocked = match_pods(spec(namespaces=["default"]), cluster(), scope)
    assert blocked.reason == (
        "no pod matched: there is no pod in namespace default "
        '(namespace "default" has not opted in (chaos-mesh.org/inject: enabled), skipped)'
    )


def test_namespace_filter_also_guards_cluster_wide_selection() -> None:
    scope = Scope(filter_namespaces=True)
    assert {pod.namespace for pod in match_pods(spec(), cluster(), scope).pods} == {"shop"}


def test_namespace_filter_applies_to_the_pods_map() -> None:
    scope = Scope(filter_namespaces=True)
    match = match_pods(spec(pods={"default": ["nightly-report-28581720-x2v9q"], "shop": ["db-0"]}), cluster(), scope)
    assert keys(match.pods) == ["shop/db-0"]


def test_namespace_filter_treats_a_missing_namespace_as_not_opted_in() -> None:
    inv = inventory(pod("a", "ghost"), namespaces=[Namespace("shop", annotations={"chaos-mesh.org/inject": "enabled"})])
    match = match_pods(spec(namespaces=["ghost"]), inv, Scope(filter_namespaces=True))
    assert match.pods == ()
    assert match.notes == ('namespace "ghost" does not exist, so it cannot have opted in',)


def test_namespace_filter_needs_namespace_objects() -> None:
    with pytest.raises(SelectionError, match="the namespace filter is on, but the inventory holds no Namespace"):
        match_pods(spec(), inventory(pod("a")), Scope(filter_namespaces=True))


# --- without nodes in the inventory ------------------------------------------------------------


def test_node_names_are_trusted_when_the_inventory_has_no_nodes() -> None:
    inv = inventory(pod("a", node_name="n1"), pod("b", node_name="n2"))
    assert keys(match_pods(spec(nodes=["n1", "n9"]), inv).pods) == ["default/a"]


def test_node_selectors_need_node_objects() -> None:
    with pytest.raises(SelectionError) as caught:
        match_pods(spec(nodeSelectors={"zone": "a"}), inventory(pod("a")))
    assert str(caught.value) == (
        "nodeSelectors: needs the cluster's Node objects to read node labels, and the inventory holds none"
    )


def test_a_named_node_must_exist_when_nodes_are_known() -> None:
    inv = inventory(pod("a", node_name="n1"), nodes=[Node("n1")])
    with pytest.raises(SelectionError, match=r'^nodes\[1\]: node "n9" does not exist$'):
        match_pods(spec(nodes=["n1", "n9"]), inv)


# --- invalid selectors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"fieldSelectors": {"metadata.labels": "x"}},
            'fieldSelectors.metadata.labels: "metadata.labels" is not a field Kubernetes can select pods by; '
            "use one of metadata.name, metadata.namespace, spec.nodeName, spec.restartPolicy, spec.schedulerName, "
            "spec.serviceAccountName, spec.hostNetwork, status.phase, status.podIP, status.nominatedNodeName",
        ),
        (
            {"labelSelectors": {"app": "web server"}},
            'labelSelectors.app: "web server" is not a label value: it must be letters, digits, "-", "_" and ".", '
            "starting and ending with a letter or digit",
        ),
        (
            {"labelSelectors": {"Example.com/app": "web"}},
            'labelSelectors.Example.com/app: "Example.com/app" is not a label key: the prefix must be a DNS '
            'subdomain (lowercase letters, digits, "-" and ".", at most 253 characters)',
        ),
        (
            {"expressionSelectors": [{"key": "app", "operator": "Equals", "values": ["a"]}]},
            'expressionSelectors[0].operator: "Equals" is not an operator; use one of In, NotIn, Exists, DoesNotExist',
        ),
        (
            {"expressionSelectors": [{"key": "app", "operator": "In"}]},
            "expressionSelectors[0].values: must be non-empty for operator In",
        ),
        (
            {"expressionSelectors": [{"key": "app", "operator": "Exists", "values": ["a"]}]},
            "expressionSelectors[0].values: must be empty for operator Exists",
        ),
        (
            {"expressionSelectors": [{"key": "app", "operator": "In", "values": ["ok", "-bad"]}]},
            'expressionSelectors[0].values[1]: "-bad" is not a label value: it must be letters, digits, "-", "_" '
            'and ".", starting and ending with a letter or digit',
        ),
        (
            {"annotationSelectors": {"config": '{"a": 1}'}},
            'annotationSelectors.config: "{"a": 1}" is not a label value: it must be letters, digits, "-", "_" '
            'and ".", starting and ending with a letter or digit (annotation selectors are matched with label '
            "selector syntax)",
        ),
        (
            {"podPhaseSelectors": ["Running", "running"]},
            'podPhaseSelectors[1]: "running" is not a pod phase; use one of Pending, Running, Succeeded, Failed, '
            "Unknown (a leading ! excludes it)",
        ),
    ],
)
def test_invalid_selectors_are_refused_with_their_path(fields: dict[str, object], message: str) -> None:
    with pytest.raises(SelectionError) as caught:
        match_pods(spec(**fields), cluster())
    assert str(caught.value) == message


# --- why nothing matched -----------------------------------------------------------------------


def test_reason_names_the_selector_that_emptied_the_list() -> None:
    match = match_pods(
        spec(
            namespaces=["shop"],
            labelSelectors={"app": "web"},
            nodeSelectors={"disktype": "hdd"},
            podPhaseSelectors=["Pending"],
        ),
        cluster(),
    )
    assert match.pods == ()
    assert match.reason == (
        "no pod matched: 5 pods in namespace shop; 4 of them match labelSelectors app=web; "
        "1 of them match nodeSelectors disktype=hdd (matching nodes worker-2); "
        "none of them match podPhaseSelectors Pending"
    )


def test_reason_when_node_selectors_match_no_node() -> None:
    match = match_pods(spec(namespaces=["shop"], nodeSelectors={"disktype": "nvme"}), cluster())
    assert match.reason == (
        "no pod matched: 5 pods in namespace shop; none of them match nodeSelectors disktype=nvme (matching no node)"
    )


def test_reason_for_an_empty_or_missing_namespace() -> None:
    assert match_pods(spec(namespaces=["ghost"]), cluster()).reason == (
        "no pod matched: there is no pod in namespace ghost (no such namespace: ghost)"
    )
    assert match_pods(spec(), inventory()).reason == "no pod matched: there is no pod in the cluster"


def test_reason_names_only_the_namespaces_the_filter_let_through() -> None:
    match = match_pods(
        spec(namespaces=["default", "shop"], labelSelectors={"app": "cache"}), cluster(), Scope(filter_namespaces=True)
    )
    assert match.reason == "no pod matched: 5 pods in namespace shop; none of them match labelSelectors app=cache"
