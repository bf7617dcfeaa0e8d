"""What the records pin on pods, for the healer and the scrubber (SQLite backend).

Rules:
- Read-only, one snapshot each: a part is reported once per record that names it
  (a committed version, a stored part of an upload in progress, a pending write).
- By object id: the versions_object, uploads_object and pending primary-key indexes.
  By partition: versions_pins (epoch, partition) seeked once per epoch in use,
  uploads_pins and pending_pins; never a scan of the versions table.
- Geometry (k, m, block size) and part sizes come from the version's doc or the
  upload's doc and part rows; pending writes know none of it yet (size -1).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from kurastore.metadata._records import PinnedPart
from kurastore.metadata._sqlite_admin import epochs_in_use
from kurastore.metadata._sqlite_rows import loads

Row = tuple[Any, ...]
_VERSION_COLS = "object_id, partition, epoch, last_modified, doc"
_UPLOAD_COLS = "upload_id, object_id, partition, epoch, width, doc"
_PENDING_COLS = "object_id, shard_tag, partition, epoch, width, started"


def _version_parts(row: Row) -> list[PinnedPart]:
    object_id, partition, epoch, written, doc_text = row
    doc = loads(doc_text)
    k, m, block = doc.get("k", 0), doc.get("m", 0), doc.get("block_size", 0)
    # parts are stored as [part_number, shard_tag, size, etag, (checksums)]
    return [
        PinnedPart(object_id, p[1], partition, epoch, k + m, k, m, block, p[2], "version",
                   written)
        for p in doc.get("parts", ())
    ]


def _upload_parts(conn: sqlite3.Connection, row: Row) -> list[PinnedPart]:
    upload_id, object_id, partition, epoch, width, doc_text = row
    doc = loads(doc_text)
    k, m, block = doc.get("k", 0), doc.get("m", 0), doc.get("block_size", 0)
    parts = conn.execute(
        "SELECT shard_tag, size, last_modified FROM parts WHERE upload_id = ?", (upload_id,)
    )
    return [
        PinnedPart(object_id, tag, partition, epoch, width, k, m, block, size, "upload", written)
        for tag, size, written in parts
    ]


def _pending_part(row: Row) -> PinnedPart:
    object_id, tag, partition, epoch, width, started = row
    return PinnedPart(object_id, tag, partition, epoch, width, 0, 0, 0, -1, "pending", started)


def find_parts(conn: sqlite3.Connection, object_id: str) -> list[PinnedPart]:
    found: list[PinnedPart] = []
    for row in conn.execute(
        f"SELECT {_VERSION_COLS} FROM versions WHERE object_id = ? AND has_shards = 1",
        (object_id,),
    ):
        found.extend(_version_parts(row))
    for row in conn.execute(
        f"SELECT {_UPLOAD_COLS} FROM uploads WHERE object_id = ?", (object_id,)
    ).fetchall():
        found.extend(_upload_parts(conn, row))
    found.extend(
        _pending_part(row)
        for row in conn.execute(
            f"SELECT {_PENDING_COLS} FROM pending WHERE object_id = ?", (object_id,)
        )
    )
    return sorted(found, key=lambda p: (p.kind, p.shard_tag))


def partition_parts(conn: sqlite3.Connection, partition: int) -> list[PinnedPart]:
    found: list[PinnedPart] = []
    for epoch in sorted(epochs_in_use(conn)):
        for row in conn.execute(
            f"SELECT {_VERSION_COLS} FROM versions "
            "WHERE has_shards = 1 AND epoch = ? AND partition = ?",
            (epoch, partition),
        ):
            found.extend(_version_parts(row))
    for row in conn.execute(
        f"SELECT {_UPLOAD_COLS} FROM uploads WHERE partition = ?", (partition,)
    ).fetchall():
        found.extend(_upload_parts(conn, row))
    found.extend(
        _pending_part(row)
        for row in conn.execute(
            f"SELECT {_PENDING_COLS} FROM pending WHERE partition = ?", (partition,)
        )
    )
    return sorted(found, key=lambda p: (p.epoch, p.object_id, p.shard_tag))
