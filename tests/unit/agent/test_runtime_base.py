"""Container ids, signals, runtime detection and host processes (process://PID)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faultmesh.agent.runtime import (
    ContainerNotFoundError,
    ContainerRef,
    InvalidContainerIdError,
    RuntimeConfig,
    Runtimes,
    RuntimeUnavailableError,
    detect,
    parse_runtime_name,
    parse_signal,
)
from faultmesh.agent.runtime.process import ProcessRuntime, process_state


@pytest.mark.parametrize(
    ("text", "runtime", "bare"),
    [("containerd://abc123", "containerd", "abc123"), ("docker://f00d", "docker", "f00d"),
     ("cri-o://9e9e", "cri-o", "9e9e"), ("process://42", "process", "42")],
)
def test_container_ids_parse(text: str, runtime: str, bare: str) -> None:
    ref = ContainerRef.parse(text)
    assert (ref.runtime, ref.id, str(ref)) == (runtime, bare, text)


@pytest.mark.parametrize(
    ("text", "message"),
    [("abc", "is not a container id"), ("rkt://abc", "names runtime 'rkt'"), ("docker://", "no usable id"),
     ("docker://a/b", "no usable id"), ("process://x1", "decimal PID"), ("containerd://a b", "no usable id")],
)
def test_bad_container_ids_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidContainerIdError, match=message):
        ContainerRef.parse(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("SIGKILL", signal.SIGKILL), ("kill", signal.SIGKILL), ("9", signal.SIGKILL), (15, signal.SIGTERM),
     (signal.SIGUSR1, signal.SIGUSR1), (" term ", signal.SIGTERM), ("sigstop", signal.SIGSTOP), (40, 40),
     ("40", 40)],
)
def test_signals_parse(value: str | int | signal.Signals, expected: int) -> None:
    assert parse_signal(value) == expected


@pytest.mark.parametrize("value", ["SIGNOPE", "", 0, 65, "-1"])
def test_bad_signals_are_refused(value: str | int) -> None:
    with pytest.raises(ValueError, match="signal"):
        parse_signal(value)


def test_runtime_names() -> None:
    assert parse_runtime_name("crio") == parse_runtime_name("CRI-O") == "cri-o"
    assert parse_runtime_name("containerd") == "containerd"
    with pytest.raises(ValueError, match="not a container runtime"):
        parse_runtime_name("podman")


def _bind(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    return listener


def test_detection_finds_sockets_at_well_known_paths(tmp_path: Path) -> None:
    (tmp_path / "run/containerd").mkdir(parents=True)
    (tmp_path / "run/containerd/containerd.sock").write_text("a regular file is no socket")
    listeners = [_bind(tmp_path / "run/k3s/containerd/containerd.sock"), _bind(tmp_path / "run/docker.sock")]
    try:
        assert detect(tmp_path) == [
            ("containerd", tmp_path / "run/k3s/containerd/containerd.sock"),
            ("docker", tmp_path / "run/docker.sock"),
        ]
        runtimes = Runtimes(RuntimeConfig(host_root=tmp_path))
        assert runtimes.socket_for("docker") == tmp_path / "run/docker.sock"
        with pytest.raises(RuntimeUnavailableError, match="no cri-o socket on this node"):
            runtimes.socket_for("cri-o")
    finally:
        for listener in listeners:
            listener.close()


def test_configured_socket_wins_and_names_its_runtime(tmp_path: Path) -> None:
    config = RuntimeConfig(socket=tmp_path / "containerd.sock")
    assert config.configured_runtime() == "containerd"
    assert Runtimes(config).socket_for("containerd") == tmp_path / "containerd.sock"
    with pytest.raises(ValueError, match="does not say which: set the runtime"):
        RuntimeConfig(socket=tmp_path / "runtime.sock").configured_runtime()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_process_runtime_resolves_and_kills(sleeper: subprocess.Popen[bytes]) -> None:
    runtime = ProcessRuntime()
    assert runtime.pid_of(f"process://{sleeper.pid}") == sleeper.pid
    runtime.kill(f"process://{sleeper.pid}", "SIGTERM")
    assert sleeper.wait(timeout=10) == -signal.SIGTERM


def test_process_runtime_knows_a_zombie_is_gone(sleeper: subprocess.Popen[bytes]) -> None:
    runtime = ProcessRuntime()
    sleeper.kill()
    deadline = time.monotonic() + 10
    while process_state(sleeper.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(ContainerNotFoundError, match="has exited"):
        runtime.pid_of(f"process://{sleeper.pid}")
    sleeper.wait()
    with pytest.raises(ContainerNotFoundError, match="does not exist"):
        runtime.kill(f"process://{sleeper.pid}")
    with pytest.raises(InvalidContainerIdError, match="positive PID"):
        runtime.pid_of("0")

