"""Benchmark: host mode beside chaosd -- how soon a partition and a CPU stress are in effect, and gone.

Run as root from the repository root. The lab is ``bench/agent.py``'s -- two network namespaces
``fmb-<random>-a``/``-b`` joined by a veth, a ``sleep`` in the first standing for the target -- with the
source end of the veth named ``eth0`` (chaosd v1.4.0 writes ``-i eth0``/``-o eth0`` into its partition rules
whatever ``--device`` says) and the ``sleep`` in a cgroup made for the bench. Every tool does the same two
faults on the same target, interleaved run by run:

* partition: both ways between the target and the peer address (faultmesh: a NetworkChaos with
  ``externalTargets``; chaosd: ``attack network partition --ip PEER --direction both`` run in the target's
  namespace through ``ip netns exec``, so its iptables rules and ipset land there);
* stress: one CPU worker at 100 % (faultmesh: a StressChaos on the target; chaosd: ``attack stress cpu``
  started inside the bench's cgroup, since chaosd stresses the host from where it runs).

Tools: ``engine`` -- the agent engine in this process (``Engine`` + ``Journal`` + ``Executor`` with the
built-in planners, requests built from the manifest as host mode builds them); ``cli`` -- ``faultmesh run
MANIFEST`` in a subprocess, ended by ``faultmesh recover NAME`` (only when ``faultmesh.host.runner`` is
there); ``chaosd`` -- chaosd built from its Go module by ``testbed/chaosd/build.sh`` (cached).

What is timed, from the moment the inject (recover) command is issued:

* returned -- the tool says it is done: the chaosd command exited; the engine's apply/recover returned
  (verified by its own probes); for ``cli``, the runner's journal time of the verified injection and the
  exit of ``faultmesh recover`` (which waits for the verified recovery);
* observed -- the bench itself sees the kernel in the new state, the same way for every tool. Partition: a
  fresh TCP connect each way between the namespaces every ``--probe-interval``; in effect at the launch of
  the first pair that both got no answer within ``--probe-timeout``, gone at the launch of the first pair
  that both connected. Stress: in effect once a stress-ng worker is in the target cgroup and the stress-ng
  processes there have used ``--burn`` ms of CPU; gone once no live stress-ng is left there;
* clean (recovery only) -- zero residue: the namespace's ``iptables-save``, ``ip6tables-save`` and
  ``ipset list`` equal to before the run, or no process but the target left in the cgroup. What a tool
  leaves is listed and removed by the bench (``iptables-restore`` of the saved tables, ``ipset destroy``) so
  that every run starts from the same state.

    sudo .venv/bin/python bench/hostmode.py --markdown    # --runs 10 --tools engine,cli,chaosd --hold 0.5

It exits non-zero when a fault failed or was never observed, or when anything it created outlived it;
residue a tool leaves is reported, not judged; timings are never judged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import errno
import importlib.util
import json
import os
import re
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import reporting
import yaml
from agent import (
    PEER_ADDRESS,
    PREFIX,
    SOURCE_ADDRESS,
    Lab,
    _comm,
    machine,
    percentile,
    processes_mentioning,
    run,
    uptime,
    wait_for_quiet,
)

from faultmesh.agent.exec import Executor
from faultmesh.agent.injections import Engine, InjectionRequest
from faultmesh.agent.journal import Journal
from faultmesh.agent.planners import builtin_planners
from faultmesh.agent.runtime.cgroups import parse_cgroup_mounts
from faultmesh.api.loader import parse_object
from faultmesh.kinds.experiment import external_peers
from faultmesh.kinds.network import FACT_IPS, PARTITION_KIND, fault_to_wire, partition_fault
from faultmesh.kinds.plan import Target

REPO = Path(__file__).resolve().parent.parent
CHAOSD_BUILD = REPO / "testbed" / "chaosd" / "build.sh"
NAMESPACE = "bench"
OWNER = "fmb-hostmode"
LEASE_TTL = 600.0
PROBE_PORT = 7
#: The source end of the veth: chaosd's partition rules name eth0 whatever --device says.
SOURCE_DEVICE = "eth0"
#: How long a ``faultmesh run`` lasts at most; the bench ends it sooner with ``faultmesh recover``.
CLI_DURATION = "120s"
Fault = Literal["partition", "stress"]
FAULTS: tuple[Fault, ...] = ("partition", "stress")
Want = Literal["present", "absent"]
T = TypeVar("T")


def manifest(fault: Fault, name: str) -> dict[str, Any]:
    """The experiment every faultmesh tool runs: the same spec for the engine and for ``faultmesh run``."""
    selector = {"pods": {NAMESPACE: ["source"]}}
    metadata = {"name": name, "namespace": NAMESPACE}
    if fault == "partition":
        spec: dict[str, Any] = {
            "action": "partition",
            "mode": "all",
            "selector": selector,
            "direction": "both",
            "externalTargets": [PEER_ADDRESS],
            "duration": CLI_DURATION,
        }
        return {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos", "metadata": metadata, "spec": spec}
    spec = {
        "mode": "all",
        "selector": selector,
        "stressors": {"cpu": {"workers": 1, "load": 100}},
        "duration": CLI_DURATION,
    }
    return {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "StressChaos", "metadata": metadata, "spec": spec}


# ------------------------------------------------------------------------------------------ the lab


class HostLab(Lab):
    """``bench/agent.py``'s lab with the source end of the veth named eth0 (it lives in the lab's namespace)."""

    @property
    def device(self) -> str:
        return SOURCE_DEVICE

    def ns_run(self, *argv: str, check: bool = True) -> str:
        return run("nsenter", f"--net=/run/netns/{self.source_ns}", *argv, check=check)

    def network_state(self) -> dict[str, str]:
        """What a partition changes in the source namespace, packet counters taken out."""
        state = {}
        for command in ("iptables-save", "ip6tables-save"):
            state[command] = "\n".join(
                re.sub(r"\[\d+:\d+\]", "", line)
                for line in self.ns_run(command).splitlines()
                if not line.startswith("#")
            )
        state["ipset"] = self.ns_run("ipset", "list", "-n")
        return state

    def restore_network(self, before: dict[str, str]) -> None:
        """Put the source namespace's tables and sets back as they were (after a tool left something)."""
        for command, restore in (("iptables-save", "iptables-restore"), ("ip6tables-save", "ip6tables-restore")):
            subprocess.run(
                ["nsenter", f"--net=/run/netns/{self.source_ns}", restore],
                input=before[command] + "\n",
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
            )
        wanted = set(before["ipset"].split())
        for name in self.ns_run("ipset", "list", "-n").split():
            if name not in wanted:
                self.ns_run("ipset", "destroy", name)


def residue(before: dict[str, str], after: dict[str, str]) -> str:
    """What ``after`` holds that ``before`` did not, in a few words (chains, rules, sets)."""
    parts = []
    for command in ("iptables-save", "ip6tables-save"):
        old, new = set(before[command].splitlines()), set(after[command].splitlines())
        chains = [line for line in new - old if line.startswith(":")]
        rules = [line for line in new - old if line.startswith("-A")]
        gone = [line for line in old - new if line.startswith(("-A", ":"))]
        if chains or rules or gone:
            family = "IPv6" if command.startswith("ip6") else "IPv4"
            parts.append(
                f"{family}: {len(chains)} chains and {len(rules)} rules added"
                + (f", {len(gone)} lines gone" if gone else "")
            )
    sets = set(after["ipset"].split()) - set(before["ipset"].split())
    if sets:
        parts.append(f"{len(sets)} ipset(s)")
    if before != after and not parts:
        parts.append("the same lines in another order")
    return "; ".join(parts)


class MeasuredCgroup:
    """A cgroup made for the bench: the target lives in it, and its processes and CPU time are read there.

    cgroup v1's cpuacct hierarchy when mounted (hybrid hosts), else cgroup2.
    """

    def __init__(self, name: str) -> None:
        mounts = parse_cgroup_mounts(Path("/proc/self/mountinfo").read_text())
        v1 = [m for m in mounts if m.version == 1 and "cpuacct" in m.controllers and m.root == "/"]
        v2 = [m for m in mounts if m.version == 2 and m.root == "/"]
        if not v1 and not v2:
            raise RuntimeError("no cpuacct (v1) or cgroup2 hierarchy mounted with its root visible")
        self.v1 = bool(v1)
        self.path = (v1 or v2)[0].mountpoint / name
        self.path.mkdir()

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def add(self, pid: int) -> None:
        self.procs_file.write_text(f"{pid}\n")

    def pids(self) -> list[int]:
        return [int(line) for line in self.procs_file.read_text().split()]

    def usage_ns(self) -> int:
        if self.v1:
            return int((self.path / "cpuacct.usage").read_text())
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return int(stat["usage_usec"]) * 1000

    def stress_ng(self) -> list[tuple[int, int, int]]:
        """Live stress-ng processes here: (pid, parent pid, CPU time in ns from schedstat)."""
        found = []
        for pid in self.pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat.rsplit(")", 1)[1].split()
                if comm.startswith("stress-ng") and fields[0] != "Z":
                    cpu = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
                    found.append((pid, int(fields[1]), cpu))
        return found

    def remove(self) -> list[str]:
        """Remove the cgroup; processes still in it are killed and reported."""
        problems = []
        for pid in self.pids():
            problems.append(f"process {pid} ({_comm(pid)}) was left in {self.path}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            try:
                self.path.rmdir()
                return problems
            except OSError:
                time.sleep(0.05)
        return [*problems, f"cannot remove {self.path}"]


# ------------------------------------------------------------------------------------------ observing


_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _enter_netns(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(descriptor, _CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns {path}: {os.strerror(code)}")
    finally:
        os.close(descriptor)


class NetnsSockets:
    """Makes sockets inside a network namespace. A socket stays in the namespace it was made in, and setns
    moves only the calling thread, so one worker thread lives in the namespace and makes them."""

    def __init__(self, netns: str) -> None:
        self._pool = ThreadPoolExecutor(
            1, thread_name_prefix=f"in-{netns}", initializer=_enter_netns, initargs=(f"/run/netns/{netns}",)
        )

    def socket(self) -> socket.socket:
        return self._pool.submit(socket.socket, socket.AF_INET, socket.SOCK_STREAM).result()

    def close(self) -> None:
        self._pool.shutdown()


class Listener:
    """A TCP listener in a namespace that accepts every connection and drops it: the far end of the probes."""

    def __init__(self, sockets: NetnsSockets, address: str) -> None:
        self.socket = sockets.socket()
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((address, PROBE_PORT))
        self.socket.listen(1024)
        self.socket.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.socket.accept()
            except OSError:  # the accept timeout, or a connection reset before it was taken
                continue
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


@dataclass
class _Pair:
    launched: float
    #: source → peer, peer → source: None while unanswered.
    connected: list[bool | None] = field(default_factory=lambda: [None, None])


class PartitionProbe:
    """Connects afresh each way every ``interval``; answers when the first pair shows the wanted state.

    A pair that connected both ways says "absent"; one where neither direction got an answer within ``timeout``
    says "present". Pairs are judged in launch order, so the answer is the launch time of the earliest pair that
    shows the state. Client sockets close with a reset (SO_LINGER 0): no TIME_WAIT piles up.
    """

    def __init__(self, lab: HostLab, interval: float, timeout: float) -> None:
        self.interval, self.timeout = interval, timeout
        self.source, self.peer = NetnsSockets(lab.source_ns), NetnsSockets(lab.peer_ns)
        self.listeners = [Listener(self.peer, PEER_ADDRESS), Listener(self.source, SOURCE_ADDRESS)]
        self.directions = ((self.source, PEER_ADDRESS), (self.peer, SOURCE_ADDRESS))

    def close(self) -> None:
        for listener in self.listeners:
            listener.close()
        self.source.close()
        self.peer.close()

    def wait(self, want: Want, deadline: float, stop: threading.Event) -> float | None:
        selector = selectors.DefaultSelector()
        pending: dict[socket.socket, tuple[_Pair, int]] = {}
        pairs: list[_Pair] = []
        next_launch = time.perf_counter()

        def settle(sock: socket.socket, connected: bool) -> None:
            pair, direction = pending.pop(sock)
            pair.connected[direction] = connected
            with contextlib.suppress(KeyError, ValueError):
                selector.unregister(sock)
            sock.close()

        try:
            while not stop.is_set():
                now = time.perf_counter()
                if now >= deadline:
                    return None
                if now >= next_launch:
                    pair = _Pair(now)
                    pairs.append(pair)
                    for direction, (maker, address) in enumerate(self.directions):
                        sock = maker.socket()
                        sock.setblocking(False)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        pending[sock] = (pair, direction)
                        code = sock.connect_ex((address, PROBE_PORT))
                        if code == errno.EINPROGRESS:
                            selector.register(sock, selectors.EVENT_WRITE)
                        else:  # connected at once, or refused locally (an OUTPUT rule: EPERM)
                            settle(sock, code == 0)
                    next_launch = now + self.interval
                wait_until = min([next_launch, *(pair.launched + self.timeout for pair, _ in pending.values())])
                for key, _ in selector.select(max(0.0, wait_until - time.perf_counter())):
                    ready = key.fileobj
                    assert isinstance(ready, socket.socket)
                    settle(ready, ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)
                now = time.perf_counter()
                for sock, (pair, _) in list(pending.items()):
                    if now - pair.launched >= self.timeout:
                        settle(sock, False)
                for pair in pairs:  # in launch order; stop at the first still unanswered
                    if None in pair.connected:
                        break
                    if (want == "present" and not any(pair.connected)) or (want == "absent" and all(pair.connected)):
                        return pair.launched
            return None
        finally:
            for sock in list(pending):
                settle(sock, False)
            selector.close()


class StressProbe:
    """Reads the target cgroup every ``interval``: a stress-ng worker there that burnt ``burn`` of CPU is
    "present"; no live stress-ng left there is "absent"."""

    def __init__(self, cgroup: MeasuredCgroup, interval: float, burn: float) -> None:
        self.cgroup, self.interval, self.burn_ns = cgroup, interval, int(burn * 1e9)

    def close(self) -> None:
        pass

    def wait(self, want: Want, deadline: float, stop: threading.Event) -> float | None:
        while not stop.is_set():
            now = time.perf_counter()
            if now >= deadline:
                return None
            stressors = self.cgroup.stress_ng()
            pids = {pid for pid, _, _ in stressors}
            if want == "absent" and not stressors:
                return now
            has_worker = any(parent in pids for _, parent, _ in stressors)
            if want == "present" and has_worker and sum(cpu for _, _, cpu in stressors) >= self.burn_ns:
                return now
            time.sleep(self.interval)
        return None


class Probe(Protocol):
    def wait(self, want: Want, deadline: float, stop: threading.Event) -> float | None: ...

    def close(self) -> None: ...


class Watcher:
    """Runs a probe in a thread while a command runs: ``observed`` is when the wanted state was first seen."""

    def __init__(self, probe: Probe, want: Want, timeout: float) -> None:
        self.stop = threading.Event()
        self.observed: float | None = None
        self.error: BaseException | None = None
        deadline = time.perf_counter() + timeout

        def watch() -> None:
            try:
                self.observed = probe.wait(want, deadline, self.stop)
            except BaseException as error:
                self.error = error

        self.thread = threading.Thread(target=watch, daemon=True)
        self.thread.start()

    def result(self) -> float | None:
        self.thread.join()
        if self.error is not None:
            raise RuntimeError(f"the probe failed: {self.error}") from self.error
        return self.observed

    def cancel(self) -> None:
        self.stop.set()
        self.thread.join()


# ------------------------------------------------------------------------------------------ commands


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str
    #: When wait4 returned (perf_counter).
    at: float


def run_timed(argv: list[str], cwd: Path | None = None, timeout: float = 60) -> Finished:
    """Run a command to its end; the moment it exited is taken as wait4 returns."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        killer = threading.Timer(timeout, process.kill)
        killer.start()
        try:
            _, status = os.waitpid(process.pid, 0)
            at = time.perf_counter()
        finally:
            killer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Finished(
            process.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"), at
        )


class PeakMemory:
    """Peak RSS of commands, taken in the untimed warm-up run through GNU time.

    The bench cannot read it from wait4 itself: a child's high-water mark starts from its parent's RSS at fork
    (and exec keeps it), so every child of this process would show this process's 70 MiB. GNU time is a small
    parent. Without it, nothing is measured.
    """

    TIME = Path("/usr/bin/time")

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "rss"
        self.dir.mkdir(exist_ok=True)
        self.values: dict[str, list[int]] = {}
        self.available = self.TIME.exists()

    def wrap(self, argv: list[str], measure: bool) -> tuple[list[str], Path | None]:
        if not (measure and self.available):
            return argv, None
        out = self.dir / f"{len(list(self.dir.iterdir()))}.txt"
        return [str(self.TIME), "-f", "%M", "-o", str(out), "--", *argv], out

    def collect(self, label: str, out: Path | None) -> None:
        if out is not None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.values.setdefault(label, []).append(int(out.read_text().split()[-1]))


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ------------------------------------------------------------------------------------------ tools


@dataclass
class Injected:
    """What a tool hands back from an injection, to recover it by."""

    fault: Fault
    number: int
    handle: Any
    #: When the tool said the fault is in (perf_counter).
    returned: float


class Tool(Protocol):
    name: str
    label: str

    def inject(self, fault: Fault, number: int) -> Injected: ...

    def recover(self, injected: Injected) -> float:
        """Recover; answers when the tool said it is done (perf_counter)."""
        ...

    def during_hold(self, injected: Injected) -> dict[str, int]:
        """Resident memory (KiB) of the tool's own processes while the fault holds, by process."""
        ...

    def finish(self, injected: Injected) -> None:
        """Once the recovery is measured: wait for what the tool still runs, and check how it ended."""
        ...

    def close(self) -> list[str]: ...


class EngineTool:
    """The agent engine in this process, driven as host mode drives it; its loop runs in its own thread."""

    name, label = "engine", "faultmesh, engine in-process"

    def __init__(self, lab: HostLab, workdir: Path) -> None:
        self.lab = lab
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.engine = Engine(Journal(workdir / "engine.journal"), Executor(), builtin_planners())
        self._call(self.engine.start())

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=120)

    def request(self, fault: Fault, number: int) -> InjectionRequest:
        resource = parse_object(manifest(fault, f"bench-{fault}-{number}"))
        spec: Any = getattr(resource, "spec")  # noqa: B009 -- every experiment kind has one
        injection_id = f"{PREFIX}{self.lab.suffix}/{fault}/{number}"
        assert self.lab.holder is not None
        target = Target(f"process://{self.lab.holder.pid}", f"{NAMESPACE}/source", {FACT_IPS: [SOURCE_ADDRESS]})
        if fault == "partition":
            wire = fault_to_wire(partition_fault(spec, injection_id, peers=external_peers(spec, None)))
            return InjectionRequest(injection_id, PARTITION_KIND, wire, target, OWNER, LEASE_TTL, None)
        wire = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        return InjectionRequest(injection_id, "StressChaos", wire, target, OWNER, LEASE_TTL, None)

    def inject(self, fault: Fault, number: int) -> Injected:
        request = self.request(fault, number)
        view = self._call(self.engine.apply(request))
        returned = time.perf_counter()
        if view.phase != "injected" or view.last_error:
            raise RuntimeError(f"apply answered {view.phase}: {view.last_error}")
        return Injected(fault, number, request.id, returned)

    def recover(self, injected: Injected) -> float:
        view = self._call(self.engine.recover(injected.handle, "bench"))
        returned = time.perf_counter()
        if view.phase != "recovered" or view.last_error:
            raise RuntimeError(f"recover answered {view.phase}: {view.last_error}")
        return returned

    def during_hold(self, injected: Injected) -> dict[str, int]:
        return {}

    def finish(self, injected: Injected) -> None:
        pass

    def close(self) -> list[str]:
        problems = []
        with contextlib.suppress(Exception):
            views = self._call(self.engine.halt("bench cleanup"))
            problems += [f"engine: {view.id} was still {view.phase}" for view in views if view.phase != "recovered"]
        self._call(self.engine.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
        return problems


class CliTool:
    """``faultmesh run MANIFEST`` in a subprocess (host mode as a user runs it); ``faultmesh recover`` ends it."""

    name, label = "cli", "faultmesh run / recover"

    def __init__(self, lab: HostLab, workdir: Path) -> None:
        script = Path(sys.executable).with_name("faultmesh")
        self.command = [str(script)] if script.exists() else [sys.executable, "-m", "faultmesh"]
        self.workdir = workdir
        self.state = workdir / "state"
        self.inventory = workdir / "inventory.yaml"
        assert lab.holder is not None
        entry = {"namespace": NAMESPACE, "name": "source", "labels": {"app": "source"}, "pid": lab.holder.pid}
        self.inventory.write_text(yaml.safe_dump({"targets": [entry]}))
        self.runs: dict[str, tuple[subprocess.Popen[bytes], Path | None]] = {}
        self.peaks = PeakMemory(workdir)
        #: Wall-clock times the bench started a run's commands, to set against the runner's journal.
        self.launched: dict[str, float] = {}
        self.recover_started: dict[str, float] = {}
        self.recover_returned: dict[str, float] = {}
        self.phases: dict[str, list[float]] = {}

    def inject(self, fault: Fault, number: int) -> Injected:
        name = f"bench-{fault}-{number}"
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(manifest(fault, name)))
        argv, rss = self.peaks.wrap(
            [
                *self.command,
                "run",
                str(path),
                "--inventory",
                str(self.inventory),
                "--state-dir",
                str(self.state),
                "--quiet",
            ],
            number == 0,
        )
        with (self.workdir / f"{name}.log").open("wb") as log:
            started_wall, started = time.time(), time.perf_counter()
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.runs[name] = (process, rss)
        self.launched[name] = started_wall
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            times = self._target_times(name)
            if times is not None and times.get("injected_at") is not None:
                if not times.get("injected_verified"):
                    raise RuntimeError(f"{name}: the runner says the injection is not verified: {times}")
                return Injected(fault, number, name, started + times["injected_at"] - started_wall)
            if process.poll() is not None:
                raise RuntimeError(
                    f"faultmesh run {name} exited {process.returncode} before injecting: {self._log(name)}"
                )
            time.sleep(0.01)
        raise RuntimeError(f"faultmesh run {name}: no verified injection in its journal after 60 s")

    def _log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text()[-2000:]

    def _target_times(self, name: str) -> dict[str, Any] | None:
        for journal in (self.state / "runs").glob(f"*-{name}-*/journal.json"):
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(journal.read_text())
                if data["experiment"]["name"] == name and data["targets"]:
                    target: dict[str, Any] = data["targets"][0]
                    return target
        return None

    def recover(self, injected: Injected) -> float:
        name = injected.handle
        started = time.perf_counter()
        argv, rss = self.peaks.wrap(
            [*self.command, "recover", name, "--namespace", NAMESPACE, "--state-dir", str(self.state)],
            injected.number == 0,
        )
        finished = run_timed(argv)
        self.peaks.collect("faultmesh recover", rss)
        if finished.code != 0:
            raise RuntimeError(f"faultmesh recover {name}: exit {finished.code}: {finished.stderr.strip()}")
        now_wall, now = time.time(), time.perf_counter()
        self.recover_started[name] = now_wall - (now - started)
        self.recover_returned[name] = now_wall - (now - finished.at)
        return finished.at

    def finish(self, injected: Injected) -> None:
        name = injected.handle
        process, run_rss = self.runs.pop(name)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError(f"faultmesh run {name} still ran 60 s after faultmesh recover returned") from None
        self.peaks.collect("faultmesh run", run_rss)
        if code != 0:
            raise RuntimeError(f"faultmesh run {name} exited {code}: {self._log(name)}")
        if injected.number > 0:
            self._phases(name)

    def _phases(self, name: str) -> None:
        """Where a run's time went, from its journal (epoch seconds) and the bench's own clock."""
        journal = next((self.state / "runs").glob(f"*-{name}-*/journal.json"))
        data = json.loads(journal.read_text())
        target = data["targets"][0]
        events = {event["reason"]: event["at"] for event in data["events"]}
        acted = min((at for reason, at in events.items() if reason in ("Deleted", "Stopping")), default=None)
        marks = [
            ("run: process start until its journal opens", self.launched[name], data["started_at"]),
            ("run: journal opened until the experiment started", data["started_at"], events.get("Started")),
            ("run: experiment started until applied, verified", events.get("Started"), target["injected_at"]),
            ("recover: command start until the runner acted on it", self.recover_started[name], acted),
            ("recover: runner acted until recovered, verified", acted, target["recovered_at"]),
            ("recover: recovered until the run finished", target["recovered_at"], data["finished_at"]),
            (
                "recover: run finished until `faultmesh recover` exited",
                data["finished_at"],
                self.recover_returned[name],
            ),
        ]
        for label, start, end in marks:
            if start is not None and end is not None:
                self.phases.setdefault(label, []).append(end - start)

    def during_hold(self, injected: Injected) -> dict[str, int]:
        """The runner and its watchdog: the processes host mode keeps while a fault holds."""
        found = {}
        for pid in processes_mentioning(str(self.state)):
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if argv[0] == bytes(PeakMemory.TIME):
                    continue
                role = "watchdog" if b"faultmesh.host.watchdog" in argv else "faultmesh run"
                found[role] = vm_rss_kib(pid)
        return found

    def close(self) -> list[str]:
        problems = []
        for name, (process, _) in self.runs.items():
            problems.append(f"faultmesh run {name} was still running")
            process.kill()
            process.wait()
        return problems


class ChaosdTool:
    """chaosd's own commands. Its SQLite file is written beside the binary, so each bench runs a copy."""

    name, label = "chaosd", "chaosd attack / recover"
    UID = re.compile(r"uid: ([0-9a-f-]{36})")

    def __init__(self, binary: Path, lab: HostLab, cgroup: MeasuredCgroup, workdir: Path) -> None:
        self.lab, self.cgroup = lab, cgroup
        self.dir = workdir / "chaosd"
        self.dir.mkdir()
        self.binary = self.dir / "chaosd"
        shutil.copy2(binary, self.binary)
        self.peaks = PeakMemory(workdir)

    def _in_netns(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.lab.source_ns, str(self.binary), *argv]

    def inject(self, fault: Fault, number: int) -> Injected:
        if fault == "partition":
            argv = self._in_netns(
                "attack",
                "network",
                "partition",
                "--device",
                self.lab.device,
                "--ip",
                PEER_ADDRESS,
                "--direction",
                "both",
            )
        else:  # chaosd stresses from where it runs: start it in the target's cgroup
            argv = [
                "sh",
                "-c",
                'echo $$ > "$0" && exec "$@"',
                str(self.cgroup.procs_file),
                str(self.binary),
                "attack",
                "stress",
                "cpu",
                "--workers",
                "1",
                "--load",
                "100",
            ]
        argv, rss = self.peaks.wrap(argv, number == 0)
        finished = run_timed(argv, cwd=self.dir)
        self.peaks.collect("chaosd attack", rss)
        match = self.UID.search(finished.stdout)
        if finished.code != 0 or match is None:
            raise RuntimeError(
                f"chaosd attack {fault}: exit {finished.code}: {finished.stdout.strip()} "
                f"{finished.stderr.strip()[-1500:]}"
            )
        return Injected(fault, number, match[1], finished.at)

    def recover(self, injected: Injected) -> float:
        argv = (
            self._in_netns("recover", injected.handle)
            if injected.fault == "partition"
            else [str(self.binary), "recover", injected.handle]
        )
        argv, rss = self.peaks.wrap(argv, injected.number == 0)
        finished = run_timed(argv, cwd=self.dir)
        self.peaks.collect("chaosd recover", rss)
        if finished.code != 0:
            raise RuntimeError(
                f"chaosd recover {injected.handle}: exit {finished.code}: "
                f"{finished.stdout.strip()} {finished.stderr.strip()[-1500:]}"
            )
        return finished.at

    def during_hold(self, injected: Injected) -> dict[str, int]:
        return {}

    def finish(self, injected: Injected) -> None:
        pass

    def close(self) -> list[str]:
        return []

    def idle_server_rss(self, settle: float) -> int:
        """VmRSS of ``chaosd server`` after it rested, run in the lab's namespace (its ports stay there)."""
        process = subprocess.Popen(
            self._in_netns("server", "--port", "31767"),
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(settle)
            if process.poll() is not None:
                raise RuntimeError(f"chaosd server exited {process.returncode}")
            return vm_rss_kib(process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def build_chaosd() -> tuple[Path | None, str]:
    """chaosd's binary from the test-bed cache (built on first use), or None and why not."""
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(CHAOSD_BUILD), "--path"], check=False, capture_output=True, text=True, timeout=3600
    )
    took = time.monotonic() - started
    if result.returncode != 0:
        return None, f"testbed/chaosd/build.sh exited {result.returncode}: {result.stderr.strip()[-3000:]}"
    note = f"built in {took:.0f} s" if took > 5 else "from the cache"
    return Path(result.stdout.strip().splitlines()[-1]), note


# ------------------------------------------------------------------------------------------ measuring


@dataclass
class Sample:
    """One inject+recover of one fault by one tool; times in seconds from the command's start."""

    inject_returned: float
    inject_observed: float
    recover_returned: float
    recover_observed: float
    recover_clean: float | None
    left: str = ""
    #: stress: the target cgroup's CPU use during the hold, in cores.
    cpu_share: float | None = None


@dataclass
class Series:
    tool: str
    fault: Fault
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    memory: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class Bench:
    lab: HostLab
    cgroup: MeasuredCgroup
    probes: dict[Fault, Probe]
    args: argparse.Namespace
    network_before: dict[str, str]

    def once(self, tool: Tool, fault: Fault, number: int, series: Series) -> Sample:
        probe, timeout = self.probes[fault], self.args.timeout
        watcher = Watcher(probe, "present", timeout)
        started = time.perf_counter()
        try:
            injected = tool.inject(fault, number)
        except BaseException:
            watcher.cancel()
            self.reset(fault)
            raise
        observed: float | None = None
        share: float | None = None
        problem = ""
        try:
            observed = watcher.result()
            if observed is None:
                problem = f"the {fault} was never observed in effect within {timeout:g} s"
            else:
                share = self.hold(tool, injected, series)
        except Exception as error:  # recover all the same
            problem = str(error)
        watcher = Watcher(probe, "absent", timeout)
        recover_started = time.perf_counter()
        try:
            recovered = tool.recover(injected)
            gone = watcher.result()
        except BaseException:
            watcher.cancel()
            self.reset(fault)
            raise
        clean, left = self.wait_clean(fault, recover_started)
        tool.finish(injected)
        if problem or observed is None:
            raise RuntimeError(problem)
        if gone is None:
            raise RuntimeError(f"the {fault} was still in effect {timeout:g} s after the recover command")
        return Sample(
            injected.returned - started,
            observed - started,
            recovered - recover_started,
            gone - recover_started,
            clean,
            left,
            share if fault == "stress" else None,
        )

    def hold(self, tool: Tool, injected: Injected, series: Series) -> float:
        """Let the fault hold for ``--hold`` seconds; the target cgroup's CPU use meanwhile, in cores."""
        usage, hold_started = self.cgroup.usage_ns(), time.perf_counter()
        for process, rss in tool.during_hold(injected).items():
            series.memory.setdefault(process, []).append(rss)
        time.sleep(max(0.0, self.args.hold - (time.perf_counter() - hold_started)))
        return (self.cgroup.usage_ns() - usage) / 1e9 / (time.perf_counter() - hold_started)

    def wait_clean(self, fault: Fault, since: float) -> tuple[float | None, str]:
        """When nothing of the fault was left; else (None, what was left), which is then removed."""
        deadline = time.perf_counter() + self.args.residue_wait
        while True:
            now = time.perf_counter()
            left = self.leftovers(fault)
            if not left:
                return now - since, ""
            if now >= deadline:
                self.reset(fault)
                return None, left
            time.sleep(0.005)

    def leftovers(self, fault: Fault) -> str:
        """What a fault left in the lab (empty when nothing): extra chains, rules and sets, or processes."""
        if fault == "partition":
            return residue(self.network_before, self.lab.network_state())
        return ", ".join(f"{pid} ({_comm(pid)})" for pid in self._strays())

    def _strays(self) -> list[int]:
        holder = self.lab.holder.pid if self.lab.holder else -1
        return [pid for pid in self.cgroup.pids() if pid != holder and not _zombie(pid)]

    def reset(self, fault: Fault) -> None:
        """Put the lab back as it was before the run, whatever a tool left."""
        if fault == "partition":
            if self.lab.network_state() != self.network_before:
                self.lab.restore_network(self.network_before)
            return
        for pid in self._strays():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@dataclass
class Report:
    machine: dict[str, str]
    runs: int
    load: dict[str, str] = field(default_factory=dict)
    quiet: bool = True
    series: list[Series] = field(default_factory=list)
    memory: dict[str, str] = field(default_factory=dict)
    #: Where the time of ``faultmesh run``/``recover`` goes (from the runner's journal).
    phases: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def netns_exec_cost(lab: HostLab, times: int = 11) -> float:
    """Median time of ``ip netns exec NS true``: what entering the namespace adds to each chaosd command."""
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        run("ip", "netns", "exec", lab.source_ns, "true")
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


@contextlib.contextmanager
def lab_and_workdir() -> Iterator[tuple[HostLab, MeasuredCgroup, Path, list[str]]]:
    """The lab, the target's cgroup and a temporary directory; all removed on the way out, leaks listed."""
    lab = HostLab()
    workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{lab.suffix}-"))
    cgroup: MeasuredCgroup | None = None
    problems: list[str] = []
    try:
        cgroup = MeasuredCgroup(f"{PREFIX}{lab.suffix}")
        lab.start()
        assert lab.holder is not None
        cgroup.add(lab.holder.pid)
        yield lab, cgroup, workdir, problems
    finally:
        problems += lab.close()
        for pid in processes_mentioning(str(workdir)):
            problems.append(f"process {pid} ({_comm(pid)}) of this bench outlived it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if cgroup is not None:
            problems += cgroup.remove()
        shutil.rmtree(workdir, ignore_errors=True)
        problems += [f"network namespace {name} is left" for name in _netns_names() if name.startswith(PREFIX)]


def _netns_names() -> list[str]:
    return [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line.strip()]


def bench(args: argparse.Namespace) -> Report:
    report = Report(machine(), args.runs)
    chaosd_binary: Path | None = None
    if "chaosd" in args.tools:
        chaosd_binary, note = build_chaosd()
        report.notes.append(f"chaosd: {note}" if chaosd_binary else f"chaosd left out: {note}")
    if "cli" in args.tools and importlib.util.find_spec("faultmesh.host.runner") is None:
        report.notes.append("cli left out: faultmesh.host.runner is not there yet")
        args.tools = [tool for tool in args.tools if tool != "cli"]
    report.load["before waiting"] = uptime()
    report.quiet = wait_for_quiet(args.max_load, args.max_wait)
    report.load["at the start"] = uptime()
    with lab_and_workdir() as (lab, cgroup, workdir, problems):
        full_before = lab.kernel_state()
        probes: dict[Fault, Probe] = {
            "partition": PartitionProbe(lab, args.probe_interval, args.probe_timeout),
            "stress": StressProbe(cgroup, args.probe_interval, args.burn / 1000),
        }
        tools: list[Tool] = []
        try:
            if "engine" in args.tools:
                tools.append(EngineTool(lab, workdir))
            if "cli" in args.tools:
                tools.append(CliTool(lab, workdir))
            if chaosd_binary is not None:
                tools.append(ChaosdTool(chaosd_binary, lab, cgroup, workdir))
                report.notes.append(
                    f"`ip netns exec` alone (median of 11): {1000 * netns_exec_cost(lab):.1f} ms; "
                    "each chaosd partition command pays it"
                )
            measure = Bench(lab, cgroup, probes, args, lab.network_state())
            faults: list[Fault] = [fault for fault in FAULTS if fault in args.faults]
            series = {(tool.name, fault): Series(tool.label, fault) for fault in faults for tool in tools}
            report.series = list(series.values())
            for number in range(args.runs + 1):  # run 0 is the untimed warm-up
                for tool in tools:
                    for fault in faults:
                        print(f"run {number}: {tool.name} {fault}", file=sys.stderr)
                        target = series[tool.name, fault]
                        try:
                            sample = measure.once(tool, fault, number, target)
                        except Exception as error:
                            target.errors.append(f"run {number}: {error}")
                            continue
                        if number > 0:
                            target.samples.append(sample)
            for tool in tools:
                peaks: PeakMemory | None = getattr(tool, "peaks", None)
                for process, values in (peaks.values if peaks else {}).items():
                    if values:
                        report.memory[f"{process} (peak RSS)"] = _mib(values)
                phases: dict[str, list[float]] = getattr(tool, "phases", {})
                report.phases.update({label: _ms(values) for label, values in phases.items()})
            for item in series.values():
                for process, values in item.memory.items():
                    report.memory[f"{process} while a {item.fault} holds (VmRSS)"] = _mib(values)
            for tool in tools:
                if isinstance(tool, ChaosdTool):
                    report.memory["chaosd server, idle (VmRSS)"] = f"{tool.idle_server_rss(args.settle) / 1024:.1f} MiB"
        finally:
            for tool in tools:
                problems.extend(tool.close())
            for probe in probes.values():
                probe.close()
        report.load["at the end"] = uptime()
        full_after = lab.kernel_state()
        changed = sorted(
            key for key in full_before.keys() | full_after.keys() if full_before.get(key) != full_after.get(key)
        )
        problems.extend(f"kernel state changed in {lab.source_ns}: {key}" for key in changed)
    report.problems += problems
    return report


# ------------------------------------------------------------------------------------------ report


def _mib(values: list[int]) -> str:
    return f"{statistics.median(values) / 1024:.1f} MiB (max {max(values) / 1024:.1f})"


def _ms(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{1000 * statistics.median(values):.0f} / {1000 * max(values):.0f}"


def render(report: Report, markdown: bool) -> str:
    header = ["fault", "tool", "inject returned", "effect seen", "recover returned", "effect gone", "clean", "residue"]
    rows = []
    for item in report.series:
        samples = item.samples
        cleaned = [s.recover_clean for s in samples if s.recover_clean is not None]
        left = sorted({s.left for s in samples if s.left})
        residue_text = "none" if not left else f"{len(samples) - len(cleaned)}/{len(samples)} runs: " + "; ".join(left)
        rows.append(
            [
                item.fault,
                item.tool,
                _ms([s.inject_returned for s in samples]),
                _ms([s.inject_observed for s in samples]),
                _ms([s.recover_returned for s in samples]),
                _ms([s.recover_observed for s in samples]),
                _ms(cleaned) if cleaned else "never",
                residue_text,
            ]
        )
    title = f"ms from the command's start, median / worst of {report.runs} runs (after one warm-up):"
    lines = [title, ""] if markdown else [title]
    lines += reporting.table(header, rows, markdown, align="llrrrrrl")
    lines.append("")
    bullet = "- " if markdown else ""
    for item in report.series:
        shares = [s.cpu_share for s in item.samples if s.cpu_share is not None]
        if shares:
            lines.append(
                f"{bullet}{item.tool}, stress: the target cgroup used {statistics.median(shares):.2f} "
                f"cores during the hold (median; lowest {min(shares):.2f}, p90 {percentile(shares, 0.9):.2f})"
            )
    lines += [f"{bullet}{what}: {value}" for what, value in report.memory.items()]
    lines += [f"{bullet}{phase}: {value} ms (median / worst)" for phase, value in report.phases.items()]
    lines += [f"{bullet}{note}" for note in report.notes]
    lines += reporting.conditions(bullet, report.load, report.machine, report.quiet)
    failures = [f"{item.fault} by {item.tool}: {error}" for item in report.series for error in item.errors]
    lines += reporting.outcome(bullet, failures, report.problems)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main


def _names(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(allowed)}")
        return names

    return parse


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per fault and tool (after one warm-up)")
    parser.add_argument(
        "--tools",
        type=_names(("engine", "cli", "chaosd")),
        default=["engine", "cli", "chaosd"],
        help="which of engine, cli, chaosd (comma-separated)",
    )
    parser.add_argument("--faults", type=_names(FAULTS), default=list(FAULTS), help="partition, stress")
    parser.add_argument("--hold", type=float, default=0.5, help="seconds a fault holds once observed")
    parser.add_argument("--probe-interval", type=float, default=0.002, help="seconds between probes")
    parser.add_argument(
        "--probe-timeout", type=float, default=0.1, help="seconds a connect may go unanswered before it counts as cut"
    )
    parser.add_argument("--burn", type=float, default=5.0, help="ms of stress-ng CPU that count as in effect")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an effect to show or go")
    parser.add_argument(
        "--residue-wait",
        type=float,
        default=2.0,
        help="seconds to wait after recovery for the kernel state to be as before",
    )
    parser.add_argument("--settle", type=float, default=5.0, help="seconds chaosd server rests before its RSS")
    parser.add_argument("--markdown", action="store_true", help="print Markdown (a table and a list)")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait for a 1-minute load average below this")
    parser.add_argument("--max-wait", type=float, default=600, help="seconds to wait for that at most")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/hostmode.py needs root (network namespaces, iptables, cgroups)", file=sys.stderr)
        return 2
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    report = bench(args)
    print(render(report, args.markdown))
    failed = any(item.errors for item in report.series) or report.problems
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
