"""Records to rows and back for the SQLite backend.

Rules:
- Columns hold what a query filters, orders or updates on; everything else of a
  record goes into one compact JSON `doc` with default values left out, which keeps
  a row small (about 1,000,000 versions per few hundred MB). The doc's names are
  the record's field names: a new record field with a default needs no migration.
- Keys go in as UTF-8 bytes (`key_bytes`) and come out as str; a key that is not
  encodable (a lone surrogate) is refused with ValueError before any SQL runs.
- Version ids of versioned writes encode the store's sequence number, so they sort
  newest first and name their row directly: `seq_of_version_id` is the inverse.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from kurastore.metadata._records import (
    NULL_VERSION,
    ObjectVersion,
    PartLayout,
    UploadRecord,
)
from kurastore.metadata.errors import PartReplaced, PreconditionFailed

_SEQ_SPACE = (1 << 64) - 1
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads

# Column order of every SELECT that decodes a version (see decode_version).
VERSION_COLS = (
    "key, seq, version_id, object_id, is_delete_marker, size, etag, last_modified, "
    "partition, epoch, doc, inline"
)


def key_bytes(key: str) -> bytes:
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"key is not valid Unicode: {key!r}") from None


def new_version_id(seq: int) -> str:
    """32 lowercase hex chars: (2^64-1-seq) then 64 random bits. Ids of one store
    sort newest first; the random half keeps ids unique across stores."""
    return f"{_SEQ_SPACE - seq:016x}{os.urandom(8).hex()}"


def seq_of_version_id(version_id: str) -> int | None:
    if len(version_id) != 32:
        return None
    try:
        return _SEQ_SPACE - int(version_id[:16], 16)
    except ValueError:
        return None


def width_of(version: ObjectVersion | UploadRecord) -> int:
    return version.k + version.m


def has_shards(version: ObjectVersion) -> bool:
    return not version.is_delete_marker and version.inline is None


def _put(doc: dict[str, Any], name: str, value: Any, default: Any) -> None:
    if value != default:
        doc[name] = dict(value) if isinstance(value, Mapping) else value


def encode_parts(parts: tuple[PartLayout, ...]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for p in parts:
        item: list[Any] = [p.part_number, p.shard_tag, p.size, p.etag]
        if p.checksums:
            item.append(dict(p.checksums))
        out.append(item)
    return out


def decode_parts(items: list[list[Any]]) -> tuple[PartLayout, ...]:
    return tuple(
        PartLayout(i[0], i[1], i[2], i[3], i[4] if len(i) > 4 else {}) for i in items
    )


def version_doc(v: ObjectVersion) -> str:
    doc: dict[str, Any] = {}
    _put(doc, "owner", v.owner, "")
    _put(doc, "content_type", v.content_type, "binary/octet-stream")
    _put(doc, "headers", v.headers, {})
    _put(doc, "user_meta", v.user_meta, {})
    _put(doc, "checksums", v.checksums, {})
    _put(doc, "checksum_type", v.checksum_type, "")
    _put(doc, "tags", v.tags, {})
    _put(doc, "storage_class", v.storage_class, "STANDARD")
    _put(doc, "k", v.k, 0)
    _put(doc, "m", v.m, 0)
    _put(doc, "block_size", v.block_size, 0)
    _put(doc, "expires_at", v.expires_at, None)
    _put(doc, "encryption", v.encryption, {})
    if v.parts:
        doc["parts"] = encode_parts(v.parts)
    return _dumps(doc)


def version_row(bucket_id: int, seq: int, version_id: str, v: ObjectVersion) -> tuple[Any, ...]:
    """Values for INSERT INTO versions in schema column order."""
    return (
        bucket_id,
        key_bytes(v.key),
        seq,
        version_id,
        v.object_id,
        int(v.is_delete_marker),
        v.size,
        v.etag,
        v.last_modified,
        v.partition,
        v.epoch,
        int(has_shards(v)),
        version_doc(v),
        v.inline,
    )


INSERT_VERSION = "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def decode_version(bucket: str, row: tuple[Any, ...], is_latest: bool) -> ObjectVersion:
    """A row selected with VERSION_COLS (extra trailing columns are ignored).

    The doc's names are ObjectVersion's field names, so it is passed as keywords:
    one call instead of a lookup per field (listing decodes 1000 rows a page)."""
    doc = _loads(row[10])
    parts = doc.get("parts")
    if parts:
        doc["parts"] = decode_parts(parts)
    return ObjectVersion(
        bucket=bucket,
        key=row[0].decode("utf-8"),
        version_id=row[2],
        object_id=row[3],
        size=row[5],
        etag=row[6],
        last_modified=row[7],
        partition=row[8],
        epoch=row[9],
        inline=row[11],
        is_delete_marker=bool(row[4]),
        is_latest=is_latest,
        **doc,
    )


def upload_doc(u: UploadRecord) -> str:
    doc: dict[str, Any] = {}
    _put(doc, "owner", u.owner, "")
    _put(doc, "content_type", u.content_type, "binary/octet-stream")
    _put(doc, "headers", u.headers, {})
    _put(doc, "user_meta", u.user_meta, {})
    _put(doc, "tags", u.tags, {})
    _put(doc, "checksum_algorithm", u.checksum_algorithm, "")
    _put(doc, "checksum_type", u.checksum_type, "")
    _put(doc, "storage_class", u.storage_class, "STANDARD")
    _put(doc, "k", u.k, 0)
    _put(doc, "m", u.m, 0)
    _put(doc, "block_size", u.block_size, 0)
    _put(doc, "encryption", u.encryption, {})
    return _dumps(doc)


# Column order of every SELECT that decodes an upload (see decode_upload).
UPLOAD_COLS = "upload_id, key, object_id, initiated, partition, epoch, doc, seq"


def decode_upload(bucket: str, row: tuple[Any, ...]) -> UploadRecord:
    return UploadRecord(
        upload_id=row[0],
        bucket=bucket,
        key=row[1].decode("utf-8"),
        object_id=row[2],
        initiated=row[3],
        partition=row[4],
        epoch=row[5],
        **_loads(row[6]),
    )


def dumps(value: Any) -> str:
    return _dumps(value)


def loads(text: str) -> Any:
    return _loads(text)


def is_null(version_id: str) -> bool:
    return version_id == NULL_VERSION


def check_parts_current(version: ObjectVersion, tags: dict[int, str]) -> None:
    """PartReplaced unless each part of `version` is its number's current tag (both backends)."""
    stale = [p.part_number for p in version.parts if tags.get(p.part_number) != p.shard_tag]
    if stale:
        raise PartReplaced(f"parts {stale} were replaced or removed since they were read")


def pinned_where_upload_is(version: ObjectVersion, upload: UploadRecord) -> ObjectVersion:
    """`version` pinned to the upload's epoch as the store holds it now (both backends).

    The gateway built the version from the upload it read when Complete began; the
    rebalancer may have copied the parts and re-pinned the upload since, and then
    schedules the old copies for deletion: a version committed under the epoch read
    earlier would name shards about to be deleted (found by reading the race)."""
    if version.epoch == upload.epoch and version.partition == upload.partition:
        return version
    return dataclasses.replace(version, epoch=upload.epoch, partition=upload.partition)


def check_conditions(
    current: Sequence[Any] | None, if_match: str | None, if_none_match: str | None
) -> None:
    """Both backends' write conditions, on the key's newest row (VERSION_COLS order, or
    at least its first seven columns): If-None-Match "*" fails on any current
    (non-delete-marker) version, an etag only on a current version with that etag;
    If-Match needs a current version with its etag (any, for "*"). Etags compare
    without quotes. (PostgreSQL's ks_commit_v6 checks the same in SQL.)"""
    live = current is not None and not current[4]
    if if_none_match is not None and live:
        refused = if_none_match.strip('"')
        if refused == "*" or current[6] == refused:
            raise PreconditionFailed("If-None-Match: the object exists")
    if if_match is not None:
        wanted = if_match.strip('"')
        if not live or (wanted != "*" and current[6] != wanted):
            raise PreconditionFailed("If-Match: the ETag does not match")
