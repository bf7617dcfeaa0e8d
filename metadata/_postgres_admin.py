"""Users, access keys, placement maps, pods, work queues and leases on PostgreSQL.

Rules:
- Access-key secrets arrive sealed (SecretBox) and leave sealed: no SQL error can
  carry a secret in clear.
- Placement epochs only grow. save_placement_map locks the table's newest row first,
  so two gateways publishing at once cannot both save "the next" epoch.
- Work queue items stay queued until done_* removes them (a crash mid-work repeats
  work, never loses it). Taking does not claim: the maintenance lease already
  makes one gateway the only taker, and a plain read never blocks on the rows
  another transaction is deleting (MVCC), so no FOR UPDATE SKIP LOCKED is needed.
- Leases expire on the database's clock (clock_timestamp()), never a gateway's.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import asyncpg

from kurastore.metadata._postgres_notify import notify
from kurastore.metadata._postgres_schema import EPOCH_LOCK_CLASS
from kurastore.metadata._records import HealItem, PodRecord, ShardRef, UserRecord
from kurastore.metadata._sqlite_rows import loads
from kurastore.metadata.errors import (
    AccessKeyNotFound,
    EpochRetired,
    PartitionChanged,
    PlacementMapNotFound,
    UserExists,
    UserNotFound,
)

Conn = asyncpg.Connection
Row = Any
_USER_COLS = "user_id, name, created, is_admin"
_KEY_COLS = "access_key, secret, user_id, created, enabled"
_NOW = "extract(epoch FROM clock_timestamp())"


# --- users ------------------------------------------------------------------------------
def _user(row: Row) -> UserRecord:
    return UserRecord(row[0], row[1], row[2], bool(row[3]))


async def create_user(conn: Conn, u: UserRecord) -> None:
    done = await conn.fetchval(
        f"INSERT INTO users ({_USER_COLS}) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT DO NOTHING RETURNING 1",
        u.user_id, u.name, u.created, u.is_admin,
    )
    if done is None:
        raise UserExists(u.name)


async def get_user(conn: Conn, user_id: str) -> UserRecord:
    row = await conn.fetchrow(f"SELECT {_USER_COLS} FROM users WHERE user_id = $1", user_id)
    if row is None:
        raise UserNotFound(user_id)
    return _user(row)


async def get_user_by_name(conn: Conn, name: str) -> UserRecord:
    row = await conn.fetchrow(f"SELECT {_USER_COLS} FROM users WHERE name = $1", name)
    if row is None:
        raise UserNotFound(name)
    return _user(row)


async def list_users(conn: Conn) -> list[UserRecord]:
    return [_user(r) for r in await conn.fetch(f"SELECT {_USER_COLS} FROM users ORDER BY name")]


async def delete_user(conn: Conn, user_id: str) -> None:
    if await conn.fetchval("DELETE FROM users WHERE user_id = $1 RETURNING 1", user_id) is None:
        raise UserNotFound(user_id)
    await conn.execute("DELETE FROM access_keys WHERE user_id = $1", user_id)
    await conn.execute("DELETE FROM account_settings WHERE user_id = $1", user_id)


# --- access keys (sealed secrets) ---------------------------------------------------------
async def create_access_key(
    conn: Conn, access_key: str, sealed: bytes, user_id: str, created: float, enabled: bool
) -> None:
    # FOR SHARE: a concurrent delete_user waits, so no key outlives its user.
    if await conn.fetchval("SELECT 1 FROM users WHERE user_id = $1 FOR SHARE", user_id) is None:
        raise UserNotFound(user_id)
    done = await conn.fetchval(
        f"INSERT INTO access_keys ({_KEY_COLS}) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT DO NOTHING RETURNING 1",
        access_key, sealed, user_id, created, enabled,
    )
    if done is None:
        raise ValueError(f"access key {access_key} already exists")


async def get_access_key(conn: Conn, access_key: str) -> Row:
    row = await conn.fetchrow(
        f"SELECT {_KEY_COLS} FROM access_keys WHERE access_key = $1", access_key
    )
    if row is None:
        raise AccessKeyNotFound(access_key)
    return tuple(row)


async def list_access_keys(conn: Conn, user_id: str) -> list[Row]:
    rows = await conn.fetch(
        f"SELECT {_KEY_COLS} FROM access_keys WHERE user_id = $1 ORDER BY access_key", user_id
    )
    return [tuple(r) for r in rows]


async def delete_access_key(conn: Conn, access_key: str) -> None:
    gone = await conn.fetchval(
        "DELETE FROM access_keys WHERE access_key = $1 RETURNING 1", access_key
    )
    if gone is None:
        raise AccessKeyNotFound(access_key)


# --- placement maps, pins, pods --------------------------------------------------------------
async def save_placement_map(conn: Conn, epoch: int, map_json: str) -> None:
    await conn.execute("LOCK TABLE placement_maps IN SHARE ROW EXCLUSIVE MODE")
    top = await conn.fetchval("SELECT max(epoch) FROM placement_maps")
    if top is not None and epoch <= top:
        raise ValueError(f"placement epoch {epoch} is not above the latest ({top})")
    await conn.execute(
        "INSERT INTO placement_maps (epoch, map_json) VALUES ($1, $2)", epoch, map_json
    )
    await notify(conn, "placement")


async def lock_epoch_shared(conn: Conn, epoch: int) -> None:
    """What every writer placing shards under `epoch` holds to COMMIT (see the schema's
    rules); raises EpochRetired (KSE01) if the epoch is retired."""
    # Two statements: under READ COMMITTED the check must see what committed while
    # this one waited for the lock, so it takes its snapshot after the lock is held.
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1, $2)", EPOCH_LOCK_CLASS, epoch)
    retired = await conn.fetchval("SELECT retired FROM placement_maps WHERE epoch = $1", epoch)
    if retired:
        raise EpochRetired(f"placement epoch {epoch} is retired")


async def retire_epochs(conn: Conn, below: int) -> list[int]:
    """Marks retired every epoch under `below` (never the latest) that no record pins,
    each under its epoch lock taken exclusively: a writer either pinned it already
    (and it stays) or will find the mark."""
    rows = await conn.fetch(
        "SELECT epoch FROM placement_maps WHERE epoch < $1 AND NOT retired "
        "AND epoch < (SELECT max(epoch) FROM placement_maps) ORDER BY epoch",
        below,
    )
    retired: list[int] = []
    for (epoch,) in rows:
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", EPOCH_LOCK_CLASS, epoch)
        pinned = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM versions WHERE has_shards AND epoch = $1) "
            "OR EXISTS (SELECT 1 FROM uploads WHERE epoch = $1) "
            "OR EXISTS (SELECT 1 FROM pending WHERE epoch = $1)",
            epoch,
        )
        if not pinned:
            await conn.execute("UPDATE placement_maps SET retired = true WHERE epoch = $1", epoch)
            retired.append(epoch)
    if retired:
        await notify(conn, "placement")
    return retired


async def get_placement_map(conn: Conn, epoch: int) -> str:
    text = await conn.fetchval("SELECT map_json FROM placement_maps WHERE epoch = $1", epoch)
    if text is None:
        raise PlacementMapNotFound(str(epoch))
    return str(text)


async def latest_placement_map(conn: Conn) -> tuple[int, str] | None:
    row = await conn.fetchrow(
        "SELECT epoch, map_json FROM placement_maps ORDER BY epoch DESC LIMIT 1"
    )
    return None if row is None else (int(row[0]), str(row[1]))


async def epochs_in_use(conn: Conn) -> set[int]:
    # A skip-scan of versions_pins: one index seek per distinct epoch.
    rows = await conn.fetch(
        """WITH RECURSIVE e(x) AS (
               SELECT min(epoch) FROM versions WHERE has_shards
               UNION ALL
               SELECT (SELECT min(epoch) FROM versions WHERE has_shards AND epoch > e.x)
               FROM e WHERE e.x IS NOT NULL)
           SELECT x FROM e WHERE x IS NOT NULL
           UNION SELECT epoch FROM uploads
           UNION SELECT epoch FROM pending"""
    )
    return {int(r[0]) for r in rows}


async def repin_partition(
    conn: Conn, partition: int, from_epoch: int, to_epoch: int,
    copied: Collection[tuple[str, str]] | None = None,
) -> int:
    if copied is None:
        moved = 0
        for table, cond in (("versions", "has_shards AND "), ("uploads", ""), ("pending", "")):
            status = await conn.execute(
                f"UPDATE {table} SET epoch = $1 WHERE {cond}epoch = $2 AND partition = $3",
                to_epoch, from_epoch, partition,
            )
            moved += int(status.rsplit(" ", 1)[-1])
        return moved
    # Read committed: lock the uploads first (put_part locks its upload too, so a part
    # is either seen here or recorded after the move and refused there), then check, and
    # move only the versions checked: one committed meanwhile stays for the next pass.
    uploads = await conn.fetch(
        "SELECT upload_id, object_id FROM uploads WHERE epoch = $1 AND partition = $2 "
        "FOR UPDATE", from_epoch, partition,
    )
    held: list[tuple[str, str | None]] = []
    for upload_id, object_id in uploads:
        tags = await conn.fetch("SELECT shard_tag FROM parts WHERE upload_id = $1", upload_id)
        held.extend((object_id, r[0]) for r in tags)
    versions = await conn.fetch(
        "SELECT object_id, doc FROM versions WHERE has_shards AND epoch = $1 AND partition = $2",
        from_epoch, partition,
    )
    for object_id, doc in versions:
        held.extend((object_id, p[1]) for p in loads(doc).get("parts", ()))
    if await conn.fetchval("SELECT 1 FROM pending WHERE epoch = $1 AND partition = $2 LIMIT 1",
                           from_epoch, partition):
        held.append(("", None))
    if not set(held) <= set(copied):
        raise PartitionChanged(
            f"partition {partition} changed at epoch {from_epoch} since it was copied"
        )
    status = await conn.execute(
        "UPDATE versions SET epoch = $1 WHERE has_shards AND epoch = $2 AND partition = $3 "
        "AND object_id = ANY($4::text[])",
        to_epoch, from_epoch, partition, [r[0] for r in versions],
    )
    moved = int(status.rsplit(" ", 1)[-1])
    status = await conn.execute(
        "UPDATE uploads SET epoch = $1 WHERE upload_id = ANY($2::text[])",
        to_epoch, [r[0] for r in uploads],
    )
    return moved + int(status.rsplit(" ", 1)[-1])


async def put_pod(conn: Conn, p: PodRecord) -> None:
    await conn.execute(
        "INSERT INTO pods VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pod_id) DO UPDATE SET "
        "url = EXCLUDED.url, zone = EXCLUDED.zone, node = EXCLUDED.node, "
        "weight = EXCLUDED.weight, state = EXCLUDED.state",
        p.pod_id, p.url, p.zone, p.node, p.weight, p.state,
    )
    await notify(conn, "pods")


async def list_pods(conn: Conn) -> list[PodRecord]:
    rows = await conn.fetch(
        "SELECT pod_id, url, zone, node, weight, state FROM pods ORDER BY pod_id"
    )
    return [PodRecord(*r) for r in rows]


# --- work queues ----------------------------------------------------------------------------
async def queue_collect(conn: Conn, refs: Sequence[ShardRef], not_before: float) -> None:
    if refs:
        await conn.execute(
            "INSERT INTO collect (object_id, shard_tag, partition, epoch, width, not_before) "
            "SELECT o, t, p, e, w, $6 FROM unnest($1::text[], $2::text[], $3::int[], "
            "$4::int[], $5::int[]) WITH ORDINALITY AS r(o, t, p, e, w, n) ORDER BY n",
            [r.object_id for r in refs], [r.shard_tag for r in refs],
            [r.partition for r in refs], [r.epoch for r in refs], [r.width for r in refs],
            not_before,
        )


async def take_collect(conn: Conn, now: float, limit: int) -> list[tuple[int, ShardRef]]:
    rows = await conn.fetch(
        "SELECT id, object_id, partition, epoch, width, shard_tag FROM collect "
        "WHERE not_before <= $1 ORDER BY not_before, id LIMIT $2",
        now, limit,
    )
    return [(r[0], ShardRef(r[1], r[2], r[3], r[4], r[5])) for r in rows]


async def done_collect(conn: Conn, ids: Sequence[int]) -> None:
    await conn.execute("DELETE FROM collect WHERE id = ANY($1::bigint[])", list(ids))


async def queue_heal(conn: Conn, items: Sequence[HealItem]) -> None:
    if items:
        await conn.execute(
            "INSERT INTO heal (object_id, shard_tag, idx, partition, epoch, reason, queued) "
            "SELECT o, t, i, p, e, r, q FROM unnest($1::text[], $2::text[], $3::int[], "
            "$4::int[], $5::int[], $6::text[], $7::float8[]) WITH ORDINALITY "
            "AS x(o, t, i, p, e, r, q, n) ORDER BY n ON CONFLICT DO NOTHING",
            [h.object_id for h in items], [h.shard_tag for h in items],
            [h.index for h in items], [h.partition for h in items], [h.epoch for h in items],
            [h.reason for h in items], [h.queued for h in items],
        )


async def take_heal(conn: Conn, limit: int) -> list[tuple[int, HealItem]]:
    rows = await conn.fetch(
        "SELECT id, object_id, shard_tag, idx, partition, epoch, reason, queued FROM heal "
        "ORDER BY id LIMIT $1",
        limit,
    )
    return [(r[0], HealItem(*tuple(r)[1:])) for r in rows]


async def done_heal(conn: Conn, ids: Sequence[int]) -> None:
    await conn.execute("DELETE FROM heal WHERE id = ANY($1::bigint[])", list(ids))


async def heal_queue_length(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM heal"))


# --- leases ------------------------------------------------------------------------------------
async def try_acquire_lease(conn: Conn, name: str, holder: str, ttl_s: float) -> bool:
    """Takes or renews the lease: free, expired, or already ours. One statement, so two
    gateways racing for a free lease cannot both win (the row's unique key decides)."""
    won = await conn.fetchval(
        f"INSERT INTO leases AS l (name, holder, expires_at) VALUES ($1, $2, {_NOW} + $3) "
        "ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, "
        "expires_at = EXCLUDED.expires_at "
        f"WHERE l.holder = EXCLUDED.holder OR l.expires_at < {_NOW} RETURNING 1",
        name, holder, ttl_s,
    )
    return won is not None


async def release_lease(conn: Conn, name: str, holder: str) -> None:
    await conn.execute("DELETE FROM leases WHERE name = $1 AND holder = $2", name, holder)
