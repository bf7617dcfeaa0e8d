"""Buckets, object versions and pending writes: the SQL of each Store method on
PostgreSQL.

Rules:
- Every function runs inside the one transaction Database.run opened for it, so
  raising undoes everything it did.
- Every change to a key's versions first takes the key's lock (`lock_key`, or
  ks_commit does): two gateways changing one key take turns, so conditions are
  checked against the state they change, a null version is replaced once, and a
  delete racing a put queues exactly the shards it removed.
- A change and the ShardRefs of the shards it orphans are written together, here.
- `latest` always equals "newest version of the key, unless it is a delete marker".
- Records go to and from rows with the SQLite backend's encoders (_sqlite_rows):
  one doc format, so a record reads the same from either backend.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
import zlib
from collections.abc import Callable
from typing import Any

import asyncpg

from kurastore.metadata._postgres_notify import notify
from kurastore.metadata._records import (
    NULL_VERSION,
    BucketRecord,
    CommitResult,
    DeleteResult,
    ObjectVersion,
    PendingWrite,
    ShardRef,
)
from kurastore.metadata._sqlite_rows import (
    VERSION_COLS,
    check_conditions,
    decode_version,
    dumps,
    has_shards,
    key_bytes,
    loads,
    seq_of_version_id,
    version_doc,
)
from kurastore.metadata._store import REMOVED_VERSION_GRACE_S
from kurastore.metadata.errors import (
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    BucketNotFound,
    ObjectNotFound,
    PreconditionFailed,
    VersionNotFound,
    VersionProtected,
)

Conn = asyncpg.Connection
Row = Any  # asyncpg.Record: indexable like the SQLite backend's tuples
VERSIONING_STATES = ("", "Enabled", "Suspended")
_BUCKET_COLS = "name, owner, created, region, versioning, settings"
_ROW_COLS = f"{VERSION_COLS}, has_shards, width"  # decode_version's columns, then ours
_COMMIT_SQL = (
    "SELECT * FROM ks_commit_v6($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
    "$15, $16, $17, $18, $19)"
)


def key_hash(kb: bytes) -> int:
    """The key's half of its advisory lock id (the bucket id is the other half)."""
    h = zlib.crc32(kb)
    return h - (1 << 32) if h >= 1 << 31 else h


async def lock_key(conn: Conn, bid: int, kb: bytes) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", bid, key_hash(kb))


async def queue_refs(conn: Conn, refs: list[ShardRef], not_before: float = 0.0) -> None:
    if refs:
        await conn.executemany(
            "INSERT INTO collect (object_id, shard_tag, partition, epoch, width, not_before) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            [(r.object_id, r.shard_tag, r.partition, r.epoch, r.width, not_before)
             for r in refs],
        )


# --- buckets ------------------------------------------------------------------------
def _decode_bucket(row: Row) -> BucketRecord:
    return BucketRecord(row[0], row[1], row[2], row[3], row[4], loads(row[5]))


async def bucket_ref(conn: Conn, name: str) -> tuple[int, str]:
    """(bucket id, versioning state). Raises BucketNotFound."""
    row = await conn.fetchrow("SELECT id, versioning FROM buckets WHERE name = $1", name)
    if row is None:
        raise BucketNotFound(name)
    return row[0], row[1]


async def create_bucket(conn: Conn, b: BucketRecord) -> None:
    if b.versioning not in VERSIONING_STATES:
        raise ValueError(f"versioning must be one of {VERSIONING_STATES}")
    row = await conn.fetchrow(
        f"INSERT INTO buckets ({_BUCKET_COLS}) VALUES ($1, $2, $3, $4, $5, $6) "
        "ON CONFLICT (name) DO NOTHING RETURNING id",
        b.name, b.owner, b.created, b.region, b.versioning, dumps(dict(b.settings)),
    )
    if row is None:
        owner = await conn.fetchval("SELECT owner FROM buckets WHERE name = $1", b.name)
        raise (BucketAlreadyOwnedByYou if owner == b.owner else BucketAlreadyExists)(b.name)
    await notify(conn, "bucket:" + b.name)


async def get_bucket(conn: Conn, name: str) -> BucketRecord:
    row = await conn.fetchrow(f"SELECT {_BUCKET_COLS} FROM buckets WHERE name = $1", name)
    if row is None:
        raise BucketNotFound(name)
    return _decode_bucket(row)


async def list_buckets(conn: Conn, owner: str | None) -> list[BucketRecord]:
    if owner is None:
        rows = await conn.fetch(f"SELECT {_BUCKET_COLS} FROM buckets ORDER BY name")
    else:
        rows = await conn.fetch(
            f"SELECT {_BUCKET_COLS} FROM buckets WHERE owner = $1 ORDER BY name", owner
        )
    return [_decode_bucket(r) for r in rows]


async def update_bucket(
    conn: Conn, name: str, versioning: str | None, settings: dict[str, Any] | None
) -> BucketRecord:
    if versioning is not None and versioning not in VERSIONING_STATES:
        raise ValueError(f"versioning must be one of {VERSIONING_STATES}")
    row = await conn.fetchrow(
        "UPDATE buckets SET versioning = coalesce($2, versioning), "
        f"settings = coalesce($3, settings) WHERE name = $1 RETURNING {_BUCKET_COLS}",
        name, versioning, None if settings is None else dumps(settings),
    )
    if row is None:
        raise BucketNotFound(name)
    await notify(conn, "bucket:" + name)
    return _decode_bucket(row)


async def delete_bucket(conn: Conn, name: str) -> None:
    # FOR UPDATE conflicts with the FOR KEY SHARE every commit takes on its bucket's row
    # (schema 5): a commit that came first is seen by the emptiness check below, one that
    # comes later waits and then finds no bucket.
    bid = await conn.fetchval("SELECT id FROM buckets WHERE name = $1 FOR UPDATE", name)
    if bid is None:
        raise BucketNotFound(name)
    if await conn.fetchval("SELECT 1 FROM versions WHERE bucket_id = $1 LIMIT 1", bid):
        raise BucketNotEmpty(name)
    uploads = await conn.fetch(
        "DELETE FROM uploads WHERE bucket_id = $1 "
        "RETURNING upload_id, object_id, partition, epoch, width",
        bid,
    )
    await queue_refs(conn, [ShardRef(r[1], r[2], r[3], r[4], None) for r in uploads])
    await conn.execute("DELETE FROM parts WHERE upload_id = ANY($1::text[])",
                       [r[0] for r in uploads])
    await conn.execute("DELETE FROM buckets WHERE id = $1", bid)
    await notify(conn, "bucket:" + name)


async def bucket_usage(conn: Conn, name: str) -> tuple[int, int]:
    bid, _ = await bucket_ref(conn, name)
    row = await conn.fetchrow(
        "SELECT count(*), coalesce(sum(size), 0) FROM latest WHERE bucket_id = $1", bid
    )
    return int(row[0]), int(row[1])


# --- commits --------------------------------------------------------------------------
def _pending_tags(version: ObjectVersion) -> list[str]:
    return sorted({p.shard_tag for p in version.parts} | {""})


async def commit(
    conn: Conn, version: ObjectVersion, if_match: str | None, if_none_match: str | None,
    clear_pending: bool = True,
) -> CommitResult:
    """ks_commit in one round trip; returns the stored version and those it replaced."""
    kb = key_bytes(version.key)
    rows = await conn.fetch(
        _COMMIT_SQL, version.bucket, kb, key_hash(kb),
        None if if_match is None else if_match.strip('"'),
        None if if_none_match is None else if_none_match.strip('"'),
        os.urandom(8).hex(), version.object_id, version.is_delete_marker, version.size,
        version.etag, version.last_modified, version.partition, version.epoch,
        has_shards(version), version.k + version.m, version_doc(version), version.inline,
        # Inline objects and delete markers never had a pending write to clear.
        _pending_tags(version) if clear_pending and has_shards(version) else [],
        time.time() + REMOVED_VERSION_GRACE_S,
    )
    replaced = tuple(decode_version(version.bucket, r[1:], False) for r in rows if r[0] == 1)
    installed = next(r for r in rows if r[0] == 0)
    # dataclasses.replace re-runs __init__ over ~25 fields; this is the hottest path.
    stored = copy.copy(version)
    object.__setattr__(stored, "version_id", installed[3])
    object.__setattr__(stored, "is_latest", True)
    return CommitResult(stored, replaced)


async def commit_version(
    conn: Conn, version: ObjectVersion, if_match: str | None, if_none_match: str | None
) -> CommitResult:
    return await commit(conn, version, if_match, if_none_match)


# --- pending writes -------------------------------------------------------------------
async def begin_write(conn: Conn, p: PendingWrite) -> None:
    """ks_begin_write: one round trip, refused (KSE01) under a retired epoch."""
    await conn.execute(
        "SELECT ks_begin_write($1, $2, $3, $4, $5, $6, $7, $8)",
        p.object_id, p.shard_tag or "", p.bucket, p.key, p.partition, p.epoch, p.width,
        p.started,
    )


async def abort_write(conn: Conn, p: PendingWrite) -> None:
    """Queues the shards only if the pending write was still there: when a commit's
    answer was lost with its connection, the commit may have happened (and cleared
    the pending write), and its shards must then not be collected."""
    row = await conn.fetchrow(
        "DELETE FROM pending WHERE object_id = $1 AND shard_tag = $2 "
        "RETURNING partition, epoch, width",
        p.object_id, p.shard_tag or "",
    )
    if row is not None:
        await queue_refs(conn, [ShardRef(p.object_id, row[0], row[1], row[2], p.shard_tag)])


async def stale_writes(conn: Conn, started_before: float) -> list[PendingWrite]:
    rows = await conn.fetch(
        "SELECT object_id, shard_tag, bucket, key, partition, epoch, width, started "
        "FROM pending WHERE started < $1 ORDER BY started",
        started_before,
    )
    return [PendingWrite(r[0], r[1] or None, *tuple(r)[2:]) for r in rows]


# --- reading, tagging, deleting ---------------------------------------------------------
async def newest_row(conn: Conn, bid: int, kb: bytes) -> Row | None:
    return await conn.fetchrow(
        f"SELECT {_ROW_COLS} FROM versions WHERE bucket_id = $1 AND key = $2 "
        "ORDER BY seq DESC LIMIT 1",
        bid, kb,
    )


async def _find_row(conn: Conn, bid: int, kb: bytes, version_id: str) -> Row | None:
    if version_id == NULL_VERSION:
        return await conn.fetchrow(
            f"SELECT {_ROW_COLS} FROM versions "
            "WHERE bucket_id = $1 AND key = $2 AND version_id = 'null'",
            bid, kb,
        )
    seq = seq_of_version_id(version_id)
    if seq is None or not -(1 << 63) <= seq < (1 << 63):
        return None
    return await conn.fetchrow(
        f"SELECT {_ROW_COLS} FROM versions "
        "WHERE bucket_id = $1 AND key = $2 AND seq = $3 AND version_id = $4",
        bid, kb, seq, version_id,
    )


async def _resolve(conn: Conn, bucket: str, key: str, version_id: str | None) -> tuple[Row, bool]:
    """The row get_version names and whether it is the newest. Raises as get_version."""
    bid, _ = await bucket_ref(conn, bucket)
    kb = key_bytes(key)
    if version_id is None:
        row = await newest_row(conn, bid, kb)
        if row is None:
            raise ObjectNotFound(f"{bucket}/{key}")
        if row[4]:
            raise ObjectNotFound(f"{bucket}/{key}", delete_marker=True, version_id=row[2])
        return row, True
    row = await _find_row(conn, bid, kb, version_id)
    if row is None:
        raise VersionNotFound(f"{bucket}/{key}?versionId={version_id}")
    newest = await conn.fetchval(
        "SELECT max(seq) FROM versions WHERE bucket_id = $1 AND key = $2", bid, kb
    )
    return row, newest == row[1]


async def get_version(
    conn: Conn, bucket: str, key: str, version_id: str | None
) -> ObjectVersion:
    row, is_latest = await _resolve(conn, bucket, key, version_id)
    return decode_version(bucket, row, is_latest)


async def update_version(
    conn: Conn, bucket: str, key: str, version_id: str | None, tags: dict[str, str] | None,
    headers: dict[str, str] | None = None,
) -> ObjectVersion:
    bid, _ = await bucket_ref(conn, bucket)
    await lock_key(conn, bid, key_bytes(key))
    row, is_latest = await _resolve(conn, bucket, key, version_id)
    current = decode_version(bucket, row, is_latest)
    if current.is_delete_marker:
        raise ObjectNotFound(f"{bucket}/{key}", delete_marker=True, version_id=current.version_id)
    if tags is not None:
        current = dataclasses.replace(current, tags=dict(tags))
    if headers is not None:
        current = dataclasses.replace(current, headers=dict(headers))
    await conn.execute(
        "UPDATE versions SET doc = $4 WHERE bucket_id = $1 AND key = $2 AND seq = $3",
        bid, row[0], row[1], version_doc(current),
    )
    return current


async def _refresh_latest(conn: Conn, bid: int, kb: bytes) -> None:
    row = await conn.fetchrow(
        "SELECT seq, is_delete_marker, size FROM versions WHERE bucket_id = $1 AND key = $2 "
        "ORDER BY seq DESC LIMIT 1",
        bid, kb,
    )
    if row is None or row[1]:
        await conn.execute("DELETE FROM latest WHERE bucket_id = $1 AND key = $2", bid, kb)
    else:
        await conn.execute(
            "INSERT INTO latest VALUES ($1, $2, $3, $4) ON CONFLICT (bucket_id, key) "
            "DO UPDATE SET seq = EXCLUDED.seq, size = EXCLUDED.size",
            bid, kb, row[0], row[2],
        )


async def _drop_row(conn: Conn, bid: int, row: Row) -> None:
    """Deletes one version row and queues its shards; the caller refreshes `latest`."""
    await conn.execute(
        "DELETE FROM versions WHERE bucket_id = $1 AND key = $2 AND seq = $3",
        bid, row[0], row[1],
    )
    if row[12]:
        # Readers that opened this version may still be streaming it.
        await queue_refs(
            conn, [ShardRef(row[3], row[8], row[9], row[13])],
            not_before=time.time() + REMOVED_VERSION_GRACE_S,
        )


def _delete_marker(bucket: str, key: str) -> ObjectVersion:
    return ObjectVersion(
        bucket=bucket, key=key, version_id="", object_id="", size=0, etag="",
        last_modified=time.time(), is_delete_marker=True,
    )


async def delete_object(
    conn: Conn, bucket: str, key: str, version_id: str | None, if_match: str | None,
    refuse: Callable[[ObjectVersion], bool] | None = None,
) -> DeleteResult:
    """Unversioned buckets answer version_id "" (there is no version to name)."""
    bid, versioning = await bucket_ref(conn, bucket)
    kb = key_bytes(key)
    if version_id is None and versioning:
        result = await commit(conn, _delete_marker(bucket, key), if_match, None, False)
        return DeleteResult(result.version.version_id, True)
    await lock_key(conn, bid, kb)
    if version_id is None:
        if if_match is not None:
            check_conditions(await newest_row(conn, bid, kb), if_match, None)
        old = await _find_row(conn, bid, kb, NULL_VERSION)
        if old is not None:
            await _drop_row(conn, bid, old)
            await _refresh_latest(conn, bid, kb)
        return DeleteResult("", False)
    row = await _find_row(conn, bid, kb, version_id)
    if row is None:
        if if_match is not None:
            raise PreconditionFailed("If-Match: no such version")
        return DeleteResult(version_id, False)
    check_conditions(row, if_match, None)
    if refuse is not None and refuse(decode_version(bucket, row, False)):
        raise VersionProtected(f"version {version_id} of {key!r} is protected")
    await _drop_row(conn, bid, row)
    await _refresh_latest(conn, bid, kb)
    return DeleteResult(version_id, bool(row[4]))


# --- bulk loading (imports and benchmarks) ----------------------------------------------
async def load_versions(conn: Conn, versions: list[ObjectVersion]) -> int:
    """COPYs many versions of keys that have no version yet: no conditions, no
    null-version replacement, no pending writes cleared. Returns the rows loaded."""
    refs: dict[str, tuple[int, str]] = {}
    rows, latest = [], []
    seqs = await conn.fetch(
        "SELECT nextval('ks_seq') FROM generate_series(1, $1)", len(versions)
    )
    for v, s in zip(versions, seqs, strict=True):
        if v.bucket not in refs:
            refs[v.bucket] = await bucket_ref(conn, v.bucket)
        bid, versioning = refs[v.bucket]
        seq = s[0]
        vid = (f"{((1 << 64) - 1 - seq):016x}{os.urandom(8).hex()}"
               if versioning == "Enabled" else NULL_VERSION)
        kb = key_bytes(v.key)
        rows.append((bid, kb, seq, vid, v.object_id, v.is_delete_marker, v.size, v.etag,
                     v.last_modified, v.partition, v.epoch, has_shards(v), v.k + v.m,
                     version_doc(v), v.inline))
        if not v.is_delete_marker:
            latest.append((bid, kb, seq, v.size))
    await conn.copy_records_to_table("versions", records=rows)
    await conn.copy_records_to_table("latest", records=latest)
    return len(rows)
