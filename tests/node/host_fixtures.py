"""A host-mode lab for the node tests of ``faultmesh run`` and its commands, driven through the real CLI.

``HostLab`` sets up, under one random tag: two network namespaces joined by a veth (``client`` and ``web``) with
a holder process in each and a busybox httpd in ``web``; a plain ``sleep`` (``worker``) in cgroups of its own,
for StressChaos; an inventory file naming the three (``netns:`` and ``pid:`` entries, in an inventory namespace
of the lab's own); and a private ``--state-dir``. It runs ``faultmesh`` as a child process, reads the store as
the CLI leaves it, and takes snapshots of everything a fault may leave behind (iptables, nft, ipset, tc in both
namespaces, spawned processes, processes inside the namespaces, cgroup members), so a test can compare the
snapshot taken after a run with the one taken before.

Teardown removes everything, pass or fail, and reports what it had to clean up by force (a watchdog still
running, a spawned process still alive) as an error of the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lab_parts import (
    CGROUP_ROOT,
    Proc,
    kernel_state,
    make_cgroups,
    prime_tables,
    processes,
    remove_cgroups,
    running,
    wait_inside,
)
from testbed.containerd import NetworkLab, VethLink

from faultmesh.host.store import ExperimentRow, Store

#: The console script of this venv: the same entry point a user runs.
FAULTMESH = str(Path(sys.executable).with_name("faultmesh"))
HTTP_PORT = 8080
#: How long one traffic check waits for the server; a partition drops packets, so it waits this long.
CONNECT_TIMEOUT = 1.0
#: Generous deadlines for things that must happen eventually; reaching one fails the test, they are no benchmark.
EVENTUALLY = 60.0

_HTTP_GET = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as s:
        s.sendall(b"GET / HTTP/1.0\\r\\nHost: web\\r\\n\\r\\n")
        reply = s.recv(64).split()
    print(reply[1].decode() if len(reply) > 1 else "empty")
except OSError as error:
    print("blocked", type(error).__name__)
    sys.exit(1)
"""


def sh(*argv: str, check: bool = True, timeout: float = 60) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Runner:
    """A ``faultmesh run`` in the background; its output (stdout and stderr merged) is read as it comes."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        bufsize=1, env=_child_env())
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def count(self, pattern: str) -> int:
        with self._changed:
            return sum(1 for line in self.lines if re.search(pattern, line))

    def wait_for(self, pattern: str, times: int = 1, timeout: float = EVENTUALLY) -> None:
        """Wait until ``times`` lines match ``pattern``; fails if the runner ends (or the deadline passes) first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(1 for line in self.lines if re.search(pattern, line)) < times:
                if not self._reader.is_alive():
                    raise AssertionError(f"the runner ended before printing {pattern!r} x{times}:\n{self.output}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {pattern!r} x{times} within {timeout:g} s:\n{self.output}")
                self._changed.wait(min(left, 0.5))

    def wait(self, timeout: float = EVENTUALLY) -> int:
        """Its exit code; a runner that hangs is made to dump its threads' stacks (faulthandler) into the failure."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            self._reader.join(10)
            raise AssertionError(f"the runner did not exit within {timeout:g} s; its output and stacks:\n"
                                 f"{self.output}") from None
        self._reader.join(10)
        return code

    def kill(self, sig: int = signal.SIGKILL) -> float:
        """Send ``sig``; returns the moment it was sent (time.monotonic)."""
        at = time.monotonic()
        self.process.send_signal(sig)
        return at

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self._reader.join(10)


def _child_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "FAULTMESH_STATE_DIR"}
    env["NO_COLOR"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # a hung runner dumps its stacks on SIGABRT (see Runner.wait)
    env["COLUMNS"] = "400"  # one event per line, however long
    return env


@dataclass
class HostLab:
    tmp: Path
    net: NetworkLab = field(default_factory=NetworkLab)
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    runners: list[Runner] = field(default_factory=list)
    cgroups: list[Path] = field(default_factory=list)
    #: Experiment uids seen in the store (a deleted one leaves it), to find the processes they spawned.
    uids: set[str] = field(default_factory=set)
    #: Process groups of spawned processes seen while a fault was in: none of them may outlive recovery.
    spawned_groups: set[int] = field(default_factory=set)

    # ---- setup / teardown ----------------------------------------------------------------------------------

    def start(self) -> None:
        self.namespace = f"fmt-{self.net.tag}"  # the inventory namespace: the lab's alone
        self.state_dir = self.tmp / "state"
        self.client = self.net.namespace("client")
        self.web = self.net.namespace("web")
        self.link: VethLink = self.net.link(self.client, self.web)
        for ns in (self.client, self.web):
            prime_tables(ns)
        self.client_holder = self._spawn(["ip", "netns", "exec", self.client.name, "sleep", "3600"])
        self.web_holder = self._spawn(["ip", "netns", "exec", self.web.name, "sleep", "3600"])
        docroot = self.tmp / "www"
        docroot.mkdir()
        (docroot / "index.html").write_text("hello from web\n")
        self.server = self._spawn(["ip", "netns", "exec", self.web.name, "busybox", "httpd", "-f",
                                   "-p", f"{self.web_address}:{HTTP_PORT}", "-h", str(docroot)])
        self.worker = self._spawn(["sleep", f"3600.{secrets.randbelow(10**6):06d}"])
        make_cgroups(f"fmt-host-{self.net.tag}", self.worker.pid, self.cgroups)
        self.inventory = self.tmp / "inventory.yaml"
        self.inventory.write_text(
            "targets:\n"
            f"  - {{namespace: {self.namespace}, name: client, labels: {{app: client}}, netns: {self.client.name}}}\n"
            f"  - {{namespace: {self.namespace}, name: web, labels: {{app: web}}, netns: {self.web.name}}}\n"
            f"  - {{namespace: {self.namespace}, name: worker, labels: {{app: worker}}, pid: {self.worker.pid}}}\n"
        )
        self._wait_entered()
        deadline = time.monotonic() + EVENTUALLY
        while self.http() != "200":
            assert time.monotonic() < deadline, "the lab's httpd never answered"
            time.sleep(0.1)

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        self.started.append(process)
        return process

    def _wait_entered(self) -> None:
        placed = ((self.client_holder, self.client), (self.web_holder, self.web), (self.server, self.web))
        wait_inside(placed, EVENTUALLY)

    def close(self) -> list[str]:
        """Remove everything; returns what had to be removed by force (each one a failure of the test)."""
        errors: list[str] = []
        for runner in self.runners:
            runner.stop()
        for proc in self._wait_watchdogs_gone(15.0):
            errors.append(f"watchdog {proc.pid} still running at teardown: {proc.cmdline}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        set_up = hasattr(self, "web")  # False when start() failed before the namespaces were made
        for proc in self.spawned() + (self.strangers_in_namespaces() if set_up else []):
            errors.append(f"process {proc.pid} ({proc.comm}) still alive at teardown")
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        for process in self.started:
            process.kill()
            process.wait()
        errors += remove_cgroups(self.cgroups, timeout=10)
        errors += self.net.close()
        errors += [f"left on the host: {item}" for item in self.net.residue()]
        return errors

    # ---- the CLI -------------------------------------------------------------------------------------------

    @property
    def web_address(self) -> str:
        return self.link.addr_b

    def write(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """``faultmesh ARGS --state-dir STATE`` to completion."""
        return subprocess.run([FAULTMESH, *args, "--state-dir", str(self.state_dir)], capture_output=True,
                              text=True, timeout=timeout, env=_child_env(), check=False)

    def run_argv(self, manifest: Path, *extra: str) -> list[str]:
        return [FAULTMESH, "run", str(manifest), "--inventory", str(self.inventory), "--state-dir",
                str(self.state_dir), *extra]

    def run(self, manifest: Path, *extra: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """``faultmesh run`` to completion."""
        return subprocess.run(self.run_argv(manifest, *extra), capture_output=True, text=True, timeout=timeout,
                              env=_child_env(), check=False)

    def start_run(self, manifest: Path, *extra: str) -> Runner:
        """``faultmesh run`` in the background."""
        runner = Runner(self.run_argv(manifest, *extra))
        self.runners.append(runner)
        return runner

    # ---- manifests -----------------------------------------------------------------------------------------

    def partition(self, name: str, duration: str | None = None) -> Path:
        """A two-way partition between ``web`` (selected) and ``client`` (its target), on the lab's veth."""
        return self.write(f"{name}.yaml", f"""\
apiVersion: chaos-mesh.org/v1alpha1
kind: NetworkChaos
metadata: {{name: {name}, namespace: {self.namespace}}}
spec:
  action: partition
  mode: all
  selector: {{namespaces: [{self.namespace}], labelSelectors: {{app: web}}}}
  direction: both
  target:
    mode: all
    selector: {{namespaces: [{self.namespace}], labelSelectors: {{app: client}}}}
  device: {self.link.if_b}
  targetDevice: {self.link.if_a}
{f"  duration: {duration}" if duration else ""}
""")

    def stress(self, name: str, duration: str | None = None) -> Path:
        """One CPU stressor at full load on ``worker``."""
        return self.write(f"{name}.yaml", f"""\
apiVersion: chaos-mesh.org/v1alpha1
kind: StressChaos
metadata: {{name: {name}, namespace: {self.namespace}}}
spec:
  mode: all
  selector: {{namespaces: [{self.namespace}], labelSelectors: {{app: worker}}}}
  stressors: {{cpu: {{workers: 1, load: 100}}}}
{f"  duration: {duration}" if duration else ""}
""")

    # ---- effects -------------------------------------------------------------------------------------------

    def http(self) -> str:
        """An HTTP GET from ``client`` to the httpd in ``web``: the status code, or ``blocked <error>``."""
        return sh("ip", "netns", "exec", self.client.name, sys.executable, "-I", "-S", "-c", _HTTP_GET,
                  self.web_address, str(HTTP_PORT), str(CONNECT_TIMEOUT), check=False).strip()

    def http_probe_command(self) -> str:
        """A steady-state probe command (for ``--probe-command``): exits 0 when the httpd in ``web`` answers."""
        script = self.write("http_get.py", _HTTP_GET)
        return f"{sys.executable} -I -S {script} {self.web_address} {HTTP_PORT} {CONNECT_TIMEOUT}"

    def wait_http(self, want_ok: bool, timeout: float = EVENTUALLY) -> str:
        """Poll until traffic flows (``want_ok``) or is blocked; returns the last answer."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.http()
            if (answer == "200") == want_ok:
                return answer
            assert time.monotonic() < deadline, f"traffic still {answer!r} after {timeout:g} s"
            time.sleep(0.1)

    def worker_cpu_ns(self) -> int:
        cpuacct = CGROUP_ROOT / "cpuacct" / f"fmt-host-{self.net.tag}" / "cpuacct.usage"
        if cpuacct.exists():
            return int(cpuacct.read_text())
        unified = CGROUP_ROOT / "unified" / f"fmt-host-{self.net.tag}" / "cpu.stat"
        usage = dict(line.split() for line in unified.read_text().splitlines())
        return int(usage["usage_usec"]) * 1000

    def cgroup_members(self) -> dict[str, set[int]]:
        return {str(d): {int(p) for p in (d / "cgroup.procs").read_text().split()} for d in self.cgroups}

    # ---- the store -----------------------------------------------------------------------------------------

    def rows(self) -> list[ExperimentRow]:
        if not (self.state_dir / "faultmesh.db").exists():
            return []
        with Store.open(self.state_dir) as store:
            rows = store.list()
        self.uids.update(row.uid for row in rows)
        return rows

    def row(self, name: str) -> ExperimentRow:
        found = [row for row in self.rows() if row.name == name]
        assert len(found) == 1, f"expected one row named {name}, found {found}"
        return found[0]

    def events(self, uid: str) -> list[tuple[str, str]]:
        with Store.open(self.state_dir) as store:
            return [(event.reason, event.message) for event in store.events(uid)]

    def wait_finished(self, name: str, timeout: float = EVENTUALLY) -> ExperimentRow:
        deadline = time.monotonic() + timeout
        while True:
            row = self.row(name)
            if not row.active:
                return row
            assert time.monotonic() < deadline, f"{row.key} still active after {timeout:g} s: {row}"
            time.sleep(0.1)

    def journal(self, row: ExperimentRow) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state_dir / "runs" / row.run_id / "journal.json").read_text())
        return data

    # ---- residue -------------------------------------------------------------------------------------------

    def kernel_state(self) -> dict[str, str]:
        state: dict[str, str] = {}
        for ns in (self.client, self.web):
            for key, value in kernel_state(ns).items():
                state[f"{ns.name} {key}"] = value
        return state

    def spawned(self) -> list[Proc]:
        """Live processes spawned for this lab's experiments (by their spawn tag, or their process group)."""
        self.rows()
        everything = processes()
        marks = [f"/{self.namespace}/", *self.uids]
        tagged = {p.pgid for p in everything if p.spawn_tag and any(mark in p.spawn_tag for mark in marks)}
        self.spawned_groups |= tagged
        return [p for p in everything if p.pgid in self.spawned_groups]

    def strangers_in_namespaces(self) -> list[Proc]:
        """Processes in the lab's namespaces other than the lab's own (a probe worker, an nsenter left over)."""
        inodes = {self.client.inode(), self.web.inode()}
        ours = {p.pid for p in self.started}
        return [p for p in processes() if p.netns in inodes and p.pid not in ours]

    def watchdogs(self) -> list[Proc]:
        mark = f"--state-dir {self.state_dir} "
        return [p for p in processes() if "faultmesh.host.watchdog" in p.cmdline and mark in p.cmdline + " "]

    def _wait_watchdogs_gone(self, timeout: float) -> list[Proc]:
        deadline = time.monotonic() + timeout
        while (left := self.watchdogs()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left

    def snapshot(self) -> dict[str, Any]:
        """What a fault may change, in a form equal before and after when it left nothing."""
        return {
            "kernel": self.kernel_state(),
            "spawned": sorted((p.pid, p.comm) for p in self.spawned()),
            "in namespaces": sorted((p.pid, p.comm) for p in self.strangers_in_namespaces()),
            "cgroups": self.cgroup_members(),
        }

    def wait_clean(self, baseline: dict[str, Any], timeout: float = EVENTUALLY) -> float:
        """Poll until the snapshot equals ``baseline``; returns when it first did (time.monotonic)."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.snapshot()
            at = time.monotonic()
            if now == baseline:
                return at
            if at > deadline:
                assert now == baseline  # pytest shows the difference
            time.sleep(0.05)

    def assert_all_gone(self, baseline: dict[str, Any]) -> None:
        """After a run: nothing of it is left, and its watchdog has exited."""
        assert self.snapshot() == baseline
        left = self._wait_watchdogs_gone(EVENTUALLY)
        assert not left, f"watchdogs still running: {left}"


@pytest.fixture(name="host_lab")
def host_lab_fixture(tmp_path: Path) -> Iterator[HostLab]:
    with running(HostLab(tmp_path)) as lab:
        yield lab
