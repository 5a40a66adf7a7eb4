"""Kills on real processes: container-kill through containerd, and process kill in host mode.

Plans come from the planners and run through the agent's executor, as in the agent.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from testbed.containerd import Container, Containerd

from faultmesh.agent.exec import Executor, Scope, TargetGoneError
from faultmesh.agent.runtime import RuntimeConfig, Runtimes
from faultmesh.agent.runtime.containerd import ContainerdRuntime
from faultmesh.api.podchaos import PodChaosSpec
from faultmesh.kinds.kill import plan_pod_chaos, plan_process_kill
from faultmesh.kinds.plan import Plan, Target

MakeContainer = Callable[..., Container]


@pytest.fixture
def runtimes(containerd: Containerd) -> Iterator[Runtimes]:
    config = RuntimeConfig(runtime="containerd", socket=containerd.socket,
                           containerd_namespace=containerd.namespace)
    with Runtimes(config) as routed:
        yield routed


def _run(executor: Executor, plan: Plan) -> None:
    async def run() -> None:
        scope = Scope(tag="fmt-kill")
        for step in plan.steps:
            await executor.run(step.apply, plan.target, scope)

    asyncio.run(run())


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "600"])
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_container_kill_ends_the_task_with_sigkill(containerd: Containerd, make_container: MakeContainer,
                                                    runtimes: Runtimes) -> None:
    victim, bystander = make_container(name="victim"), make_container(name="bystander")
    spec = PodChaosSpec.model_validate({"action": "container-kill", "mode": "one", "containerNames": ["app"],
                                        "selector": {"namespaces": ["default"]}})
    plan = plan_pod_chaos(spec, Target(f"containerd://{victim.id}", "default/victim/app"))
    executor = Executor(resolve_pid=runtimes.resolve, kill_container=runtimes.kill_async)
    with ContainerdRuntime(containerd.socket, namespace=containerd.namespace) as client:
        started = time.monotonic()
        _run(executor, plan)
        exit_status = client.wait(victim.id, timeout=15)
        latency = time.monotonic() - started
        print(f"\ncontainer-kill plan → task exited: {latency * 1000:.1f} ms")
        assert exit_status == 128 + signal.SIGKILL
        tasks = containerd.tasks()
        assert tasks[victim.id][1] == "STOPPED"
        assert tasks[bystander.id] == (bystander.pid, "RUNNING")


def test_process_kill_in_host_mode(sleeper: subprocess.Popen[bytes]) -> None:
    plan = plan_process_kill(Target(f"process://{sleeper.pid}", f"host/{sleeper.pid}"))
    started = time.monotonic()
    _run(Executor(resolve_pid=Runtimes().resolve), plan)
    status = sleeper.wait(timeout=15)
    print(f"\nprocess kill plan → sleep exited: {(time.monotonic() - started) * 1000:.1f} ms")
    assert status == -signal.SIGKILL


@pytest.mark.parametrize(("spec_signal", "number"), [(15, signal.SIGTERM), ("SIGUSR1", signal.SIGUSR1), (40, 40)],
                         ids=["15", "SIGUSR1", "unnamed-real-time-40"])
def test_process_kill_sends_the_specs_signal(sleeper: subprocess.Popen[bytes], spec_signal: int | str,
                                             number: int) -> None:
    # 40 has no name (SIGRTMIN+6): the planner keeps it a number and the executor must still send it.
    _run(Executor(), plan_process_kill(Target(f"process://{sleeper.pid}"), spec_signal))
    assert sleeper.wait(timeout=15) == -number


def test_killing_a_process_that_is_gone_is_an_error(sleeper: subprocess.Popen[bytes]) -> None:
    sleeper.kill()
    sleeper.wait()
    with pytest.raises(TargetGoneError, match=rf"process {sleeper.pid} does not exist"):
        _run(Executor(), plan_process_kill(Target(f"process://{sleeper.pid}")))
