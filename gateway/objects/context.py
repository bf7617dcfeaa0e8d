"""ObjectContext: what every operation of the object service works with, passed
explicitly (no globals), and `Pods`, the part of PodClient the service uses.

Rules: the context holds long-lived collaborators only (the pod health tracker is one:
it outlives requests on purpose); nothing per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kurastore.erasure import ErasureParams
from kurastore.gateway.objects.api import EncryptionSpec
from kurastore.gateway.objects.buckets import BucketCache
from kurastore.gateway.objects.budget import ReadBudget, WriteBudget
from kurastore.gateway.objects.config import ObjectConfig, ServiceStats
from kurastore.gateway.objects.encryption import Keyring
from kurastore.gateway.objects.executor import CpuPool
from kurastore.gateway.objects.health import PodHealth
from kurastore.gateway.objects.topology import Topology
from kurastore.metadata import Store
from kurastore.storage import PodError, PodUsage, ShardId, ShardInfo, ShardPieces, ShardPut


class Pods(Protocol):
    """The calls the object service makes to pods (kurastore.storage.PodClient, or
    tests.support.fakes.InMemoryPods)."""

    async def put_shard(
        self,
        url: str,
        partition: int,
        shard: ShardId,
        body: bytes | memoryview | AsyncIterable[bytes | memoryview],
        length: int | None = None,
    ) -> ShardInfo: ...

    async def put_shards(
        self,
        puts: Sequence[ShardPut],
        *,
        timeout_s: float,
        grace_s: Callable[[float], float],
        prepare: Callable[[], Sequence[ShardPieces]] | None = None,
    ) -> list[ShardInfo | PodError]: ...

    async def read_shard(
        self, url: str, partition: int, shard: ShardId, offset: int = 0, length: int | None = None
    ) -> bytes: ...

    async def delete_object_shards(
        self, url: str, partition: int, object_id: str, shard_tag: str | None = None
    ) -> int: ...

    async def usage(self, url: str) -> PodUsage: ...


@dataclass
class ObjectContext:
    store: Store
    pods: Pods
    topology: Topology
    config: ObjectConfig
    cpu: CpuPool
    stats: ServiceStats = field(default_factory=ServiceStats)
    keyring: Keyring | None = None  # None: server-side encryption is refused
    # A bucket's default encryption, read from its settings by the protocol that stores
    # it (S3's PutBucketEncryption); applied to every write that asks for none.
    bucket_encryption: Callable[[Mapping[str, Any]], EncryptionSpec | None] | None = None
    # Shared by every request: one request's timeout spares the next ones the wait.
    health: PodHealth = field(init=False)
    buckets: BucketCache = field(init=False)
    read_budget: ReadBudget = field(init=False)  # what every GET may hold, together
    write_budget: WriteBudget = field(init=False)  # what every PUT may hold, together

    def __post_init__(self) -> None:
        self.health = PodHealth(self.config)
        self.read_budget = ReadBudget(self.config.read_buffer_bytes)
        self.write_budget = WriteBudget(self.config.write_buffer_bytes,
                                        self.config.write_budget_wait_s)
        self.buckets = BucketCache(self.store, self.config.bucket_cache_s)
        self.params = ErasureParams.for_stripe(
            self.config.k, self.config.m, stripe_size=self.config.stripe_size
        )
