"""NetworkChaos planners: partition (ipset + iptables) and traffic control (htb, tbf, netem), as Chaos Mesh.

The controller resolves a NetworkChaos into *faults*, one per target pod and side, with the peers already
turned into addresses (:func:`partition_fault`, :func:`traffic_fault`); the planners turn faults into plans run
in the target's network namespace.

Sides. Chaos Mesh acts on both ends. A partition drops on the selected pods ("source") and on the ``target``
pods alike: direction ``to`` drops the source's packets to the targets on the way out of the source and on
the way into the targets; ``from`` the reverse; ``both`` all four. Traffic control shapes only what leaves a
pod, so ``to`` shapes the source's traffic to the targets (and external targets), and ``from`` shapes the
*target pods'* traffic to the source pods, on the target pods; ``both`` does both.

Combining. A partition owns one chain per direction and its own ipsets, named after its injection id, so
several partitions on a pod add up (the union of what they drop) and each leaves without touching the
others. Traffic control cannot work per injection -- a device has one root qdisc -- so
:func:`plan_traffic_control` takes every tc fault of one device (a *slot*) and builds one tree for all:

* root ``htb`` whose default class ``1:1`` carries the faults without peers (or passes traffic unshaped);
* one class per combination of faults that some destination meets, chosen in ``mangle POSTROUTING`` by
  ``-m set --match-set ... -j CLASSIFY`` rules (one ipset per fault; rules ordered by combination size,
  so the last rule a packet matches -- CLASSIFY does not stop the walk -- is the one naming all its faults);
* under each class a ``tbf`` (the lowest rate among the bandwidth faults that apply) whose child is a
  ``netem`` with the netem settings of all faults that apply, merged field by field with the larger value
  winning (:meth:`NetemParams.merge`, Chaos Mesh's rule).

So a destination aimed at by two faults gets both, combined; every other destination gets only its own. In
Chaos Mesh a destination in two faults' ipsets ends up in one of them (whichever CLASSIFY rule comes last),
and faults without peers are stacked qdisc over qdisc, so their delays add up; here the faults of one class
merge instead. When the tbf has a netem child, the queue in front of the bucket is netem's (1000 packets by
default) rather than tbf's byte limit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, TypeAdapter, ValidationError

from ..api.networkchaos import NetworkChaosSpec
from .network_sets import (
    CHAIN_NAME_MAX,
    FAMILIES,
    Family,
    Peer,
    PeerSets,
    injection_tag,
    overlaps,
    peer_sets,
)
from .network_tc import NetemParams, TbfParams
from .plan import Exec, Plan, Probe, Step, Target

__all__ = [
    "DEFAULT_DEVICE",
    "PARTITION_KIND",
    "TRAFFIC_CONTROL_KIND",
    "NetemParams",
    "PartitionFault",
    "Peer",
    "TbfParams",
    "TrafficClass",
    "TrafficFault",
    "fault_device",
    "fault_from_wire",
    "fault_to_wire",
    "partition_fault",
    "partition_planner",
    "plan_partition",
    "plan_traffic_control",
    "traffic_classes",
    "traffic_control_planner",
    "traffic_control_slot",
    "traffic_fault",
]

KIND = "NetworkChaos"
#: The device Chaos Mesh's daemon uses when a spec names none.
DEFAULT_DEVICE = "eth0"
#: ``Target.facts`` key: the target's own IP addresses. A partition without peers drops every family listed
#: there (IPv4 alone when the facts do not say).
FACT_IPS = "ips"

Direction = Literal["to", "from", "both"]
Side = Literal["source", "target"]
Chain = Literal["INPUT", "OUTPUT"]

_DEVICE = re.compile(r"[^\s/:]{1,15}")

#: What iptables says when the chain, rule or set an undo removes is already gone (nf_tables and legacy).
IPTABLES_GONE = (
    "No chain/target/match by that name",
    "Bad rule (does a matching rule exist in that chain?)",
    "does not exist",
    "doesn't exist",
    "Couldn't load target",
)
#: What tc says when the device, qdisc or class an undo removes is already gone.
TC_GONE = (
    "Cannot find device",
    "No such file or directory",
    "Cannot delete qdisc with handle of zero",
    "Failed to find qdisc with specified classid",
    "Invalid handle",
)
IPTABLES_WAIT = ("-w", "5")


def _iptables(family: Family) -> str:
    return "iptables" if family == 4 else "ip6tables"


def _check_device(device: str) -> str:
    if not _DEVICE.fullmatch(device):
        raise ValueError(f'"{device}" is not a network device name (1 to 15 characters, no spaces, "/" or ":")')
    return device


def fault_device(spec: NetworkChaosSpec, side: Side) -> str:
    """The device a fault acts on: ``device`` on the selected pods, ``targetDevice`` on the target pods."""
    device = spec.device if side == "source" else spec.target_device
    return device or DEFAULT_DEVICE


# --- partition -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionFault:
    """Drop the target's traffic with ``peers`` (none: with everyone) on ``device``.

    ``direction`` is seen from the target this fault is planned on: ``to`` drops what it sends to the peers
    (chain jumped to from OUTPUT), ``from`` what it receives from them (INPUT), ``both`` both. Every packet is
    dropped, established connections included: Chaos Mesh matches no conntrack state either.
    """

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    injection_id: str
    direction: Direction
    peers: tuple[Peer, ...] = ()
    device: str = DEFAULT_DEVICE


def partition_fault(
    spec: NetworkChaosSpec, injection_id: str, *, side: Side = "source", peers: Sequence[Peer] = ()
) -> PartitionFault:
    """A partition spec as the fault of one pod on ``side``, whose ``peers`` are the other side's addresses.

    On the target pods Chaos Mesh mirrors the direction: ``to`` drops there what comes in from the source
    pods, ``from`` what goes out to them.
    """
    if spec.action != "partition":
        raise ValueError(f'action "{spec.action}" is not a partition')
    direction: Direction = spec.direction
    if side == "target" and direction != "both":
        direction = "from" if direction == "to" else "to"
    return PartitionFault(injection_id, direction, tuple(peers), fault_device(spec, side))


def _partition_chains(fault: PartitionFault) -> list[tuple[Chain, str]]:
    tag = injection_tag(fault.injection_id)
    chains: list[tuple[Chain, str]] = []
    if fault.direction in ("to", "both"):
        chains.append(("OUTPUT", f"FM-P-{tag}-O"))
    if fault.direction in ("from", "both"):
        chains.append(("INPUT", f"FM-P-{tag}-I"))
    for _, name in chains:
        assert len(name) <= CHAIN_NAME_MAX, name
    return chains


def _target_families(target: Target) -> tuple[Family, ...]:
    addresses = target.facts.get(FACT_IPS) or ()
    families = {6 if ":" in str(address) else 4 for address in addresses}
    return tuple(family for family in FAMILIES if family in families) or (4,)


def plan_partition(target: Target, fault: PartitionFault) -> Plan:
    """The steps of one partition: its ipsets, then per direction a chain of DROP rules and the jump to it."""
    device = _check_device(fault.device)
    tag = injection_tag(fault.injection_id)
    sets = peer_sets(f"fm-p-{tag}", fault.peers)
    # iptables accepts a rule for a device that does not exist, and reads it back: without this check a
    # partition on a missing device would be "verified" while it drops nothing. Nothing to undo or probe.
    steps: list[Step] = [Step(name=f"device {device} is there", apply=Exec(("ip", "link", "show", "dev", device),
                                                                          ("net",)))]
    steps += [ipset.step("peers of the partition") for family in sets for ipset in sets[family].sets]
    families = tuple(sets) if fault.peers else _target_families(target)
    for hook, chain in _partition_chains(fault):
        for family in families:
            steps += _drop_chain_steps(family, hook, chain, device, sets.get(family))
    return Plan(KIND, target, tuple(steps))


#: ICMPv6 neighbour solicitation and advertisement: IPv6's ARP. iptables never sees ARP, so an IPv4 partition
#: leaves address resolution alone; an IPv6 one lets these through too, so both families cut the same traffic.
NEIGHBOUR_DISCOVERY = ("135", "136")


def _drop_chain_steps(family: Family, hook: Chain, chain: str, device: str, peers: PeerSets | None) -> list[Step]:
    iptables = _iptables(family)
    listing = Probe((iptables, *IPTABLES_WAIT, "-t", "filter", "-S"), "", ("net",))
    interface = ("-o", device) if hook == "OUTPUT" else ("-i", device)
    match = peers.match.args("dst" if hook == "OUTPUT" else "src") if peers else ()
    what = f"{'to' if hook == 'OUTPUT' else 'from'} {'the peers' if peers else 'everyone'} on {device}"
    rules: list[tuple[str, tuple[str, ...]]] = []
    if family == 6:
        for icmp_type in NEIGHBOUR_DISCOVERY:
            rules.append(
                (
                    f"let neighbour discovery (ICMPv6 {icmp_type}) pass",
                    (*interface, "-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", icmp_type, "-j", "RETURN"),
                )
            )
    rules.append((f"drop traffic {what}", (*interface, *match, "-j", "DROP")))

    def iptables_exec(*args: str, tolerate: tuple[str, ...] = ()) -> Exec:
        return Exec((iptables, *IPTABLES_WAIT, "-t", "filter", *args), ("net",), tolerate=tolerate)

    steps = [
        Step(
            name=f"{iptables} chain {chain}",
            apply=iptables_exec("-N", chain),
            undo=iptables_exec("-X", chain, tolerate=IPTABLES_GONE),
            probe=_with_expect(listing, f"-N {chain}\n"),
        )
    ]
    for name, rule in rules:
        steps.append(
            Step(
                name=f"{iptables} {chain}: {name}",
                apply=iptables_exec("-A", chain, *rule),
                undo=iptables_exec("-D", chain, *rule, tolerate=IPTABLES_GONE),
                probe=_with_expect(listing, " ".join(("-A", chain, *rule)) + "\n"),
            )
        )
    steps.append(
        Step(
            name=f"{iptables} {hook} jumps to {chain}",
            # First in the hook, so an ACCEPT the pod has of its own does not let the traffic pass.
            apply=iptables_exec("-I", hook, "-j", chain),
            undo=iptables_exec("-D", hook, "-j", chain, tolerate=IPTABLES_GONE),
            probe=_with_expect(listing, f"-A {hook} -j {chain}\n"),
        )
    )
    return steps


def _with_expect(probe: Probe, expect: str) -> Probe:
    return Probe(probe.argv, expect, probe.namespaces, probe.tolerate)


# --- traffic control -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrafficFault:
    """Shape what the target sends to ``peers`` (none: everything leaving ``device``) with netem and/or tbf."""

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    injection_id: str
    netem: NetemParams | None = None
    tbf: TbfParams | None = None
    peers: tuple[Peer, ...] = ()
    device: str = DEFAULT_DEVICE


def traffic_fault(
    spec: NetworkChaosSpec, injection_id: str, *, side: Side = "source", peers: Sequence[Peer] = ()
) -> TrafficFault | None:
    """A netem or bandwidth spec as the fault of one pod on ``side``; None when that side is left alone.

    Chaos Mesh shapes on the selected pods for ``to`` (peers: the target pods and external targets) and on
    the target pods for ``from`` (peers: the selected pods); ``both`` does both.
    """
    kind = spec.traffic_control_type()
    if kind is None:
        raise ValueError(f'action "{spec.action}" is not traffic control')
    wanted = ("to", "both") if side == "source" else ("from", "both")
    if spec.direction not in wanted:
        return None
    device = fault_device(spec, side)
    if kind == "bandwidth":
        if spec.bandwidth is None:
            raise ValueError("action bandwidth needs spec.bandwidth")
        return TrafficFault(
            injection_id, tbf=TbfParams.from_bandwidth(spec.bandwidth), peers=tuple(peers), device=device
        )
    netem = NetemParams.from_tc_parameter(spec)
    if netem is None:
        raise ValueError(f"action {spec.action} needs one of delay, loss, duplicate, corrupt or rate")
    return TrafficFault(injection_id, netem=netem, peers=tuple(peers), device=device)


@dataclass(frozen=True)
class TrafficClass:
    """One htb class of a slot: the faults its packets meet and the leaf they get (tbf, then netem)."""

    minor: int
    #: Every fault the class carries: those without peers, and ``aimed_ids``.
    injection_ids: tuple[str, ...]
    #: The faults with peers that its packets are aimed at by all (none for the default class).
    aimed_ids: tuple[str, ...]
    #: The address families in which some packet meets exactly ``aimed_ids``.
    families: tuple[Family, ...]
    tbf: TbfParams | None
    netem: NetemParams | None

    @property
    def classid(self) -> str:
        return f"1:{self.minor:x}"


DEFAULT_MINOR = 1
#: htb needs a rate for every class; the pass-through classes get one no link reaches.
PASS_THROUGH_RATE = "100gbit"
#: The bytes a class sends per round; explicit, since htb derives a uselessly large one from the rate.
HTB_QUANTUM = "60000"
#: Leaf handles are 0x1000 + minor (tbf) and 0x2000 + minor (netem), so the minors stay below 0x1000.
MAX_CLASSES = 0xFFF


def traffic_classes(faults: Sequence[TrafficFault]) -> list[TrafficClass]:
    """The classes of one slot: the default one, then one per combination of faults some packet meets."""
    ids = [fault.injection_id for fault in faults]
    if len(set(ids)) != len(ids):
        raise ValueError(f"an injection appears twice in one traffic-control slot: {sorted(ids)}")
    for fault in faults:
        if fault.netem is None and fault.tbf is None:
            raise ValueError(f"traffic fault {fault.injection_id} has neither netem nor tbf settings")
        for peer in fault.peers:
            peer.validate()
    everywhere = [fault for fault in faults if not fault.peers]
    aimed = [fault for fault in faults if fault.peers]
    seen_in: dict[frozenset[int], list[Family]] = {}
    for family in FAMILIES:
        for combo in overlaps([fault.peers for fault in aimed], family):
            seen_in.setdefault(combo, []).append(family)
    ordered = sorted(seen_in, key=lambda combo: (len(combo), sorted(aimed[i].injection_id for i in combo)))
    if len(ordered) + 1 > MAX_CLASSES:
        raise ValueError(f"{len(ordered)} overlapping combinations of faults on one device; at most {MAX_CLASSES - 1}")
    classes = [_traffic_class(DEFAULT_MINOR, everywhere, ())]
    for minor, combo in enumerate(ordered, start=DEFAULT_MINOR + 1):
        chosen = everywhere + [aimed[i] for i in sorted(combo)]
        classes.append(_traffic_class(minor, chosen, tuple(seen_in[combo])))
    return classes


def _traffic_class(minor: int, faults: Sequence[TrafficFault], families: tuple[Family, ...]) -> TrafficClass:
    tbfs = [(fault.tbf.rate_bps, fault.injection_id, fault.tbf) for fault in faults if fault.tbf is not None]
    netem: NetemParams | None = None
    for fault in faults:
        if fault.netem is not None:
            netem = fault.netem if netem is None else netem.merge(fault.netem)
    # The slowest bucket governs; equal rates fall back to the injection id, so the choice is stable.
    tbf = min(tbfs, key=lambda item: (item[0], item[1]))[2] if tbfs else None
    aimed = tuple(sorted(fault.injection_id for fault in faults if fault.peers))
    return TrafficClass(minor, tuple(sorted(fault.injection_id for fault in faults)), aimed, families, tbf, netem)


def traffic_control_slot(target: Target, device: str) -> str:
    """The slot that all tc faults of one target's device share (``net/<target>/<device>``)."""
    return f"net/{target.container_id}/{device}"


def plan_traffic_control(target: Target, faults: Sequence[TrafficFault]) -> Plan:
    """One plan for every tc fault of one device: per-fault ipsets, the htb tree, its leaves, the CLASSIFY rules.

    No faults, no steps: the slot is empty.
    """
    if not faults:
        return Plan(KIND, target, ())
    devices = sorted({fault.device for fault in faults})
    if len(devices) != 1:
        raise ValueError(f"one traffic-control slot is one device, not {', '.join(devices)}")
    device = _check_device(devices[0])
    classes = traffic_classes(faults)
    sets = {
        fault.injection_id: peer_sets(f"fm-t-{injection_tag(fault.injection_id)}", fault.peers)
        for fault in faults
        if fault.peers
    }
    steps = [
        ipset.step(f"peers of {injection_id}")
        for injection_id, by_family in sets.items()
        for family in by_family
        for ipset in by_family[family].sets
    ]
    steps.append(_root_step(device))
    for traffic_class in classes:
        steps += _class_steps(device, traffic_class)
    for family in FAMILIES:
        for traffic_class in classes[1:]:
            if family in traffic_class.families:
                aimed = [sets[i][family] for i in traffic_class.aimed_ids]
                steps.append(_classify_step(family, device, traffic_class, aimed))
    return Plan(KIND, target, tuple(steps))


def _tc(*args: str) -> tuple[str, ...]:
    return ("tc", *args)


def _qdisc_probe(device: str, expect: str) -> Probe:
    return Probe(_tc("-j", "qdisc", "show", "dev", device), expect, ("net",), tolerate=("Cannot find device",))


def _root_step(device: str) -> Step:
    return Step(
        name=f"htb root on {device}",
        apply=Exec(
            _tc("qdisc", "add", "dev", device, "root", "handle", "1:", "htb", "default", f"{DEFAULT_MINOR:x}"), ("net",)
        ),
        # Naming the handle keeps the undo from deleting a root qdisc that is not ours.
        undo=Exec(_tc("qdisc", "del", "dev", device, "root", "handle", "1:"), ("net",), tolerate=TC_GONE),
        probe=_qdisc_probe(device, '{"kind":"htb","handle":"1:","root":true,'),
    )


def _class_steps(device: str, traffic_class: TrafficClass) -> list[Step]:
    classid = traffic_class.classid
    faults = ", ".join(traffic_class.injection_ids) or "no fault"
    steps = [
        Step(
            name=f"htb class {classid} on {device} ({faults})",
            apply=Exec(
                _tc(
                    "class",
                    "add",
                    "dev",
                    device,
                    "parent",
                    "1:",
                    "classid",
                    classid,
                    "htb",
                    "rate",
                    PASS_THROUGH_RATE,
                    "quantum",
                    HTB_QUANTUM,
                ),
                ("net",),
            ),
            undo=Exec(_tc("class", "del", "dev", device, "classid", classid), ("net",), tolerate=TC_GONE),
            probe=Probe(
                _tc("class", "show", "dev", device),
                f"class htb {classid} root ",
                ("net",),
                tolerate=("Cannot find device",),
            ),
        )
    ]
    parent = classid
    leaves: list[tuple[str, int, tuple[str, ...]]] = []
    if traffic_class.tbf is not None:
        leaves.append(("tbf", 0x1000 + traffic_class.minor, traffic_class.tbf.tc_args()))
    if traffic_class.netem is not None:
        leaves.append(("netem", 0x2000 + traffic_class.minor, traffic_class.netem.tc_args()))
    for kind, major, args in leaves:
        handle = f"{major:x}:"
        steps.append(
            Step(
                name=f"{kind} {handle} under {parent} on {device}",
                apply=Exec(
                    _tc("qdisc", "add", "dev", device, "parent", parent, "handle", handle, kind, *args), ("net",)
                ),
                undo=Exec(
                    _tc("qdisc", "del", "dev", device, "parent", parent, "handle", handle), ("net",), tolerate=TC_GONE
                ),
                probe=_qdisc_probe(device, f'{{"kind":"{kind}","handle":"{handle}","parent":"{parent}",'),
            )
        )
        # tbf has one class, <major>:1, where its child qdisc goes.
        parent = f"{major:x}:1"
    return steps


def _classify_step(family: Family, device: str, traffic_class: TrafficClass, aimed: Sequence[PeerSets]) -> Step:
    iptables = _iptables(family)
    matches = tuple(arg for peers in aimed for arg in peers.match.args("dst"))
    # iptables prints the class back as 0001:000a.
    printed = f"{1:04x}:{traffic_class.minor:04x}"
    rule = ("-o", device, *matches, "-j", "CLASSIFY", "--set-class")
    return Step(
        name=f"{iptables} mangle: traffic to {', '.join(traffic_class.injection_ids)} goes to {traffic_class.classid}",
        apply=Exec(
            (iptables, *IPTABLES_WAIT, "-t", "mangle", "-A", "POSTROUTING", *rule, traffic_class.classid), ("net",)
        ),
        undo=Exec(
            (iptables, *IPTABLES_WAIT, "-t", "mangle", "-D", "POSTROUTING", *rule, traffic_class.classid),
            ("net",),
            tolerate=IPTABLES_GONE,
        ),
        probe=Probe(
            (iptables, *IPTABLES_WAIT, "-t", "mangle", "-S", "POSTROUTING"),
            " ".join(("-A", "POSTROUTING", *rule, printed)) + "\n",
            ("net",),
        ),
    )


# --- wire form: what the controller sends and the journal keeps -------------------------------------------

#: Engine kind of a partition: one injection, one plan (:func:`partition_planner`).
PARTITION_KIND = "NetworkPartition"
#: Engine kind of a tc fault: it shares the slot :func:`traffic_control_slot` (:func:`traffic_control_planner`).
TRAFFIC_CONTROL_KIND = "NetworkTrafficControl"

_PARTITION_WIRE = TypeAdapter(PartitionFault)
_TRAFFIC_WIRE = TypeAdapter(TrafficFault)


def fault_to_wire(fault: PartitionFault | TrafficFault) -> dict[str, Any]:
    """A fault as JSON-ready data; the injection id travels with it, as kernel object names derive from it."""
    adapter: TypeAdapter[Any] = _PARTITION_WIRE if isinstance(fault, PartitionFault) else _TRAFFIC_WIRE
    data: dict[str, Any] = adapter.dump_python(fault, mode="json")
    return data


def fault_from_wire(kind: str, data: Mapping[str, Any]) -> PartitionFault | TrafficFault:
    """The fault a wire spec describes; ValueError naming each bad field (``peers[0].port: ...``)."""
    adapter: TypeAdapter[Any]
    if kind == PARTITION_KIND:
        adapter = _PARTITION_WIRE
    elif kind == TRAFFIC_CONTROL_KIND:
        adapter = _TRAFFIC_WIRE
    else:
        raise ValueError(f'"{kind}" is not a network fault kind ({PARTITION_KIND} or {TRAFFIC_CONTROL_KIND})')
    try:
        fault: PartitionFault | TrafficFault = adapter.validate_python(dict(data))
    except ValidationError as error:
        problems = "; ".join(
            f"{_wire_path(problem['loc'])}: {problem['msg']}" if problem["loc"] else problem["msg"]
            for problem in error.errors()
        )
        raise ValueError(f"bad {kind} spec: {problems}") from None
    return fault


def _wire_path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def partition_planner(spec: Mapping[str, Any], target: Target) -> Plan:
    """The engine's planner for :data:`PARTITION_KIND` (spec: :func:`fault_to_wire` of a partition)."""
    fault = fault_from_wire(PARTITION_KIND, spec)
    assert isinstance(fault, PartitionFault)
    return plan_partition(target, fault)


def traffic_control_planner(members: Sequence[tuple[str, Mapping[str, Any]]], target: Target) -> Plan:
    """The engine's slot planner for :data:`TRAFFIC_CONTROL_KIND`: every member of one slot, in arrival order."""
    faults: list[TrafficFault] = []
    for injection_id, spec in members:
        fault = fault_from_wire(TRAFFIC_CONTROL_KIND, spec)
        assert isinstance(fault, TrafficFault)
        if fault.injection_id != injection_id:
            raise ValueError(f'injection {injection_id} carries the spec of "{fault.injection_id}"')
        faults.append(fault)
    return plan_traffic_control(target, faults)
