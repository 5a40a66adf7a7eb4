"""DNSChaos: make name lookups of the selected pods fail, or answer them with random addresses.

``patterns`` chooses the names: literal domain names, ``?`` for one character, ``[a-z]`` /
``[!0-9]`` for one character of a set, and ``*`` -- only as the last character -- for any
tail. An empty list hits every name. Chaos Mesh learns that a pattern is malformed only when
its DNS server refuses the rule at injection time; faultmesh checks the same grammar up front.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Literal

from pydantic import Field

from .base import CrdInfo, Issue, RuleContext, quote
from .common import ChaosResource, ChaosStatus, ContainerSelector
from .registry import register
from .types import Duration

DNSChaosAction = Literal["error", "random"]


def _star_before_end(pattern: str) -> bool:
    """Whether a ``*`` outside a ``[...]`` set is followed by more of the pattern."""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "[" and "]" in pattern[index + 1 :]:
            index = pattern.index("]", index + 1) + 1  # a set: its characters are literal
            continue
        if char == "*":
            return index != len(pattern) - 1
        index += 1
    return False


def pattern_issues(patterns: list[str]) -> Iterator[Issue]:
    """The domain pattern grammar of Chaos Mesh's DNS server, with a path per pattern.

    The server files each pattern in a trie; it refuses an empty pattern, one with a ``*``
    anywhere but at the end, and a pattern it already holds. A pattern without ``*`` is also
    filed with a trailing dot (the fully qualified form), so ``a.org`` and ``a.org.`` collide.
    """
    filed: dict[str, int] = {}
    for index, pattern in enumerate(patterns):
        if not pattern:
            yield Issue((index,), 'is empty; give a domain name or pattern such as "example.com" or "*.org"')
            continue
        if _star_before_end(pattern):
            yield Issue(
                (index,),
                f'{quote(pattern)}: the wildcard * may only be the last character (e.g. "chaos-mesh.*")',
            )
            continue
        if any(char.isspace() for char in pattern):
            yield Issue((index,), f"{quote(pattern)} is not a domain pattern: it contains white space")
            continue
        keys = [pattern] if "*" in pattern else [pattern, f"{pattern}."]
        clash = next((filed[key] for key in keys if key in filed), None)
        if clash is not None:
            yield Issue((index,), f"{quote(pattern)} repeats patterns[{clash}] {quote(patterns[clash])}")
            continue
        for key in keys:
            filed[key] = index


class DNSChaosSpec(ContainerSelector):
    """What DNS fault, for which domain names, in which pods."""

    action: DNSChaosAction = Field(description="error: lookups fail; random: lookups get random addresses.")
    duration: Duration | None = Field(
        default=None, description='How long the chaos lasts, a Go duration such as "50s".'
    )
    patterns: list[str] | None = Field(
        default=None,
        description='Domain names or patterns ("?", "[a-z]", trailing "*") to hit; empty hits every name.',
    )
    remote_cluster: str | None = None

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from super().rules(ctx)
        for issue in pattern_issues(self.patterns or []):
            yield Issue(("patterns", *issue.path), issue.message)


@register
class DNSChaos(ChaosResource):
    """DNSChaos breaks name resolution for the selected pods: errors or wrong answers."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="dnschaos",
        # As Chaos Mesh: `subresources: {}`, status written with the object itself.
        status_subresource=False,
        empty_subresources=True,
        printer_columns=(
            ("action", ".spec.action", "string", "The DNS fault"),
            ("duration", ".spec.duration", "string", "How long the chaos lasts"),
        ),
    )

    spec: DNSChaosSpec
    status: ChaosStatus | None = None
