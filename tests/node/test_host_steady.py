"""Steady-state guards on a real kernel: probes run from inside a target's network namespace, and judge it.

Two namespaces joined by a veth: ``srv`` runs a busybox httpd, ``cli`` holds a sleeping process that stands for
the target the probe runs from. The link-local addresses are not routable from the host, so only a probe that
really runs inside ``cli`` reaches the server. Stopping the server must fail the guard after exactly
``failureThreshold`` failures in a row. Afterwards no probe worker, server or holder is left, and the network lab
removes its namespaces (its fixture asserts that nothing of them remains).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testbed.containerd import NetNamespace, NetworkLab, VethLink

from faultmesh.host.steady import Guard, ProbeError, Sampler, measure_baseline

PORT = 8080
HUNG_PORT = 8081


@dataclass
class Site:
    """A web server in ``srv`` and a holder process in ``cli``, the namespace the probes run from."""

    srv: NetNamespace
    cli: NetNamespace
    link: VethLink
    server: subprocess.Popen[bytes]
    holder: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.link.addr_a}:{PORT}/"

    def stop_server(self) -> None:
        self.server.kill()
        self.server.wait()


def _enter(process: subprocess.Popen[bytes], ns: NetNamespace) -> None:
    """Wait until a process started by `ip netns exec` is inside ``ns``."""
    deadline = time.monotonic() + 10
    while os.stat(f"/proc/{process.pid}/ns/net").st_ino != ns.inode():
        assert time.monotonic() < deadline, f"process {process.pid} did not enter {ns.name}"
        time.sleep(0.01)


def _listening(ns: NetNamespace, port: int) -> bool:
    return f":{port} " in ns.run("ss", "-Hltn").stdout


@pytest.fixture
def site(lab: NetworkLab, tmp_path: Path) -> Iterator[Site]:
    srv, cli = lab.namespace("srv"), lab.namespace("cli")
    link = lab.link(srv, cli)
    (tmp_path / "index.html").write_text("steady\n")
    started: list[subprocess.Popen[bytes]] = []
    try:
        server = subprocess.Popen(["ip", "netns", "exec", srv.name, "busybox", "httpd", "-f", "-p", str(PORT),
                                   "-h", str(tmp_path)])
        started.append(server)
        holder = subprocess.Popen(["ip", "netns", "exec", cli.name, "sleep", "3600"])
        started.append(holder)
        _enter(holder, cli)
        deadline = time.monotonic() + 10
        while not _listening(srv, PORT):
            assert time.monotonic() < deadline, "busybox httpd did not start listening"
            time.sleep(0.02)
        yield Site(srv, cli, link, server, holder)
    finally:
        for process in started:
            process.kill()
            process.wait()


def _probe_workers() -> set[int]:
    """PIDs of probe workers that are children of this test process."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
        if parent == os.getpid() and b"probe_worker.py" in cmdline:
            found.add(int(entry.name))
    return found


async def _until(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def test_an_http_probe_from_a_target_s_namespace_fails_after_exactly_the_threshold(site: Site) -> None:
    guard = Guard.from_options(name="web", url=site.url, interval_seconds=0.25, timeout_seconds=1.0,
                               failure_threshold=3, from_pid=site.holder.pid, from_target="lab/cli")
    seen_at_failure: list[list[bool]] = []

    async def scenario() -> Sampler:
        sampler = Sampler(guard, on_failed=lambda s: seen_at_failure.append([x.ok for x in s.samples]))
        await sampler.start()
        try:
            worker = sampler._worker.process
            assert worker is not None and sampler._worker.netns == site.cli.inode()  # probing from inside cli
            await _until(lambda: len(sampler.samples) >= 5)
            assert sampler.verdict == "Healthy"
            assert all(sample.ok and sample.detail == "200" for sample in sampler.samples), sampler.samples
            site.stop_server()
            assert await asyncio.wait_for(sampler.wait(), 30) == "Failed"
            await _until(lambda: len(sampler.samples) >= len(seen_at_failure[0]) + 2)  # it measures on
        finally:
            await sampler.stop()
        assert worker.returncode is not None
        return sampler

    sampler = asyncio.run(scenario())
    (at_failure,) = seen_at_failure
    assert at_failure[-3:] == [False, False, False] and at_failure.count(False) == 3
    assert at_failure[:-3] == [True] * (len(at_failure) - 3)
    failed = [sample for sample in sampler.samples if not sample.ok]
    assert {sample.detail for sample in failed} == {"connection refused"}
    assert sampler.judge.reason == "FailureThresholdExceed" and sampler.judge.count == len(at_failure)
    probe = sampler.journal_probe()
    assert probe["verdict"] == "Failed" and probe["target"] == f"{site.url} (from lab/cli)"
    assert _probe_workers() == set()


def test_the_same_url_is_unreachable_from_the_host(site: Site) -> None:
    # The effect the namespace buys: from the host's own namespace the link-local server cannot be reached.
    guard = Guard.from_options(name="web", url=site.url, interval_seconds=0.2, timeout_seconds=0.5,
                               failure_threshold=2)
    baseline = asyncio.run(measure_baseline(guard, count=2, interval_seconds=0.1))
    assert [sample.ok for sample in baseline.samples] == [False, False]
    inside = asyncio.run(measure_baseline(guard.resolved(site.holder.pid), count=3, interval_seconds=0.1))
    assert [sample.ok for sample in inside.samples] == [True, True, True]
    assert inside.sentence().startswith("steady state: 3/3 ok (100%), latency median ")
    assert _probe_workers() == set()


def test_a_command_probe_runs_inside_the_namespace_and_fails_when_the_server_goes(site: Site) -> None:
    # The device exists only in cli, so the command passes only where the probe claims to run. (No wget -T:
    # Debian's busybox 1.35 wget crashes with it; the probe timeout bounds the command anyway.)
    check = f"ip -o addr show dev {site.link.if_b} >/dev/null && busybox wget -q -O - {site.url} >/dev/null"
    guard = Guard.from_options(name="wget", command=["sh", "-c", check], interval_seconds=0.25,
                               timeout_seconds=2.0, failure_threshold=2, from_pid=site.holder.pid)
    failures: list[int] = []

    async def scenario() -> Sampler:
        sampler = Sampler(guard, on_failed=lambda s: failures.append(len(s.samples)))
        async with sampler:
            await _until(lambda: len(sampler.samples) >= 3)
            assert [sample.detail for sample in sampler.samples[:3]] == ["exit 0"] * 3
            site.stop_server()
            assert await asyncio.wait_for(sampler.wait(), 30) == "Failed"
        return sampler

    sampler = asyncio.run(scenario())
    samples = sampler.samples
    assert failures and [sample.ok for sample in samples[: failures[0]]][-2:] == [False, False]
    assert samples[failures[0] - 1].detail.startswith("exit 1")
    assert _probe_workers() == set()


def test_a_server_that_never_answers_times_out_within_the_probe_timeout(site: Site) -> None:
    hung = subprocess.Popen(["ip", "netns", "exec", site.srv.name, sys.executable, "-c",
                             f"import socket, time; s = socket.socket(); s.bind(('0.0.0.0', {HUNG_PORT})); "
                             "s.listen(64); time.sleep(3600)"])
    try:
        deadline = time.monotonic() + 10
        while not _listening(site.srv, HUNG_PORT):
            assert time.monotonic() < deadline, "the hung server did not listen"
            time.sleep(0.02)
        guard = Guard.from_options(name="hung", url=f"http://{site.link.addr_a}:{HUNG_PORT}/",
                                   interval_seconds=0.2, timeout_seconds=0.5, from_pid=site.holder.pid)
        baseline = asyncio.run(measure_baseline(guard, count=2, interval_seconds=0.1))
    finally:
        hung.kill()
        hung.wait()
    assert [(sample.ok, sample.detail) for sample in baseline.samples] == [(False, "timed out after 0.5 s")] * 2
    assert all(sample.latency_ms is not None and sample.latency_ms >= 500 for sample in baseline.samples)


def test_a_probe_from_a_process_that_is_gone_is_refused_clearly(site: Site) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    guard = Guard.from_options(url=site.url, from_pid=gone.pid)

    async def scenario() -> None:
        await Sampler(guard).start()

    with pytest.raises(ProbeError, match=rf"^cannot probe from process {gone.pid}: no such process$"):
        asyncio.run(scenario())


def test_the_worker_exits_when_its_parent_is_killed(site: Site, tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, sys
        from faultmesh.host.steady import Guard, Sampler

        async def main():
            guard = Guard.from_options(url={site.url!r}, interval_seconds=0.2, from_pid={site.holder.pid})
            sampler = Sampler(guard)
            await sampler.start()
            print(sampler._worker.process.pid, flush=True)
            await asyncio.sleep(3600)

        asyncio.run(main())
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        worker_pid = int(parent.stdout.readline())
        assert Path(f"/proc/{worker_pid}").exists()
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 15
        while _alive(worker_pid):
            assert time.monotonic() < deadline, f"probe worker {worker_pid} outlived its parent"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def test_stopping_during_a_slow_command_probe_kills_the_command(site: Site) -> None:
    marker = f"29.{os.getpid()}{int(time.time() * 1000) % 100000}"
    guard = Guard.from_options(name="slow", command=["sh", "-c", f"sleep {marker}; true"], interval_seconds=1,
                               timeout_seconds=60, from_pid=site.holder.pid)

    def running() -> list[int]:
        return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, marker)]

    async def scenario() -> None:
        sampler = Sampler(guard)
        await sampler.start()
        await _until(lambda: len(running()) >= 1)  # the probe command is under way
        await sampler.stop()

    asyncio.run(scenario())
    deadline = time.monotonic() + 10
    while [pid for pid in running() if _alive(pid)]:
        assert time.monotonic() < deadline, f"probe command left running: {running()}"
        time.sleep(0.05)
    assert _probe_workers() == set()


def _cmdline_has(entry: Path, marker: str) -> bool:
    try:
        return marker.encode() in (entry / "cmdline").read_bytes()
    except OSError:
        return False
