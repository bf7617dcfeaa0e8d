"""What only the PostgreSQL backend has: many gateways (stores) on one database,
migrations under the advisory lock, lost connections, secrets at rest."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from support.postgres import free_port, fresh_schema

from kurastore.metadata import (
    AccessKey,
    BucketNotFound,
    BucketRecord,
    EpochRetired,
    MetadataError,
    MetadataUnavailable,
    ObjectVersion,
    PartLayout,
    PendingWrite,
    PreconditionFailed,
    UserRecord,
)
from kurastore.metadata import _postgres_objects as pg_objects
from kurastore.metadata import _postgres_schema as schema
from kurastore.metadata._postgres_objects import key_hash
from kurastore.metadata.postgres import PostgresStore

KEY = b"p" * 32


def version(key: str, *, etag: str = "e") -> ObjectVersion:
    return ObjectVersion(
        "b", key, "", os.urandom(16).hex(), 10, etag, time.time(), k=4, m=2,
        block_size=1 << 20, partition=3, epoch=1, parts=(PartLayout(1, "p1", 10, etag),),
    )


@pytest.fixture
async def dsn(postgres_database: str) -> AsyncIterator[str]:
    async with fresh_schema(postgres_database) as dsn:
        yield dsn


async def _open(dsn: str) -> PostgresStore:
    return await PostgresStore.open(dsn, secret_key=KEY, min_size=1, max_size=8)


async def test_gateways_starting_together_migrate_once(dsn: str) -> None:
    stores = await asyncio.gather(*(_open(dsn) for _ in range(6)))
    conn = await asyncpg.connect(dsn)
    try:
        got = [r[0] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY 1")]
        assert got == list(range(1, schema.LATEST_VERSION + 1))  # each step applied once
    finally:
        await conn.close()
    await stores[0].create_bucket(BucketRecord("b", "o", 1.0))
    assert [b.name for b in await stores[5].list_buckets()] == ["b"]
    await asyncio.gather(*(s.close() for s in stores))


async def test_upgrade_in_place_and_newer_schema_refused(dsn: str, monkeypatch) -> None:
    store = await _open(dsn)
    await store.create_bucket(BucketRecord("b", "o", 1.0))
    await store.close()
    released, top = schema.MIGRATIONS, schema.LATEST_VERSION
    step = (top + 1, ("CREATE TABLE lifecycle (bucket_id int PRIMARY KEY, rules text)",))
    monkeypatch.setattr(schema, "MIGRATIONS", (*released, step))
    monkeypatch.setattr(schema, "LATEST_VERSION", top + 1)
    upgraded = await _open(dsn)
    assert (await upgraded.get_bucket("b")).owner == "o"  # data kept
    await upgraded.close()
    conn = await asyncpg.connect(dsn)
    try:
        got = [r[0] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY 1")]
        assert got == list(range(1, top + 2))
        await conn.fetch("SELECT rules FROM lifecycle")
    finally:
        await conn.close()
    monkeypatch.setattr(schema, "MIGRATIONS", released)
    monkeypatch.setattr(schema, "LATEST_VERSION", top)
    with pytest.raises(MetadataError, match="newer than this code"):
        await _open(dsn)



async def test_schema_5_upgrades_to_if_none_match_etags(dsn: str, monkeypatch) -> None:
    """A database made before schema 6 (If-None-Match: * only) keeps its data and then
    refuses an etag named by If-None-Match, alone (ks_commit_v6) and in a batch; a
    gateway still on the schema-5 code (ks_commit) goes on committing meanwhile."""
    released, v6_sql = schema.MIGRATIONS, pg_objects._COMMIT_SQL
    schema5_sql = v6_sql.replace("ks_commit_v6(", "ks_commit(")
    monkeypatch.setattr(schema, "MIGRATIONS", released[:5])
    monkeypatch.setattr(schema, "LATEST_VERSION", 5)
    monkeypatch.setattr(pg_objects, "_COMMIT_SQL", schema5_sql)
    old = await _open(dsn)
    await old.create_bucket(BucketRecord("b", "o", 1.0))
    await old.commit_version(version("k", etag="e1"))
    monkeypatch.setattr(schema, "MIGRATIONS", released)
    monkeypatch.setattr(schema, "LATEST_VERSION", released[-1][0])
    monkeypatch.setattr(pg_objects, "_COMMIT_SQL", v6_sql)
    store = await _open(dsn)  # upgrades to schema 6
    monkeypatch.setattr(pg_objects, "_COMMIT_SQL", schema5_sql)
    await old.commit_version(version("old-gateway", etag="e0"))
    monkeypatch.setattr(pg_objects, "_COMMIT_SQL", v6_sql)
    await old.close()
    assert (await store.get_version("b", "old-gateway")).etag == "e0"
    with pytest.raises(PreconditionFailed):
        await store.commit_version(version("k", etag="e2"), if_none_match='"e1"')
    await store.commit_version(version("k", etag="e2"), if_none_match="e3")
    results = await asyncio.gather(
        *(store.commit_version(version(key, etag="e9"), if_none_match="e2")
          for key in ("k", "j", "i")), return_exceptions=True)
    assert isinstance(results[0], PreconditionFailed)
    assert [(await store.get_version("b", key)).etag for key in ("k", "j", "i")] == [
        "e2", "e9", "e9"]
    await store.close()

async def test_conditional_race_across_two_gateways(dsn: str) -> None:
    one, two = await _open(dsn), await _open(dsn)
    await one.create_bucket(BucketRecord("b", "o", 1.0))

    async def attempt(i: int) -> str | None:
        try:
            res = await (one if i % 2 else two).commit_version(version("lock"), if_none_match="*")
            return res.version.object_id
        except PreconditionFailed:
            return None

    winners = [w for w in await asyncio.gather(*(attempt(i) for i in range(64))) if w]
    assert len(winners) == 1
    assert (await two.get_version("b", "lock")).object_id == winners[0]
    # If-Match chains: each round exactly one of the two gateways replaces the etag it saw.
    current = "e"
    for n in range(10):
        results = await asyncio.gather(
            one.commit_version(version("lock", etag=f"a{n}"), if_match=current),
            two.commit_version(version("lock", etag=f"b{n}"), if_match=current),
            return_exceptions=True,
        )
        ok = [r for r in results if not isinstance(r, Exception)]
        assert len(ok) == 1 and sum(isinstance(r, PreconditionFailed) for r in results) == 1
        current = ok[0].version.etag
    await one.close()
    await two.close()


async def test_delete_racing_put_never_points_at_collected_shards(dsn: str) -> None:
    one, two = await _open(dsn), await _open(dsn)
    await one.create_bucket(BucketRecord("b", "o", 1.0))
    committed: list[str] = []

    async def putter(store: PostgresStore) -> None:
        for _ in range(60):
            committed.append((await store.commit_version(version("k"))).version.object_id)

    async def deleter(store: PostgresStore) -> None:
        for _ in range(60):
            await store.delete_object("b", "k")

    await asyncio.gather(putter(one), deleter(two), putter(two), deleter(one))
    queued = {r.object_id for _, r in await one.take_collect(time.time() + 10**6, limit=1000)}
    try:
        live = {(await one.get_version("b", "k")).object_id}
    except MetadataError:
        live = set()
    assert not live & queued  # the record never names collected shards
    assert set(committed) == live | queued  # and no shards are forgotten
    assert len(queued) == len(committed) - len(live)
    await one.close()
    await two.close()


async def test_lost_connections_are_unavailable_then_recover(dsn: str) -> None:
    store = await _open(dsn)
    await store.create_bucket(BucketRecord("b", "o", 1.0))
    admin = await asyncpg.connect(dsn)
    try:
        # Hold the key's lock so that a commit is in flight when its connection dies.
        bid = await admin.fetchval("SELECT id FROM buckets WHERE name = 'b'")
        await admin.execute("SELECT pg_advisory_lock($1, $2)", bid, key_hash(b"k"))
        commit = asyncio.create_task(store.commit_version(version("k")))
        for _ in range(100):
            waiting = await admin.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            if waiting:
                break
            await asyncio.sleep(0.02)
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        with pytest.raises(MetadataUnavailable):
            await commit
    finally:
        await admin.close()
    # Nothing half-done, and the pool replaces its dead connections by itself.
    assert await store.bucket_usage("b") == (0, 0)
    await store.commit_version(version("k"))
    assert (await store.bucket_usage("b"))[0] == 1
    await store.close()
    with pytest.raises(MetadataUnavailable):
        await PostgresStore.open(f"postgresql://postgres@127.0.0.1:{free_port()}/x",
                                 secret_key=KEY)


async def test_cancelled_caller_still_commits(dsn: str) -> None:
    store = await _open(dsn)
    await store.create_bucket(BucketRecord("b", "o", 1.0))
    tasks = [asyncio.create_task(store.commit_version(version(f"k{i}"))) for i in range(50)]
    await asyncio.sleep(0)
    for t in tasks[::2]:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.2)
    assert (await store.bucket_usage("b"))[0] == 50
    await store.close()


async def test_secret_is_not_in_the_database_in_clear(dsn: str) -> None:
    secret = "Sup3rS3cretValue/ThatMustNotLeak+0123456789"
    store = await _open(dsn)
    await store.create_user(UserRecord("a" * 64, "alice", 1.0))
    await store.create_access_key(AccessKey("AKIADBCHECK", secret, "a" * 64, 1.0))
    conn = await asyncpg.connect(dsn)
    try:
        raw = await conn.fetchval("SELECT secret FROM access_keys WHERE access_key = 'AKIADBCHECK'")
    finally:
        await conn.close()
    assert raw and secret.encode() not in raw
    assert (await store.get_access_key("AKIADBCHECK")).secret_key == secret
    await store.close()
    wrong = await PostgresStore.open(dsn, secret_key=b"x" * 32, min_size=1)
    with pytest.raises(MetadataError, match="does not decrypt"):
        await wrong.get_access_key("AKIADBCHECK")
    await wrong.close()


async def test_retiring_an_epoch_races_writers_on_another_gateway(dsn: str) -> None:
    one, two = await _open(dsn), await _open(dsn)
    await one.create_bucket(BucketRecord("b", "o", 1.0))
    for round_ in range(6):
        old, new = 2 * round_ + 1, 2 * round_ + 2
        await one.save_placement_map(old, "{}")
        await one.save_placement_map(new, "{}")
        writes = [PendingWrite(os.urandom(16).hex(), "0", "b", f"k{i}", 3, old, 6, time.time())
                  for i in range(12)]

        async def write(p: PendingWrite) -> bool:
            try:
                await one.begin_write(p)
                return True
            except EpochRetired:
                return False

        *done, retired = await asyncio.gather(*(write(p) for p in writes),
                                              two.retire_epochs(new))
        pinned = old in await two.epochs_in_use()
        # Either the epoch was retired and nothing pins it, or it stayed for the writes.
        # (An earlier round's epochs left pinned then may be retired with it now.)
        assert (old in retired) != pinned, (retired, pinned, done)
        assert pinned == any(done)
        for p, ok in zip(writes, done, strict=True):
            if ok:
                await one.abort_write(p)
    await one.close()
    await two.close()


async def test_a_commit_racing_delete_bucket_never_lands_in_a_deleted_bucket(dsn: str) -> None:
    store = await _open(dsn)
    await store.create_bucket(BucketRecord("b", "o", 1.0))
    deleter = await asyncpg.connect(dsn)
    try:
        # delete_bucket's first step, held open: the bucket row locked FOR UPDATE.
        tx = deleter.transaction()
        await tx.start()
        await deleter.fetchval("SELECT id FROM buckets WHERE name = 'b' FOR UPDATE")
        one = asyncio.ensure_future(store.commit_version(version("k1")))
        batch = asyncio.ensure_future(asyncio.gather(
            *(store.commit_version(version(f"k{i}")) for i in range(2, 6)),
            return_exceptions=True))
        await asyncio.sleep(0.5)
        assert not one.done() and not batch.done()  # the commits wait for the delete
        await deleter.execute("DELETE FROM buckets WHERE name = 'b'")
        await tx.commit()
        with pytest.raises(BucketNotFound):
            await one
        assert all(isinstance(r, BucketNotFound) for r in await batch)
        assert await deleter.fetchval("SELECT count(*) FROM versions") == 0
    finally:
        await deleter.close()
        await store.close()


async def test_group_commit_sends_few_statements(dsn: str) -> None:
    store = await _open(dsn)
    await store.create_bucket(BucketRecord("b", "o", 1.0))
    versions = [version(f"k{i:03d}") for i in range(200)]
    await asyncio.gather(*(store.begin_write(PendingWrite(v.object_id, "p1", "b", v.key, 3, 1, 6,
                                                          100.0)) for v in versions))
    results = await asyncio.gather(*(store.commit_version(v) for v in versions))
    assert [r.version.object_id for r in results] == [v.object_id for v in versions]
    assert await store.stale_writes(200.0) == []  # every commit cleared its own
    # 200 callers, a handful of statements (at most 64 rows each).
    assert store._begins.items == store._commits.items == 200
    assert store._begins.batches <= 10 and store._commits.batches <= 10
    await store.close()


async def test_batched_pending_writes_refuse_only_a_retired_epoch(dsn: str) -> None:
    store = await _open(dsn)
    for epoch in (1, 2, 3):
        await store.save_placement_map(epoch, "{}")
    assert await store.retire_epochs(2) == [1]
    writes = [PendingWrite(os.urandom(16).hex(), "0", "b", f"k{i}", 3, 2 - i % 2, 6, 100.0)
              for i in range(20)]
    results = await asyncio.gather(*(store.begin_write(p) for p in writes),
                                   return_exceptions=True)
    for p, r in zip(writes, results, strict=True):
        assert isinstance(r, EpochRetired) if p.epoch == 1 else r is None
    assert store._begins.batches < 20
    assert {p.object_id for p in await store.stale_writes(200.0)} == {
        p.object_id for p in writes if p.epoch == 2}
    await store.close()


async def test_two_gateways_overwriting_the_same_keys_in_opposite_orders(dsn: str) -> None:
    """Batches lock their keys in one global order, so two batches never deadlock, and
    every replaced version's shards are queued exactly once. The two batches are made
    to meet: a third session holds the lock of the middle key until both wait."""
    one, two = await _open(dsn), await _open(dsn)
    await one.create_bucket(BucketRecord("b", "o", 1.0))
    keys = sorted((f"k{i:02d}" for i in range(40)), key=lambda k: key_hash(k.encode()))
    for k in keys:
        await one.commit_version(version(k))
    admin = await asyncpg.connect(dsn)
    bid = await admin.fetchval("SELECT id FROM buckets WHERE name = 'b'")
    await admin.execute("SELECT pg_advisory_lock($1, $2)", bid, key_hash(keys[20].encode()))
    batches = [asyncio.gather(*(store.commit_version(version(k)) for k in order))
               for store, order in ((one, keys), (two, keys[::-1]))]
    try:
        for _ in range(200):
            waiting = await admin.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            if waiting == 2:
                break
            await asyncio.sleep(0.01)
        assert waiting == 2
    finally:
        await admin.execute("SELECT pg_advisory_unlock_all()")
        await admin.close()
    t0 = time.monotonic()
    results = [r for rs in await asyncio.gather(*batches) for r in rs]
    # A deadlock would be found after deadlock_timeout (1 s) and retried.
    assert time.monotonic() - t0 < 0.9
    live = {(await one.get_version("b", k)).object_id for k in keys}
    queued = [r.object_id for _, r in await one.take_collect(time.time() + 10**6, limit=1000)]
    assert len(queued) == len(set(queued)) == 80
    replaced = {v.object_id for r in results for v in r.replaced}
    assert replaced == set(queued) and not live & replaced
    await one.close()
    await two.close()
