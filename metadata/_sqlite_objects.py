"""Buckets, object versions and pending writes: the SQL of each Store method.

Rules:
- Functions taking `tx` run on the writer thread inside a group-commit batch and
  their own SAVEPOINT: raising undoes everything they did, so checks may come after
  writes. Functions taking `conn` run on a reader thread in one snapshot.
- A change and the ShardRefs of the shards it orphans are written together, here.
- `latest` always equals "newest version of the key, unless it is a delete marker":
  every function that adds or removes a version row calls `_refresh_latest`.
"""

from __future__ import annotations

import copy
import dataclasses
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from kurastore.metadata._records import (
    NULL_VERSION,
    BucketRecord,
    CommitResult,
    DeleteResult,
    ObjectVersion,
    PendingWrite,
    ShardRef,
)
from kurastore.metadata._sqlite import WriteTx
from kurastore.metadata._sqlite_admin import check_epoch
from kurastore.metadata._sqlite_queues import queue_refs
from kurastore.metadata._sqlite_rows import (
    INSERT_VERSION,
    VERSION_COLS,
    check_conditions,
    decode_version,
    dumps,
    has_shards,
    key_bytes,
    loads,
    new_version_id,
    seq_of_version_id,
    version_doc,
    version_row,
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

VERSIONING_STATES = ("", "Enabled", "Suspended")
_BUCKET_COLS = "name, owner, created, region, versioning, settings"
Row = tuple[Any, ...]


# --- buckets ------------------------------------------------------------------------
def _decode_bucket(row: Row) -> BucketRecord:
    return BucketRecord(row[0], row[1], row[2], row[3], row[4], loads(row[5]))


def bucket_ref(conn: sqlite3.Connection, name: str) -> tuple[int, str]:
    """(bucket id, versioning state). Raises BucketNotFound."""
    row = conn.execute("SELECT id, versioning FROM buckets WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise BucketNotFound(name)
    return row[0], row[1]


def create_bucket(tx: WriteTx, b: BucketRecord) -> None:
    if b.versioning not in VERSIONING_STATES:
        raise ValueError(f"versioning must be one of {VERSIONING_STATES}")
    row = tx.conn.execute("SELECT owner FROM buckets WHERE name = ?", (b.name,)).fetchone()
    if row is not None:
        raise (BucketAlreadyOwnedByYou if row[0] == b.owner else BucketAlreadyExists)(b.name)
    tx.conn.execute(
        f"INSERT INTO buckets ({_BUCKET_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
        (b.name, b.owner, b.created, b.region, b.versioning, dumps(dict(b.settings))),
    )


def get_bucket(conn: sqlite3.Connection, name: str) -> BucketRecord:
    row = conn.execute(f"SELECT {_BUCKET_COLS} FROM buckets WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise BucketNotFound(name)
    return _decode_bucket(row)


def list_buckets(conn: sqlite3.Connection, owner: str | None) -> list[BucketRecord]:
    if owner is None:
        rows = conn.execute(f"SELECT {_BUCKET_COLS} FROM buckets ORDER BY name")
    else:
        rows = conn.execute(
            f"SELECT {_BUCKET_COLS} FROM buckets WHERE owner = ? ORDER BY name", (owner,)
        )
    return [_decode_bucket(r) for r in rows]


def update_bucket(
    tx: WriteTx, name: str, versioning: str | None, settings: dict[str, Any] | None
) -> BucketRecord:
    bucket_ref(tx.conn, name)
    if versioning is not None:
        if versioning not in VERSIONING_STATES:
            raise ValueError(f"versioning must be one of {VERSIONING_STATES}")
        tx.conn.execute("UPDATE buckets SET versioning = ? WHERE name = ?", (versioning, name))
    if settings is not None:
        tx.conn.execute("UPDATE buckets SET settings = ? WHERE name = ?", (dumps(settings), name))
    return get_bucket(tx.conn, name)


def delete_bucket(tx: WriteTx, name: str) -> None:
    bid, _ = bucket_ref(tx.conn, name)
    if tx.conn.execute("SELECT 1 FROM versions WHERE bucket_id = ? LIMIT 1", (bid,)).fetchone():
        raise BucketNotEmpty(name)
    uploads = tx.conn.execute(
        "SELECT upload_id, object_id, partition, epoch, width FROM uploads WHERE bucket_id = ?",
        (bid,),
    ).fetchall()
    queue_refs(tx.conn, [ShardRef(r[1], r[2], r[3], r[4], None) for r in uploads])
    tx.conn.executemany("DELETE FROM parts WHERE upload_id = ?", [(r[0],) for r in uploads])
    tx.conn.execute("DELETE FROM uploads WHERE bucket_id = ?", (bid,))
    tx.conn.execute("DELETE FROM buckets WHERE id = ?", (bid,))


def bucket_usage(conn: sqlite3.Connection, name: str) -> tuple[int, int]:
    bid, _ = bucket_ref(conn, name)
    row = conn.execute(
        "SELECT count(*), coalesce(sum(size), 0) FROM latest WHERE bucket_id = ?", (bid,)
    ).fetchone()
    return int(row[0]), int(row[1])


# --- version rows ---------------------------------------------------------------------
def newest_row(conn: sqlite3.Connection, bid: int, kb: bytes) -> Row | None:
    return conn.execute(
        f"SELECT {VERSION_COLS}, has_shards FROM versions WHERE bucket_id = ? AND key = ? "
        "ORDER BY seq DESC LIMIT 1",
        (bid, kb),
    ).fetchone()


def _find_row(conn: sqlite3.Connection, bid: int, kb: bytes, version_id: str) -> Row | None:
    if version_id == NULL_VERSION:
        return conn.execute(
            f"SELECT {VERSION_COLS}, has_shards FROM versions "
            "WHERE bucket_id = ? AND key = ? AND version_id = 'null'",
            (bid, kb),
        ).fetchone()
    seq = seq_of_version_id(version_id)
    if seq is None:
        return None
    return conn.execute(
        f"SELECT {VERSION_COLS}, has_shards FROM versions "
        "WHERE bucket_id = ? AND key = ? AND seq = ? AND version_id = ?",
        (bid, kb, seq, version_id),
    ).fetchone()


def _refresh_latest(conn: sqlite3.Connection, bid: int, kb: bytes) -> None:
    row = conn.execute(
        "SELECT seq, is_delete_marker, size FROM versions WHERE bucket_id = ? AND key = ? "
        "ORDER BY seq DESC LIMIT 1",
        (bid, kb),
    ).fetchone()
    if row is None or row[1]:
        conn.execute("DELETE FROM latest WHERE bucket_id = ? AND key = ?", (bid, kb))
    else:
        conn.execute("INSERT OR REPLACE INTO latest VALUES (?, ?, ?, ?)", (bid, kb, row[0], row[2]))


def _drop_row(tx: WriteTx, bucket: str, bid: int, row: Row, is_latest: bool) -> ObjectVersion:
    """Deletes one version row and queues its shards; the caller refreshes `latest`."""
    tx.conn.execute(
        "DELETE FROM versions WHERE bucket_id = ? AND key = ? AND seq = ?", (bid, row[0], row[1])
    )
    gone = decode_version(bucket, row, is_latest)
    if row[12]:
        # Readers that opened this version may still be streaming it.
        queue_refs(
            tx.conn,
            [ShardRef(gone.object_id, gone.partition, gone.epoch, gone.k + gone.m)],
            not_before=time.time() + REMOVED_VERSION_GRACE_S,
        )
    return gone


def install(
    tx: WriteTx, bid: int, versioning: str, version: ObjectVersion
) -> CommitResult:
    """Adds `version` as the newest of its key; replaces the null version unless the
    bucket is Enabled. Conditions are the caller's business."""
    kb = key_bytes(version.key)
    if has_shards(version):
        check_epoch(tx.conn, version.epoch)
    replaced: list[ObjectVersion] = []
    if versioning == "Enabled":
        seq = tx.next_seq()
        version_id = new_version_id(seq)
    else:
        old = _find_row(tx.conn, bid, kb, NULL_VERSION)
        if old is not None:
            replaced.append(_drop_row(tx, version.bucket, bid, old, False))
        seq = tx.next_seq()
        version_id = NULL_VERSION
    tx.conn.execute(INSERT_VERSION, version_row(bid, seq, version_id, version))
    if version.is_delete_marker:
        tx.conn.execute("DELETE FROM latest WHERE bucket_id = ? AND key = ?", (bid, kb))
    else:
        tx.conn.execute(
            "INSERT OR REPLACE INTO latest VALUES (?, ?, ?, ?)", (bid, kb, seq, version.size)
        )
    # dataclasses.replace re-runs __init__ over ~25 fields; this is the hottest path.
    stored = copy.copy(version)
    object.__setattr__(stored, "version_id", version_id)
    object.__setattr__(stored, "is_latest", True)
    return CommitResult(stored, tuple(replaced))


def clear_pending(tx: WriteTx, version: ObjectVersion) -> None:
    tags = {p.shard_tag for p in version.parts} | {""}
    tx.conn.executemany(
        "DELETE FROM pending WHERE object_id = ? AND shard_tag = ?",
        [(version.object_id, t) for t in tags],
    )


def commit_version(
    tx: WriteTx, version: ObjectVersion, if_match: str | None, if_none_match: str | None
) -> CommitResult:
    bid, versioning = bucket_ref(tx.conn, version.bucket)
    if if_match is not None or if_none_match is not None:
        check_conditions(newest_row(tx.conn, bid, key_bytes(version.key)), if_match, if_none_match)
    result = install(tx, bid, versioning, version)
    clear_pending(tx, version)
    return result


# --- pending writes -------------------------------------------------------------------
def begin_write(tx: WriteTx, p: PendingWrite) -> None:
    check_epoch(tx.conn, p.epoch)
    tx.conn.execute(
        "INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (p.object_id, p.shard_tag or "", p.bucket, p.key, p.partition, p.epoch, p.width,
         p.started),
    )


def abort_write(tx: WriteTx, p: PendingWrite) -> None:
    tx.conn.execute(
        "DELETE FROM pending WHERE object_id = ? AND shard_tag = ?",
        (p.object_id, p.shard_tag or ""),
    )
    queue_refs(tx.conn, [ShardRef(p.object_id, p.partition, p.epoch, p.width, p.shard_tag)])


def stale_writes(conn: sqlite3.Connection, started_before: float) -> list[PendingWrite]:
    rows = conn.execute(
        "SELECT object_id, shard_tag, bucket, key, partition, epoch, width, started "
        "FROM pending WHERE started < ? ORDER BY started",
        (started_before,),
    )
    return [PendingWrite(r[0], r[1] or None, *r[2:]) for r in rows]


# --- reading, tagging, deleting ---------------------------------------------------------
def _is_newest(conn: sqlite3.Connection, bid: int, row: Row) -> bool:
    newest = conn.execute(
        "SELECT seq FROM versions WHERE bucket_id = ? AND key = ? ORDER BY seq DESC LIMIT 1",
        (bid, row[0]),
    ).fetchone()
    return bool(newest[0] == row[1])


def _resolve(conn: sqlite3.Connection, bucket: str, key: str, version_id: str | None) -> Row:
    """The row get_version names, with `is_latest` appended. Raises as get_version."""
    bid, _ = bucket_ref(conn, bucket)
    kb = key_bytes(key)
    if version_id is None:
        row = newest_row(conn, bid, kb)
        if row is None:
            raise ObjectNotFound(f"{bucket}/{key}")
        if row[4]:
            raise ObjectNotFound(f"{bucket}/{key}", delete_marker=True, version_id=row[2])
        return (*row, True)
    row = _find_row(conn, bid, kb, version_id)
    if row is None:
        raise VersionNotFound(f"{bucket}/{key}?versionId={version_id}")
    return (*row, _is_newest(conn, bid, row))


def get_version(
    conn: sqlite3.Connection, bucket: str, key: str, version_id: str | None
) -> ObjectVersion:
    row = _resolve(conn, bucket, key, version_id)
    return decode_version(bucket, row, row[-1])


def update_version(
    tx: WriteTx, bucket: str, key: str, version_id: str | None, tags: dict[str, str] | None,
    headers: dict[str, str] | None = None,
) -> ObjectVersion:
    row = _resolve(tx.conn, bucket, key, version_id)
    current = decode_version(bucket, row, row[-1])
    if current.is_delete_marker:
        raise ObjectNotFound(f"{bucket}/{key}", delete_marker=True, version_id=current.version_id)
    if tags is not None:
        current = dataclasses.replace(current, tags=dict(tags))
    if headers is not None:
        current = dataclasses.replace(current, headers=dict(headers))
    bid, _ = bucket_ref(tx.conn, bucket)
    tx.conn.execute(
        "UPDATE versions SET doc = ? WHERE bucket_id = ? AND key = ? AND seq = ?",
        (version_doc(current), bid, row[0], row[1]),
    )
    return current


def _delete_marker(bucket: str, key: str) -> ObjectVersion:
    return ObjectVersion(
        bucket=bucket, key=key, version_id="", object_id="", size=0, etag="",
        last_modified=time.time(), is_delete_marker=True,
    )


def delete_object(
    tx: WriteTx, bucket: str, key: str, version_id: str | None, if_match: str | None,
    refuse: Callable[[ObjectVersion], bool] | None = None,
) -> DeleteResult:
    """Unversioned buckets answer version_id "" (there is no version to name)."""
    bid, versioning = bucket_ref(tx.conn, bucket)
    kb = key_bytes(key)
    if version_id is None:
        check_conditions(newest_row(tx.conn, bid, kb), if_match, None)
        if versioning:
            marker = install(tx, bid, versioning, _delete_marker(bucket, key)).version
            return DeleteResult(marker.version_id, True)
        old = _find_row(tx.conn, bid, kb, NULL_VERSION)
        if old is not None:
            _drop_row(tx, bucket, bid, old, True)
            _refresh_latest(tx.conn, bid, kb)
        return DeleteResult("", False)
    row = _find_row(tx.conn, bid, kb, version_id)
    if row is None:
        if if_match is not None:
            raise PreconditionFailed("If-Match: no such version")
        return DeleteResult(version_id, False)
    check_conditions(row, if_match, None)
    if refuse is not None and refuse(decode_version(bucket, row, False)):
        raise VersionProtected(f"version {version_id} of {key!r} is protected")
    _drop_row(tx, bucket, bid, row, False)
    _refresh_latest(tx.conn, bid, kb)
    return DeleteResult(version_id, bool(row[4]))


# --- bulk loading (imports and benchmarks) ----------------------------------------------
def load_versions(tx: WriteTx, versions: list[ObjectVersion]) -> int:
    """Inserts many versions of keys that have no version yet, with executemany.

    For imports and benchmarks only: no conditions, no null-version replacement,
    no pending writes cleared. Returns how many rows went in."""
    refs: dict[str, tuple[int, str]] = {}
    rows, latest = [], []
    for v in versions:
        if v.bucket not in refs:
            refs[v.bucket] = bucket_ref(tx.conn, v.bucket)
        bid, versioning = refs[v.bucket]
        seq = tx.next_seq()
        vid = new_version_id(seq) if versioning == "Enabled" else NULL_VERSION
        row = version_row(bid, seq, vid, v)
        rows.append(row)
        if not v.is_delete_marker:
            latest.append((bid, row[1], seq, v.size))
    tx.conn.executemany(INSERT_VERSION, rows)
    tx.conn.executemany("INSERT OR REPLACE INTO latest VALUES (?, ?, ?, ?)", latest)
    return len(rows)
