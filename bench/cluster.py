"""Benchmark: the controller on a real API server -- PodChaos on 1 and on 1,000 kwok pods, and its own cost.

The script starts its own test-bed cluster (``testbed/cluster up``: etcd, kube-apiserver, scheduler,
controller-manager, kwok) in a fresh state directory and takes it down at the end, pass or fail. It applies
the CRDs (``faultmesh crds | kubectl apply --server-side``), registers ``--nodes`` kwok nodes and creates bare
pods, placed round-robin on them by ``spec.nodeName`` (kwok makes them Running with a fake IP): 1 pod in
namespace ``bench-1``, ``--pods`` in ``bench-many``. It runs ``faultmesh controller --insecure-agents`` as a
subprocess (no webhook, metrics on a free port) and, for each case -- PodChaos pod-kill mode all, pod-kill
mode one, pod-failure mode all, at both sizes -- times ``--runs`` runs of:

* apply → AllInjected: from the create call until a watch on the experiment shows condition
  ``AllInjected=True``;
* delete → gone: from the delete call until the watch reports the object deleted, i.e. the controller
  released its finalizer ``chaos-mesh/records`` (for pod-failure only after every image was restored).

Each run is checked, untimed: as many records as targets, all Injected; the killed pods gone, or every
failed pod's images the pause image; after the delete, the original images back and no saved-image annotation.
kwok runs no containers, so pod-failure's effect is the spec change alone. Pods killed are created again
between runs (untimed). The 1-pod cases get one untimed warm-up run each and come first, so the
controller is warm for the 1,000-pod cases.

The controller's VmRSS (``/proc/PID/status``) is read idle on an empty cluster, idle with every pod in its
cache, sampled every 0.1 s during each case (peak) and idle after the runs; its CPU seconds
(utime+stime) per run and in total. With ``--profile DIR``, py-spy records the controller during each
large case (``DIR/<case>.txt``, collapsed stacks of the thread holding the GIL) and the report lists
where its Python CPU went.

    .venv/bin/python bench/cluster.py --markdown     # --runs 3, --pods 1000, --nodes 100, --profile DIR

It exits non-zero when a run failed (a timeout, a wrong effect) or the cluster did not come down cleanly;
timings are never judged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import reporting

from faultmesh.controller.informer import Change, Informer
from faultmesh.controller.kube import (
    DEFAULT_BURST,
    DEFAULT_QPS,
    NAMESPACES,
    NODES,
    PODS,
    Kube,
    KubeError,
    ResourceType,
    chaos_resource,
)
from faultmesh.controller.podactions import ANNOTATION_PREFIX, configured_pause_image
from faultmesh.controller.reconciler import API_SIDE_CONCURRENCY

REPO = Path(__file__).resolve().parents[1]
CLUSTER_CLI = REPO / "testbed" / "cluster"
PODCHAOS = chaos_resource("PodChaos", "podchaos")
SERVICE_ACCOUNTS = ResourceType("", "v1", "serviceaccounts", "ServiceAccount")
#: Every node and pod of the bench carries it; the bench's pod watch selects on it.
BENCH_LABEL = "faultmesh.io/bench"
KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
IMAGE = "faultmesh.local/busybox:latest"
CONTROLLER_NAMESPACE = "faultmesh"
SMALL_NAMESPACE, LARGE_NAMESPACE = "bench-1", "bench-many"
#: Concurrent creations when the bench fills the cluster (its own client has no rate limit).
CREATE_CONCURRENCY = 16
#: How often the controller's memory is sampled during a case.
SAMPLE_INTERVAL_S = 0.1
PR_SET_PDEATHSIG = 1


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ the cluster


class Cluster:
    """A ``testbed/cluster`` in a state directory of its own; :meth:`down` always runs (see :func:`bench`)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.kubeconfig: Path | None = None
        self.kubectl_path = ""

    def up(self) -> None:
        started = time.monotonic()
        # --owner-pid: should this process die without its teardown, the test-bed's watchdog stops the cluster.
        result = subprocess.run([str(CLUSTER_CLI), "up", f"--state-dir={self.state_dir}", f"--owner-pid={os.getpid()}"],
                                capture_output=True, text=True, timeout=3600, check=False)
        if result.returncode != 0:
            raise BenchError(f"testbed/cluster up failed ({result.returncode}):\n{result.stderr[-3000:]}")
        state = json.loads((self.state_dir / "cluster.json").read_text())
        self.kubeconfig = Path(state["kubeconfig"])
        self.kubectl_path = state["kubectl"]
        log(f"cluster up in {time.monotonic() - started:.1f} s ({state['server']})")

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 300) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        result = subprocess.run([self.kubectl_path, *args], input=stdin, capture_output=True, text=True, env=env,
                                timeout=timeout, check=False)
        if result.returncode != 0:
            raise BenchError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def down(self) -> str | None:
        """Stop everything and remove the state; a description of what went wrong, if anything."""
        result = subprocess.run([str(CLUSTER_CLI), "down", f"--state-dir={self.state_dir}"],
                                capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            return f"testbed/cluster down failed ({result.returncode}): {result.stderr[-2000:]}"
        if self.state_dir.exists():
            return f"testbed/cluster down left {self.state_dir}"
        return None


class BenchError(Exception):
    """The bench could not set up or measure; the message says what happened."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def faultmesh_command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("faultmesh")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "faultmesh.cli", *args]


def apply_crds(cluster: Cluster) -> None:
    crds = subprocess.run(faultmesh_command("crds"), capture_output=True, text=True, timeout=120, check=True).stdout
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=crds)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=120s", "crd", "--all")


# ------------------------------------------------------------------------------------------ the controller


_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    # The controller is not the test-bed's: nothing else would stop it if this process were killed outright.
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ControllerProcess:
    """``faultmesh controller --insecure-agents`` against the bench's cluster, logging to a file."""

    def __init__(self, kubeconfig: Path, workdir: Path, workers: int, extra: list[str]) -> None:
        self.log_path = workdir / "controller.log"
        self.metrics_port = free_port()
        self.command = faultmesh_command(
            "controller", f"--kubeconfig={kubeconfig}", f"--namespace={CONTROLLER_NAMESPACE}", "--insecure-agents",
            f"--metrics-port={self.metrics_port}", f"--workers={workers}", *extra,
        )
        self._log = self.log_path.open("ab")
        # Started before the bench runs any thread of its own, so the fork-then-call is safe.
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT,
                                        preexec_fn=_die_with_parent)  # noqa: PLW1509
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, size: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-size:]

    def wait_synced(self, timeout: float = 120) -> float:
        """Seconds from start until the controller leads and its caches are synced (its log says so)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"the controller exited ({self.process.returncode}):\n{self.log_tail()}")
            if "caches synced" in self.log_path.read_text(errors="replace"):
                return time.monotonic() - self.started
            time.sleep(0.1)
        raise BenchError(f"the controller did not sync its caches in {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> str | None:
        """SIGTERM (the controller releases its Lease and exits), SIGKILL after 30 s; what went wrong, if anything."""
        problem = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                status = self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                problem = "the controller did not stop within 30 s of SIGTERM; killed"
            else:
                if status != 0:
                    problem = f"the controller exited {status} on SIGTERM:\n{self.log_tail()}"
        else:
            problem = f"the controller had exited ({self.process.returncode}) before the end:\n{self.log_tail()}"
        self._log.close()
        return problem


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    return int(_status(pid)[key].split()[0]) / 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, every thread


@dataclass(frozen=True)
class Idle:
    """The controller at rest: memory, threads and CPU over a window."""

    rss_mib: float
    threads: int
    cpu_percent: float
    window: float


def idle_sample(pid: int, settle: float, window: float) -> Idle:
    time.sleep(settle)
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    used, elapsed = cpu_seconds(pid) - before, time.monotonic() - started
    return Idle(rss_mib(pid), int(_status(pid)["Threads"]), 100 * used / elapsed, elapsed)


class MemoryMonitor:
    """Samples the controller's VmRSS every 0.1 s in a thread and keeps the peak per label."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.label = "setup"
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            with contextlib.suppress(OSError, KeyError):
                rss = rss_mib(self.pid)
                self.peaks[self.label] = max(self.peaks.get(self.label, 0.0), rss)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Profiler:
    """``py-spy record`` attached to the controller for one case: collapsed stacks of the thread holding the GIL."""

    def __init__(self, pid: int, output: Path) -> None:
        self.output = output
        binary = Path(sys.executable).with_name("py-spy")
        # --gil samples only the thread running Python code, so waiting (event loop, idle pool threads) is not counted.
        command = [str(binary) if binary.exists() else "py-spy", "record", "--pid", str(pid), "--rate", "50",
                   "--nonblocking", "--gil", "--threads", "--format", "raw", "--output", str(output)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


#: Frames every stack of the controller starts with: they say nothing about where the time goes.
ENTRY_FRAMES = ("main (faultmesh/cli.py)", "controller_command (controller/main.py)")


def summarize_profile(path: Path, top: int = 12) -> list[str]:
    """Where the controller's Python CPU went: by thread, leaf functions (self), faultmesh frames (inclusive)."""
    if not path.exists():
        return [f"no profile written to {path}"]
    threads: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        if frames[0].startswith("thread ("):
            # "thread (123): ThreadPoolExecutor-0_2" -> "ThreadPoolExecutor-0": the pool's threads add up.
            threads[frames[0].partition(": ")[2].rsplit("_", 1)[0]] += count
            frames = frames[1:]
        named = [_frame(frame) for frame in frames] or ["(no Python frame)"]
        leaves[named[-1]] += count
        for frame in {short for raw, short in zip(frames, named, strict=False) if "faultmesh/" in raw}:
            if frame not in ENTRY_FRAMES:
                inclusive[frame] += count
    if not total:
        return [f"{path.name}: no samples"]
    share = ", ".join(f"{name} {100 * count / total:.0f} %" for name, count in threads.most_common())
    lines = [f"{path.name}: {total} samples at 50 Hz of the thread holding the GIL{f' ({share})' if share else ''}",
             "  self:"]
    lines += [f"    {100 * count / total:5.1f} %  {frame}" for frame, count in leaves.most_common(top)]
    lines.append("  inclusive (faultmesh frames):")
    lines += [f"    {100 * count / total:5.1f} %  {frame}" for frame, count in inclusive.most_common(top)]
    return lines


def _frame(frame: str) -> str:
    """``function (path/to/file.py:123)`` → ``function (file.py)``, so the lines of one function add up."""
    name, _, where = frame.partition(" (")
    filename = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(filename).parts
    short = "/".join(parts[-2:]) if "faultmesh" in parts else Path(filename).name
    return f"{name} ({short})" if filename else name


# ------------------------------------------------------------------------------------------ objects


def kwok_node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok",
                       BENCH_LABEL: "cluster"},
        },
        # kwok's nodes carry its taint, so nothing but pods meant for simulation lands there.
        "spec": {"taints": [KWOK_TAINT]},
    }


def bench_pod(namespace: str, name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "bench", BENCH_LABEL: "cluster"}},
        "spec": {
            "nodeName": node,
            "tolerations": [KWOK_TOLERATION],
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "app", "image": IMAGE}],
        },
    }


@dataclass(frozen=True)
class Case:
    action: str  # pod-kill or pod-failure
    mode: str  # all or one
    namespace: str
    pods: int

    @property
    def label(self) -> str:
        return f"{self.action} mode {self.mode}, {self.pods} pod{'s' if self.pods != 1 else ''}"

    @property
    def slug(self) -> str:
        return f"{self.action}-{self.mode}-{self.pods}"

    @property
    def targets(self) -> int:
        return self.pods if self.mode == "all" else 1

    def manifest(self, name: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"action": self.action, "mode": self.mode,
                                "selector": {"namespaces": [self.namespace], "labelSelectors": {"app": "bench"}}}
        if self.action == "pod-kill":
            spec["gracePeriod"] = 0  # Chaos Mesh's default (its field is not optional): the pod goes at once
        return {"apiVersion": PODCHAOS.api_version, "kind": PODCHAOS.kind,
                "metadata": {"name": name, "namespace": self.namespace}, "spec": spec}


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {str(c.get("type")): str(c.get("status")) for c in (obj.get("status") or {}).get("conditions") or ()}


def records(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list(((obj.get("status") or {}).get("experiment") or {}).get("containerRecords") or ())


# ------------------------------------------------------------------------------------------ watching


async def wait_until(what: str, predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


class ChaosTracker:
    """Watches PodChaos objects; notes when each first showed AllInjected=True and when it was deleted."""

    def __init__(self, kube: Kube) -> None:
        self.informer: Informer[dict[str, Any]] = Informer(kube, PODCHAOS, on_change=self._changed, name="podchaos")
        self.injected_at: dict[str, float] = {}
        self.gone_at: dict[str, float] = {}
        self.last: dict[str, dict[str, Any]] = {}

    def _changed(self, change: Change[dict[str, Any]]) -> None:
        now = time.monotonic()
        name = change.key[1]
        self.last[name] = change.obj
        if change.type == "deleted":
            self.gone_at.setdefault(name, now)
        elif conditions(change.obj).get("AllInjected") == "True":
            self.injected_at.setdefault(name, now)


class PodStock:
    """The bench's pods (a watch on its label): keeps each namespace filled, reads images and phases."""

    def __init__(self, kube: Kube, nodes: list[str]) -> None:
        self.kube = kube
        self.nodes = nodes
        self.informer: Informer[dict[str, Any]] = Informer(kube, PODS, label_selector=f"{BENCH_LABEL}=cluster",
                                                           name="bench pods")

    def pods(self, namespace: str) -> dict[str, dict[str, Any]]:
        return {name: pod for (ns, name), pod in list(self.informer.cache.items()) if ns == namespace}

    def running(self, namespace: str) -> int:
        return sum(1 for pod in self.pods(namespace).values() if _running(pod))

    async def fill(self, namespace: str, count: int, timeout: float) -> int:
        """Create whichever of pods ``p0000``... are missing and wait until all run; how many were created."""
        present = self.pods(namespace)
        missing = [(f"p{i:04d}", self.nodes[i % len(self.nodes)]) for i in range(count) if f"p{i:04d}" not in present]
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def create(name: str, node: str) -> None:
            async with gate:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        await self.kube.create(PODS, bench_pod(namespace, name, node))
                        return
                    except KubeError as error:
                        # A killed namesake may linger a moment in the API while our watch already dropped it.
                        if error.status != 409 or time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.2)

        await asyncio.gather(*(create(name, node) for name, node in missing))
        await wait_until(f"{count} pods Running in {namespace}", lambda: self.running(namespace) >= count, timeout,
                         interval=0.2)
        return len(missing)


def _running(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return (status.get("phase") == "Running" and bool(status.get("podIP"))
            and not (pod.get("metadata") or {}).get("deletionTimestamp"))


def _images(pod: dict[str, Any]) -> list[str]:
    return [str(c.get("image")) for c in (pod.get("spec") or {}).get("containers") or ()]


def _saved_images(pod: dict[str, Any]) -> list[str]:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return [key for key in annotations if key.startswith(f"{ANNOTATION_PREFIX}-")]


# ------------------------------------------------------------------------------------------ runs


@dataclass
class CaseResult:
    case: Case
    inject: list[float] = field(default_factory=list)
    recover: list[float] = field(default_factory=list)
    #: Controller CPU seconds per timed run, from the create call until the object was gone.
    cpu: list[float] = field(default_factory=list)
    #: Pods created again between runs (after pod-kill), and how long that took, untimed.
    refilled: int = 0
    refill_seconds: float = 0.0
    peak_rss_mib: float = 0.0
    #: The largest the experiment object got (JSON), which every status write sends whole.
    object_kib: float = 0.0
    errors: list[str] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)


class Runner:
    def __init__(self, kube: Kube, tracker: ChaosTracker, stock: PodStock, controller: ControllerProcess,
                 monitor: MemoryMonitor, timeout: float) -> None:
        self.kube = kube
        self.tracker = tracker
        self.stock = stock
        self.controller = controller
        self.monitor = monitor
        self.timeout = timeout
        self.pause_image = configured_pause_image()  # the controller inherits this environment

    async def case(self, case: Case, runs: int, warmups: int, profile_dir: Path | None) -> CaseResult:
        result = CaseResult(case)
        profiler = Profiler(self.controller.pid, profile_dir / f"{case.slug}.txt") if profile_dir else None
        self.monitor.label = case.slug
        try:
            for number in range(warmups + runs):
                timed = number >= warmups
                name = f"{case.slug}-{'r' if timed else 'w'}{number - warmups + 1 if timed else number + 1}"
                try:
                    inject, recover, cpu = await self.run(case, name, result)
                except (BenchError, KubeError) as error:
                    result.errors.append(f"{name}: {error}")
                    await self.clean_up(case, name)
                    break
                if timed:
                    result.inject.append(inject)
                    result.recover.append(recover)
                    result.cpu.append(cpu)
                log(f"{name}: apply→AllInjected {inject:.2f} s, delete→gone {recover:.2f} s, "
                    f"controller CPU {cpu:.2f} s{'' if timed else ' (warm-up)'}")
        finally:
            if profiler is not None:
                profiler.stop()
                result.profile = summarize_profile(profiler.output)
            self.monitor.label = "between cases"
        result.peak_rss_mib = self.monitor.peaks.get(case.slug, 0.0)
        return result

    async def run(self, case: Case, name: str, result: CaseResult) -> tuple[float, float, float]:
        if self.stock.running(case.namespace) < case.pods:  # a failed run before this one may have left a gap
            await self.refill(case, result)
        before = self.stock.pods(case.namespace)

        cpu_start = cpu_seconds(self.controller.pid)
        applied = time.monotonic()
        await self.kube.create(PODCHAOS, case.manifest(name))
        await wait_until(f"{name} AllInjected=True", lambda: name in self.tracker.injected_at, self.timeout)
        inject = self.tracker.injected_at[name] - applied
        await self.check_injected(case, name, before)

        deleted = time.monotonic()
        await self.kube.delete(PODCHAOS, name, case.namespace)
        await wait_until(f"{name} gone (finalizer released)", lambda: name in self.tracker.gone_at, self.timeout)
        recover = self.tracker.gone_at[name] - deleted
        cpu = cpu_seconds(self.controller.pid) - cpu_start
        await self.check_recovered(case, name, before)
        result.object_kib = max(result.object_kib, len(json.dumps(self.tracker.last[name])) / 1024)
        if case.action == "pod-kill":
            await self.refill(case, result)
        return inject, recover, cpu

    async def refill(self, case: Case, result: CaseResult) -> None:
        """Create the killed pods again and wait until they run (untimed)."""
        self.monitor.label = f"{case.slug} refill"
        started = time.monotonic()
        result.refilled += await self.stock.fill(case.namespace, case.pods, self.timeout)
        result.refill_seconds += time.monotonic() - started
        self.monitor.label = case.slug
        await asyncio.sleep(1.0)  # let the controller's pod watch see the new pods too

    async def check_injected(self, case: Case, name: str, before: dict[str, dict[str, Any]]) -> None:
        found = records(self.tracker.last[name])
        if len(found) != case.targets or any(r.get("phase") != "Injected" for r in found):
            phases = Counter(str(r.get("phase")) for r in found)
            raise BenchError(f"{name}: {len(found)} records ({dict(phases)}), expected {case.targets} Injected")
        targets = [str(r["id"]).split("/")[1] for r in found]
        if case.action == "pod-kill":
            uids = {pod_name: before[pod_name]["metadata"]["uid"] for pod_name in targets}

            def killed() -> bool:
                now = self.stock.pods(case.namespace)
                return all(now.get(n, {}).get("metadata", {}).get("uid") != uid for n, uid in uids.items())

            await wait_until(f"the {len(targets)} killed pods gone from the bench's watch", killed, 60, 0.1)
        else:
            def failed() -> bool:
                now = self.stock.pods(case.namespace)
                return all(n in now and set(_images(now[n])) == {self.pause_image} for n in targets)

            await wait_until(f"the pause image in the {len(targets)} pods", failed, 60, 0.1)

    async def check_recovered(self, case: Case, name: str, before: dict[str, dict[str, Any]]) -> None:
        if case.action != "pod-failure":
            return

        def restored() -> bool:
            now = self.stock.pods(case.namespace)
            return all(pod_name in now and _images(now[pod_name]) == _images(pod) and not _saved_images(now[pod_name])
                       for pod_name, pod in before.items())

        await wait_until(f"the original images back in {len(before)} pods, no saved-image annotation", restored, 60,
                         0.1)

    async def clean_up(self, case: Case, name: str) -> None:
        """After a failed run: delete the experiment; force its finalizer off if the controller cannot finish."""
        with contextlib.suppress(KubeError):
            await self.kube.delete(PODCHAOS, name, case.namespace, missing_ok=True)
        try:
            await wait_until(f"{name} gone", lambda: name in self.tracker.gone_at, 120)
        except BenchError:
            log(f"{name}: still there after 120 s; forcing its finalizer off")
            with contextlib.suppress(KubeError):
                await self.kube.merge_patch(PODCHAOS, name, {"metadata": {"annotations": {
                    "chaos-mesh.chaos-mesh.org/cleanFinalizer": "forced"}}}, case.namespace)


# ------------------------------------------------------------------------------------------ report


@dataclass
class Report:
    machine: dict[str, str]
    settings: dict[str, str] = field(default_factory=dict)
    setup: dict[str, str] = field(default_factory=dict)
    load: dict[str, str] = field(default_factory=dict)
    idle: dict[str, Idle] = field(default_factory=dict)
    cases: list[CaseResult] = field(default_factory=list)
    peak_rss_mib: float = 0.0
    hwm_mib: float = 0.0
    cpu_total: float = 0.0
    wall_total: float = 0.0
    problems: list[str] = field(default_factory=list)


def uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def _seconds(values: list[float]) -> list[str]:
    if not values:
        return ["—", "—"]
    return [f"{statistics.median(values):.2f}", f"{max(values):.2f}"]


def render(report: Report, runs: int, markdown: bool) -> str:
    header = ["case", "targets", "runs", "apply→AllInjected median (s)", "worst", "delete→gone median (s)", "worst",
              "controller CPU/run (s)", "peak RSS (MiB)", "object (KiB)"]
    rows = []
    for result in report.cases:
        cpu = f"{statistics.median(result.cpu):.2f}" if result.cpu else "—"
        rows.append([result.case.label, str(result.case.targets), str(len(result.inject)), *_seconds(result.inject),
                     *_seconds(result.recover), cpu, f"{result.peak_rss_mib:.1f}", f"{result.object_kib:.0f}"])
    lines: list[str] = []
    if markdown:
        lines += [f"Seconds over {runs} runs (1-pod cases after one untimed warm-up each):", ""]
    lines += reporting.table(header, rows, markdown, align="lrrrrrrrrr")
    lines.append("")
    bullet = "- " if markdown else ""
    for label, idle in report.idle.items():
        lines.append(f"{bullet}controller {label}: VmRSS {idle.rss_mib:.1f} MiB, {idle.threads} threads, "
                     f"CPU {idle.cpu_percent:.2f} % of one core over {idle.window:.0f} s")
    lines.append(f"{bullet}controller peak VmRSS sampled {report.peak_rss_mib:.1f} MiB "
                 f"(VmHWM {report.hwm_mib:.1f} MiB); CPU {report.cpu_total:.1f} s in {report.wall_total:.0f} s of life")
    for result in report.cases:
        if result.refilled:
            lines.append(f"{bullet}{result.case.label}: {result.refilled} killed pods created again in "
                         f"{result.refill_seconds:.1f} s in all (untimed)")
    lines += [f"{bullet}{key}: {value}" for key, value in {**report.settings, **report.setup}.items()]
    lines += reporting.conditions(bullet, report.load, report.machine)
    failures = [f"{result.case.label}: {error}" for result in report.cases for error in result.errors]
    lines += reporting.outcome(bullet, failures, report.problems)
    profiles = [line for result in report.cases for line in result.profile]
    if profiles:
        lines += ["", "Profiles (py-spy):", ""]
        lines += [f"    {line}" if markdown else line for line in profiles]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main


def cases(pods: int) -> list[Case]:
    shapes = [("pod-kill", "all"), ("pod-kill", "one"), ("pod-failure", "all")]
    small = [Case(action, mode, SMALL_NAMESPACE, 1) for action, mode in shapes]
    return small + [Case(action, mode, LARGE_NAMESPACE, pods) for action, mode in shapes]


async def create_all(kube: Kube, resource: ResourceType, bodies: list[dict[str, Any]]) -> None:
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def one(body: dict[str, Any]) -> None:
        async with gate:
            await kube.create(resource, body)

    await asyncio.gather(*(one(body) for body in bodies))


async def prepare(kube: Kube, args: argparse.Namespace) -> list[str]:
    """Namespaces (each with its default service account) and Ready kwok nodes; the node names."""
    for namespace in (CONTROLLER_NAMESPACE, SMALL_NAMESPACE, LARGE_NAMESPACE):
        await kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})

    async def has_account(namespace: str) -> bool:
        try:
            await kube.get(SERVICE_ACCOUNTS, "default", namespace)
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True

    for namespace in (SMALL_NAMESPACE, LARGE_NAMESPACE):
        deadline = time.monotonic() + 120
        while not await has_account(namespace):  # pods are admitted only once it exists
            if time.monotonic() > deadline:
                raise BenchError(f"no default service account in {namespace} after 120 s")
            await asyncio.sleep(0.2)
    names = [f"kwok-bench-{i:03d}" for i in range(args.nodes)]
    started = time.monotonic()
    await create_all(kube, NODES, [kwok_node(name) for name in names])

    async def ready() -> int:
        items, _ = await kube.list_all(NODES, label_selector=f"{BENCH_LABEL}=cluster")
        return sum(1 for node in items if any(c.get("type") == "Ready" and c.get("status") == "True"
                                              for c in (node.get("status") or {}).get("conditions") or ()))

    deadline = time.monotonic() + args.timeout
    while await ready() < len(names):
        if time.monotonic() > deadline:
            raise BenchError(f"{len(names)} kwok nodes not Ready after {args.timeout:.0f} s")
        await asyncio.sleep(0.5)
    log(f"{len(names)} kwok nodes Ready in {time.monotonic() - started:.1f} s")
    return names


async def measure(cluster: Cluster, controller: ControllerProcess, workdir: Path, nodes: list[str],
                  args: argparse.Namespace, report: Report) -> None:
    assert cluster.kubeconfig is not None
    kube = await Kube.connect(cluster.kubeconfig, qps=0, burst=1)  # the bench's own calls are never throttled
    tracker = ChaosTracker(kube)
    stock = PodStock(kube, nodes)
    monitor = MemoryMonitor(controller.pid)
    try:
        tracker.informer.start()
        stock.informer.start()
        await tracker.informer.wait_synced(60)
        await stock.informer.wait_synced(60)
        report.idle["idle, empty cluster"] = await asyncio.to_thread(idle_sample, controller.pid, args.settle,
                                                                     args.window)
        cpu_before, started = cpu_seconds(controller.pid), time.monotonic()
        monitor.label = "filling"
        await stock.fill(SMALL_NAMESPACE, 1, args.timeout)
        await stock.fill(LARGE_NAMESPACE, args.pods, args.timeout)
        report.setup["pods created"] = (f"1 + {args.pods} Running in {time.monotonic() - started:.1f} s; the "
                                        f"controller spent {cpu_seconds(controller.pid) - cpu_before:.1f} CPU s "
                                        "indexing them")
        log(report.setup["pods created"])
        monitor.label = "idle"
        report.idle[f"idle, {args.pods + 1} pods cached"] = await asyncio.to_thread(
            idle_sample, controller.pid, args.settle, args.window)
        runner = Runner(kube, tracker, stock, controller, monitor, args.timeout)
        profile_dir = args.profile.resolve() if args.profile else None
        if profile_dir:
            profile_dir.mkdir(parents=True, exist_ok=True)
        for case in cases(args.pods):
            if args.only and args.only not in case.slug:
                continue
            large = case.pods > 1
            log(f"case: {case.label}")
            report.cases.append(await runner.case(case, args.runs, 0 if large else 1,
                                                  profile_dir if large else None))
        monitor.label = "after"
        report.idle["idle after the runs"] = await asyncio.to_thread(idle_sample, controller.pid, args.settle,
                                                                     args.window)
    finally:
        monitor.stop()
        await tracker.informer.stop()
        await stock.informer.stop()
        await kube.close()
    report.peak_rss_mib = max(monitor.peaks.values(), default=0.0)


def bench(args: argparse.Namespace) -> Report:
    report = Report(reporting.machine())
    report.load["at the start"] = uptime()
    workdir = Path(tempfile.mkdtemp(prefix="fm-bench-cluster-"))
    cluster = Cluster(workdir / "cluster")
    controller: ControllerProcess | None = None
    extra = [*([f"--kube-qps={args.kube_qps}"] if args.kube_qps is not None else []),
             *([f"--kube-burst={args.kube_burst}"] if args.kube_burst is not None else [])]
    qps = args.kube_qps if args.kube_qps is not None else DEFAULT_QPS
    burst = args.kube_burst if args.kube_burst is not None else DEFAULT_BURST
    report.settings = {
        "controller": (f"{args.workers} workers, client rate limit {qps:g} qps, burst {burst} (token bucket in "
                       f"kube.py), up to {API_SIDE_CONCURRENCY} pods acted on at once per pass"),
        "cluster": (f"{args.nodes} kwok nodes, pods placed round-robin by spec.nodeName "
                    f"(up to {-(-args.pods // args.nodes)} per node)"),
    }
    try:
        cluster.up()
        apply_crds(cluster)
        assert cluster.kubeconfig is not None

        async def setup() -> list[str]:
            assert cluster.kubeconfig is not None
            async with await Kube.connect(cluster.kubeconfig, qps=0, burst=1) as kube:
                return await prepare(kube, args)

        nodes = asyncio.run(setup())
        controller = ControllerProcess(cluster.kubeconfig, workdir, args.workers, extra)
        report.setup["controller start"] = f"caches synced {controller.wait_synced():.1f} s after exec"
        asyncio.run(measure(cluster, controller, workdir, nodes, args, report))
        report.hwm_mib = rss_mib(controller.pid, "VmHWM")
        report.cpu_total = cpu_seconds(controller.pid)
        report.wall_total = time.monotonic() - controller.started
    except (BenchError, KubeError) as error:
        report.problems.append(str(error))
    finally:
        report.load["at the end"] = uptime()
        if controller is not None:
            problem = controller.stop()
            if problem:
                report.problems.append(problem)
            if args.keep_log:
                kept = Path(args.keep_log)
                shutil.copy(controller.log_path, kept)
                log(f"controller log kept in {kept}")
        problem = cluster.down()
        if problem:
            report.problems.append(problem)
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per case")
    parser.add_argument("--pods", type=int, default=1000, help="pods of the large cases")
    parser.add_argument("--nodes", type=int, default=100, help="kwok nodes")
    parser.add_argument("--workers", type=int, default=4, help="the controller's --workers")
    parser.add_argument("--kube-qps", type=float, help="the controller's --kube-qps (default: its own)")
    parser.add_argument("--kube-burst", type=int, help="the controller's --kube-burst (default: its own)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for any one step")
    parser.add_argument("--settle", type=float, default=5, help="seconds the controller rests before an idle sample")
    parser.add_argument("--window", type=float, default=10, help="seconds over which idle CPU is measured")
    parser.add_argument("--only", help="run only the cases whose slug contains this (e.g. pod-failure-all-1000)")
    parser.add_argument("--profile", type=Path, help="record the large cases with py-spy into this directory")
    parser.add_argument("--keep-log", help="copy the controller's log to this file at the end")
    parser.add_argument("--markdown", action="store_true", help="print Markdown (a table and a list)")
    args = parser.parse_args()
    if args.runs < 1 or args.pods < 1 or args.nodes < 1:
        parser.error("--runs, --pods and --nodes must be at least 1")
    if args.profile and not (Path(sys.executable).with_name("py-spy").exists() or shutil.which("py-spy")):
        parser.error("--profile needs py-spy (.venv/bin/pip install py-spy)")
    # SIGTERM ends the bench like Ctrl-C does, so the cluster and the controller are always taken down.
    signal.signal(signal.SIGTERM, _interrupted)
    report = bench(args)
    print(render(report, args.runs, args.markdown))
    failed = report.problems or any(result.errors for result in report.cases)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
