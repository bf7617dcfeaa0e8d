"""SQLiteStore: the embedded metadata backend (one gateway process, one file).

Every method is one transaction: writes go to the group-committing writer thread,
reads to the reader threads (see _sqlite.py for threads and durability, and
_sqlite_schema.py for the tables). This class only routes calls and seals or opens
access-key secrets; the SQL lives in the _sqlite_* modules.

    store = await SQLiteStore.open("/data/meta.db", secret_key=cluster_key)
    ...
    await store.close()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from kurastore.metadata import _sqlite_admin as admin
from kurastore.metadata import _sqlite_listing as listing
from kurastore.metadata import _sqlite_multipart as multipart
from kurastore.metadata import _sqlite_objects as objects
from kurastore.metadata import _sqlite_pins as pins
from kurastore.metadata import _sqlite_queues as queues
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
from kurastore.metadata._sqlite import Executor

MAX_PAGE = 1000


def _page_size(n: int) -> int:
    return max(0, min(n, MAX_PAGE))


class SQLiteStore:
    """The Store interface on SQLite. Use from the event loop that opened it."""

    def __init__(self, executor: Executor, box: SecretBox) -> None:
        self._ex = executor
        self._box = box
        self._callbacks: list[Callable[[str], None]] = []

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        secret_key: bytes,
        readers: int = 4,
        max_batch: int = 256,
        max_queued_writes: int = 4096,
        synchronous: str = "NORMAL",
    ) -> SQLiteStore:
        """Opens (creating or upgrading in place) the database at `path`.

        secret_key: 32 bytes sealing access-key secrets. synchronous: "NORMAL"
        (survives process crashes) or "FULL" (also power loss; one fsync per batch)."""
        box = SecretBox(secret_key)
        ex = Executor(
            path, readers=readers, max_batch=max_batch, max_queued_writes=max_queued_writes,
            synchronous=synchronous,
        )
        await ex.start()
        return cls(ex, box)

    async def close(self) -> None:
        await self._ex.close()

    def on_change(self, callback: Callable[[str], None]) -> None:
        """One gateway per SQLite file: the changes are this store's own."""
        self._callbacks.append(callback)

    def _changed(self, topic: str) -> None:
        for callback in list(self._callbacks):
            callback(topic)

    # --- buckets -----------------------------------------------------------------------
    async def create_bucket(self, bucket: BucketRecord) -> None:
        await self._ex.write(objects.create_bucket, bucket)

    async def get_bucket(self, name: str) -> BucketRecord:
        return await self._ex.read_point(objects.get_bucket, name)

    async def list_buckets(self, owner: str | None = None) -> list[BucketRecord]:
        return await self._ex.read(objects.list_buckets, owner)

    async def update_bucket(
        self, name: str, *, versioning: str | None = None, settings: dict | None = None
    ) -> BucketRecord:
        return await self._ex.write(objects.update_bucket, name, versioning, settings)

    async def delete_bucket(self, name: str) -> None:
        await self._ex.write(objects.delete_bucket, name)

    async def bucket_usage(self, name: str) -> tuple[int, int]:
        return await self._ex.read(objects.bucket_usage, name)

    # --- writes and versions ------------------------------------------------------------
    async def begin_write(self, pending: PendingWrite) -> None:
        await self._ex.write(objects.begin_write, pending)

    async def commit_version(
        self, version: ObjectVersion, *, if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> CommitResult:
        return await self._ex.write(objects.commit_version, version, if_match, if_none_match)

    async def abort_write(self, pending: PendingWrite) -> None:
        await self._ex.write(objects.abort_write, pending)

    async def stale_writes(self, started_before: float) -> list[PendingWrite]:
        return await self._ex.read(objects.stale_writes, started_before)

    async def get_version(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> ObjectVersion:
        return await self._ex.read_point(objects.get_version, bucket, key, version_id)

    async def update_version(
        self, bucket: str, key: str, version_id: str | None, *, tags: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> ObjectVersion:
        return await self._ex.write(objects.update_version, bucket, key, version_id, tags, headers)

    async def delete_object(
        self, bucket: str, key: str, version_id: str | None = None, *,
        if_match: str | None = None, refuse: Callable[[ObjectVersion], bool] | None = None,
    ) -> DeleteResult:
        """As Store.delete_object; on a bucket never versioned the result's version_id
        is "" (there is no version id to report)."""
        return await self._ex.write(
            objects.delete_object, bucket, key, version_id, if_match, refuse
        )

    async def list_objects(
        self, bucket: str, *, prefix: str = "", delimiter: str = "", start_after: str = "",
        max_keys: int = 1000,
    ) -> ListPage:
        return await self._ex.read(
            listing.list_objects, bucket, prefix, delimiter, start_after, _page_size(max_keys)
        )

    async def list_versions(
        self, bucket: str, *, prefix: str = "", delimiter: str = "", key_marker: str = "",
        version_id_marker: str = "", max_keys: int = 1000,
    ) -> VersionPage:
        return await self._ex.read(
            listing.list_versions, bucket, prefix, delimiter, key_marker, version_id_marker,
            _page_size(max_keys),
        )

    async def load_versions(self, versions: Sequence[ObjectVersion]) -> int:
        """Bulk import of versions of keys that have none yet, in one transaction
        (executemany): no conditions, no null-version replacement. For imports and
        benchmarks; not part of the Store interface."""
        return await self._ex.write(objects.load_versions, list(versions))

    # --- multipart -------------------------------------------------------------------
    async def create_upload(self, upload: UploadRecord) -> None:
        await self._ex.write(multipart.create_upload, upload)

    async def get_upload(self, upload_id: str) -> UploadRecord:
        return await self._ex.read_point(multipart.get_upload, upload_id)

    async def put_part(self, part: PartRecord) -> None:
        await self._ex.write(multipart.put_part, part)

    async def list_parts(
        self, upload_id: str, *, part_number_marker: int = 0, max_parts: int = 1000
    ) -> PartsPage:
        return await self._ex.read(
            multipart.list_parts, upload_id, part_number_marker, _page_size(max_parts)
        )

    async def list_uploads(
        self, bucket: str, *, prefix: str = "", delimiter: str = "", key_marker: str = "",
        upload_id_marker: str = "", max_uploads: int = 1000,
    ) -> UploadsPage:
        return await self._ex.read(
            listing.list_uploads, bucket, prefix, delimiter, key_marker, upload_id_marker,
            _page_size(max_uploads),
        )

    async def complete_upload(
        self, upload_id: str, version: ObjectVersion, *, if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> CommitResult:
        return await self._ex.write(
            multipart.complete_upload, upload_id, version, if_match, if_none_match
        )

    async def abort_upload(self, upload_id: str) -> None:
        await self._ex.write(multipart.abort_upload, upload_id)

    # --- users and keys ----------------------------------------------------------------
    async def create_user(self, user: UserRecord) -> None:
        await self._ex.write(admin.create_user, user)

    async def get_user(self, user_id: str) -> UserRecord:
        return await self._ex.read_point(admin.get_user, user_id)

    async def get_user_by_name(self, name: str) -> UserRecord:
        return await self._ex.read(admin.get_user_by_name, name)

    async def list_users(self) -> list[UserRecord]:
        return await self._ex.read(admin.list_users)

    async def delete_user(self, user_id: str) -> None:
        await self._ex.write(admin.delete_user, user_id)

    async def create_access_key(self, key: AccessKey) -> None:
        """Raises UserNotFound, or ValueError if the access key id is taken."""
        sealed = self._box.seal(key.access_key, key.secret_key)
        await self._ex.write(
            admin.create_access_key, key.access_key, sealed, key.user_id, key.created, key.enabled
        )

    def _open_key(self, row: tuple[Any, ...]) -> AccessKey:
        return AccessKey(row[0], self._box.open(row[0], row[1]), row[2], row[3], bool(row[4]))

    async def get_access_key(self, access_key: str) -> AccessKey:
        return self._open_key(await self._ex.read_point(admin.get_access_key, access_key))

    async def list_access_keys(self, user_id: str) -> list[AccessKey]:
        return [self._open_key(r) for r in await self._ex.read(admin.list_access_keys, user_id)]

    async def delete_access_key(self, access_key: str) -> None:
        await self._ex.write(admin.delete_access_key, access_key)

    # --- account settings -------------------------------------------------------------------
    async def get_account_settings(self, user_id: str) -> dict:
        return await self._ex.read_point(admin.get_account_settings, user_id)

    async def put_account_settings(self, user_id: str, settings: dict) -> None:
        """Raises UserNotFound."""
        await self._ex.write(admin.put_account_settings, user_id, dict(settings))

    # --- placement ------------------------------------------------------------------------
    async def save_placement_map(self, epoch: int, map_json: str) -> None:
        await self._ex.write(admin.save_placement_map, epoch, map_json)
        self._changed("placement")

    async def retire_epochs(self, below: int) -> list[int]:
        retired = await self._ex.write(admin.retire_epochs, below)
        if retired:
            self._changed("placement")
        return retired

    async def get_placement_map(self, epoch: int) -> str:
        return await self._ex.read(admin.get_placement_map, epoch)

    async def latest_placement_map(self) -> tuple[int, str] | None:
        return await self._ex.read(admin.latest_placement_map)

    async def epochs_in_use(self) -> set[int]:
        return await self._ex.read(admin.epochs_in_use)

    async def repin_partition(self, partition: int, from_epoch: int, to_epoch: int,
                              copied: Collection[tuple[str, str]] | None = None) -> int:
        return await self._ex.write(admin.repin_partition, partition, from_epoch, to_epoch,
                                    copied)

    async def put_pod(self, pod: PodRecord) -> None:
        await self._ex.write(admin.put_pod, pod)
        self._changed("pods")

    async def list_pods(self) -> list[PodRecord]:
        return await self._ex.read(admin.list_pods)

    # --- work queues ------------------------------------------------------------------------
    async def queue_collect(self, refs: Sequence[ShardRef], not_before: float = 0.0) -> None:
        await self._ex.write(queues.queue_collect, list(refs), not_before)

    async def take_collect(self, now: float, limit: int = 100) -> list[tuple[int, ShardRef]]:
        return await self._ex.read(queues.take_collect, now, limit)

    async def done_collect(self, ids: Sequence[int]) -> None:
        await self._ex.write(queues.done_collect, list(ids))

    async def queue_heal(self, items: Sequence[HealItem]) -> None:
        await self._ex.write(queues.queue_heal, list(items))

    async def take_heal(self, limit: int = 100) -> list[tuple[int, HealItem]]:
        return await self._ex.read(queues.take_heal, limit)

    async def done_heal(self, ids: Sequence[int]) -> None:
        await self._ex.write(queues.done_heal, list(ids))

    async def heal_queue_length(self) -> int:
        return await self._ex.read(queues.heal_queue_length)

    # --- maintenance --------------------------------------------------------------------------
    async def find_parts(self, object_id: str) -> list[PinnedPart]:
        return await self._ex.read(pins.find_parts, object_id)

    async def partition_parts(self, partition: int) -> list[PinnedPart]:
        return await self._ex.read(pins.partition_parts, partition)

    # --- leases ---------------------------------------------------------------------------------
    async def try_acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        return await self._ex.write(admin.try_acquire_lease, name, holder, ttl_s, time.time())

    async def release_lease(self, name: str, holder: str) -> None:
        await self._ex.write(admin.release_lease, name, holder)


__all__ = ["SQLiteStore"]
