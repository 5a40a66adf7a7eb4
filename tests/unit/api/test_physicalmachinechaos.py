"""PhysicalMachineChaos and PhysicalMachine: targets, defaults, the settings of every action, SDK use."""

from __future__ import annotations

import typing
from typing import Any

import pytest
import yaml

from faultmesh.api.base import ObjectMeta, RuleContext, format_path
from faultmesh.api.crd import crd_for
from faultmesh.api.loader import ManifestError, load_text, validate_object
from faultmesh.api.physicalmachine import PhysicalMachine, PhysicalMachineSpec
from faultmesh.api.physicalmachinechaos import (
    NetworkDelaySpec,
    PhysicalMachineChaos,
    PhysicalMachineChaosAction,
    PhysicalMachineChaosSpec,
    PhysicalMachineSelectorSpec,
    StressCPUSpec,
    parse_size,
)

ACTIONS: tuple[str, ...] = typing.get_args(PhysicalMachineChaosAction)
ADDRESS = ["10.0.0.5:31767"]

#: The smallest valid settings of every action.
VALID: dict[str, dict[str, Any]] = {
    "stress-cpu": {"load": 50, "workers": 2},
    "stress-mem": {"size": "256MB"},
    "disk-read-payload": {"size": "1G", "payload-process-num": 2},
    "disk-write-payload": {"size": "512kB", "payload-process-num": 1, "path": "/tmp/x"},
    "disk-fill": {"size": "1GiB", "fill-by-fallocate": True},
    "network-corrupt": {"device": "eth0", "percent": "10"},
    "network-duplicate": {"device": "eth0", "percent": "10", "correlation": "25"},
    "network-loss": {"device": "eth0", "percent": "2.5", "ip-address": "10.0.0.0/24,10.1.0.1"},
    "network-delay": {"device": "eth0", "latency": "100ms", "jitter": "10ms"},
    "network-partition": {"device": "eth0", "hostname": "example.com", "direction": "to"},
    "network-dns": {"dns-server": "8.8.8.8"},
    "network-bandwidth": {"device": "eth0", "rate": "1mbps", "limit": 20000, "buffer": 10000},
    "network-flood": {"ip-address": "10.0.0.9", "port": "5201", "rate": "10mbps", "duration": "60"},
    "network-down": {"device": "eth1", "duration": "30s"},
    "process": {"process": "nginx", "signal": 9},
    "jvm-exception": {"pid": 42, "class": "Main", "method": "run", "exception": 'java.io.IOException("x")'},
    "jvm-gc": {"pid": 42},
    "jvm-latency": {"pid": 42, "class": "Main", "method": "run", "latency": 500},
    "jvm-return": {"pid": 42, "class": "Main", "method": "run", "value": "0"},
    "jvm-stress": {"pid": 42, "mem-type": "heap"},
    "jvm-rule-data": {"pid": 42, "rule-data": "RULE x\nCLASS Main\nMETHOD run\nDO return 0\nENDRULE"},
    "jvm-mysql": {"pid": 42, "mysqlConnectorVersion": "8", "latency": 1000},
    "clock": {"pid": 42, "time-offset": "-5m", "clock-ids-slice": "CLOCK_REALTIME,CLOCK_MONOTONIC"},
    "redis-expiration": {"addr": "10.0.0.7:6379", "expiration": "1m", "option": "NX"},
    "redis-penetration": {"addr": "10.0.0.7:6379", "requestNum": 1000},
    "redis-cacheLimit": {"addr": "10.0.0.7:6379", "percent": "50"},
    "redis-restart": {"addr": "10.0.0.7:26379", "conf": "/etc/redis/sentinel.conf"},
    "redis-stop": {"addr": "10.0.0.7:26379"},
    "kafka-fill": {"host": "kafka", "port": 9092, "maxBytes": 1 << 30, "reloadCommand": "systemctl reload kafka"},
    "kafka-flood": {"host": "kafka", "port": 9092, "threads": 4},
    "kafka-io": {"topic": "orders", "nonWritable": True},
    "file-create": {"dir-name": "/tmp/d"},
    "file-modify": {"file-name": "/tmp/f", "privilege": 777},
    "file-delete": {"file-name": "/tmp/f"},
    "file-rename": {"source-file": "/tmp/a", "dest-file": "/tmp/b"},
    "file-append": {"file-name": "/tmp/f", "data": "x", "count": 3},
    "file-replace": {"file-name": "/tmp/f", "origin-string": "a", "dest-string": "b"},
    "vm": {"vm-name": "vm-1"},
    "user_defined": {"attackCmd": "touch /tmp/a", "recoverCmd": "rm /tmp/a"},
}

#: (action, settings, field path under spec, message fragment)
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("stress-cpu", {"workers": 1}, "stress-cpu.load", "is required with action stress-cpu"),
    ("stress-cpu", {"load": 150, "workers": 1}, "stress-cpu.load", "150 is not a percent in (0,100]"),
    ("stress-cpu", {"load": 10, "workers": 0}, "stress-cpu.workers", "is required"),
    ("stress-cpu", {"load": 10, "workers": -2}, "stress-cpu.workers", "-2 must be greater than 0"),
    ("stress-mem", {}, "stress-mem.size", "is required with action stress-mem"),
    ("stress-mem", {"size": "123HB"}, "stress-mem.size", '"123HB" is not a size'),
    ("stress-mem", {"size": "150%"}, "stress-mem.size", '"150%" is not a percent of memory'),
    ("disk-read-payload", {"size": "1M"}, "disk-read-payload.payload-process-num", "is required"),
    ("disk-write-payload", {"payload-process-num": 1}, "disk-write-payload.size", "is required"),
    ("disk-fill", {"size": "1kiB"}, "disk-fill.size", '"1kiB" is not a size'),
    ("network-corrupt", {"device": "eth0", "percent": "0"}, "network-corrupt.percent", "(0,100]"),
    ("network-duplicate", {"percent": "5"}, "network-duplicate.device", "is required"),
    ("network-loss", {"device": "eth0"}, "network-loss.percent", "is required with action network-loss"),
    ("network-loss", {"device": "eth0", "percent": "x"}, "network-loss.percent", '"x" is not a number'),
    (
        "network-loss",
        {"device": "eth0", "percent": "5", "correlation": "-1"},
        "network-loss.correlation",
        '"-1" is not a percent in [0,100]',
    ),
    (
        "network-loss",
        {"device": "eth0", "percent": "5", "ip-address": "10.0.0.1,example.com"},
        "network-loss.ip-address",
        '"example.com" is not an IP address or CIDR network',
    ),
    (
        "network-loss",
        {"device": "eth0", "percent": "5", "ip-protocol": "sctp"},
        "network-loss.ip-protocol",
        '"sctp" is not one of tcp, udp, icmp, all',
    ),
    (
        "network-loss",
        {"device": "eth0", "percent": "5", "ip-protocol": "tcp", "source-port": "80:90:100"},
        "network-loss.source-port",
        "is not a port or a port range",
    ),
    (
        "network-loss",
        {"device": "eth0", "percent": "5", "ip-protocol": "udp", "egress-port": "70000"},
        "network-loss.egress-port",
        '"70000" is not a port in 0..65535',
    ),
    ("network-delay", {"device": "eth0"}, "network-delay.latency", "is required with action network-delay"),
    ("network-delay", {"device": "eth0", "latency": "-1s"}, "network-delay.latency", "is negative"),
    (
        "network-delay",
        {"device": "eth0", "latency": "1s", "jitter": "1 s"},
        "network-delay.jitter",
        '"1 s" is not a duration',
    ),
    (
        "network-delay",
        {"device": "eth0", "latency": "1s", "accept-tcp-flags": "SYN,ACK SYN,ACK", "ip-protocol": "udp"},
        "network-delay.ip-protocol",
        "must be tcp when accept-tcp-flags is set",
    ),
    ("network-partition", {"hostname": "h", "direction": "to"}, "network-partition.device", "is required"),
    (
        "network-partition",
        {"device": "eth0", "direction": "to"},
        "network-partition.ip-address",
        "ip-address or hostname is required",
    ),
    ("network-partition", {"device": "eth0", "hostname": "h"}, "network-partition.direction", "empty is not a"),
    ("network-dns", {"dns-domain-name": "example.com"}, "network-dns.dns-ip", "must be set together"),
    ("network-dns", {"dns-ip": "10.0.0.1"}, "network-dns.dns-domain-name", "must be set together"),
    ("network-dns", {"dns-server": "dns.example"}, "network-dns.dns-server", "is not an IP address"),
    (
        "network-bandwidth",
        {"rate": "1mbps", "limit": 1, "buffer": 1},
        "network-bandwidth.device",
        "is required with action network-bandwidth",
    ),
    (
        "network-flood",
        {"rate": "1mbps", "duration": "10", "port": "80"},
        "network-flood.ip-address",
        "is required with action network-flood",
    ),
    (
        "network-flood",
        {"rate": "1mbps", "duration": "10", "ip-address": "10.0.0.1", "port": "http"},
        "network-flood.port",
        '"http" is not a port number',
    ),
    (
        "network-flood",
        {"rate": "", "duration": "10", "ip-address": "10.0.0.1", "port": "80"},
        "network-flood.rate",
        "is required with action network-flood",
    ),
    ("network-down", {"device": "eth0"}, "network-down.duration", "is required with action network-down"),
    ("network-down", {"device": "eth0", "duration": "30"}, "network-down.duration", '"30" is not a duration'),
    ("process", {"signal": 9}, "process.process", "is required with action process"),
    ("process", {"process": "nginx"}, "process.signal", "is required with action process"),
    ("process", {"process": "nginx", "signal": 99}, "process.signal", "99 is not a signal number"),
    ("jvm-exception", {"class": "A", "method": "m", "exception": "E"}, "jvm-exception.pid", "is required"),
    ("jvm-exception", {"pid": 1, "method": "m", "exception": "E"}, "jvm-exception.class", "is required"),
    ("jvm-exception", {"pid": 1, "class": "A", "exception": "E"}, "jvm-exception.method", "is required"),
    ("jvm-exception", {"pid": 1, "class": "A", "method": "m"}, "jvm-exception.exception", "is required"),
    ("jvm-gc", {"pid": -3}, "jvm-gc.pid", "-3 is not a process ID"),
    ("jvm-latency", {"pid": 1, "class": "A", "method": "m"}, "jvm-latency.latency", "is required"),
    ("jvm-return", {"pid": 1, "class": "A", "method": "m"}, "jvm-return.value", "is required"),
    ("jvm-stress", {"pid": 1}, "jvm-stress.cpu-count", "cpu-count or mem-type is required"),
    ("jvm-stress", {"pid": 1, "cpu-count": 1, "mem-type": "heap"}, "jvm-stress.mem-type", "not both"),
    ("jvm-stress", {"pid": 1, "mem-type": "perm"}, "jvm-stress.mem-type", '"perm" is not one of stack, heap'),
    ("jvm-rule-data", {"pid": 1}, "jvm-rule-data.rule-data", "is required"),
    ("jvm-mysql", {"pid": 1, "latency": 5}, "jvm-mysql.mysqlConnectorVersion", "is required"),
    ("jvm-mysql", {"pid": 1, "mysqlConnectorVersion": "6", "latency": 5}, "jvm-mysql.mysqlConnectorVersion", '"6"'),
    ("jvm-mysql", {"pid": 1, "mysqlConnectorVersion": "5"}, "jvm-mysql.exception", "exception or latency"),
    ("clock", {"pid": 1}, "clock.time-offset", "is required with action clock"),
    ("clock", {"pid": 1, "time-offset": "5 minutes"}, "clock.time-offset", "is not a duration"),
    (
        "clock",
        {"pid": 1, "time-offset": "5m", "clock-ids-slice": "CLOCK_REALTIME,CLOCK_WALL"},
        "clock.clock-ids-slice",
        '"CLOCK_WALL" is not a clock',
    ),
    ("redis-expiration", {}, "redis-expiration.addr", "is required with action redis-expiration"),
    ("redis-expiration", {"addr": "r:6379", "option": "YY"}, "redis-expiration.option", '"YY" is not one of'),
    ("redis-penetration", {"addr": "r:6379"}, "redis-penetration.requestNum", "is required"),
    ("redis-cacheLimit", {"addr": "r:6379", "cacheSize": "1gb", "percent": "50"}, "redis-cacheLimit.percent", "cannot"),
    ("redis-restart", {"addr": "r:26379"}, "redis-restart.conf", "is required"),
    ("redis-stop", {"password": "p"}, "redis-stop.addr", "is required"),
    ("kafka-fill", {"host": "k", "port": 9092, "reloadCommand": "r"}, "kafka-fill.maxBytes", "is required"),
    ("kafka-fill", {"port": 9092, "maxBytes": 1, "reloadCommand": "r"}, "kafka-fill.host", "is required"),
    ("kafka-flood", {"host": "k", "threads": 1}, "kafka-flood.port", "is required"),
    ("kafka-flood", {"host": "k", "port": 9092}, "kafka-flood.threads", "is required"),
    ("kafka-io", {"topic": "t"}, "kafka-io.nonReadable", "nonReadable or nonWritable is required"),
    ("file-create", {}, "file-create.file-name", "file-name or dir-name is required"),
    ("file-modify", {"file-name": "/f"}, "file-modify.privilege", "is required"),
    ("file-delete", {}, "file-delete.file-name", "file-name or dir-name is required"),
    ("file-rename", {"source-file": "/a"}, "file-rename.dest-file", "is required"),
    ("file-append", {"file-name": "/f"}, "file-append.data", "is required"),
    ("file-replace", {"file-name": "/f", "origin-string": "a"}, "file-replace.dest-string", "is required"),
    ("user_defined", {"attackCmd": "x"}, "user_defined.recoverCmd", "is required"),
]


def _spec(action: str, settings: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"action": action, "mode": "one", "address": list(ADDRESS), **extra}
    if settings is not None:
        spec[action] = settings
    return spec


def _manifest(spec: dict[str, Any], kind: str = "PhysicalMachineChaos") -> str:
    return yaml.safe_dump(
        {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": kind, "metadata": {"name": "pm"}, "spec": spec}
    )


def _problems(spec: dict[str, Any], kind: str = "PhysicalMachineChaos") -> dict[str, str]:
    with pytest.raises(ManifestError) as caught:
        load_text(_manifest(spec, kind))
    problems: dict[str, str] = {}
    for problem in caught.value.problems:
        where = format_path(problem.path)
        problems[where] = f"{problems[where]} | {problem.message}" if where in problems else problem.message
    return problems


def _load(spec: dict[str, Any]) -> PhysicalMachineChaos:
    chaos = load_text(_manifest(spec)).objects[0]
    assert isinstance(chaos, PhysicalMachineChaos)
    return chaos


def test_every_action_has_a_settings_field_and_a_valid_example() -> None:
    assert sorted(VALID) == sorted(ACTIONS)
    spec_fields = {info.alias for info in PhysicalMachineChaosSpec.model_fields.values()}
    assert set(ACTIONS) <= spec_fields


@pytest.mark.parametrize("action", ACTIONS)
def test_valid_settings_of_each_action_load_and_round_trip(action: str) -> None:
    chaos = _load(_spec(action, VALID[action]))
    dumped = chaos.to_dict()
    assert dumped["spec"][action] == VALID[action]
    again = load_text(yaml.safe_dump(dumped)).objects[0]
    assert again.to_dict() == dumped


@pytest.mark.parametrize("action", ACTIONS)
def test_each_action_requires_its_settings(action: str) -> None:
    problems = _problems(_spec(action, None))
    assert problems == {f"spec.{action}": f"is required with action {action} (its settings)"}


@pytest.mark.parametrize(("action", "settings", "where", "message"), INVALID, ids=lambda v: str(v)[:40])
def test_invalid_settings_are_refused_at_their_field(
    action: str, settings: dict[str, Any], where: str, message: str
) -> None:
    problems = _problems(_spec(action, settings))
    assert f"spec.{where}" in problems, problems
    assert message in problems[f"spec.{where}"]


def test_only_the_chosen_actions_settings_are_checked() -> None:
    # Unused settings may be incomplete, as in Chaos Mesh.
    chaos = _load(_spec("stress-cpu", VALID["stress-cpu"], **{"stress-mem": {}, "process": {"signal": 0}}))
    assert chaos.spec.stress_mem is not None


def test_bandwidth_rate_is_checked_even_when_not_the_action() -> None:
    spec = _spec("stress-cpu", VALID["stress-cpu"], **{"network-bandwidth": {"rate": "", "limit": 1, "buffer": 1}})
    assert _problems(spec) == {"spec.network-bandwidth.rate": "must not be empty"}


def test_bandwidth_bounds_and_required_fields() -> None:
    problems = _problems(_spec("network-bandwidth", {"device": "eth0", "limit": 0}))
    assert problems["spec.network-bandwidth.limit"] == "0 should be greater than or equal to 1"
    assert problems["spec.network-bandwidth.rate"] == "is required"
    assert problems["spec.network-bandwidth.buffer"] == "is required"


def test_unsigned_fields_refuse_negative_numbers() -> None:
    problems = _problems(_spec("disk-fill", {"size": "1M"}, **{"kafka-fill": {"port": 70000}}))
    assert problems == {"spec.kafka-fill.port": "70000 should be less than or equal to 65535"}
    problems = _problems(_spec("disk-read-payload", {"size": "1M", "payload-process-num": 256}))
    assert problems == {"spec.disk-read-payload.payload-process-num": "256 should be less than or equal to 255"}


# --- targets -------------------------------------------------------------------------------


def test_selector_or_address_is_required() -> None:
    spec = _spec("stress-cpu", VALID["stress-cpu"])
    del spec["address"]
    assert _problems(spec) == {"spec.selector": "is required: select PhysicalMachine objects (or list addresses)"}
    spec["selector"] = {}
    assert "spec.selector" in _problems(spec)


def test_selector_and_address_are_exclusive() -> None:
    spec = _spec("stress-cpu", VALID["stress-cpu"], selector={"physicalMachines": {"default": ["pm-1"]}})
    assert _problems(spec) == {"spec.address": "cannot be used together with selector; give one of them"}


@pytest.mark.parametrize(
    "selector",
    [
        {"physicalMachines": {"default": ["pm-1"]}},
        {"namespaces": ["default"], "labelSelectors": {"arch": "amd64"}},
        {"expressionSelectors": [{"key": "arch", "operator": "In", "values": ["amd64"]}]},
    ],
)
def test_selector_alone_selects(selector: dict[str, Any]) -> None:
    spec = _spec("stress-cpu", VALID["stress-cpu"], selector=selector)
    del spec["address"]
    chaos = _load(spec)
    assert chaos.spec.selector is not None
    assert not chaos.spec.selector.is_empty()
    # The selector's namespaces are not defaulted: physical machines live wherever they were created.
    if "namespaces" not in selector:
        assert chaos.spec.selector.namespaces is None


def test_address_entries_must_be_urls() -> None:
    spec = _spec("stress-cpu", VALID["stress-cpu"], address=["10.0.0.5:31767", "", "ftp://h:1"])
    problems = _problems(spec)
    assert problems["spec.address[1]"] == "must not be empty"
    assert "is not a server URL" in problems["spec.address[2]"]


@pytest.mark.parametrize(
    ("mode", "value", "message"),
    [
        ("fixed", None, '"" is not an integer'),
        ("fixed", "0", '"0" must be greater than 0 with mode fixed'),
        ("fixed-percent", "101", '"101" must be in (0,100] with mode fixed-percent'),
        ("random-max-percent", "half", '"half" is not an integer'),
    ],
)
def test_mode_and_value(mode: str, value: str | None, message: str) -> None:
    spec = _spec("stress-cpu", VALID["stress-cpu"], mode=mode)
    if value is not None:
        spec["value"] = value
    problems = _problems(spec)
    assert message in problems["spec.value"]


def test_mode_is_required_and_an_enum() -> None:
    spec = _spec("stress-cpu", VALID["stress-cpu"])
    del spec["mode"]
    assert _problems(spec) == {"spec.mode": "is required"}
    spec["mode"] = "some"
    assert _problems(spec)["spec.mode"].startswith('"some" is not one of')


# --- defaults --------------------------------------------------------------------------------


def test_defaults_add_http_scheme_and_an_experiment_uid() -> None:
    chaos = _load(_spec("stress-cpu", VALID["stress-cpu"], address=["10.0.0.5:31767", "https://h:443"]))
    assert chaos.spec.address == ["http://10.0.0.5:31767", "https://h:443"]
    assert chaos.spec.uid
    uid = chaos.spec.uid
    assert validate_object(chaos) == []
    assert chaos.spec.uid == uid, "defaulting twice keeps the uid"


def test_given_uid_is_kept() -> None:
    chaos = _load(_spec("stress-cpu", VALID["stress-cpu"], uid="exp-1"))
    assert chaos.spec.uid == "exp-1"


def test_a_template_spec_gets_no_uid() -> None:
    # Inside a Schedule or Workflow the spec is a template: each spawned experiment gets its own uid.
    spec = PhysicalMachineChaosSpec.model_validate(_spec("stress-cpu", VALID["stress-cpu"]))
    spec.apply_defaults(RuleContext(root=spec))
    assert spec.uid is None
    assert spec.address == ["http://10.0.0.5:31767"]


def test_parse_size_follows_chaosd_units() -> None:
    assert parse_size("100") == 100 * 1024 * 1024
    assert parse_size("0") == 0
    assert parse_size("5c") == 5
    assert parse_size("1K") == 1024
    assert parse_size("1KiB") == 1024
    assert parse_size("1kB") == parse_size("1KB") == 1000
    assert parse_size("123MB") == 123_000_000
    assert parse_size("1.5G") == 1536 * 1024 * 1024
    assert parse_size("1M512K") == 1024 * 1024 + 512 * 1024
    for bad in ("100HB", "1kiB", "-5M", "1.", "MB", "", "1MiB1MB"):
        with pytest.raises(ValueError):
            parse_size(bad)


# --- SDK -------------------------------------------------------------------------------------


def test_sdk_build_with_python_names_validates_and_dumps_wire_names() -> None:
    chaos = PhysicalMachineChaos(
        metadata=ObjectMeta(name="delay", namespace="chaos"),
        spec=PhysicalMachineChaosSpec(
            action="network-delay",
            mode="all",
            selector=PhysicalMachineSelectorSpec(physical_machines={"default": ["pm-1", "pm-2"]}),
            network_delay=NetworkDelaySpec(
                device="eth0", latency="200ms", ip_address="10.0.0.0/8", ip_protocol="tcp", egress_port="80"
            ),
            duration="10m",
            uid="fixed",
        ),
    )
    assert validate_object(chaos) == []
    spec = chaos.to_dict()["spec"]
    assert spec == {
        "action": "network-delay",
        "mode": "all",
        "selector": {"physicalMachines": {"default": ["pm-1", "pm-2"]}},
        "uid": "fixed",
        "network-delay": {
            "device": "eth0",
            "latency": "200ms",
            "ip-address": "10.0.0.0/8",
            "ip-protocol": "tcp",
            "egress-port": "80",
        },
        "duration": "10m",
    }
    again = load_text(yaml.safe_dump(chaos.to_dict())).objects[0]
    assert again.to_dict() == chaos.to_dict()


def test_sdk_validation_reports_paths() -> None:
    chaos = PhysicalMachineChaos(
        metadata=ObjectMeta(name="cpu", namespace="chaos"),
        spec=PhysicalMachineChaosSpec(action="stress-cpu", mode="one", stress_cpu=StressCPUSpec(load=10)),
    )
    issues = {issue.where(): issue.message for issue in validate_object(chaos)}
    assert issues == {
        "spec.selector": "is required: select PhysicalMachine objects (or list addresses)",
        "spec.stress-cpu.workers": "is required with action stress-cpu",
    }


def test_unknown_setting_suggests_the_kebab_name() -> None:
    problems = _problems(_spec("network-delay", {"device": "eth0", "latency": "1s", "ipaddress": "10.0.0.1"}))
    assert problems["spec.network-delay.ipaddress"] == 'unknown field; did you mean "ip-address"?'


def test_crd_uses_chaosd_wire_names() -> None:
    schema = crd_for(PhysicalMachineChaos)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    assert sorted(spec["properties"]["action"]["enum"]) == sorted(ACTIONS)
    assert "ip-address" in spec["properties"]["network-delay"]["properties"]
    assert spec["properties"]["http-delay"]["required"] == ["proxy_ports", "target", "delay"]
    assert spec["properties"]["network-bandwidth"]["properties"]["limit"]["minimum"] == 1


# --- PhysicalMachine -------------------------------------------------------------------------


def _machine(address: str) -> PhysicalMachine:
    return PhysicalMachine(
        metadata=ObjectMeta(name="pm", namespace="default"), spec=PhysicalMachineSpec(address=address)
    )


@pytest.mark.parametrize(
    ("address", "defaulted"),
    [
        ("10.0.0.5:31767", "http://10.0.0.5:31767"),
        ("http://10.0.0.5:31767", "http://10.0.0.5:31767"),
        ("https://pm.example:31768", "https://pm.example:31768"),
        ("[fd00::5]:31767", "http://[fd00::5]:31767"),
    ],
)
def test_physical_machine_address_is_defaulted_to_http(address: str, defaulted: str) -> None:
    machine = _machine(address)
    assert validate_object(machine) == []
    assert machine.spec.address == defaulted


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("", "must not be empty"),
        ("ftp://10.0.0.5:21", "is not a server URL"),
        ("10.0.0.5:0", 'has port "0"; a port is a number in 1..65535'),
        ("10.0.0.5:99999", 'has port "99999"'),
        ("10.0.0.5:http", 'has port "http"'),
        ("http://user@host:1", "is not a URL"),
        ("http://", "is not a URL"),
    ],
)
def test_physical_machine_address_must_be_a_server_url(address: str, message: str) -> None:
    issues = validate_object(_machine(address))
    assert [issue.where() for issue in issues] == ["spec.address"]
    assert message in issues[0].message


def test_physical_machine_kind_facts() -> None:
    crd = crd_for(PhysicalMachine)
    assert crd["spec"]["scope"] == "Namespaced"
    assert "subresources" not in crd["spec"]["versions"][0]
    assert PhysicalMachine.immutable_spec
    assert PhysicalMachineChaos.immutable_spec
