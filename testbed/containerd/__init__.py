"""A private containerd for tests, network namespaces for its containers, and a gRPC client for its API."""

from testbed.containerd.netns import NetNamespace, NetworkLab, VethLink
from testbed.containerd.runtime import Container, Containerd, ContainerdError

__all__ = ["Container", "Containerd", "ContainerdError", "NetNamespace", "NetworkLab", "VethLink"]
