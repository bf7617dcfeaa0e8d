"""The SQLite schema and its migration runner.

Rules:
- The schema only grows through MIGRATIONS: append a new (version, statements) entry,
  never edit a released one. `migrate` applies every missing step in one write
  transaction each and records it in `schema_version`, so an old database file is
  upgraded in place on open; a file newer than this code is refused.
- Object keys are BLOBs of their UTF-8 bytes: BLOB comparison is memcmp, which is
  S3's key order. Valid UTF-8 never contains byte 0xFF, so `prefix || x'ff'` is an
  upper bound of every key starting with `prefix` (the listing code relies on it).
- `versions` is clustered by (bucket, key, seq DESC): all versions of a key are
  adjacent, newest first, so the newest is one index seek away (seq grows with every
  write) and a versions listing reads the table in its own order.
- `latest` has one row per key whose newest version is not a delete marker: it is
  the index the object listing walks, kept in the same transaction as `versions`.
"""

from __future__ import annotations

import sqlite3

from kurastore.metadata.errors import MetadataError

_V1 = (
    """CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)""",
    """INSERT INTO counters (name, value) VALUES ('seq', 0)""",
    """CREATE TABLE buckets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        owner TEXT NOT NULL,
        created REAL NOT NULL,
        region TEXT NOT NULL,
        versioning TEXT NOT NULL,
        settings TEXT NOT NULL)""",
    """CREATE INDEX buckets_owner ON buckets (owner, name)""",
    # doc: JSON of the fields no query looks at (headers, user metadata, parts...).
    # has_shards: 0 for delete markers and inline objects (nothing on pods to pin).
    """CREATE TABLE versions (
        bucket_id INTEGER NOT NULL,
        key BLOB NOT NULL,
        seq INTEGER NOT NULL,
        version_id TEXT NOT NULL,
        object_id TEXT NOT NULL,
        is_delete_marker INTEGER NOT NULL,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,
        last_modified REAL NOT NULL,
        partition INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        has_shards INTEGER NOT NULL,
        doc TEXT NOT NULL,
        inline BLOB,
        PRIMARY KEY (bucket_id, key, seq DESC)) WITHOUT ROWID""",
    """CREATE INDEX versions_pins ON versions (epoch, partition) WHERE has_shards = 1""",
    """CREATE TABLE latest (
        bucket_id INTEGER NOT NULL,
        key BLOB NOT NULL,
        seq INTEGER NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (bucket_id, key)) WITHOUT ROWID""",
    """CREATE TABLE pending (
        object_id TEXT NOT NULL,
        shard_tag TEXT NOT NULL,
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        partition INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        width INTEGER NOT NULL,
        started REAL NOT NULL,
        PRIMARY KEY (object_id, shard_tag)) WITHOUT ROWID""",
    """CREATE INDEX pending_started ON pending (started)""",
    """CREATE TABLE uploads (
        upload_id TEXT PRIMARY KEY,
        bucket_id INTEGER NOT NULL,
        key BLOB NOT NULL,
        seq INTEGER NOT NULL,
        object_id TEXT NOT NULL,
        initiated REAL NOT NULL,
        partition INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        width INTEGER NOT NULL,
        doc TEXT NOT NULL)""",
    """CREATE INDEX uploads_order ON uploads (bucket_id, key, seq)""",
    """CREATE TABLE parts (
        upload_id TEXT NOT NULL,
        part_number INTEGER NOT NULL,
        shard_tag TEXT NOT NULL,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,
        checksums TEXT NOT NULL,
        last_modified REAL NOT NULL,
        PRIMARY KEY (upload_id, part_number)) WITHOUT ROWID""",
    """CREATE TABLE users (
        user_id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created REAL NOT NULL,
        is_admin INTEGER NOT NULL)""",
    """CREATE TABLE access_keys (
        access_key TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        secret BLOB NOT NULL,
        created REAL NOT NULL,
        enabled INTEGER NOT NULL)""",
    """CREATE INDEX access_keys_user ON access_keys (user_id)""",
    """CREATE TABLE placement_maps (epoch INTEGER PRIMARY KEY, map_json TEXT NOT NULL)""",
    """CREATE TABLE pods (
        pod_id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        zone TEXT NOT NULL,
        node TEXT NOT NULL,
        weight REAL NOT NULL,
        state TEXT NOT NULL)""",
    """CREATE TABLE collect (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        object_id TEXT NOT NULL,
        shard_tag TEXT,
        partition INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        width INTEGER NOT NULL,
        not_before REAL NOT NULL)""",
    """CREATE INDEX collect_due ON collect (not_before, id)""",
    """CREATE TABLE heal (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        object_id TEXT NOT NULL,
        shard_tag TEXT NOT NULL,
        idx INTEGER NOT NULL,
        partition INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        reason TEXT NOT NULL,
        queued REAL NOT NULL,
        UNIQUE (object_id, shard_tag, idx))""",
)

# The healer looks parts up by object id; the scrubber lists what each partition pins
# (versions already have versions_pins on (epoch, partition)).
_V2 = (
    """CREATE INDEX versions_object ON versions (object_id) WHERE has_shards = 1""",
    """CREATE INDEX uploads_object ON uploads (object_id)""",
    """CREATE INDEX uploads_pins ON uploads (partition, epoch)""",
    """CREATE INDEX pending_pins ON pending (partition, epoch)""",
)

# Account settings (Swift account metadata and the like), one JSON document per user.
_V3 = (
    """CREATE TABLE account_settings (
        user_id TEXT PRIMARY KEY,
        settings TEXT NOT NULL)""",
)

# Leases: the maintenance workers run where the "maintenance" lease is held.
_V4 = (
    """CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at REAL NOT NULL)""",
)

# Retired placement epochs: nothing is written under them again (Store.retire_epochs).
_V5 = (
    """ALTER TABLE placement_maps ADD COLUMN retired INTEGER NOT NULL DEFAULT 0""",
)

# (schema version reached, statements). Append only.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, _V1), (2, _V2), (3, _V3), (4, _V4), (5, _V5),
)
LATEST_VERSION = MIGRATIONS[-1][0]


def current_version(conn: sqlite3.Connection) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection) -> int:
    """Brings the database to LATEST_VERSION; returns the version found on open.

    The connection must be in autocommit mode (isolation_level=None). Each step runs
    in its own IMMEDIATE transaction, so a crash mid-upgrade leaves the last
    complete version recorded and the next open resumes from there."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = current_version(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if found > LATEST_VERSION:
        raise MetadataError(
            f"database schema version {found} is newer than this code ({LATEST_VERSION})"
        )
    for version, statements in MIGRATIONS:
        if version <= found:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            if current_version(conn) >= version:
                conn.execute("ROLLBACK")
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found
