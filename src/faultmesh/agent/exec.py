"""The executor: the agent's one door to processes. It runs plan actions and probes on this node.

Everything here is ``async`` (asyncio subprocesses): the gRPC server and the engine share one event
loop, and a slow ``tc`` never blocks it. The agent never calls ``setns`` itself: work inside a
target runs as ``nsenter --net=/proc/self/fd/N ... -- argv``, where ``N`` is a namespace handle the
executor opened and checked (by inode) just before, then handed to the child. Checking the inode
makes the journalled location authoritative: an undo runs in the namespace the change was made in,
even when the target process has died or restarted, as long as a holder that provably held that
very namespace remains (see :class:`Location`: inode numbers are reused). When none does, the
namespace is gone and so is every change inside it (:class:`NamespaceGoneError`).

Public API (stable; other agent modules build on it)::

    executor = Executor(resolve_pid=runtimes.resolve, kill_container=runtimes.kill_async)
    location = await executor.locate(target)                      # pid, namespace inodes, holders
    scope = Scope(tag="inj-1", location=location)                 # per injection
    spawned = await executor.run(step.apply, target, scope)       # SpawnedProcess for Spawn, else None
    verdict = await executor.probe(step.probe, target, scope)     # ProbeResult(state, detail)
    await executor.reap(scope, name); executor.spawned_alive(scope, name)
    result = await executor.command(argv, location=..., namespaces=("net",))   # ad hoc commands

A :class:`Spawn` starts stopped (``sh -c 'kill -STOP $$ && exec "$@"'``), is moved into the target's
cgroups, then continued; it runs in a new session whose id is journalled with each member's start
time (PID-reuse safe), and it carries ``FAULTMESH_SPAWN=<tag>#<name>`` in its environment, so a
process whose PID never reached the journal (a crash right after the fork) is still found and reaped.
Reaping kills the deepest processes first (see :meth:`Executor.reap`), so no process of a spawn is
orphaned into a zombie.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import shlex
import signal as signals
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from faultmesh.agent.runtime.base import RuntimeUnavailableError, parse_signal
from faultmesh.agent.runtime.cgroups import CgroupError, cgroup_paths
from faultmesh.kinds.plan import Action, Exec, KillContainer, KillProcess, Namespace, Probe, Reap, Spawn, Target

#: Container id → PID of its main process. May be sync or async; raises :class:`TargetGoneError` (or
#: any error, reported as such) when the container does not exist, and the runtime's
#: ``RuntimeUnavailableError`` when the runtime cannot be asked (reported as :class:`RuntimeUnreachableError`).
PidResolver = Callable[[str], int | Awaitable[int]]
#: Kill a container through its runtime: (container id, signal; an unnamed real-time signal is a number).
ContainerKiller = Callable[[str, signals.Signals | int], Awaitable[None]]

SPAWN_ENV = "FAULTMESH_SPAWN"
PROC = Path("/proc")
DEFAULT_TIMEOUT = 30.0
ALL_NAMESPACES: tuple[Namespace, ...] = ("net", "mnt", "pid", "uts", "ipc", "cgroup", "user")
_NSENTER_FLAG: dict[str, str] = {
    "net": "--net", "mnt": "--mount", "pid": "--pid", "uts": "--uts", "ipc": "--ipc",
    "cgroup": "--cgroup", "user": "--user",
}
_STOP_WRAPPER = ("sh", "-c", 'kill -STOP $$ && exec "$@"', "faultmesh-spawn")


# ---------------------------------------------------------------------------------------- errors


class ExecError(RuntimeError):
    """A command failed; carries what ran and what it said, so the journal and the RPC can show it."""

    def __init__(self, command: str, message: str, *, returncode: int | None = None,
                 stdout: str = "", stderr: str = "") -> None:
        super().__init__(f"{command}: {message}")
        self.command = command
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class ExecTimeoutError(ExecError):
    """A command ran past its timeout and was killed (with its whole process group)."""


class TargetGoneError(ExecError):
    """The target (container or process) cannot be found on this node."""


class RuntimeUnreachableError(ExecError):
    """The container runtime cannot be asked (no socket, nobody listening, no answer in time).

    Says nothing about the target: it may well exist (the RPC answers UNAVAILABLE, which a client retries).
    """


class NamespaceGoneError(ExecError):
    """Nothing on the node holds the namespace any more: every change made inside it is gone too."""


# ---------------------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class Location:
    """Where a target lived when it was located: its PID and the inode of each of its namespaces.

    Namespace inode numbers are reused once a namespace is freed, so an inode alone could name a
    newer namespace (another pod's). A holder found later counts only if it provably held the same
    namespace: the target itself (same start time), a process that already existed when the location
    was taken (``ticks``), or a bind mount recorded then (``bind_mounts``).
    """

    pid: int
    namespaces: Mapping[str, int]
    #: The target's start time (clock ticks since boot); 0 when unknown.
    pid_start_time: int = 0
    #: Clock ticks since boot when the location was taken; 0 when unknown (then no process is trusted).
    ticks: int = 0
    #: nsfs bind mounts (``/run/netns/x``) that held one of the target's namespaces then.
    bind_mounts: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProcessId:
    """A process that cannot be confused with a later one reusing its PID (start time in clock ticks)."""

    pid: int
    start_time: int


@dataclass(frozen=True)
class SpawnedProcess:
    """What a :class:`Spawn` started: the worker running argv, and its whole process group."""

    pid: int
    start_time: int
    #: The session/process group the spawn leads (every descendant is in it).
    pgid: int
    #: Every group member seen when it was placed (the leader, and the worker if it is another process).
    members: tuple[ProcessId, ...]
    #: Start times count from boot: after a reboot nothing spawned before can be alive.
    boot_id: str
    tag: str


@dataclass
class Scope:
    """Per-injection context for the executor: where the target was, and what it spawned so far."""

    #: Marks the processes this injection spawns (``FAULTMESH_SPAWN=<tag>#<name>``).
    tag: str
    #: The journalled location; commands run in these namespaces (by inode). None: locate afresh.
    location: Location | None = None
    processes: dict[str, SpawnedProcess] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandResult:
    command: str
    returncode: int
    stdout: str
    stderr: str
    #: The command failed, but with a ``tolerate`` fragment on stderr ("already gone").
    tolerated: bool = False


ProbeState = Literal["present", "absent", "error"]


@dataclass(frozen=True)
class ProbeResult:
    """A probe's verdict. ``error`` is never taken as absent."""

    state: ProbeState
    detail: str = ""


# ---------------------------------------------------------------------------------------- /proc


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    start_time: int


def read_stat(pid: int) -> ProcStat | None:
    """Parse /proc/PID/stat (None when the process does not exist)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    # The command name may contain spaces and parentheses: fields resume after the last ')'.
    rest = text[text.rindex(")") + 2:].split()
    return ProcStat(pid=pid, state=rest[0], ppid=int(rest[1]), pgrp=int(rest[2]), session=int(rest[3]),
                    start_time=int(rest[19]))


def process_id(pid: int) -> ProcessId | None:
    stat = read_stat(pid)
    return None if stat is None else ProcessId(pid, stat.start_time)


def is_alive(process: ProcessId) -> bool:
    """The very same process (PID and start time) exists and is not a zombie."""
    stat = read_stat(process.pid)
    return stat is not None and stat.start_time == process.start_time and stat.state not in ("Z", "X")


def boot_id() -> str:
    return (PROC / "sys/kernel/random/boot_id").read_text().strip()


def _pids() -> Iterator[int]:
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            yield int(entry.name)


def _stats() -> Iterator[ProcStat]:
    for pid in _pids():
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = read_stat(pid)
            if stat is not None:
                yield stat


def _environ_has(pid: int, entry: bytes) -> bool:
    try:
        return entry in (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


def namespace_inode(pid: int, namespace: str) -> int:
    return os.stat(PROC / str(pid) / "ns" / namespace).st_ino


# ---------------------------------------------------------------------------------------- cgroups


def move_to_cgroups(pids: Sequence[int], target_pid: int) -> None:
    """Write each PID into every cgroup the target is in (v1: each hierarchy; v2: the unified one)."""
    try:
        paths = cgroup_paths(target_pid)
        for pid in pids:
            paths.attach(pid)
    except CgroupError as error:
        raise ExecError(f"place pids {list(pids)} in the cgroups of pid {target_pid}", str(error)) from None


# ---------------------------------------------------------------------------------------- executor


class Executor:
    """Runs actions and probes for the engine. Construct one per agent; it is safe for concurrent use."""

    def __init__(self, resolve_pid: PidResolver | None = None, kill_container: ContainerKiller | None = None,
                 *, timeout: float = DEFAULT_TIMEOUT, settle: float = 0.1, reap_timeout: float = 5.0) -> None:
        self._resolve_pid = resolve_pid
        self._kill_container = kill_container
        self.timeout = timeout
        #: How long a spawned process must survive after it was continued to count as started.
        self.settle = settle
        self.reap_timeout = reap_timeout
        #: Spawned children of this agent process, kept so they are waited for (no zombies).
        self._children: dict[int, tuple[asyncio.subprocess.Process, IO[bytes]]] = {}

    # ---- targets

    async def resolve(self, target: Target) -> int:
        """The target's PID now: ``process://PID`` directly, anything else through the runtime resolver.

        Raises :class:`TargetGoneError` when the target does not exist, :class:`RuntimeUnreachableError`
        when its runtime cannot be asked.
        """
        container_id = target.container_id
        if container_id.startswith("process://"):
            text = container_id.removeprefix("process://")
            if not text.isdigit():
                raise TargetGoneError(container_id, "process ids look like process://PID")
            pid = int(text)
        else:
            if self._resolve_pid is None:
                raise TargetGoneError(container_id, "no container runtime is configured on this agent")
            try:
                answer = self._resolve_pid(container_id)
                pid = await answer if inspect.isawaitable(answer) else answer
            except ExecError:
                raise
            except RuntimeUnavailableError as error:
                raise RuntimeUnreachableError(container_id, f"cannot resolve: {error}") from error
            except Exception as error:  # the runtime says why; keep its words
                raise TargetGoneError(container_id, f"cannot resolve: {error}") from error
        if read_stat(pid) is None:
            raise TargetGoneError(container_id, f"process {pid} does not exist")
        return pid

    async def locate(self, target: Target) -> Location:
        """Resolve the target and record the inode of each of its namespaces (journalled at apply)."""
        pid = await self.resolve(target)
        inodes: dict[str, int] = {}
        for namespace in ALL_NAMESPACES:
            with contextlib.suppress(FileNotFoundError):
                inodes[namespace] = namespace_inode(pid, namespace)
        stat = read_stat(pid)
        if stat is None:
            raise TargetGoneError(target.container_id, f"process {pid} exited while it was located")
        held = set(inodes.values())
        mounts = tuple(path for path, inode in _nsfs_mounts() if inode in held)
        return Location(pid, inodes, stat.start_time, clock_ticks(), mounts)

    # ---- actions

    async def run(self, action: Action, target: Target, scope: Scope) -> SpawnedProcess | None:
        """Run one action; returns the spawned process for :class:`Spawn`, None otherwise.

        Raises :class:`ExecError` (or a subclass) on failure; a tolerated failure is success.
        """
        if isinstance(action, Exec):
            await self.command(action.argv, target=target, scope=scope, namespaces=action.namespaces,
                               stdin=action.stdin, tolerate=action.tolerate)
            return None
        if isinstance(action, Spawn):
            spawned = await self._spawn(action, target, scope)
            scope.processes[action.name] = spawned
            return spawned
        if isinstance(action, Reap):
            await self.reap(scope, action.name, parse_signal(action.signal))
            return None
        if isinstance(action, KillProcess):
            pid = await self.resolve(target)
            try:
                os.kill(pid, parse_signal(action.signal))
            except ProcessLookupError:
                raise TargetGoneError(target.container_id, f"process {pid} exited before the signal") from None
            return None
        if isinstance(action, KillContainer):
            signal = parse_signal(action.signal)
            if self._kill_container is not None:
                await self._kill_container(action.container_id, signal)
            else:  # no runtime: signal the container's main process directly
                pid = await self.resolve(Target(action.container_id))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal)
            return None
        raise TypeError(f"unknown action {action!r}")

    async def command(self, argv: Sequence[str], *, target: Target | None = None, scope: Scope | None = None,
                      location: Location | None = None, namespaces: Sequence[Namespace] = (),
                      stdin: str | None = None, tolerate: Sequence[str] = (),
                      timeout: float | None = None) -> CommandResult:
        """Run argv (inside ``namespaces`` of the target, when given) and capture its output.

        The namespaces are those of ``location`` (or ``scope.location``) when known, else of the
        target now. Non-zero exit raises :class:`ExecError` unless stderr has a ``tolerate`` fragment.
        """
        where = await self._where(namespaces, target, location or (scope.location if scope else None))
        with self._entered(namespaces, where) as (prefix, fds):
            full = [*prefix, *argv]
            shown = _show(argv, namespaces)
            process = await self._start(full, fds, shown, stdin=stdin is not None)
            try:
                async with asyncio.timeout(timeout or self.timeout):
                    out, err = await process.communicate(stdin.encode() if stdin is not None else None)
            except TimeoutError:
                _kill_group(process.pid)
                await process.wait()
                raise ExecTimeoutError(shown, f"timed out after {timeout or self.timeout:g} s") from None
            except asyncio.CancelledError:
                _kill_group(process.pid)
                raise
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        code = process.returncode if process.returncode is not None else -1
        if code == 0:
            return CommandResult(shown, code, stdout, stderr)
        if any(fragment in stderr for fragment in tolerate):
            return CommandResult(shown, code, stdout, stderr, tolerated=True)
        raise ExecError(shown, f"exit {code}: {stderr.strip() or stdout.strip() or '(no output)'}",
                        returncode=code, stdout=stdout, stderr=stderr)

    async def _start(self, argv: Sequence[str], fds: Sequence[int], shown: str, *, stdin: bool,
                     env: Mapping[str, str] | None = None, stderr: IO[bytes] | int = asyncio.subprocess.PIPE,
                     stdout: int = asyncio.subprocess.PIPE) -> asyncio.subprocess.Process:
        try:
            return await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=stdout, stderr=stderr, pass_fds=tuple(fds), start_new_session=True,
                env=dict(env) if env is not None else None)
        except OSError as error:
            raise ExecError(shown, f"cannot start: {error.strerror or error}") from None

    async def _where(self, namespaces: Sequence[Namespace], target: Target | None,
                     location: Location | None) -> Location | None:
        """The location whose namespaces a command enters: the journalled one, else the target now."""
        if not namespaces or location is not None:
            return location
        if target is None:
            raise ValueError("a namespaced command needs a target or a location")
        return Location(await self.resolve(target), {})

    @contextlib.contextmanager
    def _entered(self, namespaces: Sequence[Namespace],
                 location: Location | None) -> Iterator[tuple[list[str], list[int]]]:
        """nsenter argv prefix and the namespace descriptors it needs (closed afterwards)."""
        if not namespaces or location is None:
            yield [], []
            return
        fds: list[int] = []
        try:
            flags = []
            for namespace in namespaces:
                fd = _open_namespace(namespace, location)
                fds.append(fd)
                flags.append(f"{_NSENTER_FLAG[namespace]}=/proc/self/fd/{fd}")
            yield ["nsenter", *flags, "--"], fds
        finally:
            for fd in fds:
                os.close(fd)

    # ---- spawn / reap

    async def _spawn(self, action: Spawn, target: Target, scope: Scope) -> SpawnedProcess:
        shown = f"spawn {action.name}: {_show(action.argv, action.namespaces)}"
        tag = f"{scope.tag}#{action.name}"
        target_pid = await self.resolve(target) if action.join_target_cgroup else None
        env = {**os.environ, SPAWN_ENV: tag}
        # The process's stderr, read if it dies early; it lives as long as the process (closed at reap).
        log = tempfile.TemporaryFile(prefix="faultmesh-spawn-")  # noqa: SIM115
        where = await self._where(action.namespaces, target, scope.location)
        with self._entered(action.namespaces, where) as (prefix, fds):
            process = await self._start([*prefix, *_STOP_WRAPPER, *action.argv], fds, shown, stdin=False,
                                        env=env, stderr=log, stdout=asyncio.subprocess.DEVNULL)
        leader = process.pid
        self._children[leader] = (process, log)
        try:
            await self._wait_stopped(process, shown, log)
            group = [s for s in _stats() if s.pgrp == leader]
            if target_pid is not None:
                move_to_cgroups([s.pid for s in group], target_pid)
            os.killpg(leader, signals.SIGCONT)
            worker = next((s for s in group if s.pid != leader), None) or next(s for s in group if s.pid == leader)
            await asyncio.sleep(self.settle)
            if process.returncode is not None or not is_alive(ProcessId(worker.pid, worker.start_time)):
                await _wait(process, self.reap_timeout)
                raise ExecError(shown, f"exited right after it started (exit {process.returncode}): "
                                       f"{_read_log(log) or '(no output)'}", returncode=process.returncode,
                                stderr=_read_log(log))
        except BaseException:
            try:
                with contextlib.suppress(Exception):
                    await self._end(None, tag, signals.SIGKILL, action.name)
            finally:
                _kill_group(leader)  # whatever is left, even if this cleanup is itself cancelled
            with contextlib.suppress(Exception):
                await _wait(process, self.reap_timeout)
            self._forget(leader)
            raise
        return SpawnedProcess(pid=worker.pid, start_time=worker.start_time, pgid=leader,
                              members=tuple(ProcessId(s.pid, s.start_time) for s in group),
                              boot_id=boot_id(), tag=tag)

    async def _wait_stopped(self, process: asyncio.subprocess.Process, shown: str, log: IO[bytes]) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            stat = read_stat(process.pid)
            if stat is not None and stat.state == "T":
                return
            if process.returncode is not None or stat is None or stat.state == "Z":
                code = await process.wait()
                raise ExecError(shown, f"exited before it could be placed (exit {code}): "
                                       f"{_read_log(log) or '(no output)'}", returncode=code, stderr=_read_log(log))
            if time.monotonic() > deadline:
                raise ExecTimeoutError(shown, f"did not stop itself within {self.timeout:g} s")
            await asyncio.sleep(0.002)

    def spawned_alive(self, scope: Scope, name: str) -> list[int]:
        """PIDs still alive of what ``scope`` spawned as ``name`` (journalled identity, or the env tag)."""
        known = scope.processes.get(name)
        tag = known.tag if known is not None else f"{scope.tag}#{name}"
        return _spawned_pids(known, tag)

    async def reap(self, scope: Scope, name: str, signal: signals.Signals | int = signals.SIGKILL) -> None:
        """Kill what ``scope`` spawned as ``name`` and wait until every process of it is gone; idempotent.

        Deepest first: a process gets the signal only once its children are gone *and waited for*, so
        every death is reaped by a living parent (stress-ng reaps its workers, nsenter reaps stress-ng,
        this agent reaps nsenter). Signalling the whole group at once lets a parent die first and
        orphans its children onto an init that may never wait for them: zombies. Escalates to SIGKILL
        after ``reap_timeout``.
        """
        known = scope.processes.get(name)
        await self._end(known, known.tag if known is not None else f"{scope.tag}#{name}", signal, name)
        if known is not None:
            child = self._children.get(known.pgid)
            if child is not None:
                with contextlib.suppress(Exception):
                    await _wait(child[0], self.reap_timeout)
                self._forget(known.pgid)

    async def _end(self, known: SpawnedProcess | None, tag: str, signal: signals.Signals | int, name: str) -> None:
        rounds = [signal] if signal == signals.SIGKILL else [signal, signals.SIGKILL]
        for chosen in rounds:
            if await self._signal_deepest_first(known, tag, chosen):
                return
        # A parent that never waits for its children blocks the order: kill what is left at once.
        await self._kill_all_at_once(known, tag, name)

    async def _signal_deepest_first(self, known: SpawnedProcess | None, tag: str, signal: signals.Signals | int
                                    ) -> bool:
        """Signal the spawn's processes leaves first, each once; True once none is alive, False at the timeout."""
        deadline = time.monotonic() + self.reap_timeout
        signalled: set[tuple[int, int]] = set()
        while True:
            members = _spawn_members(known, tag)
            alive = [member for member in members if member.state not in _DEAD]
            if not alive:
                return True
            if time.monotonic() > deadline:
                return False
            children: dict[int, list[ProcStat]] = defaultdict(list)
            for member in members:
                children[member.ppid].append(member)
            for process in alive:
                own = children.get(process.pid)
                if own:  # wait for its children first; a stopped parent cannot wait: let it run
                    if process.state == "T" and all(child.state in _DEAD for child in own):
                        _send(process.pid, signals.SIGCONT)
                    continue
                if (process.pid, process.start_time) in signalled:
                    continue
                signalled.add((process.pid, process.start_time))
                _send(process.pid, signal)
                if signal != signals.SIGKILL:
                    _send(process.pid, signals.SIGCONT)  # a stopped process acts on its signal only once continued
            await asyncio.sleep(0.01)

    async def _kill_all_at_once(self, known: SpawnedProcess | None, tag: str, name: str) -> None:
        deadline = time.monotonic() + self.reap_timeout
        while True:
            pids = _spawned_pids(known, tag)
            if not pids:
                return
            if time.monotonic() > deadline:
                raise ExecError(f"reap {name}", f"processes {pids} survived SIGKILL")
            for pid in pids:
                _send(pid, signals.SIGKILL)
            await asyncio.sleep(0.01)

    def _forget(self, leader: int) -> None:
        entry = self._children.pop(leader, None)
        if entry is not None:
            entry[1].close()

    # ---- probes

    async def probe(self, probe: Probe, target: Target, scope: Scope) -> ProbeResult:
        """Is the probed change in effect? ``error`` when the probe cannot tell (never taken as absent)."""
        if probe.process is not None:
            alive = self.spawned_alive(scope, probe.process)
            return ProbeResult("present", f"pids {alive}") if alive else ProbeResult("absent", "no process")
        try:
            result = await self.command(probe.argv, target=target, scope=scope, namespaces=probe.namespaces,
                                        tolerate=probe.tolerate)
        except NamespaceGoneError as gone:
            return ProbeResult("absent", f"namespace gone ({gone})")
        except ExecError as error:
            return ProbeResult("error", str(error))
        if result.tolerated:
            return ProbeResult("absent", result.stderr.strip())
        if probe.expect in result.stdout:
            return ProbeResult("present", f"found {probe.expect!r}")
        return ProbeResult("absent", f"{probe.expect!r} not in the output")


# ---------------------------------------------------------------------------------------- helpers


def _open_namespace(namespace: str, location: Location) -> int:
    """A descriptor for the location's namespace: by journalled inode when known, else the PID's."""
    inode = location.namespaces.get(namespace)
    if inode is None:
        try:
            return os.open(PROC / str(location.pid) / "ns" / namespace, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise TargetGoneError(f"pid {location.pid}", "the process is gone") from None
    fd = open_namespace_of(namespace, location)
    if fd is None:
        raise NamespaceGoneError(f"{namespace}:[{inode}]",
                                 "no process, mount or descriptor holds this namespace any more")
    return fd


def clock_ticks() -> int:
    """Clock ticks since boot now, the unit of a process's start time in /proc/PID/stat."""
    uptime = float((PROC / "uptime").read_text().split()[0])
    return int(uptime * os.sysconf("SC_CLK_TCK"))


def _nsfs_mounts() -> list[tuple[str, int]]:
    """(mount point, namespace inode) of every nsfs bind mount this agent sees."""
    mounts: list[tuple[str, int]] = []
    with contextlib.suppress(OSError):
        for line in (PROC / "self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fields = left.split()
            found = re.search(r"\[(\d+)\]$", fields[3]) if right.startswith("nsfs ") else None
            if found is not None:
                mounts.append((_unescape(fields[4]), int(found.group(1))))
    return mounts


def open_namespace_of(namespace: str, location: Location) -> int | None:
    """Open a handle to the location's namespace wherever one provably still is, or None.

    Trusted holders (see :class:`Location`): the target itself, processes (their namespace links,
    then their open descriptors) that existed when the location was taken, and the bind mounts
    recorded then. Each handle is checked by inode after it is opened, so no PID race can swap it.
    """
    inode = location.namespaces[namespace]

    def candidates() -> Iterator[str]:
        target = read_stat(location.pid)
        if target is not None and (not location.pid_start_time or target.start_time == location.pid_start_time):
            yield f"/proc/{location.pid}/ns/{namespace}"
        # Only when the target itself no longer holds it: scan for other trusted holders.
        old_enough = [stat.pid for stat in _stats() if location.ticks and stat.start_time <= location.ticks]
        for pid in old_enough:
            yield f"/proc/{pid}/ns/{namespace}"
        recorded = set(location.bind_mounts)
        for path, mounted in _nsfs_mounts():
            if mounted == inode and path in recorded:
                yield path
        link = f"{namespace}:[{inode}]"
        for pid in old_enough:
            with contextlib.suppress(OSError):
                for entry in os.scandir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(entry.path) == link:
                            yield entry.path

    for path in candidates():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        if os.fstat(fd).st_ino == inode:
            return fd
        os.close(fd)
    return None


_DEAD = ("Z", "X")


def _spawn_members(known: SpawnedProcess | None, tag: str) -> list[ProcStat]:
    """Every process of a spawn, zombies included: its journalled group, the groups of what carries its
    tag, and every descendant of those (one that left the group is still the spawn's).

    The tag finds a spawn whose PIDs never reached the journal; its whole process group counts, as a
    program may overwrite its environment (stress-ng's workers set their titles over it).
    """
    stats = list(_stats())
    members: set[int] = set()
    if known is not None and known.boot_id == boot_id():
        journalled = {m.pid: m.start_time for m in known.members}
        leader_start = journalled.get(known.pgid, min(journalled.values(), default=0))
        leader = read_stat(known.pgid)
        # The group number cannot be reissued while any member lives; a live leader must be ours.
        group_is_ours = leader is None or leader.start_time == leader_start
        for stat in stats:
            if journalled.get(stat.pid) == stat.start_time or (
                    group_is_ours and stat.pgrp == known.pgid and stat.start_time >= leader_start):
                members.add(stat.pid)
    entry = f"{SPAWN_ENV}={tag}".encode()
    own_group = os.getpgrp()
    tagged_groups = {stat.pgrp for stat in stats
                     if stat.state not in _DEAD and _environ_has(stat.pid, entry)} - {own_group}
    members.update(stat.pid for stat in stats if stat.pgrp in tagged_groups)
    children: dict[int, list[int]] = defaultdict(list)
    for stat in stats:
        children[stat.ppid].append(stat.pid)
    frontier = list(members)
    while frontier:
        for child in children.get(frontier.pop(), ()):
            if child not in members:
                members.add(child)
                frontier.append(child)
    return [stat for stat in stats if stat.pid in members]


def _spawned_pids(known: SpawnedProcess | None, tag: str) -> list[int]:
    """Living (not zombie) processes of a spawn (see :func:`_spawn_members`)."""
    return sorted(stat.pid for stat in _spawn_members(known, tag) if stat.state not in _DEAD)


def _send(pid: int, signal: signals.Signals | int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal)


async def _wait(process: asyncio.subprocess.Process, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        await process.wait()


def _unescape(path: str) -> str:
    """mountinfo escapes spaces and the like as backslash + three octal digits."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), path)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signals.SIGKILL)


def _read_log(log: IO[bytes]) -> str:
    with contextlib.suppress(OSError, ValueError):
        log.flush()
        log.seek(0)
        return log.read()[-4000:].decode(errors="replace").strip()
    return ""


def _show(argv: Sequence[str], namespaces: Sequence[str]) -> str:
    where = f"[{'+'.join(namespaces)}] " if namespaces else ""
    return where + shlex.join(argv)
