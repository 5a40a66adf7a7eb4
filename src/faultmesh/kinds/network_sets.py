"""Peers as ipsets: the addresses a network fault aims at, the sets that hold them, and which faults overlap where.

A fault's peers become, per address family, one ``hash:net`` set (peers without a port) and one
``hash:net,port`` set (peers with one); when both exist a ``list:set`` joins them so one iptables match covers
the fault. Names derive from the injection id, so faults never share a set and one can go without the others.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import ConfigDict

from .plan import Exec, Probe, Step

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Family = Literal[4, 6]
FAMILIES: tuple[Family, ...] = (4, 6)

#: The kernel's limit for an ipset name (IPSET_MAXNAMELEN 32, with the terminating NUL).
IPSET_NAME_MAX = 31
#: The kernel's limit for an iptables chain name (XT_EXTENSION_MAXNAMELEN 29, with the NUL).
CHAIN_NAME_MAX = 28
#: Hex digits of the injection id's digest in every name: 48 bits, so ids do not collide in practice.
TAG_LENGTH = 12

#: What ``ipset`` says when a set is already gone: an undo that meets it has nothing left to do.
IPSET_GONE = ("The set with the given name does not exist",)
#: A peer with a port is matched on TCP and on UDP (see :class:`Peer`).
PORT_PROTOCOLS = ("tcp", "udp")


def injection_tag(injection_id: str) -> str:
    """A short, stable digest of an injection id: the unique part of every kernel object name it owns."""
    if not injection_id:
        raise ValueError("an injection id must not be empty: kernel object names derive from it")
    return hashlib.sha256(injection_id.encode()).hexdigest()[:TAG_LENGTH]


@dataclass(frozen=True)
class Peer:
    """An address or network the fault aims at ("10.0.0.7", "10.0.0.0/8", "fd00::/64"), and a port.

    The controller resolves target pods and external host names into these before it calls the agent.
    ``port`` 0 means every port and protocol. A port covers TCP and UDP alike: Chaos Mesh's ipset entries
    name no protocol, which ipset reads as TCP only, so "example.com:53" there would leave DNS over UDP
    untouched; here it does not.
    """

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    network: str
    port: int = 0

    def parsed(self) -> IPNetwork:
        try:
            return ipaddress.ip_network(self.network, strict=False)
        except ValueError:
            raise ValueError(f'peer "{self.network}" is not an IP address or a CIDR') from None

    def validate(self) -> None:
        self.parsed()
        if not 0 <= self.port <= 65535:
            raise ValueError(f'peer "{self.network}": port {self.port} is not in 0..65535')


def _set_networks(network: IPNetwork) -> list[IPNetwork]:
    # ipset's hash types refuse a /0; its two halves hold the same addresses.
    if network.prefixlen == 0:
        return list(network.subnets(prefixlen_diff=1))
    return [network]


@dataclass(frozen=True)
class IpSet:
    """One ipset: its name, type, family and entries, created (and refilled) in one ``ipset restore``."""

    name: str
    type: Literal["hash:net", "hash:net,port", "list:set"]
    family: Family
    entries: tuple[str, ...]

    def restore_script(self) -> str:
        # `-exist` plus `flush` makes the step idempotent and exact: a set left over under the same name
        # ends up holding these entries and no others.
        header = f"create {self.name} {self.type}"
        if self.type != "list:set":
            header += f" family {'inet' if self.family == 4 else 'inet6'}"
        lines = [header, f"flush {self.name}", *(f"add {self.name} {entry}" for entry in self.entries)]
        return "\n".join(lines) + "\n"

    def step(self, what: str) -> Step:
        return Step(
            name=f"ipset {self.name}: {what}",
            apply=Exec(("ipset", "restore", "-exist"), ("net",), stdin=self.restore_script()),
            undo=Exec(("ipset", "destroy", self.name), ("net",), tolerate=IPSET_GONE),
            probe=Probe(("ipset", "list", "-n", self.name), self.name + "\n", ("net",), tolerate=IPSET_GONE),
        )


@dataclass(frozen=True)
class PeerMatch:
    """How iptables tests a packet against one fault's peers of one family: the set and its direction flags.

    ``side`` is ``dst`` to match a packet going to a peer, ``src`` for one coming from a peer; the port of a
    ``hash:net,port`` entry is always the packet's destination port (Chaos Mesh's ``src,dst``/``dst,dst``).
    """

    set_name: str
    with_ports: bool

    def args(self, side: Literal["src", "dst"]) -> tuple[str, ...]:
        flags = f"{side},dst" if self.with_ports else side
        return ("-m", "set", "--match-set", self.set_name, flags)


@dataclass(frozen=True)
class PeerSets:
    """The sets of one fault for one address family, in creation order, and how to match them."""

    family: Family
    sets: tuple[IpSet, ...]
    match: PeerMatch


def peer_sets(prefix: str, peers: Sequence[Peer]) -> dict[Family, PeerSets]:
    """The ipsets of one fault's peers, per family that has peers. ``prefix`` is ``fm-<kind>-<tag>``."""
    if len(prefix) + 3 > IPSET_NAME_MAX:
        raise ValueError(f'ipset prefix "{prefix}" is too long for the kernel\'s {IPSET_NAME_MAX} characters')
    nets: dict[Family, list[str]] = {4: [], 6: []}
    net_ports: dict[Family, list[str]] = {4: [], 6: []}
    for peer in peers:
        peer.validate()
        network = peer.parsed()
        family: Family = 4 if network.version == 4 else 6
        for part in _set_networks(network):
            if peer.port == 0:
                _add_once(nets[family], str(part))
            else:
                for protocol in PORT_PROTOCOLS:
                    _add_once(net_ports[family], f"{part},{protocol}:{peer.port}")
    result: dict[Family, PeerSets] = {}
    for family in FAMILIES:
        sets: list[IpSet] = []
        if nets[family]:
            sets.append(IpSet(f"{prefix}-n{family}", "hash:net", family, tuple(nets[family])))
        if net_ports[family]:
            sets.append(IpSet(f"{prefix}-p{family}", "hash:net,port", family, tuple(net_ports[family])))
        if not sets:
            continue
        if len(sets) == 1:
            match = PeerMatch(sets[0].name, sets[0].type == "hash:net,port")
        else:
            joined = IpSet(f"{prefix}-l{family}", "list:set", family, tuple(s.name for s in sets))
            sets.append(joined)
            match = PeerMatch(joined.name, True)
        result[family] = PeerSets(family, tuple(sets), match)
    return result


def _add_once(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


# --- where faults overlap ---------------------------------------------------------------------------------


#: Stands for every port not named by any peer (and for traffic without ports, such as ICMP).
OTHER_PORT = -1


def overlaps(peers_by_fault: Sequence[Sequence[Peer]], family: Family) -> set[frozenset[int]]:
    """Every combination of faults that some packet of ``family`` hits at once (by index; empty sets left out).

    Networks of peers nest or are disjoint, so a packet's address lies in a smallest one; the faults it hits
    depend only on that network and on its port. So it is enough to look at each network's own addresses
    (those in no smaller peer network, when any are left) combined with each named port and with "any
    other port".
    """
    entries: list[tuple[int, IPNetwork, int]] = []
    for index, peers in enumerate(peers_by_fault):
        for peer in peers:
            network = peer.parsed()
            if network.version == family:
                entries.append((index, network, peer.port))
    networks = sorted({network for _, network, _ in entries}, key=lambda n: (n.prefixlen, n))
    ports = [*sorted({port for _, _, port in entries if port != 0}), OTHER_PORT]
    found: set[frozenset[int]] = set()
    for network in networks:
        if not _has_own_addresses(network, networks):
            continue
        for port in ports:
            hit = frozenset(
                index
                for index, peer_network, peer_port in entries
                if network.subnet_of(peer_network)  # type: ignore[arg-type]
                and peer_port in (0, port)
            )
            if hit:
                found.add(hit)
    return found


def _has_own_addresses(network: IPNetwork, networks: Iterable[IPNetwork]) -> bool:
    """Whether some address of ``network`` lies in none of the strictly smaller ``networks`` inside it."""
    inside = [n for n in networks if n != network and n.version == network.version and n.subnet_of(network)]  # type: ignore[arg-type]
    # Keep the outermost of those (they nest or are disjoint), then compare the address counts.
    outermost = [n for n in inside if not any(o != n and n.subnet_of(o) for o in inside)]  # type: ignore[arg-type]
    return sum(n.num_addresses for n in outermost) < network.num_addresses
