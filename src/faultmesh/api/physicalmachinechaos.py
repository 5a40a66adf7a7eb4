"""PhysicalMachineChaos: chaosd faults (stress, network, disk, JVM, clock, Redis, Kafka, files...)
injected into physical machines or VMs rather than pods.

The targets are PhysicalMachine objects picked by ``selector`` (or, deprecated, raw chaosd server
URLs in ``address``) and narrowed by ``mode``/``value``. ``action`` names the fault; its settings
live in the field of the same name (``action: network-delay`` reads ``network-delay:``). Those
settings use chaosd's wire names (``ip-address``, ``payload-process-num``), not camelCase.

Only the settings of the chosen action are checked, as in Chaos Mesh's webhook; each problem is
reported at its own field (Chaos Mesh reports them all at ``spec``). Where Chaos Mesh's webhook
refuses what its own documentation allows (a bare size, ``50%`` memory, a valid Redis option),
the documented form is accepted; the grammar chaosd enforces at run time (ports, IP lists,
protocols, Go durations) is checked here, so a manifest fails at admission, not mid-experiment.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field

from .awschaos import ACTION_COLUMNS
from .base import CrdInfo, Issue, Model, RuleContext, quote
from .common import ChaosResource, ChaosStatus, GenericSelectorSpec, Mode, mode_value_issues
from .physicalmachine import address_problem, with_scheme
from .registry import register
from .types import Duration, Int32, Int64, parse_go_duration

PhysicalMachineChaosAction = Literal[
    "stress-cpu", "stress-mem", "disk-read-payload", "disk-write-payload", "disk-fill",
    "network-corrupt", "network-duplicate", "network-loss", "network-delay", "network-partition",
    "network-dns", "network-bandwidth", "network-flood", "network-down", "process",
    "jvm-exception", "jvm-gc", "jvm-latency", "jvm-return", "jvm-stress", "jvm-rule-data", "jvm-mysql",
    "clock", "redis-expiration", "redis-penetration", "redis-cacheLimit", "redis-restart", "redis-stop",
    "kafka-fill", "kafka-flood", "kafka-io",
    "file-create", "file-modify", "file-delete", "file-rename", "file-append", "file-replace",
    "vm", "user_defined",
]  # fmt: skip

UInt8 = Annotated[int, Field(ge=0, le=255)]
UInt16 = Annotated[int, Field(ge=0, le=65535)]
#: Go's ``uint``: the CRD says plain integer; negative numbers cannot be decoded.
UInt = Annotated[int, Field(ge=0)]

IP_PROTOCOLS = ("tcp", "udp", "icmp", "all")
JVM_MEMORY_TYPES = ("stack", "heap")
MYSQL_CONNECTOR_VERSIONS = ("5", "8")
REDIS_EXPIRE_OPTIONS = ("XX", "NX", "GT", "LT")
CLOCK_IDS = (
    "CLOCK_REALTIME", "CLOCK_MONOTONIC", "CLOCK_PROCESS_CPUTIME_ID", "CLOCK_THREAD_CPUTIME_ID",
    "CLOCK_MONOTONIC_RAW", "CLOCK_REALTIME_COARSE", "CLOCK_MONOTONIC_COARSE", "CLOCK_BOOTTIME",
    "CLOCK_REALTIME_ALARM", "CLOCK_BOOTTIME_ALARM",
)  # fmt: skip


# --- grammar shared by the action settings ---------------------------------------------------


def _unit_map(suffix: str, scale: int) -> dict[str, int]:
    units = {"c": 1}
    for power, prefix in enumerate("MGTPE", start=2):
        units[prefix + suffix] = scale**power
    units["K" + suffix] = scale
    if scale == 1000:
        units["k" + suffix] = scale
    return units


#: The unit families chaosd reads sizes in: 1K = 1024, 1KiB = 1024, 1kB = 1KB = 1000; ``c`` is a byte.
_SIZE_UNITS = (_unit_map("", 1024), _unit_map("iB", 1024), _unit_map("B", 1000))
_SIZE_TERM = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")


def parse_size(text: str) -> int:
    """Bytes in a chaosd size: terms such as ``512kB``, ``1.5G``, ``1M512K``; a bare integer is megabytes.

    Each term's unit must come from one family (Go's ``alecthomas/units`` maps, as chaosd uses
    them). Chaos Mesh's comment says a bare integer means megabytes, though its webhook refuses
    it by accident; it is accepted here.
    """
    if text.isdigit():
        return int(text) * 1024 * 1024
    if text == "0":
        return 0
    for units in _SIZE_UNITS:
        total = 0.0
        position = 0
        while position < len(text):
            match = _SIZE_TERM.match(text, position)
            if match is None or match.end() == position:
                break
            whole, fraction, unit = match.groups()
            if not whole and not fraction:
                break
            if unit not in units:
                break
            total += float(f"{whole or 0}.{fraction or 0}") * units[unit]
            position = match.end()
        else:
            if text:
                return int(total)
    raise ValueError(text)


def _size_issues(name: str, text: str | None, action: str, allow_percent: bool = False) -> Iterator[Issue]:
    if not text:
        yield Issue((name,), f"is required with action {action}")
        return
    if allow_percent and text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            percent = -1.0
        if not 0 < percent <= 100:
            yield Issue((name,), f"{quote(text)} is not a percent of memory in (0,100]")
        return
    try:
        parse_size(text)
    except ValueError:
        more = ", or a percent of memory such as 50%" if allow_percent else ""
        yield Issue(
            (name,),
            f"{quote(text)} is not a size; use a number with a unit such as 512kB, 100MB, 1GiB, 2G{more}",
        )


def _percent_issues(name: str, text: str | None, action: str, allow_zero: bool) -> Iterator[Issue]:
    """Chaos Mesh's CheckPercent: a number in [0,100] (or (0,100] when zero is not allowed)."""
    if not text:
        if not allow_zero:
            yield Issue((name,), f"is required with action {action}")
        return
    try:
        value = float(text)
    except ValueError:
        yield Issue((name,), f"{quote(text)} is not a number; give a percent such as 10 or 2.5")
        return
    if not 0 <= value <= 100 or (value == 0 and not allow_zero):
        bounds = "[0,100]" if allow_zero else "(0,100]"
        yield Issue((name,), f"{quote(text)} is not a percent in {bounds}")


def _duration_issues(name: str, text: str | None, action: str, required: bool = True) -> Iterator[Issue]:
    if not text:
        if required:
            yield Issue((name,), f"is required with action {action}")
        return
    try:
        nanoseconds = parse_go_duration(text)
    except ValueError:
        yield Issue((name,), f"{quote(text)} is not a duration (e.g. 100ms, 1.5s, 2h45m)")
        return
    if nanoseconds < 0:
        yield Issue((name,), f"{quote(text)} is negative; a duration here must be ≥ 0")


def _ip_list_issues(name: str, text: str | None) -> Iterator[Issue]:
    """chaosd's IP list: comma-separated addresses or CIDR networks."""
    for item in text.split(",") if text else []:
        try:
            if "/" in item:
                ipaddress.ip_network(item, strict=False)
            else:
                ipaddress.ip_address(item)
        except ValueError:
            yield Issue((name,), f"{quote(item)} is not an IP address or CIDR network (e.g. 10.0.0.1, 10.0.0.0/24)")


def _ip_issues(name: str, text: str | None) -> Iterator[Issue]:
    if not text:
        return
    try:
        ipaddress.ip_address(text)
    except ValueError:
        yield Issue((name,), f"{quote(text)} is not an IP address")


def _port_issue(text: str) -> str | None:
    if not text.strip().isdigit():
        return f"{quote(text)} is not a port number"
    if int(text) > 65535:
        return f"{quote(text)} is not a port in 0..65535"
    return None


def _port_list_issues(name: str, text: str | None) -> Iterator[Issue]:
    """chaosd's port list: comma-separated ports or ``first:last`` ranges (``80, 8001:8010``)."""
    for item in text.split(",") if text else []:
        bounds = item.strip().split(":")
        if len(bounds) > 2 or not item.strip():
            yield Issue((name,), f"{quote(item)} is not a port or a port range such as 8001:8010")
            continue
        problems = [problem for problem in map(_port_issue, bounds) if problem]
        if problems:
            yield Issue((name,), problems[0])
        elif len(bounds) == 2 and int(bounds[0]) > int(bounds[1]):
            yield Issue((name,), f"{quote(item)} is an empty range; the first port must not exceed the last")


def _required(name: str, value: object, action: str) -> Iterator[Issue]:
    """Go's zero value means unset: an empty string, 0 or false counts as missing."""
    if not value:
        yield Issue((name,), f"is required with action {action}")


def _pid_issues(pid: int | None, action: str) -> Iterator[Issue]:
    yield from _required("pid", pid, action)
    if pid is not None and pid < 0:
        yield Issue(("pid",), f"{pid} is not a process ID; it must be > 0")


def _positive_issues(name: str, value: int | None, action: str) -> Iterator[Issue]:
    yield from _required(name, value, action)
    if value is not None and value < 0:
        yield Issue((name,), f"{value} must be greater than 0")


def _kebab(name: str) -> str:
    return name.replace("_", "-")


# --- the settings of each action -----------------------------------------------------------


class ActionConfig(Model):
    """The settings of one action; checked only when that action is the one chosen."""

    def config_issues(self, action: str) -> Iterator[Issue]:
        """Problems with these settings for ``action``, paths relative to this model."""
        return iter(())


class KebabConfig(ActionConfig):
    """Settings whose wire names are chaosd's kebab-case flags (``ip-address``)."""

    model_config = ConfigDict(alias_generator=_kebab)


class StressCPUSpec(KebabConfig):
    """CPU stress: ``workers`` stress-ng workers, each loading a CPU to ``load`` percent."""

    load: int | None = Field(default=None, description="Percent load per worker, 1..100.")
    workers: int | None = Field(default=None, description="Number of stress-ng CPU workers.")
    options: list[str] | None = Field(default=None, description="Extra stress-ng options.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _required("load", self.load, action)
        if self.load and not 0 < self.load <= 100:
            yield Issue(("load",), f"{self.load} is not a percent in (0,100]")
        yield from _positive_issues("workers", self.workers, action)


class StressMemorySpec(KebabConfig):
    """Memory stress: hold ``size`` bytes (or a percent of memory)."""

    size: str | None = Field(default=None, description="Bytes to consume: 256MB, 1GiB or 50%.")
    options: list[str] | None = Field(default=None, description="Extra stress-ng options.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _size_issues("size", self.size, action, allow_percent=True)


class DiskFileSpec(KebabConfig):
    """How much data, and where (no path: a temporary file, removed afterwards)."""

    size: str | None = Field(default=None, description="Amount of data: 1M, 512kB, 2GiB...")
    path: str | None = Field(default=None, description="File to read or write; none means a temp file.")


class DiskPayloadSpec(DiskFileSpec):
    """Disk read or write load by ``payload-process-num`` processes."""

    payload_process_num: UInt8 | None = Field(default=None, description="Processes doing the I/O, 1..255.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _required("payload-process-num", self.payload_process_num, action)
        yield from _size_issues("size", self.size, action)


class DiskFillSpec(DiskFileSpec):
    """Fill the disk with a file of ``size``."""

    fill_by_fallocate: bool | None = Field(default=None, description="Allocate with fallocate, not by writing.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _size_issues("size", self.size, action)


class NetworkCommonSpec(KebabConfig):
    """Which traffic a netem fault applies to: device, and optional address, port and protocol filters."""

    correlation: str | None = Field(default=None, description="Correlation with the previous packet, percent.")
    device: str | None = Field(default=None, description="The network interface, e.g. eth0.")
    source_port: str | None = Field(default=None, description="Source ports: 80 or 8001:8010, comma-separated.")
    egress_port: str | None = Field(default=None, description="Destination ports, same syntax.")
    ip_address: str | None = Field(default=None, description="Destination IPs or CIDRs, comma-separated.")
    ip_protocol: str | None = Field(default=None, description="tcp, udp, icmp or all.")
    hostname: str | None = Field(default=None, description="Destination host names.")

    def common_issues(self, action: str) -> Iterator[Issue]:
        yield from _percent_issues("correlation", self.correlation, action, allow_zero=True)
        yield from _required("device", self.device, action)
        yield from _ip_list_issues("ip-address", self.ip_address)
        yield from _protocol_and_port_issues(self.ip_protocol, self.source_port, self.egress_port)


def _protocol_issues(protocol: str | None) -> Iterator[Issue]:
    if protocol and protocol not in IP_PROTOCOLS:
        yield Issue(("ip-protocol",), f"{quote(protocol)} is not one of {', '.join(IP_PROTOCOLS)}")


def _protocol_and_port_issues(protocol: str | None, source: str | None, egress: str | None) -> Iterator[Issue]:
    yield from _port_list_issues("source-port", source)
    yield from _port_list_issues("egress-port", egress)
    yield from _protocol_issues(protocol)
    if (source or egress) and protocol not in ("tcp", "udp"):
        yield Issue(("ip-protocol",), "must be tcp or udp when source-port or egress-port is set")


class NetworkCorruptSpec(NetworkCommonSpec):
    """Corrupt ``percent`` of the matching packets."""

    percent: str | None = Field(default=None, description="Percent of packets to corrupt, (0,100].")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.common_issues(action)
        yield from _percent_issues("percent", self.percent, action, allow_zero=False)


class NetworkDuplicateSpec(NetworkCommonSpec):
    """Duplicate ``percent`` of the matching packets."""

    percent: str | None = Field(default=None, description="Percent of packets to duplicate, (0,100].")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.common_issues(action)
        yield from _percent_issues("percent", self.percent, action, allow_zero=False)


class NetworkLossSpec(NetworkCommonSpec):
    """Drop ``percent`` of the matching packets."""

    percent: str | None = Field(default=None, description="Percent of packets to drop, (0,100].")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.common_issues(action)
        yield from _percent_issues("percent", self.percent, action, allow_zero=False)


def _tcp_flags_issues(flags: str | None, protocol: str | None) -> Iterator[Issue]:
    if flags and protocol != "tcp":
        yield Issue(("ip-protocol",), "must be tcp when accept-tcp-flags is set")


class NetworkDelaySpec(NetworkCommonSpec):
    """Delay the matching packets by ``latency`` (± ``jitter``)."""

    jitter: str | None = Field(default=None, description="Delay variation, a Go duration.")
    latency: str | None = Field(default=None, description="Delay, a Go duration such as 100ms.")
    accept_tcp_flags: str | None = Field(default=None, description="TCP flags still let through (tcp only).")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.common_issues(action)
        yield from _duration_issues("latency", self.latency, action)
        yield from _duration_issues("jitter", self.jitter, action, required=False)
        yield from _tcp_flags_issues(self.accept_tcp_flags, self.ip_protocol)


class NetworkPartitionSpec(KebabConfig):
    """Cut traffic to or from the given addresses or host names."""

    device: str | None = Field(default=None, description="The network interface, e.g. eth0.")
    hostname: str | None = Field(default=None, description="Peer host names.")
    ip_address: str | None = Field(default=None, description="Peer IPs or CIDRs, comma-separated.")
    direction: str | None = Field(default=None, description="to (outgoing) or from (incoming).")
    ip_protocol: str | None = Field(default=None, description="tcp, udp, icmp or all.")
    accept_tcp_flags: str | None = Field(default=None, description="TCP flags still let through (tcp only).")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _required("device", self.device, action)
        if not self.ip_address and not self.hostname:
            yield Issue(("ip-address",), f"ip-address or hostname is required with action {action}")
        yield from _ip_list_issues("ip-address", self.ip_address)
        if self.direction not in ("to", "from"):
            shown = quote(self.direction) if self.direction else "empty"
            yield Issue(("direction",), f"{shown} is not a direction; use to or from")
        yield from _protocol_issues(self.ip_protocol)
        yield from _tcp_flags_issues(self.accept_tcp_flags, self.ip_protocol)


class NetworkDNSSpec(KebabConfig):
    """Point the resolver at ``dns-server`` and/or map one host name to an IP in /etc/hosts."""

    dns_server: str | None = Field(default=None, description="Resolver IP to put in /etc/resolv.conf.")
    dns_ip: str | None = Field(default=None, description="IP to map dns-domain-name to.")
    dns_domain_name: str | None = Field(default=None, description="Host name to map to dns-ip.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _ip_issues("dns-server", self.dns_server)
        yield from _ip_issues("dns-ip", self.dns_ip)
        if bool(self.dns_domain_name) != bool(self.dns_ip):
            missing = "dns-ip" if self.dns_domain_name else "dns-domain-name"
            yield Issue((missing,), "dns-domain-name and dns-ip must be set together")


class NetworkBandwidthSpec(KebabConfig):
    """Limit outgoing bandwidth with a token bucket (tc tbf)."""

    rate: str = Field(description="Rate, e.g. 1mbps, 10kbit.")
    limit: Int32 = Field(ge=1, description="Bytes that can be queued waiting for tokens.")
    buffer: Int32 = Field(ge=1, description="Bucket size in bytes.")
    peakrate: Int64 | None = Field(
        default=None, ge=0, description="Maximum burst rate, bits/s (tc reads a bare number so)."
    )
    minburst: Int32 | None = Field(default=None, ge=0, description="Peak-rate bucket size in bytes.")
    device: str | None = Field(default=None, description="The network interface, e.g. eth0.")
    ip_address: str | None = Field(default=None, description="Destination IPs or CIDRs, comma-separated.")
    hostname: str | None = Field(default=None, description="Destination host names.")

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        # Chaos Mesh checks the rate wherever these settings appear, chosen action or not.
        if not self.rate:
            yield Issue(("rate",), "must not be empty")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _required("device", self.device, action)
        yield from _ip_list_issues("ip-address", self.ip_address)


class NetworkFloodSpec(KebabConfig):
    """Flood a peer with iperf traffic at ``rate``."""

    rate: str = Field(description="Traffic rate: bps, kbps, mbps, gbps or tbps (bytes per second).")
    ip_address: str | None = Field(default=None, description="IP address to send the traffic to.")
    port: str | None = Field(default=None, description="Port on that address.")
    parallel: Int32 | None = Field(default=None, description="Parallel iperf client threads.")
    duration: str = Field(description="How long iperf runs.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _required("ip-address", self.ip_address, action)
        yield from _ip_issues("ip-address", self.ip_address)
        yield from _required("port", self.port, action)
        if self.port:
            problem = _port_issue(self.port)
            if problem:
                yield Issue(("port",), problem)
        yield from _required("rate", self.rate, action)
        yield from _required("duration", self.duration, action)
        if self.parallel is not None and self.parallel < 0:
            yield Issue(("parallel",), f"{self.parallel} must be ≥ 0")


class NetworkDownSpec(KebabConfig):
    """Take a network interface down for ``duration``."""

    device: str | None = Field(default=None, description="The network interface, e.g. eth0.")
    duration: str | None = Field(default=None, description="How long it stays down, a Go duration.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _required("device", self.device, action)
        yield from _duration_issues("duration", self.duration, action)


class ProcessSpec(ActionConfig):
    """Send ``signal`` to a process (by name or PID); run ``recoverCmd`` on recovery."""

    process: str | None = Field(default=None, description="Process name or PID.")
    signal: int | None = Field(default=None, description="Signal number, e.g. 9 or 15.")
    recover_cmd: str | None = Field(default=None, description="Command run on recovery, e.g. to restart it.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _required("process", self.process, action)
        yield from _required("signal", self.signal, action)
        if self.signal and not 0 < self.signal <= 64:
            yield Issue(("signal",), f"{self.signal} is not a signal number in 1..64")


class JVMCommonSpec(KebabConfig):
    """The Java process to attach to, and the port of the agent inside it."""

    port: Int32 | None = Field(default=None, description="Port of the injected agent (default 9277).")
    pid: int | None = Field(default=None, description="PID of the Java process.")

    def jvm_issues(self, action: str) -> Iterator[Issue]:
        yield from _pid_issues(self.pid, action)


class JVMClassMethodSpec(KebabConfig):
    """The Java method a rule hooks."""

    class_name: str | None = Field(default=None, alias="class", description="Fully qualified Java class.")
    method: str | None = Field(default=None, description="Method of that class.")

    def class_method_issues(self, action: str) -> Iterator[Issue]:
        yield from _required("class", self.class_name, action)
        yield from _required("method", self.method, action)


class JVMExceptionSpec(JVMCommonSpec, JVMClassMethodSpec):
    """Make a method throw ``exception``."""

    exception: str | None = Field(default=None, description='Exception to throw, e.g. java.io.IOException("x").')

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.jvm_issues(action)
        yield from self.class_method_issues(action)
        yield from _required("exception", self.exception, action)


class JVMGCSpec(JVMCommonSpec):
    """Trigger garbage collection in the process."""

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.jvm_issues(action)


class JVMLatencySpec(JVMCommonSpec, JVMClassMethodSpec):
    """Delay a method by ``latency`` milliseconds."""

    latency: int | None = Field(default=None, description="Delay in milliseconds.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.jvm_issues(action)
        yield from self.class_method_issues(action)
        yield from _positive_issues("latency", self.latency, action)


class JVMReturnSpec(JVMCommonSpec, JVMClassMethodSpec):
    """Make a method return ``value``."""

    value: str | None = Field(default=None, description="Return value, as a Java expression.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.jvm_issues(action)
        yield from self.class_method_issues(action)
        yield from _required("value", self.value, action)


class JVMStressSpec(JVMCommonSpec):
    """Stress CPU (``cpu-count`` cores) or memory (``mem-type``) inside the JVM; one of the two."""

    cpu_count: int | None = Field(default=None, description="CPU cores to keep busy.")
    mem_type: str | None = Field(default=None, description="stack or heap.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.jvm_issues(action)
        if not self.cpu_count and not self.mem_type:
            yield Issue(("cpu-count",), f"cpu-count or mem-type is required with action {action}")
        elif self.cpu_count and self.mem_type:
            yield Issue(("mem-type",), "cannot be set together with cpu-count; stress CPU or memory, not both")
        if self.cpu_count is not None and self.cpu_count < 0:
            yield Issue(("cpu-count",), f"{self.cpu_count} must be greater than 0")
        if self.mem_type and self.mem_type not in JVM_MEMORY_TYPES:
            yield Issue(("mem-type",), f"{quote(self.mem_type)} is not one of {', '.join(JVM_MEMORY_TYPES)}")


class JVMRuleDataSpec(JVMCommonSpec):
    """Install a Byteman rule given as text."""

    rule_data: str | None = Field(default=None, description="The Byteman rule text.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.jvm_issues(action)
        yield from _required("rule-data", self.rule_data, action)


class PMJVMMySQLSpec(JVMCommonSpec):
    """Fail or delay MySQL queries made through mysql-connector-java that match database/table/type."""

    mysql_connector_version: str | None = Field(
        default=None, alias="mysqlConnectorVersion", description='Connector major version: "5" or "8".'
    )
    database: str | None = Field(default=None, description="Database to match; empty matches all.")
    table: str | None = Field(default=None, description="Table to match; empty matches all.")
    sql_type: str | None = Field(
        default=None, alias="sqlType", description="select, insert, update, delete or replace; empty: all."
    )
    exception: str | None = Field(default=None, description="Exception message to throw.")
    latency: int | None = Field(default=None, description="Delay in milliseconds.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.jvm_issues(action)
        version = self.mysql_connector_version
        yield from _required("mysqlConnectorVersion", version, action)
        if version and version not in MYSQL_CONNECTOR_VERSIONS:
            yield Issue(("mysqlConnectorVersion",), f'{quote(version)} is not supported; use "5" or "8"')
        if not self.exception and not self.latency:
            yield Issue(("exception",), f"exception or latency is required with action {action}")


class ClockSpec(KebabConfig):
    """Shift the clocks a process sees by ``time-offset``."""

    pid: int | None = Field(default=None, description="PID of the target process.")
    time_offset: str | None = Field(default=None, description="Offset, a signed Go duration such as -5m.")
    clock_ids_slice: str | None = Field(
        default=None, description="Clocks to shift, comma-separated (CLOCK_REALTIME,CLOCK_MONOTONIC)."
    )

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _pid_issues(self.pid, action)
        yield from _required("time-offset", self.time_offset, action)
        if self.time_offset:
            try:
                parse_go_duration(self.time_offset)
            except ValueError:
                yield Issue(("time-offset",), f"{quote(self.time_offset)} is not a duration (e.g. -5m, 1h)")
        for clock in self.clock_ids_slice.split(",") if self.clock_ids_slice else []:
            if clock not in CLOCK_IDS:
                yield Issue(("clock-ids-slice",), f"{quote(clock)} is not a clock; use e.g. CLOCK_REALTIME")


class RedisCommonSpec(ActionConfig):
    """The Redis server to act on."""

    addr: str | None = Field(default=None, description="host:port of the Redis server.")
    password: str | None = Field(default=None, description="Its password.")

    def redis_issues(self, action: str) -> Iterator[Issue]:
        yield from _required("addr", self.addr, action)


class RedisExpirationSpec(RedisCommonSpec):
    """Expire keys after ``expiration``."""

    expiration: str | None = Field(default=None, description="Time to live given to the keys.")
    key: str | None = Field(default=None, description="Key to expire; empty means all keys.")
    option: str | None = Field(default=None, description="EXPIRE option: XX, NX, GT or LT.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.redis_issues(action)
        # Chaos Mesh's webhook inverts this test and refuses exactly the valid options.
        if self.option and self.option not in REDIS_EXPIRE_OPTIONS:
            yield Issue(("option",), f"{quote(self.option)} is not one of {', '.join(REDIS_EXPIRE_OPTIONS)}")


class RedisPenetrationSpec(RedisCommonSpec):
    """Send ``requestNum`` requests for keys that do not exist, past the cache."""

    request_num: int | None = Field(default=None, description="Number of requests.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.redis_issues(action)
        yield from _positive_issues("requestNum", self.request_num, action)


class RedisCacheLimitSpec(RedisCommonSpec):
    """Lower ``maxmemory`` to ``cacheSize`` or to ``percent`` of its value."""

    cache_size: str | None = Field(default=None, description="New maxmemory.")
    percent: str | None = Field(default=None, description="New maxmemory as a percent of the current one.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.redis_issues(action)
        # chaosd's zero size is "0"; only a real size conflicts with a percent.
        if self.cache_size not in (None, "", "0") and self.percent:
            yield Issue(("percent",), "cannot be set together with cacheSize; give one of them")
        yield from _percent_issues("percent", self.percent, action, allow_zero=True)


class RedisSentinelRestartSpec(RedisCommonSpec):
    """Restart a Redis Sentinel from its configuration file."""

    conf: str | None = Field(default=None, description="Path of the Sentinel configuration.")
    flush_config: bool | None = Field(default=None, description="Flush the configuration before stopping.")
    redis_path: bool | None = Field(default=None, description="Where redis-server is (a boolean in the CRD).")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.redis_issues(action)
        yield from _required("conf", self.conf, action)


class RedisSentinelStopSpec(RedisCommonSpec):
    """Stop a Redis Sentinel."""

    conf: str | None = Field(default=None, description="Path of the Sentinel configuration.")
    flush_config: bool | None = Field(default=None, description="Flush the configuration before stopping.")
    redis_path: bool | None = Field(default=None, description="Where redis-server is (a boolean in the CRD).")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.redis_issues(action)


class KafkaCommonSpec(ActionConfig):
    """The Kafka server and topic to act on."""

    topic: str | None = Field(default=None, description="Topic to attack.")
    host: str | None = Field(default=None, description="Kafka server host.")
    port: UInt16 | None = Field(default=None, description="Kafka server port.")
    username: str | None = Field(default=None, description="Client user name.")
    password: str | None = Field(default=None, description="Client password.")

    def kafka_issues(self, action: str) -> Iterator[Issue]:
        yield from _required("host", self.host, action)
        yield from _required("port", self.port, action)


class KafkaFillSpec(KafkaCommonSpec):
    """Fill a topic with ``maxBytes`` of messages, then reload Kafka."""

    message_size: UInt | None = Field(default=None, description="Size of each message, bytes.")
    max_bytes: Int64 | None = Field(default=None, ge=0, description="Bytes to fill.")
    reload_command: str | None = Field(default=None, description="Command that reloads the Kafka config.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.kafka_issues(action)
        yield from _required("maxBytes", self.max_bytes, action)
        yield from _required("reloadCommand", self.reload_command, action)


class KafkaFloodSpec(KafkaCommonSpec):
    """Flood a topic with messages from ``threads`` workers."""

    message_size: UInt | None = Field(default=None, description="Size of each message, bytes.")
    threads: UInt | None = Field(default=None, description="Worker threads.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from self.kafka_issues(action)
        yield from _required("threads", self.threads, action)


class KafkaIOSpec(ActionConfig):
    """Make a topic's files unreadable and/or unwritable."""

    topic: str | None = Field(default=None, description="Topic to attack.")
    config_file: str | None = Field(default=None, description="Path of the server configuration.")
    non_readable: bool | None = Field(default=None, description="Make the topic unreadable.")
    non_writable: bool | None = Field(default=None, description="Make the topic unwritable.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        if not self.non_readable and not self.non_writable:
            yield Issue(("nonReadable",), f"nonReadable or nonWritable is required with action {action}")


class HTTPCommonSpec(ActionConfig):
    """Which HTTP traffic, through the proxy on ``proxy_ports``, a fault applies to."""

    proxy_ports: list[UInt] = Field(alias="proxy_ports", description="Ports whose HTTP connections are hit.")
    target: str = Field(description="Request or Response.")
    port: Int32 | None = Field(default=None, description="TCP port the target service listens on.")
    path: str | None = Field(default=None, description="URI path to match, with wildcards.")
    method: str | None = Field(default=None, description="HTTP method to match.")
    code: str | None = Field(default=None, description="Response status code to match.")


class HTTPAbortSpec(HTTPCommonSpec):
    """Abort matching HTTP connections."""


class HTTPDelaySpec(HTTPCommonSpec):
    """Delay matching HTTP requests or responses."""

    delay: str = Field(description="The delay.")


class HTTPConfigSpec(ActionConfig):
    """HTTP faults read from a file."""

    file_path: str | None = Field(default=None, alias="file_path", description="Path of the config file.")


class HTTPRequestSpec(ActionConfig):
    """Send GET requests to ``url``."""

    url: str | None = Field(default=None, description="URL to request.")
    enable_conn_pool: bool | None = Field(default=None, alias="enable-conn-pool", description="Reuse connections.")
    count: int | None = Field(default=None, description="Number of requests.")


class FileCreateSpec(KebabConfig):
    """Create a file or a directory."""

    file_name: str | None = Field(default=None, description="File to create.")
    dir_name: str | None = Field(default=None, description="Directory to create.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        if not self.file_name and not self.dir_name:
            yield Issue(("file-name",), f"file-name or dir-name is required with action {action}")


class FileModifyPrivilegeSpec(KebabConfig):
    """Change a file's mode bits."""

    file_name: str | None = Field(default=None, description="File to change.")
    privilege: Int32 | None = Field(default=None, ge=0, description="New mode, written like chmod's, e.g. 777.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _required("file-name", self.file_name, action)
        yield from _required("privilege", self.privilege, action)


class FileDeleteSpec(KebabConfig):
    """Delete a file or a directory (kept aside to restore it)."""

    file_name: str | None = Field(default=None, description="File to delete.")
    dir_name: str | None = Field(default=None, description="Directory to delete.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        if not self.file_name and not self.dir_name:
            yield Issue(("file-name",), f"file-name or dir-name is required with action {action}")


class FileRenameSpec(KebabConfig):
    """Rename a file."""

    source_file: str | None = Field(default=None, description="File to rename.")
    dest_file: str | None = Field(default=None, description="Its new name.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _required("source-file", self.source_file, action)
        yield from _required("dest-file", self.dest_file, action)


class FileAppendSpec(KebabConfig):
    """Append ``data`` to a file ``count`` times."""

    file_name: str | None = Field(default=None, description="File to append to.")
    data: str | None = Field(default=None, description="Data to append.")
    count: int | None = Field(default=None, description="How many times.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _required("file-name", self.file_name, action)
        yield from _required("data", self.data, action)
        if self.count is not None and self.count < 0:
            yield Issue(("count",), f"{self.count} must be ≥ 0")


class FileReplaceSpec(KebabConfig):
    """Replace a string in a file (in one line, or everywhere)."""

    file_name: str | None = Field(default=None, description="File to edit.")
    origin_string: str | None = Field(default=None, description="Text to replace.")
    dest_string: str | None = Field(default=None, description="Replacement text.")
    line: int | None = Field(default=None, description="Line number to edit; 0 means every line.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _required("file-name", self.file_name, action)
        yield from _required("origin-string", self.origin_string, action)
        yield from _required("dest-string", self.dest_string, action)


class VMSpec(KebabConfig):
    """Act on a virtual machine by name."""

    vm_name: str | None = Field(default=None, description="The VM's name.")


class UserDefinedSpec(ActionConfig):
    """Run an arbitrary command to inject, and another to recover."""

    attack_cmd: str | None = Field(default=None, description="Command that injects the fault.")
    recover_cmd: str | None = Field(default=None, description="Command that takes it out.")

    def config_issues(self, action: str) -> Iterator[Issue]:
        yield from _required("attackCmd", self.attack_cmd, action)
        yield from _required("recoverCmd", self.recover_cmd, action)


# --- the spec ---------------------------------------------------------------------------------


class PhysicalMachineSelectorSpec(GenericSelectorSpec):
    """Selects PhysicalMachine objects by the generic selectors or by namespace → names."""

    physical_machines: dict[str, list[str]] | None = Field(
        default=None, description="Namespace → names of PhysicalMachine objects."
    )

    def is_empty(self) -> bool:
        return not (
            self.namespaces or self.field_selectors or self.label_selectors
            or self.expression_selectors or self.annotation_selectors or self.physical_machines
        )  # fmt: skip


class PhysicalMachineSelector(Model):
    """Which machines (selector, or the deprecated address list), and how many (mode, value)."""

    address: list[str] | None = Field(
        default=None, description="Deprecated: chaosd server URLs; use selector. Not with selector."
    )
    selector: PhysicalMachineSelectorSpec | None = None
    mode: Mode = Field(description="one / all / fixed / fixed-percent / random-max-percent")
    value: str | None = Field(default=None, description="Count (fixed) or percent (the percent modes).")

    def selector_issues(self) -> Iterator[Issue]:
        has_selector = self.selector is not None and not self.selector.is_empty()
        if not self.address and not has_selector:
            yield Issue(("selector",), "is required: select PhysicalMachine objects (or list addresses)")
        if self.address and has_selector:
            yield Issue(("address",), "cannot be used together with selector; give one of them")
        for index, address in enumerate(self.address or []):
            problem = address_problem(address)
            if problem:
                yield Issue(("address", index), problem)
        yield from mode_value_issues(self.mode, self.value)


class ExpInfo(Model):
    """The experiment ID handed to chaosd, and the settings of every action (one is used)."""

    uid: str | None = Field(default=None, description="Experiment ID sent to chaosd; generated when empty.")
    stress_cpu: StressCPUSpec | None = Field(default=None, alias="stress-cpu")
    stress_mem: StressMemorySpec | None = Field(default=None, alias="stress-mem")
    disk_read_payload: DiskPayloadSpec | None = Field(default=None, alias="disk-read-payload")
    disk_write_payload: DiskPayloadSpec | None = Field(default=None, alias="disk-write-payload")
    disk_fill: DiskFillSpec | None = Field(default=None, alias="disk-fill")
    network_corrupt: NetworkCorruptSpec | None = Field(default=None, alias="network-corrupt")
    network_duplicate: NetworkDuplicateSpec | None = Field(default=None, alias="network-duplicate")
    network_loss: NetworkLossSpec | None = Field(default=None, alias="network-loss")
    network_delay: NetworkDelaySpec | None = Field(default=None, alias="network-delay")
    network_partition: NetworkPartitionSpec | None = Field(default=None, alias="network-partition")
    network_dns: NetworkDNSSpec | None = Field(default=None, alias="network-dns")
    network_bandwidth: NetworkBandwidthSpec | None = Field(default=None, alias="network-bandwidth")
    network_flood: NetworkFloodSpec | None = Field(default=None, alias="network-flood")
    network_down: NetworkDownSpec | None = Field(default=None, alias="network-down")
    process: ProcessSpec | None = Field(default=None, alias="process")
    jvm_exception: JVMExceptionSpec | None = Field(default=None, alias="jvm-exception")
    jvm_gc: JVMGCSpec | None = Field(default=None, alias="jvm-gc")
    jvm_latency: JVMLatencySpec | None = Field(default=None, alias="jvm-latency")
    jvm_return: JVMReturnSpec | None = Field(default=None, alias="jvm-return")
    jvm_stress: JVMStressSpec | None = Field(default=None, alias="jvm-stress")
    jvm_rule_data: JVMRuleDataSpec | None = Field(default=None, alias="jvm-rule-data")
    jvm_mysql: PMJVMMySQLSpec | None = Field(default=None, alias="jvm-mysql")
    clock: ClockSpec | None = Field(default=None, alias="clock")
    redis_expiration: RedisExpirationSpec | None = Field(default=None, alias="redis-expiration")
    redis_penetration: RedisPenetrationSpec | None = Field(default=None, alias="redis-penetration")
    redis_cache_limit: RedisCacheLimitSpec | None = Field(default=None, alias="redis-cacheLimit")
    redis_restart: RedisSentinelRestartSpec | None = Field(default=None, alias="redis-restart")
    redis_stop: RedisSentinelStopSpec | None = Field(default=None, alias="redis-stop")
    kafka_fill: KafkaFillSpec | None = Field(default=None, alias="kafka-fill")
    kafka_flood: KafkaFloodSpec | None = Field(default=None, alias="kafka-flood")
    kafka_io: KafkaIOSpec | None = Field(default=None, alias="kafka-io")
    http_abort: HTTPAbortSpec | None = Field(default=None, alias="http-abort")
    http_delay: HTTPDelaySpec | None = Field(default=None, alias="http-delay")
    http_config: HTTPConfigSpec | None = Field(default=None, alias="http-config")
    http_request: HTTPRequestSpec | None = Field(default=None, alias="http-request")
    file_create: FileCreateSpec | None = Field(default=None, alias="file-create")
    file_modify: FileModifyPrivilegeSpec | None = Field(default=None, alias="file-modify")
    file_delete: FileDeleteSpec | None = Field(default=None, alias="file-delete")
    file_rename: FileRenameSpec | None = Field(default=None, alias="file-rename")
    file_append: FileAppendSpec | None = Field(default=None, alias="file-append")
    file_replace: FileReplaceSpec | None = Field(default=None, alias="file-replace")
    vm: VMSpec | None = Field(default=None, alias="vm")
    user_defined: UserDefinedSpec | None = Field(default=None, alias="user_defined")

    def config_for(self, action: str) -> ActionConfig | None:
        """The settings of ``action`` (the field whose wire name is the action), if given."""
        name = _ACTION_FIELDS.get(action)
        value = getattr(self, name) if name else None
        return value if isinstance(value, ActionConfig) else None


#: action → attribute of ExpInfo holding its settings (the field's wire name is the action).
_ACTION_FIELDS: dict[str, str] = {
    info.alias: name for name, info in ExpInfo.model_fields.items() if info.alias and name != "uid"
}


class PhysicalMachineChaosSpec(PhysicalMachineSelector, ExpInfo):
    """The fault (``action`` plus its settings), the machines, and how long."""

    action: PhysicalMachineChaosAction = Field(description="The fault; its settings go in the field of that name.")
    duration: Duration | None = Field(default=None, description="How long the fault lasts, a Go duration.")
    remote_cluster: str | None = None

    def apply_defaults(self, ctx: RuleContext) -> None:
        if self.address:
            self.address = [with_scheme(address) for address in self.address]
        # Only a real experiment gets an ID: a Schedule or Workflow template must not pin one
        # ID on every experiment it spawns.
        if not self.uid and isinstance(ctx.root, PhysicalMachineChaos):
            self.uid = str(uuid.uuid4())

    def rules(self, ctx: RuleContext) -> Iterator[Issue]:
        yield from self.selector_issues()
        config = self.config_for(self.action)
        if config is None:
            yield Issue((self.action,), f"is required with action {self.action} (its settings)")
            return
        for issue in config.config_issues(self.action):
            yield Issue((self.action, *issue.path), issue.message)


class PhysicalMachineChaosStatus(ChaosStatus):
    """The shared chaos status; PhysicalMachineChaos adds nothing."""


@register
class PhysicalMachineChaos(ChaosResource):
    """PhysicalMachineChaos injects chaosd faults into machines outside Kubernetes."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        plural="physicalmachinechaos", status_subresource=False, empty_subresources=True, printer_columns=ACTION_COLUMNS
    )

    spec: PhysicalMachineChaosSpec
    status: PhysicalMachineChaosStatus | None = None
