"""Traffic-control slots combine: for any set of faults, every packet gets exactly the faults aimed at it, merged.

The plan is read back as the kernel would run it -- ipset contents from the restore scripts, CLASSIFY rules
walked in order (the last match wins, as CLASSIFY does not stop the walk), then the htb class's leaf chain --
and compared with what the faults say a packet to that address and port should meet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faultmesh.kinds.network import NetemParams, Peer, TbfParams, TrafficFault, plan_traffic_control
from faultmesh.kinds.plan import Exec, Plan, Target

TARGET = Target("containerd://abc")
DEVICE = "eth0"


@dataclass(frozen=True)
class Packet:
    address: str
    protocol: str  # tcp, udp or icmp
    port: int  # 0 for icmp

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.address).version


class KernelView:
    """A plan's ipsets, CLASSIFY rules and htb leaves, evaluated for one packet."""

    def __init__(self, plan: Plan) -> None:
        self.sets: dict[str, tuple[str, list[str]]] = {}
        self.rules: dict[int, list[tuple[list[tuple[str, str]], str]]] = {4: [], 6: []}
        self.leaves: dict[str, tuple[str, str, tuple[str, ...]]] = {}  # parent → (kind, handle, args)
        self.classes: list[str] = []
        self.default = ""
        for step in plan.steps:
            assert isinstance(step.apply, Exec)
            argv = step.apply.argv
            if argv[0] == "ipset":
                self._read_set(step.apply.stdin or "")
            elif argv[:2] == ("tc", "qdisc") and "root" in argv:
                self.default = "1:" + argv[argv.index("default") + 1]
            elif argv[:2] == ("tc", "class"):
                self.classes.append(argv[argv.index("classid") + 1])
            elif argv[:2] == ("tc", "qdisc"):
                kind_at = argv.index("handle") + 2
                self.leaves[argv[argv.index("parent") + 1]] = (argv[kind_at], argv[kind_at - 1], argv[kind_at + 1 :])
            else:
                assert argv[0] in ("iptables", "ip6tables") and "CLASSIFY" in argv, argv
                matches = [(argv[i + 1], argv[i + 2]) for i, word in enumerate(argv) if word == "--match-set"]
                self.rules[4 if argv[0] == "iptables" else 6].append((matches, argv[-1]))

    def _read_set(self, script: str) -> None:
        lines = script.splitlines()
        _, name, kind, *_ = lines[0].split()
        self.sets[name] = (kind, [line.split()[2] for line in lines if line.startswith("add ")])

    def contains(self, name: str, packet: Packet) -> bool:
        kind, entries = self.sets[name]
        if kind == "list:set":
            return any(self.contains(member, packet) for member in entries)
        address = ipaddress.ip_address(packet.address)
        for entry in entries:
            network, _, port = entry.partition(",")
            if address not in ipaddress.ip_network(network):
                continue
            if kind == "hash:net" or port == f"{packet.protocol}:{packet.port}":
                return True
        return False

    def leaf_chain(self, packet: Packet) -> tuple[tuple[str, tuple[str, ...]], ...]:
        if not self.classes:  # an empty slot: no tc tree at all
            return ()
        chosen = self.default
        for matches, classid in self.rules[packet.family]:
            if all(self.contains(name, packet) for name, _flags in matches):
                chosen = classid
        assert chosen in self.classes
        chain = []
        parent = chosen
        while parent in self.leaves:
            kind, handle, args = self.leaves[parent]
            chain.append((kind, args))
            parent = handle + "1"
        return tuple(chain)


def aimed_at(fault: TrafficFault, packet: Packet) -> bool:
    if not fault.peers:
        return True
    address = ipaddress.ip_address(packet.address)
    for peer in fault.peers:
        network = ipaddress.ip_network(peer.network, strict=False)
        port_matches = peer.port == 0 or (packet.protocol != "icmp" and peer.port == packet.port)
        if network.version == address.version and address in network and port_matches:
            return True
    return False


def expected_chain(faults: Sequence[TrafficFault], packet: Packet) -> tuple[tuple[str, tuple[str, ...]], ...]:
    hit = [fault for fault in faults if aimed_at(fault, packet)]
    chain: list[tuple[str, tuple[str, ...]]] = []
    tbfs = sorted((f.tbf.rate_bps, f.injection_id, f.tbf) for f in hit if f.tbf is not None)
    if tbfs:
        chain.append(("tbf", tbfs[0][2].tc_args()))
    netem = None
    for fault in hit:
        if fault.netem is not None:
            netem = fault.netem if netem is None else netem.merge(fault.netem)
    if netem is not None:
        chain.append(("netem", netem.tc_args()))
    return tuple(chain)


# A small address space so that peers overlap often: nested and disjoint networks, some IPv6.
V4_NETWORKS = [
    "10.0.0.0/16",
    "10.0.0.0/24",
    "10.0.0.0/30",
    "10.0.0.0/31",
    "10.0.0.1/32",
    "10.0.0.2/32",
    "10.0.1.0/24",
    "10.0.1.128/25",
    "10.0.1.7/32",
    "0.0.0.0/0",
]
V6_NETWORKS = ["fd00::/64", "fd00::1/128", "fd00::/127"]
PORTS = [0, 0, 80, 443]

peers = st.builds(Peer, st.sampled_from(V4_NETWORKS + V6_NETWORKS), st.sampled_from(PORTS))
netems = st.builds(
    NetemParams,
    delay_ns=st.sampled_from([0, 10**6, 5 * 10**7]),
    jitter_ns=st.sampled_from([0, 10**6]),
    loss=st.sampled_from([0.0, 1.0, 25.0]),
    duplicate=st.sampled_from([0.0, 2.0]),
    corrupt=st.sampled_from([0.0, 3.0]),
)
tbfs = st.builds(
    TbfParams, st.sampled_from([10**6, 10**7, 10**8]), st.sampled_from([1600, 3200]), st.sampled_from([5000, 9000])
)


@st.composite
def fault_sets(draw: st.DrawFn) -> list[TrafficFault]:
    count = draw(st.integers(1, 5))
    faults = []
    for index in range(count):
        netem = draw(st.none() | netems)
        tbf = draw(tbfs) if netem is None else draw(st.none() | tbfs)
        aimed = draw(st.lists(peers, max_size=3))
        faults.append(TrafficFault(f"ns/chaos-{index}/uid/ns/pod", netem=netem, tbf=tbf, peers=tuple(aimed)))
    return faults


def packets_for(faults: Sequence[TrafficFault]) -> list[Packet]:
    """Addresses at the edges of every peer network and outside all of them, with every port in play."""
    addresses = {
        "10.0.0.1",
        "10.0.0.3",
        "10.0.1.7",
        "10.0.1.200",
        "10.0.2.1",
        "192.0.2.1",
        "fd00::1",
        "fd00::2",
        "fd01::1",
    }
    for fault in faults:
        for peer in fault.peers:
            network = ipaddress.ip_network(peer.network, strict=False)
            addresses |= {str(network.network_address), str(network.broadcast_address)}
    packets = []
    for address in sorted(addresses):
        packets.append(Packet(address, "icmp", 0))
        for port in (80, 443, 8080):
            packets += [Packet(address, "tcp", port), Packet(address, "udp", port)]
    return packets


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fault_sets())
def test_every_packet_meets_exactly_the_merged_faults_aimed_at_it(faults: list[TrafficFault]) -> None:
    view = KernelView(plan_traffic_control(TARGET, faults))
    for packet in packets_for(faults):
        assert view.leaf_chain(packet) == expected_chain(faults, packet), packet


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fault_sets(), st.data())
def test_removing_one_fault_changes_only_its_part(faults: list[TrafficFault], data: st.DataObject) -> None:
    gone = data.draw(st.sampled_from(faults))
    rest = [fault for fault in faults if fault is not gone]
    before = KernelView(plan_traffic_control(TARGET, faults))
    after = KernelView(plan_traffic_control(TARGET, rest))
    for packet in packets_for(faults):
        if aimed_at(gone, packet):
            assert after.leaf_chain(packet) == expected_chain(rest, packet), packet
        else:
            assert after.leaf_chain(packet) == before.leaf_chain(packet), packet
    # The sets of the faults that stay keep their names and contents.
    assert {name: before.sets[name] for name in after.sets} == after.sets
