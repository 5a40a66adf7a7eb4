"""The Kubernetes front end: the operator, its one door to the API (``kube``), and the admission
webhooks (``webhooks``) with their certificates (``certs``).
"""
