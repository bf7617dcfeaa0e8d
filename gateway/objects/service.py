"""ObjectService: the one protocol-neutral entry point of the data path.

S3, Swift and the admin API call this facade and nothing below it. Each method
is a thin hand-off to the module that owns the operation (put, get, copy,
multipart, identity) or a pass-through to the metadata store (buckets,
listings, delete). Rules: no HTTP, no XML, no protocol error codes here;
domain errors (errors.py) and metadata errors propagate unchanged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kurastore.gateway.objects import copy, get, multipart, put
from kurastore.gateway.objects.api import (
    ByteRange,
    CompletedPart,
    CopySource,
    EncryptionSpec,
    ObjectReader,
    PutOptions,
    ReadConditions,
    WriteConditions,
)
from kurastore.gateway.objects.budget import ReadBudget, WriteBudget
from kurastore.gateway.objects.config import ObjectConfig, ServiceStats
from kurastore.gateway.objects.context import ObjectContext, Pods
from kurastore.gateway.objects.encryption import Keyring
from kurastore.gateway.objects.executor import CpuPool
from kurastore.gateway.objects.health import PodHealth
from kurastore.gateway.objects.identity import Identity
from kurastore.gateway.objects.topology import Topology
from kurastore.metadata import (
    AccessKey,
    BucketRecord,
    DeleteResult,
    ListPage,
    ObjectVersion,
    PartRecord,
    PartsPage,
    Store,
    UploadRecord,
    UploadsPage,
    UserRecord,
    VersionPage,
)
from kurastore.storage import PodUsage

Body = AsyncIterable[bytes | memoryview]


@dataclass(frozen=True)
class PodStatus:
    pod_id: str
    url: str
    ready: bool
    usage: PodUsage | None  # None when the pod did not answer


class ObjectService:
    def __init__(
        self, store: Store, pods: Pods, topology: Topology, config: ObjectConfig | None = None,
        keyring: Keyring | None = None,
        bucket_encryption: Callable[[Mapping[str, Any]], EncryptionSpec | None] | None = None,
    ) -> None:
        """`keyring`: seals the data keys of server-side encrypted objects; without one,
        requests for encryption are refused. `bucket_encryption`: a bucket's default
        encryption from its settings, for writes (of any protocol) that ask for none."""
        self.store = store
        self.pods = pods
        self.topology = topology
        self.config = config or ObjectConfig()
        self._cpu = CpuPool(self.config.cpu_threads)
        self._ctx = ObjectContext(store, pods, topology, self.config, self._cpu,
                                  keyring=keyring, bucket_encryption=bucket_encryption)
        self.identity = Identity(store, self.config.identity_cache_s)

    @property
    def stats(self) -> ServiceStats:
        return self._ctx.stats

    @property
    def read_budget(self) -> ReadBudget:
        return self._ctx.read_budget

    @property
    def write_budget(self) -> WriteBudget:
        return self._ctx.write_budget

    @property
    def health(self) -> PodHealth:
        """What the data path has lately seen of each pod (suspects, read latency)."""
        return self._ctx.health

    async def close(self) -> None:
        """Stops the CPU executor; the store and the pod client belong to the caller."""
        self._cpu.close()

    # --- buckets -------------------------------------------------------------------
    async def create_bucket(self, name: str, owner: str, region: str = "us-east-1") -> BucketRecord:
        bucket = BucketRecord(name=name, owner=owner, created=time.time(), region=region)
        await self.store.create_bucket(bucket)
        self._ctx.buckets.forget(name)
        return bucket

    async def get_bucket(self, name: str, *, fresh: bool = False) -> BucketRecord:
        """The bucket's record, from the short-lived cache unless `fresh` (a request
        that rewrites the bucket's settings must start from the stored ones)."""
        if fresh:
            self._ctx.buckets.forget(name)
        return await self._ctx.buckets.get(name)

    async def list_buckets(self, owner: str | None = None) -> list[BucketRecord]:
        return await self.store.list_buckets(owner)

    async def delete_bucket(self, name: str) -> None:
        self._ctx.buckets.forget(name)
        try:
            await self.store.delete_bucket(name)
        finally:
            self._ctx.buckets.forget(name)

    async def update_bucket(
        self, name: str, versioning: str | None = None, settings: dict | None = None
    ) -> BucketRecord:
        self._ctx.buckets.forget(name)
        record = await self.store.update_bucket(name, versioning=versioning, settings=settings)
        self._ctx.buckets.put(record)
        return record

    async def bucket_usage(self, name: str) -> tuple[int, int]:
        return await self.store.bucket_usage(name)

    async def list_objects(
        self, bucket: str, prefix: str = "", delimiter: str = "", start_after: str = "",
        max_keys: int = 1000,
    ) -> ListPage:
        return await self.store.list_objects(
            bucket, prefix=prefix, delimiter=delimiter, start_after=start_after,
            max_keys=max_keys,
        )

    async def list_versions(
        self, bucket: str, prefix: str = "", delimiter: str = "", key_marker: str = "",
        version_id_marker: str = "", max_keys: int = 1000,
    ) -> VersionPage:
        return await self.store.list_versions(
            bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
            version_id_marker=version_id_marker, max_keys=max_keys,
        )

    # --- objects -------------------------------------------------------------------
    async def put_object(
        self, bucket: str, key: str, body: Body, opts: PutOptions = PutOptions()
    ) -> ObjectVersion:
        return await put.put_object(self._ctx, bucket, key, body, opts)

    async def head_object(
        self, bucket: str, key: str, *, version_id: str | None = None,
        part_number: int | None = None, conditions: ReadConditions = ReadConditions(),
        customer_key: bytes | None = None, verify_key: bool = False,
    ) -> ObjectVersion:
        return await get.head_object(self._ctx, bucket, key, version_id=version_id,
                                     part_number=part_number, conditions=conditions,
                                     customer_key=customer_key, verify_key=verify_key)

    async def open_object(
        self, bucket: str, key: str, *, version_id: str | None = None,
        byte_range: ByteRange | None = None, part_number: int | None = None,
        conditions: ReadConditions = ReadConditions(), customer_key: bytes | None = None,
    ) -> ObjectReader:
        return await get.open_object(self._ctx, bucket, key, version_id=version_id,
                                     byte_range=byte_range, part_number=part_number,
                                     conditions=conditions, customer_key=customer_key)

    async def delete_object(
        self, bucket: str, key: str, *, version_id: str | None = None,
        if_match: str | None = None, refuse: Callable[[ObjectVersion], bool] | None = None,
    ) -> DeleteResult:
        """Metadata only: the store queues the removed version's shards, the collector
        deletes them later (a read in flight keeps working meanwhile). `refuse`: see
        Store.delete_object (VersionProtected, asked in the removal's transaction)."""
        return await self.store.delete_object(bucket, key, version_id, if_match=if_match,
                                              refuse=refuse)

    async def copy_object(
        self, src: CopySource, bucket: str, key: str, opts: PutOptions, *,
        replace_metadata: bool, replace_tags: bool | None = None,
    ) -> ObjectVersion:
        return await copy.copy_object(self._ctx, src, bucket, key, opts,
                                      replace_metadata=replace_metadata,
                                      replace_tags=replace_tags)

    async def put_object_tags(
        self, bucket: str, key: str, version_id: str | None, tags: Mapping[str, str]
    ) -> ObjectVersion:
        return await self.store.update_version(bucket, key, version_id, tags=dict(tags))

    async def put_object_headers(
        self, bucket: str, key: str, version_id: str | None, headers: Mapping[str, str]
    ) -> ObjectVersion:
        """Replaces one version's stored headers (the S3 adapter keeps the object ACL there)."""
        return await self.store.update_version(bucket, key, version_id, headers=dict(headers))

    # --- multipart -----------------------------------------------------------------
    async def create_upload(
        self, bucket: str, key: str, opts: PutOptions = PutOptions()
    ) -> UploadRecord:
        return await multipart.create_upload(self._ctx, bucket, key, opts)

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: Body,
        opts: PutOptions = PutOptions(),
    ) -> PartRecord:
        return await multipart.upload_part(self._ctx, bucket, key, upload_id, part_number,
                                           body, opts)

    async def upload_part_copy(
        self, bucket: str, key: str, upload_id: str, part_number: int, src: CopySource,
        opts: PutOptions = PutOptions(),
    ) -> PartRecord:
        return await copy.upload_part_copy(self._ctx, bucket, key, upload_id, part_number, src,
                                           opts)

    async def complete_upload(
        self, bucket: str, key: str, upload_id: str, parts: Sequence[CompletedPart],
        conditions: WriteConditions = WriteConditions(),
        check: Callable[[ObjectVersion], None] | None = None,
        customer_key: bytes | None = None,
    ) -> ObjectVersion:
        return await multipart.complete_upload(self._ctx, bucket, key, upload_id, parts,
                                               conditions, check, customer_key)

    async def get_upload(self, bucket: str, key: str, upload_id: str) -> UploadRecord:
        """The upload's record; UploadNotFound unless it is `upload_id` of bucket/key."""
        return await multipart.get_upload(self._ctx, bucket, key, upload_id)

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        await multipart.abort_upload(self._ctx, bucket, key, upload_id)

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, part_number_marker: int = 0,
        max_parts: int = 1000,
    ) -> tuple[UploadRecord, PartsPage]:
        return await multipart.list_parts(self._ctx, bucket, key, upload_id,
                                          part_number_marker=part_number_marker,
                                          max_parts=max_parts)

    async def list_uploads(
        self, bucket: str, prefix: str = "", delimiter: str = "", key_marker: str = "",
        upload_id_marker: str = "", max_uploads: int = 1000,
    ) -> UploadsPage:
        return await multipart.list_uploads(
            self._ctx, bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
            upload_id_marker=upload_id_marker, max_uploads=max_uploads,
        )

    # --- identity ------------------------------------------------------------------
    async def lookup_secret(self, access_key: str) -> tuple[str, str] | None:
        return await self.identity.lookup_secret(access_key)

    async def create_user(
        self, name: str, is_admin: bool = False, *, access_key: str | None = None,
        secret_key: str | None = None,
    ) -> tuple[UserRecord, AccessKey]:
        return await self.identity.create_user(name, is_admin, access_key=access_key,
                                               secret_key=secret_key)

    async def get_user(self, user_id: str) -> UserRecord:
        return await self.identity.get_user(user_id)

    async def get_user_by_name(self, name: str) -> UserRecord:
        return await self.identity.get_user_by_name(name)

    async def list_users(self) -> list[UserRecord]:
        return await self.identity.list_users()

    async def delete_user(self, user_id: str) -> None:
        await self.identity.delete_user(user_id)

    async def create_access_key(self, user_id: str) -> AccessKey:
        return await self.identity.create_access_key(user_id)

    async def list_access_keys(self, user_id: str) -> list[AccessKey]:
        return await self.identity.list_access_keys(user_id)

    async def delete_access_key(self, access_key: str) -> None:
        await self.identity.delete_access_key(access_key)

    async def get_account_settings(self, user_id: str) -> dict:
        return await self.store.get_account_settings(user_id)

    async def put_account_settings(self, user_id: str, settings: dict) -> None:
        await self.store.put_account_settings(user_id, settings)

    # --- health --------------------------------------------------------------------
    async def pod_status(self) -> list[PodStatus]:
        """Every registered pod: ready or not, and its usage (asked in parallel, each
        within status_timeout_s: a hung pod is reported not ready, quickly)."""
        pods = [p for p in self.topology.pods if p.state != "removed"]

        async def one(pod_id: str, url: str) -> PodStatus:
            try:
                async with asyncio.timeout(self.config.status_timeout_s):
                    usage = await self.pods.usage(url)
            except Exception:
                return PodStatus(pod_id, url, False, None)
            return PodStatus(pod_id, url, True, usage)

        return list(await asyncio.gather(*(one(p.pod_id, p.url) for p in pods)))

    async def cluster_status(self) -> dict[str, Any]:
        """The admin API's cluster status, JSON-ready."""
        await self.topology.refresh()
        pods = await self.pod_status()
        pmap = self.topology.current if self.topology.has_map else None
        health = {view.url: view for view in self.health.view()}
        return {
            "k": self.config.k,
            "m": self.config.m,
            "write_quorum": self.config.write_quorum,
            "epoch": pmap.epoch if pmap else None,
            "partitions": pmap.partition_count if pmap else 0,
            "pods": [
                {
                    "pod_id": p.pod_id, "url": p.url, "ready": p.ready,
                    "capacity_bytes": p.usage.capacity_bytes if p.usage else None,
                    "used_bytes": p.usage.used_bytes if p.usage else None,
                    "free_bytes": p.usage.free_bytes if p.usage else None,
                    "shards": p.usage.shards if p.usage else None,
                    "suspect": p.url in health and health[p.url].suspect,
                    "read_latency_s": health[p.url].latency_s if p.url in health else None,
                }
                for p in pods
            ],
            "heal_queue": await self.store.heal_queue_length(),
            "degraded_reads": self.stats.degraded_reads,
            "quorum_failures": self.stats.quorum_failures,
            "hedged_reads": self.stats.hedged_reads,
            "stalled_shards": self.stats.stalled_shards,
        }

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when a placement map exists and enough pods answer to write."""
        if not self.topology.has_map:
            return False, {"ready": False, "reason": "no placement map"}
        pods = await self.pod_status()
        up = sum(1 for p in pods if p.ready)
        ready = up >= self.config.write_quorum
        return ready, {"ready": ready, "pods_ready": up, "pods": len(pods),
                       "write_quorum": self.config.write_quorum}
