"""Debian packages for the testbed: fetch a .deb into the cache and unpack it, or install it on the host.

Unpacking instead of installing keeps the host untouched where only files are needed (busybox for an
image, a kernel for the VM, protos for gRPC stubs); installing is for daemons the host must run.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

APT_LOCK = Path("/var/lock/faultmesh-apt.lock")


class DebianError(RuntimeError):
    """An apt or dpkg step failed; the message carries the command and its output."""


def cache_root() -> Path:
    """Where the testbed keeps what it downloads and builds; never inside the repo."""
    override = os.environ.get("FAULTMESH_TESTBED_CACHE")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "faultmesh" / "testbed"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise builders of the same cache entry across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], *, cwd: Path | None = None) -> str:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DebianError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _apt_locked(*args: str) -> str:
    """apt-get under the lock every testbed builder shares, so parallel installs do not collide."""
    return _run(["flock", str(APT_LOCK), "apt-get", *args])


def apt_update() -> None:
    _apt_locked("update", "-q")


def _candidate_version(package: str) -> str | None:
    out = _run(["apt-cache", "policy", package])
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Candidate":
            value = value.strip()
            return None if value in ("", "(none)") else value
    return None


@functools.cache  # apt-cache takes most of a second per call; the answer holds for one process
def candidate_version(package: str) -> str:
    """The version apt would install; refreshes the package lists once if they do not know it."""
    version = _candidate_version(package)
    if version is None:
        apt_update()
        version = _candidate_version(package)
    if version is None:
        raise DebianError(f"no Debian package {package!r} is available (apt-cache policy has no candidate)")
    return version


@functools.cache
def resolve_dependency(meta_package: str, prefix: str) -> str:
    """The concrete package a meta-package points at, e.g. linux-image-amd64 -> linux-image-6.1.0-N-amd64."""
    candidate_version(meta_package)  # makes sure the lists are loaded
    out = _run(["apt-cache", "depends", "--no-recommends", "--no-suggests", meta_package])
    for line in out.splitlines():
        kind, _, name = line.strip().partition(":")
        name = name.strip()
        if kind == "Depends" and name.startswith(prefix):
            return name
    raise DebianError(f"{meta_package} depends on no package named {prefix}*")


def download(package: str) -> Path:
    """The package's .deb in the cache, fetched with apt-get download when missing."""
    version = candidate_version(package)
    debs = cache_root() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    pattern = f"{package}_{version.replace(':', '%3a')}_*.deb"  # apt spells an epoch's colon as %3a
    with file_lock(debs / ".lock"):
        found = sorted(debs.glob(pattern))
        if not found:
            # apt drops privileges to _apt for downloads; a root-only cache dir just makes it warn.
            _run(["apt-get", "download", "-q", f"{package}={version}"], cwd=debs)
            found = sorted(debs.glob(pattern))
        if not found:
            raise DebianError(f"apt-get download {package}={version} left no {pattern} in {debs}")
    return found[-1]


def unpack(package: str) -> Path:
    """The package's files unpacked (dpkg-deb -x) into a cache directory keyed by package and version."""
    deb = download(package)
    target = cache_root() / "unpacked" / deb.stem
    if target.is_dir():
        return target
    with file_lock(target.with_name(target.name + ".lock")):
        if target.is_dir():
            return target
        scratch = Path(tempfile.mkdtemp(prefix=deb.stem + ".", dir=target.parent))
        try:
            _run(["dpkg-deb", "-x", str(deb), str(scratch)])
            scratch.rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def is_installed(package: str) -> bool:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode == 0 and proc.stdout.strip() == "installed"


def ensure_installed(*packages: str) -> list[str]:
    """Install the packages that are missing (no recommends); returns the ones it installed."""
    missing = [p for p in packages if not is_installed(p)]
    if not missing:
        return []
    if os.geteuid() != 0:
        raise DebianError(f"packages {', '.join(missing)} are missing and installing them needs root")
    try:
        _apt_locked("install", "-y", "-q", "--no-install-recommends", *missing)
    except DebianError:
        apt_update()
        _apt_locked("install", "-y", "-q", "--no-install-recommends", *missing)
    return missing
