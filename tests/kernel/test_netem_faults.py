"""netem faults planned by faultmesh, measured by their effect in a kernel that has netem.

The host test boots the kernel VM (testbed.vm) and runs this file's ``inside_vm`` tests there. Inside, two
network namespaces joined by a veth stand for two pods; plans come from the traffic-control slot planner
and run through the agent's executor, exactly as on a node. The VM's initramfs ships only the tc modules, so
the netfilter modules the plans need (nf_tables, ipset, xt_set, CLASSIFY) are loaded here from the same
unpacked Debian kernel, whose path the host passes in.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testbed.containerd.netns import NetNamespace, NetworkLab

from faultmesh.agent.exec import Executor, Scope
from faultmesh.kinds.network import NetemParams, Peer, TrafficFault, plan_traffic_control
from faultmesh.kinds.plan import Plan, Target

REPO = Path(__file__).resolve().parents[2]
#: The netfilter modules to load in the guest, as absolute paths in load order (set by the host test).
MODULES_ENV = "FAULTMESH_VM_NETFILTER_MODULES"
#: Loaded by the VM's init from its initramfs (tc and veth are shipped there).
SHIPPED_MODULES = ("veth", "sch_netem", "sch_htb", "sch_tbf")
#: Loaded by the guest test from the unpacked kernel: what iptables-nft, ipset and the plans' matches need
#: (crc32c first: libcrc32c asks for it by a soft dependency, which the guest could not resolve on demand).
NETFILTER_MODULES = (
    "crc32c_generic",
    "nf_tables",
    "nft_compat",
    "xt_set",
    "xt_CLASSIFY",
    "ip_set_hash_net",
    "ip_set_hash_netport",
    "ip_set_list_set",
)

CLONE_NEWNET = 0x40000000
SYS_FINIT_MODULE = 313  # x86_64
EEXIST = 17
SO_RCVBUFFORCE = 33  # Linux; Python's socket module does not name it
_libc = ctypes.CDLL(None, use_errno=True)

DELAY_MS = 200
PERCENT = 20.0
PACKETS = 3000
#: The sender's "no more data" datagram (shorter than any data datagram), sent END_MARKERS times.
END_MARKER = b"end"
END_MARKERS = 40
#: How long the receiver waits for the next datagram before it gives up on the rest.
IDLE_TIMEOUT_S = 30.0
#: After the end marker, the receiver stops once nothing has come for this long.
QUIET_AFTER_END_S = 2.0


# --- in the guest: modules, sockets, measurements ---------------------------------------------------------


def load_netfilter_modules() -> None:
    """Load the modules the host listed (dependencies first); those already loaded are skipped."""
    for path in os.environ[MODULES_ENV].split(":"):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.syscall(SYS_FINIT_MODULE, fd, b"", 0) != 0 and ctypes.get_errno() != EEXIST:
                raise OSError(ctypes.get_errno(), f"finit_module {path}")
        finally:
            os.close(fd)


def socket_in(ns: NetNamespace, family: int, kind: int) -> socket.socket:
    """A socket that belongs to ``ns``, made by a short-lived thread that joined it."""
    made: dict[str, object] = {}

    def make() -> None:
        fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {ns.name}")
            made["socket"] = socket.socket(family, kind)
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


@dataclass(frozen=True)
class Delivery:
    sent: int
    unique: int  # distinct datagrams that arrived
    copies: int  # datagrams that arrived, duplicates included
    intact: int  # distinct datagrams that arrived with their payload unchanged
    #: Datagrams the kernel dropped outside the fault under test (receive buffer full, backlog full on a
    #: guest stalled by a loaded emulator host), as its own counters say; they are not the fault's doing.
    stray: int = 0

    def percent(self, count: int) -> float:
        return 100.0 * count / self.sent

    def lost_percent(self) -> float:
        """The share lost by the fault: what did not arrive, less what the kernel dropped elsewhere."""
        return 100.0 * (self.sent - self.unique - self.stray) / (self.sent - self.stray)

    def damaged_percent(self) -> float:
        """The share that did not arrive intact, less what the kernel dropped elsewhere."""
        return 100.0 * (self.sent - self.intact - self.stray) / (self.sent - self.stray)


def payload(sequence: int, size: int) -> bytes:
    head = struct.pack("!I", sequence)
    return head + bytes((sequence + i) & 0xFF for i in range(size - len(head)))


def send_datagrams(
    sender: NetNamespace,
    receiver: NetNamespace,
    address: str,
    port: int,
    count: int = PACKETS,
    size: int = 1000,
    per_second: int = 2000,
) -> Delivery:
    """Send ``count`` numbered datagrams at a steady pace; count what arrives, and how."""
    with (
        socket_in(receiver, socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket_in(sender, socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 * 1024 * 1024)
        rx.bind((address, port))
        arrived: list[bytes] = []

        def receive() -> None:
            # Stop on the sender's end marker, not on a quiet spell: under emulation a loaded host can
            # stall the guest for seconds, and a timeout would count the datagrams still coming as lost.
            rx.settimeout(IDLE_TIMEOUT_S)
            with contextlib.suppress(TimeoutError):
                while True:
                    data = rx.recv(65536)
                    if len(data) == len(END_MARKER):
                        break
                    arrived.append(data)
                # Whatever netem still holds (a delay) arrives within the delay; then wait for a quiet spell,
                # as a guest vCPU stalled by the emulator host delivers its backlog late.
                rx.settimeout(QUIET_AFTER_END_S + DELAY_MS / 1000)
                while True:
                    data = rx.recv(65536)
                    if len(data) != len(END_MARKER):
                        arrived.append(data)

        stray_before = stray_drops(receiver)
        reader = threading.Thread(target=receive)
        reader.start()
        # Send from one CPU: the datagrams and the end marker then share one input backlog and arrive in order;
        # from two, a marker could overtake datagrams queued on a CPU the emulator host has stalled.
        pinned = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(pinned)})
        try:
            start, paced_from = time.monotonic(), 0
            for sequence in range(count):
                tx.sendto(payload(sequence, size), (address, port))
                if sequence % 20 == 19:
                    ahead = start + (sequence + 1 - paced_from) / per_second - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                    elif ahead < -0.05:
                        # The guest was stalled: carry on at the pace from here rather than catch up in a burst
                        # that would overflow the receiver's backlog.
                        start, paced_from = time.monotonic(), sequence + 1
            # Many markers, since the fault under test may drop any one of them.
            for _ in range(END_MARKERS):
                tx.sendto(END_MARKER, (address, port))
                time.sleep(0.002)
        finally:
            os.sched_setaffinity(0, pinned)
        reader.join()
        stray = stray_drops(receiver) - stray_before
    seen: set[int] = set()
    intact: set[int] = set()
    for data in arrived:
        if len(data) < 4:
            continue
        sequence = struct.unpack("!I", data[:4])[0]
        if sequence < count:
            seen.add(sequence)
            if data == payload(sequence, size):
                intact.add(sequence)
    return Delivery(count, len(seen), len(arrived), len(intact), stray)


def stray_drops(receiver: NetNamespace) -> int:
    """Drops the kernel counts outside netem: the receiver's UDP buffer, and every CPU's input backlog."""
    buffer_full = udp_counter(receiver, "RcvbufErrors")
    backlog_full = sum(int(line.split()[1], 16) for line in Path("/proc/net/softnet_stat").read_text().splitlines())
    return buffer_full + backlog_full


def udp_counter(ns: NetNamespace, name: str) -> int:
    """One of the namespace's ``Udp:`` counters in /proc/net/snmp."""
    return snmp_counter(ns, "Udp:", name)


def snmp_counter(ns: NetNamespace, group: str, name: str) -> int:
    """One of the namespace's counters in /proc/net/snmp, by group (``Ip:``, ``Udp:``) and name."""
    rows = [line.split() for line in ns.run("cat", "/proc/net/snmp").stdout.splitlines() if line.startswith(group)]
    return int(rows[1][rows[0].index(name)])


def corruption_rejected(ns: NetNamespace) -> int:
    """Datagrams the namespace dropped as damaged: a bad UDP checksum, or a bad IP header (its checksum)."""
    return udp_checksum_errors(ns) + snmp_counter(ns, "Ip:", "InHdrErrors")


def udp_checksum_errors(ns: NetNamespace) -> int:
    """The namespace's count of UDP datagrams dropped for a bad checksum."""
    return udp_counter(ns, "InCsumErrors")


def round_trips_ms(
    client: NetNamespace, server: NetNamespace, address: str, port: int, samples: int = 15
) -> list[float]:
    """UDP echo round trips from ``client`` to a server in ``server``."""
    with (
        socket_in(server, socket.AF_INET, socket.SOCK_DGRAM) as echo,
        socket_in(client, socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        echo.bind((address, port))
        echo.settimeout(10)
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    data, peer = echo.recvfrom(64)
                except TimeoutError:
                    continue
                echo.sendto(data, peer)

        server_thread = threading.Thread(target=serve)
        server_thread.start()
        try:
            # A lost request (a loss fault may be on) is sent again under a new number, not counted.
            sock.settimeout(1 + 2 * DELAY_MS / 1000)
            times: list[float] = []
            sequence = 0
            while len(times) < samples:
                sequence += 1
                assert sequence < 10 * samples, f"only {len(times)} of {sequence} echo requests came back"
                started = time.monotonic()
                sock.sendto(struct.pack("!I", sequence), (address, port))
                with contextlib.suppress(TimeoutError):
                    while struct.unpack("!I", sock.recv(64)[:4])[0] != sequence:
                        pass
                    times.append((time.monotonic() - started) * 1000)
            return times
        finally:
            stop.set()
            sock.sendto(b"stop", (address, port))
            server_thread.join()


def added_delay_ms(pair: Pair, address: str, baseline: float, port: int = 7300) -> float:
    return statistics.median(round_trips_ms(pair.source.ns, pair.peer.ns, address, port)) - baseline


# --- pods, plans, state -----------------------------------------------------------------------------------


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
    other_address: str  # a second address of the peer, on the same link


@pytest.fixture
def pair() -> Iterator[Pair]:
    load_netfilter_modules()
    lab = NetworkLab()
    holders: list[subprocess.Popen[bytes]] = []
    try:
        ns_a, ns_b = lab.namespace("src"), lab.namespace("dst")
        link = lab.link(ns_a, ns_b)
        other = link.addr_b.rsplit(".", 1)[0] + ".3"
        ns_b.run("ip", "addr", "add", f"{other}/24", "dev", link.if_b)
        # Fixed neighbour entries: ARP would otherwise cross the faults under test (a lost request leaves the
        # datagrams queued behind it to be dropped), and a guest stalled past its timers re-resolves mid-count.
        pin_neighbours(ns_a, link.if_a, ns_b, link.if_b, (link.addr_b, other))
        pin_neighbours(ns_b, link.if_b, ns_a, link.if_a, (link.addr_a,))
        holders = [subprocess.Popen(["ip", "netns", "exec", ns.name, "sleep", "3600"]) for ns in (ns_a, ns_b)]
        for holder, ns in zip(holders, (ns_a, ns_b), strict=True):
            deadline = time.monotonic() + 10
            while os.stat(f"/proc/{holder.pid}/ns/net").st_ino != ns.inode():
                assert time.monotonic() < deadline
                time.sleep(0.01)
        for ns in (ns_a, ns_b):
            for table, chain in (("filter", "OUTPUT"), ("mangle", "POSTROUTING")):
                ns.run("iptables", "-w", "5", "-t", table, "-I", chain, "-j", "ACCEPT")
                ns.run("iptables", "-w", "5", "-t", table, "-D", chain, "-j", "ACCEPT")
        yield Pair(
            Pod(ns_a, link.if_a, link.addr_a, Target(f"process://{holders[0].pid}")),
            Pod(ns_b, link.if_b, link.addr_b, Target(f"process://{holders[1].pid}")),
            other,
        )
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
        errors = lab.close()
    assert errors == [] and lab.residue() == []


def pin_neighbours(
    ns: NetNamespace, device: str, peer_ns: NetNamespace, peer_device: str, addresses: tuple[str, ...]
) -> None:
    """Permanent neighbour entries in ``ns`` for the peer's ``addresses``, all at the peer device's MAC."""
    mac = json.loads(peer_ns.run("ip", "-j", "link", "show", "dev", peer_device).stdout)[0]["address"]
    for address in addresses:
        ns.run("ip", "neigh", "replace", address, "lladdr", mac, "dev", device, "nud", "permanent")


def kernel_state(ns: NetNamespace) -> dict[str, str]:
    state = {
        "iptables": "\n".join(
            re.sub(r"\[\d+:\d+\]", "", line)
            for line in ns.run("iptables-save").stdout.splitlines()
            if not line.startswith("#")
        ),
        "nft": ns.run("nft", "list", "ruleset").stdout,
        "ipset": ns.run("ipset", "list").stdout,
        "qdisc": ns.run("tc", "-j", "qdisc", "show").stdout,
    }
    for link in json.loads(ns.run("ip", "-j", "link", "show").stdout):
        state[f"class {link['ifname']}"] = ns.run("tc", "class", "show", "dev", link["ifname"]).stdout
    return state


@contextlib.contextmanager
def no_residue(pair: Pair) -> Iterator[None]:
    before = [kernel_state(pair.source.ns), kernel_state(pair.peer.ns)]
    yield
    assert [kernel_state(pair.source.ns), kernel_state(pair.peer.ns)] == before


class Agent:
    """Applies then verifies every probe present; undoes in reverse then verifies every probe absent."""

    def __init__(self) -> None:
        self.executor = Executor(timeout=60)

    def apply(self, plan: Plan) -> None:
        asyncio.run(self._run(plan, recover=False))

    def recover(self, plan: Plan) -> None:
        asyncio.run(self._run(plan, recover=True))

    async def _run(self, plan: Plan, *, recover: bool) -> None:
        scope = Scope(tag="fmt-netem", location=await self.executor.locate(plan.target))
        for step in reversed(plan.steps) if recover else plan.steps:
            action = step.undo if recover else step.apply
            assert action is not None
            await self.executor.run(action, plan.target, scope)
        for step in plan.steps:
            assert step.probe is not None
            verdict = await self.executor.probe(step.probe, plan.target, scope)
            assert verdict.state == ("absent" if recover else "present"), f"{step.name}: {verdict}"


def fault(name: str, netem: NetemParams, pair: Pair, *peers: str) -> TrafficFault:
    return TrafficFault(
        f"shop/{name}/uid/shop/web", netem=netem, peers=tuple(Peer(p) for p in peers), device=pair.source.device
    )


def assert_percent(measured: float, expected: float, what: str) -> None:
    print(f"{what}: measured {measured:.2f} % for {expected:g} %")
    assert abs(measured - expected) <= 3.0, f"{what}: {measured:.2f} % is not within 3 points of {expected:g} %"


# --- the faults, in the guest -----------------------------------------------------------------------------


@pytest.mark.inside_vm
def test_delay_to_one_peer_holds_within_five_percent_and_spares_the_rest(pair: Pair) -> None:
    agent = Agent()
    baseline = statistics.median(round_trips_ms(pair.source.ns, pair.peer.ns, pair.peer.address, 7300))
    plan = plan_traffic_control(
        pair.source.target, [fault("slow", NetemParams(delay_ns=DELAY_MS * 10**6), pair, pair.peer.address)]
    )
    with no_residue(pair):
        agent.apply(plan)
        aimed = added_delay_ms(pair, pair.peer.address, baseline)
        spared = added_delay_ms(pair, pair.other_address, baseline)
        print(
            f"delay {DELAY_MS} ms: added {aimed:.1f} ms to the peer, {spared:.1f} ms elsewhere "
            f"(baseline round trip {baseline:.2f} ms)"
        )
        assert abs(aimed - DELAY_MS) <= 0.05 * DELAY_MS
        assert spared < 0.05 * DELAY_MS
        agent.recover(plan)
    assert added_delay_ms(pair, pair.peer.address, baseline) < 0.05 * DELAY_MS


@pytest.mark.inside_vm
@pytest.mark.parametrize("kind", ["loss", "duplicate", "corrupt"])
def test_netem_percentages_hold_within_three_points(pair: Pair, kind: str) -> None:
    agent = Agent()
    plan = plan_traffic_control(pair.source.target, [fault(kind, NetemParams(**{kind: PERCENT}), pair)])
    with no_residue(pair):
        agent.apply(plan)
        rejected_before = corruption_rejected(pair.peer.ns)
        got = send_datagrams(pair.source.ns, pair.peer.ns, pair.peer.address, 7400)
        print(f"{kind}: {got}")
        if kind == "loss":
            assert_percent(got.lost_percent(), PERCENT, "lost")
        elif kind == "duplicate":
            assert got.unique == got.sent
            assert_percent(got.percent(got.copies - got.unique), PERCENT, "duplicated")
        else:
            # A flipped bit gets the datagram dropped by a checksum (UDP's, IP's) or, were it not checked,
            # delivered damaged; either way it does not arrive intact. The peer's checksum errors show this
            # was corruption, not loss.
            rejected = corruption_rejected(pair.peer.ns) - rejected_before
            damaged = got.unique - got.intact
            print(f"corrupt: {rejected} rejected by a checksum, {damaged} delivered damaged")
            assert rejected + damaged >= 0.8 * (got.sent - got.intact - got.stray)
            assert_percent(got.damaged_percent(), PERCENT, "corrupted")
        agent.recover(plan)
    clean = send_datagrams(pair.source.ns, pair.peer.ns, pair.peer.address, 7401, count=500)
    assert clean.unique == clean.intact == clean.copies == clean.sent


@pytest.mark.inside_vm
def test_two_netem_faults_combine_and_one_leaves_the_other(pair: Pair) -> None:
    agent = Agent()
    baseline = statistics.median(round_trips_ms(pair.source.ns, pair.peer.ns, pair.peer.address, 7300))
    slow = fault("slow", NetemParams(delay_ns=DELAY_MS * 10**6), pair, pair.peer.address)
    lossy = fault("lossy", NetemParams(loss=PERCENT), pair)
    with no_residue(pair):
        both = plan_traffic_control(pair.source.target, [slow, lossy])
        agent.apply(both)
        # The peer meets both faults in one netem; the other address only the loss.
        assert abs(added_delay_ms(pair, pair.peer.address, baseline) - DELAY_MS) <= 0.05 * DELAY_MS
        to_peer = send_datagrams(pair.source.ns, pair.peer.ns, pair.peer.address, 7500)
        assert_percent(to_peer.lost_percent(), PERCENT, "lost to the delayed peer")
        elsewhere = send_datagrams(pair.source.ns, pair.peer.ns, pair.other_address, 7501)
        assert_percent(elsewhere.lost_percent(), PERCENT, "lost elsewhere")

        # The loss fault leaves; the slot is planned again without it, as the engine does.
        agent.recover(both)
        only_slow = plan_traffic_control(pair.source.target, [slow])
        agent.apply(only_slow)
        assert abs(added_delay_ms(pair, pair.peer.address, baseline) - DELAY_MS) <= 0.05 * DELAY_MS
        after = send_datagrams(pair.source.ns, pair.peer.ns, pair.peer.address, 7502, count=1000)
        assert after.unique == after.sent, f"loss is gone, yet {after.sent - after.unique} datagrams were lost"
        agent.recover(only_slow)


# --- on the host: boot the VM and run the above there -----------------------------------------------------


def test_netem_faults_in_vm() -> None:
    """Boot the kernel VM and run this file's inside_vm tests there; they must all pass."""
    from testbed.vm import run as run_in_vm
    from testbed.vm.initramfs import fetch_kernel
    from testbed.vm.modules import ModuleTree

    kernel = fetch_kernel()
    tree = ModuleTree(kernel.modules_dir)
    netfilter = ":".join(str(tree.root / module.path) for module in tree.load_order(NETFILTER_MODULES))
    result = run_in_vm(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(Path(__file__).relative_to(REPO))],
        cwd=REPO,
        env={MODULES_ENV: netfilter},
        modules=SHIPPED_MODULES,
        timeout=900,
    )
    report = f"exit {result.returncode}, timings {result.timings}\n{result.stdout}\n{result.stderr}"
    print(report)
    assert result.returncode == 0, report
    assert re.search(r"\b5 passed\b", result.stdout), report
