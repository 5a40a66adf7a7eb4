"""Host mode's state directory, the engine lock, and who owns an experiment.

One process at a time drives the in-process agent engine of a host (``faultmesh run``, ``faultmesh serve``,
the watchdog, or a command that recovers what an owner left behind): it holds an exclusive ``flock`` on
``<state>/engine.lock``. The kernel drops the lock when that process dies, however it dies, so the lock never
outlives its holder. The file says who holds it, for the message a second process prints.

Owners are written ``<role>:<pid>:<start-time>``; the start time (from ``/proc/PID/stat``) tells a live owner
from a recycled PID.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

DEFAULT_STATE_DIR = Path("/var/lib/faultmesh")
STATE_DIR_ENV = "FAULTMESH_STATE_DIR"


def state_dir(given: Path | None = None) -> Path:
    """``given``, else ``$FAULTMESH_STATE_DIR``, else /var/lib/faultmesh."""
    if given is not None:
        return given
    from_env = os.environ.get(STATE_DIR_ENV)
    return Path(from_env) if from_env else DEFAULT_STATE_DIR


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def journal(self) -> Path:
        return self.root / "journal"

    @property
    def lock(self) -> Path:
        return self.root / "engine.lock"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def prepare(self) -> None:
        for path in (self.root, self.journal, self.runs):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)


def process_start_time(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after the last ")" are plain.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else None


def owner_id(role: str, pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{role}:{pid}:{process_start_time(pid) or '0'}"


def owner_alive(owner: str) -> bool:
    """Whether the process named by an owner string still runs (the same process, not a recycled PID)."""
    parts = owner.split(":")
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    return process_start_time(int(parts[1])) == parts[2]


def owner_pid(owner: str) -> int | None:
    parts = owner.split(":")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


class EngineBusyError(RuntimeError):
    """Another process drives this host's engine."""

    def __init__(self, holder: str) -> None:
        self.holder = holder
        super().__init__(
            f"another faultmesh process drives host mode right now ({holder or 'unknown holder'}); wait for it "
            "to finish, stop it, or submit the experiment to `faultmesh serve`"
        )


class EngineLock:
    """The exclusive right to run this host's agent engine (a flock; released when the process dies)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._file: IO[str] | None = None

    def acquire(self, holder: str, *, wait: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait`` seconds; :class:`EngineBusyError` if another process keeps it."""
        self.layout.prepare()
        handle = open(self.layout.lock, "a+")  # noqa: SIM115 - held open as long as the lock is held
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    current = handle.read().strip()
                    handle.close()
                    raise EngineBusyError(current) from None
                time.sleep(0.05)
        handle.seek(0)
        handle.truncate()
        handle.write(holder + "\n")
        handle.flush()
        self._file = handle

    def holder(self) -> str:
        """Who holds (or last held) the lock, as it wrote itself down."""
        try:
            return self.layout.lock.read_text().strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None
