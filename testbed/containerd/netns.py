"""Named network namespaces joined by veth pairs, for containers that must reach each other.

Everything lives inside namespaces this module creates: each veth pair is created with both ends already
in their namespaces, so the host's own network namespace never holds an interface of ours, not even for a
moment. Addresses come from the link-local range (169.254.0.0/16), which nothing routes.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

NETNS_DIR = Path("/run/netns")
NAME_PREFIX = "fmtb-"


class NetnsError(RuntimeError):
    """An `ip` command failed; the message carries the command and its stderr."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def list_netns() -> set[str]:
    """Names of the named network namespaces on the host (`ip netns list`)."""
    out = ip("netns", "list").stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def host_links() -> set[str]:
    """Interface names in the host's network namespace."""
    out = ip("-o", "link", "show").stdout
    return {line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines() if line.strip()}


@dataclass
class NetNamespace:
    """A named network namespace (`/run/netns/NAME`) with its loopback up."""

    name: str

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a host command inside this namespace (`ip netns exec`)."""
        proc = subprocess.run(
            ["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise NetnsError(f"in netns {self.name}: {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def inode(self) -> int:
        """The namespace's inode: equal to `/proc/PID/ns/net`'s for every process inside it."""
        return self.path.stat().st_ino


@dataclass(frozen=True)
class VethLink:
    """Two veth ends, each in its own namespace, with one address each (CIDR notation)."""

    ns_a: NetNamespace
    ns_b: NetNamespace
    if_a: str
    if_b: str
    cidr_a: str
    cidr_b: str

    @property
    def addr_a(self) -> str:
        return self.cidr_a.split("/")[0]

    @property
    def addr_b(self) -> str:
        return self.cidr_b.split("/")[0]


@dataclass
class NetworkLab:
    """Creates namespaces and links under one random tag, and removes exactly those, in reverse order."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    owner_pid: int = field(default_factory=os.getpid)
    namespaces: list[NetNamespace] = field(default_factory=list)
    links: list[VethLink] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        # The owner's PID in the name lets a later run remove what a killed run left (sweep_stale).
        return f"{NAME_PREFIX}{self.owner_pid}-{self.tag}-"

    def namespace(self, role: str) -> NetNamespace:
        """A new namespace named fmtb-<owner pid>-<tag>-<role>, loopback up."""
        ns = NetNamespace(f"{self.prefix}{role}")
        ip("netns", "add", ns.name)
        self.namespaces.append(ns)
        ip("-n", ns.name, "link", "set", "lo", "up")
        return ns

    def link(self, ns_a: NetNamespace, ns_b: NetNamespace, cidr_a: str = "", cidr_b: str = "") -> VethLink:
        """A veth pair between two of this lab's namespaces, addressed and up.

        Default addresses are 169.254.<n>.1/24 and .2/24, with n counting links in this lab.
        """
        index = len(self.links)
        subnet = f"169.254.{10 + index}"
        # Interface names are limited to 15 characters; the tag keeps them apart across labs.
        link = VethLink(
            ns_a=ns_a,
            ns_b=ns_b,
            if_a=f"fa{self.tag}{index}"[:15],
            if_b=f"fb{self.tag}{index}"[:15],
            cidr_a=cidr_a or f"{subnet}.1/24",
            cidr_b=cidr_b or f"{subnet}.2/24",
        )
        ip("link", "add", link.if_a, "netns", ns_a.name, "type", "veth", "peer", "name", link.if_b, "netns", ns_b.name)
        self.links.append(link)
        for ns, name, cidr in ((ns_a, link.if_a, link.cidr_a), (ns_b, link.if_b, link.cidr_b)):
            ip("-n", ns.name, "addr", "add", cidr, "dev", name)
            ip("-n", ns.name, "link", "set", name, "up")
        return link

    def close(self) -> list[str]:
        """Delete every namespace of this lab (their veths go with them); returns the errors, if any."""
        errors: list[str] = []
        for ns in reversed(self.namespaces):
            if ns.name not in list_netns():
                continue
            proc = ip("netns", "delete", ns.name, check=False)
            if proc.returncode != 0:
                errors.append(f"ip netns delete {ns.name}: {proc.stderr.strip()}")
        self.namespaces.clear()
        self.links.clear()
        return errors

    def residue(self) -> list[str]:
        """What is left of this lab on the host: named namespaces or host interfaces carrying its tag."""
        left = [f"netns {n}" for n in sorted(list_netns()) if n.startswith(self.prefix)]
        left += [f"host link {n}" for n in sorted(host_links()) if self.tag in n]
        return left


def sweep_stale() -> list[str]:
    """Delete the namespaces of labs whose owning process is gone (a test run that was killed)."""
    removed = []
    for name in sorted(list_netns()):
        owner = name.removeprefix(NAME_PREFIX).split("-", 1)[0]
        stale = name.startswith(NAME_PREFIX) and owner.isdigit() and not Path(f"/proc/{owner}").exists()
        if stale and ip("netns", "delete", name, check=False).returncode == 0:
            removed.append(name)
    return removed
