"""PostgresStore: the metadata backend for many gateways (one shared PostgreSQL).

Driver: asyncpg, chosen because it is native asyncio (no threads between the event
loop and the socket), uses PostgreSQL's binary protocol, prepares and caches
statements per connection by itself, and is the fastest Python driver for
PostgreSQL. Each gateway process holds one pool of connections.

Every method is one transaction (see _postgres.py for transactions, errors and
cancellation, _postgres_schema.py for the tables, the migration lock and the
server-side commit). This class only routes calls and seals or opens access-key
secrets; the SQL lives in the _postgres_* modules.

    store = await PostgresStore.open("postgresql://kura@db/kurastore", secret_key=key)
    ...
    await store.close()

The DSN may name a schema with `?search_path=NAME` (which must exist); the tables
are created there, so several stores can share one database.

Group commit (see _postgres_batch.py, _postgres_commits.py): commit_version and
begin_write calls running at the same time in one gateway leave together, in one
statement (one transaction) per batch; each caller still gets its own outcome, and
a commit's caller hears only after its batch is durable. Measured with
bench/metadata.py --backend postgres (64 writers, 2 processes, ~30 commits per
statement): per small PUT, about a fifth of the server's CPU and a quarter of the
client's that one statement per call cost.

Caches and notices (see _postgres_notify.py): bucket records are cached while the
change listener is connected, and dropped when any gateway changes the bucket
(NOTIFY at its commit) or the listener reconnects; with the listener down nothing
is cached. A commit never trusts the cache: ks_commit reads the bucket itself.
`on_change` hands the same notices to the gateway (placement maps, pod registry).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from kurastore.metadata import _postgres_admin as admin
from kurastore.metadata import _postgres_commits as commits
from kurastore.metadata import _postgres_listing as listing
from kurastore.metadata import _postgres_multipart as multipart
from kurastore.metadata import _postgres_objects as objects
from kurastore.metadata import _postgres_pins as pins
from kurastore.metadata._postgres import Database
from kurastore.metadata._postgres_batch import Batcher
from kurastore.metadata._postgres_notify import ChangeListener
from kurastore.metadata._records import (
    AccessKey,
    BucketRecord,
    CommitResult,
    DeleteResult,
    HealItem,
    ListPage,
    ObjectVersion,
    PartRecord,
    PartsPage,
    PendingWrite,
    PinnedPart,
    PodRecord,
    ShardRef,
    UploadRecord,
    UploadsPage,
    UserRecord,
    VersionPage,
)
from kurastore.metadata._secrets import SecretBox

MAX_PAGE = 1000
# A cached bucket record is dropped by notices; this bounds its life anyway.
BUCKET_CACHE_S = 2.0
# Group commit: items per statement, and statements at the server at once per kind
# (each holds a pooled connection while it runs).
BATCH_MAX = 64
BATCHES_IN_FLIGHT = 2


def _page_size(n: int) -> int:
    return max(0, min(n, MAX_PAGE))


def _commit_key(item: commits.CommitItem) -> tuple[str, str]:
    return item[0].bucket, item[0].key


class PostgresStore:
    """The Store interface on PostgreSQL. Use from the event loop that opened it."""

    def __init__(self, db: Database, box: SecretBox, listener: ChangeListener) -> None:
        self._db = db
        self._box = box
        self._listener = listener
        self._buckets: dict[str, tuple[float, BucketRecord]] = {}
        self._bucket_generation = 0  # bumped by every invalidation
        listener.add(self._changed)
        # Group commit (_postgres_batch.py): concurrent commits and pending writes of
        # this gateway leave in one statement each.
        self._commits: Batcher[commits.CommitItem, CommitResult] = Batcher(
            self._commit_many, self._commit_one, max_batch=BATCH_MAX,
            max_in_flight=BATCHES_IN_FLIGHT, key=_commit_key)
        self._begins: Batcher[PendingWrite, None] = Batcher(
            self._begin_write_many, self._begin_write_one, max_batch=BATCH_MAX,
            max_in_flight=BATCHES_IN_FLIGHT)

    @classmethod
    async def open(
        cls, dsn: str, *, secret_key: bytes, min_size: int = 2, max_size: int = 16
    ) -> PostgresStore:
        """Connects to `dsn`, creates or upgrades the schema in place (once, under an
        advisory lock, however many gateways start together), opens a pool of
        min_size..max_size connections and the change listener. secret_key: 32 bytes
        sealing access-key secrets. Raises MetadataUnavailable when the database
        cannot be reached."""
        box = SecretBox(secret_key)
        db = await Database.open(dsn, min_size=min_size, max_size=max_size)
        listener = ChangeListener(dsn)
        await listener.start()
        return cls(db, box, listener)

    async def close(self) -> None:
        await self._commits.drain()
        await self._begins.drain()
        await self._listener.close()
        await self._db.close()

    def on_change(self, callback: Callable[[str], None]) -> None:
        self._listener.add(callback)

    def _changed(self, topic: str) -> None:
        if topic == "*":
            self._bucket_generation += 1
            self._buckets.clear()
        elif topic.startswith("bucket:"):
            self._bucket_generation += 1
            self._buckets.pop(topic[7:], None)

    # --- buckets -----------------------------------------------------------------------
    async def create_bucket(self, bucket: BucketRecord) -> None:
        try:
            await self._db.run(objects.create_bucket, bucket)
        finally:
            self._changed("bucket:" + bucket.name)

    async def get_bucket(self, name: str) -> BucketRecord:
        now = time.monotonic()
        hit = self._buckets.get(name)
        if hit is not None and hit[0] > now and self._listener.connected:
            return hit[1]
        generation = self._bucket_generation
        record = await self._db.run(objects.get_bucket, name, transaction=False)
        if generation == self._bucket_generation and self._listener.connected:
            self._buckets[name] = (now + BUCKET_CACHE_S, record)
        return record

    async def list_buckets(self, owner: str | None = None) -> list[BucketRecord]:
        return await self._db.run(objects.list_buckets, owner, transaction=False)

    async def update_bucket(
        self, name: str, *, versioning: str | None = None, settings: dict | None = None
    ) -> BucketRecord:
        try:
            return await self._db.run(objects.update_bucket, name, versioning, settings)
        finally:
            self._changed("bucket:" + name)

    async def delete_bucket(self, name: str) -> None:
        try:
            await self._db.run(objects.delete_bucket, name)
        finally:
            self._changed("bucket:" + name)

    async def bucket_usage(self, name: str) -> tuple[int, int]:
        return await self._db.run(objects.bucket_usage, name)

    # --- writes and versions ------------------------------------------------------------
    async def begin_write(self, pending: PendingWrite) -> None:
        await self._begins.submit(pending)

    async def commit_version(
        self, version: ObjectVersion, *, if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> CommitResult:
        return await self._commits.submit((version, if_match, if_none_match))

    # One statement per batch (ks_commit_many, ks_begin_write_many): its own transaction.
    async def _commit_many(self, items: list[commits.CommitItem]) -> list[Any]:
        return await self._db.run(commits.commit_many, items, transaction=False)

    async def _commit_one(self, item: commits.CommitItem) -> CommitResult:
        return await self._db.run(objects.commit_version, *item, transaction=False)

    async def _begin_write_many(self, items: list[PendingWrite]) -> list[Any]:
        return await self._db.run(commits.begin_write_many, items, transaction=False)

    async def _begin_write_one(self, pending: PendingWrite) -> None:
        await self._db.run(objects.begin_write, pending, transaction=False)

    async def abort_write(self, pending: PendingWrite) -> None:
        await self._db.run(objects.abort_write, pending)

    async def stale_writes(self, started_before: float) -> list[PendingWrite]:
        return await self._db.run(objects.stale_writes, started_before, transaction=False)

    async def get_version(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> ObjectVersion:
        return await self._db.run(objects.get_version, bucket, key, version_id)

    async def update_version(
        self, bucket: str, key: str, version_id: str | None, *, tags: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> ObjectVersion:
        return await self._db.run(objects.update_version, bucket, key, version_id, tags, headers)

    async def delete_object(
        self, bucket: str, key: str, version_id: str | None = None, *,
        if_match: str | None = None, refuse: Callable[[ObjectVersion], bool] | None = None,
    ) -> DeleteResult:
        """As Store.delete_object; on a bucket never versioned the result's version_id
        is "" (there is no version id to report)."""
        return await self._db.run(objects.delete_object, bucket, key, version_id, if_match, refuse)

    async def list_objects(
        self, bucket: str, *, prefix: str = "", delimiter: str = "", start_after: str = "",
        max_keys: int = 1000,
    ) -> ListPage:
        return await self._db.run(
            listing.list_objects, bucket, prefix, delimiter, start_after, _page_size(max_keys),
            transaction=False,  # READ COMMITTED: a transaction would add two round trips
        )

    async def list_versions(
        self, bucket: str, *, prefix: str = "", delimiter: str = "", key_marker: str = "",
        version_id_marker: str = "", max_keys: int = 1000,
    ) -> VersionPage:
        return await self._db.run(
            listing.list_versions, bucket, prefix, delimiter, key_marker, version_id_marker,
            _page_size(max_keys), transaction=False,
        )

    async def load_versions(self, versions: Sequence[ObjectVersion]) -> int:
        """Bulk import (COPY) of versions of keys that have none yet, in one transaction:
        no conditions, no null-version replacement. For imports and benchmarks; not
        part of the Store interface."""
        return await self._db.run(objects.load_versions, list(versions))

    # --- multipart -------------------------------------------------------------------
    async def create_upload(self, upload: UploadRecord) -> None:
        await self._db.run(multipart.create_upload, upload)

    async def get_upload(self, upload_id: str) -> UploadRecord:
        return await self._db.run(multipart.get_upload, upload_id, transaction=False)

    async def put_part(self, part: PartRecord) -> None:
        await self._db.run(multipart.put_part, part)

    async def list_parts(
        self, upload_id: str, *, part_number_marker: int = 0, max_parts: int = 1000
    ) -> PartsPage:
        return await self._db.run(
            multipart.list_parts, upload_id, part_number_marker, _page_size(max_parts)
        )

    async def list_uploads(
        self, bucket: str, *, prefix: str = "", delimiter: str = "", key_marker: str = "",
        upload_id_marker: str = "", max_uploads: int = 1000,
    ) -> UploadsPage:
        return await self._db.run(
            listing.list_uploads, bucket, prefix, delimiter, key_marker, upload_id_marker,
            _page_size(max_uploads), transaction=False,
        )

    async def complete_upload(
        self, upload_id: str, version: ObjectVersion, *, if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> CommitResult:
        return await self._db.run(
            multipart.complete_upload, upload_id, version, if_match, if_none_match
        )

    async def abort_upload(self, upload_id: str) -> None:
        await self._db.run(multipart.abort_upload, upload_id)

    # --- users and keys ----------------------------------------------------------------
    async def create_user(self, user: UserRecord) -> None:
        await self._db.run(admin.create_user, user)

    async def get_user(self, user_id: str) -> UserRecord:
        return await self._db.run(admin.get_user, user_id, transaction=False)

    async def get_user_by_name(self, name: str) -> UserRecord:
        return await self._db.run(admin.get_user_by_name, name, transaction=False)

    async def list_users(self) -> list[UserRecord]:
        return await self._db.run(admin.list_users, transaction=False)

    async def delete_user(self, user_id: str) -> None:
        await self._db.run(admin.delete_user, user_id)

    async def create_access_key(self, key: AccessKey) -> None:
        """Raises UserNotFound, or ValueError if the access key id is taken."""
        sealed = self._box.seal(key.access_key, key.secret_key)
        await self._db.run(
            admin.create_access_key, key.access_key, sealed, key.user_id, key.created,
            key.enabled,
        )

    def _open_key(self, row: tuple[Any, ...]) -> AccessKey:
        return AccessKey(row[0], self._box.open(row[0], row[1]), row[2], row[3], bool(row[4]))

    async def get_access_key(self, access_key: str) -> AccessKey:
        row = await self._db.run(admin.get_access_key, access_key, transaction=False)
        return self._open_key(row)

    async def list_access_keys(self, user_id: str) -> list[AccessKey]:
        rows = await self._db.run(admin.list_access_keys, user_id, transaction=False)
        return [self._open_key(r) for r in rows]

    async def delete_access_key(self, access_key: str) -> None:
        await self._db.run(admin.delete_access_key, access_key)

    # --- account settings -------------------------------------------------------------------
    async def get_account_settings(self, user_id: str) -> dict:
        return await self._db.run(pins.get_account_settings, user_id, transaction=False)

    async def put_account_settings(self, user_id: str, settings: dict) -> None:
        """Raises UserNotFound."""
        await self._db.run(pins.put_account_settings, user_id, dict(settings))

    # --- placement ------------------------------------------------------------------------
    async def save_placement_map(self, epoch: int, map_json: str) -> None:
        await self._db.run(admin.save_placement_map, epoch, map_json)

    async def get_placement_map(self, epoch: int) -> str:
        return await self._db.run(admin.get_placement_map, epoch, transaction=False)

    async def latest_placement_map(self) -> tuple[int, str] | None:
        return await self._db.run(admin.latest_placement_map, transaction=False)

    async def epochs_in_use(self) -> set[int]:
        return await self._db.run(admin.epochs_in_use)

    async def repin_partition(self, partition: int, from_epoch: int, to_epoch: int,
                              copied: Collection[tuple[str, str]] | None = None) -> int:
        return await self._db.run(admin.repin_partition, partition, from_epoch, to_epoch,
                                  copied)

    async def retire_epochs(self, below: int) -> list[int]:
        return await self._db.run(admin.retire_epochs, below)

    async def put_pod(self, pod: PodRecord) -> None:
        await self._db.run(admin.put_pod, pod)

    async def list_pods(self) -> list[PodRecord]:
        return await self._db.run(admin.list_pods, transaction=False)

    # --- work queues ------------------------------------------------------------------------
    async def queue_collect(self, refs: Sequence[ShardRef], not_before: float = 0.0) -> None:
        await self._db.run(admin.queue_collect, list(refs), not_before, transaction=False)

    async def take_collect(self, now: float, limit: int = 100) -> list[tuple[int, ShardRef]]:
        return await self._db.run(admin.take_collect, now, limit, transaction=False)

    async def done_collect(self, ids: Sequence[int]) -> None:
        await self._db.run(admin.done_collect, list(ids), transaction=False)

    async def queue_heal(self, items: Sequence[HealItem]) -> None:
        await self._db.run(admin.queue_heal, list(items), transaction=False)

    async def take_heal(self, limit: int = 100) -> list[tuple[int, HealItem]]:
        return await self._db.run(admin.take_heal, limit, transaction=False)

    async def done_heal(self, ids: Sequence[int]) -> None:
        await self._db.run(admin.done_heal, list(ids), transaction=False)

    async def heal_queue_length(self) -> int:
        return await self._db.run(admin.heal_queue_length, transaction=False)

    # --- maintenance --------------------------------------------------------------------------
    async def find_parts(self, object_id: str) -> list[PinnedPart]:
        return await self._db.run(pins.find_parts, object_id)

    async def partition_parts(self, partition: int) -> list[PinnedPart]:
        return await self._db.run(pins.partition_parts, partition)

    # --- leases ---------------------------------------------------------------------------------
    async def try_acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        return await self._db.run(admin.try_acquire_lease, name, holder, ttl_s, transaction=False)

    async def release_lease(self, name: str, holder: str) -> None:
        await self._db.run(admin.release_lease, name, holder, transaction=False)


__all__ = ["PostgresStore"]
