"""Host mode's "runtime": a target is a plain process, ``process://PID``."""

from __future__ import annotations

import os
import signal as signals
from pathlib import Path
from typing import ClassVar

from .base import (
    ContainerNotFoundError,
    ContainerRuntime,
    InvalidContainerIdError,
    RuntimeName,
    SignalLike,
    parse_signal,
    signal_label,
)

PROC = Path("/proc")


def process_state(pid: int, proc: Path = PROC) -> str | None:
    """The one-letter state in ``/proc/PID/stat`` (``R``, ``S``, ``Z``...); None without such a PID."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2:].split()[0]


class ProcessRuntime(ContainerRuntime):
    """Resolves ``process://PID`` to PID, after checking that the process is there and not a zombie."""

    name: ClassVar[RuntimeName] = "process"

    def __init__(self, proc: Path = PROC) -> None:
        self._proc = proc

    def pid_of(self, container_id: str) -> int:
        text = self.bare_id(container_id)
        if not text.isdigit() or int(text) <= 0:
            raise InvalidContainerIdError(
                f"{container_id!r}: a process id is process://PID with a positive PID"
            )
        pid = int(text)
        state = process_state(pid, self._proc)
        if state is None:
            raise ContainerNotFoundError(f"process {pid} does not exist")
        if state in ("Z", "X"):
            raise ContainerNotFoundError(f"process {pid} has exited (it is a zombie waiting for its parent)")
        return pid

    def kill(self, container_id: str, signal: SignalLike = signals.SIGKILL) -> None:
        chosen = parse_signal(signal)
        pid = self.pid_of(container_id)
        try:
            os.kill(pid, chosen)
        except ProcessLookupError:
            label = signal_label(chosen)
            raise ContainerNotFoundError(f"process {pid} exited before {label} reached it") from None
