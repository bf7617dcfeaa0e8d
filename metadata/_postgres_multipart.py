"""Multipart uploads and their parts on PostgreSQL.

Rules (as the SQLite backend's):
- All parts of an upload live under the upload's object id, partition and epoch;
  replacing a part number with a new shard tag orphans exactly the old tag's shards,
  queued in the same transaction.
- An upload's row is locked (FOR UPDATE) by every change to it, so a part stored on
  one gateway and a complete or abort on another take turns: a part is either in
  the completed object, or queued for collection, never lost in between.
- complete_upload commits through ks_commit inside the same transaction: a failed
  precondition rolls everything back and leaves the upload, its parts and the key
  untouched.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from kurastore.metadata._postgres_admin import lock_epoch_shared
from kurastore.metadata._postgres_objects import bucket_ref, commit, queue_refs
from kurastore.metadata._records import (
    CommitResult,
    ObjectVersion,
    PartLayout,
    PartRecord,
    PartsPage,
    ShardRef,
    UploadRecord,
)
from kurastore.metadata._sqlite_rows import (
    UPLOAD_COLS,
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

Conn = asyncpg.Connection
Row = Any
_COLS = ", ".join("u." + c.strip() for c in UPLOAD_COLS.split(","))


async def _upload(conn: Conn, upload_id: str, lock: bool = False) -> tuple[UploadRecord, int]:
    """The upload and its width (k + m). Raises UploadNotFound."""
    row = await conn.fetchrow(
        f"SELECT {_COLS}, b.name, u.width FROM uploads u JOIN buckets b "
        "ON b.id = u.bucket_id WHERE u.upload_id = $1" + (" FOR UPDATE OF u" if lock else ""),
        upload_id,
    )
    if row is None:
        raise UploadNotFound(upload_id)
    return decode_upload(row[-2], row), int(row[-1])


async def create_upload(conn: Conn, u: UploadRecord) -> None:
    bid, _ = await bucket_ref(conn, u.bucket)
    await lock_epoch_shared(conn, u.epoch)
    done = await conn.fetchval(
        "INSERT INTO uploads VALUES ($1, $2, $3, nextval('ks_seq'), $4, $5, $6, $7, $8, $9) "
        "ON CONFLICT (upload_id) DO NOTHING RETURNING 1",
        u.upload_id, bid, key_bytes(u.key), u.object_id, u.initiated, u.partition, u.epoch,
        width_of(u), upload_doc(u),
    )
    if done is None:
        raise ValueError(f"upload {u.upload_id} already exists")


async def get_upload(conn: Conn, upload_id: str) -> UploadRecord:
    return (await _upload(conn, upload_id))[0]


def _ref(u: UploadRecord, width: int, shard_tag: str | None) -> ShardRef:
    return ShardRef(u.object_id, u.partition, u.epoch, width, shard_tag)


async def put_part(conn: Conn, rec: PartRecord) -> None:
    upload, width = await _upload(conn, rec.upload_id, lock=True)  # repin_partition locks too
    p = rec.part
    written = await conn.fetchval(
        "SELECT epoch FROM pending WHERE object_id = $1 AND shard_tag = $2",
        upload.object_id, p.shard_tag,
    )
    if written is not None and written != upload.epoch:
        raise UploadRepinned(f"upload {rec.upload_id} moved to epoch {upload.epoch} while "
                             f"part {p.part_number} was written under epoch {written}")
    old = await conn.fetchval(
        "SELECT shard_tag FROM parts WHERE upload_id = $1 AND part_number = $2",
        rec.upload_id, p.part_number,
    )
    # A retry that names the same tag re-states the same shards: nothing orphaned.
    if old is not None and old != p.shard_tag:
        await queue_refs(conn, [_ref(upload, width, old)])
    await conn.execute(
        "INSERT INTO parts VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "ON CONFLICT (upload_id, part_number) DO UPDATE SET shard_tag = EXCLUDED.shard_tag, "
        "size = EXCLUDED.size, etag = EXCLUDED.etag, checksums = EXCLUDED.checksums, "
        "last_modified = EXCLUDED.last_modified",
        rec.upload_id, p.part_number, p.shard_tag, p.size, p.etag, dumps(dict(p.checksums)),
        rec.last_modified,
    )
    await conn.execute(
        "DELETE FROM pending WHERE object_id = $1 AND shard_tag = $2",
        upload.object_id, p.shard_tag,
    )


async def list_parts(
    conn: Conn, upload_id: str, part_number_marker: int, max_parts: int
) -> PartsPage:
    await _upload(conn, upload_id)
    n = max(max_parts, 0)
    rows = await conn.fetch(
        "SELECT part_number, shard_tag, size, etag, checksums, last_modified FROM parts "
        "WHERE upload_id = $1 AND part_number > $2 ORDER BY part_number LIMIT $3",
        upload_id, part_number_marker, n + 1,
    )
    truncated = len(rows) > n
    parts = tuple(
        PartRecord(upload_id, PartLayout(r[0], r[1], r[2], r[3], loads(r[4])), r[5])
        for r in rows[:n]
    )
    return PartsPage(parts, truncated, parts[-1].part.part_number if truncated and parts else 0)


async def _remove(conn: Conn, upload_id: str) -> None:
    await conn.execute("DELETE FROM parts WHERE upload_id = $1", upload_id)
    await conn.execute("DELETE FROM uploads WHERE upload_id = $1", upload_id)


async def complete_upload(
    conn: Conn, upload_id: str, version: ObjectVersion, if_match: str | None,
    if_none_match: str | None,
) -> CommitResult:
    upload, width = await _upload(conn, upload_id, lock=True)  # put_part locks it too
    rows = await conn.fetch(
        "SELECT part_number, shard_tag FROM parts WHERE upload_id = $1", upload_id
    )
    tags = {int(r[0]): str(r[1]) for r in rows}
    check_parts_current(version, tags)  # before anything changes, as the sqlite backend
    version = pinned_where_upload_is(version, upload)
    result = await commit(conn, version, if_match, if_none_match)
    used = {p.shard_tag for p in version.parts}
    await queue_refs(conn, [_ref(upload, width, t) for t in tags.values() if t not in used])
    await _remove(conn, upload_id)
    return result


async def abort_upload(conn: Conn, upload_id: str) -> None:
    upload, width = await _upload(conn, upload_id, lock=True)
    await queue_refs(conn, [_ref(upload, width, None)])
    await _remove(conn, upload_id)
