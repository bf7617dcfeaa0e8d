"""Errors of the storage layer: what a pod call can fail with.

    PodError                     base; `.pod_url` names the pod (None when raised locally)
    ├── PodUnavailable           connection refused/reset, timeout, 5xx other than 507:
    │                            the caller should try another pod
    │   └── PodTimedOut          no answer in time (a hung pod, or one far behind)
    ├── ShardNotFound            404: no such shard on that pod
    ├── ShardExists              409: PUT of a shard that already exists (never overwritten)
    ├── InsufficientStorage      507: the pod's volume (or quota) is full
    ├── PodAuthError             401/403: the cluster secret was missing, wrong or stale
    ├── InvalidRange             416 / short shard: the byte range is not inside the shard
    ├── ShardTooLarge            413: a PUT body above the pod's max_shard_bytes
    └── InvalidShardName         a shard id, partition or object id that fails validation
                                 (also a ValueError)

The server raises the same classes from its disk layer and maps them to statuses in one
table (`server.STATUS_OF`); the client maps statuses back in one table (`client._ERROR_OF`).
No aiohttp type ever escapes the client.
"""

from __future__ import annotations

__all__ = [
    "InsufficientStorage",
    "InvalidRange",
    "InvalidShardName",
    "PodAuthError",
    "PodError",
    "PodTimedOut",
    "PodUnavailable",
    "ShardExists",
    "ShardNotFound",
    "ShardTooLarge",
]


class PodError(Exception):
    """Base of every storage error; `pod_url` is the pod that answered (or failed to)."""

    def __init__(self, message: str = "", pod_url: str | None = None) -> None:
        super().__init__(message)
        self.pod_url = pod_url

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} (pod {self.pod_url})" if self.pod_url else text


class PodUnavailable(PodError):
    """The pod could not be reached or failed transiently; try another pod."""


class PodTimedOut(PodUnavailable):
    """The pod did not answer in time: hung, or far behind the others."""


class ShardNotFound(PodError):
    """The shard does not exist on that pod."""


class ShardExists(PodError):
    """A PUT named a shard that already exists; shards are never overwritten."""


class InsufficientStorage(PodError):
    """The pod has no room for the shard (ENOSPC, EDQUOT or its configured capacity)."""


class PodAuthError(PodError):
    """The request did not carry a valid proof of the cluster secret."""


class InvalidRange(PodError, ValueError):
    """The requested byte range is not (entirely) inside the shard."""


class ShardTooLarge(PodError, ValueError):
    """A shard body larger than the pod accepts (its max_shard_bytes)."""


class InvalidShardName(PodError, ValueError):
    """A shard name, object id, shard tag, index or partition failed validation."""
