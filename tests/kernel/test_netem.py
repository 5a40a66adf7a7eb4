"""netem in a real kernel: a delay on both ends of a veth shows up in the measured round-trip time.

The host test boots the VM and runs this same file there with pytest; the `inside_vm` tests are the ones
that run in the guest, where sch_netem exists.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
from pathlib import Path

import pytest
from testbed.containerd.netns import NetNamespace, NetworkLab
from testbed.image import busybox_binary
from testbed.vm import run as run_in_vm
from testbed.vm import shared_path

REPO = Path(__file__).resolve().parents[2]
BUSYBOX_ENV = "FAULTMESH_BUSYBOX"
DELAY_MS = 50
PINGS = 20


def _rtts_ms(ns: NetNamespace, address: str) -> list[float]:
    """Per-packet round-trip times of pings from inside `ns` (busybox ping: no iputils needed)."""
    busybox = os.environ[BUSYBOX_ENV]
    result = ns.run(busybox, "ping", "-c", str(PINGS), "-i", "0.05", "-W", "2", address, timeout=60)
    rtts = [float(m) for m in re.findall(r"time=([0-9.]+) ms", result.stdout)]
    assert len(rtts) == PINGS, f"expected {PINGS} replies:\n{result.stdout}"
    return rtts


def _qdiscs(ns: NetNamespace, device: str) -> str:
    return ns.run("tc", "qdisc", "show", "dev", device).stdout


@pytest.mark.inside_vm
def test_netem_delay_on_both_ends_adds_to_round_trip() -> None:
    lab = NetworkLab()
    try:
        ns_a, ns_b = lab.namespace("a"), lab.namespace("b")
        link = lab.link(ns_a, ns_b)
        ends = ((ns_a, link.if_a), (ns_b, link.if_b))
        qdiscs_before = {name: _qdiscs(ns, name) for ns, name in ends}
        baseline = statistics.median(_rtts_ms(ns_a, link.addr_b))

        for ns, device in ends:
            ns.run("tc", "qdisc", "add", "dev", device, "root", "netem", "delay", f"{DELAY_MS}ms")
            assert f"delay {DELAY_MS}ms" in _qdiscs(ns, device)
        delayed = statistics.median(_rtts_ms(ns_a, link.addr_b))
        added = delayed - baseline
        assert 2 * DELAY_MS - 10 <= added <= 2 * DELAY_MS + 10, (
            f"netem {DELAY_MS}ms each way added {added:.1f} ms (baseline {baseline:.2f}, delayed {delayed:.2f})"
        )

        for ns, device in ends:
            ns.run("tc", "qdisc", "del", "dev", device, "root")
        assert {name: _qdiscs(ns, name) for ns, name in ends} == qdiscs_before
        recovered = statistics.median(_rtts_ms(ns_a, link.addr_b))
        assert recovered < baseline + 10, f"RTT after removing netem is {recovered:.1f} ms"
    finally:
        errors = lab.close()
    assert errors == [] and lab.residue() == []


def test_netem_in_vm() -> None:
    """Boot the kernel VM and run this file's inside_vm tests there; they must all pass."""
    result = run_in_vm(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__).relative_to(REPO))],
        cwd=REPO,
        # Autoloaded plugins (hypothesis, ...) cost ~15 s of emulated start-up and are not used here.
        env={BUSYBOX_ENV: shared_path("busybox"), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        share={"busybox": busybox_binary()},  # the cache may sit under /tmp, which the guest cannot see
        modules=("veth", "sch_netem"),
        timeout=600,
    )
    report = f"exit {result.returncode}, timings {result.timings}\n{result.stdout}\n{result.stderr}"
    print(report)
    assert result.returncode == 0, report
    assert re.search(r"\b1 passed\b", result.stdout), report
