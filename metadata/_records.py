"""The records the metadata store keeps: plain frozen values, no I/O.

Rules: every field is JSON-friendly (str, int, float, bool, bytes for inline data,
mappings of str to str). Times are Unix seconds as float. Keys, bucket names and
user metadata are stored exactly as given. Nothing here knows about HTTP, S3 XML
or the erasure codec: k, m and block size are plain ints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NULL_VERSION = "null"


@dataclass(frozen=True)
class BucketRecord:
    name: str
    owner: str  # user id of the owner
    created: float
    region: str = "us-east-1"
    versioning: str = ""  # "" (never enabled), "Enabled" or "Suspended"
    # Everything else a bucket carries (tagging, policy, CORS, Swift container
    # metadata, ACL grants...): JSON-able, opaque to the store.
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PartLayout:
    """One stored part of a version. Its shards are named
    ``<object_id>.<shard_tag>.<block index>`` on the pods of the version's partition."""

    part_number: int  # 1 for a single PUT; the client's part number for multipart
    shard_tag: str  # [0-9a-z-]{1,40}
    size: int  # bytes of object data in this part
    etag: str  # MD5 hex of the part's bytes, no quotes
    checksums: Mapping[str, str] = field(default_factory=dict)  # "CRC32" -> base64


@dataclass(frozen=True)
class ObjectVersion:
    bucket: str
    key: str
    version_id: str  # "" before commit (the store assigns it); "null" when unversioned
    object_id: str  # 32 lowercase hex chars, random; names the shards
    size: int
    etag: str  # no quotes: md5 hex, or md5-of-part-md5s + "-N" for multipart
    last_modified: float
    owner: str = ""
    content_type: str = "binary/octet-stream"
    # cache-control, content-disposition, content-encoding, content-language, expires
    # (lowercase header names) and any other stored standard header.
    headers: Mapping[str, str] = field(default_factory=dict)
    # x-amz-meta-* names, lowercase, without the prefix
    user_meta: Mapping[str, str] = field(default_factory=dict)
    checksums: Mapping[str, str] = field(default_factory=dict)  # "CRC32" -> base64 (whole object)
    checksum_type: str = ""  # "", "FULL_OBJECT" or "COMPOSITE"
    tags: Mapping[str, str] = field(default_factory=dict)
    storage_class: str = "STANDARD"
    # Erasure layout, for every part of this version.
    k: int = 0
    m: int = 0
    block_size: int = 0
    partition: int = 0
    epoch: int = 0  # placement epoch the shards were written under (pinned)
    parts: tuple[PartLayout, ...] = ()  # empty for inline objects and delete markers
    inline: bytes | None = None  # the whole body, for small objects
    is_delete_marker: bool = False
    is_latest: bool = True  # filled in on read
    expires_at: float | None = None  # Swift X-Delete-At; None = never
    # Server-side encryption: how the data key is sealed (gateway/objects/encryption.py);
    # empty when the data is stored in clear.
    encryption: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardRef:
    """Shards to delete from pods: every block index of one part (or of every part
    when shard_tag is None) of one object id, on the first `width` pods of
    `partition` in the map of `epoch`."""

    object_id: str
    partition: int
    epoch: int
    width: int  # k + m
    shard_tag: str | None = None


@dataclass(frozen=True)
class PendingWrite:
    """A write in progress: if the gateway dies, its shards are orphans to collect."""

    object_id: str
    shard_tag: str | None
    bucket: str
    key: str
    partition: int
    epoch: int
    width: int
    started: float


@dataclass(frozen=True)
class UploadRecord:
    upload_id: str
    bucket: str
    key: str
    object_id: str  # every part's shards live under this id (one partition)
    initiated: float
    owner: str = ""
    content_type: str = "binary/octet-stream"
    headers: Mapping[str, str] = field(default_factory=dict)
    user_meta: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    checksum_algorithm: str = ""  # "CRC32", ... as given to CreateMultipartUpload
    checksum_type: str = ""  # "FULL_OBJECT" or "COMPOSITE" when an algorithm is given
    storage_class: str = "STANDARD"
    k: int = 0
    m: int = 0
    block_size: int = 0
    partition: int = 0
    epoch: int = 0
    encryption: Mapping[str, str] = field(default_factory=dict)  # as ObjectVersion's


@dataclass(frozen=True)
class PartRecord:
    upload_id: str
    part: PartLayout
    last_modified: float


@dataclass(frozen=True)
class UserRecord:
    user_id: str  # canonical id (64 hex), the owner id in S3 answers
    name: str  # display name, unique
    created: float
    is_admin: bool = False


@dataclass(frozen=True)
class AccessKey:
    access_key: str
    secret_key: str  # in clear in memory; encrypted at rest with the cluster key
    user_id: str
    created: float
    enabled: bool = True


@dataclass(frozen=True)
class PodRecord:
    pod_id: str
    url: str  # http://host:port of its HTTP service
    zone: str = ""
    node: str = ""
    weight: float = 1.0
    state: str = "active"  # "active", "draining", "removed"


@dataclass(frozen=True)
class HealItem:
    object_id: str
    shard_tag: str
    index: int
    partition: int
    epoch: int
    reason: str  # "missing", "corrupt", "unreachable"
    queued: float


@dataclass(frozen=True)
class PinnedPart:
    """One part whose shards a record pins: ``<object_id>.<shard_tag>.<i>`` for i in
    0..width-1 on the first `width` pods of `partition` in the map of `epoch`.

    kind: "version" (a part of a committed version), "upload" (a stored part of a
    multipart upload in progress) or "pending" (a write still streaming: size -1 and
    k, m, block_size 0, since nothing is known yet; shard_tag "" when the pending
    write covers every part of the id). written: when the record was made (version
    or part last_modified, pending write start), so a reader comparing with pods
    knows which shards may still have been in flight when it listed them.
    """

    object_id: str
    shard_tag: str
    partition: int
    epoch: int
    width: int
    k: int
    m: int
    block_size: int
    size: int
    kind: str
    written: float


@dataclass(frozen=True)
class ListPage:
    entries: tuple[ObjectVersion, ...]
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    # The last key or common prefix returned: the marker to pass for the next page.
    next_marker: str = ""


@dataclass(frozen=True)
class VersionPage:
    entries: tuple[ObjectVersion, ...]  # versions and delete markers, newest first per key
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    next_key_marker: str = ""
    next_version_id_marker: str = ""


@dataclass(frozen=True)
class PartsPage:
    parts: tuple[PartRecord, ...]
    is_truncated: bool
    next_part_number_marker: int = 0


@dataclass(frozen=True)
class UploadsPage:
    uploads: tuple[UploadRecord, ...]
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    next_key_marker: str = ""
    next_upload_id_marker: str = ""


@dataclass(frozen=True)
class CommitResult:
    version: ObjectVersion  # as stored, with its version_id
    replaced: tuple[ObjectVersion, ...] = ()  # versions it replaced, whose shards are queued


@dataclass(frozen=True)
class DeleteResult:
    version_id: str  # the version removed, or the delete marker's id
    delete_marker: bool  # a delete marker was created, or the removed version was one
