"""A real Kubernetes node for the test-bed cluster: a kubelet and a private containerd with its CRI plugin on.

Pods placed on it really run (runc containers from the locally built busybox and pause images) and get
addresses from a bridge CNI network on a bridge this module creates, in the benchmarking range
198.18.0.0/15, which is never routed; the bridge plugin runs without masquerading and without making the
bridge a gateway, so it adds no firewall rule and no route beyond the bridge's own subnet. The node
registers tainted, so only pods that tolerate `faultmesh.io/real-node` land on it (kwok and other tests'
pods do not).

Everything lives under `<cluster state dir>/node/`: certificates, kubeconfig, kubelet root, pod logs,
containerd root/state/sockets, runc state and the CNI config and IP leases. The few paths the kubelet,
containerd and CNI hard-code elsewhere (device-plugin socket, /var/log/containers links, shim sockets,
CNI netns and result cache) are recorded and removed by `down()`, which also unmounts what the kubelet
and containerd mounted, deletes the pod cgroups and the bridge, and raises unless `residue()` is empty.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from testbed.image import BUSYBOX, PAUSE, build, debian
from testbed.node import host

TESTBED = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = TESTBED / "kube" / "build.sh"
EXIT_NO_GO = 3  # build.sh's exit status when no Go toolchain can build the kubelet

PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iproute2")
CNI_BIN_DIR = Path("/usr/lib/cni")
CRI_NAMESPACE = "k8s.io"
NODE_DIR = "node"  # under the cluster's state directory
STATE_FILE = "node.json"
UNIX_PATH_MAX = 108

# 198.18.0.0/15 is reserved for benchmarking (RFC 2544): no network routes it. One /24 per node.
SUBNET_PREFIX = "198.18"
BRIDGE_PREFIX = "fmkb"
ALLOCATION_LOCK = Path("/var/lock/faultmesh-node.lock")

TAINT_KEY = "faultmesh.io/real-node"
NODE_LABEL = ("faultmesh.io/node", "real")

# Hard-coded outside our directory by the kubelet, containerd or libcni.
DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")  # its own socket, whatever --root-dir says
CONTAINER_LOG_LINKS = Path("/var/log/containers")
SHIM_SOCKET_DIR = Path("/run/containerd/s")
NETNS_DIRS = (Path("/var/run/netns"), Path("/run/netns"))
CNI_CACHE_DIR = Path("/var/lib/cni/results")
HOST_DIRS = (
    DEVICE_PLUGIN_DIR.parent,
    DEVICE_PLUGIN_DIR,
    CONTAINER_LOG_LINKS,
    SHIM_SOCKET_DIR.parent,
    SHIM_SOCKET_DIR,
    CNI_CACHE_DIR.parent,
    CNI_CACHE_DIR,
)

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 45.0


class NodeError(RuntimeError):
    """A failure with a message meant for the person at the terminal (log tails included)."""


class NoGoToolchainError(NodeError):
    pass


def log(message: str) -> None:
    print(f"[node {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _toml(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string of plain paths is a valid TOML basic string


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kubelet_binary() -> Path:
    """The kubelet built by testbed/kube/build.sh (built now when the cache lacks it: ~40 s warm Go cache)."""
    result = subprocess.run(["bash", str(BUILD_SCRIPT), "--paths", "kubelet"], stdout=subprocess.PIPE,
                            text=True, check=False)
    if result.returncode == EXIT_NO_GO:
        raise NoGoToolchainError("no usable Go toolchain to build the kubelet (see the message above)")
    if result.returncode != 0:
        raise NodeError(f"{BUILD_SCRIPT} kubelet failed with exit status {result.returncode}")
    for line in result.stdout.splitlines():
        name, _, path = line.partition("=")
        if name == "kubelet":
            return Path(path)
    raise NodeError(f"{BUILD_SCRIPT} printed no kubelet path")


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def issue_certificate(ca_cert: Path, ca_key: Path, directory: Path, name: str, subject: str,
                      usages: str, alt_names: str = "") -> tuple[Path, Path]:
    """A P-256 leaf certificate signed by the cluster's CA (the same scheme testbed/cluster uses)."""
    key, csr, cert, ext = (directory / f"{name}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
    key.chmod(0o600)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
             f"extendedKeyUsage={usages}", "authorityKeyIdentifier=keyid"]
    if alt_names:
        lines.append(f"subjectAltName={alt_names}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
             "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "365",
             "-extfile", str(ext), "-out", str(cert))
    csr.unlink()
    ext.unlink()
    return cert, key


@dataclass
class Managed:
    """A daemon we started: its PID and kernel start time (a recycled PID is never signalled)."""

    name: str
    pid: int
    start: str
    log: str

    def alive(self) -> bool:
        return host.start_time(self.pid) == self.start

    def stop(self) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        if host.wait_gone([self.pid], STOP_TIMEOUT_S):
            log(f"{self.name} (pid {self.pid}) ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            if host.wait_gone([self.pid], STOP_TIMEOUT_S):
                raise NodeError(f"{self.name} (pid {self.pid}) survived SIGKILL")


class ApiClient:
    """Just enough of the Kubernetes API for the node's life cycle, with the cluster's admin identity."""

    def __init__(self, server: str, ca: Path, cert: Path, key: Path) -> None:
        self.server = server
        self.context = ssl.create_default_context(cafile=str(ca))
        self.context.load_cert_chain(str(cert), str(key))

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                timeout: float = 10) -> dict[str, Any] | None:
        """The decoded JSON answer; None for 404."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=timeout) as response:
                answer: dict[str, Any] = json.loads(response.read() or b"{}")
                return answer
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            detail = error.read()[:300].decode(errors="replace")
            raise NodeError(f"{method} {path}: HTTP {error.code} {detail}") from error

    def pods_on(self, node: str) -> list[dict[str, Any]]:
        selector = urllib.parse.quote(f"spec.nodeName={node}")
        answer = self.request("GET", f"/api/v1/pods?fieldSelector={selector}")
        return list((answer or {}).get("items", []))

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> None:
        self.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}",
                     {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": grace_seconds})


def node_ready(node: dict[str, Any] | None) -> bool:
    conditions = ((node or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@dataclass
class Node:
    """One real node of a test-bed cluster; `Node.up(cluster_dir)` starts it, `down()` removes every trace."""

    cluster_dir: Path
    name: str = ""
    index: int = -1  # the node's /24 in 198.18.0.0/16, and its bridge's number
    daemons: dict[str, Managed] = field(default_factory=dict)
    created_host_dirs: list[str] = field(default_factory=list)
    created_cgroups: list[str] = field(default_factory=list)
    sandbox_ids: list[str] = field(default_factory=list)  # every container id seen; their shim sockets
    netns_paths: list[str] = field(default_factory=list)  # CNI namespaces seen in container specs
    bridge_created: bool = False
    kubelet_port: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    # ---- paths and names -------------------------------------------------------------------------------
    @property
    def workdir(self) -> Path:
        return self.cluster_dir / NODE_DIR

    @property
    def state_file(self) -> Path:
        return self.workdir / STATE_FILE

    @property
    def bridge(self) -> str:
        return f"{BRIDGE_PREFIX}{self.index}"

    @property
    def node_ip(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index}.1"

    @property
    def pod_subnet(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index}.0/24"

    @property
    def network_name(self) -> str:
        return f"faultmesh-node-{self.index}"

    @property
    def cgroup_root(self) -> str:
        return f"/faultmesh-node-{self.index}"

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def containerd_state(self) -> Path:
        return self.workdir / "containerd" / "state"

    @property
    def kubelet_root(self) -> Path:
        return self.workdir / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.workdir / "pod-logs"

    @property
    def ipam_dir(self) -> Path:
        return self.workdir / "cni" / "ipam"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    # ---- state -----------------------------------------------------------------------------------------
    def save(self) -> None:
        data = asdict(self)
        data["cluster_dir"] = str(self.cluster_dir)
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2) + "\n")
        temporary.replace(self.state_file)

    @classmethod
    def attach(cls, cluster_dir: Path) -> Node:
        """The node an `up()` in another process left in `cluster_dir`."""
        state_file = cluster_dir / NODE_DIR / STATE_FILE
        try:
            data = json.loads(state_file.read_text())
        except FileNotFoundError as exc:
            raise NodeError(f"{cluster_dir} holds no test-bed node (no {NODE_DIR}/{STATE_FILE})") from exc
        data["cluster_dir"] = cluster_dir
        data["daemons"] = {name: Managed(**entry) for name, entry in data["daemons"].items()}
        return cls(**data)

    def cluster(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.cluster_dir / "cluster.json").read_text())
        return data

    def api(self) -> ApiClient:
        pki = self.cluster_dir / "pki"
        return ApiClient(self.cluster()["server"], pki / "ca.crt", pki / "admin.crt", pki / "admin.key")

    # ---- up ----------------------------------------------------------------------------------------------
    @classmethod
    def up(cls, cluster_dir: Path, name: str | None = None, timeout: float = READY_TIMEOUT_S) -> Node:
        """Start containerd and the kubelet next to a running `testbed/cluster` and wait for the node Ready.

        On any failure everything started so far is removed again before the error propagates.
        """
        cluster_dir = cluster_dir.resolve()
        if not (cluster_dir / "cluster.json").is_file():
            raise NodeError(f"{cluster_dir} is not a test-bed cluster directory (no cluster.json)")
        if (cluster_dir / NODE_DIR).exists():
            raise NodeError(f"{cluster_dir / NODE_DIR} exists: the cluster has a node (run down first)")
        if os.geteuid() != 0:
            raise NodeError("a real node needs root (mounts, cgroups, a bridge, network namespaces)")
        started = time.monotonic()
        debian.ensure_installed(*PACKAGES)
        kubelet = kubelet_binary()
        images = [build(PAUSE), build(BUSYBOX)]
        node = cls(cluster_dir=cluster_dir)
        node.workdir.mkdir(mode=0o700)
        node.logs.mkdir()
        node.save()
        try:
            node._start(kubelet, images, name, started, timeout)
        except BaseException as error:
            log(f"start failed ({error.__class__.__name__}); removing what was started")
            try:
                node.down(drain=False)
            except NodeError as teardown_error:
                log(f"teardown after the failed start: {teardown_error}")
            raise
        return node

    def _start(self, kubelet: Path, images: list[Path], name: str | None, started: float,
               timeout: float) -> None:
        def mark(step: str) -> None:
            self.timings[step] = round(time.monotonic() - started, 2)
            self.save()

        for directory in HOST_DIRS:
            if not directory.exists():
                self.created_host_dirs.append(str(directory))
        self._create_bridge()
        self.name = name or f"fm-node-{self.index}"
        mark("bridge")
        self._write_pki()
        self._write_cni_config()
        self.created_cgroups = [str(p) for p in host.make_cgroup(self.cgroup_root)]
        self.save()
        self._start_containerd()
        mark("containerd_ready")
        for archive in images:
            self.ctr("images", "import", "--all-platforms", str(archive), timeout=120)
        have = set(self.ctr("images", "list", "--quiet").stdout.split())
        missing = {PAUSE.name, BUSYBOX.name} - have
        if missing:
            raise NodeError(f"importing the local images left {sorted(missing)} missing; have {sorted(have)}")
        mark("images_imported")
        self._start_kubelet(kubelet)
        mark("kubelet_started")
        api = self.api()
        deadline = time.monotonic() + timeout
        while not node_ready(api.request("GET", f"/api/v1/nodes/{self.name}")):
            for daemon in self.daemons.values():
                if not daemon.alive():
                    raise NodeError(f"{daemon.name} exited; its log ends:\n{_tail(Path(daemon.log))}")
            if time.monotonic() > deadline:
                raise NodeError(
                    f"node {self.name} not Ready after {timeout:.0f} s; kubelet log:\n"
                    f"{_tail(self.logs / 'kubelet.log')}\n"
                    f"containerd log:\n{_tail(self.logs / 'containerd.log')}"
                )
            time.sleep(0.5)
        mark("node_ready")
        log(f"node {self.name} Ready in {self.timings['node_ready']:.1f} s (IP {self.node_ip}, pods in "
            f"{self.pod_subnet}, bridge {self.bridge})")

    def _create_bridge(self) -> None:
        with debian.file_lock(ALLOCATION_LOCK):
            for index in range(256):
                bridge = f"{BRIDGE_PREFIX}{index}"
                if not host.link_exists(bridge) and not host.ipv4_prefix_in_use(f"{SUBNET_PREFIX}.{index}."):
                    break
            else:
                raise NodeError(f"no free /24 left in {SUBNET_PREFIX}.0.0/16 for a node bridge")
            self.index = index
            self.save()
            host.run(["ip", "link", "add", bridge, "type", "bridge"])
            self.bridge_created = True
            self.save()
            host.run(["ip", "addr", "add", f"{self.node_ip}/24", "dev", bridge])
            host.run(["ip", "link", "set", bridge, "up"])

    def _write_pki(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(mode=0o700)
        ca_cert, ca_key = self.cluster_dir / "pki" / "ca.crt", self.cluster_dir / "pki" / "ca.key"
        # The Node authorizer and NodeRestriction admit exactly this identity for this node's objects.
        cert, key = issue_certificate(ca_cert, ca_key, pki, "kubelet-client",
                                      f"/O=system:nodes/CN=system:node:{self.name}", "clientAuth")
        issue_certificate(ca_cert, ca_key, pki, "kubelet-serving", f"/CN={self.name}", "serverAuth",
                          f"IP:{self.node_ip},DNS:{self.name}")
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "testbed", "cluster": {"server": self.cluster()["server"],
                                                          "certificate-authority": str(ca_cert)}}],
            "users": [{"name": self.name, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": self.name}}],
            "current-context": "testbed",
        }
        kubeconfig = self.workdir / "kubelet.kubeconfig"
        kubeconfig.write_text(json.dumps(config, indent=2) + "\n")
        kubeconfig.chmod(0o600)

    def _write_cni_config(self) -> None:
        conf_dir = self.workdir / "cni" / "net.d"
        conf_dir.mkdir(parents=True)
        self.ipam_dir.mkdir(parents=True)
        base = f"{SUBNET_PREFIX}.{self.index}"
        conflist = {
            "cniVersion": "0.4.0",
            "name": self.network_name,
            "plugins": [{
                "type": "bridge",
                "bridge": self.bridge,
                # Not a gateway (no address change, no IP forwarding) and no masquerade: no firewall rules.
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": self.pod_subnet, "rangeStart": f"{base}.10",
                                 "rangeEnd": f"{base}.250"}]],
                    "dataDir": str(self.ipam_dir),
                },
            }],
        }
        (conf_dir / "10-faultmesh.conflist").write_text(json.dumps(conflist, indent=2) + "\n")

    def _spawn(self, name: str, argv: list[str]) -> Managed:
        log_path = self.logs / f"{name}.log"
        with log_path.open("ab") as out:
            # Its own session: a Ctrl-C in a test run must not kill it before the teardown runs.
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, close_fds=True)
        daemon = Managed(name, child.pid, host.start_time(child.pid) or "", str(log_path))
        self.daemons[name] = daemon
        self.save()
        return daemon

    def _start_containerd(self) -> None:
        base = self.workdir / "containerd"
        root, runc_root = base / "root", base / "runc"
        for directory in (root, self.containerd_state, runc_root):
            directory.mkdir(parents=True, exist_ok=True)
        if len(f"{self.socket}.ttrpc".encode()) >= UNIX_PATH_MAX:
            raise NodeError(f"{self.workdir} is too deep for containerd's sockets ({UNIX_PATH_MAX} bytes)")
        cri = '[plugins."io.containerd.grpc.v1.cri"'
        config = base / "config.toml"
        config.write_text("\n".join([
            "version = 2",
            f"root = {_toml(root)}",
            f"state = {_toml(self.containerd_state)}",
            'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",'
            ' "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]',
            "[grpc]",
            f"  address = {_toml(self.socket)}",
            "[ttrpc]",
            f"  address = {_toml(str(self.socket) + '.ttrpc')}",
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {_toml(root / 'opt')}",
            f"{cri}]",
            f"  sandbox_image = {_toml(PAUSE.name)}",
            # Root here lacks CAP_SYS_RESOURCE: lowering a sandbox's oom_score_adj to -998 is refused.
            "  restrict_oom_score_adj = true",
            '  stream_server_address = "127.0.0.1"',
            '  stream_server_port = "0"',
            f"{cri}.containerd]",
            '  default_runtime_name = "runc"',
            f"{cri}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"{cri}.containerd.runtimes.runc.options]",
            f"  Root = {_toml(runc_root)}",
            "  SystemdCgroup = false",
            f"{cri}.cni]",
            f"  bin_dir = {_toml(CNI_BIN_DIR)}",
            f"  conf_dir = {_toml(self.workdir / 'cni' / 'net.d')}",
            "  max_conf_num = 1",
            "",
        ]))
        daemon = self._spawn("containerd", ["containerd", "--config", str(config)])
        deadline = time.monotonic() + 30
        while not (self.socket.exists() and self.ctr("version", check=False).returncode == 0):
            if not daemon.alive():
                raise NodeError(f"containerd exited at start:\n{_tail(Path(daemon.log))}")
            if time.monotonic() > deadline:
                raise NodeError(f"containerd did not answer within 30 s:\n{_tail(Path(daemon.log))}")
            time.sleep(0.05)

    def _start_kubelet(self, kubelet: Path) -> None:
        pki = self.workdir / "pki"
        self.kubelet_port = _free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This machine has cgroup v1 (hybrid); v1.36 refuses it unless told otherwise.
            "failCgroupV1": False,
            "failSwapOn": False,
            "cgroupDriver": "cgroupfs",
            # Every pod cgroup below one parent of ours, which `down` removes.
            "cgroupsPerQOS": True,
            "cgroupRoot": self.cgroup_root,
            "enforceNodeAllocatable": [],
            "address": self.node_ip,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 0,
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.cluster_dir / "pki" / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "podLogsDir": str(self.pod_logs),
            "volumePluginDir": str(self.workdir / "volume-plugins"),
            # No KUBE-* chains: the host's firewall rules stay as they were.
            "makeIPTablesUtilChains": False,
            "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
            # The local images must never be collected: nothing could pull them back.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%"},
        }
        config_path = self.workdir / "kubelet-config.json"
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        self._spawn("kubelet", [
            str(kubelet), f"--config={config_path}", f"--kubeconfig={self.workdir / 'kubelet.kubeconfig'}",
            f"--root-dir={self.kubelet_root}", f"--hostname-override={self.name}",
            f"--node-ip={self.node_ip}", f"--node-labels={NODE_LABEL[0]}={NODE_LABEL[1]}", "--v=1",
        ])

    # ---- containerd -------------------------------------------------------------------------------------
    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = ["ctr", "--address", str(self.socket), "--namespace", CRI_NAMESPACE, *args]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise NodeError(f"{' '.join(argv)} timed out after {timeout:.0f} s") from exc
        if check and result.returncode != 0:
            raise NodeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def running_tasks(self) -> list[str]:
        """IDs of the containers (pod sandboxes included) whose task is running in our containerd."""
        if not self._containerd_alive():
            return []
        rows = self.ctr("tasks", "list", check=False).stdout.splitlines()[1:]
        return [row.split()[0] for row in rows if len(row.split()) >= 3 and row.split()[2] == "RUNNING"]

    def _containerd_alive(self) -> bool:
        daemon = self.daemons.get("containerd")
        return daemon is not None and daemon.alive()

    def bundles(self) -> list[Path]:
        """The OCI bundles of the tasks containerd runs (they outlive a dead daemon)."""
        directory = self.containerd_state / "io.containerd.runtime.v2.task" / CRI_NAMESPACE
        return sorted(p for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []

    def sandboxes(self) -> list[dict[str, str]]:
        """The pod sandboxes containerd runs now: id, pod namespace/name and the CNI network namespace."""
        found = []
        for bundle in self.bundles():
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                spec = json.loads((bundle / "config.json").read_text())
                annotations = spec.get("annotations") or {}
                if annotations.get("io.kubernetes.cri.container-type") != "sandbox":
                    continue
                namespaces = spec["linux"]["namespaces"]
                netns = next((e.get("path", "") for e in namespaces if e.get("type") == "network"), "")
                found.append({"id": bundle.name, "netns": netns,
                              "namespace": annotations.get("io.kubernetes.cri.sandbox-namespace", ""),
                              "name": annotations.get("io.kubernetes.cri.sandbox-name", "")})
        return found

    def _note_sandboxes(self) -> None:
        """Remember every container id and CNI namespace the tasks use, for the forceful clean-up."""
        ids, namespaces = set(self.sandbox_ids), set(self.netns_paths)
        for bundle in self.bundles():
            ids.add(bundle.name)
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                spec = json.loads((bundle / "config.json").read_text())
                for entry in spec["linux"]["namespaces"]:
                    path = entry.get("path") or ""
                    # Sandboxes hold the CNI namespace files; their containers join via /proc/PID/ns/net.
                    if entry.get("type") == "network" and Path(path).parent in NETNS_DIRS:
                        namespaces.add(path)
        self.sandbox_ids, self.netns_paths = sorted(ids), sorted(namespaces)
        self.save()

    # ---- down --------------------------------------------------------------------------------------------
    def down(self, *, drain: bool = True) -> None:
        """Remove the node and everything it made; raise NodeError listing whatever is left behind.

        First politely (pods deleted through the API while the kubelet runs, so it tears their sandboxes
        down and CNI releases their addresses), then forcefully whatever the polite steps left.
        """
        errors: list[str] = []

        def attempt(what: str, step: Callable[[], object]) -> None:
            try:
                step()
            except Exception as exc:
                errors.append(f"{what}: {exc}")

        kubelet = self.daemons.get("kubelet")
        if drain and kubelet is not None and kubelet.alive() and self.name:
            attempt("drain pods", self._drain)
        if self.name and self.index >= 0:
            attempt("delete the Node object", self._delete_node_object)
        if kubelet is not None:
            attempt("stop kubelet", kubelet.stop)
        attempt("note sandboxes", self._note_sandboxes)
        if self._containerd_alive():
            attempt("remove containers", self._remove_containers)
        if "containerd" in self.daemons:
            attempt("stop containerd", self.daemons["containerd"].stop)
        attempt("kill shims", lambda: host.kill_tree(self.shim_pids()))
        attempt("unmount", lambda: host.unmount_all(host.mounts_under(self.workdir)))
        attempt("remove CNI namespaces", self._remove_netns)
        attempt("remove bridge", self._remove_bridge)
        attempt("remove cgroups", lambda: host.remove_cgroups(self._cgroups()))
        attempt("remove host files", self._remove_host_files)
        if not host.mounts_under(self.workdir):  # never delete through a mount
            attempt("remove the node directory", lambda: shutil.rmtree(self.workdir))
        # Another node's kubelet may have stopped meanwhile and left the shared device-plugin socket to us.
        for path in self._device_plugin_files():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        left = self.residue()
        if left:
            raise NodeError(f"teardown of node {self.name or '(unnamed)'} left things behind:\n  "
                            + "\n  ".join([*left, *errors]))
        if errors:
            log("teardown complete despite: " + "; ".join(errors))

    def _drain(self) -> None:
        api = self.api()
        for pod in api.pods_on(self.name):
            meta = pod["metadata"]
            api.delete_pod(meta["namespace"], meta["name"], grace_seconds=1)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while api.pods_on(self.name) or self.running_tasks():
            if time.monotonic() > deadline:
                left = [p["metadata"]["name"] for p in api.pods_on(self.name)]
                for pod in api.pods_on(self.name):  # the kubelet did not finish: drop the API objects
                    api.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"], grace_seconds=0)
                raise NodeError(f"pods {left} / tasks {self.running_tasks()} still there after "
                                f"{DRAIN_TIMEOUT_S:.0f} s")
            time.sleep(0.5)

    def _delete_node_object(self) -> None:
        if not (self.cluster_dir / "cluster.json").is_file():
            return
        api = self.api()
        for pod in api.pods_on(self.name):
            api.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"], grace_seconds=0)
        api.request("DELETE", f"/api/v1/nodes/{self.name}")

    def _remove_containers(self) -> None:
        for container_id in self.ctr("containers", "list", "--quiet").stdout.split():
            if container_id not in self.sandbox_ids:
                self.sandbox_ids.append(container_id)
                self.save()
            self.ctr("tasks", "delete", "--force", container_id, check=False, timeout=30)
            self.ctr("containers", "delete", container_id, check=False)

    def shim_pids(self) -> list[int]:
        """containerd-shim processes serving our socket (they survive the daemon)."""
        found = []
        for pid, argv in host.processes():
            if argv[0].endswith(("containerd-shim-runc-v2", "containerd-shim")) and str(self.socket) in argv:
                found.append(pid)
        return found

    def _remove_netns(self) -> None:
        for path in self.netns_paths:
            mounted = set(host.mount_points())
            for candidate in {path, os.path.realpath(path)}:
                if candidate in mounted:
                    host.run(["umount", "--lazy", candidate], check=False)
            with contextlib.suppress(FileNotFoundError):
                Path(path).unlink()

    def _remove_bridge(self) -> None:
        if not self.bridge_created:
            return
        for port in host.links_with_master(self.bridge):  # host ends of veths whose namespace lingers
            host.run(["ip", "link", "delete", port], check=False)
        if host.link_exists(self.bridge):
            host.run(["ip", "link", "delete", self.bridge, "type", "bridge"])

    def _cgroups(self) -> list[Path]:
        if self.index < 0:
            return []
        found = host.cgroup_dirs(self.cgroup_root)
        for container_id in self.sandbox_ids:  # where containerd puts a container without a parent
            found += host.cgroup_dirs(f"{CRI_NAMESPACE}/{container_id}")
        return found

    def _shim_sockets(self) -> list[Path]:
        # containerd 1.6 names a shim's socket sha256("<address>/<namespace>/<grouping container id>").
        names = {hashlib.sha256(f"{self.socket}/{CRI_NAMESPACE}/{cid}".encode()).hexdigest()
                 for cid in self.sandbox_ids}
        return [SHIM_SOCKET_DIR / n for n in sorted(names) if (SHIM_SOCKET_DIR / n).exists()]

    def _cni_cache_files(self) -> list[Path]:
        if not CNI_CACHE_DIR.is_dir() or self.index < 0:
            return []
        # libcni keeps each ADD's result until the DEL; containerd's loopback network has one per sandbox too.
        loopback = [CNI_CACHE_DIR / f"cni-loopback-{cid}-lo" for cid in self.sandbox_ids]
        return sorted({*CNI_CACHE_DIR.glob(f"{self.network_name}-*"), *(p for p in loopback if p.exists())})

    def _log_links(self) -> list[Path]:
        if not CONTAINER_LOG_LINKS.is_dir():
            return []
        prefix = str(self.pod_logs) + "/"
        return sorted(p for p in CONTAINER_LOG_LINKS.iterdir()
                      if p.is_symlink() and os.readlink(p).startswith(prefix))

    def _device_plugin_files(self) -> list[Path]:
        if self.daemons.get("kubelet") is None:
            return []
        if any(Path(argv[0]).name == "kubelet" for _, argv in host.processes()):
            return []  # another kubelet on this host owns the hard-coded socket now
        names = ("kubelet.sock", "kubelet_internal_checkpoint")
        return [DEVICE_PLUGIN_DIR / n for n in names if (DEVICE_PLUGIN_DIR / n).exists()]

    def _remove_host_files(self) -> None:
        for path in [*self._shim_sockets(), *self._cni_cache_files(), *self._log_links(),
                     *self._device_plugin_files()]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for directory in reversed(self.created_host_dirs):  # deepest recorded last, so removed first
            with contextlib.suppress(OSError):  # not empty: someone else uses it now; leave it
                Path(directory).rmdir()

    def residue(self) -> list[str]:
        """What this node left on the host; empty after a clean `down()`."""
        left = [f"{d.name} pid {d.pid}" for d in self.daemons.values() if d.alive()]
        left += [f"shim pid {pid}" for pid in self.shim_pids()]
        left += [f"process {pid} {' '.join(argv)[:100]}" for pid, argv in host.processes()
                 if any(str(self.workdir) in arg for arg in argv)]
        left += [f"mount {m}" for m in host.mounts_under(self.workdir)]
        left += [f"network namespace {p}" for p in self.netns_paths if Path(p).exists()]
        if self.bridge_created and host.link_exists(self.bridge):
            left.append(f"bridge {self.bridge}")
        left += [f"cgroup {p}" for p in self._cgroups()]
        left += [f"file {p}" for p in [*self._shim_sockets(), *self._cni_cache_files(), *self._log_links(),
                                       *self._device_plugin_files()]]
        left += [f"dir {d}" for d in map(Path, self.created_host_dirs) if d.is_dir() and not any(d.iterdir())]
        if self.workdir.exists():
            left.append(f"directory {self.workdir}")
        return left
