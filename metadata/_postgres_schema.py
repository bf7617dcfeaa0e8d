"""The PostgreSQL schema, its server-side functions and the migration runner.

Rules:
- The schema only grows through MIGRATIONS: append a new (version, statements) entry,
  never edit a released one. `migrate` runs under a session advisory lock, so any
  number of gateways starting together migrate exactly once: the first takes the
  lock and upgrades, the others wait, then find the version already recorded in
  `schema_version` and go on. Each step is one transaction: a crash mid-upgrade
  leaves the last complete version recorded. A database newer than this code is
  refused.
- Tables live in the first schema of the connection's search_path ("public"
  unless the DSN says `?search_path=...`), so several stores can share a database.
- Keys are bytea of their UTF-8 bytes: bytea compares with memcmp, which is S3's
  key order (no collation is ever involved). Valid UTF-8 never contains byte 0xFF,
  so `prefix || '\\xff'` bounds every key starting with `prefix` from above.
- `versions` is indexed by (bucket_id, key, seq DESC): a key's versions are
  adjacent, newest first. `latest` holds one row per key whose newest version is
  not a delete marker: the index the object listing walks.
- ks_commit installs a version in one round trip: bucket lookup, the key's lock
  (pg_advisory_xact_lock(bucket id, hash of key), held to COMMIT), the
  conditions, null-version replacement with its shards queued, `latest`, and the
  pending write. It raises SQLSTATE KSB01 (no bucket) or KSP01 (precondition).
- Retired epochs (schema 2): `placement_maps.retired` marks an epoch no record pins
  any more; nothing may be written under it again. Writers placing shards under
  epoch e (ks_begin_write, ks_commit of a version with shards, create_upload) hold
  pg_advisory_xact_lock_shared(EPOCH_LOCK_CLASS, e) while they check the mark and
  write the record that pins e; retiring takes the same lock exclusively, then
  checks that no record pins e. So a write either pins e before the check (and e
  stays) or sees the mark and fails with KSE01 (EpochRetired, retryable).
- Group commit (schema 4): ks_commit_many and ks_begin_write_many do the work of
  ks_commit and ks_begin_write for many rows in one statement, with the same locks
  and checks and an outcome per row (_postgres_commits.py).
- If-None-Match with an etag (schema 6): ks_commit_v6 and ks_commit_many_v6 (rows of
  ks_commit_row_v6) take if_none_match as text, NULL, '*' or an etag; they are
  `revise`d from the released text, beside the schema-5 ones that older gateways call.
"""

from __future__ import annotations

import asyncpg

from kurastore.metadata._postgres_commits import (
    BEGIN_WRITE_MANY_FN,
    COMMIT_MANY_FN,
    COMMIT_MANY_FN_V6,
    COMMIT_ROW_V6,
    ROW_TYPES,
    revise,
)
from kurastore.metadata.errors import MetadataError

# The session advisory lock every migrating process takes (a bigint key; the per-key
# locks use the two-int4 form, a separate key space).
MIGRATION_LOCK = 0x6B75726173746F72  # "kurastor"
# The class half of the per-epoch advisory locks; bucket ids (the class half of the
# per-key locks) are positive, so the two never meet.
EPOCH_LOCK_CLASS = -1

_COMMIT_FN = r"""
CREATE FUNCTION ks_commit(
    p_bucket text, p_key bytea, p_hash int, p_if_match text, p_if_none_match bool,
    p_rand text, p_object_id text, p_dm bool, p_size bigint, p_etag text, p_lm float8,
    p_partition int, p_epoch int, p_has_shards bool, p_width int, p_doc text,
    p_inline bytea, p_tags text[], p_grace_until float8)
RETURNS TABLE (r_kind int, r_key bytea, r_seq bigint, r_version_id text,
    r_object_id text, r_dm bool, r_size bigint, r_etag text, r_lm float8,
    r_partition int, r_epoch int, r_doc text, r_inline bytea)
LANGUAGE plpgsql AS $$
DECLARE
    bid int;
    ver text;
    cur record;
    old record;
    live bool;
    s bigint;
    vid text;
BEGIN
    SELECT id, versioning INTO bid, ver FROM buckets WHERE name = p_bucket;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'KSB01', MESSAGE = p_bucket;
    END IF;
    PERFORM pg_advisory_xact_lock(bid, p_hash);
    IF p_if_match IS NOT NULL OR p_if_none_match THEN
        SELECT v.is_delete_marker, v.etag INTO cur FROM versions v
            WHERE v.bucket_id = bid AND v.key = p_key ORDER BY v.seq DESC LIMIT 1;
        live := FOUND AND NOT cur.is_delete_marker;
        IF p_if_none_match AND live THEN
            RAISE EXCEPTION USING ERRCODE = 'KSP01',
                MESSAGE = 'If-None-Match: the object exists';
        END IF;
        IF p_if_match IS NOT NULL AND (NOT live OR (p_if_match <> '*' AND cur.etag <> p_if_match))
        THEN
            RAISE EXCEPTION USING ERRCODE = 'KSP01',
                MESSAGE = 'If-Match: the ETag does not match';
        END IF;
    END IF;
    s := nextval('ks_seq');
    IF ver = 'Enabled' THEN
        vid := lpad(to_hex(-1 - s), 16, '0') || p_rand;
    ELSE
        vid := 'null';
        FOR old IN DELETE FROM versions v
                WHERE v.bucket_id = bid AND v.key = p_key AND v.version_id = 'null'
                RETURNING v.* LOOP
            IF old.has_shards THEN
                INSERT INTO collect (object_id, shard_tag, partition, epoch, width, not_before)
                    VALUES (old.object_id, NULL, old.partition, old.epoch, old.width,
                            p_grace_until);
            END IF;
            r_kind := 1; r_key := old.key; r_seq := old.seq; r_version_id := old.version_id;
            r_object_id := old.object_id; r_dm := old.is_delete_marker; r_size := old.size;
            r_etag := old.etag; r_lm := old.last_modified; r_partition := old.partition;
            r_epoch := old.epoch; r_doc := old.doc; r_inline := old.inline;
            RETURN NEXT;
        END LOOP;
    END IF;
    INSERT INTO versions VALUES (bid, p_key, s, vid, p_object_id, p_dm, p_size, p_etag, p_lm,
        p_partition, p_epoch, p_has_shards, p_width, p_doc, p_inline);
    IF p_dm THEN
        DELETE FROM latest l WHERE l.bucket_id = bid AND l.key = p_key;
    ELSE
        INSERT INTO latest AS l VALUES (bid, p_key, s, p_size)
            ON CONFLICT (bucket_id, key) DO UPDATE SET seq = EXCLUDED.seq, size = EXCLUDED.size;
    END IF;
    IF cardinality(p_tags) > 0 THEN
        DELETE FROM pending p WHERE p.object_id = p_object_id AND p.shard_tag = ANY(p_tags);
    END IF;
    r_kind := 0; r_key := p_key; r_seq := s; r_version_id := vid;
    r_object_id := NULL; r_dm := NULL; r_size := NULL; r_etag := NULL; r_lm := NULL;
    r_partition := NULL; r_epoch := NULL; r_doc := NULL; r_inline := NULL;
    RETURN NEXT;
END
$$"""

_EPOCH_GUARD = f"""
    IF p_has_shards THEN
        PERFORM pg_advisory_xact_lock_shared({EPOCH_LOCK_CLASS}, p_epoch);
        IF EXISTS (SELECT 1 FROM placement_maps m WHERE m.epoch = p_epoch AND m.retired) THEN
            RAISE EXCEPTION USING ERRCODE = 'KSE01',
                MESSAGE = 'placement epoch ' || p_epoch || ' is retired';
        END IF;
    END IF;"""
_COMMIT_FN_V2 = _COMMIT_FN.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION").replace(
    "    PERFORM pg_advisory_xact_lock(bid, p_hash);",
    _EPOCH_GUARD + "\n    PERFORM pg_advisory_xact_lock(bid, p_hash);",
)
# begin_write in one round trip, under the same guard (p_has_shards: always). Its
# commit does not wait for the WAL flush (synchronous_commit off for this transaction
# only): a pending write is a note for the collector, nobody is answered on it, and
# the version's commit, which is synchronous, flushes the WAL up to and past it. A
# database crash in between loses at most the note; the write then fails (its commit
# cannot happen) and the scrubber collects its shards as orphans.
_BEGIN_WRITE_FN = (
    """
CREATE FUNCTION ks_begin_write(
    p_object_id text, p_tag text, p_bucket text, p_key text, p_partition int, p_epoch int,
    p_width int, p_started float8) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    p_has_shards bool := true;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);"""
    + _EPOCH_GUARD
    + """
    INSERT INTO pending AS p VALUES (p_object_id, p_tag, p_bucket, p_key, p_partition,
        p_epoch, p_width, p_started)
        ON CONFLICT (object_id, shard_tag) DO UPDATE SET bucket = EXCLUDED.bucket,
        key = EXCLUDED.key, partition = EXCLUDED.partition, epoch = EXCLUDED.epoch,
        width = EXCLUDED.width, started = EXCLUDED.started;
END
$$"""
)

# The common prefix of `k` (which starts with a prefix of `plen` bytes) for the
# delimiter `d`, or NULL when `d` does not occur after the prefix.
_COMMON_PREFIX_FN = r"""
CREATE FUNCTION ks_common_prefix(k bytea, plen int, d bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT substring(k FROM 1
        FOR plen + nullif(position(d IN substring(k FROM plen + 1)), 0) - 1 + length(d))
$$"""
# (Not STRICT, one expression: the planner inlines it into the listing's walk.)

_V1 = (
    "CREATE SEQUENCE ks_seq",
    """CREATE TABLE buckets (
        id serial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        owner text NOT NULL,
        created float8 NOT NULL,
        region text NOT NULL,
        versioning text NOT NULL,
        settings text NOT NULL)""",
    "CREATE INDEX buckets_owner ON buckets (owner, name)",
    # doc: JSON of the fields no query looks at (as the SQLite backend's).
    # has_shards: false for delete markers and inline objects (nothing on pods).
    """CREATE TABLE versions (
        bucket_id int NOT NULL,
        key bytea NOT NULL,
        seq bigint NOT NULL,
        version_id text NOT NULL,
        object_id text NOT NULL,
        is_delete_marker bool NOT NULL,
        size bigint NOT NULL,
        etag text NOT NULL,
        last_modified float8 NOT NULL,
        partition int NOT NULL,
        epoch int NOT NULL,
        has_shards bool NOT NULL,
        width int NOT NULL,
        doc text NOT NULL,
        inline bytea)""",
    "CREATE UNIQUE INDEX versions_key ON versions (bucket_id, key, seq DESC)",
    "CREATE INDEX versions_pins ON versions (epoch, partition) WHERE has_shards",
    # The healer looks parts up by object id; the scrubber lists a partition's pins.
    "CREATE INDEX versions_object ON versions (object_id) WHERE has_shards",
    """CREATE TABLE latest (
        bucket_id int NOT NULL,
        key bytea NOT NULL,
        seq bigint NOT NULL,
        size bigint NOT NULL,
        PRIMARY KEY (bucket_id, key))""",
    """CREATE TABLE pending (
        object_id text NOT NULL,
        shard_tag text NOT NULL,
        bucket text NOT NULL,
        key text NOT NULL,
        partition int NOT NULL,
        epoch int NOT NULL,
        width int NOT NULL,
        started float8 NOT NULL,
        PRIMARY KEY (object_id, shard_tag))""",
    "CREATE INDEX pending_started ON pending (started)",
    "CREATE INDEX pending_pins ON pending (partition, epoch)",
    """CREATE TABLE uploads (
        upload_id text PRIMARY KEY,
        bucket_id int NOT NULL,
        key bytea NOT NULL,
        seq bigint NOT NULL,
        object_id text NOT NULL,
        initiated float8 NOT NULL,
        partition int NOT NULL,
        epoch int NOT NULL,
        width int NOT NULL,
        doc text NOT NULL)""",
    "CREATE INDEX uploads_order ON uploads (bucket_id, key, seq)",
    "CREATE INDEX uploads_object ON uploads (object_id)",
    "CREATE INDEX uploads_pins ON uploads (partition, epoch)",
    """CREATE TABLE parts (
        upload_id text NOT NULL,
        part_number int NOT NULL,
        shard_tag text NOT NULL,
        size bigint NOT NULL,
        etag text NOT NULL,
        checksums text NOT NULL,
        last_modified float8 NOT NULL,
        PRIMARY KEY (upload_id, part_number))""",
    """CREATE TABLE users (
        user_id text PRIMARY KEY,
        name text NOT NULL UNIQUE,
        created float8 NOT NULL,
        is_admin bool NOT NULL)""",
    """CREATE TABLE access_keys (
        access_key text PRIMARY KEY,
        user_id text NOT NULL,
        secret bytea NOT NULL,
        created float8 NOT NULL,
        enabled bool NOT NULL)""",
    "CREATE INDEX access_keys_user ON access_keys (user_id)",
    # Account settings (Swift account metadata and the like), one JSON document per user.
    "CREATE TABLE account_settings (user_id text PRIMARY KEY, settings text NOT NULL)",
    "CREATE TABLE placement_maps (epoch int PRIMARY KEY, map_json text NOT NULL)",
    """CREATE TABLE pods (
        pod_id text PRIMARY KEY,
        url text NOT NULL,
        zone text NOT NULL,
        node text NOT NULL,
        weight float8 NOT NULL,
        state text NOT NULL)""",
    """CREATE TABLE collect (
        id bigserial PRIMARY KEY,
        object_id text NOT NULL,
        shard_tag text,
        partition int NOT NULL,
        epoch int NOT NULL,
        width int NOT NULL,
        not_before float8 NOT NULL)""",
    "CREATE INDEX collect_due ON collect (not_before, id)",
    """CREATE TABLE heal (
        id bigserial PRIMARY KEY,
        object_id text NOT NULL,
        shard_tag text NOT NULL,
        idx int NOT NULL,
        partition int NOT NULL,
        epoch int NOT NULL,
        reason text NOT NULL,
        queued float8 NOT NULL,
        UNIQUE (object_id, shard_tag, idx))""",
    # Leases (the maintenance workers' "one active set per cluster"): expiry on the
    # database's clock, so gateways' clocks never have to agree.
    """CREATE TABLE leases (
        name text PRIMARY KEY,
        holder text NOT NULL,
        expires_at float8 NOT NULL)""",
    _COMMIT_FN,
    _COMMON_PREFIX_FN,
)

# Retired epochs and the guard against writing under them.
_V2 = (
    "ALTER TABLE placement_maps ADD COLUMN retired bool NOT NULL DEFAULT false",
    _COMMIT_FN_V2,
    _BEGIN_WRITE_FN,
)

# The object listing's walk with a delimiter, done by the server (see
# _postgres_listing.py): from `p_lo`, one ordered index-only scan of `latest` while
# keys are not rolled up; at a key with a common prefix it emits the prefix once and
# seeks past every key under it (`prefix || '\xff'`), starting a new scan there.
# So a run of plain keys costs one scan, and each common prefix one seek, whatever
# the number of keys under it. Emits (key, cp, seq): cp NULL and seq set for a plain
# key, cp set and seq NULL for a common prefix.
_WALK_FN = r"""
CREATE OR REPLACE FUNCTION ks_walk_latest(p_bid int, p_lo bytea, p_hi bytea, p_plen int,
    p_delim bytea, p_limit int)
RETURNS TABLE (w_key bytea, w_cp bytea, w_seq bigint)
LANGUAGE plpgsql STABLE ROWS 1000 AS $$
DECLARE
    cur bytea := p_lo;
    k bytea;
    s bigint;
    r record;
    n int := 0;
BEGIN
    <<seek>>
    LOOP
        -- One seek (a cached single-row plan: cheaper than opening a scan).
        SELECT l.key, l.seq INTO k, s FROM latest l
            WHERE l.bucket_id = p_bid AND l.key >= cur AND l.key < p_hi ORDER BY l.key LIMIT 1;
        EXIT seek WHEN NOT FOUND;
        w_key := k;
        w_cp := ks_common_prefix(k, p_plen, p_delim);
        IF w_cp IS NOT NULL THEN
            w_seq := NULL;
            RETURN NEXT;
            n := n + 1;
            EXIT seek WHEN n >= p_limit;
            cur := w_cp || '\xff'::bytea;
            CONTINUE seek;
        END IF;
        -- A plain key: scan the run of keys from it until the next common prefix.
        FOR r IN SELECT l.key, l.seq FROM latest l
                WHERE l.bucket_id = p_bid AND l.key >= k AND l.key < p_hi ORDER BY l.key LOOP
            w_key := r.key;
            w_cp := ks_common_prefix(r.key, p_plen, p_delim);
            w_seq := CASE WHEN w_cp IS NULL THEN r.seq END;
            RETURN NEXT;
            n := n + 1;
            EXIT seek WHEN n >= p_limit;
            IF w_cp IS NOT NULL THEN
                cur := w_cp || '\xff'::bytea;
                CONTINUE seek;
            END IF;
        END LOOP;
        EXIT seek;
    END LOOP;
END
$$"""

# Listing at scale: `latest` carries seq and size in its primary key's index, so the
# listing's walks and scans and bucket_usage read the index only; the walk above.
_V3 = (
    "ALTER TABLE latest DROP CONSTRAINT latest_pkey, "
    "ADD PRIMARY KEY (bucket_id, key) INCLUDE (seq, size)",
    _WALK_FN,
)

# Group commit: many commits, or many pending writes, in one statement
# (_postgres_commits.py).
_V4 = (*ROW_TYPES, COMMIT_MANY_FN, BEGIN_WRITE_MANY_FN)
# Commits read their bucket's row FOR KEY SHARE: a plain read does not wait for
# delete_bucket's FOR UPDATE, so a commit racing DeleteBucket could land a version in
# a bucket being deleted. ks_commit_many (COMMIT_MANY_FN) takes the same lock; both
# are replaced here so an existing database gets them.
_COMMIT_FN_V5 = _COMMIT_FN_V2.replace(
    "SELECT id, versioning INTO bid, ver FROM buckets WHERE name = p_bucket;",
    "SELECT id, versioning INTO bid, ver FROM buckets WHERE name = p_bucket FOR KEY SHARE;",
)
_V5 = (_COMMIT_FN_V5, COMMIT_MANY_FN)

# If-None-Match with an etag: p_if_none_match (and ks_commit_row.if_none_match) turn
# from bool into text: NULL none, '*' no current version may exist, an etag: the
# current version, if any, must not have it. Under new names (ks_commit_v6,
# ks_commit_row_v6, ks_commit_many_v6): the schema-5 functions stay, so gateways still
# running the older code go on committing during a rolling upgrade. A later migration
# may drop them.
_COMMIT_FN_V6 = revise(
    _COMMIT_FN_V5,
    ("FUNCTION ks_commit(", "FUNCTION ks_commit_v6("),
    ("p_if_match text, p_if_none_match bool,", "p_if_match text, p_if_none_match text,"),
    ("IF p_if_match IS NOT NULL OR p_if_none_match THEN",
     "IF p_if_match IS NOT NULL OR p_if_none_match IS NOT NULL THEN"),
    ("IF p_if_none_match AND live THEN",
     "IF live AND (p_if_none_match = '*' OR cur.etag = p_if_none_match) THEN"),
)
_V6 = (
    _COMMIT_FN_V6,
    COMMIT_ROW_V6,
    COMMIT_MANY_FN_V6,
)

# (schema version reached, statements). Append only.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, _V1), (2, _V2), (3, _V3), (4, _V4), (5, _V5), (6, _V6),
)
LATEST_VERSION = MIGRATIONS[-1][0]


async def current_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def migrate(conn: asyncpg.Connection) -> int:
    """Brings the database to LATEST_VERSION; returns the version found under the lock."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        found = await current_version(conn)
        if found > LATEST_VERSION:
            raise MetadataError(
                f"database schema version {found} is newer than this code ({LATEST_VERSION})"
            )
        for version, statements in MIGRATIONS:
            if version <= found:
                continue
            async with conn.transaction():
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version int PRIMARY KEY, "
                    "applied float8 NOT NULL DEFAULT extract(epoch FROM now()))"
                )
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
        return found
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
