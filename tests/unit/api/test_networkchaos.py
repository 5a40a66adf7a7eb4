"""NetworkChaos and PodNetworkChaos: defaults, webhook rules, SDK use and the rate/percent parsers."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.api.base import ObjectMeta, format_path
from faultmesh.api.common import PodSelector, PodSelectorSpec
from faultmesh.api.crd import crd_for
from faultmesh.api.loader import ManifestError, load_text, parse_object, validate_object
from faultmesh.api.networkchaos import (
    RATE_UNITS,
    BandwidthSpec,
    DelaySpec,
    ExternalTarget,
    LossSpec,
    NetworkChaos,
    NetworkChaosSpec,
    parse_netem_percent,
    rate_bits_per_second,
    rate_bytes_per_second,
    split_external_target,
)
from faultmesh.api.podnetworkchaos import PodNetworkChaos

BASE_SPEC: dict[str, Any] = {"mode": "one", "selector": {"labelSelectors": {"app": "web"}}}


def _network(spec: dict[str, Any], namespace: str | None = "shop") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "net"}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "NetworkChaos",
        "metadata": metadata,
        "spec": {**BASE_SPEC, **spec},
    }


def _load(spec: dict[str, Any]) -> NetworkChaos:
    obj = parse_object(_network(spec))
    assert isinstance(obj, NetworkChaos)
    return obj


def _problems(data: dict[str, Any]) -> dict[str, str]:
    """Field path → message of every problem the loader reports for ``data``."""
    with pytest.raises(ManifestError) as caught:
        parse_object(data)
    return {format_path(problem.path): problem.message for problem in caught.value.problems}


def _network_problems(spec: dict[str, Any]) -> dict[str, str]:
    return _problems(_network(spec))


DELAY = {"action": "delay", "delay": {"latency": "90ms"}}


# --- defaults -----------------------------------------------------------------------------------


def test_delay_defaults_jitter_correlation_and_direction() -> None:
    chaos = _load(DELAY)
    assert chaos.spec.delay is not None
    assert chaos.spec.delay.jitter == "0ms"
    assert chaos.spec.delay.correlation == "0"
    assert chaos.spec.direction == "to"
    assert chaos.spec.to_dict()["delay"] == {"latency": "90ms", "jitter": "0ms", "correlation": "0"}


def test_empty_strings_are_defaulted_as_chaos_mesh_does() -> None:
    chaos = _load(
        {
            "action": "delay",
            "direction": "",
            "delay": {
                "latency": "10ms",
                "jitter": "",
                "correlation": "",
                "reorder": {"reorder": "5", "gap": 3},
            },
        }
    )
    delay = chaos.spec.delay
    assert delay is not None and delay.reorder is not None
    assert (delay.jitter, delay.correlation, delay.reorder.correlation) == ("0ms", "0", "0")
    assert chaos.spec.direction == "to"


@pytest.mark.parametrize("kind", ["loss", "duplicate", "corrupt"])
def test_percent_specs_default_their_correlation(kind: str) -> None:
    chaos = _load({"action": kind, kind: {kind: "10"}})
    assert getattr(chaos.spec, kind).correlation == "0"


def test_selector_and_target_namespaces_default_to_the_object_namespace() -> None:
    chaos = _load({**DELAY, "target": {"mode": "all", "selector": {"labelSelectors": {"app": "db"}}}})
    assert chaos.spec.selector.namespaces == ["shop"]
    assert chaos.spec.target is not None
    assert chaos.spec.target.selector.namespaces == ["shop"]


def test_explicit_target_namespaces_are_kept() -> None:
    chaos = _load({**DELAY, "target": {"mode": "all", "selector": {"namespaces": ["db"]}}})
    assert chaos.spec.target is not None
    assert chaos.spec.target.selector.namespaces == ["db"]


def test_device_loses_its_peer_suffix() -> None:
    assert _load({**DELAY, "device": "eth0@if12"}).spec.device == "eth0"
    assert _load({**DELAY, "device": "eth1"}).spec.device == "eth1"


def test_target_device_is_kept_verbatim() -> None:
    chaos = _load({**DELAY, "targetDevice": "eth0@if12", "target": {"mode": "one", "selector": {}}})
    assert chaos.spec.target_device == "eth0@if12"


# --- rules: direction, target, external targets -------------------------------------------------


@pytest.mark.parametrize("direction", ["from", "both"])
def test_from_and_both_need_a_target(direction: str) -> None:
    found = _network_problems({**DELAY, "direction": direction})
    assert "needs a target" in found["spec.direction"]


@pytest.mark.parametrize("direction", ["to", "from", "both"])
def test_every_direction_works_with_a_target(direction: str) -> None:
    chaos = _load({**DELAY, "direction": direction, "target": {"mode": "one", "selector": {}}})
    assert chaos.spec.direction == direction


@pytest.mark.parametrize("direction", ["from", "both"])
def test_external_targets_only_with_direction_to(direction: str) -> None:
    spec = {
        **DELAY,
        "direction": direction,
        "externalTargets": ["8.8.8.8"],
        "target": {"mode": "one", "selector": {}},
    }
    found = _network_problems(spec)
    assert "cannot be used with externalTargets" in found["spec.direction"]


def test_external_targets_with_direction_to_are_fine() -> None:
    chaos = _load({**DELAY, "externalTargets": ["8.8.8.8", "example.com:443"]})
    assert chaos.spec.external_targets == ["8.8.8.8", "example.com:443"]


@pytest.mark.parametrize(
    "spec",
    [
        {"direction": "from"},
        {"direction": "both", "externalTargets": ["10.0.0.0/8"]},
        {"direction": "both", "target": {"mode": "one", "selector": {}}, "externalTargets": ["1.1.1.1"]},
    ],
)
def test_partition_accepts_any_direction(spec: dict[str, Any]) -> None:
    assert _load({"action": "partition", **spec}).spec.action == "partition"


def test_target_mode_value_rules_apply() -> None:
    found = _network_problems({**DELAY, "target": {"mode": "fixed", "value": "0", "selector": {}}})
    assert found == {"spec.target.value": '"0" must be greater than 0 with mode fixed'}
    found = _network_problems(
        {**DELAY, "target": {"mode": "random-max-percent", "value": "101", "selector": {}}}
    )
    assert "must be in (0,100]" in found["spec.target.value"]


def test_own_mode_value_rules_apply() -> None:
    assert "spec.value" in _network_problems({**DELAY, "mode": "fixed-percent", "value": "x"})


def test_target_needs_mode_and_selector() -> None:
    found = _network_problems({**DELAY, "target": {"selector": {}}})
    assert found == {"spec.target.mode": "is required"}


@pytest.mark.parametrize(
    "entry",
    [
        "8.8.8.8",
        "www.google.com",
        "8.8.0.0/16",
        "1.1.1.1:80",
        "example.com:443",
        "10.0.0.0/8:22",
        "[::1]:80",
        "2001:db8::/32",
        "fe80::1",
        "svc.cluster.local.",
    ],
)
def test_valid_external_targets(entry: str) -> None:
    assert _load({**DELAY, "externalTargets": [entry]}).spec.external_targets == [entry]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("999.1.1.1", "is not an IP address, a CIDR or a host name"),
        ("exa mple.com", "is not an IP address, a CIDR or a host name"),
        ("10.0.0.0/33", "is not an IP address, a CIDR or a host name"),
        ("example.com:99999", 'the port "99999" is not a number in 0..65535'),
        ("example.com:", 'the port "" is not a number'),
        ("[::1]", "is not an IP address"),
        ("", "is not an IP address"),
    ],
)
def test_invalid_external_targets(entry: str, message: str) -> None:
    found = _network_problems({**DELAY, "externalTargets": ["8.8.8.8", entry]})
    assert message in found["spec.externalTargets[1]"]


def test_split_external_target() -> None:
    assert split_external_target("10.0.0.0/8:22") == ExternalTarget("10.0.0.0/8", 22)
    assert split_external_target("example.com") == ExternalTarget("example.com", 0)
    assert split_external_target("[2001:db8::1]:443") == ExternalTarget("2001:db8::1", 443)
    assert split_external_target("2001:db8::1") == ExternalTarget("2001:db8::1", 0)


# --- rules: enums and sub-specs -----------------------------------------------------------------


def test_action_and_direction_enums() -> None:
    assert "is not one of" in _network_problems({"action": "latency"})["spec.action"]
    assert "is not one of" in _network_problems({**DELAY, "direction": "in"})["spec.direction"]


@pytest.mark.parametrize("action", ["delay", "loss", "duplicate", "corrupt"])
def test_netem_actions_need_some_netem_sub_spec(action: str) -> None:
    assert _network_problems({"action": action}) == {f"spec.{action}": f"is required with action {action}"}


def test_netem_action_needs_at_least_one_part() -> None:
    found = _network_problems({"action": "netem"})
    assert "needs at least one of delay, loss, duplicate, corrupt, rate" in found["spec.action"]


def test_netem_parts_are_merged_whatever_the_named_action() -> None:
    # Chaos Mesh applies every netem sub-spec that is set; "delay" with only loss still injects.
    chaos = _load({"action": "delay", "loss": {"loss": "5"}})
    assert chaos.spec.netem_parts() == ["loss"]
    chaos = _load({"action": "netem", "delay": {"latency": "1ms"}, "rate": {"rate": "1mbit"}})
    assert chaos.spec.netem_parts() == ["delay", "rate"]


def test_bandwidth_action_needs_bandwidth() -> None:
    assert _network_problems({"action": "bandwidth"}) == {
        "spec.bandwidth": "is required with action bandwidth"
    }


def test_partition_needs_no_sub_spec() -> None:
    assert _load({"action": "partition"}).spec.netem_parts() == []


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        ("netem", "netem"),
        ("delay", "netem"),
        ("corrupt", "netem"),
        ("bandwidth", "bandwidth"),
        ("partition", None),
    ],
)
def test_traffic_control_type(action: str, kind: str | None) -> None:
    spec = {
        "action": action,
        "delay": {"latency": "1ms"},
        "corrupt": {"corrupt": "1"},
        "bandwidth": {"rate": "1mbit", "limit": 10, "buffer": 10},
    }
    assert _load(spec).spec.traffic_control_type() == kind


@pytest.mark.parametrize("latency", ["90ms", "1.5s", "0ns", "2h", "10us"])
def test_valid_latencies(latency: str) -> None:
    assert _load({"action": "delay", "delay": {"latency": latency, "jitter": latency}}).spec.delay is not None


@pytest.mark.parametrize("latency", ["1S", "1h30m", "-1s", "", "90", "1.s", "5µs", "90ms\n"])
def test_invalid_latencies(latency: str) -> None:
    found = _network_problems({"action": "delay", "delay": {"latency": latency}})
    assert "is not a duration of one number and one unit" in found["spec.delay.latency"]


def test_invalid_jitter() -> None:
    found = _network_problems({"action": "delay", "delay": {"latency": "1ms", "jitter": "1h30m"}})
    assert '"1h30m" is not a duration' in found["spec.delay.jitter"]


@pytest.mark.parametrize(
    ("path", "spec"),
    [
        ("spec.delay.correlation", {"action": "delay", "delay": {"latency": "1ms", "correlation": "num"}}),
        (
            "spec.delay.reorder.reorder",
            {"action": "delay", "delay": {"latency": "1ms", "reorder": {"reorder": "x", "gap": 1}}},
        ),
        (
            "spec.delay.reorder.correlation",
            {
                "action": "delay",
                "delay": {"latency": "1ms", "reorder": {"reorder": "1", "correlation": "1%", "gap": 1}},
            },
        ),
        ("spec.loss.loss", {"action": "loss", "loss": {"loss": "num"}}),
        ("spec.loss.loss", {"action": "loss", "loss": {"loss": ""}}),
        ("spec.loss.correlation", {"action": "loss", "loss": {"loss": "1", "correlation": "1_0"}}),
        ("spec.duplicate.duplicate", {"action": "duplicate", "duplicate": {"duplicate": " 5"}}),
        ("spec.corrupt.corrupt", {"action": "corrupt", "corrupt": {"corrupt": "nan"}}),
    ],
)
def test_percent_fields_must_be_numbers(path: str, spec: dict[str, Any]) -> None:
    assert "is not a number" in _network_problems(spec)[path]


@pytest.mark.parametrize("value", ["150", "-1", "100.5", "1e3"])
def test_percent_fields_must_be_in_range(value: str) -> None:
    found = _network_problems({"action": "loss", "loss": {"loss": value, "correlation": value}})
    assert found["spec.loss.loss"] == f'"{value}" is not a percent in 0..100'
    assert found["spec.loss.correlation"] == f'"{value}" is not a percent in 0..100'


@pytest.mark.parametrize("value", ["0", "100", "25", "0.5", ".5", "1e1", "+3", "12."])
def test_percent_fields_accept_go_floats(value: str) -> None:
    assert _load({"action": "loss", "loss": {"loss": value, "correlation": value}}).spec.loss is not None


def test_percent_values_are_required() -> None:
    assert _network_problems({"action": "loss", "loss": {}}) == {"spec.loss.loss": "is required"}


def test_reorder_needs_a_gap_that_fits_uint32() -> None:
    spec = {"action": "delay", "delay": {"latency": "1ms", "reorder": {"reorder": "5"}}}
    assert _network_problems(spec) == {"spec.delay.reorder.gap": "is required"}
    spec["delay"]["reorder"]["gap"] = -1
    assert "is not in 0..4294967295" in _network_problems(spec)["spec.delay.reorder.gap"]


BANDWIDTH = {"rate": "100kbps", "limit": 100, "buffer": 10000}


@pytest.mark.parametrize(
    "rate", ["100kbps", "1 MBPS", "  10   mbPs  ", "10kbit", "5gbit", "1tbps", "8bit", "3bps"]
)
def test_valid_bandwidth_rates(rate: str) -> None:
    chaos = _load({"action": "bandwidth", "bandwidth": {**BANDWIDTH, "rate": rate}})
    assert chaos.spec.bandwidth is not None and chaos.spec.bandwidth.rate == rate


@pytest.mark.parametrize(
    "rate", ["10", "10 cpbs", "1.5mbit", "-1mbit", "mbit", "10kibit", "1e3bit", "١٠mbit"]
)
def test_invalid_bandwidth_rates(rate: str) -> None:
    found = _network_problems({"action": "bandwidth", "bandwidth": {**BANDWIDTH, "rate": rate}})
    assert "is not a rate" in found["spec.bandwidth.rate"]


def test_netem_rate_uses_the_same_grammar() -> None:
    found = _network_problems({"action": "netem", "rate": {"rate": "fast"}})
    assert "is not a rate" in found["spec.rate.rate"]


def test_bandwidth_rate_zero_is_refused() -> None:
    found = _network_problems({"action": "bandwidth", "bandwidth": {**BANDWIDTH, "rate": "0mbit"}})
    assert found == {"spec.bandwidth.rate": '"0mbit" must be greater than 0'}


@pytest.mark.parametrize("field", ["limit", "buffer"])
def test_bandwidth_limit_and_buffer_at_least_one(field: str) -> None:
    found = _network_problems({"action": "bandwidth", "bandwidth": {**BANDWIDTH, field: 0}})
    assert "greater than or equal to 1" in found[f"spec.bandwidth.{field}"]


def test_bandwidth_integers_fit_their_go_types() -> None:
    spec = {**BANDWIDTH, "buffer": 2**32, "minburst": 2**32, "peakrate": 2**64}
    found = _network_problems({"action": "bandwidth", "bandwidth": spec})
    assert found["spec.bandwidth.buffer"] == "4294967296 is too large; at most 4294967295"
    assert "spec.bandwidth.minburst" in found
    assert "spec.bandwidth.peakrate" in found
    assert (
        "greater than or equal to 0"
        in _network_problems({"action": "bandwidth", "bandwidth": {**BANDWIDTH, "peakrate": -1}})[
            "spec.bandwidth.peakrate"
        ]
    )


def test_bandwidth_requires_rate_limit_buffer() -> None:
    found = _network_problems({"action": "bandwidth", "bandwidth": {}})
    assert found == {f"spec.bandwidth.{name}": "is required" for name in ("rate", "limit", "buffer")}


def test_duration_is_a_go_duration() -> None:
    assert '"10x" is not a duration' in _network_problems({**DELAY, "duration": "10x"})["spec.duration"]


def test_unknown_field_suggests_the_right_one() -> None:
    found = _network_problems({**DELAY, "externalTarget": ["8.8.8.8"]})
    assert 'did you mean "externalTargets"' in found["spec.externalTarget"]


# --- SDK ----------------------------------------------------------------------------------------


def _sdk_chaos(**spec: Any) -> NetworkChaos:
    return NetworkChaos(
        metadata=ObjectMeta(name="slow-db", namespace="shop"),
        spec=NetworkChaosSpec(
            action="delay",
            mode="all",
            selector=PodSelectorSpec(label_selectors={"app": "web"}),
            delay=DelaySpec(latency="50ms"),
            duration="30s",
            **spec,
        ),
    )


def test_sdk_build_validate_dump_reload() -> None:
    chaos = _sdk_chaos(
        direction="both",
        target=PodSelector(mode="one", selector=PodSelectorSpec(label_selectors={"app": "db"})),
        loss=LossSpec(loss="5"),
    )
    assert validate_object(chaos) == []
    dumped = chaos.to_dict()
    assert dumped["kind"] == "NetworkChaos"
    assert dumped["spec"]["delay"] == {"latency": "50ms", "jitter": "0ms", "correlation": "0"}
    assert dumped["spec"]["target"]["selector"]["namespaces"] == ["shop"]
    assert dumped["spec"]["selector"] == {"labelSelectors": {"app": "web"}, "namespaces": ["shop"]}
    again = load_text(yaml.safe_dump(dumped)).objects[0]
    assert isinstance(again, NetworkChaos)
    assert again.to_dict() == dumped


def test_sdk_validation_reports_rule_paths() -> None:
    chaos = _sdk_chaos(direction="from", external_targets=["8.8.8.8"])
    issues = [(issue.where(), issue.message) for issue in validate_object(chaos)]
    assert [where for where, _ in issues] == ["spec.direction", "spec.direction"]
    assert "cannot be used with externalTargets" in issues[0][1]
    assert "needs a target" in issues[1][1]


def test_sdk_grammar_errors_raise_at_construction() -> None:
    with pytest.raises(ValueError, match="is not a rate"):
        BandwidthSpec(rate="fast", limit=1, buffer=1)
    with pytest.raises(ValueError, match=r"is not a percent in 0\.\.100"):
        LossSpec(loss="101")


# --- parsers ------------------------------------------------------------------------------------

_BITS_PER_UNIT = {
    "bit": 1,
    "kbit": 10**3,
    "mbit": 10**6,
    "gbit": 10**9,
    "tbit": 10**12,
    "bps": 8,
    "kbps": 8 * 10**3,
    "mbps": 8 * 10**6,
    "gbps": 8 * 10**9,
    "tbps": 8 * 10**12,
}


def test_rate_units_table() -> None:
    assert set(RATE_UNITS) == set(_BITS_PER_UNIT)
    assert rate_bits_per_second("100kbps") == 800_000
    assert rate_bytes_per_second("100kbps") == 100_000
    assert rate_bits_per_second("1mbit") == 1_000_000
    assert rate_bytes_per_second("10bit") == 1


def _random_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(char.upper() if flip else char for char, flip in zip(text, flips, strict=True))


@st.composite
def _rates(draw: st.DrawFn) -> tuple[str, int, str]:
    number = draw(st.integers(min_value=0, max_value=2**64 - 1))
    unit = draw(st.sampled_from(RATE_UNITS))
    spaces = [draw(st.sampled_from(["", " ", "  ", "\t"])) for _ in range(3)]
    text = f"{spaces[0]}{number}{spaces[1]}{_random_case(draw, unit)}{spaces[2]}"
    return text, number, unit


@given(_rates())
def test_rate_parser_reads_number_and_unit(case: tuple[str, int, str]) -> None:
    text, number, unit = case
    assert rate_bits_per_second(text) == number * _BITS_PER_UNIT[unit]
    assert rate_bytes_per_second(text) == number * _BITS_PER_UNIT[unit] // 8
    # The model accepts exactly what the parser accepts.
    assert BandwidthSpec(rate=text, limit=1, buffer=1).rate == text


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(RATE_UNITS), st.sampled_from(RATE_UNITS))
def test_rate_parser_orders_units(number: int, small: str, large: str) -> None:
    if _BITS_PER_UNIT[small] <= _BITS_PER_UNIT[large]:
        assert rate_bits_per_second(f"{number}{small}") <= rate_bits_per_second(f"{number}{large}")


def _rate_oracle(text: str) -> int | None:
    """A plain re-statement of the webhook's rule: whole ASCII number, spaces, one unit, any case."""
    stripped = text.strip(" \t\n\v\f\r").lower()
    for unit in sorted(_BITS_PER_UNIT, key=len, reverse=True):
        if stripped.endswith(unit):
            number = stripped[: -len(unit)].strip(" \t\n\v\f\r")
            if number.isascii() and number.isdigit():
                return int(number) * _BITS_PER_UNIT[unit]
            return None
    return None


@given(st.text(alphabet=st.sampled_from("0123456789 \t.-+eEkKmMgGtTbBiIpPsS"), max_size=12))
def test_rate_parser_agrees_with_the_webhook_rule(text: str) -> None:
    expected = _rate_oracle(text)
    if expected is None:
        with pytest.raises(ValueError, match="is not a rate"):
            rate_bits_per_second(text)
    else:
        assert rate_bits_per_second(text) == expected


@given(st.text(max_size=12))
def test_rate_parser_only_raises_its_own_error(text: str) -> None:
    try:
        rate_bits_per_second(text)
    except ValueError as error:
        assert "is not a rate" in str(error)


@given(st.integers(min_value=2**64, max_value=2**80), st.sampled_from(RATE_UNITS))
def test_rate_parser_refuses_numbers_beyond_uint64(number: int, unit: str) -> None:
    with pytest.raises(ValueError, match="is not a rate"):
        rate_bits_per_second(f"{number}{unit}")


@given(st.floats(min_value=0, max_value=100, allow_nan=False))
def test_percent_parser_round_trips_floats(value: float) -> None:
    assert parse_netem_percent(repr(value)) == value
    assert LossSpec(loss=repr(value)).loss == repr(value)


@given(
    st.one_of(
        st.floats(max_value=-1e-9, allow_infinity=False),
        st.floats(min_value=100.0000001, allow_infinity=False),
    )
)
def test_percent_parser_refuses_out_of_range(value: float) -> None:
    with pytest.raises(ValueError, match=r"is not a percent in 0\.\.100"):
        parse_netem_percent(repr(value))


@pytest.mark.parametrize("text", ["", "25%", " 5", "1_0", "nan", "inf", "0x10", "five"])
def test_percent_parser_refuses_non_numbers(text: str) -> None:
    with pytest.raises(ValueError, match="is not a number"):
        parse_netem_percent(text)


# --- CRDs ---------------------------------------------------------------------------------------


def test_crd_subresources_follow_chaos_mesh() -> None:
    network = crd_for(NetworkChaos)["spec"]["versions"][0]
    assert network["subresources"] == {}
    assert [column["name"] for column in network["additionalPrinterColumns"]] == ["action", "duration"]
    pod_network = crd_for(PodNetworkChaos)["spec"]["versions"][0]
    assert pod_network["subresources"] == {"status": {}}
    assert "additionalPrinterColumns" not in pod_network


def test_crd_carries_the_latency_pattern() -> None:
    schema = crd_for(NetworkChaos)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    delay = schema["properties"]["spec"]["properties"]["delay"]["properties"]
    assert delay["latency"]["pattern"] == r"^[0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h)$"
    assert delay["jitter"]["pattern"] == delay["latency"]["pattern"]


# --- PodNetworkChaos ----------------------------------------------------------------------------


def _pod_network(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "PodNetworkChaos",
        "metadata": {"name": "web-0", "namespace": "shop"},
        "spec": spec,
    }


POD_NETWORK_SPEC: dict[str, Any] = {
    "ipsets": [
        {"name": "net_tgt", "ipsetType": "hash:net", "cidrs": ["10.1.2.3/32"], "source": "shop/net"},
        {
            "name": "netport_tgt",
            "ipsetType": "hash:net,port",
            "cidrAndPorts": [{"cidr": "10.0.0.0/8", "port": 22}],
            "source": "shop/net",
        },
        {
            "name": "set_tgt",
            "ipsetType": "list:set",
            "setNames": ["net_tgt", "netport_tgt"],
            "source": "shop/net",
        },
    ],
    "iptables": [{"name": "DROP_OUT", "ipsets": ["set_tgt"], "direction": "output", "source": "shop/net"}],
    "tcs": [
        {
            "type": "netem",
            "delay": {"latency": "90ms"},
            "ipset": "set_tgt",
            "source": "shop/net",
            "device": "eth0",
        },
        {
            "type": "bandwidth",
            "bandwidth": {"rate": "1mbit", "limit": 10, "buffer": 10},
            "source": "shop/other",
        },
    ],
}


def test_pod_network_chaos_loads_defaults_and_round_trips() -> None:
    obj = parse_object(_pod_network(POD_NETWORK_SPEC))
    assert isinstance(obj, PodNetworkChaos)
    tcs = obj.spec.traffic_controls
    assert tcs is not None and tcs[0].delay is not None
    assert tcs[0].delay.jitter == "0ms"
    dumped = obj.to_dict()
    assert dumped["spec"]["ipsets"][1]["cidrAndPorts"] == [{"cidr": "10.0.0.0/8", "port": 22}]
    assert parse_object(dumped).to_dict() == dumped


def test_pod_network_chaos_status() -> None:
    data = {**_pod_network({}), "status": {"failedMessage": "no such device", "observedGeneration": 3}}
    obj = parse_object(data)
    assert isinstance(obj, PodNetworkChaos)
    assert obj.status is not None and obj.status.observed_generation == 3


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (
            {"ipsets": [{"name": "s", "ipsetType": "hash:ip", "source": "a/b"}]},
            "spec.ipsets[0].ipsetType",
            "is not an ipset type",
        ),
        (
            {"ipsets": [{"name": "s", "ipsetType": "hash:net", "setNames": ["x"], "source": "a/b"}]},
            "spec.ipsets[0].setNames",
            "holds members of a list:set set",
        ),
        (
            {"ipsets": [{"name": "s", "ipsetType": "hash:net", "cidrs": ["10.0.0.0/99"], "source": "a/b"}]},
            "spec.ipsets[0].cidrs[0]",
            "is not a CIDR",
        ),
        (
            {
                "ipsets": [
                    {
                        "name": "s",
                        "ipsetType": "hash:net,port",
                        "cidrAndPorts": [{"cidr": "x", "port": 1}],
                        "source": "a/b",
                    }
                ]
            },
            "spec.ipsets[0].cidrAndPorts[0].cidr",
            "is not a CIDR",
        ),
        (
            {
                "ipsets": [
                    {
                        "name": "s",
                        "ipsetType": "hash:net,port",
                        "cidrAndPorts": [{"cidr": "10.0.0.0/8", "port": 70000}],
                        "source": "a/b",
                    }
                ]
            },
            "spec.ipsets[0].cidrAndPorts[0].port",
            "less than or equal to 65535",
        ),
        (
            {"iptables": [{"name": "c", "direction": "forward", "source": "a/b"}]},
            "spec.iptables[0].direction",
            "is not a chain direction",
        ),
        ({"tcs": [{"type": "htb", "source": "a/b"}]}, "spec.tcs[0].type", "is not a tc type"),
        ({"tcs": [{"type": "netem", "source": "a/b"}]}, "spec.tcs[0].type", "needs at least one of"),
        (
            {"tcs": [{"type": "bandwidth", "source": "a/b"}]},
            "spec.tcs[0].bandwidth",
            "is required with type bandwidth",
        ),
        (
            {"tcs": [{"type": "netem", "loss": {"loss": "x"}, "source": "a/b"}]},
            "spec.tcs[0].loss.loss",
            "is not a number",
        ),
        ({"tcs": [{"type": "netem", "loss": {"loss": "1"}}]}, "spec.tcs[0].source", "is required"),
    ],
)
def test_pod_network_chaos_rules(change: dict[str, Any], path: str, message: str) -> None:
    found = _problems(_pod_network(change))
    assert message in found[path], found
