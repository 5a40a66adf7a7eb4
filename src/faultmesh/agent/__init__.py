"""The node agent: runs fault plans on this node and guarantees they do not outlive their owner.

Modules: ``exec`` (the one door to processes), ``journal`` (durable record of every change),
``lease`` (owner leases and the watcher that recovers expired ones), ``injections`` (the engine
that applies, recovers and reconciles), ``runtime/`` (container id → PID) and ``rpc/`` (gRPC).
"""
