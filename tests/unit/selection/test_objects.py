"""Parsing cluster objects: a real `kubectl get -o yaml` dump, typed lists, defaults, and errors."""

from __future__ import annotations

import json

import pytest

from faultmesh.selection import (
    InventoryError,
    inventory_from_objects,
    load_inventory,
    parse_namespace,
    parse_node,
    parse_pod,
)

from .builders import cluster


def test_realistic_dump_reads_every_field_selection_needs() -> None:
    inventory = cluster()
    pods = {pod.key: pod for pod in inventory.pods}
    assert sorted(pods) == [
        "default/nightly-report-28581720-x2v9q",
        "kube-system/kube-proxy-7xq2z",
        "shop/db-0",
        "shop/web-6c8b7a9d4-pqrst",
        "shop/web-7d9c8f6b5-abcde",
        "shop/web-7d9c8f6b5-fghij",
        "shop/web-7d9c8f6b5-klmno",
    ]
    web = pods["shop/web-7d9c8f6b5-abcde"]
    assert web.uid == "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
    assert web.labels == {"app": "web", "pod-template-hash": "7d9c8f6b5", "tier": "frontend"}
    assert web.annotations["prometheus.io/scrape"] == "true"
    assert web.node_name == "worker-1"
    assert web.phase == "Running"
    assert web.pod_ip == "10.244.1.17"
    assert web.host_ip == "172.18.0.3"
    assert [container.name for container in web.containers] == ["web", "istio-proxy"]
    assert web.containers[0].image == "registry.local/shop/web:1.4.2"
    assert web.container_id("istio-proxy") == (
        "containerd://9a8b7c6d5e4f30211f2e3d4c5b6a79880f1e2d3c4b5a69788796a5b4c3d2e1f0"
    )
    # Init containers are not injection targets in Chaos Mesh; they are not read as containers.
    assert web.container_id("istio-init") is None
    assert web.service_account_name == "web"
    assert not web.host_network and not web.terminating

    dual_stack = pods["shop/web-7d9c8f6b5-fghij"]
    assert dual_stack.pod_ips == ("10.244.2.9", "fd00:10:244:2::9")
    assert dual_stack.pod_ip == "10.244.2.9"

    pending = pods["shop/web-7d9c8f6b5-klmno"]
    assert (pending.phase, pending.node_name, pending.pod_ips) == ("Pending", "", ())
    assert pending.nominated_node_name == "worker-1"
    assert pending.container_id("web") is None

    assert pods["shop/web-6c8b7a9d4-pqrst"].deletion_timestamp == "2024-05-03T10:06:30Z"
    assert pods["kube-system/kube-proxy-7xq2z"].host_network
    assert pods["default/nightly-report-28581720-x2v9q"].restart_policy == "Never"

    assert inventory.nodes is not None and inventory.namespaces is not None
    assert {node.name: node.labels["disktype"] for node in inventory.nodes} == {"worker-1": "ssd", "worker-2": "hdd"}
    assert {ns.name: ns.inject_enabled for ns in inventory.namespaces} == {
        "default": False,
        "shop": True,
        "kube-system": False,
    }
    assert inventory.notes == (
        "cluster.yaml: doc 1 items[12] (Service web): passed over, selection reads only Pods, Nodes and Namespaces",
    )


def test_typed_list_items_need_no_kind_and_json_text_loads() -> None:
    pod_list = {
        "apiVersion": "v1",
        "kind": "PodList",
        "items": [{"metadata": {"name": "a", "namespace": "x"}, "spec": {"containers": [{"name": "c"}]}}],
    }
    inventory = load_inventory(json.dumps(pod_list))
    assert [pod.key for pod in inventory.pods] == ["x/a"]
    # No Node or Namespace objects at all: selection must know it cannot check them.
    assert inventory.nodes is None and inventory.namespaces is None


def test_hand_written_pod_gets_api_server_defaults() -> None:
    pod = parse_pod({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}})
    assert pod.namespace == "default"
    assert (pod.restart_policy, pod.scheduler_name, pod.service_account_name) == (
        "Always",
        "default-scheduler",
        "default",
    )
    assert pod.phase == "" and pod.pod_ip == ""


def test_unquoted_scalars_become_their_text() -> None:
    pod = parse_pod({"metadata": {"name": "p", "labels": {"version": 2, "canary": True, "empty": None}}})
    assert pod.labels == {"version": "2", "canary": "true", "empty": ""}


def test_singular_pod_ip_is_used_when_pod_ips_is_absent() -> None:
    pod = parse_pod({"metadata": {"name": "p"}, "status": {"podIP": "10.0.0.5"}})
    assert pod.pod_ips == ("10.0.0.5",)


def test_several_documents_and_single_objects() -> None:
    text = """
kind: Namespace
apiVersion: v1
metadata: {name: shop, annotations: {chaos-mesh.org/inject: enabled}}
---
kind: Node
apiVersion: v1
metadata: {name: n1, labels: {zone: a}}
---
---
kind: Pod
apiVersion: v1
metadata: {name: p, namespace: shop}
"""
    inventory = load_inventory(text)
    assert [pod.key for pod in inventory.pods] == ["shop/p"]
    assert inventory.nodes is not None and inventory.nodes[0].labels == {"zone": "a"}
    assert inventory.namespaces is not None and inventory.namespaces[0].inject_enabled


def test_malformed_objects_are_named_with_every_problem() -> None:
    documents = [
        {
            "kind": "List",
            "items": [
                {"kind": "Pod", "metadata": {"name": "ok"}},
                {"kind": "Pod", "metadata": {"namespace": "shop"}},
                {
                    "kind": "Pod",
                    "metadata": {"name": "web", "namespace": "shop", "labels": ["app=web"]},
                    "spec": {"containers": [{"image": "nginx"}], "hostNetwork": "maybe"},
                },
                "not an object",
                {"metadata": {"name": "kindless"}},
            ],
        }
    ]
    with pytest.raises(InventoryError) as caught:
        inventory_from_objects(documents, source="pods.yaml")
    assert caught.value.problems == [
        "pods.yaml: doc 1 items[1] (Pod): metadata.name: is required",
        "pods.yaml: doc 1 items[2] (Pod shop/web): metadata.labels: must be a mapping, got a list",
        "pods.yaml: doc 1 items[2] (Pod shop/web): spec.containers[0].name: is required",
        'pods.yaml: doc 1 items[2] (Pod shop/web): spec.hostNetwork: must be true or false, got "maybe"',
        'pods.yaml: doc 1 items[3]: expected a Kubernetes object (a mapping), got "not an object"',
        "pods.yaml: doc 1 items[4]: kind is required",
    ]


def test_duplicate_objects_are_refused() -> None:
    item = {"kind": "Pod", "metadata": {"name": "p", "namespace": "x"}}
    with pytest.raises(InventoryError, match=r"doc 2: Pod x/p appears twice \(first at doc 1\)"):
        inventory_from_objects([item, item])


def test_malformed_yaml_names_the_line() -> None:
    with pytest.raises(InventoryError, match=r"pods.yaml:3: malformed YAML: found character"):
        load_inventory("kind: Pod\nmetadata:\n\tname: a\n", source="pods.yaml")


def test_top_level_document_must_be_an_object() -> None:
    with pytest.raises(InventoryError, match=r"doc 1: expected a Kubernetes object \(a mapping\), got a list"):
        inventory_from_objects([["a", "b"]])


def test_single_object_parsers() -> None:
    node = parse_node({"metadata": {"name": "n", "labels": {"zone": "a"}}})
    assert (node.name, dict(node.labels)) == ("n", {"zone": "a"})
    namespace = parse_namespace({"metadata": {"name": "ns", "annotations": {"chaos-mesh.org/inject": "enabled"}}})
    assert namespace.inject_enabled
    with pytest.raises(InventoryError, match=r"node \(Node\): metadata.name: is required"):
        parse_node({"metadata": {}})
    with pytest.raises(InventoryError, match=r"pod: expected a Pod object \(a mapping\), got 3"):
        parse_pod(3)
