"""The work queues of the SQLite backend: shards to collect, shards to heal.

Rules:
- `queue_refs` is called inside the transaction that orphaned the shards (commit,
  delete, abort, part replacement), so a crash can never lose a ShardRef.
- Taking items does not remove them: a worker removes them with done_* after the
  work is done, so a crash mid-work leaves them queued (collecting is idempotent).
- The heal queue keeps one item per (object id, shard tag, block index).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from kurastore.metadata._records import HealItem, ShardRef
from kurastore.metadata._sqlite import WriteTx


def queue_refs(conn: sqlite3.Connection, refs: Sequence[ShardRef], not_before: float = 0.0) -> None:
    if refs:
        conn.executemany(
            "INSERT INTO collect (object_id, shard_tag, partition, epoch, width, not_before) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(r.object_id, r.shard_tag, r.partition, r.epoch, r.width, not_before) for r in refs],
        )


def queue_collect(tx: WriteTx, refs: Sequence[ShardRef], not_before: float) -> None:
    queue_refs(tx.conn, refs, not_before)


def take_collect(conn: sqlite3.Connection, now: float, limit: int) -> list[tuple[int, ShardRef]]:
    rows = conn.execute(
        "SELECT id, object_id, partition, epoch, width, shard_tag FROM collect "
        "WHERE not_before <= ? ORDER BY not_before, id LIMIT ?",
        (now, limit),
    )
    return [(r[0], ShardRef(r[1], r[2], r[3], r[4], r[5])) for r in rows]


def done_collect(tx: WriteTx, ids: Sequence[int]) -> None:
    tx.conn.executemany("DELETE FROM collect WHERE id = ?", [(i,) for i in ids])


def queue_heal(tx: WriteTx, items: Sequence[HealItem]) -> None:
    tx.conn.executemany(
        "INSERT OR IGNORE INTO heal "
        "(object_id, shard_tag, idx, partition, epoch, reason, queued) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(h.object_id, h.shard_tag, h.index, h.partition, h.epoch, h.reason, h.queued)
         for h in items],
    )


def take_heal(conn: sqlite3.Connection, limit: int) -> list[tuple[int, HealItem]]:
    rows = conn.execute(
        "SELECT id, object_id, shard_tag, idx, partition, epoch, reason, queued FROM heal "
        "ORDER BY id LIMIT ?",
        (limit,),
    )
    return [(r[0], HealItem(*r[1:])) for r in rows]


def done_heal(tx: WriteTx, ids: Sequence[int]) -> None:
    tx.conn.executemany("DELETE FROM heal WHERE id = ?", [(i,) for i in ids])


def heal_queue_length(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM heal").fetchone()[0])
