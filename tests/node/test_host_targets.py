"""Host mode's local targets on a real machine: containerd and docker containers, a process, a netns holder.

Each test checks what `build_inventory` sees against what the test set up: labels, container ids, phases,
the pod IPs of each target's network namespace (veths the test addresses itself) and the host-network flag.
The docker test runs a private dockerd (own socket, data and exec roots, cgroup parent; no bridge, no
iptables, no forwarding) and removes every trace of it afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from testbed.containerd import Container, Containerd, NetNamespace, NetworkLab
from testbed.image import BUSYBOX, build

from faultmesh.api.loader import load_text
from faultmesh.host import build_inventory
from faultmesh.selection import Inventory, Pod, plan_experiment

MakeContainer = Callable[..., Container]  # the make_container fixture of conftest.py

POD_KILL = """
apiVersion: chaos-mesh.org/v1alpha1
kind: PodChaos
metadata: {name: kill-one, namespace: NAMESPACE}
spec:
  action: pod-kill
  mode: all
  selector:
    labelSelectors: {app: web, run: RUN}
"""


# ---- helpers -------------------------------------------------------------------------------------------


def host_addresses() -> tuple[str, ...]:
    """The host's pod IPs read independently of the code under test: `ip -o addr show` in our namespace."""
    ipv4: list[str] = []
    ipv6: list[str] = []
    listing = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines():
        _, ifname, family, cidr, *rest = line.split()
        address = cidr.split("/")[0]
        if ifname == "lo" or "dadfailed" in rest:
            continue
        if family == "inet":
            ipv4.append(address)
        elif family == "inet6" and not address.startswith("fe80:"):
            ipv6.append(address)
    return tuple(dict.fromkeys([*ipv4, *ipv6]))


def add_ipv6(netns: NetNamespace, device: str, cidr: str) -> None:
    # nodad: the address is usable (and listed without "tentative") at once.
    subprocess.run(["ip", "-n", netns.name, "addr", "add", cidr, "dev", device, "nodad"], check=True)


def wait_running(read: Callable[[], Inventory], key: str) -> dict[str, Pod]:
    """The inventory once `key` is Running: an `ip netns exec` holder enters its namespace after the fork."""
    for _ in range(100):
        by_key = {pod.key: pod for pod in read().pods}
        if by_key[key].phase == "Running":
            return by_key
        time.sleep(0.05)
    raise AssertionError(f"{key} never became Running")


@pytest.fixture
def sleeper() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A `sleep` with a unique argument, so a pgrep pattern finds exactly it; killed afterwards."""
    seconds = f"3600.{secrets.randbelow(10**6):06d}"
    process = subprocess.Popen(["sleep", seconds])
    try:
        yield process, seconds
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def no_default_runtimes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only the runtimes a test names: a docker or CRI-O socket this machine happens to have stays out."""
    monkeypatch.setattr("faultmesh.host.targets.DOCKER_SOCKETS", (tmp_path / "no-docker.sock",))
    monkeypatch.setattr("faultmesh.host.targets.CRIO_SOCKETS", (tmp_path / "no-crio.sock",))


# ---- containerd, processes, network namespaces ----------------------------------------------------------


def test_containerd_containers_and_inventory_processes_are_targets_with_their_ips(
    containerd: Containerd, make_container: MakeContainer, lab: NetworkLab,
    sleeper: tuple[subprocess.Popen[bytes], str], tmp_path: Path, no_default_runtimes: None,
) -> None:
    run = f"r{secrets.token_hex(3)}"  # a letter first: all digits would load as a YAML number
    web_ns, peer_ns = lab.namespace("w"), lab.namespace("p")
    link = lab.link(web_ns, peer_ns)  # 169.254.10.1/24 in web_ns, .2/24 in peer_ns
    add_ipv6(web_ns, link.if_a, "fd00:f17::1/64")
    add_ipv6(peer_ns, link.if_b, "fd00:f17::2/64")
    web = make_container(labels={"app": "web", "run": run}, name="web", netns=web_ns)
    db = make_container(labels={"app": "db", "run": run}, name="db")  # a namespace of its own: loopback only
    process, seconds = sleeper
    holder = subprocess.Popen(["ip", "netns", "exec", peer_ns.name, "sleep", "3600"])
    try:
        inventory_file = tmp_path / "inventory.yaml"
        inventory_file.write_text(
            "targets:\n"
            f"  - {{namespace: procs, name: sleeper, labels: {{app: sleeper}}, command: 'sleep {seconds}'}}\n"
            f"  - {{namespace: procs, name: peer, netns: {peer_ns.name}}}\n"
        )
        by_key = wait_running(lambda: build_inventory(inventory_file, containerd.socket, containerd.namespace),
                              "procs/peer")

        ns = containerd.namespace
        for container in (web, db):
            pod = by_key[f"{ns}/{container.id}"]
            assert {key: pod.labels.get(key) for key in ("app", "run")} == container.labels
            assert pod.phase == "Running"
            assert pod.container_id(pod.containers[0].name) == f"containerd://{container.id}"
        assert by_key[f"{ns}/{web.id}"].pod_ips == (link.addr_a, "fd00:f17::1")
        assert by_key[f"{ns}/{db.id}"].pod_ips == ()
        assert not by_key[f"{ns}/{web.id}"].host_network and not by_key[f"{ns}/{db.id}"].host_network

        peer = by_key["procs/peer"]
        assert peer.container_id("peer") == f"process://{holder.pid}"
        assert (peer.pod_ips, peer.host_network) == ((link.addr_b, "fd00:f17::2"), False)

        on_host = by_key["procs/sleeper"]
        assert on_host.container_id("sleeper") == f"process://{process.pid}"
        assert on_host.host_network
        assert on_host.pod_ips == host_addresses() and on_host.pod_ips
        assert {pod.host_ip for pod in by_key.values()} == {on_host.host_ip} and on_host.host_ip in on_host.pod_ips

        (experiment,) = load_text(POD_KILL.replace("NAMESPACE", ns).replace("RUN", run)).objects
        (plan,) = plan_experiment(experiment, Inventory(pods=tuple(by_key.values())), seed=1)
        assert [pod.name for pod in plan.selection.pods] == [web.id]
    finally:
        holder.kill()
        holder.wait()


def test_a_netns_entry_lists_its_ips_before_anyone_lives_there(
    lab: NetworkLab, tmp_path: Path, no_default_runtimes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("faultmesh.host.targets.DEFAULT_SOCKET", tmp_path / "no-containerd.sock")
    empty_ns, other_ns = lab.namespace("e"), lab.namespace("o")
    link = lab.link(empty_ns, other_ns)
    inventory_file = tmp_path / "inventory.yaml"
    inventory_file.write_text(f"targets: [{{namespace: nets, name: empty, netns: {empty_ns.name}}}]\n")
    found = build_inventory(inventory_file)
    (pod,) = found.pods
    assert (pod.phase, pod.container_id("empty"), pod.pod_ips) == ("Pending", None, (link.addr_a,))
    assert any("no process lives in netns" in note for note in found.notes)


# ---- docker --------------------------------------------------------------------------------------------

DOCKER_PREFIX = "fmt-dk-"
DOCKER_RUNTIME_DIR = Path("/run/docker")  # dockerd makes /run/docker/plugins whatever its exec root
SHIM_SOCKET_DIR = Path("/run/containerd/s")


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


@dataclass
class PrivateDocker:
    """A dockerd of our own under one work directory; `close()` removes it and everything it made."""

    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    container_ids: set[str] = field(default_factory=set)
    made_runtime_dir: bool = False

    @property
    def socket(self) -> Path:
        return self.workdir / "docker.sock"

    @property
    def cgroup_parent(self) -> str:
        return self.workdir.name

    @classmethod
    def start(cls) -> PrivateDocker:
        workdir = Path(tempfile.mkdtemp(prefix=f"{DOCKER_PREFIX}{os.getpid()}-", dir="/tmp"))
        daemon = cls(workdir, made_runtime_dir=not DOCKER_RUNTIME_DIR.exists())
        try:
            daemon._launch()
        except BaseException:
            daemon.close()
            raise
        return daemon

    def _launch(self) -> None:
        # Our own config file, not /etc/docker/daemon.json; it also keeps the daemon's key out of /etc/docker.
        config = {"deprecated-key-path": str(self.workdir / "key.json")}
        (self.workdir / "daemon.json").write_text(json.dumps(config) + "\n")
        argv = [
            "dockerd", "--host", f"unix://{self.socket}", "--config-file", str(self.workdir / "daemon.json"),
            "--data-root", str(self.workdir / "data"), "--exec-root", str(self.workdir / "exec"),
            "--pidfile", str(self.workdir / "docker.pid"),
            "--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
            "--userland-proxy=false", "--storage-driver", "vfs", "--cgroup-parent", f"/{self.cgroup_parent}",
        ]
        with (self.workdir / "dockerd.log").open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = time.monotonic() + 60
        while self.cli("version", check=False).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.workdir / "dockerd.log").read_text(errors="replace").splitlines()[-20:])
        return "(no log)"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker", "-H", f"unix://{self.socket}", *args], capture_output=True, text=True,
                                timeout=120, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def load_busybox(self) -> str:
        """testbed's busybox image, loaded: its OCI archive plus the manifest.json `docker load` reads."""
        archive = self.workdir / "busybox.docker.tar"
        with tarfile.open(build(BUSYBOX)) as oci, tarfile.open(archive, "w") as out:
            index = json.load(oci.extractfile("index.json"))  # type: ignore[arg-type]
            digest = index["manifests"][0]["digest"].removeprefix("sha256:")
            manifest = json.load(oci.extractfile(f"blobs/sha256/{digest}"))  # type: ignore[arg-type]
            for member in oci.getmembers():
                out.addfile(member, oci.extractfile(member) if member.isfile() else None)
            blob = "blobs/sha256/{}".format
            entry = [{
                "Config": blob(manifest["config"]["digest"].removeprefix("sha256:")),
                "RepoTags": [BUSYBOX.name],
                "Layers": [blob(layer["digest"].removeprefix("sha256:")) for layer in manifest["layers"]],
            }]
            data = json.dumps(entry).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
        self.cli("load", "--input", str(archive))
        return BUSYBOX.name

    def run(self, *args: str) -> str:
        """`docker run --detach ARGS`; the new container's id."""
        container_id = self.cli("run", "--detach", *args).stdout.strip()
        self.container_ids.add(container_id)
        return container_id

    def create(self, *args: str) -> str:
        container_id = self.cli("create", *args).stdout.strip()
        self.container_ids.add(container_id)
        return container_id

    def pid(self, container_id: str) -> int:
        return int(self.cli("inspect", "--format", "{{.State.Pid}}", container_id).stdout)

    # ---- teardown ------------------------------------------------------------------------------------
    def _processes(self) -> list[int]:
        return [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and str(self.workdir) in _cmdline(pid)]

    def _mounts(self) -> list[str]:
        points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        return [point for point in points if point.startswith(f"{self.workdir}/")]

    def _cgroups(self) -> list[Path]:
        found: list[Path] = []
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            parent = hierarchy / self.cgroup_parent
            if parent.is_dir():
                found += [*(path for path in parent.rglob("*") if path.is_dir()), parent]
        return found

    def _shim_sockets(self) -> list[Path]:
        # containerd names a shim's socket sha256("<address>/<namespace>/<id>"); docker's namespace is moby.
        address = self.workdir / "exec" / "containerd" / "containerd.sock"
        names = {hashlib.sha256(f"{address}/moby/{cid}".encode()).hexdigest() for cid in self.container_ids}
        return [SHIM_SOCKET_DIR / name for name in names if (SHIM_SOCKET_DIR / name).exists()]

    def close(self) -> None:
        """Containers, daemon, its containerd and shims, mounts, cgroups, the work directory: all go."""
        if self.process is not None and self.process.poll() is None:
            listed = self.cli("ps", "--all", "--quiet", "--no-trunc", check=False).stdout.split()
            self.container_ids.update(listed)
            if self.container_ids:
                self.cli("rm", "--force", "--volumes", *sorted(self.container_ids), check=False)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in self._processes():  # what outlived dockerd: its containerd, shims
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(not _gone(pid) for pid in self._processes()) and time.monotonic() < deadline:
            time.sleep(0.05)
        for point in sorted(self._mounts(), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
        for directory in sorted(self._cgroups(), key=lambda path: len(path.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        for socket in self._shim_sockets():
            socket.unlink(missing_ok=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.made_runtime_dir:
            for directory in (DOCKER_RUNTIME_DIR / "plugins", DOCKER_RUNTIME_DIR):
                with contextlib.suppress(OSError):  # not empty: another dockerd uses it now
                    directory.rmdir()

    def residue(self) -> list[str]:
        left = [f"process {pid}: {_cmdline(str(pid))[:100]}" for pid in self._processes() if not _gone(pid)]
        left += [f"mount {point}" for point in self._mounts()]
        left += [f"cgroup {path}" for path in self._cgroups()]
        left += [f"shim socket {path}" for path in self._shim_sockets()]
        if self.workdir.exists():
            left.append(f"work directory {self.workdir}")
        if self.made_runtime_dir and DOCKER_RUNTIME_DIR.is_dir() and not any(DOCKER_RUNTIME_DIR.rglob("*.sock")):
            left.append(f"directory {DOCKER_RUNTIME_DIR}")
        return left


def sweep_stale_dockers() -> None:
    """Remove the daemons of earlier runs that were killed before their teardown (their owner is gone)."""
    for workdir in Path("/tmp").glob(f"{DOCKER_PREFIX}*"):
        owner = workdir.name.removeprefix(DOCKER_PREFIX).split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            PrivateDocker(workdir).close()


@pytest.fixture(scope="module")
def dockerd() -> Iterator[PrivateDocker]:
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.skip("dockerd is not installed: install Debian's docker.io to test listing docker containers")
    sweep_stale_dockers()
    daemon = PrivateDocker.start()
    try:
        daemon.load_busybox()
        yield daemon
    finally:
        daemon.close()
    assert daemon.residue() == [], f"dockerd teardown left residue: {daemon.residue()}"


def test_docker_containers_are_targets_with_their_ips(
    dockerd: PrivateDocker, lab: NetworkLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    no_default_runtimes: None,
) -> None:
    monkeypatch.setattr("faultmesh.host.targets.DEFAULT_SOCKET", tmp_path / "no-containerd.sock")
    run = f"r{secrets.token_hex(3)}"  # a letter first: all digits would load as a YAML number
    web = dockerd.run("--name", f"fmt-web-{run}", "--network", "none", "--label", "app=web",
                      "--label", "io.kubernetes.pod.namespace=demo", BUSYBOX.name, "sleep", "3600")
    on_host = dockerd.run("--name", f"fmt-hostnet-{run}", "--network", "host", BUSYBOX.name, "sleep", "3600")
    stopped = dockerd.create("--name", f"fmt-stopped-{run}", "--network", "none", BUSYBOX.name, "sleep", "3600")

    # A veth from one of our namespaces into the web container's: its far end is the container's pod IP
    # (IPv4 only: docker turns IPv6 off in a container without a network).
    peer_ns = lab.namespace("d")
    inside, outside = f"fi{lab.tag}", f"fo{lab.tag}"
    web_pid = dockerd.pid(web)
    subprocess.run(["ip", "link", "add", outside, "netns", peer_ns.name, "type", "veth",
                    "peer", "name", inside, "netns", str(web_pid)], check=True)
    in_web = ["nsenter", f"--net=/proc/{web_pid}/ns/net", "ip"]
    subprocess.run([*in_web, "addr", "add", "169.254.30.2/24", "dev", inside], check=True)
    subprocess.run([*in_web, "link", "set", inside, "up"], check=True)

    found = build_inventory(docker_socket=dockerd.socket)
    by_key = {pod.key: pod for pod in found.pods}
    assert set(by_key) == {f"demo/fmt-web-{run}", f"docker/fmt-hostnet-{run}", f"docker/fmt-stopped-{run}"}

    web_pod = by_key[f"demo/fmt-web-{run}"]
    assert (web_pod.phase, web_pod.labels.get("app"), web_pod.container_id(f"fmt-web-{run}")) == (
        "Running", "web", f"docker://{web}",
    )
    assert (web_pod.pod_ips, web_pod.host_network) == (("169.254.30.2",), False)

    host_pod = by_key[f"docker/fmt-hostnet-{run}"]
    assert (host_pod.phase, host_pod.container_id(f"fmt-hostnet-{run}")) == ("Running", f"docker://{on_host}")
    assert host_pod.host_network and host_pod.pod_ips == host_addresses()

    stopped_pod = by_key[f"docker/fmt-stopped-{run}"]
    assert (stopped_pod.phase, stopped_pod.pod_ips, stopped_pod.container_id(f"fmt-stopped-{run}")) == (
        "Pending", (), f"docker://{stopped}",
    )

    # The veth's end lives in the container's namespace, so it goes with the container.
    dockerd.cli("rm", "--force", web, on_host, stopped)
    dockerd.container_ids -= {web, on_host, stopped}
    assert outside not in subprocess.run(["ip", "-n", peer_ns.name, "-o", "link"], capture_output=True, text=True,
                                         check=True).stdout
