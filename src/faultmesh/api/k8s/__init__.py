"""Kubernetes core/v1 types (generated, see core.py) and the API scalars they use."""
