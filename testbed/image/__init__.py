"""Local container images for the testbed: OCI archives built from Debian's static busybox."""

from testbed.image.oci import BUSYBOX, PAUSE, ImageSpec, build, busybox_binary

__all__ = ["BUSYBOX", "PAUSE", "ImageSpec", "build", "busybox_binary"]
