"""Node tier fixtures: a private containerd with the busybox image, network namespaces, a container factory.

Everything runs on the real host as root. The daemon is shared by the session; namespaces and containers
belong to one test and are removed after it, pass or fail. Each teardown asserts it left nothing behind.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # testbed/ is a top-level directory of the repo, not an installed package
    sys.path.insert(0, str(REPO))

from testbed.containerd import Container, Containerd, NetNamespace, NetworkLab  # noqa: E402
from testbed.containerd.netns import sweep_stale as sweep_stale_namespaces  # noqa: E402
from testbed.containerd.runtime import sweep_stale as sweep_stale_daemons  # noqa: E402
from testbed.image import BUSYBOX, PAUSE  # noqa: E402

MakeContainer = Callable[..., Container]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="node tier needs root: it runs containerd, runc and network namespaces")
    for item in items:
        if item.path.is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def containerd() -> Iterator[Containerd]:
    """A private containerd with the busybox and pause images imported; torn down at session end.

    First it removes what an earlier, killed run left (daemons and namespaces whose owner is gone).
    """
    for line in [*sweep_stale_daemons(), *(f"removed stale netns {n}" for n in sweep_stale_namespaces())]:
        print(f"testbed: {line}", file=sys.stderr)
    daemon = Containerd.start()
    try:
        daemon.import_image(BUSYBOX)
        daemon.import_image(PAUSE)
        yield daemon
    finally:
        daemon.close()
    assert daemon.residue() == [], f"containerd teardown left residue: {daemon.residue()}"


@pytest.fixture
def lab() -> Iterator[NetworkLab]:
    """Network namespaces and veth links for one test."""
    network = NetworkLab()
    try:
        yield network
    finally:
        errors = network.close()
    assert errors == [], errors
    assert network.residue() == [], f"network teardown left residue: {network.residue()}"


@pytest.fixture
def make_container(containerd: Containerd) -> Iterator[MakeContainer]:
    """Factory: make_container(netns=None, command=("sleep", "3600"), labels=None, name="c") -> Container.

    IDs get a random suffix so tests never collide; every container made here is removed afterwards.
    """
    made: list[str] = []

    def make(
        netns: NetNamespace | None = None,
        command: Sequence[str] = ("sleep", "3600"),
        labels: Mapping[str, str] | None = None,
        name: str = "c",
        image: str = BUSYBOX.name,
    ) -> Container:
        container_id = f"{name}-{secrets.token_hex(3)}"
        made.append(container_id)
        return containerd.run(container_id, command, image=image, labels=labels, netns=netns.path if netns else None)

    yield make
    for container_id in made:
        containerd.remove(container_id)
    left = set(made) & set(containerd.container_ids())
    assert not left, f"containers not removed: {left}"
