"""S3 listings served from the ordered indexes: objects, versions, multipart uploads.

Rules (S3's, as the in-memory model of the tests states them):
- Keys order by UTF-8 bytes; only keys starting with `prefix` are seen.
- With a delimiter, a key containing it after the prefix is rolled up into the
  common prefix ending at its first occurrence; each common prefix counts once
  toward max_keys, like an entry.
- A marker (start_after, key_marker) is exclusive, and a common prefix is returned
  only if it sorts after the marker: so passing next_marker back never repeats the
  common prefix that ended the previous page.
- Rolling up never scans the keys under a common prefix: the walk seeks to
  `common_prefix || x'ff'` (above every key starting with it) with one index seek.
- is_truncated is true exactly when one more entry or common prefix exists.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from kurastore.metadata._records import (
    ListPage,
    ObjectVersion,
    UploadRecord,
    UploadsPage,
    VersionPage,
)
from kurastore.metadata._sqlite_objects import bucket_ref
from kurastore.metadata._sqlite_rows import UPLOAD_COLS as _UCOLS
from kurastore.metadata._sqlite_rows import (
    VERSION_COLS,
    decode_upload,
    decode_version,
    key_bytes,
)

Row = tuple[Any, ...]
_TOP = b"\xff"  # above every UTF-8 string that does not start with 0xFF: all of them

_V = ", ".join("v." + c.strip() for c in VERSION_COLS.split(","))
_OBJECTS_SQL = (
    f"SELECT {_V} FROM latest l JOIN versions v "
    "ON v.bucket_id = l.bucket_id AND v.key = l.key AND v.seq = l.seq "
    "WHERE l.bucket_id = ? AND l.key >= ? AND l.key < ? ORDER BY l.key"
)
_VERSIONS_SQL = (
    f"SELECT {VERSION_COLS} FROM versions "
    "WHERE bucket_id = ? AND key >= ? AND key < ? ORDER BY key, seq DESC"
)
_UPLOADS_SQL = (
    f"SELECT {_UCOLS} FROM uploads WHERE bucket_id = ? AND key >= ? AND key < ? "
    "ORDER BY key, seq"
)


def _walk(
    cur: sqlite3.Cursor, sql: str, bid: int, lo: bytes, hi: bytes, pb: bytes, db: bytes,
    after: bytes, key_at: int = 0,
) -> Iterator[tuple[Row | None, bytes]]:
    """Yields (row, key) for rows outside any common prefix and (None, prefix) for
    each common prefix above `after`, in key order, from key >= lo to key < hi.
    `key_at` is the key's column in the rows of `sql`."""
    start = len(pb)
    while True:
        cur.execute(sql, (bid, lo, hi))
        for row in cur:
            key: bytes = row[key_at]
            if db:
                i = key.find(db, start)
                if i >= 0:
                    common = key[: i + len(db)]
                    lo = common + _TOP  # one seek past everything under it
                    if common > after:
                        yield None, common
                    break
            yield row, key
        else:
            return


def _bounds(prefix: str, marker: str) -> tuple[bytes, bytes, bytes, bytes]:
    """(prefix bytes, marker bytes, lowest key to read, key upper bound)."""
    pb, mb = key_bytes(prefix), key_bytes(marker)
    # The smallest key above `marker` is marker + NUL; keys below the prefix are not ours.
    lo = max(pb, mb + b"\x00") if marker else pb
    return pb, mb, lo, pb + _TOP


def list_objects(
    conn: sqlite3.Connection, bucket: str, prefix: str, delimiter: str, start_after: str,
    max_keys: int,
) -> ListPage:
    bid, _ = bucket_ref(conn, bucket)
    if max_keys <= 0:
        return ListPage((), (), False)
    pb, mb, lo, hi = _bounds(prefix, start_after)
    entries: list[ObjectVersion] = []
    prefixes: list[str] = []
    last = b""
    truncated = False
    for row, key in _walk(conn.cursor(), _OBJECTS_SQL, bid, lo, hi, pb,
                          key_bytes(delimiter), mb):
        if len(entries) + len(prefixes) == max_keys:
            truncated = True
            break
        if row is None:
            prefixes.append(key.decode("utf-8"))
        else:
            entries.append(decode_version(bucket, row, True))
        last = key
    next_marker = last.decode("utf-8") if truncated else ""
    return ListPage(tuple(entries), tuple(prefixes), truncated, next_marker)


def _marker_seq(conn: sqlite3.Connection, bid: int, kb: bytes, version_id: str) -> int | None:
    row = conn.execute(
        "SELECT seq FROM versions WHERE bucket_id = ? AND key = ? AND version_id = ?",
        (bid, kb, version_id),
    ).fetchone()
    return None if row is None else int(row[0])


def list_versions(
    conn: sqlite3.Connection, bucket: str, prefix: str, delimiter: str, key_marker: str,
    version_id_marker: str, max_keys: int,
) -> VersionPage:
    bid, _ = bucket_ref(conn, bucket)
    if max_keys <= 0:
        return VersionPage((), (), False)
    pb, mb, lo, hi = _bounds(prefix, key_marker)
    db = key_bytes(delimiter)
    entries: list[ObjectVersion] = []
    prefixes: list[str] = []
    last: tuple[bytes, str] = (b"", "")
    # Older versions of the marker key come first, unless that key is rolled up.
    head: list[Row] = []
    rolled = bool(db) and mb.find(db, len(pb)) >= 0
    if key_marker and version_id_marker and mb.startswith(pb) and not rolled:
        seq = _marker_seq(conn, bid, mb, version_id_marker)
        if seq is not None:
            head = conn.execute(
                f"SELECT {VERSION_COLS} FROM versions WHERE bucket_id = ? AND key = ? "
                "AND seq < ? ORDER BY seq DESC",
                (bid, mb, seq),
            ).fetchall()

    def items() -> Iterator[tuple[Row | None, bytes, bool]]:
        for row in head:
            yield row, row[0], False
        previous = None
        for row, key in _walk(conn.cursor(), _VERSIONS_SQL, bid, lo, hi, pb, db, mb):
            yield row, key, row is not None and key != previous
            previous = key if row is not None else None

    truncated = False
    for row, key, is_latest in items():
        if len(entries) + len(prefixes) == max_keys:
            truncated = True
            break
        if row is None:
            prefixes.append(key.decode("utf-8"))
            last = (key, "")
        else:
            entries.append(decode_version(bucket, row, is_latest))
            last = (key, row[2])
    return VersionPage(
        tuple(entries), tuple(prefixes), truncated,
        last[0].decode("utf-8") if truncated else "", last[1] if truncated else "",
    )


def list_uploads(
    conn: sqlite3.Connection, bucket: str, prefix: str, delimiter: str, key_marker: str,
    upload_id_marker: str, max_uploads: int,
) -> UploadsPage:
    bid, _ = bucket_ref(conn, bucket)
    if max_uploads <= 0:
        return UploadsPage((), (), False)
    pb, mb, lo, hi = _bounds(prefix, key_marker)
    db = key_bytes(delimiter)
    head: list[Row] = []
    rolled = bool(db) and mb.find(db, len(pb)) >= 0
    if key_marker and upload_id_marker and mb.startswith(pb) and not rolled:
        marker = conn.execute(
            "SELECT seq FROM uploads WHERE upload_id = ? AND bucket_id = ? AND key = ?",
            (upload_id_marker, bid, mb),
        ).fetchone()
        if marker is not None:
            head = conn.execute(
                f"SELECT {_UCOLS} FROM uploads WHERE bucket_id = ? AND key = ? AND seq > ? "
                "ORDER BY seq",
                (bid, mb, marker[0]),
            ).fetchall()

    def items() -> Iterator[tuple[Row | None, bytes]]:
        for row in head:
            yield row, row[1]
        yield from _walk(conn.cursor(), _UPLOADS_SQL, bid, lo, hi, pb, db, mb, key_at=1)

    uploads: list[UploadRecord] = []
    prefixes: list[str] = []
    last: tuple[bytes, str] = (b"", "")
    truncated = False
    for row, key in items():
        if len(uploads) + len(prefixes) == max_uploads:
            truncated = True
            break
        if row is None:
            prefixes.append(key.decode("utf-8"))
            last = (key, "")
        else:
            uploads.append(decode_upload(bucket, row))
            last = (key, row[0])
    return UploadsPage(
        tuple(uploads), tuple(prefixes), truncated,
        last[0].decode("utf-8") if truncated else "", last[1] if truncated else "",
    )
