"""NetworkChaos: delay, drop, duplicate, corrupt, shape or cut the traffic of selected pods.

The traffic-control pieces (:class:`TcParameter` and its sub-specs) are shared with
PodNetworkChaos, which carries them per pod. Three pure parsers live here too, because the
planner and the agent must read these strings exactly as validation did:
:func:`rate_bits_per_second`, :func:`parse_netem_percent` and :func:`split_external_target`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import AfterValidator, Field, field_validator
from pydantic_core import PydanticCustomError

from .base import CrdInfo, Issue, Model, RuleContext, quote
from .common import ChaosResource, ChaosStatus, PodSelector
from .registry import register
from .types import Duration, Int32, Int64

NetworkChaosAction = Literal["netem", "delay", "loss", "duplicate", "corrupt", "partition", "bandwidth"]
Direction = Literal["to", "from", "both"]

#: Actions carried out by one netem qdisc (the others: partition uses iptables, bandwidth tbf).
NETEM_ACTIONS: tuple[str, ...] = ("netem", "delay", "loss", "duplicate", "corrupt")
#: The sub-specs that feed a netem qdisc; Chaos Mesh merges every one that is set.
NETEM_PARTS: tuple[str, ...] = ("delay", "loss", "duplicate", "corrupt", "rate")

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1

DEFAULT_JITTER = "0ms"
DEFAULT_CORRELATION = "0"


def _refuse(kind: str, message: str) -> PydanticCustomError:
    # The message is passed as context, not as the template, so braces in a user's value are safe.
    return PydanticCustomError(kind, "{message}", {"message": message})


# --- tc durations -----------------------------------------------------------------------------

#: The CRD's pattern for netem latency and jitter: one number and one unit.
TC_DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h)$"
_TC_DURATION = re.compile(r"[0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h)")


def _tc_duration(value: str) -> str:
    if not _TC_DURATION.fullmatch(value):
        raise _refuse(
            "tc_duration",
            f"{quote(value)} is not a duration of one number and one unit"
            " (ns, us, ms, s, m, h), e.g. 100ms or 1.5s",
        )
    return value


def _tc_duration_or_empty(value: str) -> str:
    # An empty jitter is "not set" and is defaulted to 0ms, as Chaos Mesh's webhook does.
    return value if value == "" else _tc_duration(value)


#: netem latency: a non-negative Go duration with a single unit ("90ms", "1.5s").
TcDuration = Annotated[
    str, AfterValidator(_tc_duration), Field(json_schema_extra={"pattern": TC_DURATION_PATTERN})
]
#: netem jitter: as :data:`TcDuration`, or empty for the default "0ms".
TcJitter = Annotated[
    str, AfterValidator(_tc_duration_or_empty), Field(json_schema_extra={"pattern": TC_DURATION_PATTERN})
]


# --- netem percents ---------------------------------------------------------------------------

# Go's strconv.ParseFloat decimal grammar (no spaces, no "%", no "_"); hex floats are left out.
_GO_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def parse_netem_percent(text: str) -> float:
    """A netem probability or correlation as written in a manifest ("25", "0.5") → percent 0..100.

    Chaos Mesh only checks that the text is a Go float; tc then refuses anything above 100 and
    Chaos Mesh silently drops a negative one, so both are refused here, where the user sees it.
    """
    if not _GO_DECIMAL.fullmatch(text):
        raise ValueError(f'{quote(text)} is not a number; write a percent in 0..100 such as "25" or "0.5"')
    value = float(text)
    if not 0 <= value <= 100:
        raise ValueError(f"{quote(text)} is not a percent in 0..100")
    return value


def _netem_percent(value: str) -> str:
    try:
        parse_netem_percent(value)
    except ValueError as error:
        raise _refuse("netem_percent", str(error)) from None
    return value


def _netem_correlation(value: str) -> str:
    # An empty correlation is "not set" and is defaulted to "0", as Chaos Mesh's webhook does.
    return value if value == "" else _netem_percent(value)


#: A netem probability in percent, written as a string ("25", "0.5").
NetemPercent = Annotated[str, AfterValidator(_netem_percent)]
#: A netem correlation in percent; empty means the default "0".
NetemCorrelation = Annotated[str, AfterValidator(_netem_correlation)]


# --- rates ------------------------------------------------------------------------------------

# Chaos Mesh's accepted units, longest first so "kbit" is not read as "bit". The scale is tc's
# (Chaos Mesh hands the string to tc): k/m/g/t are powers of 1000 and "bps" is bytes per second.
_RATE_UNITS: tuple[tuple[str, int], ...] = (
    ("kbit", 10**3),
    ("mbit", 10**6),
    ("gbit", 10**9),
    ("tbit", 10**12),
    ("tbps", 8 * 10**12),
    ("gbps", 8 * 10**9),
    ("mbps", 8 * 10**6),
    ("kbps", 8 * 10**3),
    ("bps", 8),
    ("bit", 1),
)
RATE_UNITS: tuple[str, ...] = ("bit", "kbit", "mbit", "gbit", "tbit", "bps", "kbps", "mbps", "gbps", "tbps")
_DIGITS = re.compile(r"[0-9]+")
# What Go's strings.TrimSpace trims (unicode.IsSpace), which str.strip() does not quite match.
_GO_SPACE = (
    " \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def _whole_number(text: str, top: int) -> int | None:
    """``text`` as a non-negative ASCII integer no larger than ``top``, else None."""
    if not _DIGITS.fullmatch(text) or len(text.lstrip("0")) > len(str(top)):
        return None
    number = int(text)
    return number if number <= top else None


def rate_bits_per_second(text: str) -> int:
    """A Chaos Mesh rate ("100kbps", "1 Mbit") → bits per second, as tc reads it.

    The grammar is Chaos Mesh's webhook: a whole number, optional spaces, one unit, any case.
    The value is tc's: "kbps" is 1000 bytes (8000 bits) per second. Chaos Mesh's own helper that
    picks the larger of two rates counts byte units in 1024s; tc, which does the shaping, does not.
    """
    normalized = text.strip(_GO_SPACE).lower()
    for unit, scale in _RATE_UNITS:
        if normalized.endswith(unit):
            number = _whole_number(normalized[: -len(unit)].strip(_GO_SPACE), UINT64_MAX)
            if number is None:
                break
            return number * scale
    raise ValueError(
        f"{quote(text)} is not a rate: write a whole number and a unit ({', '.join(RATE_UNITS)};"
        ' bps means bytes per second), e.g. "100mbit"'
    )


def rate_bytes_per_second(text: str) -> int:
    """A Chaos Mesh rate → whole bytes per second, rounded down as tc does for tbf."""
    return rate_bits_per_second(text) // 8


def _rate(value: str) -> str:
    try:
        rate_bits_per_second(value)
    except ValueError as error:
        raise _refuse("rate", str(error)) from None
    return value


#: A rate such as "100mbit" or "1gbps" (see :func:`rate_bits_per_second`).
Rate = Annotated[str, AfterValidator(_rate)]


# --- external targets -------------------------------------------------------------------------

_HOST_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_HOST_LABEL}(\.{_HOST_LABEL})*\.?")


class ExternalTarget(NamedTuple):
    """An ``externalTargets`` entry taken apart: an IP, CIDR or host name, and a port (0: any)."""

    host: str
    port: int


def split_external_target(text: str) -> ExternalTarget:
    """``"10.0.0.0/8:22"`` → ``ExternalTarget("10.0.0.0/8", 22)``; ``"[::1]:80"``, ``"example.com"``.

    Chaos Mesh splits host and port as Go's ``net.SplitHostPort`` does and resolves the host at
    injection time; the grammar is checked here so a typo fails at validation instead.
    """
    host, port_text = text, None
    if text.startswith("["):
        end = text.find("]")
        if end != -1 and text[end + 1 : end + 2] == ":":
            host, port_text = text[1:end], text[end + 2 :]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    port = 0
    if port_text is not None:
        number = _whole_number(port_text, 65535)
        if number is None:
            raise ValueError(f"{quote(text)}: the port {quote(port_text)} is not a number in 0..65535")
        port = number
    if not _is_ip_or_cidr(host) and not _is_host_name(host):
        raise ValueError(f"{quote(text)} is not an IP address, a CIDR or a host name (optionally with :port)")
    return ExternalTarget(host, port)


def _is_ip_or_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _is_host_name(text: str) -> bool:
    if len(text) > 253 or not _HOST_NAME.fullmatch(text):
        return False
    # A name whose last label is all digits is a mistyped IP address, not a domain.
    return not text.rstrip(".").rsplit(".", 1)[-1].isdigit()


# --- traffic-control sub-specs ----------------------------------------------------------------


class Correlated(Model):
    """A netem parameter with a correlation to the previous packet's draw (percent, default 0)."""

    correlation: NetemCorrelation = Field(
        default=DEFAULT_CORRELATION,
        description="How much each draw depends on the previous one, in percent.",
    )

    def apply_defaults(self, ctx: RuleContext) -> None:
        if self.correlation == "":
            self.correlation = DEFAULT_CORRELATION


class ReorderSpec(Correlated):
    """Send some packets at once while the rest wait for the delay (needs a delay)."""

    reorder: NetemPercent = Field(description="Percent of packets sent out of order.")
    gap: int = Field(description="Reorder every gap-th packet; 0 lets the percent decide alone.")

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        if not 0 <= self.gap <= UINT32_MAX:
            yield Issue(("gap",), f"{self.gap} is not in 0..{UINT32_MAX}")


class DelaySpec(Correlated):
    """Delay every packet by latency ± jitter."""

    latency: TcDuration = Field(description='How long each packet is held, e.g. "90ms".')
    jitter: TcJitter = Field(default=DEFAULT_JITTER, description="Random variation added to the latency.")
    reorder: ReorderSpec | None = None

    def apply_defaults(self, ctx: RuleContext) -> None:
        super().apply_defaults(ctx)
        if self.jitter == "":
            self.jitter = DEFAULT_JITTER


class LossSpec(Correlated):
    """Drop a percent of the packets."""

    loss: NetemPercent = Field(description='Percent of packets dropped, e.g. "25".')


class DuplicateSpec(Correlated):
    """Send a percent of the packets twice."""

    duplicate: NetemPercent = Field(description="Percent of packets duplicated.")


class CorruptSpec(Correlated):
    """Flip a random bit in a percent of the packets."""

    corrupt: NetemPercent = Field(description="Percent of packets corrupted.")


class BandwidthSpec(Model):
    """Shape the traffic with a token bucket (tc tbf)."""

    rate: Rate = Field(description='The speed, e.g. "1mbps" (bytes) or "8mbit" (bits) per second.')
    limit: Int32 = Field(ge=1, description="Bytes that may wait in the queue for tokens.")
    buffer: Int32 = Field(ge=1, description="Size of the bucket in bytes: the largest instant burst.")
    peakrate: Int64 | None = Field(
        default=None, ge=0,
        description="Top rate of draining the bucket, in bits/s (tc reads the bare number as bits per second).",
    )
    minburst: Int32 | None = Field(
        default=None, ge=0, description="Size of the peakrate bucket (about the MTU)."
    )

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        # The pattern of the rate was checked at construction; tbf cannot shape to nothing.
        if rate_bits_per_second(self.rate) == 0:
            yield Issue(("rate",), f"{quote(self.rate)} must be greater than 0")
        for name, value, top in (
            ("limit", self.limit, UINT32_MAX),
            ("buffer", self.buffer, UINT32_MAX),
            ("minburst", self.minburst, UINT32_MAX),
            ("peakrate", self.peakrate, UINT64_MAX),
        ):
            if value is not None and value > top:
                yield Issue((name,), f"{value} is too large; at most {top}")


class RateSpec(Model):
    """Limit the rate inside netem (alongside delay or loss), rather than with tbf."""

    rate: Rate = Field(description='The speed, e.g. "1mbps" (bytes) or "8mbit" (bits) per second.')


class TcParameter(Model):
    """The traffic-control settings; which of them apply depends on the action (or tc type)."""

    delay: DelaySpec | None = None
    loss: LossSpec | None = None
    duplicate: DuplicateSpec | None = None
    corrupt: CorruptSpec | None = None
    bandwidth: BandwidthSpec | None = None
    rate: RateSpec | None = None

    def netem_parts(self) -> list[str]:
        """The netem sub-specs that are set; one netem qdisc applies them all together."""
        return [name for name in NETEM_PARTS if getattr(self, name) is not None]


# --- NetworkChaos -----------------------------------------------------------------------------


class NetworkChaosSpec(PodSelector, TcParameter):
    """What to do to the selected pods' traffic, and to or from which peers."""

    action: NetworkChaosAction = Field(
        description="netem / delay / loss / duplicate / corrupt (netem qdisc), partition, bandwidth",
    )
    device: str | None = Field(default=None, description="The network device to affect (default: eth0).")
    duration: Duration | None = Field(
        default=None,
        description='How long the chaos lasts, a Go duration such as "300ms" or "2h45m".',
    )
    direction: Direction = Field(
        default="to",
        description="to: traffic to the target; from: traffic from it; both.",
    )
    target: PodSelector | None = Field(
        default=None, description="The peer pods; without one, all traffic is affected."
    )
    target_device: str | None = Field(default=None, description="The device to affect on the target pods.")
    external_targets: list[str] | None = Field(
        default=None,
        description="Peers outside the cluster: IPs, CIDRs or host names, each with an optional :port.",
    )
    remote_cluster: str | None = None

    @field_validator("direction", mode="before")
    @classmethod
    def _empty_direction_is_to(cls, value: Any) -> Any:
        # Chaos Mesh's defaulting webhook turns an empty direction into "to" before the schema check.
        return "to" if value in ("", None) else value

    def traffic_control_type(self) -> Literal["netem", "bandwidth"] | None:
        """The qdisc the action installs; None for partition, which uses iptables."""
        if self.action in NETEM_ACTIONS:
            return "netem"
        if self.action == "bandwidth":
            return "bandwidth"
        return None

    def apply_defaults(self, ctx: RuleContext) -> None:
        PodSelector.apply_defaults(self, ctx)
        # "eth0@if12", as `ip link` prints a veth, names the device eth0.
        if self.device and "@" in self.device:
            self.device = self.device.split("@", 1)[0]

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from PodSelector.rules(self, ctx)
        yield from self._sub_spec_issues()
        for index, entry in enumerate(self.external_targets or []):
            try:
                split_external_target(entry)
            except ValueError as error:
                yield Issue(("externalTargets", index), str(error))
        # Chaos Mesh lets partition choose any direction: "from" with no peer isolates the pod.
        if self.action == "partition":
            return
        if self.direction in ("from", "both"):
            if self.external_targets:
                yield Issue(
                    ("direction",),
                    f"{quote(self.direction)} cannot be used with externalTargets"
                    ' (only "to" can, or action partition)',
                )
            if self.target is None:
                yield Issue(
                    ("direction",),
                    f"{quote(self.direction)} needs a target (spec.target) whose traffic to affect; set one"
                    ' or use direction "to"',
                )

    def _sub_spec_issues(self) -> Iterator[Issue]:
        # Chaos Mesh's webhook lets these through, but injection then fails (or panics).
        if self.action == "bandwidth" and self.bandwidth is None:
            yield Issue(("bandwidth",), "is required with action bandwidth")
        elif self.action in NETEM_ACTIONS and not self.netem_parts():
            if self.action == "netem":
                yield Issue(
                    ("action",),
                    f'"netem" needs at least one of {", ".join(NETEM_PARTS)} to be set',
                )
            else:
                yield Issue((self.action,), f"is required with action {self.action}")


class NetworkChaosStatus(ChaosStatus):
    """The shared chaos status, plus the PodNetworkChaos generation written per target pod."""

    instances: dict[str, Int64] | None = None


@register
class NetworkChaos(ChaosResource):
    """NetworkChaos delays, drops, duplicates, corrupts, shapes or partitions pod traffic."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="networkchaos",
        status_subresource=False,
        empty_subresources=True,
        printer_columns=(
            ("action", ".spec.action", "string", "The network fault"),
            ("duration", ".spec.duration", "string", "How long the fault lasts"),
        ),
    )

    spec: NetworkChaosSpec
    status: NetworkChaosStatus | None = None
