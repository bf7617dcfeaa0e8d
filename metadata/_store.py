"""The one metadata interface. SQLite (embedded) and PostgreSQL implement it.

Rules every backend keeps:
- Every method is one transaction: it happens entirely or not at all.
- Per-key operations are linearizable: a conditional commit (if_match /
  if_none_match) is checked and applied atomically, so it is safe as a lock.
- Committing or deleting never deletes shards: the store queues ShardRefs of
  replaced versions, aborted writes and aborted uploads for the collector, in
  the same transaction as the change that orphaned them.
- Keys order by their UTF-8 bytes, as S3 does.
- Shards of a removed or replaced version are queued with not_before =
  now + REMOVED_VERSION_GRACE_S, longer than any GET that opened the version
  before it went; shards of aborted writes and uploads are due at once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol

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

REMOVED_VERSION_GRACE_S = 300.0


class Store(Protocol):
    async def close(self) -> None: ...

    def on_change(self, callback: Callable[[str], None]) -> None:
        """Calls callback(topic) on the event loop after a change committed by any
        gateway sharing this store: "placement" (a map saved, epochs retired), "pods",
        "bucket:<name>"; "*" when changes may have been missed (the store reconnected
        to its database). Best effort, for caches: whoever must be exact reads."""

    # --- buckets -----------------------------------------------------------
    async def create_bucket(self, bucket: BucketRecord) -> None:
        """Raises BucketAlreadyOwnedByYou or BucketAlreadyExists."""

    async def get_bucket(self, name: str) -> BucketRecord:
        """Raises BucketNotFound."""

    async def list_buckets(self, owner: str | None = None) -> list[BucketRecord]:
        """Sorted by name; all buckets when owner is None."""

    async def update_bucket(
        self, name: str, *, versioning: str | None = None, settings: dict | None = None
    ) -> BucketRecord:
        """Replaces the given fields (settings as a whole). Raises BucketNotFound."""

    async def delete_bucket(self, name: str) -> None:
        """Raises BucketNotEmpty while any version or delete marker exists. Multipart
        uploads still in progress are aborted and their shards queued."""

    async def bucket_usage(self, name: str) -> tuple[int, int]:
        """(objects, bytes) of the latest non-delete-marker versions."""

    # --- writes and versions -------------------------------------------------
    async def begin_write(self, pending: PendingWrite) -> None:
        """Records a write in progress before any shard is sent. Raises EpochRetired
        when pending.epoch is retired."""

    async def commit_version(
        self,
        version: ObjectVersion,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> CommitResult:
        """Makes `version` the latest of its key and clears its pending write.
        Assigns version_id ("null" unless the bucket's versioning is Enabled).
        if_match: a current (non-delete-marker) version must exist and, unless "*",
        have this etag (quotes ignored);
        if_none_match: "*": no current version may exist; an etag: the current
        version, if any, must not have it.
        Raises BucketNotFound, PreconditionFailed (nothing changes then)."""

    async def abort_write(self, pending: PendingWrite) -> None:
        """Clears a pending write and queues its shards for collection."""

    async def stale_writes(self, started_before: float) -> list[PendingWrite]:
        """Pending writes older than the given time: crashed or abandoned PUTs."""

    async def get_version(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> ObjectVersion:
        """The latest version when version_id is None. Raises BucketNotFound,
        ObjectNotFound (delete_marker=True when the latest is a delete marker),
        VersionNotFound (a version_id that does not exist)."""

    async def update_version(
        self,
        bucket: str,
        key: str,
        version_id: str | None,
        *,
        tags: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> ObjectVersion:
        """Changes mutable attributes (tags; stored headers, as a whole) of one
        version in place."""

    async def delete_object(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        *,
        if_match: str | None = None,
        refuse: Callable[[ObjectVersion], bool] | None = None,
    ) -> DeleteResult:
        """Without version_id: on a versioned bucket adds a delete marker, otherwise
        removes the "null" version (no error if the key does not exist). With
        version_id: removes that version for good; when `refuse(version)` is true
        instead, removes nothing and raises VersionProtected (asked in the same
        transaction as the removal, so no change to the version, such as a legal hold
        set meanwhile, can slip between the check and the delete). Removed versions'
        shards are queued. Raises BucketNotFound, PreconditionFailed, VersionProtected."""

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        max_keys: int = 1000,
    ) -> ListPage:
        """Latest versions (no delete markers) with keys > start_after, grouped by
        delimiter into common prefixes, at most max_keys entries + prefixes."""

    async def list_versions(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        version_id_marker: str = "",
        max_keys: int = 1000,
    ) -> VersionPage: ...

    # --- multipart -------------------------------------------------------------
    async def create_upload(self, upload: UploadRecord) -> None: ...

    async def get_upload(self, upload_id: str) -> UploadRecord:
        """Raises UploadNotFound."""

    async def put_part(self, part: PartRecord) -> None:
        """Stores a part (replacing the same part number, whose shards are queued) and
        clears the part's pending write. Raises UploadNotFound."""

    async def list_parts(
        self, upload_id: str, *, part_number_marker: int = 0, max_parts: int = 1000
    ) -> PartsPage: ...

    async def list_uploads(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
    ) -> UploadsPage: ...

    async def complete_upload(
        self,
        upload_id: str,
        version: ObjectVersion,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> CommitResult:
        """Commits `version` (whose parts are a subset of the upload's parts) as in
        commit_version, removes the upload, and queues the shards of parts not
        used. Raises UploadNotFound, PreconditionFailed, and PartReplaced when a part
        of `version` is no longer its number's current record (re-uploaded since it was
        read); then nothing changed."""

    async def abort_upload(self, upload_id: str) -> None:
        """Removes the upload and queues all its shards. Raises UploadNotFound."""

    # --- users and keys -------------------------------------------------------------
    async def create_user(self, user: UserRecord) -> None:
        """Raises UserExists (same name or id)."""

    async def get_user(self, user_id: str) -> UserRecord: ...

    async def get_user_by_name(self, name: str) -> UserRecord: ...

    async def list_users(self) -> list[UserRecord]: ...

    async def delete_user(self, user_id: str) -> None:
        """Also deletes the user's access keys."""

    async def create_access_key(self, key: AccessKey) -> None: ...

    async def get_access_key(self, access_key: str) -> AccessKey:
        """Secret decrypted. Raises AccessKeyNotFound."""

    async def list_access_keys(self, user_id: str) -> list[AccessKey]: ...

    async def delete_access_key(self, access_key: str) -> None: ...

    # --- account settings -------------------------------------------------------------
    async def get_account_settings(self, user_id: str) -> dict:
        """The JSON-able settings of a user's account (Swift account metadata...);
        {} when none were ever stored. Deleting the user deletes them."""

    async def put_account_settings(self, user_id: str, settings: dict) -> None:
        """Replaces the account's settings as a whole (JSON-able values)."""

    # --- placement --------------------------------------------------------------
    async def save_placement_map(self, epoch: int, map_json: str) -> None:
        """Epochs only grow: saving an epoch not above the latest raises ValueError."""

    async def get_placement_map(self, epoch: int) -> str:
        """Raises PlacementMapNotFound."""

    async def latest_placement_map(self) -> tuple[int, str] | None: ...

    async def epochs_in_use(self) -> set[int]:
        """Epochs pinned by any version, upload or pending write."""

    async def retire_epochs(self, below: int) -> list[int]:
        """Retires every epoch under `below`, except the latest, that no record pins
        (no version with shards, upload or pending write). From then on begin_write,
        create_upload and commits of versions with shards under a retired epoch raise
        EpochRetired, atomically with respect to this check: no gateway writes under
        an epoch the cluster has retired. Returns the epochs retired by this call."""

    async def repin_partition(self, partition: int, from_epoch: int, to_epoch: int,
                              copied: Collection[tuple[str, str]] | None = None) -> int:
        """Moves every record of one partition from one epoch to another, in one
        transaction. Returns how many records moved.

        `copied`: the (object id, shard tag) parts the caller put on the new epoch's
        pods. Then it raises PartitionChanged, moving nothing, if the partition holds
        anything else at `from_epoch`: a part or version written since the caller read
        the partition, or a pending write (whose shards are going to the old pods).
        Without it every record moves, pending writes included."""

    async def put_pod(self, pod: PodRecord) -> None: ...

    async def list_pods(self) -> list[PodRecord]: ...

    # --- work queues ----------------------------------------------------------------
    async def queue_collect(self, refs: Sequence[ShardRef], not_before: float = 0.0) -> None: ...

    async def take_collect(self, now: float, limit: int = 100) -> list[tuple[int, ShardRef]]:
        """Items due (not_before <= now), oldest first, with their queue ids."""

    async def done_collect(self, ids: Sequence[int]) -> None: ...

    async def queue_heal(self, items: Sequence[HealItem]) -> None:
        """Duplicates (same object, tag, index) are kept once."""

    async def take_heal(self, limit: int = 100) -> list[tuple[int, HealItem]]: ...

    async def done_heal(self, ids: Sequence[int]) -> None: ...

    async def heal_queue_length(self) -> int: ...

    # --- maintenance (healer, scrubber) -------------------------------------------------
    async def find_parts(self, object_id: str) -> list[PinnedPart]:
        """Every part whose shards a record pins under `object_id`: the parts of its
        committed version, the stored parts of its multipart upload in progress, and
        its pending writes (kind "pending"). [] when no record names the id any more:
        its shards are orphans. The healer calls this once per part it rebuilds, so
        backends index the object id. Ordered by (kind, shard_tag)."""

    async def partition_parts(self, partition: int) -> list[PinnedPart]:
        """Every part pinned to `partition` in any epoch (versions, upload parts,
        pending writes, as find_parts), ordered by (epoch, object_id, shard_tag). The
        scrubber compares this with what the pods hold, once per partition and pass;
        backends answer it from an index on (epoch, partition), not a table scan."""

    # --- leases -------------------------------------------------------------------------
    async def try_acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Takes the lease `name` for `holder` until ttl_s from now, or renews it if
        `holder` has it already. False while another holder has it unexpired: a
        holder that stops renewing loses it ttl_s after its last renewal."""

    async def release_lease(self, name: str, holder: str) -> None:
        """Gives the lease up if `holder` has it (nothing otherwise)."""
