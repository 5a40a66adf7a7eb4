"""Build OCI image-layout tarballs from Debian's static busybox, since no container registry is reachable.

The output is deterministic (fixed mtimes, owners and gzip headers), so the same busybox and the same spec
give the same digests, and a tarball in the cache can be reused by name.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.image import debian

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
# ctr import names an image after this annotation; the OCI ref name is the fallback other tools read.
CONTAINERD_IMAGE_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# PID 1 of a pod sandbox must outlive everything else and stop cleanly on TERM; a shell loop does that.
PAUSE_SCRIPT = "trap 'exit 0' TERM INT; while true; do sleep 3600 & wait $!; done"


@dataclass(frozen=True)
class ImageSpec:
    """What an image runs and how it is named; every image shares the one busybox layer."""

    name: str
    cmd: tuple[str, ...] = ("/bin/sh",)
    entrypoint: tuple[str, ...] = ()
    env: tuple[str, ...] = (f"PATH={DEFAULT_PATH}",)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def archive_stem(self) -> str:
        return self.name.replace("/", "_").replace(":", "_")


BUSYBOX = ImageSpec(name="faultmesh.local/busybox:latest")
PAUSE = ImageSpec(name="faultmesh.local/pause:latest", cmd=(), entrypoint=("/bin/sh", "-c", PAUSE_SCRIPT))


def busybox_binary() -> Path:
    """The static busybox from Debian's busybox-static package, unpacked in the cache."""
    path = debian.unpack("busybox-static") / "bin" / "busybox"
    if not path.is_file():
        raise debian.DebianError(f"busybox-static has no bin/busybox (looked at {path})")
    return path


def applet_paths(busybox: Path) -> list[str]:
    """Where each applet lives (bin/sh, usr/bin/nc, ...), as busybox itself reports."""
    out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True).stdout
    return sorted({line.strip() for line in out.splitlines() if line.strip() and line.strip() != "bin/busybox"})


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar_member(name: str, kind: bytes, *, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = linkname
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


ROOTFS_DIRS = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "proc": 0o555,
    "root": 0o700,
    "run": 0o755,
    "sbin": 0o755,
    "sys": 0o555,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "var": 0o755,
    "var/run": 0o755,
}

ROOTFS_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/hosts": "127.0.0.1 localhost\n::1 localhost\n",
    "etc/nsswitch.conf": "hosts: files dns\n",
}


def busybox_layer(busybox: Path) -> bytes:
    """An uncompressed layer tar: the rootfs skeleton, /bin/busybox and one symlink per applet."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode in sorted(ROOTFS_DIRS.items()):
            tar.addfile(_tar_member(name, tarfile.DIRTYPE, mode=mode))
        for name, text in sorted(ROOTFS_FILES.items()):
            data = text.encode()
            tar.addfile(_tar_member(name, tarfile.REGTYPE, mode=0o644, size=len(data)), io.BytesIO(data))
        binary = busybox.read_bytes()
        tar.addfile(_tar_member("bin/busybox", tarfile.REGTYPE, mode=0o755, size=len(binary)), io.BytesIO(binary))
        for applet in applet_paths(busybox):
            tar.addfile(_tar_member(applet, tarfile.SYMTYPE, mode=0o777, linkname="/bin/busybox"))
    return buffer.getvalue()


def _gzip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buffer.getvalue()


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def layout_blobs(spec: ImageSpec, layer_tar: bytes) -> tuple[dict[str, bytes], bytes]:
    """The blobs (digest -> bytes) and index.json of an OCI layout holding one image."""
    layer = _gzip(layer_tar)
    container_config: dict[str, Any] = {"Env": list(spec.env), "WorkingDir": "/"}
    if spec.cmd:
        container_config["Cmd"] = list(spec.cmd)
    if spec.entrypoint:
        container_config["Entrypoint"] = list(spec.entrypoint)
    if spec.labels:
        container_config["Labels"] = dict(spec.labels)
    config = _json(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": container_config,
            "rootfs": {"type": "layers", "diff_ids": [_sha256(layer_tar)]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "faultmesh testbed: busybox-static"}],
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _sha256(layer), "size": len(layer)}],
        }
    )
    tag = spec.name.rsplit(":", 1)[1] if ":" in spec.name.rsplit("/", 1)[-1] else "latest"
    index = _json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": _sha256(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {CONTAINERD_IMAGE_NAME: spec.name, OCI_REF_NAME: tag},
                }
            ],
        }
    )
    blobs = {_sha256(blob): blob for blob in (layer, config, manifest)}
    return blobs, index


def write_layout_tar(out: Path, blobs: dict[str, bytes], index: bytes) -> None:
    """Write the layout (oci-layout, index.json, blobs/sha256/*) as one tar, atomically."""
    entries = {"oci-layout": _json({"imageLayoutVersion": "1.0.0"}), "index.json": index}
    for digest, blob in sorted(blobs.items()):
        entries["blobs/sha256/" + digest.removeprefix("sha256:")] = blob
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            tar.addfile(_tar_member(directory, tarfile.DIRTYPE, mode=0o755))
        for name, data in entries.items():
            tar.addfile(_tar_member(name, tarfile.REGTYPE, mode=0o644, size=len(data)), io.BytesIO(data))
    partial.rename(out)


def build(spec: ImageSpec = BUSYBOX, out_dir: Path | None = None) -> Path:
    """The OCI archive for `spec`, built once per busybox build and spec and reused from the cache."""
    busybox = busybox_binary()
    out_dir = out_dir or debian.cache_root() / "images"
    out_dir.mkdir(parents=True, exist_ok=True)
    # The key covers this builder's own code too, so a change here never reuses a stale archive.
    recipe = [busybox.parent.parent.name, spec.name, spec.cmd, spec.entrypoint, spec.env, sorted(spec.labels.items())]
    key = hashlib.sha256(_json(recipe) + Path(__file__).read_bytes()).hexdigest()[:16]
    out = out_dir / f"{spec.archive_stem}-{key}.oci.tar"
    if out.is_file():
        return out
    with debian.file_lock(out_dir / ".lock"):
        if not out.is_file():
            blobs, index = layout_blobs(spec, busybox_layer(busybox))
            write_layout_tar(out, blobs, index)
    return out
