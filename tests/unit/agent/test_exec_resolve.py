"""The executor tells a target that does not exist from a runtime that cannot be asked."""

from __future__ import annotations

import asyncio

import pytest

from faultmesh.agent.exec import Executor, RuntimeUnreachableError, TargetGoneError
from faultmesh.agent.runtime import ContainerNotFoundError, RuntimeUnavailableError
from faultmesh.kinds.plan import Target


def _resolve_with(error: Exception) -> Exception:
    def resolver(container_id: str) -> int:
        raise error

    with pytest.raises(Exception) as caught:
        asyncio.run(Executor(resolve_pid=resolver).resolve(Target("containerd://abc")))
    return caught.value


def test_an_unreachable_runtime_is_its_own_error_not_a_missing_target() -> None:
    error = _resolve_with(RuntimeUnavailableError("containerd socket /run/x.sock does not exist"))
    assert isinstance(error, RuntimeUnreachableError) and not isinstance(error, TargetGoneError)
    assert str(error) == "containerd://abc: cannot resolve: containerd socket /run/x.sock does not exist"


def test_a_container_the_runtime_does_not_know_is_gone() -> None:
    error = _resolve_with(ContainerNotFoundError("containerd has no container abc"))
    assert isinstance(error, TargetGoneError)
    assert str(error) == "containerd://abc: cannot resolve: containerd has no container abc"
