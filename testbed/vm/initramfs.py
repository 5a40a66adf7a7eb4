"""A Debian kernel unpacked from its .deb, and a small initramfs that boots it into the host's own root.

The initramfs holds Debian's static busybox, a chosen set of the kernel's modules (with modules.dep and
alias lines so the kernel's on-demand loading works through busybox modprobe) and an /init that mounts the
host root read-only over virtio-9p, puts tmpfs on /tmp and /run, chroots, runs one command and powers off.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import stat
from dataclasses import dataclass
from pathlib import Path

from testbed.image import busybox_binary, debian
from testbed.image.oci import applet_paths
from testbed.vm.modules import ModuleTree, alias_conf, modules_dep

KERNEL_META_PACKAGE = "linux-image-amd64"  # the cloud flavour has no 9p (CONFIG_NET_9P is not set)

# Needed before the host root can be mounted: virtio PCI transport and the 9p filesystem over it.
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
# Shipped for loading on demand (tc asks for sch_*/cls_*/act_*, ip for rtnl-link-*).
SHIPPED_DIRS = ("kernel/net/sched",)
SHIPPED_MODULES = ("veth", "ifb", "dummy")

IO_TAG = "testbed_io"
ROOT_TAG = "testbed_root"
IO_MOUNT = "/run/testbed-vm"  # where the command sees the host's I/O directory


@dataclass(frozen=True)
class Kernel:
    package: str
    release: str  # uname -r
    vmlinuz: Path
    modules_dir: Path


def fetch_kernel(meta_package: str = KERNEL_META_PACKAGE) -> Kernel:
    """The current Debian kernel image, downloaded and unpacked in the cache (never installed)."""
    package = debian.resolve_dependency(meta_package, "linux-image-")
    tree = debian.unpack(package)
    vmlinuz = sorted((tree / "boot").glob("vmlinuz-*"))
    if not vmlinuz:
        raise debian.DebianError(f"{package} has no boot/vmlinuz-*")
    release = vmlinuz[-1].name.removeprefix("vmlinuz-")
    return Kernel(package, release, vmlinuz[-1], tree / "lib" / "modules" / release)


class Cpio:
    """A gzip-compressed cpio archive in the `newc` format the kernel unpacks as its initramfs."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._inode = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = [self._inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0]
        self._inode += 1
        header = b"070701" + b"".join(f"{value:08X}".encode() for value in fields)
        self._buffer.write(header + encoded)
        self._buffer.write(b"\0" * (-(len(header) + len(encoded)) % 4))
        self._buffer.write(data)
        self._buffer.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str, mode: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | mode)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return gzip.compress(self._buffer.getvalue(), compresslevel=6, mtime=0)


INIT_SCRIPT = r"""#!/bin/sh
# testbed VM init: mount the host root read-only, chroot, run the command, power off.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "testbed-vm: $*" > /dev/ttyS0; }
die() { say "FAILED: $*"; echo 125 > /io/exit-code 2>/dev/null; sync; poweroff -f; }
for module in @BOOT_MODULES@; do
  insmod "/lib/modules/@RELEASE@/$module" || die "insmod $module"
done
echo /sbin/modprobe > /proc/sys/kernel/modprobe
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 @IO_TAG@ /io || die "mount io share"
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=262144,cache=loose @ROOT_TAG@ /newroot \
  || die "mount host root"
for module in $(sed -n 's/.*testbed\.modules=\([^ ]*\).*/\1/p' /proc/cmdline | tr , ' '); do
  modprobe "$module" || die "modprobe $module"
done
ip link set lo up
hostname testbed-vm
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=755 tmpfs /newroot/run
mkdir -p /newroot@IO_MOUNT@
mount --bind /io /newroot@IO_MOUNT@
say "running command"
chroot /newroot /bin/sh @IO_MOUNT@/command.sh </dev/null >/io/stdout 2>/io/stderr
echo $? > /io/exit-code
sync
poweroff -f
"""


def _init_script(kernel: Kernel, boot_paths: list[str]) -> bytes:
    text = (
        INIT_SCRIPT.replace("@BOOT_MODULES@", " ".join(boot_paths))
        .replace("@RELEASE@", kernel.release)
        .replace("@IO_TAG@", IO_TAG)
        .replace("@ROOT_TAG@", ROOT_TAG)
        .replace("@IO_MOUNT@", IO_MOUNT)
    )
    return text.encode()


def build_initramfs(kernel: Kernel) -> bytes:
    tree = ModuleTree(kernel.modules_dir)
    boot = tree.load_order(BOOT_MODULES)
    shipped_names = [*BOOT_MODULES, *SHIPPED_MODULES]
    for subdir in SHIPPED_DIRS:
        shipped_names += tree.names_under(subdir)
    shipped = tree.load_order(shipped_names)

    busybox = busybox_binary()
    archive = Cpio()
    for directory in (
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "newroot",
        "io",
        "etc",
        "etc/modprobe.d",
        "lib",
        "lib/modules",
        f"lib/modules/{kernel.release}",
        "tmp",
        "run",
    ):
        archive.directory(directory)
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in applet_paths(busybox):
        archive.symlink(applet, "/bin/busybox")
    archive.file("init", _init_script(kernel, [str(m.path) for m in boot]), 0o755)

    made: set[str] = set()
    for module in shipped:
        parts = module.path.parts
        for depth in range(1, len(parts)):
            directory = f"lib/modules/{kernel.release}/" + "/".join(parts[:depth])
            if directory not in made:
                made.add(directory)
                archive.directory(directory)
        archive.file(f"lib/modules/{kernel.release}/{module.path}", (kernel.modules_dir / module.path).read_bytes())
    archive.file(f"lib/modules/{kernel.release}/modules.dep", modules_dep(shipped, tree).encode())
    archive.file("etc/modprobe.d/aliases.conf", alias_conf(shipped).encode())
    return archive.finish()


def initramfs_path(kernel: Kernel) -> Path:
    """The initramfs for `kernel`, built once per kernel, busybox and version of this file."""
    busybox = busybox_binary()
    recipe = f"{kernel.package}|{kernel.vmlinuz.parent.parent.name}|{busybox.parent.parent.name}".encode()
    key = hashlib.sha256(recipe + Path(__file__).read_bytes()).hexdigest()[:16]
    out = debian.cache_root() / "vm" / f"initramfs-{kernel.release}-{key}.cpio.gz"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with debian.file_lock(out.parent / ".lock"):
        if not out.is_file():
            partial = out.with_name(out.name + ".partial")
            partial.write_bytes(build_initramfs(kernel))
            partial.rename(out)
    return out
