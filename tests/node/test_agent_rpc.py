"""The agent's gRPC service on loopback with real mutual TLS, driving real faults in network namespaces.

Two namespaces joined by a veth stand for two pods; a TCP listener living in the first is the target
(``process://PID``). Faults are NetworkPartition injections planned by the real partition planner, sent
over the RPC and checked by their effect (the peer can no longer connect) and by zero residue after
recovery (iptables-save, ip6tables-save, ipset). One test runs the agent as its own process, as
``faultmesh agent`` runs, and stops it with SIGTERM: :class:`AgentProcess` is the pattern for kill -9 tests.
"""

from __future__ import annotations

import asyncio
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from testbed.containerd import NetNamespace, NetworkLab

from faultmesh.agent.injections import PlannerRegistry
from faultmesh.agent.main import AgentConfig, RunningAgent, running_agent
from faultmesh.agent.rpc import agent_pb2, agent_pb2_grpc
from faultmesh.agent.rpc.client import AgentClient, AgentError, Injection, TargetRef
from faultmesh.agent.rpc.tls import Bundle, write_bundle
from faultmesh.kinds.network import PARTITION_KIND, PartitionFault, Peer, fault_to_wire, partition_planner

OWNER = "controller-test"
LISTEN_PORT = 7400
#: The target: a TCP server that accepts and closes, forever (it also holds the namespace).
LISTENER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(16)
while True:
    connection, _ = server.accept()
    connection.close()
"""
CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.5).close()"
#: Runs `faultmesh agent` exactly as the CLI does (built-in planners, partition among them).
LAUNCHER = """
import sys
from faultmesh.agent.main import main
main(sys.argv[1:])
"""


# --- the lab ----------------------------------------------------------------------------------------------


@dataclass
class PartitionLab:
    target_ns: NetNamespace
    peer_ns: NetNamespace
    target_address: str
    peer_address: str
    device: str
    listener: subprocess.Popen[bytes]

    @property
    def container_id(self) -> str:
        return f"process://{self.listener.pid}"

    def peer_connects(self) -> bool:
        result = self.peer_ns.run(sys.executable, "-c", CONNECT, self.target_address, str(LISTEN_PORT), check=False)
        return result.returncode == 0

    def spec(self, injection_id: str) -> dict[str, Any]:
        """Drop what the target receives from the peer, on the target's side of the veth."""
        return fault_to_wire(PartitionFault(injection_id, "from", (Peer(self.peer_address),), self.device))

    def target(self) -> TargetRef:
        return TargetRef(self.container_id, "test/target", {"ips": [self.target_address]})

    def kernel_state(self) -> dict[str, str]:
        state: dict[str, str] = {}
        for command in ("iptables-save", "ip6tables-save"):
            text = self.target_ns.run(command).stdout
            state[command] = "\n".join(re.sub(r"\[\d+:\d+\]", "", line) for line in text.splitlines()
                                       if not line.startswith("#"))
        state["ipset"] = self.target_ns.run("ipset", "list").stdout
        return state


@pytest.fixture
def net(lab: NetworkLab) -> Iterator[PartitionLab]:
    target_ns, peer_ns = lab.namespace("tgt"), lab.namespace("peer")
    link = lab.link(target_ns, peer_ns)
    listener = subprocess.Popen(["ip", "netns", "exec", target_ns.name, sys.executable, "-c", LISTENER,
                                 link.addr_a, str(LISTEN_PORT)])
    try:
        setup = PartitionLab(target_ns, peer_ns, link.addr_a, link.addr_b, link.if_a, listener)
        deadline = time.monotonic() + 10
        while not setup.peer_connects():
            assert listener.poll() is None, "the listener died"
            assert time.monotonic() < deadline, "the listener never answered"
            time.sleep(0.05)
        # The first iptables command in a namespace creates the base chains, and nothing removes them:
        # create them before the "before" snapshot, as any pod set up with iptables has them.
        for binary in ("iptables", "ip6tables"):
            for chain in ("INPUT", "OUTPUT"):
                target_ns.run(binary, "-w", "5", "-I", chain, "-j", "ACCEPT")
                target_ns.run(binary, "-w", "5", "-D", chain, "-j", "ACCEPT")
        yield setup
    finally:
        listener.kill()
        listener.wait()


@pytest.fixture
def certs(tmp_path: Path) -> Bundle:
    return write_bundle(tmp_path / "certs", hosts=("localhost", "127.0.0.1"))


def partition_registry() -> PlannerRegistry:
    planners = PlannerRegistry()
    planners.register(PARTITION_KIND, partition_planner)
    return planners


def config(tmp_path: Path, certs: Bundle, **overrides: Any) -> AgentConfig:
    settings: dict[str, Any] = {"tls": certs.server, "listen": "127.0.0.1:0", "journal": tmp_path / "journal.jsonl",
                                "metrics": "127.0.0.1:0", "grace": 1.0}
    settings.update(overrides)
    return AgentConfig(**settings)


def in_process(tmp_path: Path, certs: Bundle, body: Callable[[RunningAgent], Awaitable[None]]) -> None:
    async def main() -> None:
        async with running_agent(config(tmp_path, certs), partition_registry()) as agent:
            await body(agent)

    asyncio.run(main())


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.1)


def scrape(port: int | None) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


# --- mTLS -------------------------------------------------------------------------------------------------


async def health_over(channel: grpc.aio.Channel) -> grpc.StatusCode:
    """The status of one Health call over ``channel`` (OK, or why it was refused)."""
    try:
        stub = agent_pb2_grpc.AgentStub(channel)  # type: ignore[no-untyped-call]
        await stub.Health(agent_pb2.HealthRequest(), timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    finally:
        await channel.close()
    return grpc.StatusCode.OK


def test_clients_without_a_certificate_from_our_ca_are_refused(tmp_path: Path, certs: Bundle) -> None:
    stranger = write_bundle(tmp_path / "other-ca")
    ca = certs.client.ca.read_bytes()

    async def body(agent: RunningAgent) -> None:
        address = agent.address
        ours = grpc.ssl_channel_credentials(ca, certs.client.key.read_bytes(), certs.client.cert.read_bytes())
        no_cert = grpc.ssl_channel_credentials(ca)
        foreign_cert = grpc.ssl_channel_credentials(ca, stranger.client.key.read_bytes(),
                                                    stranger.client.cert.read_bytes())
        # A certificate the server signed for itself is no client certificate either (extended key usage).
        server_as_client = grpc.ssl_channel_credentials(ca, certs.server.key.read_bytes(),
                                                        certs.server.cert.read_bytes())
        assert await health_over(grpc.aio.secure_channel(address, ours)) == grpc.StatusCode.OK
        assert await health_over(grpc.aio.secure_channel(address, no_cert)) == grpc.StatusCode.UNAVAILABLE
        assert await health_over(grpc.aio.secure_channel(address, foreign_cert)) == grpc.StatusCode.UNAVAILABLE
        assert await health_over(grpc.aio.secure_channel(address, server_as_client)) == grpc.StatusCode.UNAVAILABLE
        assert await health_over(grpc.aio.insecure_channel(address)) == grpc.StatusCode.UNAVAILABLE

        # The client side checks the server too: an agent whose certificate another CA signed is refused.
        async with AgentClient(address, stranger.client) as wrong_trust:
            with pytest.raises(AgentError) as caught:
                await wrong_trust.health(timeout=5)
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE

        async with AgentClient(address, certs.client) as client:
            health = await client.health()
        assert health.serving and not health.halted
        text = scrape(agent.metrics_port)
        assert 'faultmesh_agent_rpc_duration_seconds_count{code="OK",method="Health"} 2.0' in text

    in_process(tmp_path, certs, body)


# --- a real fault over the RPC ----------------------------------------------------------------------------


def test_partition_over_mtls_apply_list_renew_recover_halt(tmp_path: Path, certs: Bundle, net: PartitionLab) -> None:
    before = net.kernel_state()

    async def body(agent: RunningAgent) -> None:
        async with AgentClient(agent.address, certs.client) as client:
            applied = await client.apply("test/cut/uid-1/target", OWNER, PARTITION_KIND,
                                         net.spec("test/cut/uid-1/target"), net.target(), lease_ttl_seconds=2)
            assert (applied.phase, applied.verified, applied.errors) == ("Injected", True, ())
            assert not net.peer_connects()
            assert net.kernel_state() != before

            (listed,) = await client.list(owner=OWNER)
            assert (listed.injection_id, listed.kind, listed.phase) == ("test/cut/uid-1/target", PARTITION_KIND,
                                                                       "Injected")
            assert listed.target.container_id == net.container_id

            # Renewing keeps the fault well past its 2 s lease.
            renew_until = time.monotonic() + 5
            while time.monotonic() < renew_until:
                renewal = await client.renew_lease(OWNER, ttl_seconds=2)
                assert renewal.renewed == ("test/cut/uid-1/target",)
                await asyncio.sleep(0.5)
            (listed,) = await client.list()
            assert listed.phase == "Injected"
            assert not net.peer_connects()

            text = scrape(agent.metrics_port)
            assert f'faultmesh_agent_injections{{kind="{PARTITION_KIND}",phase="Injected"}} 1.0' in text
            assert 'faultmesh_agent_rpc_duration_seconds_count{code="OK",method="RenewLease"}' in text

            recovered = await client.recover("test/cut/uid-1/target", reason="experiment deleted")
            assert (recovered.phase, recovered.verified) == ("Recovered", True)
            assert net.peer_connects()
            assert net.kernel_state() == before

            # Halt recovers what is injected and refuses the next fault until released.
            await client.apply("test/cut/uid-2/target", OWNER, PARTITION_KIND, net.spec("test/cut/uid-2/target"),
                               net.target(), lease_ttl_seconds=60)
            assert not net.peer_connects()
            halt = await client.halt()
            assert [(i.injection_id, i.phase, i.verified) for i in halt.recovered] == [
                ("test/cut/uid-2/target", "Recovered", True)]
            assert net.peer_connects()
            assert net.kernel_state() == before
            with pytest.raises(AgentError) as caught:
                await client.apply("test/cut/uid-3/target", OWNER, PARTITION_KIND,
                                   net.spec("test/cut/uid-3/target"), net.target(), lease_ttl_seconds=60)
            assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
            assert net.kernel_state() == before
            await client.halt(release=True)

            text = scrape(agent.metrics_port)
            assert f'faultmesh_agent_injections{{kind="{PARTITION_KIND}",phase="Recovered"}} 2.0' in text
            assert 'faultmesh_agent_rpc_duration_seconds_count{code="FAILED_PRECONDITION",method="Apply"} 1.0' in text

    in_process(tmp_path, certs, body)


def test_an_unrenewed_lease_recovers_the_partition(tmp_path: Path, certs: Bundle, net: PartitionLab) -> None:
    before = net.kernel_state()

    async def body(agent: RunningAgent) -> None:
        async with AgentClient(agent.address, certs.client) as client:
            await client.apply("test/lapse/uid/target", OWNER, PARTITION_KIND, net.spec("test/lapse/uid/target"),
                               net.target(), lease_ttl_seconds=1)
            assert not net.peer_connects()

            async def recovered() -> bool:
                (listed,) = await client.list()
                return listed.phase == "Recovered"

            await wait_for(recovered, "the lease expired and the partition was recovered")
            (listed,) = await client.list()
            assert (listed.reason, listed.verified) == ("lease expired", True)
            assert net.peer_connects()
            assert net.kernel_state() == before
            # Counted from the engine's events as they happened: no refresh, no polling interval.
            text = scrape(agent.metrics_port)
            assert f'faultmesh_agent_lease_expiries_total{{kind="{PARTITION_KIND}"}} 1.0' in text
            for phase in ("Injecting", "Injected", "Recovering", "Recovered"):
                assert f'faultmesh_agent_injection_transitions_total{{kind="{PARTITION_KIND}",phase="{phase}"}} 1.0' \
                    in text

    in_process(tmp_path, certs, body)


def test_bad_requests_touch_nothing(tmp_path: Path, certs: Bundle, net: PartitionLab) -> None:
    before = net.kernel_state()

    async def body(agent: RunningAgent) -> None:
        async with AgentClient(agent.address, certs.client) as client:
            bad_peer = {**net.spec("x"), "peers": [{"network": "not-an-ip"}]}
            with pytest.raises(AgentError) as caught:
                await client.apply("x", OWNER, PARTITION_KIND, bad_peer, net.target(), 30)
            assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert caught.value.message.startswith("spec_json: ")
            assert "not-an-ip" in caught.value.message

            with pytest.raises(AgentError) as caught:
                await client.apply("x", OWNER, PARTITION_KIND, net.spec("x"), TargetRef("process://999999999"), 30)
            assert caught.value.code == grpc.StatusCode.NOT_FOUND
            assert await client.list() == []
        assert net.kernel_state() == before

    in_process(tmp_path, certs, body)


# --- the agent as its own process -------------------------------------------------------------------------


class AgentProcess:
    """``faultmesh agent`` in a child process: started, waited for until it serves, signalled, restarted."""

    READY = re.compile(r"serving on (?P<address>\S+) with .*; metrics http://\S+:(?P<metrics>\d+)/metrics")

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._stderr = log.open("ab")
        self.process = subprocess.Popen([sys.executable, "-c", LAUNCHER, *args], stdout=subprocess.PIPE,
                                        stderr=self._stderr, start_new_session=True)
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.address, self.metrics_port = self._wait_ready()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.put(raw.decode(errors="replace"))

    def _wait_ready(self, timeout: float = 60) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            match = self.READY.search(line)
            if match:
                return match["address"], int(match["metrics"])
        self.kill()
        raise AssertionError(f"the agent did not start; its log:\n{self.log.read_text()[-3000:]}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        finally:
            self._stderr.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


def agent_args(tmp_path: Path, certs: Bundle) -> list[str]:
    return ["--listen", "127.0.0.1:0", "--tls-ca", str(certs.server.ca), "--tls-cert", str(certs.server.cert),
            "--tls-key", str(certs.server.key), "--journal", str(tmp_path / "journal.jsonl"),
            "--metrics-address", "127.0.0.1:0", "--grace", "2", "--runtime", "process"]


def client_call(address: str, certs: Bundle, call: Callable[[AgentClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with AgentClient(address, certs.client) as client:
            return await call(client)

    return asyncio.run(main())


def test_agent_process_leaves_faults_on_sigterm_and_reconciles_on_restart(
    tmp_path: Path, certs: Bundle, net: PartitionLab
) -> None:
    before = net.kernel_state()
    log = tmp_path / "agent.log"
    agent = AgentProcess(agent_args(tmp_path, certs), log)
    try:
        injection_id = "test/survive/uid/target"
        applied: Injection = client_call(agent.address, certs, lambda c: c.apply(
            injection_id, OWNER, PARTITION_KIND, net.spec(injection_id), net.target(), lease_ttl_seconds=4))
        assert (applied.phase, applied.verified) == ("Injected", True)
        assert f'faultmesh_agent_injections{{kind="{PARTITION_KIND}",phase="Injected"}} 1.0' in scrape(
            agent.metrics_port)
        assert agent.stop(signal.SIGTERM) == 0
    finally:
        agent.kill()
    # SIGTERM stops serving; the fault is its owner's and stays.
    assert not net.peer_connects()
    assert "injections stay in place" in log.read_text()

    # Its owner is gone too: the lease runs out while no agent runs, and the restart recovers it.
    time.sleep(4.5)
    agent = AgentProcess(agent_args(tmp_path, certs), log)
    try:
        assert net.peer_connects()
        assert net.kernel_state() == before
        (listed,) = client_call(agent.address, certs, lambda c: c.list())
        assert (listed.injection_id, listed.phase, listed.reason) == (injection_id, "Recovered", "lease expired")
        assert agent.stop(signal.SIGINT) == 0
    finally:
        agent.kill()


def test_agent_process_refuses_to_start_without_tls(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "faultmesh.agent.main", "--listen", "127.0.0.1:0",
                             "--journal", str(tmp_path / "j"), "--metrics-address", ""],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "refusing to start without TLS" in result.stderr
    assert "--insecure" in result.stderr
    assert not (tmp_path / "j").exists()


def test_insecure_is_loud(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "faultmesh.agent.main", "--listen", "127.0.0.1:0", "--insecure",
                                "--journal", str(tmp_path / "j"), "--metrics-address", ""],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "with NO TLS (--insecure)" in line
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "WITHOUT TLS" in stderr


def test_a_taken_port_is_a_clear_error(tmp_path: Path, certs: Bundle) -> None:
    async def body(agent: RunningAgent) -> None:
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "faultmesh.agent.main", "--listen", agent.address, "--insecure",
             "--journal", str(tmp_path / "second.jsonl"), "--metrics-address", ""],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == 1, result.stderr
        assert f"cannot listen on {agent.address}" in result.stderr
        assert "Traceback" not in result.stderr

    in_process(tmp_path, certs, body)


def test_agent_process_is_not_left_running(tmp_path: Path) -> None:
    """Guard for the pattern above: a child that never becomes ready is killed, not leaked."""
    with pytest.raises(AssertionError, match="did not start"):
        AgentProcess(["--listen", "not-an-address", "--insecure"], tmp_path / "bad.log")
    assert '"not-an-address" is not an address' in (tmp_path / "bad.log").read_text()
