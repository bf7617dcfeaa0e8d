"""Many commits (or pending writes) in one statement: the server functions the
group-commit batcher (_postgres_batch.py) sends, and their Python halves.

ks_commit_many does for each of its rows what ks_commit (_postgres_schema.py) does
for one, all in one transaction, set-based (a handful of statements whatever the
number of rows: per statement the executor's start-up costs more than a row), and
reports an outcome per row instead of raising: r_kind 0 installed (r_seq,
r_version_id), 1 a version it replaced (as ks_commit), 2 refused (r_version_id
holds the SQLSTATE ks_commit would have raised, r_etag its message).
ks_begin_write_many inserts the pending writes whose epoch is not retired and
returns the rows it refused.

Rules:
- The rows of one ks_commit_many name distinct keys (the batcher makes it so): the
  set-based statements see each key once, and a later commit of a key waits for a
  later batch, as two calls one after the other.
- Locks are taken in one global order, so two batches (or a batch and a single
  ks_commit) never wait for each other in a cycle: first the shared epoch locks of
  every row with shards, in epoch order (ks_commit too takes its epoch lock before
  its key lock), then the key locks in (bucket id, key hash) order. The statement
  that checks conditions and retired epochs and writes starts after the locks are
  held, so its snapshot sees every commit that held them before.
- A refused row changes nothing: its pending write stays, so the caller's
  abort_write queues its shards as before.
"""

from __future__ import annotations

import os
import time
from typing import Any

import asyncpg

from kurastore.metadata._postgres_objects import key_hash
from kurastore.metadata._records import CommitResult, ObjectVersion, PendingWrite
from kurastore.metadata._sqlite_rows import decode_version, has_shards, key_bytes, version_doc
from kurastore.metadata._store import REMOVED_VERSION_GRACE_S
from kurastore.metadata.errors import (
    BucketNotFound,
    EpochRetired,
    MetadataError,
    PreconditionFailed,
)

Conn = asyncpg.Connection
_REFUSED = {"KSB01": BucketNotFound, "KSP01": PreconditionFailed, "KSE01": EpochRetired}

# Released in schema version 4 (_postgres_schema.MIGRATIONS): change these only
# through a new migration step (CREATE OR REPLACE FUNCTION, new types), never here.
# One array of rows per call (asyncpg checks each element of an array argument with
# a few isinstance calls against abstract classes: one row costs four, where one
# array per column cost one per column).
ROW_TYPES = (
    """CREATE TYPE ks_commit_row AS (bucket text, key bytea, hash int, if_match text,
        if_none_match bool, rand text, object_id text, dm bool, size bigint, etag text,
        lm float8, partition int, epoch int, width int, doc text, inline bytea, tags text)""",
    # tags: the shard tags whose pending writes the commit clears, or NULL. Tags are
    # [0-9a-z-]{1,40}, so one space separates them; the empty tag (a pending write
    # without one) is the empty string before the first space.
    """CREATE TYPE ks_pending_row AS (object_id text, tag text, bucket text, key text,
        partition int, epoch int, width int, started float8)""",
)
COMMIT_MANY_FN = r"""
CREATE OR REPLACE FUNCTION ks_commit_many(p_rows ks_commit_row[], p_grace_until float8)
RETURNS TABLE (r_row int, r_kind int, r_key bytea, r_seq bigint, r_version_id text,
    r_object_id text, r_dm bool, r_size bigint, r_etag text, r_lm float8,
    r_partition int, r_epoch int, r_doc text, r_inline bytea)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    -- The buckets' rows first (FOR KEY SHARE: commits do not block each other, but a
    -- delete_bucket holding FOR UPDATE makes us wait, and we then see it gone).
    PERFORM FROM buckets b WHERE b.name IN (SELECT t.bucket FROM unnest(p_rows) AS t)
        ORDER BY b.id FOR KEY SHARE;
    -- The locks, in one global order: the epochs' (shared) in epoch order, then the
    -- keys' in (bucket id, key hash) order. A volatile function in the select list
    -- runs on rows as they leave the sort below it; Append runs its parts in order.
    PERFORM FROM (
        SELECT pg_advisory_xact_lock_shared(-1, x.epoch)::text FROM (
            SELECT DISTINCT t.epoch FROM unnest(p_rows) AS t
            WHERE NOT t.dm AND t.inline IS NULL ORDER BY 1 OFFSET 0) x
        UNION ALL
        SELECT pg_advisory_xact_lock(s.bid, s.h)::text FROM (
            SELECT b.id AS bid, t.hash AS h FROM unnest(p_rows) AS t
            JOIN buckets b ON b.name = t.bucket ORDER BY 1, 2 OFFSET 0) s) locks;
    -- A statement takes its snapshot when it starts: this one sees every commit that
    -- held one of these locks before us, and every epoch retired before we got its.
    RETURN QUERY
    WITH retired AS (
        SELECT coalesce(array_agg(m.epoch), '{}') AS epochs FROM placement_maps m
        WHERE m.retired AND m.epoch IN (SELECT t.epoch FROM unnest(p_rows) AS t)),
    arg AS (
        SELECT t.*, NOT t.dm AND t.inline IS NULL AS has_shards, b.id AS bid,
            b.versioning AS ver, r.epochs AS retired_epochs
        FROM unnest(p_rows) WITH ORDINALITY AS t CROSS JOIN retired r
        LEFT JOIN buckets b ON b.name = t.bucket),
    checked AS (
        SELECT a.*, CASE
            WHEN a.bid IS NULL THEN 'KSB01'
            WHEN a.has_shards AND a.epoch = ANY(a.retired_epochs) THEN 'KSE01'
            WHEN a.if_none_match AND c.live THEN 'KSP01'
            WHEN a.if_match IS NOT NULL AND (NOT coalesce(c.live, false)
                OR (a.if_match <> '*' AND c.etag <> a.if_match)) THEN 'KSP01'
            END AS refused
        FROM arg a LEFT JOIN LATERAL (
            SELECT NOT v.is_delete_marker AS live, v.etag FROM versions v
            WHERE (a.if_match IS NOT NULL OR a.if_none_match)
                AND v.bucket_id = a.bid AND v.key = a.key
            ORDER BY v.seq DESC LIMIT 1) c ON true),
    ok AS (
        SELECT x.*, CASE WHEN x.ver = 'Enabled' THEN lpad(to_hex(-1 - x.seq), 16, '0') || x.rand
            ELSE 'null' END AS vid
        FROM (SELECT c.*, nextval('ks_seq') AS seq FROM checked c
            WHERE c.refused IS NULL ORDER BY c.ordinality) x),
    del AS (
        DELETE FROM versions v USING ok
        WHERE ok.ver <> 'Enabled' AND v.bucket_id = ok.bid AND v.key = ok.key
            AND v.version_id = 'null'
        RETURNING ok.ordinality, v.*),
    col AS (
        INSERT INTO collect (object_id, shard_tag, partition, epoch, width, not_before)
        SELECT d.object_id, NULL, d.partition, d.epoch, d.width, p_grace_until FROM del d
        WHERE d.has_shards),
    ins AS (
        INSERT INTO versions SELECT ok.bid, ok.key, ok.seq, ok.vid, ok.object_id, ok.dm,
            ok.size, ok.etag, ok.lm, ok.partition, ok.epoch, ok.has_shards, ok.width, ok.doc,
            ok.inline FROM ok),
    up AS (
        INSERT INTO latest AS l SELECT ok.bid, ok.key, ok.seq, ok.size FROM ok WHERE NOT ok.dm
        ON CONFLICT (bucket_id, key) DO UPDATE SET seq = EXCLUDED.seq, size = EXCLUDED.size),
    gone AS (
        DELETE FROM latest l USING ok WHERE ok.dm AND l.bucket_id = ok.bid AND l.key = ok.key),
    pend AS (
        DELETE FROM pending p USING ok WHERE ok.tags IS NOT NULL
            AND p.object_id = ok.object_id
            AND p.shard_tag = ANY(regexp_split_to_array(ok.tags, ' ')))
    SELECT ok.ordinality::int, 0, NULL::bytea, ok.seq, ok.vid, NULL::text, NULL::bool,
        NULL::bigint, NULL::text, NULL::float8, NULL::int, NULL::int, NULL::text, NULL::bytea
    FROM ok
    UNION ALL
    SELECT d.ordinality::int, 1, d.key, d.seq, d.version_id, d.object_id, d.is_delete_marker,
        d.size, d.etag, d.last_modified, d.partition, d.epoch, d.doc, d.inline FROM del d
    UNION ALL
    SELECT c.ordinality::int, 2, NULL, NULL, c.refused, NULL, NULL, NULL,
        CASE c.refused WHEN 'KSB01' THEN c.bucket
            WHEN 'KSE01' THEN 'placement epoch ' || c.epoch || ' is retired'
            WHEN 'KSP01' THEN CASE WHEN c.if_none_match
                THEN 'If-None-Match: the object exists'
                ELSE 'If-Match: the ETag does not match' END END,
        NULL, NULL, NULL, NULL, NULL FROM checked c WHERE c.refused IS NOT NULL;
END
$$"""

# As ks_begin_write (no WAL flush waited for: see _postgres_schema.py), for many.
BEGIN_WRITE_MANY_FN = r"""
CREATE OR REPLACE FUNCTION ks_begin_write_many(p_rows ks_pending_row[]) RETURNS SETOF int
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    PERFORM FROM (
        SELECT set_config('synchronous_commit', 'off', true)
        UNION ALL
        SELECT pg_advisory_xact_lock_shared(-1, x.epoch)::text FROM (
            SELECT DISTINCT t.epoch FROM unnest(p_rows) AS t ORDER BY 1 OFFSET 0) x) locks;
    RETURN QUERY
    WITH retired AS (
        SELECT coalesce(array_agg(m.epoch), '{}') AS epochs FROM placement_maps m
        WHERE m.retired AND m.epoch IN (SELECT t.epoch FROM unnest(p_rows) AS t)),
    ins AS (
        -- The last of two rows for one pending write wins, as two calls would leave it.
        INSERT INTO pending AS p
        SELECT DISTINCT ON (t.object_id, t.tag) t.object_id, t.tag, t.bucket, t.key,
            t.partition, t.epoch, t.width, t.started
        FROM unnest(p_rows) WITH ORDINALITY AS t, retired r
        WHERE NOT t.epoch = ANY(r.epochs) ORDER BY t.object_id, t.tag, t.ordinality DESC
        ON CONFLICT (object_id, shard_tag) DO UPDATE SET bucket = EXCLUDED.bucket,
        key = EXCLUDED.key, partition = EXCLUDED.partition, epoch = EXCLUDED.epoch,
        width = EXCLUDED.width, started = EXCLUDED.started)
    SELECT t.ordinality::int FROM unnest(p_rows) WITH ORDINALITY AS t, retired r
    WHERE t.epoch = ANY(r.epochs);
END
$$"""


def revise(sql: str, *changes: tuple[str, str]) -> str:
    """A released statement with each (old, new) change made: the next version of a
    server function, built from the released text so the two differ only there.
    Each `old` must occur exactly once."""
    for old, new in changes:
        if sql.count(old) != 1:
            raise ValueError(f"revise: {old!r} occurs {sql.count(old)} times")
        sql = sql.replace(old, new)
    return sql


# Schema 6: If-None-Match may name an etag, so the row's if_none_match is text: NULL
# none, '*' no current version may exist, an etag: the current version (if any) must
# not have it. New names rather than altered ones: a gateway still running the schema-5
# code keeps calling ks_commit_many with its bool rows while the others are upgraded.
COMMIT_ROW_V6 = revise(
    ROW_TYPES[0],
    ("CREATE TYPE ks_commit_row AS", "CREATE TYPE ks_commit_row_v6 AS"),
    ("if_none_match bool,", "if_none_match text,"),
)
COMMIT_MANY_FN_V6 = revise(
    COMMIT_MANY_FN,
    ("FUNCTION ks_commit_many(p_rows ks_commit_row[],",
     "FUNCTION ks_commit_many_v6(p_rows ks_commit_row_v6[],"),
    ("            WHEN a.if_none_match AND c.live THEN 'KSP01'\n",
     "            WHEN c.live AND (a.if_none_match = '*' OR c.etag = a.if_none_match)\n"
     "                THEN 'KSP01'\n"),
    ("WHERE (a.if_match IS NOT NULL OR a.if_none_match)",
     "WHERE (a.if_match IS NOT NULL OR a.if_none_match IS NOT NULL)"),
    ("WHEN 'KSP01' THEN CASE WHEN c.if_none_match\n",
     "WHEN 'KSP01' THEN CASE WHEN c.if_none_match IS NOT NULL\n"),
)

_COMMIT_MANY_SQL = "SELECT * FROM ks_commit_many_v6($1, $2)"
_BEGIN_WRITE_MANY_SQL = "SELECT ks_begin_write_many($1)"


# A commit as the batcher carries it: (version, if_match, if_none_match).
CommitItem = tuple[ObjectVersion, "str | None", "str | None"]


async def commit_many(conn: Conn, items: list[CommitItem]) -> list[Any]:
    """ks_commit_many: per item a CommitResult, or the error that item alone raised.
    The items' keys must be distinct (the batcher's `key`)."""
    rows = []
    for version, if_match, if_none_match in items:
        kb = key_bytes(version.key)
        # Inline objects and delete markers never had a pending write to clear.
        tags = (" ".join(sorted({p.shard_tag for p in version.parts} | {""}))
                if has_shards(version) else None)
        rows.append((
            version.bucket, kb, key_hash(kb), None if if_match is None else if_match.strip('"'),
            None if if_none_match is None else if_none_match.strip('"'), os.urandom(8).hex(),
            version.object_id, version.is_delete_marker, version.size, version.etag,
            version.last_modified, version.partition, version.epoch, version.k + version.m,
            version_doc(version), version.inline, tags,
        ))
    found = await conn.fetch(_COMMIT_MANY_SQL, rows, time.time() + REMOVED_VERSION_GRACE_S)
    replaced: list[list[ObjectVersion]] = [[] for _ in items]
    outcomes: list[Any] = [None] * len(items)
    for r in found:
        n, kind = r[0] - 1, r[1]
        version = items[n][0]
        if kind == 1:
            replaced[n].append(decode_version(version.bucket, r[2:], False))
        elif kind == 0:
            # dataclasses.replace re-runs __init__ over ~25 fields, copy.copy goes through
            # __reduce_ex__: a plain copy of the fields is the cheapest on this hot path.
            stored = object.__new__(ObjectVersion)
            fields = stored.__dict__
            fields.update(version.__dict__)
            fields["version_id"] = r[4]
            fields["is_latest"] = True
            outcomes[n] = stored
        else:
            outcomes[n] = _REFUSED[r[4]](r[8])
    results: list[Any] = []
    for n, outcome in enumerate(outcomes):
        if outcome is None:
            raise MetadataError(f"ks_commit_many gave no outcome for {items[n][0].key!r}")
        results.append(CommitResult(outcome, tuple(replaced[n]))
                       if isinstance(outcome, ObjectVersion) else outcome)
    return results


async def begin_write_many(conn: Conn, items: list[PendingWrite]) -> list[Any]:
    """ks_begin_write_many: per item None, or EpochRetired."""
    refused = await conn.fetch(_BEGIN_WRITE_MANY_SQL, [
        (p.object_id, p.shard_tag or "", p.bucket, p.key, p.partition, p.epoch, p.width,
         p.started) for p in items])
    outcomes: list[Any] = [None] * len(items)
    for (n,) in refused:
        outcomes[n - 1] = EpochRetired(f"placement epoch {items[n - 1].epoch} is retired")
    return outcomes


__all__ = ["BEGIN_WRITE_MANY_FN", "COMMIT_MANY_FN", "COMMIT_MANY_FN_V6", "COMMIT_ROW_V6",
           "ROW_TYPES", "begin_write_many", "commit_many", "revise"]
