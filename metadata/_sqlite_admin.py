"""Users, access keys, pods and placement maps of the SQLite backend.

Rules:
- Access-key secrets arrive here already sealed (SecretBox) and leave sealed: this
  module never sees a secret in clear, so no SQL error can carry one.
- Placement epochs only grow; `epochs_in_use` and `repin_partition` look only at
  records that pin shards (versions with shards, uploads, pending writes), through
  the `versions_pins` index, so neither scans the versions table.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from typing import Any

from kurastore.metadata._records import PodRecord, UserRecord
from kurastore.metadata._sqlite import WriteTx
from kurastore.metadata._sqlite_rows import loads
from kurastore.metadata.errors import (
    AccessKeyNotFound,
    EpochRetired,
    PartitionChanged,
    PlacementMapNotFound,
    UserExists,
    UserNotFound,
)

Row = tuple[Any, ...]
_USER_COLS = "user_id, name, created, is_admin"
_KEY_COLS = "access_key, secret, user_id, created, enabled"


# --- users ------------------------------------------------------------------------------
def _user(row: Row) -> UserRecord:
    return UserRecord(row[0], row[1], row[2], bool(row[3]))


def create_user(tx: WriteTx, u: UserRecord) -> None:
    try:
        tx.conn.execute(
            f"INSERT INTO users ({_USER_COLS}) VALUES (?, ?, ?, ?)",
            (u.user_id, u.name, u.created, int(u.is_admin)),
        )
    except sqlite3.IntegrityError:
        raise UserExists(u.name) from None


def get_user(conn: sqlite3.Connection, user_id: str) -> UserRecord:
    row = conn.execute(f"SELECT {_USER_COLS} FROM users WHERE user_id = ?", (user_id,)).fetchone()
    if row is None:
        raise UserNotFound(user_id)
    return _user(row)


def get_user_by_name(conn: sqlite3.Connection, name: str) -> UserRecord:
    row = conn.execute(f"SELECT {_USER_COLS} FROM users WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise UserNotFound(name)
    return _user(row)


def list_users(conn: sqlite3.Connection) -> list[UserRecord]:
    return [_user(r) for r in conn.execute(f"SELECT {_USER_COLS} FROM users ORDER BY name")]


def delete_user(tx: WriteTx, user_id: str) -> None:
    if tx.conn.execute("DELETE FROM users WHERE user_id = ?", (user_id,)).rowcount == 0:
        raise UserNotFound(user_id)
    tx.conn.execute("DELETE FROM access_keys WHERE user_id = ?", (user_id,))
    tx.conn.execute("DELETE FROM account_settings WHERE user_id = ?", (user_id,))


# --- access keys (sealed secrets) ---------------------------------------------------------
def create_access_key(
    tx: WriteTx, access_key: str, sealed: bytes, user_id: str, created: float, enabled: bool
) -> None:
    get_user(tx.conn, user_id)
    try:
        tx.conn.execute(
            f"INSERT INTO access_keys ({_KEY_COLS}) VALUES (?, ?, ?, ?, ?)",
            (access_key, sealed, user_id, created, int(enabled)),
        )
    except sqlite3.IntegrityError:
        raise ValueError(f"access key {access_key} already exists") from None


def get_access_key(conn: sqlite3.Connection, access_key: str) -> Row:
    row = conn.execute(
        f"SELECT {_KEY_COLS} FROM access_keys WHERE access_key = ?", (access_key,)
    ).fetchone()
    if row is None:
        raise AccessKeyNotFound(access_key)
    return tuple(row)


def list_access_keys(conn: sqlite3.Connection, user_id: str) -> list[Row]:
    return [
        tuple(r)
        for r in conn.execute(
            f"SELECT {_KEY_COLS} FROM access_keys WHERE user_id = ? ORDER BY access_key",
            (user_id,),
        )
    ]


def delete_access_key(tx: WriteTx, access_key: str) -> None:
    cur = tx.conn.execute("DELETE FROM access_keys WHERE access_key = ?", (access_key,))
    if cur.rowcount == 0:
        raise AccessKeyNotFound(access_key)


# --- account settings ------------------------------------------------------------------------
def get_account_settings(conn: sqlite3.Connection, user_id: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT settings FROM account_settings WHERE user_id = ?", (user_id,)
    ).fetchone()
    return {} if row is None else dict(json.loads(row[0]))


def put_account_settings(tx: WriteTx, user_id: str, settings: dict[str, Any]) -> None:
    get_user(tx.conn, user_id)
    tx.conn.execute(
        "INSERT OR REPLACE INTO account_settings (user_id, settings) VALUES (?, ?)",
        (user_id, json.dumps(settings, separators=(",", ":"))),
    )


# --- placement maps, pins, pods --------------------------------------------------------------
def save_placement_map(tx: WriteTx, epoch: int, map_json: str) -> None:
    top = tx.conn.execute("SELECT max(epoch) FROM placement_maps").fetchone()[0]
    if top is not None and epoch <= top:
        raise ValueError(f"placement epoch {epoch} is not above the latest ({top})")
    tx.conn.execute("INSERT INTO placement_maps (epoch, map_json) VALUES (?, ?)",
                    (epoch, map_json))


def check_epoch(conn: sqlite3.Connection, epoch: int) -> None:
    """Raises EpochRetired if `epoch` is retired. Writes are serialized by the one
    writer, so a check and the record it guards are atomic with respect to
    retire_epochs."""
    row = conn.execute("SELECT retired FROM placement_maps WHERE epoch = ?", (epoch,)).fetchone()
    if row is not None and row[0]:
        raise EpochRetired(f"placement epoch {epoch} is retired")


def retire_epochs(tx: WriteTx, below: int) -> list[int]:
    rows = tx.conn.execute(
        "SELECT epoch FROM placement_maps WHERE epoch < ? AND NOT retired "
        "AND epoch < (SELECT max(epoch) FROM placement_maps) ORDER BY epoch",
        (below,),
    ).fetchall()
    retired = []
    for (epoch,) in rows:
        pinned = tx.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM versions WHERE has_shards = 1 AND epoch = ?) "
            "OR EXISTS (SELECT 1 FROM uploads WHERE epoch = ?) "
            "OR EXISTS (SELECT 1 FROM pending WHERE epoch = ?)",
            (epoch, epoch, epoch),
        ).fetchone()[0]
        if not pinned:
            tx.conn.execute("UPDATE placement_maps SET retired = 1 WHERE epoch = ?", (epoch,))
            retired.append(int(epoch))
    return retired


def get_placement_map(conn: sqlite3.Connection, epoch: int) -> str:
    row = conn.execute("SELECT map_json FROM placement_maps WHERE epoch = ?", (epoch,)).fetchone()
    if row is None:
        raise PlacementMapNotFound(str(epoch))
    return str(row[0])


def latest_placement_map(conn: sqlite3.Connection) -> tuple[int, str] | None:
    row = conn.execute(
        "SELECT epoch, map_json FROM placement_maps ORDER BY epoch DESC LIMIT 1"
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def epochs_in_use(conn: sqlite3.Connection) -> set[int]:
    # Walk the distinct epochs of versions_pins with one index seek per epoch.
    rows = conn.execute(
        """WITH RECURSIVE e(x) AS (
               SELECT min(epoch) FROM versions WHERE has_shards = 1
               UNION ALL
               SELECT (SELECT min(epoch) FROM versions WHERE has_shards = 1 AND epoch > e.x)
               FROM e WHERE e.x IS NOT NULL)
           SELECT x FROM e WHERE x IS NOT NULL
           UNION SELECT epoch FROM uploads
           UNION SELECT epoch FROM pending"""
    )
    return {int(r[0]) for r in rows}


def repin_partition(
    tx: WriteTx, partition: int, from_epoch: int, to_epoch: int,
    copied: Collection[tuple[str, str]] | None = None,
) -> int:
    if copied is not None:
        # One writer: nothing can land between this check and the updates.
        held = set(pinned_at(tx.conn, partition, from_epoch))
        if any(tag is None for _oid, tag in held) or not held <= set(copied):
            raise PartitionChanged(
                f"partition {partition} changed at epoch {from_epoch} since it was copied"
            )
    moved = tx.conn.execute(
        "UPDATE versions SET epoch = ? WHERE has_shards = 1 AND epoch = ? AND partition = ?",
        (to_epoch, from_epoch, partition),
    ).rowcount
    for table in ("uploads",) if copied is not None else ("uploads", "pending"):
        moved += tx.conn.execute(
            f"UPDATE {table} SET epoch = ? WHERE epoch = ? AND partition = ?",
            (to_epoch, from_epoch, partition),
        ).rowcount
    return int(moved)


def pinned_at(conn: sqlite3.Connection, partition: int, epoch: int) -> list[tuple[str, str | None]]:
    """(object id, shard tag) of every part the records of `partition` pin at `epoch`;
    a pending write is (object id, None): what it will hold is not known yet."""
    found: list[tuple[str, str | None]] = []
    for object_id, doc in conn.execute(
        "SELECT object_id, doc FROM versions WHERE has_shards = 1 AND epoch = ? AND partition = ?",
        (epoch, partition),
    ):
        found.extend((object_id, p[1]) for p in loads(doc).get("parts", ()))
    found.extend(conn.execute(
        "SELECT u.object_id, p.shard_tag FROM uploads u JOIN parts p ON p.upload_id = u.upload_id "
        "WHERE u.epoch = ? AND u.partition = ?", (epoch, partition),
    ).fetchall())  # fmt: skip
    found.extend((r[0], None) for r in conn.execute(
        "SELECT object_id FROM pending WHERE epoch = ? AND partition = ?", (epoch, partition),
    ))  # fmt: skip
    return found


def put_pod(tx: WriteTx, p: PodRecord) -> None:
    tx.conn.execute(
        "INSERT OR REPLACE INTO pods VALUES (?, ?, ?, ?, ?, ?)",
        (p.pod_id, p.url, p.zone, p.node, p.weight, p.state),
    )


def list_pods(conn: sqlite3.Connection) -> list[PodRecord]:
    return [PodRecord(*r) for r in conn.execute("SELECT * FROM pods ORDER BY pod_id")]


# --- leases ----------------------------------------------------------------------------------
def try_acquire_lease(tx: WriteTx, name: str, holder: str, ttl_s: float, now: float) -> bool:
    """Takes or renews the lease when it is free, expired or already `holder`'s. All
    writes go through the one writer, so the check and the change are atomic."""
    row = tx.conn.execute(
        "SELECT holder, expires_at FROM leases WHERE name = ?", (name,)
    ).fetchone()
    if row is not None and row[0] != holder and row[1] >= now:
        return False
    tx.conn.execute(
        "INSERT OR REPLACE INTO leases (name, holder, expires_at) VALUES (?, ?, ?)",
        (name, holder, now + ttl_s),
    )
    return True


def release_lease(tx: WriteTx, name: str, holder: str) -> None:
    tx.conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
