"""S3 listings on PostgreSQL: objects, versions, multipart uploads.

The rules are S3's and the SQLite backend's (see _sqlite_listing.py): UTF-8 byte
order, common prefixes ending at the first delimiter after the prefix, exclusive
markers, a common prefix shown only if it sorts after the marker, max_keys counting
entries and prefixes alike, is_truncated exactly when one more item exists.

How a page is read, in one round trip either way:
- Without a delimiter: one range scan of the ordered index, `key >= lo AND
  key < prefix || '\\xff'`, LIMIT max_keys + 1 (index-only on `latest`, whose
  primary key index carries seq), then one versions_key probe per entry.
- With a delimiter, objects: the server's ks_walk_latest (_postgres_schema.py)
  scans runs of plain keys in one index-only scan and seeks past each common
  prefix (`prefix || '\\xff'`): a page of 1000 common prefixes is 1000 index
  seeks, whatever the number of keys beneath them.
- With a delimiter, versions and uploads: a skip-scan in a recursive query. Each
  step seeks the index once for the first key `>= successor`, where the successor
  of a key outside any common prefix is `key || '\\x00'` and the successor of a
  common prefix is `prefix || '\\xff'`. The rows of the keys that are not rolled
  up are joined afterwards.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from kurastore.metadata._postgres_objects import bucket_ref
from kurastore.metadata._records import (
    ListPage,
    ObjectVersion,
    UploadRecord,
    UploadsPage,
    VersionPage,
)
from kurastore.metadata._sqlite_rows import UPLOAD_COLS, VERSION_COLS, decode_upload, decode_version
from kurastore.metadata._sqlite_rows import key_bytes as _kb

Conn = asyncpg.Connection
Row = Any
_TOP = b"\xff"

# The version columns with the key taken from the walk (a rolled-up row has no version).
_V = ", ".join(("w.key" if c.strip() == "key" else "v." + c.strip())
               for c in VERSION_COLS.split(","))
_U = ", ".join(("w.key" if c.strip() == "key" else "u." + c.strip())
               for c in UPLOAD_COLS.split(","))


def _walk(table: str) -> str:
    """The skip-scan over `table`'s (bucket_id, key) index: $1 bucket id, $2 lowest key,
    $3 key upper bound, $4 prefix length, $5 delimiter, $6 most keys to visit.
    Yields w(key, cp): cp is the key's common prefix, or NULL when not rolled up."""
    probe = (f"SELECT t.key FROM {table} t WHERE t.bucket_id = $1 AND t.key >= {{lo}} "
             "AND t.key < $3 ORDER BY t.key LIMIT 1")
    return (
        "WITH RECURSIVE w(key, cp) AS ("
        f" SELECT f.key, ks_common_prefix(f.key, $4, $5) FROM ({probe.format(lo='$2')}) f"
        " UNION ALL"
        " SELECT n.key, ks_common_prefix(n.key, $4, $5) FROM w, LATERAL ("
        + probe.format(lo="coalesce(w.cp || '\\xff'::bytea, w.key || '\\x00'::bytea)")
        + ") n)"
    )


_OBJECTS_FLAT = (
    f"SELECT {_V}, NULL::bytea FROM (SELECT l.key, l.seq FROM latest l WHERE l.bucket_id = $1 "
    "AND l.key >= $2 AND l.key < $3 ORDER BY l.key LIMIT $4) w "
    "JOIN versions v ON v.bucket_id = $1 AND v.key = w.key AND v.seq = w.seq ORDER BY w.key"
)
_OBJECTS_WALK = (
    "SELECT " + _V.replace("w.key", "w.w_key") + ", w.w_cp"
    " FROM ks_walk_latest($1, $2, $3, $4, $5, $6) w"
    # A common prefix has no seq: its probe of versions_key matches nothing at once.
    " LEFT JOIN LATERAL (SELECT v.* FROM versions v WHERE v.bucket_id = $1"
    " AND v.key = w.w_key AND v.seq = w.w_seq) v ON true ORDER BY w.w_key"
)
_VERSIONS_FLAT = (
    f"SELECT {VERSION_COLS}, NULL::bytea FROM versions v WHERE v.bucket_id = $1 "
    "AND v.key >= $2 AND v.key < $3 ORDER BY v.key, v.seq DESC LIMIT $4"
)
_VERSIONS_WALK = (
    _walk("versions")
    + f" SELECT {_V}, w.cp FROM (SELECT * FROM w LIMIT $6) w"
    # NULL for a common prefix: the probe of the index matches nothing at once.
    " LEFT JOIN versions v ON v.bucket_id = $1 AND v.key = CASE WHEN w.cp IS NULL"
    " THEN w.key END"
    " ORDER BY w.key, v.seq DESC LIMIT $7"
)
_UPLOADS_FLAT = (
    f"SELECT {UPLOAD_COLS}, NULL::bytea FROM uploads u WHERE u.bucket_id = $1 "
    "AND u.key >= $2 AND u.key < $3 ORDER BY u.key, u.seq LIMIT $4"
)
_UPLOADS_WALK = (
    _walk("uploads")
    + f" SELECT {_U}, w.cp FROM (SELECT * FROM w LIMIT $6) w"
    " LEFT JOIN uploads u ON u.bucket_id = $1 AND u.key = CASE WHEN w.cp IS NULL"
    " THEN w.key END"
    " ORDER BY w.key, u.seq LIMIT $7"
)


def _bounds(prefix: str, marker: str) -> tuple[bytes, bytes, bytes, bytes]:
    """(prefix bytes, marker bytes, lowest key to read, key upper bound)."""
    pb, mb = _kb(prefix), _kb(marker)
    lo = max(pb, mb + b"\x00") if marker else pb
    return pb, mb, lo, pb + _TOP


async def _items(
    conn: Conn, flat: str, walk: str, bid: int, lo: bytes, hi: bytes, pb: bytes, db: bytes,
    after: bytes, want: int, key_at: int = 0,
) -> list[tuple[Row | None, bytes]]:
    """(row, key) for rows outside any common prefix and (None, prefix) for each
    common prefix above `after`, in S3 order; at least `want` items when that many
    exist. `key_at` is the key's column in the rows."""
    if not db:
        rows = await conn.fetch(flat, bid, lo, hi, want)
        return [(r, r[key_at]) for r in rows]
    # One extra key: the first may be the marker's own common prefix, not shown.
    rows = await conn.fetch(walk, bid, lo, hi, len(pb), db, want + 1, want + 1)
    out: list[tuple[Row | None, bytes]] = []
    for r in rows:
        cp = r[-1]
        if cp is None:
            out.append((r, r[key_at]))
        elif cp > after:
            out.append((None, bytes(cp)))
    return out


async def list_objects(
    conn: Conn, bucket: str, prefix: str, delimiter: str, start_after: str, max_keys: int
) -> ListPage:
    bid, _ = await bucket_ref(conn, bucket)
    if max_keys <= 0:
        return ListPage((), (), False)
    pb, mb, lo, hi = _bounds(prefix, start_after)
    db = _kb(delimiter)
    if db:
        rows = await conn.fetch(_OBJECTS_WALK, bid, lo, hi, len(pb), db, max_keys + 2)
        items = [(r if r[-1] is None else None, r[0] if r[-1] is None else bytes(r[-1]))
                 for r in rows if r[-1] is None or r[-1] > mb]
    else:
        rows = await conn.fetch(_OBJECTS_FLAT, bid, lo, hi, max_keys + 1)
        items = [(r, r[0]) for r in rows]
    truncated = len(items) > max_keys
    items = items[:max_keys]
    entries: list[ObjectVersion] = []
    prefixes: list[str] = []
    for row, key in items:
        if row is None:
            prefixes.append(key.decode("utf-8"))
        else:
            entries.append(decode_version(bucket, row, True))
    next_marker = items[-1][1].decode("utf-8") if truncated else ""
    return ListPage(tuple(entries), tuple(prefixes), truncated, next_marker)


async def list_versions(
    conn: Conn, bucket: str, prefix: str, delimiter: str, key_marker: str,
    version_id_marker: str, max_keys: int,
) -> VersionPage:
    bid, _ = await bucket_ref(conn, bucket)
    if max_keys <= 0:
        return VersionPage((), (), False)
    pb, mb, lo, hi = _bounds(prefix, key_marker)
    db = _kb(delimiter)
    # Older versions of the marker key come first, unless that key is rolled up.
    head: list[Row] = []
    rolled = bool(db) and mb.find(db, len(pb)) >= 0
    if key_marker and version_id_marker and mb.startswith(pb) and not rolled:
        seq = await conn.fetchval(
            "SELECT seq FROM versions WHERE bucket_id = $1 AND key = $2 AND version_id = $3",
            bid, mb, version_id_marker,
        )
        if seq is not None:
            head = await conn.fetch(
                f"SELECT {VERSION_COLS} FROM versions WHERE bucket_id = $1 AND key = $2 "
                "AND seq < $3 ORDER BY seq DESC LIMIT $4",
                bid, mb, seq, max_keys + 1,
            )
    want = max_keys + 1 - len(head)
    walked = await _items(conn, _VERSIONS_FLAT, _VERSIONS_WALK, bid, lo, hi, pb, db, mb,
                          max(want, 0)) if want > 0 else []
    items: list[tuple[Row | None, bytes, bool]] = [(r, r[0], False) for r in head]
    previous = None
    for row, key in walked:
        items.append((row, key, row is not None and key != previous))
        previous = key if row is not None else None
    truncated = len(items) > max_keys
    items = items[:max_keys]
    entries: list[ObjectVersion] = []
    prefixes: list[str] = []
    for row, key, is_latest in items:
        if row is None:
            prefixes.append(key.decode("utf-8"))
        else:
            entries.append(decode_version(bucket, row, is_latest))
    if not truncated:
        return VersionPage(tuple(entries), tuple(prefixes), False)
    last_row, last_key, _ = items[-1]
    return VersionPage(
        tuple(entries), tuple(prefixes), True, last_key.decode("utf-8"),
        last_row[2] if last_row is not None else "",
    )


async def list_uploads(
    conn: Conn, bucket: str, prefix: str, delimiter: str, key_marker: str,
    upload_id_marker: str, max_uploads: int,
) -> UploadsPage:
    bid, _ = await bucket_ref(conn, bucket)
    if max_uploads <= 0:
        return UploadsPage((), (), False)
    pb, mb, lo, hi = _bounds(prefix, key_marker)
    db = _kb(delimiter)
    head: list[Row] = []
    rolled = bool(db) and mb.find(db, len(pb)) >= 0
    if key_marker and upload_id_marker and mb.startswith(pb) and not rolled:
        seq = await conn.fetchval(
            "SELECT seq FROM uploads WHERE upload_id = $1 AND bucket_id = $2 AND key = $3",
            upload_id_marker, bid, mb,
        )
        if seq is not None:
            head = await conn.fetch(
                f"SELECT {UPLOAD_COLS} FROM uploads WHERE bucket_id = $1 AND key = $2 "
                "AND seq > $3 ORDER BY seq LIMIT $4",
                bid, mb, seq, max_uploads + 1,
            )
    want = max_uploads + 1 - len(head)
    walked = await _items(conn, _UPLOADS_FLAT, _UPLOADS_WALK, bid, lo, hi, pb, db, mb,
                          want, key_at=1) if want > 0 else []
    items: list[tuple[Row | None, bytes]] = [(r, r[1]) for r in head] + walked
    truncated = len(items) > max_uploads
    items = items[:max_uploads]
    uploads: list[UploadRecord] = []
    prefixes: list[str] = []
    for row, key in items:
        if row is None:
            prefixes.append(key.decode("utf-8"))
        else:
            uploads.append(decode_upload(bucket, row))
    if not truncated:
        return UploadsPage(tuple(uploads), tuple(prefixes), False)
    last_row, last_key = items[-1]
    return UploadsPage(
        tuple(uploads), tuple(prefixes), True, last_key.decode("utf-8"),
        last_row[0] if last_row is not None else "",
    )
