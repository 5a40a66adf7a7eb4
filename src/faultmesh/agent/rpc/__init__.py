"""The agent's gRPC door: ``agent.proto`` (package ``faultmesh.agent.v1``), its generated modules
(committed; ``python -m faultmesh.agent.rpc.generate`` remakes them), the service (``server``), the
client (``client``), mutual TLS (``tls``) and Prometheus metrics (``metrics``).
"""
