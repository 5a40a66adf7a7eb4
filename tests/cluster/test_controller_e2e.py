"""Chaos Mesh's e2e scenarios, end to end: `faultmesh controller` as a process, the agent as a DaemonSet, real pods.

The cluster has a real node (`testbed/cluster up --kubelet`, test_real_node's `real`), the agent runs there as a
DaemonSet (controller_fixtures' `agents`), and each test starts `python -m faultmesh.cli controller` against them,
with its own namespace for the pods, the experiments and the controller's Lease. Every check is of an effect on
what really runs: pods deleted by the API, containers restarted by the kubelet, images swapped, ICMP echo requests
that reach (or do not reach) a pod's network namespace, firewall rules read in that namespace through the
container's PID, stress-ng processes in the container's cgroup. And of what Chaos Mesh users read: the status,
records, conditions and Events.

Traffic direction is measured with ping from one pod and the receiver's own count of echo requests
(`Icmp: InEchos` in its namespace's /proc/net/snmp): a partition drops packets one way, and a request that gets
through while its reply is dropped still counts where it arrived, so each direction is seen on its own, as
Chaos Mesh's e2e test sees it with one-way UDP.

Times (apply → AllInjected, delete → gone) are printed with the prefix ``[e2e timing]`` (run pytest with -s).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from testbed.image import PAUSE
from testbed.node import TAINT_KEY

from faultmesh.agent.rpc.client import Injection
from faultmesh.controller.kube import Kube
from faultmesh.controller.main import RESYNC_SECONDS
from faultmesh.controller.podactions import image_annotation_key
from faultmesh.controller.reconciler import FINALIZER, PAUSE_ANNOTATION

from . import controller_fixtures, test_real_node
from .conftest import REPO, Cluster
from .controller_fixtures import AGENT_SELECTOR, FAULTMESH, SERVER_NAME, Agents
from .test_real_node import BUSYBOX, POD_TIMEOUT_S, RealCluster

# The real-node cluster and the agent DaemonSet (one each per module), a namespace per test.
real = test_real_node.real
pod_namespace = test_real_node.pod_namespace
agents = controller_fixtures.agents

PYTHON = REPO / ".venv" / "bin" / "python"
LEASE_TTL_S = 10.0
#: Generous bounds for waiting loops; a controller that needs a new Lease first waits out the old one (15 s).
CONTROLLER_READY_S = 120.0
SETTLE_S = 120.0
#: After a restart, a lost fault is found by the first pass after a lease round: the next resync at the latest.
CONVERGE_S = CONTROLLER_READY_S + RESYNC_SECONDS + 60.0
PLURALS = {"PodChaos": "podchaos", "NetworkChaos": "networkchaos", "StressChaos": "stresschaos"}
LIVE_PHASES = ("Injecting", "Injected", "Recovering")


def timing(what: str, seconds: float) -> None:
    print(f"[e2e timing] {what}: {seconds:.2f} s")


# ---- the controller process ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ControllerProcess:
    """`faultmesh controller` as a child process, its output in a log file; started, killed, stopped at will."""

    cluster: Cluster
    agents: Agents
    namespace: str
    workdir: Path
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def owner(self) -> str:
        """The owner of its agent leases (main.ControllerConfig.owner): the deployment, not the replica."""
        return f"faultmesh-controller/{self.namespace}"

    @property
    def log(self) -> Path:
        return self.workdir / f"controller-{self.starts}.log"

    def start(self) -> None:
        assert self.process is None, "the controller runs already"
        tls = self.agents.tls
        self.starts += 1
        argv = [
            str(PYTHON), "-m", "faultmesh.cli", "controller", f"--kubeconfig={self.cluster.kubeconfig}",
            f"--namespace={self.namespace}", f"--agent-namespace={self.agents.namespace}",
            f"--agent-selector={AGENT_SELECTOR}", f"--agent-ca={tls.ca}", f"--agent-cert={tls.cert}",
            f"--agent-key={tls.key}", f"--agent-server-name={SERVER_NAME}", f"--metrics-port={self.metrics_port}",
            f"--lease-ttl={LEASE_TTL_S:g}",
        ]
        # No registry here: pod-failure's pause image is the local one the node has imported.
        env = {**os.environ, "POD_FAILURE_PAUSE_IMAGE": PAUSE.name}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_leading(self) -> None:
        """Until this process leads and its caches are synced (a SIGKILLed predecessor's Lease must expire first)."""
        deadline = time.monotonic() + CONTROLLER_READY_S
        while "caches synced" not in self.log.read_text(errors="replace"):
            assert self.process is not None and self.process.poll() is None, f"the controller exited:\n{self.tail()}"
            assert time.monotonic() < deadline, f"the controller did not lead in {CONTROLLER_READY_S:.0f} s:\n" \
                                                f"{self.tail()}"
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as when a node dies under it."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> int:
        """SIGTERM, as Kubernetes stops a pod; its exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            code = -9
        self.process = None
        return code

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as answer:
            return str(answer.read().decode())


# ---- a test's world: pods, experiments, the controller ---------------------------------------------------------


@dataclass
class Lab:
    real: RealCluster
    agents: Agents
    namespace: str
    controller: ControllerProcess

    @property
    def cluster(self) -> Cluster:
        return self.real.cluster

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, stdin=stdin, check=check, timeout=timeout)

    # -- pods

    def start_pods(self, *names: str, labels: dict[str, str] | None = None,
                   args: Sequence[str] = ("sh", "-c", "exec sleep 3600")) -> dict[str, dict[str, Any]]:
        for name in names:
            self.kubectl("apply", "-f", "-", stdin=json.dumps(busybox_pod(name, self.namespace, labels, args)))
        self.kubectl("wait", "--for=condition=Ready", *(f"pod/{n}" for n in names), "-n", self.namespace,
                     f"--timeout={POD_TIMEOUT_S:.0f}s", timeout=POD_TIMEOUT_S + 30)
        return {name: self.pod(name) for name in names}

    def pod(self, name: str) -> dict[str, Any]:
        return self.cluster.get_json("pod", name, "-n", self.namespace)

    def pods(self, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cluster.get_json("pods", "-n", self.namespace, "-l", selector)["items"]
        return items

    def container_pid(self, pod: dict[str, Any]) -> int:
        """The PID of the pod's first container's task, from containerd on the node."""
        container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
        for row in self.real.node().ctr("tasks", "ls").stdout.splitlines()[1:]:
            parts = row.split()
            if parts and parts[0] == container_id:
                return int(parts[1])
        raise AssertionError(f"containerd runs no task {container_id[:12]} for pod {pod['metadata']['name']}")

    # -- experiments

    def apply(self, manifest: dict[str, Any]) -> float:
        """Create the experiment; the monotonic time just before."""
        manifest["metadata"]["namespace"] = self.namespace
        started = time.monotonic()
        self.kubectl("create", "-f", "-", stdin=json.dumps(manifest))
        return started

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.kubectl("get", PLURALS[kind], name, "-n", self.namespace, "-o", "json", check=False)
        if result.returncode != 0:
            assert "NotFound" in result.stderr, result.stderr
            return None
        obj: dict[str, Any] = json.loads(result.stdout)
        return obj

    def must_get(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.get(kind, name)
        assert obj is not None, f"{kind} {name} is gone"
        return obj

    def wait_condition(self, kind: str, name: str, condition: str, since: float | None = None) -> float:
        """Wait (through a watch) until the condition is True; seconds since ``since`` (or since the call)."""
        started = time.monotonic() if since is None else since
        self.kubectl("wait", f"--for=condition={condition}", f"{PLURALS[kind]}/{name}", "-n", self.namespace,
                     f"--timeout={SETTLE_S:.0f}s", timeout=SETTLE_S + 30)
        return time.monotonic() - started

    def injected(self, kind: str, name: str, since: float) -> float:
        elapsed = self.wait_condition(kind, name, "AllInjected", since)
        timing(f"{kind} {name}: apply -> AllInjected", elapsed)
        return elapsed

    def delete(self, kind: str, name: str) -> float:
        """Delete and wait until the object is gone (its finalizer released); the seconds it took."""
        started = time.monotonic()
        self.kubectl("delete", PLURALS[kind], name, "-n", self.namespace, "--wait=true",
                     f"--timeout={SETTLE_S:.0f}s", timeout=SETTLE_S + 30)
        elapsed = time.monotonic() - started
        timing(f"{kind} {name}: delete -> gone", elapsed)
        return elapsed

    def annotate(self, kind: str, name: str, key: str, value: str | None) -> None:
        self.kubectl("annotate", PLURALS[kind], name, "-n", self.namespace, "--overwrite",
                     f"{key}={value}" if value is not None else f"{key}-")

    def events(self, kind: str, name: str) -> list[tuple[str, str, str]]:
        """(type, reason, message) of the Events about the experiment, oldest first."""
        items = self.cluster.get_json("events", "-n", self.namespace, "--field-selector",
                                      f"involvedObject.kind={kind},involvedObject.name={name}")["items"]
        items.sort(key=lambda e: (e.get("firstTimestamp") or e["metadata"]["creationTimestamp"],
                                  e["metadata"]["name"]))
        return [(e["type"], e["reason"], e["message"]) for e in items]

    def wait_events(self, kind: str, name: str, predicate: Callable[[list[tuple[str, str, str]]], bool],
                    what: str) -> list[tuple[str, str, str]]:
        seen: list[tuple[str, str, str]] = []

        def check() -> bool:
            seen[:] = self.events(kind, name)
            return predicate(seen)

        try:
            self.cluster.wait_for(what, check, timeout=SETTLE_S)
        except AssertionError as error:
            raise AssertionError(f"{error}; events: {seen}") from None
        return seen

    # -- the agent

    def injections(self) -> list[Injection]:
        """The injections the agent of the node holds for this controller (finished ones included, until aged)."""
        async def listed() -> list[Injection]:
            async with await Kube.connect(self.cluster.kubeconfig) as kube, self.agents.pool()(kube) as pool:
                return list(await (await pool.client_for(self.agents.node)).list(self.controller.owner))

        return asyncio.run(listed())

    def live_injections(self) -> list[Injection]:
        return [i for i in self.injections() if i.phase in LIVE_PHASES]


def busybox_pod(name: str, namespace: str, labels: dict[str, str] | None, args: Sequence[str]) -> dict[str, Any]:
    # `args`, not `command`: the image's entrypoint stays, so a pause image swapped in runs its own loop.
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
        "spec": {
            "nodeSelector": {"faultmesh.io/node": "real"},
            "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": BUSYBOX, "imagePullPolicy": "Never", "args": list(args)}],
        },
    }


def chaos(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def pods_labelled(namespace: str, labels: dict[str, str], mode: str = "one") -> dict[str, Any]:
    return {"mode": mode, "selector": {"namespaces": [namespace], "labelSelectors": labels}}


def partition(namespace: str, source: str, target: str, direction: str) -> dict[str, Any]:
    return {"action": "partition", "direction": direction, **pods_labelled(namespace, {"app": source}),
            "target": pods_labelled(namespace, {"app": target})}


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in obj["status"]["conditions"]}


def records(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in obj["status"]["experiment"]["containerRecords"]}


# ---- kernel state, read on the node ---------------------------------------------------------------------------


def in_netns(pid: int, *argv: str) -> str:
    return subprocess.run(["nsenter", "-t", str(pid), "-n", *argv], capture_output=True, text=True, check=True,
                          timeout=30).stdout


BUILTIN_CHAINS = re.compile(r"^:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) ")
COUNTERS = re.compile(r" \[\d+:\d+\]$")
#: Both backends: rules written through one are invisible to the other's save.
SAVES = tuple(save for save in ("iptables-save", "ip6tables-save", "iptables-legacy-save", "ip6tables-legacy-save")
              if shutil.which(save))


def firewall(pid: int) -> list[str]:
    """The rules, user chains and ipsets in the network namespace of ``pid``, sorted (a doubled rule shows twice).

    An empty built-in table that a recovered fault leaves loaded is no rule: only what filters a packet counts.
    """
    found: list[str] = []
    for save in SAVES:
        table = ""
        for line in in_netns(pid, save).splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith("-A") or (line.startswith(":") and not BUILTIN_CHAINS.match(line)):
                found.append(f"{save} {table} {COUNTERS.sub('', line)}")
    found += [f"ipset {name}" for name in in_netns(pid, "ipset", "list", "-n").split()]
    return sorted(found)


def echo_requests_received(pid: int) -> int:
    """ICMP echo requests delivered in the network namespace of ``pid`` (InEchos of /proc/net/snmp there)."""
    header, values = [line.split()[1:] for line in in_netns(pid, "cat", "/proc/net/snmp").splitlines()
                      if line.startswith("Icmp:")]
    return int(values[header.index("InEchos")])


def blocked(lab: Lab, names: Sequence[str]) -> set[tuple[str, str]]:
    """Each ordered pair (sender, receiver) of the pods whose echo requests did not reach the receiver at all."""
    pods = {name: lab.pod(name) for name in names}
    pids = {name: lab.container_pid(pod) for name, pod in pods.items()}
    cut: set[tuple[str, str]] = set()
    for source, target in itertools.permutations(names, 2):
        before = echo_requests_received(pids[target])
        lab.kubectl("exec", source, "-n", lab.namespace, "--", "ping", "-c", "3", "-i", "0.2", "-W", "1", "-q",
                    pods[target]["status"]["podIP"], check=False)
        if echo_requests_received(pids[target]) == before:
            cut.add((source, target))
    return cut


def cgroup_processes(real: RealCluster, pod: dict[str, Any]) -> dict[int, str]:
    """PID → command of every process in the pod's cgroups (cpuacct hierarchy, the node's cgroup root)."""
    root = Path("/sys/fs/cgroup/cpuacct") / real.node().cgroup_root.strip("/")
    found: dict[int, str] = {}
    for procs in root.glob(f"kubepods/**/pod{pod['metadata']['uid']}/**/cgroup.procs"):
        for pid in procs.read_text().split():
            try:
                found[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue  # exited meanwhile
    return found


def container_cpu_ns(real: RealCluster, pod: dict[str, Any]) -> int:
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    root = Path("/sys/fs/cgroup/cpuacct") / real.node().cgroup_root.strip("/")
    (usage,) = root.glob(f"kubepods/**/pod{pod['metadata']['uid']}/{container_id}/cpuacct.usage")
    return int(usage.read_text())


# ---- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crds(real: RealCluster) -> None:
    """Every CRD `faultmesh crds` prints, served and Established (the cluster goes with the module)."""
    printed = subprocess.run([str(FAULTMESH), "crds"], capture_output=True, text=True, check=True, timeout=120).stdout
    real.cluster.kubectl("apply", "--server-side", "-f", "-", stdin=printed)
    real.cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s", timeout=150)


@pytest.fixture
def lab(real: RealCluster, agents: Agents, crds: None, pod_namespace: str) -> Iterator[Lab]:
    """A leading controller for the test; afterwards every experiment is gone and the agent holds nothing live."""
    workdir = Path(tempfile.mkdtemp(prefix="fm-e2e-"))
    controller = ControllerProcess(real.cluster, agents, pod_namespace, workdir)
    world = Lab(real, agents, pod_namespace, controller)
    controller.start()
    try:
        controller.wait_leading()
        yield world
    finally:
        try:
            leftovers = clean_up(world)
        finally:
            if controller.running:
                controller.stop()
            print(f"---- controller log ({controller.starts} start(s)), last lines:\n{controller.tail()}")
            shutil.rmtree(workdir, ignore_errors=True)
        assert leftovers == [], f"left behind after the test: {leftovers}"


def clean_up(lab: Lab) -> list[str]:
    """Delete the test's experiments through the controller and check nothing of them stays; what did stay."""
    controller = lab.controller
    daemonset = lab.cluster.get_json("daemonset", "faultmesh-agent", "-n", lab.agents.namespace)
    if daemonset["spec"]["template"]["spec"]["nodeSelector"] != {"faultmesh.io/node": "real"}:
        restore_agent(lab)  # a test took the agent away and failed before bringing it back
    if not controller.running:  # a test killed it: the next one cleans up
        controller.process = None
        controller.start()
        controller.wait_leading()
    kinds = ",".join(PLURALS.values())
    lab.kubectl("delete", kinds, "--all", "-n", lab.namespace, "--wait=false", check=False)
    left: list[str] = []

    def remaining() -> list[str]:
        listed = lab.kubectl("get", kinds, "-n", lab.namespace, "-o", "name", check=False).stdout.split()
        return [name for name in listed if name]

    try:
        lab.cluster.wait_for("the test's experiments to go", lambda: not remaining(), timeout=SETTLE_S)
    except AssertionError:
        left = [f"{name} (finalizer forced off)" for name in remaining()]
        for name in remaining():  # so that the namespace can go; the test fails for it below
            lab.kubectl("patch", name, "-n", lab.namespace, "--type=merge", "-p", '{"metadata":{"finalizers":[]}}',
                        check=False)
    live = lab.live_injections()
    left += [f"agent injection {i.injection_id} {i.phase}" for i in live]
    return left


def restore_agent(lab: Lab) -> None:
    """The agent DaemonSet back on the real node, serving."""
    lab.kubectl("patch", "daemonset", "faultmesh-agent", "-n", lab.agents.namespace, "--type=merge", "-p",
                json.dumps({"spec": {"template": {"spec": {"nodeSelector": {"faultmesh.io/node": "real"}}}}}))
    lab.agents.wait_serving("faultmesh-agent")


def take_agent_away(lab: Lab) -> None:
    """No agent on the node: its DaemonSet's pods may run nowhere, and the one there is stopped."""
    lab.kubectl("patch", "daemonset", "faultmesh-agent", "-n", lab.agents.namespace, "--type=merge", "-p",
                json.dumps({"spec": {"template": {"spec": {"nodeSelector": {"faultmesh.io/node": "nowhere"}}}}}))
    lab.agents.wait_no_pods(AGENT_SELECTOR)


# ---- PodChaos ---------------------------------------------------------------------------------------------------


def test_pod_kill_kills_one_pod_once_and_delete_releases_it(lab: Lab) -> None:
    pods = lab.start_pods("web-0", "web-1", labels={"app": "web"})
    uids = {name: pod["metadata"]["uid"] for name, pod in pods.items()}
    started = lab.apply(chaos("PodChaos", "kill-web", {"action": "pod-kill", **pods_labelled(lab.namespace,
                                                                                                {"app": "web"})}))
    lab.injected("PodChaos", "kill-web", started)

    obj = lab.must_get("PodChaos", "kill-web")
    (killed,) = records(obj)
    victim = killed.removeprefix(f"{lab.namespace}/")
    survivor = next(name for name in pods if name != victim)
    lab.cluster.wait_for(f"pod {victim} deleted", lambda: lab.kubectl(
        "get", "pod", victim, "-n", lab.namespace, check=False).returncode != 0, timeout=SETTLE_S)
    assert [p["metadata"]["uid"] for p in lab.pods("app=web")] == [uids[survivor]]
    assert obj["metadata"]["finalizers"] == [FINALIZER]
    assert conditions(obj) == {"Selected": "True", "AllInjected": "True", "AllRecovered": "False", "Paused": "False"}
    assert obj["status"]["experiment"]["desiredPhase"] == "Run"
    record = records(obj)[killed]
    assert {k: v for k, v in record.items() if k != "events"} == {
        "id": killed, "selectorKey": ".", "phase": "Injected", "injectedCount": 1, "recoveredCount": 0}
    assert [(e["type"], e["operation"]) for e in record["events"]] == [("Succeeded", "Apply")]
    metrics = lab.controller.metrics()
    assert 'faultmesh_controller_inject_seconds_count{kind="PodChaos"} 1.0' in metrics
    assert (f'chaos_controller_manager_chaos_experiments{{kind="PodChaos",namespace="{lab.namespace}",'
            f'phase="finished"}} 1.0') in metrics

    lab.delete("PodChaos", "kill-web")
    expected = [
        ("Normal", "FinalizerInited", "Finalizer has been inited"),
        ("Normal", "Applied", f"Successfully apply chaos for {killed}"),
        ("Normal", "Deleted", "Experiment has been deleted"),
        ("Normal", "Recovered", f"Successfully recover chaos for {killed}"),
        ("Normal", "FinalizerInited", "Finalizer has been removed"),
    ]
    lab.wait_events("PodChaos", "kill-web", lambda seen: seen == expected, f"the events {expected}")
    # Killed once: the other pod was never touched, before or after the delete.
    assert [p["metadata"]["uid"] for p in lab.pods("app=web")] == [uids[survivor]]


def test_one_shot_kinds_neither_stop_nor_repeat_while_paused(lab: Lab) -> None:
    """pod-kill and container-kill are one-shot: a pause never moves them to Stop, and nothing happens again."""
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "shop", "namespace": lab.namespace},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "shop"}},
                 "template": {"metadata": {"labels": {"app": "shop"}},
                              "spec": busybox_pod("x", lab.namespace, None, ("sh", "-c", "exec sleep 3600"))["spec"]}},
    }
    lab.kubectl("apply", "-f", "-", stdin=json.dumps(deployment))
    lab.kubectl("rollout", "status", "deployment/shop", "-n", lab.namespace, f"--timeout={POD_TIMEOUT_S:.0f}s",
                timeout=POD_TIMEOUT_S + 30)
    first = {p["metadata"]["uid"] for p in lab.pods("app=shop")}
    lab.start_pods("cart")

    kill = lab.apply(chaos("PodChaos", "kill-shop", {"action": "pod-kill", **pods_labelled(lab.namespace,
                                                                                              {"app": "shop"})}))
    lab.injected("PodChaos", "kill-shop", kill)
    crash = lab.apply(chaos("PodChaos", "crash-cart", {"action": "container-kill", "containerNames": ["main"],
                                                       **pods_labelled(lab.namespace, {"app": "cart"})}))
    lab.injected("PodChaos", "crash-cart", crash)

    def settled_shop() -> set[str] | None:
        shop = lab.pods("app=shop")
        live = [p for p in shop if not p["metadata"].get("deletionTimestamp")
                and p["status"].get("phase") == "Running"]
        return {p["metadata"]["uid"] for p in shop} if len(shop) == len(live) == 3 else None

    lab.cluster.wait_for("the Deployment to replace the killed pod", lambda: settled_shop() not in (None, first),
                         timeout=SETTLE_S)
    replaced = settled_shop()
    assert replaced is not None and len(first - replaced) == 1
    lab.cluster.wait_for("cart restarted once", lambda: restarts(lab.pod("cart")) == 1, timeout=SETTLE_S)

    for name in ("kill-shop", "crash-cart"):
        lab.annotate("PodChaos", name, PAUSE_ANNOTATION, "true")
    # Long enough for the annotation's own pass and a periodic resync of every experiment.
    watch_nothing_happens(lab, replaced, seconds=RESYNC_SECONDS + 5)
    for name in ("kill-shop", "crash-cart"):
        lab.annotate("PodChaos", name, PAUSE_ANNOTATION, None)
    watch_nothing_happens(lab, replaced, seconds=10)
    for name in ("kill-shop", "crash-cart"):
        reasons = [reason for _, reason, _ in lab.events("PodChaos", name)]
        assert reasons == ["FinalizerInited", "Applied"], (name, reasons)


def restarts(pod: dict[str, Any]) -> int:
    return int(pod["status"]["containerStatuses"][0]["restartCount"])


def watch_nothing_happens(lab: Lab, shop: set[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name in ("kill-shop", "crash-cart"):
            obj = lab.must_get("PodChaos", name)
            assert obj["status"]["experiment"]["desiredPhase"] == "Run", (name, obj["status"])
            assert [r["injectedCount"] for r in records(obj).values()] == [1], (name, obj["status"])
            assert [r["phase"] for r in records(obj).values()] == ["Injected"], (name, obj["status"])
        assert {p["metadata"]["uid"] for p in lab.pods("app=shop")} == shop
        assert restarts(lab.pod("cart")) == 1
        time.sleep(2)


def test_container_kill_restarts_the_container_through_the_agent(lab: Lab) -> None:
    pod = lab.start_pods("cart")["cart"]
    container_id = pod["status"]["containerStatuses"][0]["containerID"]
    started = lab.apply(chaos("PodChaos", "crash-cart", {"action": "container-kill", "containerNames": ["main"],
                                                         **pods_labelled(lab.namespace, {"app": "cart"})}))
    lab.injected("PodChaos", "crash-cart", started)

    lab.cluster.wait_for("the container restarted", lambda: restarts(lab.pod("cart")) == 1
                         and lab.pod("cart")["status"]["containerStatuses"][0].get("ready"), timeout=SETTLE_S)
    status = lab.pod("cart")["status"]["containerStatuses"][0]
    assert status["lastState"]["terminated"]["containerID"] == container_id
    assert status["containerID"] != container_id
    obj = lab.must_get("PodChaos", "crash-cart")
    record = records(obj)[f"{lab.namespace}/cart/main"]
    assert (record["phase"], record["injectedCount"]) == ("Injected", 1)
    # Done by the agent of the node: the injection of this record, a one-shot that ran.
    uid = obj["metadata"]["uid"]
    (done,) = [i for i in lab.injections() if i.injection_id == f"{uid}/./{lab.namespace}/cart/main"]
    assert (done.kind, done.phase, done.target.container_id) == ("PodChaos", "Done", container_id)

    lab.delete("PodChaos", "crash-cart")
    assert restarts(lab.pod("cart")) == 1  # deleting a one-shot undoes nothing and kills nothing more


def test_pod_failure_swaps_in_the_pause_image_and_delete_restores_it(lab: Lab) -> None:
    lab.start_pods("web")
    started = lab.apply(chaos("PodChaos", "fail-web", {"action": "pod-failure",
                                                       **pods_labelled(lab.namespace, {"app": "web"})}))
    lab.injected("PodChaos", "fail-web", started)
    saved_key = image_annotation_key("fail-web", "main", init=False)

    def running_image(image: str) -> bool:
        pod = lab.pod("web")
        status = pod["status"]["containerStatuses"][0]
        return status["image"] == image and "running" in status["state"]

    failed = lab.pod("web")
    assert failed["spec"]["containers"][0]["image"] == PAUSE.name
    assert failed["metadata"]["annotations"][saved_key] == BUSYBOX
    lab.cluster.wait_for("the kubelet to run the pause image", lambda: running_image(PAUSE.name), timeout=SETTLE_S)

    lab.delete("PodChaos", "fail-web")
    restored = lab.pod("web")
    assert restored["spec"]["containers"][0]["image"] == BUSYBOX
    assert saved_key not in (restored["metadata"].get("annotations") or {})
    lab.cluster.wait_for("the kubelet to run busybox again", lambda: running_image(BUSYBOX), timeout=SETTLE_S)
    reasons = [reason for _, reason, _ in lab.wait_events(
        "PodChaos", "fail-web", lambda seen: len(seen) >= 6, "the release's events")]
    assert reasons == ["FinalizerInited", "Started", "Applied", "Deleted", "Recovered", "FinalizerInited"]


# ---- NetworkChaos -----------------------------------------------------------------------------------------------

PEERS = ("peer-0", "peer-1", "peer-2")


@pytest.mark.parametrize(("direction", "cut"), [
    ("to", {("peer-0", "peer-1")}),
    ("from", {("peer-1", "peer-0")}),
    ("both", {("peer-0", "peer-1"), ("peer-1", "peer-0")}),
], ids=["to", "from", "both"])
def test_partition_blocks_exactly_the_chosen_direction_and_recovers(
    lab: Lab, direction: str, cut: set[tuple[str, str]]
) -> None:
    pods = lab.start_pods(*PEERS)
    pids = {name: lab.container_pid(pod) for name, pod in pods.items()}
    before = {name: firewall(pid) for name, pid in pids.items()}
    assert blocked(lab, PEERS) == set()

    started = lab.apply(chaos("NetworkChaos", f"cut-{direction}", partition(lab.namespace, "peer-0", "peer-1",
                                                                              direction)))
    lab.injected("NetworkChaos", f"cut-{direction}", started)
    # AllInjected means verified in place: the traffic is cut the moment the status says so, and only there.
    assert blocked(lab, PEERS) == cut
    assert firewall(pids["peer-0"]) != before["peer-0"] and firewall(pids["peer-1"]) != before["peer-1"]
    assert firewall(pids["peer-2"]) == before["peer-2"]
    obj = lab.must_get("NetworkChaos", f"cut-{direction}")
    assert {(r["id"], r["selectorKey"], r["phase"]) for r in records(obj).values()} == {
        (f"{lab.namespace}/peer-0", ".", "Injected"), (f"{lab.namespace}/peer-1", ".Target", "Injected")}

    lab.delete("NetworkChaos", f"cut-{direction}")
    assert blocked(lab, PEERS) == set()
    assert {name: firewall(pid) for name, pid in pids.items()} == before
    assert lab.live_injections() == []


def test_two_partitions_on_one_pod_hold_together_and_one_goes_alone(lab: Lab) -> None:
    pods = lab.start_pods(*PEERS)
    pid = lab.container_pid(pods["peer-0"])
    before = firewall(pid)

    for target in ("peer-1", "peer-2"):
        started = lab.apply(chaos("NetworkChaos", f"cut-{target}", partition(lab.namespace, "peer-0", target, "to")))
        lab.injected("NetworkChaos", f"cut-{target}", started)
    assert blocked(lab, PEERS) == {("peer-0", "peer-1"), ("peer-0", "peer-2")}
    both = firewall(pid)

    lab.delete("NetworkChaos", "cut-peer-1")
    assert blocked(lab, PEERS) == {("peer-0", "peer-2")}
    alone = firewall(pid)
    assert before != alone and set(alone) < set(both)  # the remaining one's rules, untouched

    lab.delete("NetworkChaos", "cut-peer-2")
    assert blocked(lab, PEERS) == set()
    assert firewall(pid) == before


BLOB_KIB = 256
RATE_KIB_S = 64  # tc's "kbps" is kilobytes per second, as in Chaos Mesh's bandwidth.rate


def traffic_control(pid: int) -> list[str]:
    """The qdiscs, classes and filters of eth0 in the network namespace of ``pid`` (no statistics)."""
    return [line.strip() for what in ("qdisc", "class", "filter")
            for line in in_netns(pid, "tc", what, "show", "dev", "eth0").splitlines() if line.strip()]


def download_rate(lab: Lab, client: str, server_ip: str) -> float:
    """KiB/s of one download of the blob; the time includes kubectl's own, so a cap shows at most as it is."""
    started = time.monotonic()
    lab.kubectl("exec", client, "-n", lab.namespace, "--", "wget", "-q", "-O", "/dev/null",
                f"http://{server_ip}:8080/blob")
    return BLOB_KIB / (time.monotonic() - started)


def test_bandwidth_and_partition_on_one_pod_hold_together_and_one_goes_alone(lab: Lab) -> None:
    serve = ("sh", "-c", f"dd if=/dev/zero of=/tmp/blob bs=1024 count={BLOB_KIB} && exec httpd -f -p 8080 -h /tmp")
    server = lab.start_pods("server", args=serve)["server"]
    lab.start_pods("client", "peer")
    pid, server_ip = lab.container_pid(server), server["status"]["podIP"]
    before = (firewall(pid), traffic_control(pid))
    names = ("server", "client", "peer")

    slow = lab.apply(chaos("NetworkChaos", "slow", {
        "action": "bandwidth", **pods_labelled(lab.namespace, {"app": "server"}),
        "bandwidth": {"rate": f"{RATE_KIB_S}kbps", "limit": 20000, "buffer": 10000}}))
    lab.injected("NetworkChaos", "slow", slow)
    cut = lab.apply(chaos("NetworkChaos", "cut", partition(lab.namespace, "server", "peer", "to")))
    lab.injected("NetworkChaos", "cut", cut)
    both = (firewall(pid), traffic_control(pid))
    assert both[0] != before[0] and both[1] != before[1]
    assert blocked(lab, names) == {("server", "peer")}
    assert download_rate(lab, "client", server_ip) <= RATE_KIB_S * 1.3

    lab.delete("NetworkChaos", "cut")
    assert blocked(lab, names) == set()
    assert (firewall(pid), traffic_control(pid)) == (before[0], both[1])  # the bandwidth's tc tree, untouched
    assert download_rate(lab, "client", server_ip) <= RATE_KIB_S * 1.3

    lab.delete("NetworkChaos", "slow")
    assert (firewall(pid), traffic_control(pid)) == before


# ---- StressChaos ------------------------------------------------------------------------------------------------


def test_stress_runs_stress_ng_in_the_container_cgroup_until_deleted(lab: Lab) -> None:
    pod = lab.start_pods("burner")["burner"]
    assert not [cmd for cmd in cgroup_processes(lab.real, pod).values() if "stress-ng" in cmd]
    started = lab.apply(chaos("StressChaos", "burn", {**pods_labelled(lab.namespace, {"app": "burner"}),
                                                      "stressors": {"cpu": {"workers": 1, "load": 20}}}))
    lab.injected("StressChaos", "burn", started)

    stressors = [cmd for cmd in cgroup_processes(lab.real, pod).values() if cmd.startswith("stress-ng")]
    assert stressors, cgroup_processes(lab.real, pod)
    in_pod = lab.kubectl("exec", "burner", "-n", lab.namespace, "--", "ps", "-o", "comm").stdout
    assert "stress-ng" in in_pod
    used = container_cpu_ns(lab.real, pod)
    lab.cluster.wait_for("CPU time to rise in the container's cgroup",
                         lambda: container_cpu_ns(lab.real, pod) > used + 100_000_000, timeout=SETTLE_S)

    lab.delete("StressChaos", "burn")
    assert not [cmd for cmd in cgroup_processes(lab.real, pod).values() if "stress-ng" in cmd]
    assert "stress-ng" not in lab.kubectl("exec", "burner", "-n", lab.namespace, "--", "ps", "-o", "comm").stdout


# ---- agent down, controller killed ---------------------------------------------------------------------------


def test_deleted_while_its_agent_is_down_the_experiment_waits_then_recovers(lab: Lab) -> None:
    pods = lab.start_pods("peer-0", "peer-1")
    pid = lab.container_pid(pods["peer-0"])
    before = firewall(pid)
    started = lab.apply(chaos("NetworkChaos", "cut", partition(lab.namespace, "peer-0", "peer-1", "to")))
    lab.injected("NetworkChaos", "cut", started)

    take_agent_away(lab)
    lab.kubectl("delete", "networkchaos", "cut", "-n", lab.namespace, "--wait=false")
    unreachable = f"agent of node {lab.agents.node} unavailable"
    seen = lab.wait_events("NetworkChaos", "cut", lambda events: any(
        reason == "Failed" and unreachable in message for _, reason, message in events),
        "a Failed event naming the unreachable agent")
    failure = next(message for _, reason, message in seen if reason == "Failed")
    assert failure.startswith(f"Failed to recover chaos: {unreachable}: no agent pod on node {lab.agents.node}")
    obj = lab.must_get("NetworkChaos", "cut")
    assert obj["metadata"].get("deletionTimestamp") and obj["metadata"]["finalizers"] == [FINALIZER]
    assert obj["status"]["experiment"]["desiredPhase"] == "Stop"
    assert conditions(obj)["AllRecovered"] == "False"
    assert {r["phase"] for r in records(obj).values()} == {"Injected"}
    assert any(e["type"] == "Failed" and e["operation"] == "Recover" and unreachable in e.get("message", "")
               for r in records(obj).values() for e in r["events"])
    # Nothing pretends: the fault is still in place while no agent can take it out.
    assert blocked(lab, ("peer-0", "peer-1")) == {("peer-0", "peer-1")}
    assert lab.must_get("NetworkChaos", "cut")["metadata"]["finalizers"] == [FINALIZER]

    back = time.monotonic()
    restore_agent(lab)
    lab.kubectl("wait", "--for=delete", "networkchaos/cut", "-n", lab.namespace, f"--timeout={SETTLE_S:.0f}s",
                timeout=SETTLE_S + 30)
    timing("NetworkChaos cut: agent back -> gone", time.monotonic() - back)
    assert blocked(lab, ("peer-0", "peer-1")) == set()
    assert firewall(pid) == before
    assert lab.live_injections() == []
    # The Events of the release are not checked here: a Failed event per retry spends the object's share of
    # client-go's spam filter (25 Events, then one per 5 minutes), as it does in Chaos Mesh.


def test_a_killed_controller_leaves_faults_to_their_leases_and_a_new_one_converges(lab: Lab) -> None:
    pods = lab.start_pods("peer-0", "peer-1")
    pids = {name: lab.container_pid(pod) for name, pod in pods.items()}
    before = {name: firewall(pid) for name, pid in pids.items()}
    started = lab.apply(chaos("NetworkChaos", "cut", partition(lab.namespace, "peer-0", "peer-1", "to")))
    lab.injected("NetworkChaos", "cut", started)
    injected = {name: firewall(pid) for name, pid in pids.items()}
    uid = lab.must_get("NetworkChaos", "cut")["metadata"]["uid"]
    ids = {f"{uid}/./{lab.namespace}/peer-0", f"{uid}/.Target/{lab.namespace}/peer-1"}
    assert {i.injection_id for i in lab.live_injections()} == ids

    lab.controller.kill()
    killed = time.monotonic()
    # No owner renews the leases: the agent takes the faults out on its own.
    lab.cluster.wait_for("the agent to recover the faults whose lease ran out",
                         lambda: {name: firewall(pid) for name, pid in pids.items()} == before,
                         timeout=LEASE_TTL_S + SETTLE_S)
    timing("controller SIGKILL -> faults gone by lease", time.monotonic() - killed)
    assert blocked(lab, ("peer-0", "peer-1")) == set()
    expired = {i.injection_id: i for i in lab.injections() if i.injection_id in ids}
    assert {(i.phase, i.reason) for i in expired.values()} == {("Recovered", "lease expired")}

    restarted = time.monotonic()
    lab.controller.start()
    lab.controller.wait_leading()

    def reinjected() -> bool:
        obj = lab.must_get("NetworkChaos", "cut")
        counts = [r["injectedCount"] for r in records(obj).values()]
        return counts == [2, 2] and conditions(obj)["AllInjected"] == "True"

    lab.cluster.wait_for("the restarted controller to inject again", reinjected, timeout=CONVERGE_S)
    timing("controller restart -> re-injected", time.monotonic() - restarted)
    # Once: one live injection per record on the agent, and the very rule set of the first injection.
    live = lab.live_injections()
    assert sorted(i.injection_id for i in live) == sorted(ids) and {i.phase for i in live} == {"Injected"}
    assert {name: firewall(pid) for name, pid in pids.items()} == injected
    assert blocked(lab, ("peer-0", "peer-1")) == {("peer-0", "peer-1")}
    obj = lab.must_get("NetworkChaos", "cut")
    for record in records(obj).values():
        assert [(e["type"], e["operation"]) for e in record["events"]] == [
            ("Succeeded", "Apply"), ("Failed", "Apply"), ("Succeeded", "Apply")]
        assert "lease ran out" in record["events"][1]["message"]

    lab.delete("NetworkChaos", "cut")
    assert blocked(lab, ("peer-0", "peer-1")) == set()
    assert {name: firewall(pid) for name, pid in pids.items()} == before

