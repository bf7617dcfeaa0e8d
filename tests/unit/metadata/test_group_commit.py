"""Concurrent commits from one gateway: both backends gather them into batches (group
commit), and every caller must still get exactly its own outcome, as if each commit
had run alone, one after the other."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from kurastore.metadata import (
    REMOVED_VERSION_GRACE_S,
    BucketNotFound,
    CommitResult,
    PendingWrite,
    PreconditionFailed,
    Store,
)


async def collected_ids(store: Store) -> list[str]:
    later = time.time() + REMOVED_VERSION_GRACE_S + 1
    return sorted(ref.object_id for _, ref in await store.take_collect(later, limit=1000))


async def test_each_caller_gets_its_own_outcome(store: Store, bucket: str, obj) -> None:
    old = (await store.commit_version(obj(bucket, "old"))).version
    taken = (await store.commit_version(obj(bucket, "taken"))).version
    match = (await store.commit_version(obj(bucket, "match"))).version
    fresh = [obj(bucket, f"new/{i:02d}") for i in range(30)]
    overwrite, twice_a, twice_b = obj(bucket, "old"), obj(bucket, "twice"), obj(bucket, "twice")
    matched = obj(bucket, "match")
    ops = {
        "overwrite": store.commit_version(overwrite),
        "if_none_match": store.commit_version(obj(bucket, "taken"), if_none_match="*"),
        "if_match_wrong": store.commit_version(obj(bucket, "taken"), if_match='"nope"'),
        "if_match_right": store.commit_version(matched, if_match=f'"{match.etag}"'),
        "no_bucket": store.commit_version(obj("no-such-bucket", "k")),
        "twice_a": store.commit_version(twice_a),
        "twice_b": store.commit_version(twice_b),
        **{f"fresh{i}": store.commit_version(v) for i, v in enumerate(fresh)},
    }
    results = dict(zip(ops, await asyncio.gather(*ops.values(), return_exceptions=True),
                       strict=True))

    for i, v in enumerate(fresh):
        r = results[f"fresh{i}"]
        assert isinstance(r, CommitResult) and r.version.object_id == v.object_id
        assert r.replaced == ()
    assert [v.object_id for v in results["overwrite"].replaced] == [old.object_id]
    assert isinstance(results["if_none_match"], PreconditionFailed)
    assert isinstance(results["if_match_wrong"], PreconditionFailed)
    assert [v.object_id for v in results["if_match_right"].replaced] == [match.object_id]
    assert isinstance(results["no_bucket"], BucketNotFound)
    # The same key twice: both commit, the later one replaces the earlier.
    a, b = results["twice_a"], results["twice_b"]
    assert isinstance(a, CommitResult) and isinstance(b, CommitResult)
    current = (await store.get_version(bucket, "twice")).object_id
    loser = twice_a.object_id if current == twice_b.object_id else twice_b.object_id
    assert [v.object_id for v in (a.replaced + b.replaced)] == [loser]

    assert (await store.get_version(bucket, "taken")).object_id == taken.object_id
    assert (await store.get_version(bucket, "match")).object_id == matched.object_id
    assert (await store.bucket_usage(bucket))[0] == 30 + 4  # fresh, old, taken, match, twice
    assert await collected_ids(store) == sorted([old.object_id, match.object_id, loser])


async def test_an_item_the_database_refuses_fails_alone(store: Store, bucket: str, obj) -> None:
    versions = [obj(bucket, f"k{i}") for i in range(20)]
    versions[7] = dataclasses.replace(versions[7], size=1 << 64)  # no 64-bit column holds it
    results = await asyncio.gather(*(store.commit_version(v) for v in versions),
                                   return_exceptions=True)
    assert isinstance(results[7], Exception)
    assert sum(isinstance(r, CommitResult) for r in results) == 19
    assert (await store.bucket_usage(bucket))[0] == 19


async def test_if_match_race_in_one_gateway_has_one_winner(
    store: Store, bucket: str, obj
) -> None:
    current = (await store.commit_version(obj(bucket, "lock", etag="e0"))).version.etag
    for n in range(5):
        attempts = [obj(bucket, "lock", etag=f"e{n}-{i}") for i in range(16)]
        results = await asyncio.gather(
            *(store.commit_version(v, if_match=current) for v in attempts),
            return_exceptions=True)
        ok = [r for r in results if isinstance(r, CommitResult)]
        assert len(ok) == 1
        assert all(isinstance(r, PreconditionFailed) for r in results if r is not ok[0])
        assert (await store.get_version(bucket, "lock")).etag == ok[0].version.etag
        current = ok[0].version.etag


async def test_a_refused_commit_keeps_its_pending_write(store: Store, bucket: str, obj) -> None:
    await store.commit_version(obj(bucket, "taken"))
    versions = [obj(bucket, f"k{i}") for i in range(12)] + [obj(bucket, "taken")]
    await asyncio.gather(*(store.begin_write(PendingWrite(
        v.object_id, "p1", bucket, v.key, 7, 1, 6, 100.0)) for v in versions))
    assert len(await store.stale_writes(200.0)) == 13
    results = await asyncio.gather(
        *(store.commit_version(v, if_none_match="*") for v in versions),
        return_exceptions=True)
    assert isinstance(results[-1], PreconditionFailed)
    assert all(isinstance(r, CommitResult) for r in results[:-1])
    # Only the refused write is still pending: its caller aborts it and its shards go.
    assert [p.object_id for p in await store.stale_writes(200.0)] == [versions[-1].object_id]
    await store.abort_write(PendingWrite(versions[-1].object_id, "p1", bucket, "taken", 7, 1, 6,
                                         100.0))
    assert await collected_ids(store) == [versions[-1].object_id]


async def test_versioned_bucket_keeps_every_concurrent_version(
    store: Store, bucket: str, obj
) -> None:
    await store.update_bucket(bucket, versioning="Enabled")
    versions = [obj(bucket, "k") for _ in range(10)] + [obj(bucket, "j") for _ in range(10)]
    results = await asyncio.gather(*(store.commit_version(v) for v in versions))
    assert all(r.replaced == () for r in results)
    ids = [r.version.version_id for r in results]
    assert len(set(ids)) == 20
    listed = (await store.list_versions(bucket)).entries
    assert sorted(v.version_id for v in listed) == sorted(ids)
    assert sum(v.is_latest for v in listed) == 2
    assert await collected_ids(store) == []


async def test_if_none_match_etags_in_one_batch(store: Store, bucket: str, obj) -> None:
    """If-None-Match: <etag> in a batch refuses exactly the keys whose current etag it
    names; a key without a current version (none, or a delete marker) takes any etag."""
    await store.update_bucket(bucket, versioning="Enabled")
    current = {f"k{i}": (await store.commit_version(obj(bucket, f"k{i}"))).version
               for i in range(8)}
    await store.delete_object(bucket, "k7")  # a delete marker: no current version
    named = {key: v.etag if i % 2 else "f" * 32 for i, (key, v) in enumerate(current.items())}
    attempts = {key: obj(bucket, key) for key in current} | {"new": obj(bucket, "new")}
    named["new"] = named["k1"]
    results = dict(zip(attempts, await asyncio.gather(
        *(store.commit_version(v, if_none_match=f'"{named[k]}"') for k, v in attempts.items()),
        return_exceptions=True), strict=True))
    refused = sorted(k for k, r in results.items() if isinstance(r, PreconditionFailed))
    assert refused == ["k1", "k3", "k5"]
    assert all(isinstance(results[k], CommitResult) for k in attempts if k not in refused)
    for key in attempts:
        latest = await store.get_version(bucket, key)
        wanted = current[key] if key in refused else attempts[key]
        assert latest.object_id == wanted.object_id
