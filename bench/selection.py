"""Benchmark: pod selection over a synthetic cluster of 10,000 pods.

Measures, for each selector kind alone and for all of them together, the time of one
``plan_selection`` call (match + mode fixed-percent 50) with the inventory's index already
built, over several runs; reports the median and the maximum. The last row builds the index
afresh in every run, as a one-shot ``faultmesh plan`` does. Parsing the pods from dicts and
building the index alone are measured separately.

    .venv/bin/python bench/selection.py [--pods 10000] [--runs 21] [--markdown]

The target (issue: selection) is at most 0.2 s for 10,000 pods with every selector kind.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from faultmesh.api.common import PodSelector
from faultmesh.selection import Selection, inventory_from_objects, plan_selection

T = TypeVar("T")

TARGET_SECONDS = 0.2
PHASES = ["Running"] * 90 + ["Pending"] * 5 + ["Succeeded"] * 3 + ["Failed"] * 2


def synthetic_cluster(pod_count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Kubernetes objects as a dump would hold them: 50 namespaces, 100 nodes, ``pod_count`` pods."""
    rng = random.Random(seed)
    objects: list[dict[str, Any]] = []
    for number in range(50):
        annotations = {"chaos-mesh.org/inject": "enabled"} if number % 2 == 0 else {}
        objects.append({"kind": "Namespace", "metadata": {"name": f"ns-{number:02d}", "annotations": annotations}})
    for number in range(100):
        labels = {"zone": f"zone-{'abc'[number % 3]}", "disktype": "ssd" if number % 4 else "hdd"}
        objects.append({"kind": "Node", "metadata": {"name": f"node-{number:03d}", "labels": labels}})
    for number in range(pod_count):
        app = f"app-{rng.randrange(100):03d}"
        objects.append(
            {
                "kind": "Pod",
                "metadata": {
                    "name": f"{app}-{number:05d}",
                    "namespace": f"ns-{rng.randrange(50):02d}",
                    "uid": f"uid-{number}",
                    "labels": {
                        "app": app,
                        "tier": rng.choice(["frontend", "backend", "cache"]),
                        "version": rng.choice(["v1", "v2", "v3", "v4", "v5"]),
                        "pod-template-hash": f"{rng.getrandbits(32):08x}",
                    },
                    "annotations": {"team": f"team-{rng.randrange(10)}", "prometheus.io/scrape": "true"},
                },
                "spec": {
                    "nodeName": f"node-{rng.randrange(100):03d}",
                    "hostNetwork": rng.random() < 0.01,
                    "containers": [{"name": "main", "image": "app:1"}, {"name": "sidecar", "image": "proxy:1"}],
                },
                "status": {
                    "phase": rng.choice(PHASES),
                    "podIPs": [{"ip": f"10.{number // 65536}.{number // 256 % 256}.{number % 256}"}],
                    "containerStatuses": [
                        {"name": "main", "containerID": f"containerd://{number:064x}"},
                        {"name": "sidecar", "containerID": f"containerd://{number + 1:064x}"},
                    ],
                },
            }
        )
    return objects


ALL_TOGETHER = {
    "namespaces": [f"ns-{number:02d}" for number in range(0, 50, 5)],
    "labelSelectors": {"tier": "frontend"},
    "expressionSelectors": [{"key": "version", "operator": "NotIn", "values": ["v1"]}],
    "annotationSelectors": {"prometheus.io/scrape": "true"},
    "fieldSelectors": {"spec.hostNetwork": "false"},
    "nodeSelectors": {"disktype": "ssd"},
    "podPhaseSelectors": ["Running", "Pending"],
}

CASES: dict[str, dict[str, Any]] = {
    "no selector (whole cluster)": {},
    "namespaces (2)": {"namespaces": ["ns-07", "ns-21"]},
    "labelSelectors": {"labelSelectors": {"app": "app-042"}},
    "expressionSelectors (In, NotIn)": {
        "expressionSelectors": [
            {"key": "tier", "operator": "In", "values": ["frontend", "backend"]},
            {"key": "version", "operator": "NotIn", "values": ["v1"]},
        ]
    },
    "annotationSelectors": {"annotationSelectors": {"team": "team-3"}},
    "fieldSelectors (nodeName, phase)": {"fieldSelectors": {"spec.nodeName": "node-017", "status.phase": "Running"}},
    "fieldSelectors (serviceAccountName)": {"fieldSelectors": {"spec.serviceAccountName": "default"}},
    "nodes (3)": {"nodes": ["node-001", "node-002", "node-003"]},
    "nodeSelectors": {"nodeSelectors": {"zone": "zone-b", "disktype": "ssd"}},
    "podPhaseSelectors (!Running)": {"podPhaseSelectors": ["!Running"]},
    "pods (20 named)": {},  # filled in from the generated pods
    "all kinds together": ALL_TOGETHER,
}


def measure(action: Callable[[], T], runs: int) -> tuple[float, float, T]:
    """One untimed warm-up, then ``runs`` timed runs: median and maximum seconds, and the result."""
    result = action()
    timings = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        result = action()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings), max(timings), result


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=21, help="timed runs per case (after one warm-up)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()

    objects = synthetic_cluster(args.pods)
    parse_median, parse_max, inventory = measure(partial(inventory_from_objects, objects), max(3, args.runs // 4))

    def build_index() -> object:
        inventory.__dict__.pop("index", None)
        return inventory.index

    index_median, index_max, _ = measure(build_index, max(3, args.runs // 4))

    named = random.Random(1).sample(list(inventory.pods), 20)
    pods_map: dict[str, list[str]] = {}
    for pod in named:
        pods_map.setdefault(pod.namespace, []).append(pod.name)
    CASES["pods (20 named)"] = {"pods": pods_map}

    rows = []
    worst = 0.0
    for name, fields in CASES.items():
        chosen = PodSelector.model_validate({"selector": fields, "mode": "fixed-percent", "value": "50"})
        median, most, result = measure(partial(plan_selection, chosen, inventory, seed=7), args.runs)
        worst = max(worst, most)
        rows.append((name, len(result.matched), len(result.pods), median, most))

    together = PodSelector.model_validate({"selector": ALL_TOGETHER, "mode": "fixed-percent", "value": "50"})

    def cold() -> Selection:
        inventory.__dict__.pop("index", None)
        return plan_selection(together, inventory, seed=7)

    median, most, result = measure(cold, args.runs)
    worst = max(worst, most)
    rows.append(("all kinds together, index built cold", len(result.matched), len(result.pods), median, most))

    print(f"machine: {machine()}")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} (other work on the machine inflates the maxima)")
    print(f"{args.pods} pods, 50 namespaces, 100 nodes; {args.runs} runs per case; mode fixed-percent 50")
    print(f"parse {args.pods} pod dicts: median {parse_median * 1000:.1f} ms, max {parse_max * 1000:.1f} ms")
    print(f"build the index:    median {index_median * 1000:.1f} ms, max {index_max * 1000:.1f} ms")
    if args.markdown:
        print("\n| selector | matched | chosen | median (ms) | max (ms) |\n|---|---:|---:|---:|---:|")
        for name, matched, picked, median, most in rows:
            print(f"| {name} | {matched} | {picked} | {median * 1000:.2f} | {most * 1000:.2f} |")
    else:
        print(f"\n{'selector':40} {'matched':>8} {'chosen':>7} {'median ms':>10} {'max ms':>8}")
        for name, matched, picked, median, most in rows:
            print(f"{name:40} {matched:8d} {picked:7d} {median * 1000:10.2f} {most * 1000:8.2f}")
    verdict = "within" if worst <= TARGET_SECONDS else "OVER"
    print(f"\nslowest run {worst * 1000:.1f} ms: {verdict} the {TARGET_SECONDS * 1000:.0f} ms target")
    return 0 if worst <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
