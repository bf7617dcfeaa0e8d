"""What the records pin on pods, for the healer and the scrubber (PostgreSQL backend),
and the account settings documents.

Rules (as the SQLite backend's _sqlite_pins.py):
- Read-only, one transaction each: a part is reported once per record that names it
  (a committed version, a stored part of an upload in progress, a pending write).
- By object id: the versions_object, uploads_object and pending primary-key indexes.
  By partition: versions_pins (epoch, partition) seeked once per epoch in use,
  uploads_pins and pending_pins; never a scan of the versions table.
- Geometry (k, m, block size) and part sizes come from the version's or upload's doc
  and the part rows; pending writes know none of it yet (size -1).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from kurastore.metadata._postgres_admin import epochs_in_use
from kurastore.metadata._records import PinnedPart
from kurastore.metadata._sqlite_rows import dumps, loads
from kurastore.metadata.errors import UserNotFound

Conn = asyncpg.Connection
Row = Any
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


async def _upload_parts(conn: Conn, row: Row) -> list[PinnedPart]:
    upload_id, object_id, partition, epoch, width, doc_text = row
    doc = loads(doc_text)
    k, m, block = doc.get("k", 0), doc.get("m", 0), doc.get("block_size", 0)
    parts = await conn.fetch(
        "SELECT shard_tag, size, last_modified FROM parts WHERE upload_id = $1", upload_id
    )
    return [
        PinnedPart(object_id, tag, partition, epoch, width, k, m, block, size, "upload", written)
        for tag, size, written in parts
    ]


def _pending_part(row: Row) -> PinnedPart:
    object_id, tag, partition, epoch, width, started = row
    return PinnedPart(object_id, tag, partition, epoch, width, 0, 0, 0, -1, "pending", started)


async def find_parts(conn: Conn, object_id: str) -> list[PinnedPart]:
    found: list[PinnedPart] = []
    for row in await conn.fetch(
        f"SELECT {_VERSION_COLS} FROM versions WHERE object_id = $1 AND has_shards", object_id
    ):
        found.extend(_version_parts(row))
    for row in await conn.fetch(
        f"SELECT {_UPLOAD_COLS} FROM uploads WHERE object_id = $1", object_id
    ):
        found.extend(await _upload_parts(conn, row))
    found.extend(
        _pending_part(row)
        for row in await conn.fetch(
            f"SELECT {_PENDING_COLS} FROM pending WHERE object_id = $1", object_id
        )
    )
    return sorted(found, key=lambda p: (p.kind, p.shard_tag))


async def partition_parts(conn: Conn, partition: int) -> list[PinnedPart]:
    found: list[PinnedPart] = []
    for epoch in sorted(await epochs_in_use(conn)):
        for row in await conn.fetch(
            f"SELECT {_VERSION_COLS} FROM versions "
            "WHERE has_shards AND epoch = $1 AND partition = $2",
            epoch, partition,
        ):
            found.extend(_version_parts(row))
    for row in await conn.fetch(
        f"SELECT {_UPLOAD_COLS} FROM uploads WHERE partition = $1", partition
    ):
        found.extend(await _upload_parts(conn, row))
    found.extend(
        _pending_part(row)
        for row in await conn.fetch(
            f"SELECT {_PENDING_COLS} FROM pending WHERE partition = $1", partition
        )
    )
    return sorted(found, key=lambda p: (p.epoch, p.object_id, p.shard_tag))


# --- account settings ------------------------------------------------------------------------
async def get_account_settings(conn: Conn, user_id: str) -> dict[str, Any]:
    text = await conn.fetchval(
        "SELECT settings FROM account_settings WHERE user_id = $1", user_id
    )
    return {} if text is None else dict(loads(text))


async def put_account_settings(conn: Conn, user_id: str, settings: dict[str, Any]) -> None:
    if await conn.fetchval("SELECT 1 FROM users WHERE user_id = $1 FOR SHARE", user_id) is None:
        raise UserNotFound(user_id)
    await conn.execute(
        "INSERT INTO account_settings (user_id, settings) VALUES ($1, $2) "
        "ON CONFLICT (user_id) DO UPDATE SET settings = EXCLUDED.settings",
        user_id, dumps(settings),
    )
