"""cgroup paths from /proc/PID/cgroup and mountinfo: v1, v2, hybrid, co-mounted and bind-mounted hierarchies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faultmesh.agent.runtime.cgroups import (
    CgroupError,
    CgroupLine,
    CgroupPaths,
    cgroup_paths,
    parse_cgroup_mounts,
    parse_proc_cgroup,
    resolve,
)

# What this machine looks like: v1 controllers each on its own mount, plus an empty cgroup2 at unified.
HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUP = """\
9:name=systemd:/kubepods/pod1/abc
4:memory:/kubepods/pod1/abc
2:cpuacct:/kubepods/pod1/abc
1:cpu:/kubepods/pod1/abc
0::/kubepods/pod1/abc
"""


def test_hybrid_resolves_every_hierarchy() -> None:
    paths = resolve(7, parse_proc_cgroup(HYBRID_CGROUP), parse_cgroup_mounts(HYBRID_MOUNTINFO))
    assert paths.mode == "hybrid"
    assert paths.v1 == {
        "name=systemd": Path("/sys/fs/cgroup/systemd/kubepods/pod1/abc"),
        "memory": Path("/sys/fs/cgroup/memory/kubepods/pod1/abc"),
        "cpuacct": Path("/sys/fs/cgroup/cpuacct/kubepods/pod1/abc"),
        "cpu": Path("/sys/fs/cgroup/cpu/kubepods/pod1/abc"),
    }
    assert paths.unified == Path("/sys/fs/cgroup/unified/kubepods/pod1/abc")
    assert paths.directories()[-1] == paths.unified
    assert len(paths.directories()) == 5
    assert paths.unreachable == ()


def test_pure_v2_reads_the_zero_line() -> None:
    mountinfo = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
    paths = resolve(7, parse_proc_cgroup("0::/system.slice/containerd.service/kubepods-x.slice/cri-abc.scope\n"),
                    parse_cgroup_mounts(mountinfo))
    assert paths.mode == "v2"
    assert paths.v1 == {}
    assert paths.unified == Path("/sys/fs/cgroup/system.slice/containerd.service/kubepods-x.slice/cri-abc.scope")


def test_co_mounted_controllers_share_a_directory() -> None:
    mountinfo = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    paths = resolve(7, parse_proc_cgroup("3:cpu,cpuacct:/docker/abc\n"), parse_cgroup_mounts(mountinfo))
    assert paths.v1 == {"cpu": Path("/sys/fs/cgroup/cpu,cpuacct/docker/abc"),
                        "cpuacct": Path("/sys/fs/cgroup/cpu,cpuacct/docker/abc")}
    assert paths.directories() == (Path("/sys/fs/cgroup/cpu,cpuacct/docker/abc"),)
    assert paths.mode == "v1"


def test_a_bind_mounted_subtree_is_stripped_and_outsiders_are_unreachable() -> None:
    # Inside a container: only the pod's subtree of the memory hierarchy is mounted.
    mountinfo = "50 40 0:32 /kubepods/pod9 /host/memory ro,relatime - cgroup cgroup rw,memory\n"
    lines = parse_proc_cgroup("4:memory:/kubepods/pod9/ctr\n1:cpu:/kubepods/pod9/ctr\n")
    paths = resolve(7, lines, parse_cgroup_mounts(mountinfo))
    assert paths.v1 == {"memory": Path("/host/memory/ctr")}
    assert paths.unreachable == ("cpu",)
    outside = resolve(7, parse_proc_cgroup("4:memory:/system.slice\n"), parse_cgroup_mounts(mountinfo))
    assert outside.unreachable == ("memory",)


def test_escaped_mount_points_are_decoded() -> None:
    mountinfo = r"41 31 0:38 / /mnt/cgroup\040two rw - cgroup2 cgroup2 rw" + "\n"
    assert parse_cgroup_mounts(mountinfo)[0].mountpoint == Path("/mnt/cgroup two")


def test_a_malformed_line_is_an_error() -> None:
    with pytest.raises(CgroupError, match="unexpected line"):
        parse_proc_cgroup("garbage\n")
    assert parse_proc_cgroup("\n0::/\n") == [CgroupLine(0, (), "/")]


def test_usage_and_attach_use_the_right_files(tmp_path: Path) -> None:
    cpuacct, memory, unified = tmp_path / "cpuacct", tmp_path / "memory", tmp_path / "unified"
    for directory in (cpuacct, memory, unified):
        directory.mkdir()
        (directory / "cgroup.procs").write_text("")
    (cpuacct / "cpuacct.usage").write_text("123456789\n")
    (memory / "memory.usage_in_bytes").write_text("4096\n")
    (unified / "cpu.stat").write_text("usage_usec 5000\nuser_usec 4000\nsystem_usec 1000\n")
    (unified / "memory.current").write_text("8192\n")
    hybrid = CgroupPaths(pid=1, v1={"cpuacct": cpuacct, "memory": memory}, unified=unified)
    assert hybrid.cpu_usage_ns() == 123456789
    assert hybrid.memory_usage_bytes() == 4096
    v2 = CgroupPaths(pid=1, unified=unified)
    assert v2.cpu_usage_ns() == 5_000_000
    assert v2.memory_usage_bytes() == 8192
    hybrid.attach(4242)
    assert [(d / "cgroup.procs").read_text() for d in (cpuacct, memory, unified)] == ["4242\n"] * 3
    with pytest.raises(CgroupError, match="no memory cgroup"):
        CgroupPaths(pid=1, v1={"cpuacct": cpuacct}).memory_usage_bytes()
    with pytest.raises(CgroupError, match=r"cannot move pid 1 into .*missing"):
        CgroupPaths(pid=1, unified=tmp_path / "missing").attach(1)


def test_this_process_has_readable_cgroups() -> None:
    paths = cgroup_paths(os.getpid())
    assert paths.directories()
    assert all(directory.is_dir() for directory in paths.directories())
    with pytest.raises(CgroupError, match="does not exist"):
        cgroup_paths(2**22 + 12345)
