"""The testbed's own containerd: containers in our network namespaces, PIDs, kills, and clean teardown."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from testbed.containerd import Container, Containerd, NetworkLab
from testbed.containerd.api import Client
from testbed.image import BUSYBOX, PAUSE, build
from testbed.image.oci import CONTAINERD_IMAGE_NAME

MakeContainer = Callable[..., Container]  # the make_container fixture of conftest.py


def _process_gone(pid: int) -> bool:
    """Gone, or a zombie: dead, only not yet reaped by its parent (often PID 1, outside our control)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _net_ns_inode(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _ping(containerd: Containerd, container_id: str, address: str) -> str:
    result = containerd.exec(container_id, "ping", "-c", "3", "-i", "0.2", "-W", "2", address)
    assert result.returncode == 0, f"ping {address} from {container_id} failed: {result.stdout}{result.stderr}"
    return result.stdout


def test_two_containers_in_linked_namespaces_reach_each_other(
    containerd: Containerd, lab: NetworkLab, make_container: MakeContainer
) -> None:
    ns_a, ns_b = lab.namespace("a"), lab.namespace("b")
    link = lab.link(ns_a, ns_b)
    web = make_container(ns_a, labels={"app": "web"}, name="web")
    db = make_container(ns_b, labels={"app": "db"}, name="db")

    assert _net_ns_inode(web.pid) == ns_a.inode()
    assert _net_ns_inode(db.pid) == ns_b.inode()
    assert "3 packets received" in _ping(containerd, web.id, link.addr_b)
    assert "3 packets received" in _ping(containerd, db.id, link.addr_a)


def test_containers_without_a_link_cannot_reach_each_other(
    containerd: Containerd, lab: NetworkLab, make_container: MakeContainer
) -> None:
    ns_a, ns_b, ns_c = lab.namespace("a"), lab.namespace("b"), lab.namespace("c")
    link = lab.link(ns_a, ns_b)
    lone = make_container(ns_c, name="lone")
    result = containerd.exec(lone.id, "ping", "-c", "1", "-W", "1", link.addr_b)
    assert result.returncode != 0, "a namespace with no link reached another one"


def test_grpc_lists_labels_and_reports_the_task_pid(
    containerd: Containerd, lab: NetworkLab, make_container: MakeContainer
) -> None:
    ns = lab.namespace("a")
    web = make_container(ns, labels={"app": "web", "tier": "front"}, name="web")
    make_container(ns, labels={"app": "db"}, name="db")

    with Client(containerd.socket, containerd.namespace) as client:
        by_label = client.list_containers(('labels."app"==web',))
        assert [c.id for c in by_label] == [web.id]
        assert by_label[0].labels["tier"] == "front"
        assert by_label[0].image == BUSYBOX.name
        task = client.get_task(web.id)
    assert task.status == "RUNNING"
    assert task.pid == web.pid == containerd.pid(web.id)
    assert Path(f"/proc/{task.pid}/cmdline").read_bytes().split(b"\0")[0] == b"sleep"


def test_killing_a_task_kills_its_process(
    containerd: Containerd, lab: NetworkLab, make_container: MakeContainer
) -> None:
    victim = make_container(lab.namespace("a"), name="victim")
    assert Path(f"/proc/{victim.pid}").exists()

    containerd.kill(victim.id, "SIGKILL")
    containerd.wait_stopped(victim.id)

    deadline = time.monotonic() + 5
    while not _process_gone(victim.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _process_gone(victim.pid), "the task's process outlived SIGKILL"
    with Client(containerd.socket, containerd.namespace) as client:
        task = client.get_task(victim.id)
    assert (task.status, task.exit_status) == ("STOPPED", 128 + signal.SIGKILL)


def test_pause_image_runs_until_terminated(containerd: Containerd, make_container: MakeContainer) -> None:
    sandbox = make_container(image=PAUSE.name, command=(), name="pause")
    time.sleep(0.3)
    assert containerd.tasks()[sandbox.id][1] == "RUNNING"
    containerd.kill(sandbox.id, "SIGTERM")
    containerd.wait_stopped(sandbox.id, timeout=10)
    with Client(containerd.socket, containerd.namespace) as client:
        assert client.get_task(sandbox.id).exit_status == 0


def _residue_probe(workdir: Path) -> dict[str, list[str]]:
    """Host state that could hold leftovers of a daemon in `workdir`, each filtered to our own names."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    processes = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(workdir) in cmdline:
                processes.append(f"{entry.name} {cmdline}")
    return {
        "mounts": sorted(m for m in mounts if str(workdir) in m),
        "processes": sorted(processes),
        "netns": sorted(p.name for p in Path("/run/netns").glob("fmtb-*")) if Path("/run/netns").exists() else [],
    }


@pytest.mark.parametrize("crash_daemon_first", [False, True], ids=["clean", "after-daemon-crash"])
def test_teardown_leaves_no_residue(tmp_path: Path, crash_daemon_first: bool) -> None:
    workdir = tmp_path / "ctrd"
    netns_before = set(_residue_probe(workdir)["netns"])
    network = NetworkLab()
    daemon = Containerd.start(workdir)
    try:
        daemon.import_image(BUSYBOX)
        ns_a, ns_b = network.namespace("a"), network.namespace("b")
        network.link(ns_a, ns_b)
        first = daemon.run("first", ["sleep", "3600"], netns=ns_a.path)
        second = daemon.run("second", ["sleep", "3600"], netns=ns_b.path)
        shims = daemon.shim_pids()
        assert shims, "no shim found for running containers"
        assert _residue_probe(workdir)["mounts"], "expected the containers' rootfs mounts while running"
        if crash_daemon_first:
            assert daemon.daemon_pid is not None
            os.kill(daemon.daemon_pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while daemon.alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not daemon.alive()
    finally:
        try:
            daemon.close()  # containers still running: close() must take them down itself
        finally:
            network_errors = network.close()

    assert network_errors == []
    assert daemon.residue() == []
    assert network.residue() == []
    probe = _residue_probe(workdir)
    assert probe["mounts"] == [] and probe["processes"] == []
    assert set(probe["netns"]) <= netns_before
    assert all(_process_gone(pid) for pid in (first.pid, second.pid, *shims))
    cgroups = [p for p in Path("/sys/fs/cgroup").glob(f"*/{daemon.cgroup_parent}")]
    assert cgroups == []
    assert not workdir.exists()


def test_attach_tears_down_a_daemon_started_elsewhere(tmp_path: Path) -> None:
    workdir = tmp_path / "ctrd"
    daemon = Containerd.start(workdir)
    try:
        daemon.import_image(BUSYBOX)
        orphan = daemon.run("orphan", ["sleep", "3600"])
        attached = Containerd.attach(workdir)  # as `python -m testbed.containerd down` does
        assert attached.alive() and attached.started_ids == {"orphan"}
        attached.close()
        assert attached.residue() == []
        assert not daemon.alive() and _process_gone(orphan.pid)
    finally:
        if daemon.alive() or workdir.exists():
            daemon.close()


def test_image_archive_is_a_valid_oci_layout(tmp_path: Path) -> None:
    archive = build(BUSYBOX)
    assert build(BUSYBOX, tmp_path).read_bytes() == archive.read_bytes(), "the build is not reproducible"
    with tarfile.open(archive) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1], f"{name}: digest mismatch"
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    (entry,) = index["manifests"]
    assert entry["annotations"][CONTAINERD_IMAGE_NAME] == BUSYBOX.name
    manifest = json.loads(files["blobs/sha256/" + entry["digest"].removeprefix("sha256:")])
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].removeprefix("sha256:")])
    assert config["config"]["Cmd"] == ["/bin/sh"]
    (layer,) = manifest["layers"]
    layer_path = tmp_path / "layer.tar.gz"
    layer_path.write_bytes(files["blobs/sha256/" + layer["digest"].removeprefix("sha256:")])
    with tarfile.open(layer_path) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin/busybox"].isfile() and members["bin/busybox"].mode == 0o755
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "/bin/busybox"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", config["rootfs"]["diff_ids"][0])
