"""A real node for the test-bed cluster: kubelet + a private containerd (CRI) + a bridge CNI network."""

from testbed.node.node import TAINT_KEY, Node, NodeError, NoGoToolchainError

__all__ = ["TAINT_KEY", "NoGoToolchainError", "Node", "NodeError"]
