"""The containerd runtime client against the testbed's real containerd: PIDs, kills, cgroups, errors."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from testbed.containerd import Container, Containerd
from testbed.image import debian

from faultmesh.agent.runtime import (
    ContainerNotFoundError,
    ContainerNotRunningError,
    InvalidContainerIdError,
    RuntimeConfig,
    Runtimes,
    RuntimeUnavailableError,
)
from faultmesh.agent.runtime.containerd import ContainerdRuntime
from faultmesh.agent.runtime.containerd_api import generate

MakeContainer = Callable[..., Container]


@pytest.fixture
def client(containerd: Containerd) -> Iterator[ContainerdRuntime]:
    with ContainerdRuntime(containerd.socket, namespace=containerd.namespace) as runtime:
        yield runtime



def test_pid_of_matches_ctr_task_list(containerd: Containerd, make_container: MakeContainer,
                                      client: ContainerdRuntime) -> None:
    first, second = make_container(name="a"), make_container(name="b")
    listed = containerd.tasks()
    for container in (first, second):
        assert client.pid_of(f"containerd://{container.id}") == listed[container.id][0] == container.pid
    assert client.pid_of(first.id) == first.pid  # the bare id works too
    assert client.task(first.id).status == "RUNNING"
    assert client.version()


def test_an_id_of_another_runtime_is_refused(client: ContainerdRuntime) -> None:
    with pytest.raises(InvalidContainerIdError, match="docker id, not a containerd one"):
        client.pid_of("docker://abc")


def test_unknown_container_is_not_found_with_its_namespace_named(containerd: Containerd,
                                                                 client: ContainerdRuntime) -> None:
    with pytest.raises(ContainerNotFoundError, match=f"no container fmt-missing in namespace '{containerd.namespace}'"):
        client.pid_of("containerd://fmt-missing")
    with pytest.raises(ContainerNotFoundError):
        client.kill("containerd://fmt-missing")


def test_kill_ends_the_task_with_sigkill(containerd: Containerd, make_container: MakeContainer,
                                         client: ContainerdRuntime) -> None:
    victim = make_container(name="victim")
    started = time.monotonic()
    client.kill(f"containerd://{victim.id}")
    status = client.wait(victim.id, timeout=15)
    latency = time.monotonic() - started
    print(f"containerd kill → task exited: {latency * 1000:.1f} ms")
    assert status == 128 + signal.SIGKILL
    assert containerd.tasks()[victim.id][1] == "STOPPED"
    with pytest.raises(ContainerNotRunningError, match="not running"):
        client.pid_of(victim.id)


def test_kill_passes_the_chosen_signal(containerd: Containerd, make_container: MakeContainer,
                                       client: ContainerdRuntime) -> None:
    # PID 1 of a namespace only gets the signals it handles: the trap proves SIGTERM arrived as such.
    script = "trap 'exit 3' TERM; while true; do sleep 0.1; done"
    graceful = make_container(command=("sh", "-c", script), name="graceful")
    client.kill(graceful.id, "SIGTERM")
    assert client.wait(graceful.id, timeout=15) == 3


def test_cgroup_paths_are_the_containers_own(containerd: Containerd, make_container: MakeContainer,
                                            client: ContainerdRuntime) -> None:
    container = make_container(name="cg")
    paths = client.cgroup_paths(client.pid_of(container.id))
    expected_tail = Path(containerd.cgroup_parent, container.id)
    for controller in ("cpu", "cpuacct", "memory", "pids"):
        if controller in paths.v1:
            assert paths.v1[controller].parts[-2:] == expected_tail.parts
            assert (paths.v1[controller] / "cgroup.procs").is_file()
    assert paths.v1 or paths.unified is not None
    assert str(container.pid) in (paths.directories()[0] / "cgroup.procs").read_text().split()
    assert paths.cpu_usage_ns() >= 0
    assert paths.memory_usage_bytes() > 0


def test_a_missing_socket_says_so(tmp_path: Path) -> None:
    with ContainerdRuntime(tmp_path / "none.sock", namespace="x") as runtime, \
            pytest.raises(RuntimeUnavailableError, match=r"none\.sock does not exist"):
        runtime.pid_of("containerd://abc")


def test_runtimes_route_by_scheme_and_resolve_off_the_loop(containerd: Containerd,
                                                           make_container: MakeContainer) -> None:
    container = make_container(name="routed")
    config = RuntimeConfig(runtime="containerd", socket=containerd.socket,
                           containerd_namespace=containerd.namespace)
    with Runtimes(config) as runtimes:
        assert asyncio.run(runtimes.resolve(f"containerd://{container.id}")) == container.pid
        asyncio.run(runtimes.kill_async(f"containerd://{container.id}", signal.SIGKILL))
        containerd.wait_stopped(container.id)
        assert containerd.tasks()[container.id][1] == "STOPPED"


def test_committed_stubs_match_debians_protos() -> None:
    gocode = debian.unpack("golang-github-containerd-containerd-dev") / "usr" / "share" / "gocode" / "src"
    assert generate.main(["--check", "--proto-path", str(gocode)]) == 0, (
        "run: python -m faultmesh.agent.runtime.containerd_api.generate --proto-path " + str(gocode)
    )
