"""Benchmark: the node agent's inject→verified and recover→verified latency per fault, and its idle cost.

Run as root. The script builds its own lab -- two network namespaces ``fmb-<random>-a`` and ``-b``
joined by a veth, a ``sleep`` in the first standing for the target container (``process://PID``) --
and removes it whatever happens. Faults, each applied then recovered ``--runs`` times after one
untimed warm-up:

* partition: ``NetworkPartition``, direction both, one peer address (ipset + iptables chains);
* bandwidth: ``NetworkTrafficControl`` tbf 10 Mbit/s on the veth, no peers (htb root, class, tbf);
* stress: ``StressChaos``, one CPU worker at 100 % (stress-ng placed in the target's cgroups);
* kill: ``PodChaos`` container-kill on a fresh ``sleep`` in the lab namespace each run (one-shot).

inject→verified is the time of one apply call: it returns once every probe read the fault back as
present (a kill: apply returned ``Done`` and the bench reaped the target, killed by SIGKILL).
recover→verified is the time of one recover call: it returns ``recovered`` only once every probe
read the fault back as absent. Both are measured through the gRPC service of a ``faultmesh agent``
subprocess (what a controller sees) and against the engine in this process (no RPC).

The idle agent is ``faultmesh agent --insecure`` on loopback with a fresh journal and no metrics
endpoint: after it settles, its VmRSS and its CPU (utime+stime over a window, in percent of one
core) are sampled, again after the RPC runs.

    sudo .venv/bin/python bench/agent.py --markdown      # --runs 20, --max-load 1.5, --max-wait 600

Before measuring, the script waits (up to ``--max-wait`` seconds) for the 1-minute load average to
fall below ``--max-load``, and reports the load it measured at. It exits non-zero only when a fault
failed to apply or recover, or when anything it created outlived it (namespaces, kernel state in
them, spawned stress-ng, the agent process); timings are never judged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import queue
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import reporting

from faultmesh.agent.exec import SPAWN_ENV, Executor
from faultmesh.agent.injections import Engine, InjectionRequest
from faultmesh.agent.journal import Journal
from faultmesh.agent.planners import builtin_planners
from faultmesh.agent.rpc.client import AgentClient, TargetRef
from faultmesh.kinds.network import (
    PARTITION_KIND,
    TRAFFIC_CONTROL_KIND,
    PartitionFault,
    Peer,
    TbfParams,
    TrafficFault,
    fault_to_wire,
    traffic_control_slot,
)
from faultmesh.kinds.plan import Target

PREFIX = "fmb-"
OWNER = "fmb-bench"
LEASE_TTL = 600.0
SOURCE_ADDRESS, PEER_ADDRESS = "10.251.0.1", "10.251.0.2"
#: tbf at 10 Mbit/s: a bucket of ~10 ms of traffic, ~200 ms of queue (as the node tests shape).
BANDWIDTH = TbfParams(rate_bps=10_000_000, buffer=12_500, limit=250_000)
SELECTOR = {"mode": "all", "selector": {"namespaces": ["default"]}}
STRESS_SPEC = {**SELECTOR, "stressors": {"cpu": {"workers": 1, "load": 100}}}
KILL_SPEC = {**SELECTOR, "mode": "one", "action": "container-kill", "containerNames": ["app"]}
STRESS_NG = "stress-ng"


# ------------------------------------------------------------------------------------------ commands


def run(*argv: str, check: bool = True, timeout: float = 30) -> str:
    result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def netns_names() -> list[str]:
    return [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line.strip()]


def uptime() -> str:
    return run("uptime").strip()


# ------------------------------------------------------------------------------------------ the lab


@dataclass
class Lab:
    """Two namespaces joined by a veth; a ``sleep`` in the first is the target. Removed by :meth:`close`."""

    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    holder: subprocess.Popen[bytes] | None = None
    victims: list[subprocess.Popen[bytes]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    @property
    def source_ns(self) -> str:
        return f"{PREFIX}{self.suffix}-a"

    @property
    def peer_ns(self) -> str:
        return f"{PREFIX}{self.suffix}-b"

    @property
    def device(self) -> str:
        return f"fmb{self.suffix}a"

    @property
    def target(self) -> Target:
        assert self.holder is not None
        return Target(f"process://{self.holder.pid}", "bench/target", {"ips": [SOURCE_ADDRESS]})

    def start(self) -> None:
        for name in (self.source_ns, self.peer_ns):
            run("ip", "netns", "add", name)
            self.created.append(name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        peer_device = f"fmb{self.suffix}b"
        run("ip", "link", "add", self.device, "netns", self.source_ns, "type", "veth",
            "peer", "name", peer_device, "netns", self.peer_ns)
        for name, device, address in ((self.source_ns, self.device, SOURCE_ADDRESS),
                                      (self.peer_ns, peer_device, PEER_ADDRESS)):
            run("ip", "-n", name, "addr", "add", f"{address}/24", "dev", device)
            run("ip", "-n", name, "link", "set", device, "up")
        # The first iptables command in a namespace creates the tables and base chains a fault touches, and
        # nothing removes them: create them now, so they are part of the "before" state, as in any pod.
        for binary in ("iptables", "ip6tables"):
            for table, chain in (("filter", "INPUT"), ("filter", "OUTPUT"), ("mangle", "POSTROUTING")):
                self.sh(binary, "-w", "5", "-t", table, "-I", chain, "-j", "ACCEPT")
                self.sh(binary, "-w", "5", "-t", table, "-D", chain, "-j", "ACCEPT")
        self.holder = self.sleeper()

    def sh(self, *argv: str) -> str:
        return run("ip", "netns", "exec", self.source_ns, *argv)

    def sleeper(self) -> subprocess.Popen[bytes]:
        """A ``sleep`` living in the source namespace (returned once it is there and is ``sleep``)."""
        process = subprocess.Popen(["ip", "netns", "exec", self.source_ns, "sleep", "3600"])
        inode = os.stat(f"/run/netns/{self.source_ns}").st_ino
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError):
                comm = Path(f"/proc/{process.pid}/comm").read_text().strip()
                if comm == "sleep" and os.stat(f"/proc/{process.pid}/ns/net").st_ino == inode:
                    return process
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(f"sleep did not start in {self.source_ns}")
            time.sleep(0.005)

    def kernel_state(self) -> dict[str, str]:
        """What a network fault may change in the source namespace, with packet counters taken out."""
        state: dict[str, str] = {}
        for command in ("iptables-save", "ip6tables-save"):
            state[command] = "\n".join(re.sub(r"\[\d+:\d+\]", "", line)
                                       for line in self.sh(command).splitlines() if not line.startswith("#"))
        state["ipset"] = self.sh("ipset", "list")
        state["qdisc"] = self.sh("tc", "-j", "qdisc", "show")
        for link in json.loads(self.sh("ip", "-j", "link", "show")):
            for what in ("class", "filter"):
                state[f"{what} {link['ifname']}"] = self.sh("tc", what, "show", "dev", link["ifname"])
        return state

    def spawned(self) -> list[int]:
        """Live processes the agent spawned for this lab's injections: ``FAULTMESH_SPAWN`` names the lab, or
        they share a process group with one that does (stress-ng's workers rewrite their environment)."""
        groups: dict[int, int] = {}
        tagged: set[int] = set()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                environ = Path(entry.path, "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if fields[0] == "Z":
                continue
            groups[int(entry.name)] = int(fields[2])
            if any(v.startswith(f"{SPAWN_ENV}=".encode()) and self.suffix.encode() in v for v in environ):
                tagged.add(int(fields[2]))
        return sorted(pid for pid, group in groups.items() if group in tagged)

    def close(self) -> list[str]:
        """Remove everything; what had to be removed by force is reported (a leak)."""
        problems: list[str] = []
        for process in [*self.victims, *([self.holder] if self.holder else [])]:
            if process.poll() is None:
                process.kill()
            process.wait()
        for pid in self.spawned():
            problems.append(f"spawned process {pid} ({_comm(pid)}) outlived its recovery")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for name in self.created:
            result = subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, text=True)
            if result.returncode != 0:
                problems.append(f"ip netns del {name}: {result.stderr.strip()}")
        return problems


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "gone"


# ------------------------------------------------------------------------------------------ faults


@dataclass(frozen=True)
class Fault:
    """One fault as the bench applies it: a row of the table."""

    name: str
    kind: str
    #: (injection id, target) → (spec in wire form, slot).
    spec: Callable[[str, Target], tuple[dict[str, Any], str | None]]
    one_shot: bool = False

    def request(self, injection_id: str, target: Target) -> InjectionRequest:
        spec, slot = self.spec(injection_id, target)
        return InjectionRequest(injection_id, self.kind, spec, target, OWNER, LEASE_TTL, slot)

    def steps(self, target: Target) -> int:
        """How many steps the fault's plan has (what the agent runs, journals and probes)."""
        request = self.request(f"{PREFIX}count", target)
        planners = builtin_planners()
        if request.slot:
            plan = planners.slot_planners[self.kind]([(request.id, request.spec)], target)
        else:
            plan = planners.planners[self.kind](request.spec, target)
        return len(plan.steps)


def faults(lab: Lab) -> list[Fault]:
    def partition(injection_id: str, _: Target) -> tuple[dict[str, Any], str | None]:
        return fault_to_wire(PartitionFault(injection_id, "both", (Peer(PEER_ADDRESS),), lab.device)), None

    def bandwidth(injection_id: str, target: Target) -> tuple[dict[str, Any], str | None]:
        fault = TrafficFault(injection_id, tbf=BANDWIDTH, device=lab.device)
        return fault_to_wire(fault), traffic_control_slot(target, lab.device)

    return [
        Fault("partition (both ways, 1 peer)", PARTITION_KIND, partition),
        Fault("bandwidth (tbf 10 Mbit/s)", TRAFFIC_CONTROL_KIND, bandwidth),
        Fault("stress (CPU, 1 worker)", "StressChaos", lambda _i, _t: (dict(STRESS_SPEC), None)),
        Fault("kill (process://, SIGKILL)", "PodChaos", lambda _i, _t: (dict(KILL_SPEC), None), one_shot=True),
    ]


# ------------------------------------------------------------------------------------------ drivers


class Driver(Protocol):
    """Applies and recovers one injection; answers the phase (lower case) and whether it was verified."""

    label: str

    async def apply(self, request: InjectionRequest) -> tuple[str, bool]: ...

    async def recover(self, injection_id: str) -> tuple[str, bool]: ...

    async def recover_all(self) -> list[str]: ...


@dataclass
class EngineDriver:
    """The engine in this process, as the agent builds it (no RPC)."""

    engine: Engine
    label: str = "engine"

    async def apply(self, request: InjectionRequest) -> tuple[str, bool]:
        view = await self.engine.apply(request)
        return view.phase, not view.last_error

    async def recover(self, injection_id: str) -> tuple[str, bool]:
        view = await self.engine.recover(injection_id, "bench")
        return view.phase, not view.last_error

    async def recover_all(self) -> list[str]:
        views = await self.engine.halt("bench cleanup")
        self.engine.release()
        return [f"{view.id}: {view.phase}" for view in views]


@dataclass
class RpcDriver:
    """A ``faultmesh agent`` process, through its gRPC client (plaintext on loopback)."""

    client: AgentClient
    label: str = "rpc"

    async def apply(self, request: InjectionRequest) -> tuple[str, bool]:
        target = TargetRef(request.target.container_id, request.target.record_id, dict(request.target.facts))
        injection = await self.client.apply(request.id, request.owner, request.kind, request.spec, target,
                                            request.lease_ttl, slot=request.slot or "")
        return injection.phase.lower(), injection.verified or injection.phase == "Done"

    async def recover(self, injection_id: str) -> tuple[str, bool]:
        injection = await self.client.recover(injection_id, "bench")
        return injection.phase.lower(), injection.verified

    async def recover_all(self) -> list[str]:
        result = await self.client.halt()
        await self.client.halt(release=True)
        return [f"{item.injection_id}: {item.phase}" for item in result.recovered]


# ------------------------------------------------------------------------------------------ latency


@dataclass
class Latency:
    fault: str
    via: str
    steps: int
    one_shot: bool = False
    inject: list[float] = field(default_factory=list)
    recover: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def measure(driver: Driver, fault: Fault, lab: Lab, runs: int) -> Latency:
    result = Latency(fault.name, driver.label, fault.steps(lab.target), fault.one_shot)
    for number in range(runs + 1):  # run 0 is the untimed warm-up
        injection_id = f"{PREFIX}{lab.suffix}/{driver.label}/{fault.kind}/{number}"
        try:
            if fault.one_shot:
                inject, recover = await _kill_once(driver, fault, lab, injection_id), None
            else:
                inject, recover = await _apply_recover_once(driver, fault, lab, injection_id)
        except Exception as error:  # a failed fault ends its row; the others still run
            result.errors.append(f"run {number}: {type(error).__name__}: {error}")
            break
        if number:
            result.inject.append(inject)
            if recover is not None:
                result.recover.append(recover)
    return result


async def _apply_recover_once(driver: Driver, fault: Fault, lab: Lab, injection_id: str) -> tuple[float, float]:
    started = time.perf_counter()
    phase, verified = await driver.apply(fault.request(injection_id, lab.target))
    applied = time.perf_counter()
    if (phase, verified) != ("injected", True):
        raise RuntimeError(f"apply answered {phase} (verified: {verified})")
    phase, verified = await driver.recover(injection_id)
    recovered = time.perf_counter()
    if (phase, verified) != ("recovered", True):
        raise RuntimeError(f"recover answered {phase} (verified: {verified})")
    return applied - started, recovered - applied


async def _kill_once(driver: Driver, fault: Fault, lab: Lab, injection_id: str) -> float:
    victim = lab.sleeper()
    lab.victims.append(victim)
    target = Target(f"process://{victim.pid}", "bench/victim")
    started = time.perf_counter()
    phase, _ = await driver.apply(fault.request(injection_id, target))
    status = victim.wait(timeout=10)  # the agent signalled it before answering: this only reaps it
    dead = time.perf_counter()
    lab.victims.remove(victim)
    if phase != "done" or status != -signal.SIGKILL:
        raise RuntimeError(f"apply answered {phase}; the target exited with {status}")
    return dead - started


# ------------------------------------------------------------------------------------------ the agent process


@dataclass(frozen=True)
class Sample:
    rss_kib: int
    hwm_kib: int
    threads: int
    #: CPU over the window: utime+stime in clock ticks, that in percent of one core, and the same from the
    #: threads' schedstat (nanoseconds: finer than a tick, which is 0.1 % of a 10 s window).
    cpu_ticks: int
    cpu_ticks_percent: float
    cpu_schedstat_percent: float
    window: float


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime: every thread of the process


def _cpu_ns(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def sample(pid: int, window: float) -> Sample:
    ticks, nanoseconds, started = _cpu_ticks(pid), _cpu_ns(pid), time.monotonic()
    time.sleep(window)
    ticks, nanoseconds = _cpu_ticks(pid) - ticks, _cpu_ns(pid) - nanoseconds
    elapsed = time.monotonic() - started
    status = _status(pid)
    return Sample(
        rss_kib=int(status["VmRSS"].split()[0]),
        hwm_kib=int(status["VmHWM"].split()[0]),
        threads=int(status["Threads"]),
        cpu_ticks=ticks,
        cpu_ticks_percent=100 * ticks / os.sysconf("SC_CLK_TCK") / elapsed,
        cpu_schedstat_percent=100 * nanoseconds / 1e9 / elapsed,
        window=elapsed,
    )


class AgentProcess:
    """``faultmesh agent --insecure`` on loopback with its own journal; the address comes from its banner."""

    READY = re.compile(r"serving on (?P<address>\S+) with ")

    def __init__(self, workdir: Path) -> None:
        self.journal = workdir / "agent-journal.jsonl"
        self.log_path = workdir / "agent.log"
        script = Path(sys.executable).with_name("faultmesh")
        command = [str(script), "agent"] if script.exists() else [sys.executable, "-m", "faultmesh.agent.main"]
        self.command = [*command, "--insecure", "--listen", "127.0.0.1:0", "--journal", str(self.journal),
                        "--metrics-address", "", "--grace", "2"]
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=self._log,
                                        start_new_session=True)
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.address = self._wait_ready()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.put(raw.decode(errors="replace"))

    def _wait_ready(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            with contextlib.suppress(queue.Empty):
                match = self.READY.search(self._lines.get(timeout=0.2))
                if match:
                    return match["address"]
        self.stop()
        raise RuntimeError(f"the agent did not start; its log:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it does not go; the exit status of a clean stop (None when killed)."""
        status: int | None = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                status = self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        else:
            status = self.process.returncode
        self._log.close()
        return status


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (the bench's temporary directory)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if text.encode() in Path(entry.path, "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


# ------------------------------------------------------------------------------------------ report


@dataclass
class Report:
    machine: dict[str, str]
    load: dict[str, str] = field(default_factory=dict)
    quiet: bool = True
    idle: Sample | None = None
    after_runs: Sample | None = None
    latencies: list[Latency] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def machine() -> dict[str, str]:
    facts = reporting.machine()
    facts["cpu"] += f" (nproc {len(os.sched_getaffinity(0))})"
    facts["stress-ng"] = run(STRESS_NG, "--version", check=False).strip() or "not found"
    return facts


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _ms(values: list[float]) -> list[str]:
    if not values:
        return ["—"] * 3
    return [f"{1000 * v:.1f}" for v in (statistics.median(values), percentile(values, 0.9), max(values))]


def render(report: Report, runs: int, markdown: bool) -> str:
    lines: list[str] = []
    header = ["fault", "steps", "via", "inject median", "p90", "max", "recover median", "p90", "max"]
    rows = []
    for result in report.latencies:
        recover = ["— (one-shot)", "", ""] if result.one_shot else _ms(result.recover)
        rows.append([result.fault, str(result.steps), result.via, *_ms(result.inject), *recover])
    if markdown:
        lines += [f"Latency in ms over {runs} runs (after one warm-up run):", ""]
    else:
        lines.append(f"latency (ms) over {runs} runs:")
    lines += reporting.table(header, rows, markdown, align="lrlrrrrrr")
    lines.append("")
    bullet = "- " if markdown else ""
    for label, measured in (("idle agent", report.idle), ("after the RPC runs", report.after_runs)):
        if measured is not None:
            memory = f"VmRSS {measured.rss_kib / 1024:.1f} MiB (VmHWM {measured.hwm_kib / 1024:.1f} MiB)"
            cpu = (f"CPU over {measured.window:.1f} s: {measured.cpu_ticks_percent:.2f} % of one core by utime+stime "
                   f"({measured.cpu_ticks} ticks), {measured.cpu_schedstat_percent:.3f} % by schedstat")
            lines.append(f"{bullet}{label}: {memory}, {measured.threads} threads; {cpu}")
    lines += reporting.conditions(bullet, report.load, report.machine, report.quiet)
    failures = [f"{result.fault} via {result.via}: {error}" for result in report.latencies for error in result.errors]
    lines += reporting.outcome(bullet, failures, report.problems)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main


def wait_for_quiet(max_load: float, max_wait: float) -> bool:
    deadline = time.monotonic() + max_wait
    announced = 0.0
    while os.getloadavg()[0] >= max_load:
        if time.monotonic() >= deadline:
            return False
        if time.monotonic() - announced >= 60:
            print(f"waiting for the 1-minute load to fall below {max_load} ({uptime()})", file=sys.stderr)
            announced = time.monotonic()
        time.sleep(5)
    return True


async def with_client(address: str, work: Callable[[RpcDriver], Awaitable[Any]]) -> Any:
    async with AgentClient(address, None, timeout=120) as client:
        return await work(RpcDriver(client))


async def latency_runs(driver: Driver, lab: Lab, runs: int) -> list[Latency]:
    results = []
    try:
        for fault in faults(lab):
            print(f"{driver.label}: {fault.name} x {runs}", file=sys.stderr)
            results.append(await measure(driver, fault, lab, runs))
    finally:
        # Whatever a failed run left is recovered; a clean run leaves nothing, so this reports nothing.
        leftovers = [item for item in await driver.recover_all() if not item.lower().endswith(": recovered")]
        if leftovers:
            results.append(Latency("cleanup", driver.label, 0, errors=[f"left after the runs: {leftovers}"]))
    return results


async def engine_runs(lab: Lab, workdir: Path, runs: int) -> list[Latency]:
    engine = Engine(Journal(workdir / "engine-journal.jsonl"), Executor(), builtin_planners())
    await engine.start()
    try:
        return await latency_runs(EngineDriver(engine), lab, runs)
    finally:
        await engine.close()


@contextlib.contextmanager
def lab_and_workdir() -> Iterator[tuple[Lab, Path, list[str]]]:
    """The lab and a temporary directory; on the way out, everything is removed and leaks are listed."""
    lab = Lab()
    workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{lab.suffix}-"))
    problems: list[str] = []
    try:
        lab.start()
        yield lab, workdir, problems
    finally:
        problems += lab.close()
        for pid in processes_mentioning(str(workdir)):
            problems.append(f"process {pid} ({_comm(pid)}) of this bench outlived it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)
        problems += [f"network namespace {name} is left" for name in netns_names() if name.startswith(PREFIX)]


def bench(args: argparse.Namespace) -> Report:
    report = Report(machine())
    report.load["before waiting"] = uptime()
    report.quiet = wait_for_quiet(args.max_load, args.max_wait)
    report.load["at the start"] = uptime()
    with lab_and_workdir() as (lab, workdir, problems):
        before = lab.kernel_state()
        agent = AgentProcess(workdir)
        try:
            time.sleep(args.settle)
            report.idle = sample(agent.pid, args.window)
            report.latencies += asyncio.run(with_client(agent.address, lambda d: latency_runs(d, lab, args.runs)))
            time.sleep(args.settle)
            report.after_runs = sample(agent.pid, args.window)
        finally:
            status = agent.stop()
            if status != 0:
                problems.append(f"the agent did not stop cleanly on SIGTERM (exit {status}); "
                                f"log: {agent.log_path.read_text()[-2000:]}")
        if args.engine:
            report.latencies += asyncio.run(engine_runs(lab, workdir, args.runs))
        report.load["at the end"] = uptime()
        after = lab.kernel_state()
        changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
        problems += [f"kernel state changed in {lab.source_ns}: {key}" for key in changed]
    report.problems += problems
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per fault and path (after one warm-up)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown (a table and a list)")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait for a 1-minute load average below this")
    parser.add_argument("--max-wait", type=float, default=600, help="seconds to wait for that at most")
    parser.add_argument("--settle", type=float, default=5, help="seconds the agent rests before a sample")
    parser.add_argument("--window", type=float, default=10, help="seconds over which the agent's CPU is sampled")
    parser.add_argument("--no-engine", dest="engine", action="store_false",
                        help="skip the runs against the engine in this process (RPC only)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/agent.py needs root (network namespaces, iptables, tc)", file=sys.stderr)
        return 2
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    report = bench(args)
    print(render(report, args.runs, args.markdown))
    failed = any(result.errors for result in report.latencies) or report.problems
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
