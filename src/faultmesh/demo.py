"""``make demo``: host mode, end to end, on this machine, in about a minute.

It builds a tiny service — a busybox ``httpd`` container ("web") and a client container ("client") in
their own network namespaces, joined by a veth pair, run by a private containerd — and probes the web page
from inside the client's namespace four times a second. It measures the steady state, then runs the
manifests of ``examples/host/`` one after the other through the ordinary host-mode runner (the same code
as ``faultmesh run``): a partition, a bandwidth limit, a CPU stress and a container kill. For each it shows
what the fault did (probe success, download time, CPU used by the container) and that recovery was
verified; then it writes one report of the whole sequence (HTML + PNG: the probe over time, each fault's
window shaded) and removes everything it made.

Needs root, containerd + runc, iptables, ipset, tc and stress-ng (``make demo`` installs them on Debian).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "host"
REPORT_DIR = Path("demo-report")
NAMESPACE = "demo"
PAGE = "/index.html"
BIG = "/big.bin"
BIG_BYTES = 256 * 1024
PROBE_INTERVAL = 0.25
BASELINE_SECONDS = 3.0
#: What a machine needs, command → Debian package, said when something is missing.
NEEDED = {"ip": "iproute2", "tc": "iproute2", "iptables": "iptables", "ipset": "ipset", "nsenter": "util-linux",
          "stress-ng": "stress-ng", "containerd": "containerd", "runc": "runc"}

BROKEN = """\
apiVersion: chaos-mesh.org/v1alpha1
kind: NetworkChaos
metadata: {name: typo, namespace: demo}
spec:
  action: delay
  mode: all
  selector: {labelSelectors: {app: web}}
  delay: {latency: 10x}
"""


class DemoError(Exception):
    """The demo cannot run here; the message says what to do."""


def preflight() -> None:
    if os.geteuid() != 0:
        raise DemoError("the demo needs root: it creates network namespaces and containers (try: sudo make demo)")
    missing = sorted({package for command, package in NEEDED.items() if shutil.which(command) is None})
    if missing:
        raise DemoError(f"missing: {', '.join(missing)}; install them (Debian: apt-get install {' '.join(missing)}, "
                        "or `make sysdeps`) and run the demo again")
    if not EXAMPLES.is_dir():
        raise DemoError(f"{EXAMPLES} is missing: run the demo from a faultmesh checkout (`make demo`)")


# ---- the service ----------------------------------------------------------------------------------------


@dataclass
class Service:
    """Two containers in two network namespaces joined by a veth pair named eth0 on both sides."""

    containerd: Any
    lab: Any
    web_ip: str
    client_ip: str
    web_pid: int
    client_pid: int

    def close(self) -> list[str]:
        errors: list[str] = []
        try:
            self.containerd.close()
        except Exception as error:
            errors.append(f"containerd: {error}")
        errors += self.lab.close()
        return errors


WEB_SCRIPT = (
    "mkdir -p /www && echo '<h1>faultmesh demo</h1>' > /www/index.html && "
    f"dd if=/dev/zero of=/www{BIG} bs=1024 count={BIG_BYTES // 1024} 2>/dev/null && exec httpd -f -p 80 -h /www"
)


def build_service(say: Callable[[str], None]) -> Service:
    sys.path.insert(0, str(REPO))
    from testbed.containerd import Containerd, NetworkLab
    from testbed.containerd.netns import ip

    say("starting a private containerd and importing a busybox image built from Debian's busybox-static")
    containerd = Containerd.start(namespace=NAMESPACE)
    lab = NetworkLab()
    try:
        containerd.import_image()
        client_ns, web_ns = lab.namespace("client"), lab.namespace("web")
        link = lab.link(client_ns, web_ns)
        # Chaos Mesh's default device is eth0; name both ends so, and the manifests stay as a user writes them.
        for ns, name in ((client_ns, link.if_a), (web_ns, link.if_b)):
            ip("-n", ns.name, "link", "set", name, "down")
            ip("-n", ns.name, "link", "set", name, "name", "eth0")
            ip("-n", ns.name, "link", "set", "eth0", "up")
        say("starting the web container (busybox httpd) and the client container")
        web = containerd.run("web", ["sh", "-c", WEB_SCRIPT], labels={"app": "web"}, netns=web_ns.path)
        client = containerd.run("client", ["sleep", "3600"], labels={"app": "client"}, netns=client_ns.path)
        return Service(containerd, lab, link.addr_b, link.addr_a, web.pid, client.pid)
    except BaseException:
        containerd.close()
        lab.close()
        raise


def in_client(service: Service, code: str, timeout: float = 30.0) -> str:
    """Run Python inside the client's network namespace (a subprocess: never join a namespace here)."""
    result = subprocess.run(
        ["nsenter", f"--net=/proc/{service.client_pid}/ns/net", sys.executable, "-c", code],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    return result.stdout.strip()


def download_seconds(service: Service, timeout: float = 20.0) -> float | None:
    """Seconds to fetch the big file from inside the client; None when it cannot be fetched."""
    code = (
        "import time,urllib.request\n"
        "t=time.monotonic()\n"
        "try:\n"
        f"  n=len(urllib.request.urlopen('http://{service.web_ip}{BIG}', timeout={timeout}).read())\n"
        "  print(time.monotonic()-t if n else -1)\n"
        "except Exception:\n"
        "  print(-1)\n"
    )
    text = in_client(service, code, timeout=timeout + 5)
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 else None


def cpu_seconds(pid: int) -> float | None:
    """CPU time used by the cgroup of ``pid`` (cgroup v1 cpuacct or v2 cpu.stat), in seconds."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            for mount in ("cpu,cpuacct", "cpuacct,cpu", "cpuacct"):
                usage = Path(f"/sys/fs/cgroup/{mount}{path}/cpuacct.usage")
                if usage.exists():
                    return int(usage.read_text()) / 1e9
        if controllers == "":
            stat = Path(f"/sys/fs/cgroup{path}/cpu.stat")
            if stat.exists():
                for row in stat.read_text().splitlines():
                    if row.startswith("usage_usec"):
                        return int(row.split()[1]) / 1e6
    return None


def cpu_percent(pid: int, seconds: float = 2.0) -> float | None:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    after = cpu_seconds(pid)
    if before is None or after is None:
        return None
    return 100.0 * (after - before) / seconds


# ---- the sequence ---------------------------------------------------------------------------------------


@dataclass
class FaultRow:
    manifest: Path
    title: str
    state: str = "waiting"
    injected_in: float | None = None
    recovered_verified: bool | None = None
    effect: str = ""
    baseline: str = ""
    outcome: str = ""
    window: tuple[float, float | None] | None = None
    journal: dict[str, Any] = field(default_factory=dict)


def table(rows: list[FaultRow], steady: str) -> Table:
    view = Table(title=f"faultmesh demo — steady state: {steady}", title_justify="left", expand=False)
    for column in ("fault (examples/host/)", "state", "injected", "effect while injected", "steady state",
                   "recovered"):
        view.add_column(column)
    for row in rows:
        injected = f"{row.injected_in * 1000:.0f} ms" if row.injected_in is not None else ""
        recovered = {None: "", True: "[green]verified[/green]", False: "[red]not verified[/red]"}[
            row.recovered_verified]
        view.add_row(escape(row.title), escape(row.state), injected, escape(row.effect), escape(row.baseline),
                     recovered)
    return view


def probe_stats(samples: list[Any], start: float, end: float | None) -> tuple[int, int, float | None]:
    chosen = [s for s in samples if s.at >= start and (end is None or s.at <= end)]
    ok = [s for s in chosen if s.ok]
    latency = statistics.median(s.latency_ms for s in ok if s.latency_ms is not None) if ok else None
    return len(ok), len(chosen), latency


async def run_sequence(console: Console, service: Service, state: Path) -> tuple[list[FaultRow], dict[str, Any]]:
    from .host.runner import TargetOptions, load_experiment, new_uid, prepare, run_prepared
    from .host.state import Layout
    from .host.steady import Guard, Sampler

    layout = Layout(state)
    options = TargetOptions(containerd_socket=service.containerd.socket, containerd_namespace=NAMESPACE)
    guard = Guard.from_options(name="web page", url=f"http://{service.web_ip}{PAGE}", interval_seconds=PROBE_INTERVAL,
                               timeout_seconds=1.0, failure_threshold=1_000_000, from_pid=service.client_pid,
                               from_target=f"{NAMESPACE}/client")
    sampler = Sampler(guard)
    await sampler.start()
    try:
        await asyncio.sleep(BASELINE_SECONDS)
        ok, total, latency = probe_stats(sampler.samples, 0, None)
        steady = f"{ok}/{total} probes ok, median {latency:.1f} ms" if latency is not None else f"{ok}/{total} ok"
        base_download = await asyncio.to_thread(download_seconds, service)
        base_cpu = await asyncio.to_thread(cpu_percent, service.web_pid, 1.0)
        rows = [FaultRow(path, path.name) for path in sorted(EXAMPLES.glob("*.yaml"))]
        with Live(table(rows, steady), console=console, refresh_per_second=4) as live:
            for row in rows:
                await run_one(row, layout, options, service, sampler, live, rows, steady,
                              base_download, base_cpu, load_experiment, prepare, new_uid, run_prepared)
                live.update(table(rows, steady))
    finally:
        await sampler.stop()
    return rows, sampler.journal_probe()


async def run_one(row: FaultRow, layout: Any, options: Any, service: Service, sampler: Any, live: Live,
                  rows: list[FaultRow], steady: str, base_download: float | None, base_cpu: float | None,
                  load_experiment: Any, prepare: Any, new_uid: Any, run_prepared: Any) -> None:
    resource, _, _ = load_experiment(row.manifest)
    action = getattr(resource.spec, "action", "")
    row.title = f"{row.manifest.name}: {resource.kind} {action}".strip()
    uid = new_uid()
    prepared = prepare(resource, options.inventory(), uid, seed="demo")
    injected = asyncio.Event()
    expected = len(prepared.works)
    applied: list[float] = []

    def on_progress(line: Any) -> None:
        if line.reason == "Applied":
            applied.append(line.at)
            if len(applied) >= expected:
                row.state = "injected"
                injected.set()
        elif line.reason in ("TimeUp", "Stopping"):
            row.state = "recovering"
        elif line.reason == "Failed":
            row.state = f"retrying: {line.message}"
        live.update(table(rows, steady))

    row.state = "injecting"
    live.update(table(rows, steady))
    task = asyncio.create_task(run_prepared(layout, prepared, uid, options, on_progress=on_progress))
    waiter = asyncio.create_task(injected.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if injected.is_set():
        row.effect, row.baseline = await measure(resource, service, sampler, base_download, base_cpu)
        live.update(table(rows, steady))
    result = await task
    waiter.cancel()
    journal = json.loads((result.run_dir / "journal.json").read_text())
    row.journal = journal
    row.outcome = result.outcome
    row.injected_in = inject_latency(journal)
    if not row.effect and journal.get("windows"):
        # Probes that ran entirely inside the fault's window, from the run's own journal.
        window = journal["windows"][0]
        ok, total, latency = probe_stats(sampler.samples, window["start"], (window["end"] or time.time()) - 1.0)
        row.effect = f"{ok}/{total} probes ok" + (f", {latency:.1f} ms" if latency is not None else "")
        row.baseline = steady_line(sampler, 0, BASELINE_SECONDS)
    one_shot = resource.kind == "PodChaos"
    row.recovered_verified = True if one_shot else all(t["recovered_verified"] for t in journal["targets"])
    row.state = f"{result.outcome}" + (" (one-shot)" if one_shot else "")
    if one_shot:
        # The effect of a kill shows after it: the probe fails from then on, and the container has stopped.
        await asyncio.sleep(1.5)
        ok, total, _ = probe_stats(sampler.samples, time.time() - 1.5, None)
        status = service.containerd.tasks().get("web", (0, "MISSING"))[1]
        row.effect = f"web task {status}; {total - ok}/{total} probes failed since"
        row.baseline = steady_line(sampler, 0, BASELINE_SECONDS)


def inject_latency(journal: dict[str, Any]) -> float | None:
    """Seconds from the experiment's start (desired phase Run) until its last target was verified injected."""
    started = [e["at"] for e in journal.get("events", []) if e["reason"] == "Started"]
    applied = [e["at"] for e in journal.get("events", []) if e["reason"] == "Applied"]
    if not applied:
        return None
    return float(max(applied) - (started[0] if started else journal["started_at"]))


def steady_line(sampler: Any, start: float, seconds: float) -> str:
    first = sampler.started_at or 0
    ok, total, latency = probe_stats(sampler.samples, first + start, first + start + seconds)
    return f"{ok}/{total} probes ok" + (f", {latency:.1f} ms" if latency is not None else "")


async def measure(resource: Any, service: Service, sampler: Any, base_download: float | None,
                  base_cpu: float | None) -> tuple[str, str]:
    """What the fault does while it is in place, next to the steady state."""
    action = getattr(resource.spec, "action", "")
    since = time.time()
    if resource.kind == "NetworkChaos" and action == "bandwidth":
        took = await asyncio.to_thread(download_seconds, service)
        effect = f"256 KiB download: {took:.2f} s" if took is not None else "256 KiB download failed"
        base = f"{base_download * 1000:.0f} ms" if base_download is not None else "?"
        return effect, f"256 KiB download: {base}"
    if resource.kind == "StressChaos":
        await asyncio.sleep(0.5)  # let the workers ramp up
        used = await asyncio.to_thread(cpu_percent, service.web_pid, 2.0)
        effect = f"web container CPU {used:.0f}%" if used is not None else "web container CPU: unreadable"
        base = f"web container CPU {base_cpu:.0f}%" if base_cpu is not None else "?"
        return effect, base
    del since
    return "", ""  # judged from the probe samples of the whole window once the run ends


def combined_journal(rows: list[FaultRow], probe: dict[str, Any], started: float) -> dict[str, Any]:
    """One run journal for the whole sequence: every fault's window and targets, one probe."""
    windows, targets, events = [], [], []
    for row in rows:
        journal = row.journal
        for window in journal.get("windows", []):
            windows.append({**window, "label": row.manifest.name})
        targets += journal.get("targets", [])
        events += journal.get("events", [])
    return {
        "version": 1,
        "run": f"demo-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(started))}",
        "experiment": {"kind": "Sequence", "namespace": NAMESPACE, "name": "examples/host", "uid": ""},
        "started_at": started,
        "finished_at": time.time(),
        "outcome": "Completed" if all(r.outcome == "Completed" for r in rows) else "Failed",
        "reason": "; ".join(f"{r.manifest.name}: {r.outcome}" for r in rows),
        "targets": targets,
        "windows": windows,
        "probe": probe,
        "events": sorted(events, key=lambda event: event["at"]),
    }


def show_refusal(console: Console, state: Path) -> None:
    """A broken manifest is refused before anything is touched, the field named."""
    path = state / "typo.yaml"
    path.write_text(BROKEN)
    command = [sys.executable, "-m", "faultmesh.cli", "run", str(path), "--state-dir", str(state)]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    console.print(f"A broken manifest (exit code {result.returncode}, nothing injected):", highlight=False)
    console.print(f"  [yellow]{escape(result.stderr.strip().splitlines()[0] if result.stderr.strip() else '?')}"
                  "[/yellow]", highlight=False)


def main() -> int:
    console = Console()
    console.rule("[bold]faultmesh demo — host mode[/bold]")
    try:
        preflight()
    except DemoError as error:
        console.print(f"[red]✗[/red] {escape(str(error))}", highlight=False)
        return 2
    begun = time.time()
    state = Path(tempfile.mkdtemp(prefix="faultmesh-demo-"))
    service: Service | None = None
    try:
        service = build_service(lambda text: console.print(f"• {escape(text)}", highlight=False))
        console.print(f"• web {service.web_ip} ← client {service.client_ip}; probing http://{service.web_ip}{PAGE} "
                      f"from the client every {PROBE_INTERVAL:g} s", highlight=False)
        rows, probe = asyncio.run(run_sequence(console, service, state))
        journal = combined_journal(rows, probe, begun)
        from .host.report import render

        REPORT_DIR.mkdir(exist_ok=True)
        (REPORT_DIR / "journal.json").write_text(json.dumps(journal, indent=2) + "\n")
        html, png = render(journal, REPORT_DIR)
        show_refusal(console, state)
        failed = [row for row in rows if row.outcome != "Completed" or row.recovered_verified is False]
        console.print(f"Report: [cyan]{escape(str(html))}[/cyan] and [cyan]{escape(str(png))}[/cyan]", highlight=False)
        status = ("[red]some faults did not complete[/red]" if failed
                  else "[green]every fault injected and recovered, verified[/green]")
        console.print(f"{status} in {time.time() - begun:.0f} s", highlight=False)
        return 1 if failed else 0
    except Exception as error:
        console.print(f"[red]✗ the demo failed:[/red] {escape(type(error).__name__)}: {escape(str(error))}",
                      highlight=False)
        return 1
    finally:
        if service is not None:
            for problem in service.close():
                console.print(f"[red]cleanup:[/red] {escape(problem)}", highlight=False)
            console.print("• removed the containers, the containerd and the network namespaces", highlight=False)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
