"""docker and CRI-O clients against a peer on a unix socket that speaks their documented API shapes.

Neither daemon can run here; the peer answers the way the Engine API (``/containers/{id}/json``,
``/containers/{id}/kill``) and CRI-O's info endpoint (``/containers/{id}``) do, including their errors.
Kills that CRI-O does by PID hit a real ``sleep`` started by the test.
"""

from __future__ import annotations

import json
import signal
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from faultmesh.agent.runtime import (
    ContainerNotFoundError,
    ContainerNotRunningError,
    ContainerRuntimeError,
    InvalidContainerIdError,
    RuntimeConfig,
    Runtimes,
    RuntimeUnavailableError,
)
from faultmesh.agent.runtime.crio import CrioRuntime
from faultmesh.agent.runtime.docker import DockerRuntime

Reply = tuple[int, str, bytes]  # status, content type, body


@dataclass
class Peer:
    """A tiny HTTP server on a unix socket; ``route`` answers each request, ``seen`` records them."""

    path: Path
    route: Callable[[str, str, dict[str, list[str]], dict[str, str]], Reply]
    seen: list[tuple[str, str, dict[str, list[str]], dict[str, str]]] = field(default_factory=list)


def _serve(peer: Peer) -> Iterator[Peer]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            parts = urlsplit(self.path)
            query, headers = parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()}
            peer.seen.append((self.command, parts.path, query, headers))
            status, content_type, body = peer.route(self.command, parts.path, query, headers)
            self.send_response(status)
            if body or status != 204:
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # noqa: N815 -- http.server's naming

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def address_string(self) -> str:
            return "unix"

    server = socketserver.ThreadingUnixStreamServer(str(peer.path), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _json(status: int, document: object) -> Reply:
    return status, "application/json", json.dumps(document).encode()


# ---- docker ------------------------------------------------------------------------------------------------

RUNNING_ID = "4a5b6c7d8e9f"
EXITED_ID = "0123456789ab"


def _docker_route(method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Reply:
    parts = path.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "containers":
        return _json(404, {"message": "page not found"})
    container, action = parts[1], parts[2]
    if container not in (RUNNING_ID, EXITED_ID):
        return _json(404, {"message": f"No such container: {container}"})
    if method == "GET" and action == "json":
        state = ({"Status": "running", "Running": True, "Pid": 4242, "ExitCode": 0} if container == RUNNING_ID
                 else {"Status": "exited", "Running": False, "Pid": 0, "ExitCode": 137})
        return _json(200, {"Id": container, "State": state, "Config": {"Labels": {"app": "web"}}})
    if method == "POST" and action == "kill":
        if container == EXITED_ID:
            return _json(409, {"message": f"Cannot kill container: {container}: Container {container} is not running"})
        return 204, "", b""
    return _json(404, {"message": "page not found"})


@pytest.fixture
def docker_peer(tmp_path: Path) -> Iterator[Peer]:
    yield from _serve(Peer(tmp_path / "docker.sock", _docker_route))


def test_docker_pid_comes_from_state_pid(docker_peer: Peer) -> None:
    with DockerRuntime(docker_peer.path) as docker:
        assert docker.pid_of(f"docker://{RUNNING_ID}") == 4242
        assert docker.pid_of(RUNNING_ID) == 4242
    method, path, _, headers = docker_peer.seen[0]
    assert (method, path) == ("GET", f"/containers/{RUNNING_ID}/json")
    assert headers["host"] == "localhost"


def test_docker_kill_posts_the_signal(docker_peer: Peer) -> None:
    with DockerRuntime(docker_peer.path) as docker:
        docker.kill(f"docker://{RUNNING_ID}")
        docker.kill(RUNNING_ID, "term")
        docker.kill(RUNNING_ID, 40)
    assert [(m, p, q) for m, p, q, _ in docker_peer.seen] == [
        ("POST", f"/containers/{RUNNING_ID}/kill", {"signal": ["SIGKILL"]}),
        ("POST", f"/containers/{RUNNING_ID}/kill", {"signal": ["SIGTERM"]}),
        ("POST", f"/containers/{RUNNING_ID}/kill", {"signal": ["40"]}),
    ]


def test_docker_errors_say_what_happened(docker_peer: Peer) -> None:
    with DockerRuntime(docker_peer.path) as docker:
        with pytest.raises(ContainerNotFoundError,
                           match="docker has no container feedface: No such container: feedface"):
            docker.pid_of("docker://feedface")
        with pytest.raises(ContainerNotRunningError, match=rf"{EXITED_ID} is not running \(status exited\)"):
            docker.pid_of(EXITED_ID)
        with pytest.raises(ContainerNotRunningError, match=r"Container .* is not running"):
            docker.kill(EXITED_ID)
        with pytest.raises(ContainerNotFoundError):
            docker.kill("feedface")
        with pytest.raises(InvalidContainerIdError, match="is a containerd id, not a docker one"):
            docker.pid_of("containerd://abc")
        with pytest.raises(ValueError, match="is not a signal"):
            docker.kill(RUNNING_ID, "SIGNOPE")


def test_docker_ids_are_quoted_into_the_path(docker_peer: Peer) -> None:
    with DockerRuntime(docker_peer.path) as docker, pytest.raises(ContainerNotFoundError):
        docker.pid_of("a?b#c")
    assert docker_peer.seen[-1][1] == "/containers/a%3Fb%23c/json"


def test_a_server_error_is_reported_with_its_message(tmp_path: Path) -> None:
    def broken(*_: object) -> Reply:
        return _json(500, {"message": "layer does not exist"})

    for peer in _serve(Peer(tmp_path / "docker.sock", broken)):
        with DockerRuntime(peer.path) as docker, \
                pytest.raises(ContainerRuntimeError, match=r"docker could not inspect x \(HTTP 500\): layer does not"):
            docker.pid_of("x")


def test_a_reply_that_is_not_json_is_named(tmp_path: Path) -> None:
    def garbled(*_: object) -> Reply:
        return 200, "application/json", b"<html>proxy error</html>"

    for peer in _serve(Peer(tmp_path / "docker.sock", garbled)):
        with DockerRuntime(peer.path) as docker, \
                pytest.raises(ContainerRuntimeError, match=r"docker's inspect of x is not JSON: b'<html>proxy"):
            docker.pid_of("x")


# ---- CRI-O -------------------------------------------------------------------------------------------------


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _crio_route_for(pid: int) -> Callable[[str, str, dict[str, list[str]], dict[str, str]], Reply]:
    def route(method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Reply:
        container = path.removeprefix("/containers/")
        info = {"name": "k8s_app_web-0_shop_1_0", "image": "busybox", "created_time": 1700000000000000000,
                "labels": {"io.kubernetes.pod.name": "web-0"}, "annotations": {}, "crio_annotations": {},
                "log_path": "/var/log/pods/x.log", "root": "/var/lib/containers/storage/overlay/x/merged",
                "sandbox": "5f5f", "ip_addresses": ["10.88.0.5"]}
        if container == "running":
            return _json(200, {**info, "pid": pid})
        if container == "created":
            return _json(200, {**info, "pid": 0})
        return 404, "text/plain; charset=utf-8", f"can't find the container with id {container}\n".encode()

    return route


def test_crio_pid_comes_from_the_info_endpoint(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    for peer in _serve(Peer(tmp_path / "crio.sock", _crio_route_for(sleeper.pid))):
        with CrioRuntime(peer.path) as crio:
            assert crio.pid_of("cri-o://running") == sleeper.pid
        method, path, _, headers = peer.seen[0]
        assert (method, path, headers["host"]) == ("GET", "/containers/running", "crio")


def test_crio_kill_signals_the_containers_process(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    for peer in _serve(Peer(tmp_path / "crio.sock", _crio_route_for(sleeper.pid))):
        with CrioRuntime(peer.path) as crio:
            crio.kill("cri-o://running")
        assert sleeper.wait(timeout=10) == -signal.SIGKILL


def test_crio_errors_say_what_happened(tmp_path: Path) -> None:
    for peer in _serve(Peer(tmp_path / "crio.sock", _crio_route_for(1))):
        with CrioRuntime(peer.path) as crio:
            with pytest.raises(ContainerNotFoundError,
                               match="CRI-O has no container gone: can't find the container with id gone"):
                crio.pid_of("cri-o://gone")
            with pytest.raises(ContainerNotRunningError, match=r"created has no running process \(pid 0\)"):
                crio.pid_of("cri-o://created")
            with pytest.raises(InvalidContainerIdError):
                crio.pid_of("docker://running")


# ---- reaching the socket -------------------------------------------------------------------------------------


def test_a_missing_socket_is_named(tmp_path: Path) -> None:
    with DockerRuntime(tmp_path / "nowhere.sock") as docker, \
            pytest.raises(RuntimeUnavailableError, match=r"docker socket .*nowhere\.sock does not exist"):
        docker.pid_of("abc")


def test_a_socket_nobody_listens_on_is_named(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays; nobody listens
    with CrioRuntime(path) as crio, pytest.raises(RuntimeUnavailableError, match="nothing listens on CRI-O socket"):
        crio.pid_of("abc")


def test_a_silent_peer_times_out(tmp_path: Path) -> None:
    def slow(*_: object) -> Reply:
        time.sleep(1.0)
        return _json(200, {})

    for peer in _serve(Peer(tmp_path / "docker.sock", slow)):
        with DockerRuntime(peer.path, timeout=0.2) as docker, \
                pytest.raises(RuntimeUnavailableError, match=r"did not answer GET /containers/abc/json within 0\.2 s"):
            docker.pid_of("abc")


def test_runtimes_route_each_scheme_to_its_client(docker_peer: Peer, tmp_path: Path,
                                                  sleeper: subprocess.Popen[bytes]) -> None:
    crio_sock = tmp_path / "crio.sock"
    for _ in _serve(Peer(crio_sock, _crio_route_for(sleeper.pid))):
        host = tmp_path / "host"
        (host / "var/run/crio").mkdir(parents=True)
        (host / "var/run/crio/crio.sock").symlink_to(crio_sock)  # found where CRI-O usually puts it
        config = RuntimeConfig(runtime="docker", socket=docker_peer.path, host_root=host)
        with Runtimes(config) as runtimes:
            assert runtimes.pid_of(f"docker://{RUNNING_ID}") == 4242
            assert runtimes.pid_of("cri-o://running") == sleeper.pid
            assert runtimes.pid_of(f"process://{sleeper.pid}") == sleeper.pid
            with pytest.raises(RuntimeUnavailableError, match=r"no containerd socket on this node \(looked at "):
                runtimes.pid_of("containerd://abc")
