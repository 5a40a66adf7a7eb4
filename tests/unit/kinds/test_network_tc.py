"""netem and tbf parameters: read from a spec, merged with Chaos Mesh's rule, written as tc arguments."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faultmesh.api.networkchaos import BandwidthSpec, TcParameter
from faultmesh.kinds.network_tc import NetemParams, TbfParams, duration_ns, tc_percent, tc_time


def _tc(**parts: Any) -> TcParameter:
    return TcParameter.model_validate(parts)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("90ms", 90_000_000),
        ("1.5s", 1_500_000_000),
        ("2m", 120_000_000_000),
        ("1h", 3_600_000_000_000),
        ("250us", 250_000),
        ("7ns", 7),
        ("0ms", 0),
        ("0.0005ms", 500),
    ],
)
def test_durations_read_exactly(text: str, ns: int) -> None:
    assert duration_ns(text) == ns


def test_a_duration_with_two_units_is_refused() -> None:
    with pytest.raises(ValueError, match='"1m30s" is not a duration'):
        duration_ns("1m30s")


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (90_000_000, "90000us"),
        (500, "0.5us"),
        (1_234, "1.234us"),
        (1_200, "1.2us"),
        (0, "0us"),
        (120_000_000_000, "120000000us"),
    ],
)
def test_tc_time_is_in_microseconds(ns: int, text: str) -> None:
    assert tc_time(ns) == text


@given(st.integers(min_value=0, max_value=10**15))
def test_tc_time_reads_back_to_the_same_nanoseconds(ns: int) -> None:
    assert duration_ns(tc_time(ns)) == ns


@pytest.mark.parametrize(("value", "text"), [(25.0, "25%"), (0.5, "0.5%"), (100.0, "100%"), (33.3, "33.3%")])
def test_tc_percent(value: float, text: str) -> None:
    assert tc_percent(value) == text


def test_a_full_netem_spec_becomes_chaos_mesh_ordered_args() -> None:
    netem = NetemParams.from_tc_parameter(
        _tc(
            delay={
                "latency": "90ms",
                "jitter": "10ms",
                "correlation": "25",
                "reorder": {"reorder": "50", "correlation": "10", "gap": 5},
            },
            loss={"loss": "1.5", "correlation": "2"},
            duplicate={"duplicate": "3"},
            corrupt={"corrupt": "4", "correlation": "1"},
            rate={"rate": "1mbps"},
        )
    )
    assert netem is not None
    assert netem.tc_args() == (
        "delay",
        "90000us",
        "10000us",
        "25%",
        "reorder",
        "50%",
        "10%",
        "gap",
        "5",
        "loss",
        "1.5%",
        "2%",
        "duplicate",
        "3%",
        "corrupt",
        "4%",
        "1%",
        "rate",
        "8000000bit",
    )


def test_delay_correlation_without_jitter_is_left_out_as_tc_cannot_place_it() -> None:
    netem = NetemParams.from_tc_parameter(_tc(delay={"latency": "10ms", "correlation": "50"}))
    assert netem is not None and netem.tc_args() == ("delay", "10000us")


def test_a_sub_millisecond_delay_is_kept() -> None:
    # Chaos Mesh compares "0.5ms" > "0ms" as strings and drops it; the number is what counts here.
    netem = NetemParams.from_tc_parameter(_tc(delay={"latency": "0.5ms"}))
    assert netem is not None and netem.tc_args() == ("delay", "500us")


def test_no_netem_part_means_no_netem() -> None:
    assert NetemParams.from_tc_parameter(_tc(bandwidth={"rate": "1mbit", "limit": 10, "buffer": 10})) is None


def test_merge_takes_the_larger_of_each_field() -> None:
    a = NetemParams(delay_ns=100, jitter_ns=1, loss=5.0, rate_bps=1000)
    b = NetemParams(delay_ns=50, jitter_ns=9, duplicate=2.0, rate_bps=500)
    assert a.merge(b) == NetemParams(delay_ns=100, jitter_ns=9, loss=5.0, duplicate=2.0, rate_bps=1000)


netems = st.builds(
    NetemParams,
    delay_ns=st.integers(0, 10**10),
    jitter_ns=st.integers(0, 10**9),
    loss=st.floats(0, 100),
    duplicate=st.floats(0, 100),
    corrupt=st.floats(0, 100),
    gap=st.integers(0, 10),
    rate_bps=st.integers(0, 10**10),
)


@given(netems, netems, netems)
def test_merge_is_commutative_associative_and_idempotent(a: NetemParams, b: NetemParams, c: NetemParams) -> None:
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a


def test_tbf_from_bandwidth_uses_bits_and_keeps_the_bucket() -> None:
    tbf = TbfParams.from_bandwidth(BandwidthSpec(rate="1mbps", limit=20000, buffer=10000))
    assert tbf.tc_args() == ("rate", "8000000bit", "burst", "10000", "limit", "20000")


def test_tbf_peakrate_needs_minburst_as_in_chaos_mesh() -> None:
    alone = TbfParams.from_bandwidth(BandwidthSpec(rate="1mbit", limit=1, buffer=1, peakrate=2_000_000))
    assert "peakrate" not in alone.tc_args()
    both = TbfParams.from_bandwidth(BandwidthSpec(rate="1mbit", limit=1, buffer=1, peakrate=2_000_000, minburst=1600))
    assert both.tc_args()[-4:] == ("peakrate", "2000000bit", "mtu", "1600")
