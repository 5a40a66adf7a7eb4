"""PhysicalMachine: a host running a chaosd-compatible server, targeted by PhysicalMachineChaos."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import ClassVar

from pydantic import Field

from .base import CrdInfo, Issue, Model, Resource, RuleContext, quote
from .registry import register


def with_scheme(address: str) -> str:
    """Chaos Mesh's default: an address without a scheme is reached over plain HTTP.

    An address that names any scheme is left as written, so ``ftp://...`` is refused rather
    than turned into ``http://ftp://...``.
    """
    if not address or "://" in address:
        return address
    return f"http://{address}"


#: scheme://host[:port][/path]; host is a name, an IPv4 address or a bracketed IPv6 address.
_SERVER_URL = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>\[[0-9A-Fa-f:.]+\]|[^/:\[\]@?#\s]+)(?::(?P<port>[^/]*))?(?:[/?#]\S*)?$"
)


def address_problem(address: str) -> str | None:
    """Why ``address`` (already defaulted) is not a usable server URL, or None if it is."""
    if not address:
        return "must not be empty"
    match = _SERVER_URL.match(address)
    if match is None:
        return f"{quote(address)} is not a URL; use host:port or http(s)://host:port"
    if match["scheme"] not in ("http", "https"):
        return f"{quote(address)} is not a server URL; the scheme must be http or https"
    port = match["port"]
    if port is not None and not (port.isdigit() and 0 < int(port) <= 65535):
        return f"{quote(address)} has port {quote(port)}; a port is a number in 1..65535"
    return None


class PhysicalMachineSpec(Model):
    """Where the machine's chaos server listens."""

    address: str = Field(description="URL of the chaosd server, e.g. http://10.0.0.5:31767.")

    def apply_defaults(self, ctx: RuleContext) -> None:
        self.address = with_scheme(self.address)

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        problem = address_problem(self.address)
        if problem:
            yield Issue(("address",), problem)


@register
class PhysicalMachine(Resource):
    """PhysicalMachine registers a host's chaos server so experiments can select it by name or label.

    Its spec cannot change once created, as Chaos Mesh's generated webhook decides.
    """

    crd: ClassVar[CrdInfo] = CrdInfo(plural="physicalmachines", status_subresource=False)
    immutable_spec = True

    spec: PhysicalMachineSpec
