"""kurastore.storage: the storage pod (shard files on one volume, served over HTTP) and
PodClient, the async client every other component uses to reach pods.

Public API: the names in `__all__`, imported from this package root. Internal modules start
with an underscore. Rules: storage knows the frame format of kurastore.erasure (to scrub)
and nothing else of kurastore; gateways talk to pods only through PodClient.
"""

from kurastore.storage.api import (
    PodUsage,
    ShardId,
    ShardInfo,
    ShardPieces,
    ShardPut,
    VerifyResult,
)
from kurastore.storage.client import PodClient
from kurastore.storage.config import PodConfig
from kurastore.storage.errors import (
    InsufficientStorage,
    InvalidRange,
    InvalidShardName,
    PodAuthError,
    PodError,
    PodTimedOut,
    PodUnavailable,
    ShardExists,
    ShardNotFound,
    ShardTooLarge,
)

__all__ = [
    "InsufficientStorage",
    "InvalidRange",
    "InvalidShardName",
    "PodAuthError",
    "PodClient",
    "PodConfig",
    "PodError",
    "PodTimedOut",
    "PodUnavailable",
    "PodUsage",
    "ShardExists",
    "ShardId",
    "ShardInfo",
    "ShardNotFound",
    "ShardPieces",
    "ShardPut",
    "ShardStore",
    "ShardTooLarge",
    "VerifyResult",
    "build_pod_app",
    "main",
]


def __getattr__(name: str) -> object:
    # The server side (aiohttp.web, prometheus, the erasure frame format) is loaded only by
    # those who serve: a gateway importing PodClient does not pay for it.
    if name == "build_pod_app":
        from kurastore.storage.server import build_pod_app

        return build_pod_app
    if name == "main":
        from kurastore.storage.__main__ import main

        return main
    if name == "ShardStore":  # a volume's shard files, as the pod lays them out
        from kurastore.storage._disk import ShardStore

        return ShardStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
