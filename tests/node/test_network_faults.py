"""Network faults on a real kernel: partitions and bandwidth between two network namespaces, by their effect.

Two namespaces joined by a veth stand for two pods. Plans come from the planners and run through the agent's
executor (nsenter into the namespace of a process living there, as for a container). Every test checks what
the fault does to real traffic -- UDP, TCP and ICMP with short timeouts, TCP throughput through tbf -- and
that recovery leaves the namespaces exactly as they were (iptables-save, nft, ipset, tc).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from lab_parts import kernel_state, prime_tables, wait_inside
from testbed.containerd import NetNamespace, NetworkLab

from faultmesh.agent.exec import Executor, Scope
from faultmesh.api.networkchaos import NetworkChaosSpec
from faultmesh.kinds.network import (
    PartitionFault,
    Peer,
    TbfParams,
    TrafficFault,
    partition_fault,
    plan_partition,
    plan_traffic_control,
)
from faultmesh.kinds.plan import Plan, Target

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
#: How long a probe waits for a packet that a partition may have dropped.
PROBE_TIMEOUT = 0.4


# --- sockets inside a namespace ---------------------------------------------------------------------------


def socket_in(ns: NetNamespace, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket that belongs to ``ns``: made by a short-lived thread that joined it (the test never does)."""
    made: dict[str, object] = {}

    def make() -> None:
        fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {ns.name}")
            made["socket"] = socket.socket(family, kind, proto)
        except BaseException as error:
            made["error"] = error
        finally:
            os.close(fd)

    worker = threading.Thread(target=make)
    worker.start()
    worker.join()
    if "error" in made:
        raise made["error"]  # type: ignore[misc]
    sock = made["socket"]
    assert isinstance(sock, socket.socket)
    return sock


def udp_arrives(sender: NetNamespace, receiver: NetNamespace, address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with (
        socket_in(receiver, family, socket.SOCK_DGRAM) as rx,
        socket_in(sender, family, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind((address, port))
        rx.settimeout(PROBE_TIMEOUT)
        try:
            for _ in range(3):
                tx.sendto(b"probe", (address, port))
        except PermissionError:  # dropped in OUTPUT: the kernel tells the sender at once
            return False
        try:
            return rx.recv(64) == b"probe"
        except TimeoutError:
            return False


def tcp_connects(client: NetNamespace, server: NetNamespace, address: str, port: int) -> bool:
    with (
        socket_in(server, socket.AF_INET, socket.SOCK_STREAM) as listener,
        socket_in(client, socket.AF_INET, socket.SOCK_STREAM) as sock,
    ):
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(1)
        sock.settimeout(PROBE_TIMEOUT)
        try:
            sock.connect((address, port))
        except (TimeoutError, ConnectionError, PermissionError):
            return False
        return True


def ping_answered(sender: NetNamespace, address: str) -> bool:
    """One ICMP echo from ``sender``; True when the reply comes back."""
    ident = os.getpid() & 0xFFFF
    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    payload = b"faultmesh"
    checksum = _checksum(header + payload)
    packet = struct.pack("!BBHHH", 8, 0, checksum, ident, 1) + payload
    with socket_in(sender, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.settimeout(PROBE_TIMEOUT)
        try:
            sock.sendto(packet, (address, 0))
        except PermissionError:
            return False
        deadline = time.monotonic() + PROBE_TIMEOUT
        while time.monotonic() < deadline:
            try:
                data, (source, _) = sock.recvfrom(1024)
            except TimeoutError:
                return False
            icmp = data[(data[0] & 0x0F) * 4 :]
            if source == address and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                return True
        return False


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data[: len(data) // 2 * 2]))
    if len(data) % 2:
        total += data[-1] << 8
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@dataclass(frozen=True)
class Throughput:
    bits_per_second: float
    bytes_measured: int
    seconds: float


def measure_throughput(
    sender: NetNamespace, receiver: NetNamespace, address: str, port: int, total: int, skip: int
) -> Throughput:
    """Send ``total`` bytes over TCP; the rate after the first ``skip`` bytes (the bucket's initial burst)."""
    marks: list[tuple[float, int]] = []
    listener = socket_in(receiver, socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(1)

    def receive() -> None:
        connection, _ = listener.accept()
        with connection:
            received = 0
            while chunk := connection.recv(1 << 16):
                received += len(chunk)
                marks.append((time.monotonic(), received))

    reader = threading.Thread(target=receive)
    reader.start()
    try:
        with socket_in(sender, socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.connect((address, port))
            block = b"\0" * (1 << 16)
            sent = 0
            while sent < total:
                sent += sock.send(block[: min(len(block), total - sent)])
    finally:
        reader.join(timeout=120)
        listener.close()
    assert marks and marks[-1][1] == total, f"received {marks[-1][1] if marks else 0} of {total} bytes"
    start_time, start_bytes = next((t, n) for t, n in marks if n >= skip)
    end_time, end_bytes = marks[-1]
    seconds = end_time - start_time
    return Throughput((end_bytes - start_bytes) * 8 / seconds, end_bytes - start_bytes, seconds)


# --- the two "pods" and running plans ---------------------------------------------------------------------


@dataclass
class Pod:
    ns: NetNamespace
    device: str
    address: str
    target: Target


@dataclass
class Pair:
    source: Pod
    peer: Pod


@pytest.fixture
def pair(lab: NetworkLab) -> Iterator[Pair]:
    """Two namespaces joined by a veth, each with a process living in it that stands for the pod."""
    ns_a, ns_b = lab.namespace("src"), lab.namespace("dst")
    link = lab.link(ns_a, ns_b)
    holders = [subprocess.Popen(["ip", "netns", "exec", ns.name, "sleep", "3600"]) for ns in (ns_a, ns_b)]
    try:
        pods = [
            Pod(ns, device, address, Target(f"process://{holder.pid}", facts={"ips": [address]}))
            for ns, device, address, holder in zip(
                (ns_a, ns_b), (link.if_a, link.if_b), (link.addr_a, link.addr_b), holders, strict=True
            )
        ]
        wait_inside(zip(holders, (ns_a, ns_b), strict=True), timeout=5)
        prime_tables(ns_a)
        prime_tables(ns_b)
        yield Pair(*pods)
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


class Agent:
    """Runs plans as the agent's engine does: every apply, then every probe present; undo in reverse, then
    every probe absent."""

    def __init__(self) -> None:
        self.executor = Executor()

    def apply(self, plan: Plan) -> None:
        asyncio.run(self._apply(plan))

    def recover(self, plan: Plan) -> None:
        asyncio.run(self._recover(plan))

    async def _scope(self, plan: Plan) -> Scope:
        return Scope(tag="fmt-network", location=await self.executor.locate(plan.target))

    async def _apply(self, plan: Plan) -> None:
        scope = await self._scope(plan)
        for step in plan.steps:
            await self.executor.run(step.apply, plan.target, scope)
        await self._expect(plan, scope, "present")

    async def _recover(self, plan: Plan) -> None:
        scope = await self._scope(plan)
        for step in reversed(plan.steps):
            if step.undo is None:
                assert step.probe is None, f"{step.name}: a step that changes something must be undone"
                continue  # a check (a partition's "device is there") changes nothing
            await self.executor.run(step.undo, plan.target, scope)
        await self._expect(plan, scope, "absent")

    async def _expect(self, plan: Plan, scope: Scope, state: str) -> None:
        for step in plan.steps:
            if step.undo is None:
                continue  # a check: nothing to read back
            assert step.probe is not None
            verdict = await self.executor.probe(step.probe, plan.target, scope)
            assert verdict.state == state, f"{step.name}: {verdict}"


@pytest.fixture
def agent() -> Agent:
    return Agent()


@contextlib.contextmanager
def no_residue(*pods: Pod) -> Iterator[None]:
    before = {pod.ns.name: kernel_state(pod.ns) for pod in pods}
    yield
    after = {pod.ns.name: kernel_state(pod.ns) for pod in pods}
    assert after == before


# --- partition --------------------------------------------------------------------------------------------


def reachability(pair: Pair, port: int = 7000) -> dict[str, bool]:
    """Which kinds of traffic get through, each way."""
    source, peer = pair.source, pair.peer
    return {
        "udp out": udp_arrives(source.ns, peer.ns, peer.address, port),
        "udp in": udp_arrives(peer.ns, source.ns, source.address, port),
        "tcp out": tcp_connects(source.ns, peer.ns, peer.address, port),
        "tcp in": tcp_connects(peer.ns, source.ns, source.address, port),
        "ping out": ping_answered(source.ns, peer.address),
        "ping in": ping_answered(peer.ns, source.address),
    }


EVERYTHING_FLOWS = dict.fromkeys(("udp out", "udp in", "tcp out", "tcp in", "ping out", "ping in"), True)


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        # "to" drops what the source sends: one-way UDP in still arrives; TCP and ping need a reply, so fail.
        (
            "to",
            {"udp out": False, "udp in": True, "tcp out": False, "tcp in": False, "ping out": False, "ping in": False},
        ),
        (
            "from",
            {"udp out": True, "udp in": False, "tcp out": False, "tcp in": False, "ping out": False, "ping in": False},
        ),
        ("both", dict.fromkeys(EVERYTHING_FLOWS, False)),
    ],
)
def test_partition_blocks_exactly_the_chosen_direction(
    pair: Pair, agent: Agent, direction: str, expected: dict[str, bool]
) -> None:
    assert reachability(pair) == EVERYTHING_FLOWS
    fault = PartitionFault(
        "shop/cut/uid-1/shop/web",
        direction,
        (Peer(pair.peer.address),),  # type: ignore[arg-type]
        pair.source.device,
    )
    plan = plan_partition(pair.source.target, fault)
    with no_residue(pair.source, pair.peer):
        agent.apply(plan)
        assert reachability(pair) == expected
        agent.recover(plan)
        agent.recover(plan)  # undo is idempotent: a second recovery finds nothing and still verifies
    assert reachability(pair) == EVERYTHING_FLOWS


def test_partition_with_a_port_blocks_that_port_only(pair: Pair, agent: Agent) -> None:
    source, peer = pair.source, pair.peer
    fault = PartitionFault("shop/cut/uid-2/shop/web", "to", (Peer(peer.address, 8080),), source.device)
    plan = plan_partition(source.target, fault)
    with no_residue(source, peer):
        agent.apply(plan)
        assert not tcp_connects(source.ns, peer.ns, peer.address, 8080)
        assert not udp_arrives(source.ns, peer.ns, peer.address, 8080)
        assert tcp_connects(source.ns, peer.ns, peer.address, 8081)
        assert udp_arrives(source.ns, peer.ns, peer.address, 8081)
        assert ping_answered(source.ns, peer.address)
        agent.recover(plan)
    assert tcp_connects(source.ns, peer.ns, peer.address, 8080)


def test_partition_without_peers_isolates_the_device(pair: Pair, agent: Agent) -> None:
    source, peer = pair.source, pair.peer
    plan = plan_partition(source.target, PartitionFault("shop/cut/uid-3/shop/web", "both", (), source.device))
    with no_residue(source, peer):
        agent.apply(plan)
        assert reachability(pair) == dict.fromkeys(EVERYTHING_FLOWS, False)
        # Loopback is another device: the pod still talks to itself.
        assert udp_arrives(source.ns, source.ns, "127.0.0.1", 7001)
        agent.recover(plan)
    assert reachability(pair) == EVERYTHING_FLOWS


def test_two_partitions_add_up_and_each_leaves_alone(pair: Pair, agent: Agent) -> None:
    source, peer = pair.source, pair.peer
    first = plan_partition(
        source.target, PartitionFault("shop/a/uid/shop/web", "to", (Peer(peer.address, 8080),), source.device)
    )
    second = plan_partition(
        source.target, PartitionFault("shop/b/uid/shop/web", "to", (Peer(peer.address, 8081),), source.device)
    )

    def open_ports() -> dict[int, bool]:
        return {port: tcp_connects(source.ns, peer.ns, peer.address, port) for port in (8080, 8081, 8082)}

    with no_residue(source, peer):
        agent.apply(first)
        agent.apply(second)
        assert open_ports() == {8080: False, 8081: False, 8082: True}
        agent.recover(first)
        assert open_ports() == {8080: True, 8081: False, 8082: True}
        agent.recover(second)
    assert open_ports() == {8080: True, 8081: True, 8082: True}


def test_a_networkchaos_partition_holds_on_both_sides(pair: Pair, agent: Agent) -> None:
    """Chaos Mesh installs a partition on the selected pod and on the target pod; each holds on its own."""
    source, peer = pair.source, pair.peer
    spec = NetworkChaosSpec.model_validate(
        {
            "action": "partition",
            "direction": "to",
            "mode": "all",
            "selector": {"namespaces": ["shop"]},
            "device": source.device,
            "targetDevice": peer.device,
            "target": {"mode": "all", "selector": {"namespaces": ["db"]}},
        }
    )
    on_source = plan_partition(
        source.target, partition_fault(spec, "shop/cut/uid/shop/web", side="source", peers=[Peer(peer.address)])
    )
    on_peer = plan_partition(
        peer.target, partition_fault(spec, "shop/cut/uid/db/db", side="target", peers=[Peer(source.address)])
    )
    with no_residue(source, peer):
        agent.apply(on_source)
        agent.apply(on_peer)
        assert not udp_arrives(source.ns, peer.ns, peer.address, 7000)
        assert udp_arrives(peer.ns, source.ns, source.address, 7000)
        agent.recover(on_source)
        # The target pod still drops what comes in from the source.
        assert not udp_arrives(source.ns, peer.ns, peer.address, 7000)
        assert udp_arrives(peer.ns, source.ns, source.address, 7000)
        agent.recover(on_peer)
    assert udp_arrives(source.ns, peer.ns, peer.address, 7000)


def test_partition_of_an_ipv6_peer_leaves_ipv4_alone(pair: Pair, agent: Agent) -> None:
    source, peer = pair.source, pair.peer
    source.ns.run("ip", "-6", "addr", "add", "fd00:6d::1/64", "dev", source.device, "nodad")
    peer.ns.run("ip", "-6", "addr", "add", "fd00:6d::2/64", "dev", peer.device, "nodad")
    plan = plan_partition(
        source.target, PartitionFault("shop/v6/uid/shop/web", "to", (Peer("fd00:6d::2"),), source.device)
    )
    changes = [step for step in plan.steps if step.undo is not None]
    assert {step.apply.argv[0] for step in changes} == {"ipset", "ip6tables"}  # type: ignore[union-attr]
    with no_residue(source, peer):
        agent.apply(plan)
        assert not udp_arrives(source.ns, peer.ns, "fd00:6d::2", 7000)
        assert udp_arrives(peer.ns, source.ns, "fd00:6d::1", 7000)
        assert udp_arrives(source.ns, peer.ns, peer.address, 7000)
        agent.recover(plan)
    assert udp_arrives(source.ns, peer.ns, "fd00:6d::2", 7000)


# --- bandwidth --------------------------------------------------------------------------------------------

MBIT = 1_000_000
#: Payload per full-sized TCP segment over the bytes tbf counts for it (Ethernet, IP, TCP with timestamps).
GOODPUT_SHARE = 1448 / 1514


def bucket(rate_bps: int) -> TbfParams:
    """A token bucket for ``rate_bps``: bursts of a few packets, about 200 ms of queue."""
    return TbfParams(rate_bps, buffer=max(5000, rate_bps // 8 // 100), limit=max(20000, rate_bps // 8 // 5))


def shaped_rate(pair: Pair, address: str, rate_bps: int, seconds: float = 3.0, port: int = 7100) -> Throughput:
    tbf = bucket(rate_bps)
    skip = max(8 * tbf.buffer, 64 * 1024)
    return measure_throughput(pair.source.ns, pair.peer.ns, address, port, skip + int(rate_bps / 8 * seconds), skip)


def assert_rate(measured: Throughput, rate_bps: int) -> None:
    ratio = measured.bits_per_second / rate_bps
    print(
        f"spec {rate_bps / MBIT:g} Mbit/s: goodput {measured.bits_per_second / MBIT:.3f} Mbit/s "
        f"({ratio:.3f} of spec; on the wire ≈ {ratio / GOODPUT_SHARE:.3f}) over {measured.seconds:.2f} s"
    )
    assert 0.9 <= ratio <= 1.1, f"{measured.bits_per_second / MBIT:.3f} Mbit/s is not within 10 % of the spec"


def second_address(pair: Pair) -> str:
    """Give the peer a second address on the same link, so two destinations share one device."""
    address = pair.peer.address.rsplit(".", 1)[0] + ".3"
    pair.peer.ns.run("ip", "addr", "add", f"{address}/24", "dev", pair.peer.device)
    return address


@pytest.mark.parametrize("rate_bps", [1 * MBIT, 10 * MBIT])
def test_bandwidth_caps_throughput(pair: Pair, agent: Agent, rate_bps: int) -> None:
    source, peer = pair.source, pair.peer
    fault = TrafficFault("shop/slow/uid/shop/web", tbf=bucket(rate_bps), device=source.device)
    plan = plan_traffic_control(source.target, [fault])
    with no_residue(source, peer):
        agent.apply(plan)
        assert_rate(shaped_rate(pair, peer.address, rate_bps), rate_bps)
        agent.recover(plan)
        agent.recover(plan)


def test_two_bandwidth_faults_hold_together_and_one_leaves_the_other(pair: Pair, agent: Agent) -> None:
    source, peer = pair.source, pair.peer
    other = second_address(pair)
    slow = TrafficFault(
        "shop/slow/uid/shop/web", tbf=bucket(1 * MBIT), peers=(Peer(peer.address),), device=source.device
    )
    fast = TrafficFault("shop/fast/uid/shop/web", tbf=bucket(10 * MBIT), peers=(Peer(other),), device=source.device)
    with no_residue(source, peer):
        both = plan_traffic_control(source.target, [slow, fast])
        agent.apply(both)
        assert_rate(shaped_rate(pair, peer.address, 1 * MBIT), 1 * MBIT)
        assert_rate(shaped_rate(pair, other, 10 * MBIT), 10 * MBIT)

        # The slow fault leaves: the slot is re-planned without it, as the engine does.
        agent.recover(both)
        only_fast = plan_traffic_control(source.target, [fast])
        agent.apply(only_fast)
        assert_rate(shaped_rate(pair, other, 10 * MBIT), 10 * MBIT)
        freed = measure_throughput(source.ns, peer.ns, peer.address, 7200, 32 * 1024 * 1024, 1024 * 1024)
        print(f"after the 1 Mbit/s fault left: {freed.bits_per_second / MBIT:.0f} Mbit/s")
        assert freed.bits_per_second > 10 * 10 * MBIT, "the destination of the removed fault is still shaped"
        agent.recover(only_fast)


def test_a_fault_for_everyone_and_one_for_a_peer_combine(pair: Pair, agent: Agent) -> None:
    source, peer = pair.source, pair.peer
    other = second_address(pair)
    everyone = TrafficFault("shop/all/uid/shop/web", tbf=bucket(10 * MBIT), device=source.device)
    one_peer = TrafficFault(
        "shop/one/uid/shop/web", tbf=bucket(1 * MBIT), peers=(Peer(peer.address),), device=source.device
    )
    plan = plan_traffic_control(source.target, [everyone, one_peer])
    with no_residue(source, peer):
        agent.apply(plan)
        # Where both apply the slower bucket governs; everyone else gets the shared one.
        assert_rate(shaped_rate(pair, peer.address, 1 * MBIT), 1 * MBIT)
        assert_rate(shaped_rate(pair, other, 10 * MBIT), 10 * MBIT)
        agent.recover(plan)
