"""From a selected experiment to per-record agent work: records as Chaos Mesh keeps them, and what each one does."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.agent.planners import builtin_planners
from faultmesh.api.base import Resource
from faultmesh.api.loader import parse_object
from faultmesh.kinds.experiment import (
    SOURCE_KEY,
    TARGET_KEY,
    AgentWork,
    RecordWork,
    duration_of,
    injection_id,
    is_one_shot,
    records_work,
    selector_key,
)
from faultmesh.kinds.network import PARTITION_KIND, TRAFFIC_CONTROL_KIND, Peer, fault_from_wire
from faultmesh.kinds.plan import KillContainer, Plan, PlanError, Target
from faultmesh.selection import Container, ContainerStatus, Inventory, Pod, Selection, plan_experiment

UID = "5f0c7e1a"


def _pod(
    name: str,
    *,
    app: str = "web",
    ips: Sequence[str] = ("10.0.0.1",),
    containers: Sequence[str] = ("app",),
    started: Sequence[str] | None = None,
    host_network: bool = False,
) -> Pod:
    """A running pod of namespace shop; ``started`` lists the containers with a runtime id (default: all)."""
    running = containers if started is None else started
    return Pod(
        namespace="shop",
        name=name,
        labels={"app": app},
        phase="Running",
        pod_ips=tuple(ips),
        host_network=host_network,
        containers=tuple(Container(container) for container in containers),
        container_statuses=tuple(
            ContainerStatus(container, f"containerd://{name}-{container}" if container in running else None)
            for container in containers
        ),
    )


WEB_0 = _pod("web-0", ips=("10.0.0.1",))
WEB_1 = _pod("web-1", ips=("10.0.0.2", "fd00::2"))
DB_0 = _pod("db-0", app="db", ips=("10.0.1.1",))
DB_1 = _pod("db-1", app="db", ips=("10.0.1.2",))


def _experiment(kind: str, spec: dict[str, Any]) -> Resource:
    return parse_object(
        {
            "apiVersion": "chaos-mesh.org/v1alpha1",
            "kind": kind,
            "metadata": {"name": "x", "namespace": "shop"},
            "spec": spec,
        }
    )


def _pick(app: str, **fields: Any) -> dict[str, Any]:
    return {"mode": "all", "selector": {"namespaces": ["shop"], "labelSelectors": {"app": app}}, **fields}


def _selections(resource: Resource, *pods: Pod) -> dict[str, Selection]:
    plans = plan_experiment(resource, Inventory(pods=pods), seed=0)
    return {selector_key(plan.path): plan.selection for plan in plans}


def _work(resource: Resource, *pods: Pod, **options: Any) -> list[RecordWork]:
    return records_work(resource, UID, _selections(resource, *pods), **options)


def _network(pods: Sequence[Pod] = (WEB_0, WEB_1, DB_0, DB_1), **spec: Any) -> list[RecordWork]:
    resolve = spec.pop("resolve", None)
    allow = spec.pop("allow_host_network", False)
    return _work(_experiment("NetworkChaos", _pick("web", **spec)), *pods, resolve=resolve, allow_host_network=allow)


def _only(record: RecordWork) -> AgentWork:
    (work,) = record.works
    return work


def _plans(records: Sequence[RecordWork]) -> list[Plan]:
    """Every work planned as the node agent would: per injection, or per slot for traffic control."""
    registry = builtin_planners()
    plans: list[Plan] = []
    slots: dict[str, list[AgentWork]] = defaultdict(list)
    for record in records:
        for work in record.works:
            if work.slot is None:
                plans.append(registry.planners[work.kind](work.spec, work.target))
            else:
                slots[work.slot].append(work)
    for members in slots.values():
        planner = registry.slot_planners[members[0].kind]
        plans.append(planner([(work.injection_id, work.spec) for work in members], members[0].target))
    return plans


# --- helpers ---------------------------------------------------------------------------------------------


def test_selector_keys_are_chaos_meshs() -> None:
    assert selector_key(("spec",)) == SOURCE_KEY == "."
    assert selector_key(("spec", "target")) == TARGET_KEY == ".Target"


def test_duration_and_one_shot() -> None:
    kill = _experiment("PodChaos", _pick("web", action="pod-kill"))
    failure = _experiment("PodChaos", _pick("web", action="pod-failure", duration="1m30s"))
    assert (duration_of(kill), is_one_shot(kill)) == (None, True)
    assert (duration_of(failure), is_one_shot(failure)) == (90.0, False)
    assert is_one_shot(_experiment("NetworkChaos", _pick("web", action="partition"))) is False


def test_injection_id_names_experiment_side_and_record() -> None:
    assert injection_id(UID, TARGET_KEY, "shop/db-0") == "5f0c7e1a/.Target/shop/db-0"


def test_kinds_the_agent_does_not_inject_are_refused() -> None:
    chaos = _experiment("TimeChaos", _pick("web", timeOffset="-10m"))
    with pytest.raises(PlanError, match=r"^kind: TimeChaos is not injected by the node agent yet"):
        _work(chaos, WEB_0)


# --- PodChaos --------------------------------------------------------------------------------------------


def test_container_kill_is_one_record_per_named_container() -> None:
    pods = (_pod("web-0", containers=("app", "sidecar", "log")), _pod("web-1", containers=("app", "log")))
    chaos = _experiment("PodChaos", _pick("web", action="container-kill", containerNames=["sidecar", "app"]))
    records = _work(chaos, *pods)
    # Pod order, then the pod's container order; containers not named are left alone.
    assert [record.record_id for record in records] == ["shop/web-0/app", "shop/web-0/sidecar", "shop/web-1/app"]
    assert {record.selector_key for record in records} == {SOURCE_KEY}
    work = _only(records[1])
    assert work.injection_id == f"{UID}/./shop/web-0/sidecar"
    assert work.kind == "PodChaos"
    assert work.spec["action"] == "container-kill"
    assert work.target == Target("containerd://web-0-sidecar", "shop/web-0/sidecar", {"ips": ["10.0.0.1"]})
    assert [plan.steps[0].apply for plan in _plans(records)] == [
        KillContainer("containerd://web-0-app"),
        KillContainer("containerd://web-0-sidecar"),
        KillContainer("containerd://web-1-app"),
    ]


def test_container_kill_of_a_container_not_started_names_it() -> None:
    chaos = _experiment("PodChaos", _pick("web", action="container-kill", containerNames=["app"]))
    with pytest.raises(PlanError, match=r"^spec\.selector: shop/web-0/app: the container has not started"):
        _work(chaos, _pod("web-0", started=()))


def test_container_kill_that_chooses_no_container_is_refused() -> None:
    chaos = _experiment("PodChaos", _pick("web", action="container-kill", containerNames=["redis"]))
    with pytest.raises(PlanError, match=r"^spec\.selector: selected nothing: no container chosen"):
        _work(chaos, WEB_0)


def test_pod_kill_is_one_record_per_pod_killing_each_started_container() -> None:
    pods = (_pod("web-0", containers=("app", "sidecar", "init-like"), started=("app", "sidecar")), WEB_1)
    records = _work(_experiment("PodChaos", _pick("web", action="pod-kill", gracePeriod=0)), *pods)
    assert [(record.record_id, record.selector_key) for record in records] == [("shop/web-0", "."), ("shop/web-1", ".")]
    first = records[0]
    assert [work.injection_id for work in first.works] == [f"{UID}/./shop/web-0/app", f"{UID}/./shop/web-0/sidecar"]
    assert [work.spec["containerNames"] for work in first.works] == [["app"], ["sidecar"]]
    assert {work.spec["action"] for work in first.works} == {"container-kill"}
    # The record is the pod: every kill reports to it.
    assert {work.target.record_id for work in first.works} == {"shop/web-0"}
    assert [plan.steps[0].apply for plan in _plans(records)] == [
        KillContainer("containerd://web-0-app"),
        KillContainer("containerd://web-0-sidecar"),
        KillContainer("containerd://web-1-app"),
    ]


def test_pod_kill_of_a_pod_with_nothing_started_is_refused() -> None:
    chaos = _experiment("PodChaos", _pick("web", action="pod-kill"))
    with pytest.raises(PlanError, match=r"^spec\.selector: shop/web-0: no container of the pod has started"):
        _work(chaos, _pod("web-0", started=()))


def test_pod_failure_is_refused_with_the_field() -> None:
    chaos = _experiment("PodChaos", _pick("web", action="pod-failure", duration="1m"))
    with pytest.raises(PlanError, match=r"^spec\.action: pod-failure .*without a cluster"):
        _work(chaos, WEB_0)


def test_nothing_selected_is_refused() -> None:
    chaos = _experiment("PodChaos", _pick("cache", action="pod-kill"))
    with pytest.raises(PlanError, match=r"^spec\.selector: selected nothing"):
        _work(chaos, WEB_0)
    with pytest.raises(PlanError, match=r"^spec\.selector: selected nothing"):
        records_work(chaos, UID, {})


# --- StressChaos -----------------------------------------------------------------------------------------


def test_stress_is_one_record_per_container() -> None:
    stressors = {"cpu": {"workers": 1, "load": 50}}
    pods = (_pod("web-0", containers=("app", "sidecar")), _pod("web-1", containers=("app", "sidecar")))
    first_only = _work(_experiment("StressChaos", _pick("web", stressors=stressors)), *pods)
    assert [record.record_id for record in first_only] == ["shop/web-0/app", "shop/web-1/app"]
    named = _work(_experiment("StressChaos", _pick("web", stressors=stressors, containerNames=["sidecar"])), *pods)
    assert [record.record_id for record in named] == ["shop/web-0/sidecar", "shop/web-1/sidecar"]
    work = _only(named[0])
    assert (work.kind, work.injection_id, work.slot) == ("StressChaos", f"{UID}/./shop/web-0/sidecar", None)
    assert work.target.container_id == "containerd://web-0-sidecar"
    assert work.spec["stressors"] == {"cpu": {"workers": 1, "load": 50}}
    assert all(plan.kind == "StressChaos" and plan.steps for plan in _plans(named))


# --- NetworkChaos: partition -----------------------------------------------------------------------------


def _fault(record: RecordWork) -> dict[str, Any]:
    return dict(_only(record).spec)


def _peers(record: RecordWork) -> list[tuple[str, int]]:
    return [(peer["network"], peer["port"]) for peer in _fault(record)["peers"]]


def test_partition_without_target_cuts_the_selected_pods_from_everyone() -> None:
    records = _network(action="partition", direction="both")
    assert [(record.record_id, record.selector_key) for record in records] == [("shop/web-0", "."), ("shop/web-1", ".")]
    assert _fault(records[1]) == {
        "injection_id": f"{UID}/./shop/web-1",
        "direction": "both",
        "peers": [],
        "device": "eth0",
    }
    work = _only(records[1])
    assert (work.kind, work.slot) == (PARTITION_KIND, None)
    # The pod's own addresses go along: a partition without peers drops each family the pod has.
    assert work.target == Target("containerd://web-1-app", "shop/web-1", {"ips": ["10.0.0.2", "fd00::2"]})


def test_partition_without_target_aims_at_the_external_targets() -> None:
    records = _network(action="partition", externalTargets=["203.0.113.0/24:443"])
    assert {tuple(_peers(record)) for record in records} == {(("203.0.113.0/24", 443),)}


@pytest.mark.parametrize(("direction", "target_side"), [("to", "from"), ("from", "to"), ("both", "both")])
def test_partition_acts_on_both_sides(direction: str, target_side: str) -> None:
    records = _network(
        action="partition",
        direction=direction,
        device="eth1",
        targetDevice="eth2",
        externalTargets=["198.51.100.7"],
        target=_pick("db"),
    )
    assert [(record.record_id, record.selector_key) for record in records] == [
        ("shop/web-0", "."),
        ("shop/web-1", "."),
        ("shop/db-0", ".Target"),
        ("shop/db-1", ".Target"),
    ]
    for source in records[:2]:
        fault = _fault(source)
        assert (fault["direction"], fault["device"]) == (direction, "eth1")
        assert _peers(source) == [("10.0.1.1", 0), ("10.0.1.2", 0), ("198.51.100.7", 0)]
    for target in records[2:]:
        fault = _fault(target)
        # Seen from the target pods the traffic goes the other way.
        assert (fault["direction"], fault["device"]) == (target_side, "eth2")
        assert _peers(target) == [("10.0.0.1", 0), ("10.0.0.2", 0), ("fd00::2", 0)]
    assert all(plan.steps for plan in _plans(records))


def test_a_pod_in_both_selections_gets_two_distinct_injections() -> None:
    both = _pick("web", action="partition", direction="both", target=_pick("web"))
    records = _work(_experiment("NetworkChaos", both), WEB_0, WEB_1)
    assert [(record.record_id, record.selector_key) for record in records] == [
        ("shop/web-0", "."),
        ("shop/web-1", "."),
        ("shop/web-0", ".Target"),
        ("shop/web-1", ".Target"),
    ]
    ids = [work.injection_id for record in records for work in record.works]
    assert len(set(ids)) == 4
    assert _only(records[0]).injection_id == f"{UID}/./shop/web-0"
    assert _only(records[2]).injection_id == f"{UID}/.Target/shop/web-0"


# --- NetworkChaos: traffic control -----------------------------------------------------------------------


def test_delay_to_a_target_shapes_the_source_and_leaves_the_target_alone() -> None:
    records = _network(
        action="delay",
        delay={"latency": "50ms"},
        direction="to",
        target=_pick("db"),
        externalTargets=["198.51.100.0/24"],
    )
    sources = [record for record in records if record.selector_key == SOURCE_KEY]
    targets = [record for record in records if record.selector_key == TARGET_KEY]
    assert [record.record_id for record in targets] == ["shop/db-0", "shop/db-1"]
    # Chaos Mesh still records the target pods: they are peers, with nothing done to them.
    assert all(record.works == () and record.notes for record in targets)
    work = _only(sources[0])
    assert (work.kind, work.slot) == (TRAFFIC_CONTROL_KIND, "net/containerd://web-0-app/eth0")
    assert _peers(sources[0]) == [("10.0.1.1", 0), ("10.0.1.2", 0), ("198.51.100.0/24", 0)]
    fault = fault_from_wire(TRAFFIC_CONTROL_KIND, work.spec)
    assert fault.injection_id == work.injection_id == f"{UID}/./shop/web-0"
    assert len(_plans(records)) == 2


def test_delay_from_shapes_the_target_pods_toward_the_source() -> None:
    records = _network(
        action="delay", delay={"latency": "50ms"}, direction="from", target=_pick("db"), targetDevice="eth3"
    )
    sources = [record for record in records if record.selector_key == SOURCE_KEY]
    targets = [record for record in records if record.selector_key == TARGET_KEY]
    assert all(record.works == () for record in sources)
    assert [_only(record).slot for record in targets] == [
        "net/containerd://db-0-app/eth3",
        "net/containerd://db-1-app/eth3",
    ]
    assert _peers(targets[0]) == [("10.0.0.1", 0), ("10.0.0.2", 0), ("fd00::2", 0)]
    assert _fault(targets[0])["device"] == "eth3"


def test_bandwidth_both_shapes_each_side_on_its_own_device() -> None:
    records = _network(
        action="bandwidth",
        bandwidth={"rate": "1mbps", "limit": 20971520, "buffer": 10000},
        direction="both",
        device="eth1",
        target=_pick("db"),
    )
    slots = [_only(record).slot for record in records]
    assert slots == [
        "net/containerd://web-0-app/eth1",
        "net/containerd://web-1-app/eth1",
        # No targetDevice: the target pods use the default device.
        "net/containerd://db-0-app/eth0",
        "net/containerd://db-1-app/eth0",
    ]
    assert all(_fault(record)["tbf"] is not None for record in records)
    assert len(_plans(records)) == 4


def test_traffic_control_without_target_shapes_all_egress() -> None:
    records = _network(action="loss", loss={"loss": "25"})
    assert [_peers(record) for record in records] == [[], []]
    assert [_only(record).slot for record in records] == [
        "net/containerd://web-0-app/eth0",
        "net/containerd://web-1-app/eth0",
    ]


def test_one_pod_on_both_sides_shares_one_slot_with_two_faults() -> None:
    spec = _pick("web", action="delay", delay={"latency": "10ms"}, direction="both", target=_pick("web"))
    records = _work(_experiment("NetworkChaos", spec), WEB_0)
    first, second = (_only(record) for record in records)
    assert first.slot == second.slot == "net/containerd://web-0-app/eth0"
    assert first.injection_id != second.injection_id
    (plan,) = _plans(records)
    assert plan.steps


# --- NetworkChaos: external targets ----------------------------------------------------------------------


def test_external_targets_resolve_host_names_through_the_front_end() -> None:
    asked: list[str] = []

    def resolve(host: str) -> list[str]:
        asked.append(host)
        return {"db.example.com": ["192.0.2.10", "2001:db8::10"]}[host]

    records = _network(
        action="partition",
        externalTargets=["10.9.0.0/16:22", "192.0.2.1", "[2001:db8::1]:80", "db.example.com:5432"],
        resolve=resolve,
    )
    # Resolved once for the experiment: every record aims at the same addresses.
    assert asked == ["db.example.com"]
    assert _peers(records[0]) == _peers(records[1])
    assert _peers(records[0]) == [
        ("10.9.0.0/16", 22),
        ("192.0.2.1", 0),
        ("2001:db8::1", 80),
        ("192.0.2.10", 5432),
        ("2001:db8::10", 5432),
    ]


def test_an_unresolvable_external_target_names_its_index() -> None:
    with pytest.raises(PlanError, match=r"^spec\.externalTargets\[1\]: 'nowhere\.invalid' does not resolve"):
        _network(action="partition", externalTargets=["192.0.2.1", "nowhere.invalid"], resolve=lambda host: [])


def test_a_host_name_without_a_resolver_names_its_index() -> None:
    with pytest.raises(PlanError, match=r"^spec\.externalTargets\[0\]: 'db\.example\.com' is a host name"):
        _network(action="partition", externalTargets=["db.example.com"])


# --- NetworkChaos: refusals ------------------------------------------------------------------------------


def test_a_target_pod_without_an_address_is_refused() -> None:
    with pytest.raises(PlanError, match=r"^spec\.target\.selector: shop/db-0 has no IP address yet"):
        _network((WEB_0, _pod("db-0", app="db", ips=())), action="partition", target=_pick("db"))


def test_a_source_pod_without_an_address_is_refused_when_it_is_a_peer() -> None:
    with pytest.raises(PlanError, match=r"^spec\.selector: shop/web-0 has no IP address yet"):
        _network((_pod("web-0", ips=()), DB_0), action="partition", target=_pick("db"))


@pytest.mark.parametrize(("app", "path"), [("web", r"spec\.selector"), ("db", r"spec\.target\.selector")])
def test_a_pod_whose_containers_have_not_started_is_refused(app: str, path: str) -> None:
    pods = [WEB_0, DB_0]
    pods[0 if app == "web" else 1] = _pod(f"{app}-0", app=app, ips=("10.0.5.5",), started=())
    with pytest.raises(PlanError, match=rf"^{path}: shop/{app}-0: no container of the pod has started"):
        _network(pods, action="partition", target=_pick("db"))


def test_the_first_started_container_stands_for_the_pod() -> None:
    pod = _pod("web-0", containers=("init-wait", "app"), started=("app",))
    records = _network((pod,), action="partition")
    assert _only(records[0]).target.container_id == "containerd://web-0-app"


@pytest.mark.parametrize(("app", "path"), [("web", r"spec\.selector"), ("db", r"spec\.target\.selector")])
def test_host_network_pods_are_refused_unless_allowed(app: str, path: str) -> None:
    pods = [WEB_0, DB_0]
    pods[0 if app == "web" else 1] = _pod(f"{app}-0", app=app, ips=("192.168.0.4",), host_network=True)
    with pytest.raises(PlanError, match=rf"^{path}: shop/{app}-0 uses the host's network"):
        _network(pods, action="partition", target=_pick("db"))
    records = _network(pods, action="partition", target=_pick("db"), allow_host_network=True)
    assert all(record.works for record in records)


def test_a_host_network_pod_that_is_only_a_peer_is_not_refused() -> None:
    # A "to" delay does nothing on the target pods: Chaos Mesh aims at a host-network target without touching it.
    node_local = _pod("db-0", app="db", ips=("192.168.0.4",), host_network=True, started=())
    records = _network((WEB_0, node_local), action="delay", delay={"latency": "5ms"}, target=_pick("db"))
    assert _peers(records[0]) == [("192.168.0.4", 0)]
    assert records[1].works == ()


def test_a_target_that_selects_nothing_is_refused_instead_of_widened() -> None:
    # Without the target pods, the source's peers would be empty, which means everyone.
    with pytest.raises(PlanError, match=r"^spec\.target\.selector: selected nothing"):
        _network((WEB_0,), action="partition", target=_pick("db"))
    chaos = _experiment("NetworkChaos", _pick("web", action="delay", delay={"latency": "5ms"}, target=_pick("db")))
    with pytest.raises(PlanError, match=r"^spec\.target\.selector: selected nothing"):
        records_work(chaos, UID, {SOURCE_KEY: _selections(chaos, WEB_0)[SOURCE_KEY]})


# --- properties ------------------------------------------------------------------------------------------

POD_POOL = [_pod(f"p-{index}", app="a" if index % 2 else "b", ips=(f"10.0.2.{index}",)) for index in range(6)]


@given(
    chosen=st.lists(st.sampled_from(POD_POOL), min_size=1, max_size=6, unique_by=lambda pod: pod.name),
    action=st.sampled_from(["partition", "delay", "bandwidth"]),
    direction=st.sampled_from(["to", "from", "both"]),
    source_app=st.sampled_from(["a", "b"]),
    target_app=st.none() | st.sampled_from(["a", "b"]),
)
def test_network_records_and_injections(
    chosen: list[Pod], action: str, direction: str, source_app: str, target_app: str | None
) -> None:
    spec: dict[str, Any] = _pick(source_app, action=action, direction=direction)
    if action == "delay":
        spec["delay"] = {"latency": "1ms"}
    if action == "bandwidth":
        spec["bandwidth"] = {"rate": "1mbps", "limit": 1000, "buffer": 1000}
    if target_app is not None:
        spec["target"] = _pick(target_app)
    if action != "partition" and direction != "to" and target_app is None:
        return  # refused by validation: from/both traffic control needs a target
    pods = tuple(chosen)
    sources = {pod.key for pod in pods if pod.labels["app"] == source_app}
    targets = {pod.key for pod in pods if pod.labels["app"] == target_app}
    chaos = _experiment("NetworkChaos", spec)
    if not sources or (target_app is not None and not targets):
        with pytest.raises(PlanError, match="selected nothing"):
            _work(chaos, *pods)
        return
    records = _work(chaos, *pods)
    assert {r.record_id for r in records if r.selector_key == SOURCE_KEY} == sources
    assert {r.record_id for r in records if r.selector_key == TARGET_KEY} == targets
    ids = [work.injection_id for record in records for work in record.works]
    assert len(ids) == len(set(ids))
    for record in records:
        side_works = action == "partition" or direction in (
            ("to", "both") if record.selector_key == SOURCE_KEY else ("from", "both")
        )
        assert len(record.works) == (1 if side_works else 0)
        for work in record.works:
            assert work.target.container_id == f"containerd://{record.pod.name}-app"
            assert work.injection_id == injection_id(UID, record.selector_key, record.record_id)
            other = targets if record.selector_key == SOURCE_KEY else sources
            if record.selector_key == SOURCE_KEY and target_app is None:
                other = set()
            expected = {Peer(f"10.0.2.{key.rsplit('-', 1)[1]}") for key in other}
            assert {Peer(**peer) for peer in work.spec["peers"]} == expected
    slots = {work.slot for record in records for work in record.works}
    assert len(_plans(records)) == (len(slots) if action != "partition" else len(ids))
