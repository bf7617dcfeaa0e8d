"""Multipart uploads and their parts in the SQLite backend.

Rules:
- All parts of an upload live under the upload's object id, partition and epoch;
  a part is named by its shard tag, so replacing a part number with a new tag
  orphans exactly the old tag's shards (queued here, in the same transaction).
- complete_upload checks its conditions before changing anything: a failed
  precondition leaves the upload, its parts and the key untouched. So does a part
  the version names under a tag that is no longer the part's (re-uploaded after the
  caller listed the parts): that tag's shards are queued, committing it would lose
  them (PartReplaced; found by fault injection: Complete racing a part's retry).
- Aborting queues one ShardRef with shard_tag None: every part of the object id.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from kurastore.metadata._records import (
    CommitResult,
    ObjectVersion,
    PartLayout,
    PartRecord,
    PartsPage,
    ShardRef,
    UploadRecord,
)
from kurastore.metadata._sqlite import WriteTx
from kurastore.metadata._sqlite_admin import check_epoch
from kurastore.metadata._sqlite_objects import (
    bucket_ref,
    clear_pending,
    install,
    newest_row,
)
from kurastore.metadata._sqlite_queues import queue_refs
from kurastore.metadata._sqlite_rows import (
    UPLOAD_COLS,
    check_conditions,
    check_parts_current,
    decode_upload,
    dumps,
    key_bytes,
    loads,
    pinned_where_upload_is,
    upload_doc,
    width_of,
)
from kurastore.metadata.errors import UploadNotFound, UploadRepinned

Row = tuple[Any, ...]


def _upload(conn: sqlite3.Connection, upload_id: str) -> tuple[UploadRecord, int]:
    """The upload and its width (k + m). Raises UploadNotFound."""
    row = conn.execute(
        f"SELECT {UPLOAD_COLS}, b.name, u.width FROM uploads u JOIN buckets b "
        "ON b.id = u.bucket_id WHERE u.upload_id = ?",
        (upload_id,),
    ).fetchone()
    if row is None:
        raise UploadNotFound(upload_id)
    return decode_upload(row[-2], row), int(row[-1])


def create_upload(tx: WriteTx, u: UploadRecord) -> None:
    bid, _ = bucket_ref(tx.conn, u.bucket)
    check_epoch(tx.conn, u.epoch)
    try:
        tx.conn.execute(
            "INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (u.upload_id, bid, key_bytes(u.key), tx.next_seq(), u.object_id, u.initiated,
             u.partition, u.epoch, width_of(u), upload_doc(u)),
        )
    except sqlite3.IntegrityError:
        raise ValueError(f"upload {u.upload_id} already exists") from None


def get_upload(conn: sqlite3.Connection, upload_id: str) -> UploadRecord:
    return _upload(conn, upload_id)[0]


def _ref(u: UploadRecord, width: int, shard_tag: str | None) -> ShardRef:
    return ShardRef(u.object_id, u.partition, u.epoch, width, shard_tag)


def put_part(tx: WriteTx, rec: PartRecord) -> None:
    upload, width = _upload(tx.conn, rec.upload_id)
    p = rec.part
    written = tx.conn.execute(
        "SELECT epoch FROM pending WHERE object_id = ? AND shard_tag = ?",
        (upload.object_id, p.shard_tag),
    ).fetchone()
    if written is not None and written[0] != upload.epoch:
        raise UploadRepinned(f"upload {rec.upload_id} moved to epoch {upload.epoch} while "
                             f"part {p.part_number} was written under epoch {written[0]}")
    old = tx.conn.execute(
        "SELECT shard_tag FROM parts WHERE upload_id = ? AND part_number = ?",
        (rec.upload_id, p.part_number),
    ).fetchone()
    # A retry that names the same tag re-states the same shards: nothing orphaned.
    if old is not None and old[0] != p.shard_tag:
        queue_refs(tx.conn, [_ref(upload, width, old[0])])
    tx.conn.execute(
        "INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?, ?, ?)",
        (rec.upload_id, p.part_number, p.shard_tag, p.size, p.etag, dumps(dict(p.checksums)),
         rec.last_modified),
    )
    tx.conn.execute(
        "DELETE FROM pending WHERE object_id = ? AND shard_tag = ?",
        (upload.object_id, p.shard_tag),
    )


def list_parts(
    conn: sqlite3.Connection, upload_id: str, part_number_marker: int, max_parts: int
) -> PartsPage:
    _upload(conn, upload_id)
    rows = conn.execute(
        "SELECT part_number, shard_tag, size, etag, checksums, last_modified FROM parts "
        "WHERE upload_id = ? AND part_number > ? ORDER BY part_number LIMIT ?",
        (upload_id, part_number_marker, max(max_parts, 0) + 1),
    ).fetchall()
    truncated = len(rows) > max_parts
    rows = rows[: max(max_parts, 0)]
    parts = tuple(
        PartRecord(upload_id, PartLayout(r[0], r[1], r[2], r[3], loads(r[4])), r[5]) for r in rows
    )
    return PartsPage(parts, truncated, parts[-1].part.part_number if truncated and parts else 0)


def _remove(tx: WriteTx, upload_id: str) -> None:
    tx.conn.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
    tx.conn.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))


def complete_upload(
    tx: WriteTx, upload_id: str, version: ObjectVersion, if_match: str | None,
    if_none_match: str | None,
) -> CommitResult:
    upload, width = _upload(tx.conn, upload_id)
    bid, versioning = bucket_ref(tx.conn, version.bucket)
    if if_match is not None or if_none_match is not None:
        check_conditions(newest_row(tx.conn, bid, key_bytes(version.key)), if_match, if_none_match)
    tags = dict(tx.conn.execute(
        "SELECT part_number, shard_tag FROM parts WHERE upload_id = ?", (upload_id,)
    ).fetchall())  # fmt: skip
    check_parts_current(version, tags)
    version = pinned_where_upload_is(version, upload)
    used = {p.shard_tag for p in version.parts}
    unused = [tag for tag in tags.values() if tag not in used]
    queue_refs(tx.conn, [_ref(upload, width, tag) for tag in unused])
    result = install(tx, bid, versioning, version)
    clear_pending(tx, version)
    _remove(tx, upload_id)
    return result


def abort_upload(tx: WriteTx, upload_id: str) -> None:
    upload, width = _upload(tx.conn, upload_id)
    queue_refs(tx.conn, [_ref(upload, width, None)])
    _remove(tx, upload_id)
