"""faultmesh: chaos engineering for Kubernetes and single hosts, Chaos Mesh–compatible."""

__version__ = "0.1.0"
