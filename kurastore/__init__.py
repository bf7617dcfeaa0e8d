"""kurastore: an S3- and Swift-compatible erasure-coded object store for Kubernetes.

This package is the composition root (CLI, configuration, logging); the
components are its subpackages: erasure, placement, metadata, storage,
gateway, operator."""

__version__ = "0.1.0"
