"""Kernel tier: tests that need kernel features this host lacks (netem) run inside a Debian kernel VM.

A test marked `inside_vm` runs only inside the VM; on the host it is deselected (not skipped), because a
host-side test of the same file boots the VM, runs it there with pytest and asserts on the outcome. Inside
the VM, only `inside_vm` tests run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # testbed/ is a top-level directory of the repo, not an installed package
    sys.path.insert(0, str(REPO))

from testbed.vm.runner import IN_VM_ENV  # noqa: E402

IN_VM = os.environ.get(IN_VM_ENV) == "1"
HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "inside_vm: runs only inside the kernel-tier VM (started by a host test)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        inside = item.get_closest_marker("inside_vm") is not None
        mine = item.path.is_relative_to(HERE)
        if (IN_VM and not inside) or (not IN_VM and mine and inside):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    if not IN_VM and os.geteuid() != 0:
        skip = pytest.mark.skip(reason="kernel tier needs root: it installs qemu and shares the host root")
        for item in keep:
            if item.path.is_relative_to(HERE):
                item.add_marker(skip)
