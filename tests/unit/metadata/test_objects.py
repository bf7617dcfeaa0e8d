"""Buckets, commits, reads, deletes, versioning and conditional commits."""

from __future__ import annotations

import asyncio
import time

import pytest

from kurastore.metadata import (
    NULL_VERSION,
    REMOVED_VERSION_GRACE_S,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    BucketNotFound,
    BucketRecord,
    ObjectNotFound,
    PendingWrite,
    PreconditionFailed,
    ShardRef,
    Store,
    VersionNotFound,
    VersionProtected,
)


async def collected(store: Store) -> list[ShardRef]:
    """Everything queued, including shards still inside their read grace."""
    later = time.time() + REMOVED_VERSION_GRACE_S + 1
    return [ref for _, ref in await store.take_collect(later, limit=1000)]


async def test_removed_versions_wait_out_the_read_grace(store: Store, bucket: str, obj) -> None:
    first = await store.commit_version(obj(bucket, "k"))
    await store.commit_version(obj(bucket, "k"))
    assert await store.take_collect(time.time() + 1) == []  # a reader may still stream it
    assert [r.object_id for r in await collected(store)] == [first.version.object_id]


async def test_buckets(store: Store, obj) -> None:
    await store.create_bucket(BucketRecord("b2", "bob", 1.0, settings={"cors": [1]}))
    await store.create_bucket(BucketRecord("b1", "alice", 2.0, region="eu-west-1"))
    with pytest.raises(BucketAlreadyOwnedByYou):
        await store.create_bucket(BucketRecord("b1", "alice", 3.0))
    with pytest.raises(BucketAlreadyExists):
        await store.create_bucket(BucketRecord("b1", "bob", 3.0))
    assert [b.name for b in await store.list_buckets()] == ["b1", "b2"]
    assert [b.name for b in await store.list_buckets("bob")] == ["b2"]
    got = await store.get_bucket("b1")
    assert (got.owner, got.region, got.versioning) == ("alice", "eu-west-1", "")
    assert (await store.get_bucket("b2")).settings == {"cors": [1]}
    updated = await store.update_bucket("b1", versioning="Enabled", settings={"tags": {"a": "1"}})
    assert updated.versioning == "Enabled" and updated.settings == {"tags": {"a": "1"}}
    with pytest.raises(BucketNotFound):
        await store.get_bucket("nope")
    with pytest.raises(BucketNotFound):
        await store.update_bucket("nope", versioning="Enabled")
    await store.commit_version(obj("b1", "k"))
    with pytest.raises(BucketNotEmpty):
        await store.delete_bucket("b1")
    await store.delete_bucket("b2")
    with pytest.raises(BucketNotFound):
        await store.get_bucket("b2")


async def test_commit_get_delete_unversioned(store: Store, bucket: str, obj) -> None:
    first = await store.commit_version(obj(bucket, "a.txt", size=10, k=4, m=2))
    assert first.version.version_id == NULL_VERSION and first.replaced == ()
    got = await store.get_version(bucket, "a.txt")
    assert got == first.version and got.is_latest
    assert await store.bucket_usage(bucket) == (1, 10)

    second = await store.commit_version(obj(bucket, "a.txt", size=20, k=3, m=1))
    assert [r.object_id for r in second.replaced] == [first.version.object_id]
    assert await collected(store) == [
        ShardRef(first.version.object_id, 7, 1, 6, None)
    ]
    assert (await store.get_version(bucket, "a.txt")).object_id == second.version.object_id
    assert (await store.get_version(bucket, "a.txt", NULL_VERSION)).size == 20
    assert await store.bucket_usage(bucket) == (1, 20)

    res = await store.delete_object(bucket, "a.txt")
    assert not res.delete_marker
    with pytest.raises(ObjectNotFound) as e:
        await store.get_version(bucket, "a.txt")
    assert not e.value.delete_marker
    assert ShardRef(second.version.object_id, 7, 1, 4, None) in await collected(store)
    await store.delete_object(bucket, "never-existed")  # no error, as S3
    assert await store.bucket_usage(bucket) == (0, 0)
    with pytest.raises(BucketNotFound):
        await store.commit_version(obj("nobucket", "x"))


async def test_inline_and_delete_marker_queue_nothing(store: Store, bucket: str, obj) -> None:
    await store.commit_version(obj(bucket, "small", inline=b"hello", size=5))
    again = await store.commit_version(obj(bucket, "small", inline=b"bye", size=3))
    assert len(again.replaced) == 1
    assert (await store.get_version(bucket, "small")).inline == b"bye"
    await store.update_bucket(bucket, versioning="Suspended")
    await store.delete_object(bucket, "small")  # null delete marker replaces the null version
    assert await collected(store) == []


async def test_versioning_enabled(store: Store, bucket: str, obj) -> None:
    await store.update_bucket(bucket, versioning="Enabled")
    v1 = (await store.commit_version(obj(bucket, "k"))).version
    v2 = (await store.commit_version(obj(bucket, "k"))).version
    assert v1.version_id != v2.version_id and NULL_VERSION not in (v1.version_id, v2.version_id)
    assert v2.version_id < v1.version_id  # ids sort newest first
    assert await collected(store) == []  # nothing replaced
    assert (await store.get_version(bucket, "k")).version_id == v2.version_id
    old = await store.get_version(bucket, "k", v1.version_id)
    assert old.object_id == v1.object_id and not old.is_latest

    marker = await store.delete_object(bucket, "k")
    assert marker.delete_marker
    with pytest.raises(ObjectNotFound) as e:
        await store.get_version(bucket, "k")
    assert e.value.delete_marker and e.value.version_id == marker.version_id
    page = await store.list_versions(bucket)
    assert [(v.version_id, v.is_latest, v.is_delete_marker) for v in page.entries] == [
        (marker.version_id, True, True), (v2.version_id, False, False),
        (v1.version_id, False, False),
    ]
    assert (await store.list_objects(bucket)).entries == ()

    # Removing the delete marker by id makes v2 the latest again.
    gone = await store.delete_object(bucket, "k", marker.version_id)
    assert gone.delete_marker and gone.version_id == marker.version_id
    assert (await store.get_version(bucket, "k")).version_id == v2.version_id
    # Removing the latest version for good: v1 becomes latest, v2's shards are queued.
    await store.delete_object(bucket, "k", v2.version_id)
    assert (await store.get_version(bucket, "k")).version_id == v1.version_id
    assert await collected(store) == [ShardRef(v2.object_id, 7, 1, 6, None)]
    assert [e.key for e in (await store.list_objects(bucket)).entries] == ["k"]
    with pytest.raises(VersionNotFound):
        await store.get_version(bucket, "k", v2.version_id)
    with pytest.raises(VersionNotFound):
        await store.get_version(bucket, "k", "not-an-id")


async def test_versioning_suspended_replaces_only_null(store: Store, bucket: str, obj) -> None:
    before = (await store.commit_version(obj(bucket, "k"))).version  # null, pre-versioning
    await store.update_bucket(bucket, versioning="Enabled")
    kept = (await store.commit_version(obj(bucket, "k"))).version
    await store.update_bucket(bucket, versioning="Suspended")
    new_null = await store.commit_version(obj(bucket, "k"))
    assert new_null.version.version_id == NULL_VERSION
    assert [r.object_id for r in new_null.replaced] == [before.object_id]
    ids = [v.version_id for v in (await store.list_versions(bucket)).entries]
    assert ids == [NULL_VERSION, kept.version_id]
    marker = await store.delete_object(bucket, "k")
    assert marker.delete_marker and marker.version_id == NULL_VERSION
    entries = (await store.list_versions(bucket)).entries
    assert [(v.version_id, v.is_delete_marker) for v in entries] == [
        (NULL_VERSION, True), (kept.version_id, False)
    ]
    refs = await collected(store)
    assert {r.object_id for r in refs} == {before.object_id, new_null.version.object_id}


async def test_conditional_commits(store: Store, bucket: str, obj) -> None:
    first = (await store.commit_version(obj(bucket, "k", etag="a" * 32))).version
    with pytest.raises(PreconditionFailed):
        await store.commit_version(obj(bucket, "k"), if_none_match="*")
    with pytest.raises(PreconditionFailed):
        await store.commit_version(obj(bucket, "k"), if_match="b" * 32)
    with pytest.raises(PreconditionFailed):
        await store.commit_version(obj(bucket, "missing"), if_match="a" * 32)
    # Failed preconditions changed nothing and queued nothing.
    assert (await store.get_version(bucket, "k")).object_id == first.object_id
    assert await collected(store) == []
    ok = await store.commit_version(obj(bucket, "k"), if_match='"' + "a" * 32 + '"')
    assert ok.replaced[0].object_id == first.object_id
    await store.commit_version(obj(bucket, "fresh"), if_none_match="*")
    with pytest.raises(PreconditionFailed):
        await store.delete_object(bucket, "k", if_match="c" * 32)
    assert (await store.get_version(bucket, "k")).object_id == ok.version.object_id
    # A delete marker is "no current version" for If-None-Match.
    await store.update_bucket(bucket, versioning="Enabled")
    await store.delete_object(bucket, "fresh")
    await store.commit_version(obj(bucket, "fresh"), if_none_match="*")


async def test_if_none_match_with_an_etag(store: Store, bucket: str, obj) -> None:
    """If-None-Match: <etag> refuses only a current version with that etag."""
    a, b = "a" * 32, "b" * 32
    fresh = await store.commit_version(obj(bucket, "k", etag=a), if_none_match=f'"{b}"')
    assert fresh.version.etag == a  # no object yet: any etag holds
    for refused in (a, f'"{a}"', "*"):
        with pytest.raises(PreconditionFailed):
            await store.commit_version(obj(bucket, "k", etag=b), if_none_match=refused)
    assert (await store.get_version(bucket, "k")).object_id == fresh.version.object_id
    assert await collected(store) == []  # a refused commit changed and queued nothing
    second = await store.commit_version(obj(bucket, "k", etag=b), if_none_match="c" * 32)
    assert second.replaced[0].object_id == fresh.version.object_id
    # Versioned: only the current version counts, and a delete marker is none.
    await store.update_bucket(bucket, versioning="Enabled")
    third = await store.commit_version(obj(bucket, "k", etag=a), if_none_match=a)
    with pytest.raises(PreconditionFailed):
        await store.commit_version(obj(bucket, "k", etag=b), if_none_match=a, if_match="*")
    await store.delete_object(bucket, "k")
    fourth = await store.commit_version(obj(bucket, "k", etag=a), if_none_match=b)
    kept = [v.object_id for v in (await store.list_versions(bucket)).entries
            if not v.is_delete_marker]
    assert kept == [fourth.version.object_id, third.version.object_id,
                    second.version.object_id]


async def test_if_none_match_race_has_one_winner(store: Store, bucket: str, obj) -> None:
    async def attempt(i: int) -> str | None:
        try:
            res = await store.commit_version(obj(bucket, "lock"), if_none_match="*")
            return res.version.object_id
        except PreconditionFailed:
            return None

    results = await asyncio.gather(*(attempt(i) for i in range(64)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert (await store.get_version(bucket, "lock")).object_id == winners[0]
    assert await collected(store) == []


async def test_200_concurrent_commits_all_succeed(store: Store, bucket: str, obj) -> None:
    versions = [obj(bucket, f"dir/{i:03d}", size=i) for i in range(200)]
    results = await asyncio.gather(*(store.commit_version(v) for v in versions))
    assert [r.version.object_id for r in results] == [v.object_id for v in versions]
    assert await store.bucket_usage(bucket) == (200, sum(range(200)))
    page = await store.list_objects(bucket, prefix="dir/")
    assert [e.key for e in page.entries] == [f"dir/{i:03d}" for i in range(200)]


async def test_pending_writes(store: Store, bucket: str, obj) -> None:
    v = obj(bucket, "k", parts=2)
    for tag in ("p1", "p2"):
        await store.begin_write(PendingWrite(v.object_id, tag, bucket, "k", 7, 1, 6, 100.0))
    lost = PendingWrite("f" * 32, None, bucket, "other", 3, 1, 6, 50.0)
    await store.begin_write(lost)
    assert {p.shard_tag for p in await store.stale_writes(200.0)} == {"p1", "p2", None}
    assert await store.stale_writes(60.0) == [lost]
    await store.commit_version(v)
    assert await store.stale_writes(200.0) == [lost]
    await store.abort_write(lost)
    assert await store.stale_writes(200.0) == []
    assert await collected(store) == [ShardRef("f" * 32, 3, 1, 6, None)]


async def test_tags_and_unicode_keys(store: Store, bucket: str, obj) -> None:
    keys = ["naïve/ファイル.txt", "a//b///c", "trailing/", "/leading", "😀", "z"]
    for k in keys:
        await store.commit_version(obj(bucket, k))
    listed = [e.key for e in (await store.list_objects(bucket)).entries]
    assert listed == sorted(keys, key=lambda k: k.encode())
    tagged = await store.update_version(bucket, "trailing/", None, tags={"team": "ops"})
    assert (await store.get_version(bucket, "trailing/")).tags == {"team": "ops"} == tagged.tags
    with pytest.raises(ValueError):
        await store.commit_version(obj(bucket, "bad\udc80"))


async def test_failed_op_does_not_fail_its_batch(store: Store, bucket: str, obj) -> None:
    await store.commit_version(obj(bucket, "taken"))
    ops = [store.commit_version(obj(bucket, f"k{i}")) for i in range(20)]
    ops.insert(10, store.commit_version(obj(bucket, "taken"), if_none_match="*"))
    results = await asyncio.gather(*ops, return_exceptions=True)
    assert isinstance(results[10], PreconditionFailed)
    assert sum(1 for r in results if isinstance(r, Exception)) == 1
    assert (await store.bucket_usage(bucket))[0] == 21


async def test_a_delete_guard_judges_the_version_as_it_is_at_removal(
    store: Store, bucket: str, obj
) -> None:
    # Object Lock's race: a caller reads the version (no hold), a legal hold is set, then
    # the caller deletes. The guard runs in the removal's transaction, so it sees the hold.
    await store.update_bucket(bucket, versioning="Enabled")
    version = (await store.commit_version(obj(bucket, "k"))).version
    seen = await store.get_version(bucket, "k", version.version_id)
    assert "x-amz-object-lock-legal-hold" not in seen.headers
    await store.update_version(bucket, "k", version.version_id,
                               headers={"x-amz-object-lock-legal-hold": "ON"})

    def held(found) -> bool:
        return found.headers.get("x-amz-object-lock-legal-hold") == "ON"

    with pytest.raises(VersionProtected):
        await store.delete_object(bucket, "k", version.version_id, refuse=held)
    kept = await store.get_version(bucket, "k", version.version_id)
    assert kept.object_id == version.object_id
    assert await collected(store) == []  # nothing queued for collection either
    await store.update_version(bucket, "k", version.version_id,
                               headers={"x-amz-object-lock-legal-hold": "OFF"})
    result = await store.delete_object(bucket, "k", version.version_id, refuse=held)
    assert result.version_id == version.version_id
    with pytest.raises((VersionNotFound, ObjectNotFound)):
        await store.get_version(bucket, "k", version.version_id)
