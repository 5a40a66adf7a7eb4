"""Python modules for containerd's gRPC API (Containers, Tasks, Version), generated and committed.

Regenerate with ``python -m faultmesh.agent.runtime.containerd_api.generate`` (see that module).
"""
