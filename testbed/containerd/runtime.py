"""A private containerd (+ runc) for tests: its own root, state, socket, runc root and cgroup parent.

Nothing here touches a system containerd: the daemon, its shims, runc's state, the container log and FIFO
files all live under one work directory, and the containers' cgroups under one parent named after this
instance. `close()` removes all of it, and still does when the daemon has died or a step fails halfway.
The few paths containerd hard-codes outside (shim sockets in /run/containerd/s) are cleaned by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testbed.image import BUSYBOX, ImageSpec, build, debian
from testbed.node import host

PACKAGES = ("containerd", "runc")
SHIM_SOCKET_DIR = Path("/run/containerd/s")
CGROUP_ROOT = Path("/sys/fs/cgroup")
WORKDIR_PREFIX = "fm-containerd-"
UNIX_PATH_MAX = 108  # sun_path's size, terminating NUL included
CONTAINER_ID = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")

# Snapshotters that need hardware or filesystems we do not use, and the CRI plugin (a kubelet's business).
DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
)


class ContainerdError(RuntimeError):
    """A containerd or ctr step failed; the message carries the command and its output."""


def _toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string of plain paths is a valid TOML basic string


@dataclass(frozen=True)
class Container:
    id: str
    image: str
    labels: dict[str, str]
    netns: Path | None
    pid: int


@dataclass
class Containerd:
    """One private containerd daemon; use `Containerd.start()` (or `attach()` from another process).

    The daemon's PID, the container IDs started and the host directories containerd created are saved in
    the work directory, so a later process (the CLI's `down`) can tear down what an earlier one set up.
    """

    workdir: Path
    namespace: str = "faultmesh"
    instance: str = field(default_factory=lambda: secrets.token_hex(4))
    daemon_pid: int | None = None
    owner_pid: int | None = None  # the process whose exit makes this daemon stale; None: kept until `down`
    started_ids: set[str] = field(default_factory=set)
    created_dirs: list[Path] = field(default_factory=list)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    # ---- paths -------------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.workdir / "root"

    @property
    def state(self) -> Path:
        return self.workdir / "state"

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd.sock"

    @property
    def log_path(self) -> Path:
        return self.workdir / "containerd.log"

    @property
    def runc_root(self) -> Path:
        return self.workdir / "runc"

    @property
    def fifo_dir(self) -> Path:
        return self.workdir / "fifo"

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def cgroup_parent(self) -> str:
        return f"faultmesh-testbed-{self.instance}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.toml"

    @property
    def state_file(self) -> Path:
        return self.workdir / "testbed.json"

    def save(self) -> None:
        state = {
            "namespace": self.namespace,
            "instance": self.instance,
            "daemon_pid": self.daemon_pid,
            "owner_pid": self.owner_pid,
            "started_ids": sorted(self.started_ids),
            "created_dirs": [str(d) for d in self.created_dirs],
        }
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def attach(cls, workdir: Path) -> Containerd:
        """The daemon a `start()` in another process left running in `workdir`."""
        try:
            state = json.loads((workdir / "testbed.json").read_text())
        except FileNotFoundError as exc:
            raise ContainerdError(f"{workdir} holds no testbed containerd (no testbed.json)") from exc
        return cls(
            workdir=workdir,
            namespace=state["namespace"],
            instance=state["instance"],
            daemon_pid=state["daemon_pid"],
            owner_pid=state.get("owner_pid"),
            started_ids=set(state["started_ids"]),
            created_dirs=[Path(d) for d in state["created_dirs"]],
        )

    # ---- lifecycle ---------------------------------------------------------------------------------
    @classmethod
    def start(
        cls, workdir: Path | None = None, namespace: str = "faultmesh", timeout: float = 30, *, owned: bool = True
    ) -> Containerd:
        """Install containerd and runc if missing, then start a daemon and wait until it answers.

        An `owned` daemon belongs to the calling process: once that process is gone, `sweep_stale()` may
        remove it. The CLI's `up` starts an unowned one, which lives until `down`.
        """
        debian.ensure_installed(*PACKAGES)
        if workdir is None:
            # Short and under /tmp: unix socket paths must stay under 108 bytes.
            workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        daemon = cls(workdir=workdir, namespace=namespace, owner_pid=os.getpid() if owned else None)
        try:
            daemon._launch(timeout)
        except BaseException:
            daemon.close()
            raise
        return daemon

    def _launch(self, timeout: float) -> None:
        longest = str(self.socket) + ".ttrpc"
        if len(longest.encode()) >= UNIX_PATH_MAX:
            raise ContainerdError(
                f"work directory {self.workdir} is too deep: socket path {longest} is not under {UNIX_PATH_MAX} bytes"
            )
        for directory in (self.root, self.state, self.runc_root, self.fifo_dir, self.logs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        for directory in (SHIM_SOCKET_DIR.parent, SHIM_SOCKET_DIR):
            if not directory.exists():
                self.created_dirs.append(directory)  # containerd creates them; we remove them if empty
        self.config_path.write_text(
            "\n".join(
                [
                    "version = 2",
                    f"root = {_toml_str(self.root)}",
                    f"state = {_toml_str(self.state)}",
                    f"disabled_plugins = [{', '.join(_toml_str(p) for p in DISABLED_PLUGINS)}]",
                    "[grpc]",
                    f"  address = {_toml_str(self.socket)}",
                    "[ttrpc]",
                    f"  address = {_toml_str(str(self.socket) + '.ttrpc')}",
                    '[plugins."io.containerd.internal.v1.opt"]',
                    f"  path = {_toml_str(self.root / 'opt')}",
                    "",
                ]
            )
        )
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                ["containerd", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the test run must not kill it before close() runs
            )
        self.daemon_pid = self._process.pid
        self.save()
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise ContainerdError(f"containerd exited {self._process.returncode} at start:\n{self.log_tail()}")
            if self.socket.exists() and self.ctr("version", check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise ContainerdError(f"containerd did not answer within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        if self.daemon_pid is None or host.is_gone(self.daemon_pid):
            return False
        # After a reboot or a crash the PID may belong to someone else: check it is our daemon.
        return str(self.config_path) in host.cmdline(self.daemon_pid)

    def __enter__(self) -> Containerd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- ctr ---------------------------------------------------------------------------------------
    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = ["ctr", "--address", str(self.socket), "--namespace", self.namespace, *args]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ContainerdError(f"{' '.join(argv)} timed out after {timeout}s") from exc
        if check and proc.returncode != 0:
            raise ContainerdError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def import_image(self, spec: ImageSpec = BUSYBOX) -> str:
        """Build (or reuse) the OCI archive for `spec` and import it; returns the image name."""
        archive = build(spec)
        self.ctr("images", "import", "--all-platforms", str(archive), timeout=120)
        if spec.name not in self.images():
            raise ContainerdError(f"importing {archive} did not create image {spec.name}; have {self.images()}")
        return spec.name

    def images(self) -> list[str]:
        return self.ctr("images", "list", "--quiet").stdout.split()

    def container_ids(self) -> list[str]:
        return self.ctr("containers", "list", "--quiet").stdout.split()

    def tasks(self) -> dict[str, tuple[int, str]]:
        """container id -> (pid, status) from `ctr task list`."""
        rows = self.ctr("tasks", "list").stdout.splitlines()[1:]
        result = {}
        for row in rows:
            parts = row.split()
            if len(parts) >= 3:
                result[parts[0]] = (int(parts[1]), parts[2])
        return result

    def run(
        self,
        container_id: str,
        command: Sequence[str] = (),
        *,
        image: str = BUSYBOX.name,
        labels: Mapping[str, str] | None = None,
        netns: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        privileged: bool = False,
    ) -> Container:
        """Start a detached container; with `netns`, it joins that network namespace instead of a new one."""
        if not CONTAINER_ID.match(container_id) or len(container_id) > 76:
            raise ValueError(f"container id {container_id!r} is not a valid containerd identifier")
        labels = dict(labels or {})
        argv = [
            "run",
            "--detach",
            "--log-uri",
            f"file://{self.logs_dir / container_id}.log",
            "--fifo-dir",
            str(self.fifo_dir),
            "--runc-root",
            str(self.runc_root),
            "--cgroup",
            f"/{self.cgroup_parent}/{container_id}",
        ]
        for key, value in labels.items():
            argv += ["--label", f"{key}={value}"]
        for key, value in (env or {}).items():
            argv += ["--env", f"{key}={value}"]
        if netns is not None:
            argv += ["--with-ns", f"network:{netns}"]
        if privileged:
            argv.append("--privileged")
        argv += [image, container_id, *command]
        self.started_ids.add(container_id)
        self.save()
        self.ctr(*argv)
        pid, status = self.tasks().get(container_id, (0, "MISSING"))
        if status != "RUNNING":
            raise ContainerdError(
                f"container {container_id} task is {status} right after start; log:\n{self.container_log(container_id)}"
            )
        return Container(
            id=container_id, image=image, labels=labels, netns=Path(netns) if netns is not None else None, pid=pid
        )

    def container_log(self, container_id: str) -> str:
        path = self.logs_dir / f"{container_id}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pid(self, container_id: str) -> int:
        pid, status = self.tasks().get(container_id, (0, "MISSING"))
        if status != "RUNNING":
            raise ContainerdError(f"container {container_id} has no running task (status {status})")
        return pid

    def exec(self, container_id: str, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command in a running container and wait for it (`ctr task exec`)."""
        exec_id = f"exec-{secrets.token_hex(4)}"
        return self.ctr(
            "tasks",
            "exec",
            "--exec-id",
            exec_id,
            "--fifo-dir",
            str(self.fifo_dir),
            container_id,
            *command,
            check=False,
            timeout=timeout,
        )

    def kill(self, container_id: str, sig: str = "SIGKILL") -> None:
        self.ctr("tasks", "kill", "--signal", sig, container_id)

    def wait_stopped(self, container_id: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.tasks().get(container_id, (0, "MISSING"))[1] not in ("STOPPED", "MISSING"):
            if time.monotonic() > deadline:
                raise ContainerdError(f"task {container_id} still not stopped after {timeout}s")
            time.sleep(0.05)

    def remove(self, container_id: str) -> None:
        """Kill the task if any, delete it, and delete the container with its snapshot."""
        if container_id in self.tasks():
            self.ctr("tasks", "delete", "--force", container_id, timeout=30)
        if container_id in self.container_ids():
            self.ctr("containers", "delete", container_id)

    # ---- teardown ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Remove containers, tasks, images, the daemon, shims, mounts, cgroups and the work directory.

        Every step runs even when an earlier one fails. The polite steps go through the daemon and may fail
        when it is dead or dying; the forceful ones after them (kill the shims, unmount, remove) do not need
        it. So polite failures are reported only when something is left afterwards.
        """
        polite: list[str] = []
        errors: list[str] = []

        def attempt(what: str, step: Callable[..., object], *args: object, into: list[str] = errors) -> None:
            try:
                step(*args)
            except Exception as exc:
                into.append(f"{what}: {exc}")

        if self.alive():
            with contextlib.suppress(ContainerdError):
                self.started_ids.update(self.container_ids())
            for container_id in sorted(self.started_ids):
                attempt(f"remove container {container_id}", self.remove, container_id, into=polite)
            with contextlib.suppress(ContainerdError):
                for image in self.images():
                    attempt(f"remove image {image}", self.ctr, "images", "remove", "--sync", image, into=polite)
        attempt("stop containerd", self._stop_daemon)
        attempt("kill shims", self._kill_shims)
        attempt("unmount", self._unmount_all)
        attempt("remove cgroups", self._remove_cgroups)
        attempt("remove shim sockets", self._remove_shim_sockets)
        if self.workdir.exists():
            attempt("remove work directory", shutil.rmtree, self.workdir)
        left = self.residue()
        if errors or left:
            details = [*errors, *(f"left behind: {item}" for item in left), *polite]
            raise ContainerdError(f"teardown of containerd at {self.workdir} failed:\n  " + "\n  ".join(details))

    def _stop_daemon(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout=10)
            return
        if self.alive() and self.daemon_pid is not None:
            os.kill(self.daemon_pid, signal.SIGTERM)
            try:
                _wait_gone([self.daemon_pid], timeout=10)
            except ContainerdError:
                os.kill(self.daemon_pid, signal.SIGKILL)
                _wait_gone([self.daemon_pid], timeout=10)

    def shim_pids(self) -> list[int]:
        """PIDs of containerd-shim processes serving this daemon (found by their -address argument)."""
        found = []
        for pid, argv in host.processes():
            if (
                argv
                and argv[0].endswith(("containerd-shim-runc-v2", "containerd-shim"))
                and _arg_after(argv, "-address") == str(self.socket)
            ):
                found.append(pid)
        return found

    def _kill_shims(self) -> None:
        host.kill_tree(self.shim_pids(), timeout=10)

    def _mounts(self) -> list[str]:
        return host.mounts_under(self.workdir)

    def _unmount_all(self) -> None:
        for mount_point in sorted(self._mounts(), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", mount_point], capture_output=True, check=False)
        left = self._mounts()
        if left:
            raise ContainerdError(f"still mounted: {left}")

    def _cgroup_dirs(self) -> list[Path]:
        if not CGROUP_ROOT.is_dir():
            return []
        found: list[Path] = []
        for hierarchy in CGROUP_ROOT.iterdir():
            parent = hierarchy / self.cgroup_parent
            if parent.is_dir():
                found.extend(p for p in parent.rglob("*") if p.is_dir())
                found.append(parent)
        return found

    def _remove_cgroups(self) -> None:
        for directory in sorted(self._cgroup_dirs(), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(FileNotFoundError):
                directory.rmdir()

    def _shim_sockets(self) -> list[Path]:
        # containerd 1.6 names a shim's socket sha256("<address>/<namespace>/<container id>").
        names = {
            hashlib.sha256(f"{self.socket}/{self.namespace}/{cid}".encode()).hexdigest() for cid in self.started_ids
        }
        return [p for p in _listdir(SHIM_SOCKET_DIR) if p.name in names]

    def _remove_shim_sockets(self) -> None:
        for path in self._shim_sockets():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for directory in reversed(self.created_dirs):  # recorded parent first, so children go first
            with contextlib.suppress(OSError):  # not empty: someone else uses it now; leave it
                directory.rmdir()

    def residue(self) -> list[str]:
        """What this instance left on the host; empty after a clean close()."""
        left: list[str] = []
        if self.alive():
            left.append(f"containerd pid {self.daemon_pid}")
        left += [f"shim pid {pid}" for pid in self.shim_pids()]
        left += [
            f"process {pid} {' '.join(argv)[:80]}"
            for pid, argv in host.processes()
            if any(str(self.workdir) in arg for arg in argv)
        ]
        left += [f"mount {m}" for m in self._mounts()]
        left += [f"cgroup {p}" for p in self._cgroup_dirs()]
        left += [f"shim socket {p}" for p in self._shim_sockets()]
        # A directory we created counts only while empty: another containerd may have moved in since.
        left += [f"dir {d}" for d in self.created_dirs if d.is_dir() and not any(d.iterdir())]
        if self.workdir.exists():
            left.append(f"work directory {self.workdir}")
        return left


def sweep_stale(parent: Path | None = None) -> list[str]:
    """Tear down default-located daemons whose owning process is gone (a test run that was killed).

    Returns one line per daemon found stale: what was removed, or why removing it failed.
    """
    report = []
    for workdir in sorted(Path(parent or tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*")):
        try:
            daemon = Containerd.attach(workdir)
        except (ContainerdError, ValueError, KeyError):
            continue
        if daemon.owner_pid is None or not host.is_gone(daemon.owner_pid):
            continue
        try:
            daemon.close()
            report.append(f"removed stale containerd {workdir} (owner {daemon.owner_pid} is gone)")
        except ContainerdError as exc:
            report.append(f"could not remove stale containerd {workdir}: {exc}")
    return report


# ---- /proc helpers ---------------------------------------------------------------------------------
def _listdir(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except FileNotFoundError:
        return []


def _arg_after(argv: list[str], flag: str) -> str | None:
    for index, arg in enumerate(argv[:-1]):
        if arg == flag:
            return argv[index + 1]
    return None


def _wait_gone(pids: Iterable[int], timeout: float) -> None:
    left = host.wait_gone(pids, timeout)
    if left:
        raise ContainerdError(f"processes {sorted(left)} survived SIGKILL for {timeout}s")
