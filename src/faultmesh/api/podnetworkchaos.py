"""PodNetworkChaos: the network rules one pod must hold, merged from every NetworkChaos on it.

The controller writes one per target pod (ipsets, iptables chains, tc qdiscs, each tagged with
the NetworkChaos it came from) and the agent makes the pod's network match it, so several
experiments on one pod compose instead of overwriting each other.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import ClassVar

from pydantic import Field

from .base import CrdInfo, Issue, Model, Resource, RuleContext, quote
from .networkchaos import NETEM_PARTS, TcParameter
from .registry import register
from .types import Int64

#: ipset types the agent builds: peer CIDRs, CIDR+port pairs, and a set of those sets.
NET_IPSET = "hash:net"
NET_PORT_IPSET = "hash:net,port"
SET_IPSET = "list:set"
IPSET_TYPES = (SET_IPSET, NET_PORT_IPSET, NET_IPSET)
#: The built-in chain an iptables rule hangs off.
CHAIN_DIRECTIONS = ("input", "output")
#: The qdisc kinds a traffic control installs.
TC_TYPES = ("netem", "bandwidth")


def _cidr_issue(path: tuple[str | int, ...], text: str) -> Iterator[Issue]:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        yield Issue(path, f"{quote(text)} is not a CIDR (e.g. 10.0.0.0/8 or 10.1.2.3/32)")


class RawRuleSource(Model):
    """Which NetworkChaos (namespace/name) a rule belongs to, so it is removed with it."""

    source: str


class CidrAndPort(Model):
    """A peer network and port, for a hash:net,port ipset."""

    cidr: str
    port: int = Field(ge=1, le=65535)

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from _cidr_issue(("cidr",), self.cidr)


class RawIPSet(RawRuleSource):
    """An ipset in the pod's network namespace; only the member list of its type may be set."""

    name: str
    ipset_type: str = Field(
        description="hash:net (cidrs), hash:net,port (cidrAndPorts) or list:set (setNames)"
    )
    cidrs: list[str] | None = None
    cidr_and_ports: list[CidrAndPort] | None = None
    set_names: list[str] | None = None

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if self.ipset_type not in IPSET_TYPES:
            yield Issue(
                ("ipsetType",),
                f"{quote(self.ipset_type)} is not an ipset type; use one of {', '.join(IPSET_TYPES)}",
            )
            return
        members = (
            (NET_IPSET, "cidrs", self.cidrs),
            (NET_PORT_IPSET, "cidrAndPorts", self.cidr_and_ports),
            (SET_IPSET, "setNames", self.set_names),
        )
        for set_type, field_name, value in members:
            if set_type != self.ipset_type and value:
                yield Issue(
                    (field_name,), f"holds members of a {set_type} set, but ipsetType is {self.ipset_type}"
                )
        for index, cidr in enumerate(self.cidrs or []):
            yield from _cidr_issue(("cidrs", index), cidr)


class RawIptables(RawRuleSource):
    """An iptables chain that drops the traffic matching its ipsets (a partition)."""

    name: str
    ip_sets: list[str] | None = Field(default=None, alias="ipsets", json_schema_extra={"nullable": True})
    direction: str = Field(description="input or output: the built-in chain it hangs off")
    device: str | None = None

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if self.direction not in CHAIN_DIRECTIONS:
            yield Issue(
                ("direction",),
                f"{quote(self.direction)} is not a chain direction; use one of {', '.join(CHAIN_DIRECTIONS)}",
            )


class RawTrafficControl(TcParameter):
    """A qdisc on the pod's device, limited to the peers in ipset when one is named."""

    type: str = Field(description="netem (delay, loss, duplicate, corrupt, rate) or bandwidth (tbf)")
    ipset: str | None = None
    source: str
    device: str | None = None

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if self.type not in TC_TYPES:
            yield Issue(("type",), f"{quote(self.type)} is not a tc type; use one of {', '.join(TC_TYPES)}")
        elif self.type == "bandwidth" and self.bandwidth is None:
            yield Issue(("bandwidth",), "is required with type bandwidth")
        elif self.type == "netem" and not self.netem_parts():
            yield Issue(("type",), f'"netem" needs at least one of {", ".join(NETEM_PARTS)} to be set')


class PodNetworkChaosSpec(Model):
    """Everything one pod's network must hold, from all the NetworkChaos that select it."""

    ip_sets: list[RawIPSet] | None = Field(default=None, alias="ipsets")
    iptables: list[RawIptables] | None = None
    traffic_controls: list[RawTrafficControl] | None = Field(default=None, alias="tcs")


class PodNetworkChaosStatus(Model):
    """Which spec generation the agent has applied, or why it could not."""

    failed_message: str | None = None
    observed_generation: Int64 | None = None


@register
class PodNetworkChaos(Resource):
    """PodNetworkChaos is the per-pod network state the controller asks the agent to hold."""

    crd: ClassVar[CrdInfo] = CrdInfo(plural="podnetworkchaos")

    spec: PodNetworkChaosSpec
    status: PodNetworkChaosStatus | None = None
