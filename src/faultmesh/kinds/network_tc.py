"""The parameters of one traffic-control leaf -- netem and tbf -- read from a spec, merged, and written as tc args.

Everything is numeric inside (nanoseconds, percents, bits per second) so faults compare and merge exactly;
text is produced only for tc, in units tc 6.x parses (a Go duration such as "1m" is not one of them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import ClassVar

from pydantic import ConfigDict

from ..api.networkchaos import BandwidthSpec, TcParameter, parse_netem_percent, rate_bits_per_second

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)")
_NANOSECONDS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def duration_ns(text: str) -> int:
    """A netem duration as the API accepts it ("90ms", "1.5s", "2m") → whole nanoseconds."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f'"{text}" is not a duration of one number and one unit (ns, us, ms, s, m, h)')
    return round(Decimal(match.group(1)) * _NANOSECONDS[match.group(2)])


def tc_time(nanoseconds: int) -> str:
    """Nanoseconds → a tc time in microseconds ("1500us", "0.5us"); tc's netem refuses "ns", "m" and "h"."""
    whole, rest = divmod(nanoseconds, 1000)
    if rest == 0:
        return f"{whole}us"
    return f"{whole}.{rest:03d}".rstrip("0") + "us"


def tc_percent(value: float) -> str:
    """A percent for tc, in the shortest form that reads back to the same float ("25%", "0.5%")."""
    text = repr(float(value))
    return (text[:-2] if text.endswith(".0") else text) + "%"


@dataclass(frozen=True)
class NetemParams:
    """What one netem qdisc does. Zero means "not set", as in Chaos Mesh's netem message."""

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    delay_ns: int = 0
    jitter_ns: int = 0
    delay_correlation: float = 0.0
    reorder: float = 0.0
    reorder_correlation: float = 0.0
    gap: int = 0
    loss: float = 0.0
    loss_correlation: float = 0.0
    duplicate: float = 0.0
    duplicate_correlation: float = 0.0
    corrupt: float = 0.0
    corrupt_correlation: float = 0.0
    #: netem's own rate limit, bits per second (0: none).
    rate_bps: int = 0

    @classmethod
    def from_tc_parameter(cls, spec: TcParameter) -> NetemParams | None:
        """The netem sub-specs of a spec, merged into one qdisc as Chaos Mesh does; None when none is set."""
        parts: list[NetemParams] = []
        if spec.delay is not None:
            reorder = spec.delay.reorder
            parts.append(
                cls(
                    delay_ns=duration_ns(spec.delay.latency),
                    jitter_ns=duration_ns(spec.delay.jitter or "0ms"),
                    delay_correlation=parse_netem_percent(spec.delay.correlation or "0"),
                    reorder=parse_netem_percent(reorder.reorder) if reorder else 0.0,
                    reorder_correlation=parse_netem_percent(reorder.correlation or "0") if reorder else 0.0,
                    gap=reorder.gap if reorder else 0,
                )
            )
        if spec.loss is not None:
            parts.append(
                cls(
                    loss=parse_netem_percent(spec.loss.loss),
                    loss_correlation=parse_netem_percent(spec.loss.correlation or "0"),
                )
            )
        if spec.duplicate is not None:
            parts.append(
                cls(
                    duplicate=parse_netem_percent(spec.duplicate.duplicate),
                    duplicate_correlation=parse_netem_percent(spec.duplicate.correlation or "0"),
                )
            )
        if spec.corrupt is not None:
            parts.append(
                cls(
                    corrupt=parse_netem_percent(spec.corrupt.corrupt),
                    corrupt_correlation=parse_netem_percent(spec.corrupt.correlation or "0"),
                )
            )
        if spec.rate is not None:
            parts.append(cls(rate_bps=rate_bits_per_second(spec.rate.rate)))
        if not parts:
            return None
        merged = parts[0]
        for part in parts[1:]:
            merged = merged.merge(part)
        return merged

    def merge(self, other: NetemParams) -> NetemParams:
        """Field by field, the larger value wins: Chaos Mesh's rule for netem settings that meet on one qdisc.

        So two delays do not add up (100ms and 50ms give 100ms), a loss and a delay both hold, and the
        larger of two netem rates is kept.
        """
        values = {f.name: max(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)}
        return NetemParams(**values)

    def tc_args(self) -> tuple[str, ...]:
        """The arguments after ``netem`` (Chaos Mesh's order; a correlation or jitter only where tc reads it)."""
        args: list[str] = []
        if self.delay_ns > 0:
            args += ["delay", tc_time(self.delay_ns)]
            if self.jitter_ns > 0:
                args.append(tc_time(self.jitter_ns))
                if self.delay_correlation > 0:
                    args.append(tc_percent(self.delay_correlation))
            # netem reorders only packets it would otherwise delay.
            if self.reorder > 0:
                args += ["reorder", tc_percent(self.reorder)]
                if self.reorder_correlation > 0:
                    args.append(tc_percent(self.reorder_correlation))
                if self.gap > 0:
                    args += ["gap", str(self.gap)]
        for name, value, correlation in (
            ("loss", self.loss, self.loss_correlation),
            ("duplicate", self.duplicate, self.duplicate_correlation),
            ("corrupt", self.corrupt, self.corrupt_correlation),
        ):
            if value > 0:
                args += [name, tc_percent(value)]
                if correlation > 0:
                    args.append(tc_percent(correlation))
        if self.rate_bps > 0:
            args += ["rate", f"{self.rate_bps}bit"]
        return tuple(args)


@dataclass(frozen=True)
class TbfParams:
    """A token bucket: Chaos Mesh's bandwidth action."""

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    rate_bps: int
    #: Bucket size in bytes (tc's ``burst``).
    buffer: int
    #: Bytes that may wait for tokens.
    limit: int
    #: Peak rate as tc reads Chaos Mesh's bare number: bits per second (0: none).
    peakrate_bps: int = 0
    #: Size of the peak-rate bucket in bytes (tc's ``mtu``).
    minburst: int = 0

    @classmethod
    def from_bandwidth(cls, spec: BandwidthSpec) -> TbfParams:
        # Chaos Mesh sets a peak rate only when both peakrate and minburst are given, and hands the bare
        # number to tc, which reads it as bits per second; the same manifest must shape the same way here.
        with_peak = bool(spec.peakrate) and spec.minburst is not None
        return cls(
            rate_bps=rate_bits_per_second(spec.rate),
            buffer=spec.buffer,
            limit=spec.limit,
            peakrate_bps=(spec.peakrate or 0) if with_peak else 0,
            minburst=(spec.minburst or 0) if with_peak else 0,
        )

    def tc_args(self) -> tuple[str, ...]:
        """The arguments after ``tbf``."""
        args = ["rate", f"{self.rate_bps}bit", "burst", str(self.buffer), "limit", str(self.limit)]
        if self.peakrate_bps > 0:
            args += ["peakrate", f"{self.peakrate_bps}bit", "mtu", str(self.minburst)]
        return tuple(args)
