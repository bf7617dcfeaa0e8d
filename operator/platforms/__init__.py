"""Platforms the operator drives: local processes on one machine, Kubernetes."""
