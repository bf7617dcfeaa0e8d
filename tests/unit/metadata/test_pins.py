"""What records pin on pods (find_parts, partition_parts): the healer's and the
scrubber's view of the metadata, on every backend."""

from __future__ import annotations

import os
import time

from kurastore.metadata import PartLayout, PartRecord, PendingWrite, UploadRecord


async def test_find_parts_of_a_version(store, bucket, obj) -> None:
    v = obj(bucket, "a", size=3000, parts=3, partition=9, epoch=2)
    await store.commit_version(v)
    parts = await store.find_parts(v.object_id)
    assert [(p.shard_tag, p.size, p.kind) for p in parts] == [
        ("p1", 1000, "version"), ("p2", 1000, "version"), ("p3", 1000, "version")]
    first = parts[0]
    assert (first.partition, first.epoch, first.width) == (9, 2, 6)
    assert (first.k, first.m, first.block_size) == (4, 2, 1 << 20)
    assert first.written == v.last_modified
    assert await store.find_parts(os.urandom(16).hex()) == []


async def test_removed_and_inline_versions_pin_nothing(store, bucket, obj) -> None:
    v = obj(bucket, "a")
    await store.commit_version(v)
    await store.delete_object(bucket, "a")
    assert await store.find_parts(v.object_id) == []
    small = obj(bucket, "small", inline=b"tiny")
    await store.commit_version(small)
    assert await store.find_parts(small.object_id) == []


async def test_upload_parts_and_pending_writes(store, bucket) -> None:
    oid = os.urandom(16).hex()
    now = time.time()
    await store.create_upload(UploadRecord("u1", bucket, "big", oid, now, k=4, m=2,
                                           block_size=1 << 20, partition=3, epoch=1))
    await store.put_part(PartRecord("u1", PartLayout(1, "t1", 5000, "e" * 32), now))
    await store.begin_write(PendingWrite(oid, "t2", bucket, "big", 3, 1, 6, now))
    parts = await store.find_parts(oid)
    assert [(p.kind, p.shard_tag, p.size) for p in parts] == [
        ("pending", "t2", -1), ("upload", "t1", 5000)]
    assert parts[1].width == 6 and parts[1].k == 4
    assert [p.object_id for p in await store.partition_parts(3)] == [oid, oid]


async def test_partition_parts_spans_epochs(store, bucket, obj) -> None:
    a = obj(bucket, "a", partition=5, epoch=1)
    b = obj(bucket, "b", partition=5, epoch=3)
    elsewhere = obj(bucket, "c", partition=6, epoch=1)
    for v in (a, b, elsewhere):
        await store.commit_version(v)
    found = await store.partition_parts(5)
    assert [(p.epoch, p.object_id) for p in found] == [(1, a.object_id), (3, b.object_id)]
    assert await store.partition_parts(4) == []
    await store.repin_partition(5, 1, 3)
    assert {p.epoch for p in await store.partition_parts(5)} == {3}
