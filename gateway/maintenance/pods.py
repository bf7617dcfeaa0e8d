"""MaintenancePods: the pod calls the healer and the scrubber make, beyond the data
path's (kurastore.storage.PodClient, or tests.support.fakes.InMemoryPods).

Rules: the workers reach pods only through this interface and always under a
timeout of their own (`call`), so one hung pod costs one bounded wait per call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from kurastore.gateway.objects.context import Pods
from kurastore.storage import PodUnavailable, ShardId, ShardInfo, VerifyResult

T = TypeVar("T")


class MaintenancePods(Pods, Protocol):
    async def delete_shard(self, url: str, partition: int, shard: ShardId) -> bool: ...

    async def list_partitions(self, url: str) -> list[int]: ...

    async def list_partition(self, url: str, partition: int) -> list[ShardInfo]: ...

    async def verify_shard(self, url: str, partition: int, shard: ShardId) -> VerifyResult: ...


async def call(awaitable: Awaitable[T], timeout_s: float, url: str | None = None) -> T:
    """Await one pod call; a timeout is PodUnavailable, like a refused connection."""
    try:
        async with asyncio.timeout(timeout_s):
            return await awaitable
    except TimeoutError as exc:
        raise PodUnavailable(f"no answer within {timeout_s} s", url) from exc
