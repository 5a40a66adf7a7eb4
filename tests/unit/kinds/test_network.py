"""Network planners: golden commands for partition and traffic control, names, sides, and undo/probe shape."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.api.networkchaos import NetworkChaosSpec
from faultmesh.kinds.network import (
    IPTABLES_GONE,
    PARTITION_KIND,
    TC_GONE,
    TRAFFIC_CONTROL_KIND,
    NetemParams,
    PartitionFault,
    Peer,
    TbfParams,
    TrafficFault,
    fault_device,
    fault_from_wire,
    fault_to_wire,
    partition_fault,
    partition_planner,
    plan_partition,
    plan_traffic_control,
    traffic_classes,
    traffic_control_planner,
    traffic_control_slot,
    traffic_fault,
)
from faultmesh.kinds.network_sets import CHAIN_NAME_MAX, IPSET_GONE, IPSET_NAME_MAX, injection_tag, peer_sets
from faultmesh.kinds.plan import Exec, Plan, Step, Target

TARGET = Target("containerd://abc", "shop/web-0", facts={"ips": ["10.1.0.5"]})
ID = "shop/cut/0f1e/shop/web-0"
TAG = injection_tag(ID)


def _spec(**fields: Any) -> NetworkChaosSpec:
    return NetworkChaosSpec.model_validate({"mode": "all", "selector": {"namespaces": ["shop"]}, **fields})


def _changes(plan: Plan) -> tuple[Step, ...]:
    """The steps that change the kernel: a partition starts with a check that its device exists."""
    if plan.steps and plan.steps[0].name.startswith("device "):
        return plan.steps[1:]
    return plan.steps


def _argvs(plan: Plan, side: str) -> list[tuple[str, ...]]:
    """The command lines of the kernel-changing steps' ``apply`` or ``undo`` actions."""
    argvs = []
    for step in _changes(plan):
        action = getattr(step, side)
        assert isinstance(action, Exec)
        argvs.append(action.argv)
    return argvs


def _applies(plan: Plan) -> list[tuple[str, ...]]:
    return _argvs(plan, "apply")


def test_a_partition_first_checks_that_its_device_exists() -> None:
    # iptables takes a rule for a missing device and reads it back: without the check, a partition on the
    # wrong device would be "verified" and drop nothing.
    plan = plan_partition(TARGET, PartitionFault(ID, "to", (Peer("10.0.0.7"),), "eth1"))
    check = plan.steps[0]
    assert isinstance(check.apply, Exec)
    assert check.apply.argv == ("ip", "link", "show", "dev", "eth1") and check.apply.namespaces == ("net",)
    assert check.undo is None and check.probe is None


def _stdin(plan: Plan, index: int) -> str:
    action = _changes(plan)[index].apply
    assert isinstance(action, Exec) and action.stdin is not None
    return action.stdin


def _undos(plan: Plan) -> list[tuple[str, ...]]:
    return _argvs(plan, "undo")


# --- partition: golden commands ---------------------------------------------------------------------------


def test_partition_to_one_peer() -> None:
    plan = plan_partition(TARGET, PartitionFault(ID, "to", (Peer("10.0.0.7"),), "eth0"))
    chain = f"FM-P-{TAG}-O"
    assert _applies(plan) == [
        ("ipset", "restore", "-exist"),
        ("iptables", "-w", "5", "-t", "filter", "-N", chain),
        (
            "iptables",
            "-w",
            "5",
            "-t",
            "filter",
            "-A",
            chain,
            "-o",
            "eth0",
            "-m",
            "set",
            "--match-set",
            f"fm-p-{TAG}-n4",
            "dst",
            "-j",
            "DROP",
        ),
        ("iptables", "-w", "5", "-t", "filter", "-I", "OUTPUT", "-j", chain),
    ]
    assert _stdin(plan, 0) == (
        f"create fm-p-{TAG}-n4 hash:net family inet\nflush fm-p-{TAG}-n4\nadd fm-p-{TAG}-n4 10.0.0.7/32\n"
    )
    assert _undos(plan) == [
        ("ipset", "destroy", f"fm-p-{TAG}-n4"),
        ("iptables", "-w", "5", "-t", "filter", "-X", chain),
        (
            "iptables",
            "-w",
            "5",
            "-t",
            "filter",
            "-D",
            chain,
            "-o",
            "eth0",
            "-m",
            "set",
            "--match-set",
            f"fm-p-{TAG}-n4",
            "dst",
            "-j",
            "DROP",
        ),
        ("iptables", "-w", "5", "-t", "filter", "-D", "OUTPUT", "-j", chain),
    ]
    assert [step.probe.expect for step in plan.steps if step.probe] == [
        f"fm-p-{TAG}-n4\n",
        f"-N {chain}\n",
        f"-A {chain} -o eth0 -m set --match-set fm-p-{TAG}-n4 dst -j DROP\n",
        f"-A OUTPUT -j {chain}\n",
    ]


def test_partition_from_matches_the_source_and_the_local_port() -> None:
    plan = plan_partition(TARGET, PartitionFault(ID, "from", (Peer("10.0.0.0/8", 80), Peer("10.0.0.9")), "eth1"))
    chain = f"FM-P-{TAG}-I"
    applies = _applies(plan)
    assert applies[:3] == [("ipset", "restore", "-exist")] * 3
    assert applies[3:] == [
        ("iptables", "-w", "5", "-t", "filter", "-N", chain),
        (
            "iptables",
            "-w",
            "5",
            "-t",
            "filter",
            "-A",
            chain,
            "-i",
            "eth1",
            "-m",
            "set",
            "--match-set",
            f"fm-p-{TAG}-l4",
            "src,dst",
            "-j",
            "DROP",
        ),
        ("iptables", "-w", "5", "-t", "filter", "-I", "INPUT", "-j", chain),
    ]
    scripts = [_stdin(plan, index) for index in range(3)]
    assert scripts == [
        f"create fm-p-{TAG}-n4 hash:net family inet\nflush fm-p-{TAG}-n4\nadd fm-p-{TAG}-n4 10.0.0.9/32\n",
        f"create fm-p-{TAG}-p4 hash:net,port family inet\nflush fm-p-{TAG}-p4\n"
        f"add fm-p-{TAG}-p4 10.0.0.0/8,tcp:80\nadd fm-p-{TAG}-p4 10.0.0.0/8,udp:80\n",
        f"create fm-p-{TAG}-l4 list:set\nflush fm-p-{TAG}-l4\nadd fm-p-{TAG}-l4 fm-p-{TAG}-n4\n"
        f"add fm-p-{TAG}-l4 fm-p-{TAG}-p4\n",
    ]


def test_partition_both_installs_both_chains() -> None:
    plan = plan_partition(TARGET, PartitionFault(ID, "both", (Peer("10.0.0.7"),)))
    jumps = [argv for argv in _applies(plan) if "-I" in argv]
    assert jumps == [
        ("iptables", "-w", "5", "-t", "filter", "-I", "OUTPUT", "-j", f"FM-P-{TAG}-O"),
        ("iptables", "-w", "5", "-t", "filter", "-I", "INPUT", "-j", f"FM-P-{TAG}-I"),
    ]


def test_partition_without_peers_drops_everything_on_the_device() -> None:
    plan = plan_partition(TARGET, PartitionFault(ID, "to", (), "eth0"))
    assert _applies(plan)[1] == (
        "iptables",
        "-w",
        "5",
        "-t",
        "filter",
        "-A",
        f"FM-P-{TAG}-O",
        "-o",
        "eth0",
        "-j",
        "DROP",
    )
    assert not any(argv[0] == "ipset" for argv in _applies(plan))


def test_partition_without_peers_covers_each_family_the_target_has() -> None:
    dual = Target("containerd://abc", facts={"ips": ["10.1.0.5", "fd00::5"]})
    binaries = [argv[0] for argv in _applies(plan_partition(dual, PartitionFault(ID, "to")))]
    assert binaries == ["iptables"] * 3 + ["ip6tables"] * 5
    unknown = Target("containerd://abc")
    assert {argv[0] for argv in _applies(plan_partition(unknown, PartitionFault(ID, "to")))} == {"iptables"}


def test_partition_ipv6_peers_use_ip6tables_and_an_inet6_set() -> None:
    plan = plan_partition(TARGET, PartitionFault(ID, "to", (Peer("fd00::/64", 443),)))
    assert _stdin(plan, 0).startswith(f"create fm-p-{TAG}-p6 hash:net,port family inet6\n")
    assert f"add fm-p-{TAG}-p6 fd00::/64,tcp:443\n" in _stdin(plan, 0)
    assert {argv[0] for argv in _applies(plan)[1:]} == {"ip6tables"}


def test_ipv6_partitions_let_neighbour_discovery_through_before_dropping() -> None:
    plan = plan_partition(TARGET, PartitionFault(ID, "from", (Peer("fd00::1"),), "eth0"))
    chain = f"FM-P-{TAG}-I"
    assert _applies(plan)[2:5] == [
        (
            "ip6tables",
            "-w",
            "5",
            "-t",
            "filter",
            "-A",
            chain,
            "-i",
            "eth0",
            "-p",
            "ipv6-icmp",
            "-m",
            "icmp6",
            "--icmpv6-type",
            "135",
            "-j",
            "RETURN",
        ),
        (
            "ip6tables",
            "-w",
            "5",
            "-t",
            "filter",
            "-A",
            chain,
            "-i",
            "eth0",
            "-p",
            "ipv6-icmp",
            "-m",
            "icmp6",
            "--icmpv6-type",
            "136",
            "-j",
            "RETURN",
        ),
        (
            "ip6tables",
            "-w",
            "5",
            "-t",
            "filter",
            "-A",
            chain,
            "-i",
            "eth0",
            "-m",
            "set",
            "--match-set",
            f"fm-p-{TAG}-n6",
            "src",
            "-j",
            "DROP",
        ),
    ]


def test_a_whole_family_peer_is_split_for_ipset() -> None:
    sets = peer_sets("fm-p-x", [Peer("0.0.0.0/0")])
    assert sets[4].sets[0].entries == ("0.0.0.0/1", "128.0.0.0/1")


def test_every_undo_tolerates_what_is_already_gone_and_every_step_has_a_probe() -> None:
    plan = plan_partition(TARGET, PartitionFault(ID, "both", (Peer("10.0.0.7", 22), Peer("fd00::1"))))
    for step in _changes(plan):
        assert isinstance(step.apply, Exec) and isinstance(step.undo, Exec) and step.probe is not None
        expected = IPSET_GONE if step.undo.argv[0] == "ipset" else IPTABLES_GONE
        assert step.undo.tolerate == expected
        assert step.apply.namespaces == step.undo.namespaces == step.probe.namespaces == ("net",)


def test_two_partitions_share_no_object() -> None:
    first = plan_partition(TARGET, PartitionFault("a/b/1/x", "both", (Peer("10.0.0.7"),)))
    second = plan_partition(TARGET, PartitionFault("a/b/2/x", "both", (Peer("10.0.0.7"),)))

    def names(plan: Plan) -> set[str]:
        return {word for argv in _applies(plan) for word in argv if word.startswith(("FM-", "fm-"))}

    assert names(first) and names(second) and not names(first) & names(second)


@given(st.text(min_size=1, max_size=300))
def test_names_fit_the_kernel_limits_for_any_id(injection_id: str) -> None:
    plan = plan_partition(
        TARGET,
        PartitionFault(
            injection_id, "both", (Peer("10.0.0.7", 1), Peer("10.0.0.8"), Peer("fd00::1", 2), Peer("fd00::2"))
        ),
    )
    words = {word for argv in _applies(plan) for word in argv}
    for step in plan.steps:
        assert isinstance(step.apply, Exec)
        words |= set((step.apply.stdin or "").split())
    chains = {word for word in words if word.startswith("FM-")}
    sets = {word for word in words if word.startswith("fm-")}
    assert len(chains) == 2 and all(len(chain) <= CHAIN_NAME_MAX for chain in chains)
    assert len(sets) == 6 and all(len(name) <= IPSET_NAME_MAX for name in sets)


def test_names_are_unique_per_injection() -> None:
    tags = {injection_tag(f"ns/chaos/{n}/ns/pod") for n in range(5000)}
    assert len(tags) == 5000


def test_an_empty_injection_id_is_refused() -> None:
    with pytest.raises(ValueError, match="injection id must not be empty"):
        plan_partition(TARGET, PartitionFault("", "to"))


@pytest.mark.parametrize(
    ("peer", "message"),
    [(Peer("10.0.0.300"), "not an IP address or a CIDR"), (Peer("10.0.0.1", 70000), "not in 0..65535")],
)
def test_bad_peers_are_refused_with_the_peer_named(peer: Peer, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_partition(TARGET, PartitionFault(ID, "to", (peer,)))


@pytest.mark.parametrize("device", ["", "eth 0", "a/b", "x" * 16])
def test_bad_devices_are_refused(device: str) -> None:
    with pytest.raises(ValueError, match="is not a network device name"):
        plan_partition(TARGET, PartitionFault(ID, "to", (), device))


# --- sides: what Chaos Mesh does on the selected pods and on the target pods -------------------------------


@pytest.mark.parametrize(
    ("direction", "source", "target"),
    [("to", "to", "from"), ("from", "from", "to"), ("both", "both", "both")],
)
def test_partition_sides_mirror_the_direction(direction: str, source: str, target: str) -> None:
    spec = _spec(
        action="partition",
        direction=direction,
        device="eth1",
        targetDevice="eth2",
        target={"mode": "all", "selector": {"namespaces": ["db"]}},
    )
    on_source = partition_fault(spec, "s", side="source", peers=[Peer("10.0.0.2")])
    on_target = partition_fault(spec, "t", side="target", peers=[Peer("10.0.0.1")])
    assert (on_source.direction, on_source.device) == (source, "eth1")
    assert (on_target.direction, on_target.device) == (target, "eth2")


@pytest.mark.parametrize(
    ("direction", "on_source", "on_target"),
    [("to", True, False), ("from", False, True), ("both", True, True)],
)
def test_traffic_control_acts_on_the_sending_side(direction: str, on_source: bool, on_target: bool) -> None:
    spec = _spec(
        action="delay",
        direction=direction,
        delay={"latency": "10ms"},
        target={"mode": "all", "selector": {"namespaces": ["db"]}},
    )
    assert (traffic_fault(spec, "s", side="source") is not None) is on_source
    assert (traffic_fault(spec, "t", side="target") is not None) is on_target


def test_traffic_fault_merges_every_netem_part_of_the_spec() -> None:
    spec = _spec(
        action="delay",
        delay={"latency": "10ms"},
        loss={"loss": "5"},
        bandwidth={"rate": "1mbit", "limit": 1, "buffer": 1},
    )
    fault = traffic_fault(spec, "x", peers=[Peer("10.0.0.2")])
    assert fault == TrafficFault("x", netem=NetemParams(delay_ns=10_000_000, loss=5.0), peers=(Peer("10.0.0.2"),))


def test_bandwidth_fault_uses_only_the_bandwidth() -> None:
    spec = _spec(
        action="bandwidth", bandwidth={"rate": "10mbit", "limit": 2000, "buffer": 3000}, delay={"latency": "10ms"}
    )
    assert traffic_fault(spec, "x") == TrafficFault("x", tbf=TbfParams(10_000_000, 3000, 2000))
    on_target = traffic_fault(
        spec.model_copy(update={"direction": "both", "target_device": "eth3"}), "y", side="target"
    )
    assert on_target is not None and on_target.device == "eth3"


def test_device_defaults_to_eth0() -> None:
    spec = _spec(action="partition")
    assert fault_device(spec, "source") == fault_device(spec, "target") == "eth0"


def test_planners_refuse_the_other_kind_of_action() -> None:
    with pytest.raises(ValueError, match="is not traffic control"):
        traffic_fault(_spec(action="partition"), "x")
    with pytest.raises(ValueError, match="is not a partition"):
        partition_fault(_spec(action="delay", delay={"latency": "1ms"}), "x")


# --- traffic control: golden commands ---------------------------------------------------------------------


def test_one_fault_for_all_traffic_is_a_root_htb_with_its_leaf_in_the_default_class() -> None:
    fault = TrafficFault("x", tbf=TbfParams(1_000_000, 5000, 10000), netem=NetemParams(delay_ns=10**7))
    plan = plan_traffic_control(TARGET, [fault])
    assert _applies(plan) == [
        ("tc", "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "1"),
        (
            "tc",
            "class",
            "add",
            "dev",
            "eth0",
            "parent",
            "1:",
            "classid",
            "1:1",
            "htb",
            "rate",
            "100gbit",
            "quantum",
            "60000",
        ),
        (
            "tc",
            "qdisc",
            "add",
            "dev",
            "eth0",
            "parent",
            "1:1",
            "handle",
            "1001:",
            "tbf",
            "rate",
            "1000000bit",
            "burst",
            "5000",
            "limit",
            "10000",
        ),
        ("tc", "qdisc", "add", "dev", "eth0", "parent", "1001:1", "handle", "2001:", "netem", "delay", "10000us"),
    ]
    assert _undos(plan) == [
        ("tc", "qdisc", "del", "dev", "eth0", "root", "handle", "1:"),
        ("tc", "class", "del", "dev", "eth0", "classid", "1:1"),
        ("tc", "qdisc", "del", "dev", "eth0", "parent", "1:1", "handle", "1001:"),
        ("tc", "qdisc", "del", "dev", "eth0", "parent", "1001:1", "handle", "2001:"),
    ]
    assert [step.probe.expect for step in plan.steps if step.probe] == [
        '{"kind":"htb","handle":"1:","root":true,',
        "class htb 1:1 root ",
        '{"kind":"tbf","handle":"1001:","parent":"1:1",',
        '{"kind":"netem","handle":"2001:","parent":"1001:1",',
    ]
    assert all(step.undo.tolerate == TC_GONE for step in plan.steps)  # type: ignore[union-attr]


def test_a_fault_with_peers_gets_its_class_and_a_classify_rule() -> None:
    fault = TrafficFault("x", netem=NetemParams(loss=5.0), peers=(Peer("10.0.0.7"),), device="eth1")
    plan = plan_traffic_control(TARGET, [fault])
    tag = injection_tag("x")
    assert _applies(plan) == [
        ("ipset", "restore", "-exist"),
        ("tc", "qdisc", "add", "dev", "eth1", "root", "handle", "1:", "htb", "default", "1"),
        (
            "tc",
            "class",
            "add",
            "dev",
            "eth1",
            "parent",
            "1:",
            "classid",
            "1:1",
            "htb",
            "rate",
            "100gbit",
            "quantum",
            "60000",
        ),
        (
            "tc",
            "class",
            "add",
            "dev",
            "eth1",
            "parent",
            "1:",
            "classid",
            "1:2",
            "htb",
            "rate",
            "100gbit",
            "quantum",
            "60000",
        ),
        ("tc", "qdisc", "add", "dev", "eth1", "parent", "1:2", "handle", "2002:", "netem", "loss", "5%"),
        (
            "iptables",
            "-w",
            "5",
            "-t",
            "mangle",
            "-A",
            "POSTROUTING",
            "-o",
            "eth1",
            "-m",
            "set",
            "--match-set",
            f"fm-t-{tag}-n4",
            "dst",
            "-j",
            "CLASSIFY",
            "--set-class",
            "1:2",
        ),
    ]
    assert plan.steps[-1].probe.expect == (  # type: ignore[union-attr]
        f"-A POSTROUTING -o eth1 -m set --match-set fm-t-{tag}-n4 dst -j CLASSIFY --set-class 0001:0002\n"
    )


def test_overlapping_faults_get_a_class_for_their_overlap_after_their_own() -> None:
    wide = TrafficFault("wide", netem=NetemParams(delay_ns=10**8), peers=(Peer("10.0.0.0/24"),))
    narrow = TrafficFault("narrow", tbf=TbfParams(10**6, 5000, 5000), peers=(Peer("10.0.0.7"),))
    everyone = TrafficFault("all", netem=NetemParams(loss=1.0))
    classes = traffic_classes([wide, narrow, everyone])
    assert [(c.classid, c.injection_ids) for c in classes] == [
        ("1:1", ("all",)),
        ("1:2", ("all", "wide")),
        ("1:3", ("all", "narrow", "wide")),
    ]
    assert classes[2].netem == NetemParams(delay_ns=10**8, loss=1.0)
    assert classes[2].tbf == TbfParams(10**6, 5000, 5000)
    rules = [argv for argv in _applies(plan_traffic_control(TARGET, [wide, narrow, everyone])) if argv[0] == "iptables"]
    assert [rule[-1] for rule in rules] == ["1:2", "1:3"]
    assert rules[1].count("--match-set") == 2


def test_the_slowest_bucket_wins_where_bandwidth_faults_meet() -> None:
    slow = TrafficFault("slow", tbf=TbfParams(10**6, 1000, 1000))
    fast = TrafficFault("fast", tbf=TbfParams(10**7, 9000, 9000))
    assert traffic_classes([fast, slow])[0].tbf == slow.tbf


def test_no_faults_no_steps() -> None:
    assert plan_traffic_control(TARGET, []).steps == ()


def test_an_injection_twice_in_one_slot_is_refused() -> None:
    fault = TrafficFault("x", netem=NetemParams(loss=1.0))
    with pytest.raises(ValueError, match="appears twice"):
        plan_traffic_control(TARGET, [fault, fault])


def test_a_fault_without_settings_is_refused() -> None:
    with pytest.raises(ValueError, match="neither netem nor tbf"):
        plan_traffic_control(TARGET, [TrafficFault("x")])


def test_one_slot_is_one_device() -> None:
    with pytest.raises(ValueError, match="one traffic-control slot is one device, not eth0, eth1"):
        plan_traffic_control(
            TARGET,
            [
                TrafficFault("x", netem=NetemParams(loss=1.0)),
                TrafficFault("y", netem=NetemParams(loss=1.0), device="eth1"),
            ],
        )


def test_slot_name() -> None:
    assert traffic_control_slot(TARGET, "eth0") == "net/containerd://abc/eth0"


# --- wire form --------------------------------------------------------------------------------------------


def test_faults_round_trip_through_json() -> None:
    import json

    partition = PartitionFault(ID, "both", (Peer("10.0.0.0/8", 22), Peer("fd00::1")), "eth1")
    traffic = TrafficFault(
        ID, NetemParams(delay_ns=10**7, loss=2.5), TbfParams(10**6, 2000, 3000), (Peer("10.0.0.7"),), "eth2"
    )
    for kind, fault in ((PARTITION_KIND, partition), (TRAFFIC_CONTROL_KIND, traffic)):
        wire = json.loads(json.dumps(fault_to_wire(fault)))
        assert fault_from_wire(kind, wire) == fault


def test_engine_planners_plan_from_the_wire() -> None:
    partition = PartitionFault(ID, "to", (Peer("10.0.0.7"),))
    assert partition_planner(fault_to_wire(partition), TARGET) == plan_partition(TARGET, partition)
    a = TrafficFault("a", netem=NetemParams(loss=1.0))
    b = TrafficFault("b", tbf=TbfParams(10**6, 2000, 3000), peers=(Peer("10.0.0.7"),))
    members = [("a", fault_to_wire(a)), ("b", fault_to_wire(b))]
    assert traffic_control_planner(members, TARGET) == plan_traffic_control(TARGET, [a, b])


def test_a_member_carrying_another_injections_spec_is_refused() -> None:
    with pytest.raises(ValueError, match='injection b carries the spec of "a"'):
        traffic_control_planner([("b", fault_to_wire(TrafficFault("a", netem=NetemParams(loss=1.0))))], TARGET)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"injection_id": "x", "direction": "sideways"}, "bad NetworkPartition spec: direction: Input should be"),
        (
            {"injection_id": "x", "direction": "to", "peers": [{"network": "10.0.0.1", "prt": 1}]},
            "peers[0].prt: Unexpected keyword argument",
        ),
        ({"direction": "to"}, "injection_id: Field required"),
    ],
)
def test_bad_wire_specs_name_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        fault_from_wire(PARTITION_KIND, data)


def test_an_unknown_wire_kind_is_refused() -> None:
    with pytest.raises(ValueError, match='"Nope" is not a network fault kind'):
        fault_from_wire("Nope", {})
