"""kdns: a Kubernetes-aware authoritative DNS server."""

__version__ = "0.1.0"
