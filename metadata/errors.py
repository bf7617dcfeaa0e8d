"""Errors of the metadata store. Protocol adapters map them to wire errors.

    MetadataError
    ├── BucketNotFound
    ├── BucketAlreadyExists       (owned by someone else)
    ├── BucketAlreadyOwnedByYou
    ├── BucketNotEmpty
    ├── ObjectNotFound            (.delete_marker: the latest version is a delete marker)
    ├── VersionNotFound
    ├── UploadNotFound
    ├── PartReplaced              (complete_upload named a part re-uploaded meanwhile)
    ├── PreconditionFailed        (If-Match / If-None-Match on commit or delete)
    ├── VersionProtected          (a delete's guard refused the version: Object Lock)
    ├── ConditionalConflict       (two conditional writes raced; the loser may retry)
    ├── UserNotFound
    ├── UserExists
    ├── AccessKeyNotFound
    ├── PlacementMapNotFound
    ├── PartitionChanged          (repin_partition: records the caller did not copy)
    └── MetadataUnavailable       (the database is unreachable; retry later)
        ├── UploadRepinned        (put_part: the upload moved epochs under the part)
        └── EpochRetired          (a write placed under a retired epoch; retry with
                                   the current placement map)
"""


class MetadataError(Exception):
    pass


class BucketNotFound(MetadataError):
    pass


class BucketAlreadyExists(MetadataError):
    pass


class BucketAlreadyOwnedByYou(MetadataError):
    pass


class BucketNotEmpty(MetadataError):
    pass


class ObjectNotFound(MetadataError):
    def __init__(self, message: str = "", *, delete_marker: bool = False, version_id: str = ""):
        super().__init__(message)
        self.delete_marker = delete_marker
        self.version_id = version_id


class VersionNotFound(MetadataError):
    pass


class UploadNotFound(MetadataError):
    pass


class PartReplaced(MetadataError):
    """complete_upload named a part whose record was replaced (the part number uploaded
    again, a new shard tag) after the caller read it. Nothing changed: the replaced
    tag's shards are already queued for collection, so a version naming them would
    lose its data. The caller reads the parts again."""


class PreconditionFailed(MetadataError):
    pass


class VersionProtected(MetadataError):
    """The version a delete named is protected (the caller's `refuse` said so)."""


class ConditionalConflict(MetadataError):
    pass


class UserNotFound(MetadataError):
    pass


class UserExists(MetadataError):
    pass


class AccessKeyNotFound(MetadataError):
    pass


class PlacementMapNotFound(MetadataError):
    pass


class MetadataUnavailable(MetadataError):
    pass


class PartitionChanged(MetadataError):
    """repin_partition found records of the partition at the old epoch that the caller
    did not copy (a part or version written since it read them, or a write still
    streaming). Nothing moved; the caller reads the partition again."""


class UploadRepinned(MetadataUnavailable):
    """put_part: the upload was re-pinned to another epoch while this part's shards
    went to the old epoch's pods, so recording the part would name shards that are not
    where the upload says. Nothing changed; the client retries the part (503)."""


class EpochRetired(MetadataUnavailable):
    """The shards of a write were placed under a placement epoch the cluster has
    retired (see Store.retire_epochs). Nothing was written; the caller retries with
    the current map (protocol adapters answer 503, as for MetadataUnavailable)."""
