"""Multipart uploads: lifecycle, what gets queued for collection, S3 upload listing."""

from __future__ import annotations

import dataclasses
import time

import pytest

from kurastore.metadata import (
    REMOVED_VERSION_GRACE_S,
    BucketNotFound,
    ObjectNotFound,
    PartitionChanged,
    PartLayout,
    PartRecord,
    PartReplaced,
    PendingWrite,
    PreconditionFailed,
    ShardRef,
    Store,
    UploadNotFound,
    UploadRecord,
    UploadRepinned,
)


def upload(bucket: str, key: str, uid: str, initiated: float = 0.0) -> UploadRecord:
    return UploadRecord(
        upload_id=uid, bucket=bucket, key=key, object_id=uid.ljust(32, "0")[:32],
        initiated=initiated or time.time(), content_type="text/plain",
        user_meta={"color": "blue"}, checksum_algorithm="CRC32", checksum_type="COMPOSITE",
        k=4, m=2, block_size=1 << 20, partition=9, epoch=3,
    )


def part(uid: str, n: int, tag: str, size: int = 5 << 20) -> PartRecord:
    return PartRecord(uid, PartLayout(n, tag, size, f"{n:032x}", {"CRC32": "AAAA"}), time.time())


async def collected(store: Store) -> list[ShardRef]:
    items = await store.take_collect(time.time() + REMOVED_VERSION_GRACE_S + 1, limit=1000)
    await store.done_collect([i for i, _ in items])
    return [ref for _, ref in items]


async def test_lifecycle_and_queued_shards(store: Store, bucket: str, obj) -> None:
    up = upload(bucket, "big.bin", "u1")
    await store.create_upload(up)
    assert await store.get_upload("u1") == up
    await store.begin_write(PendingWrite(up.object_id, "t1", bucket, "big.bin", 9, 3, 6, 1.0))
    await store.put_part(part("u1", 1, "t1"))
    assert await store.stale_writes(2.0) == []  # put_part cleared the part's pending write
    await store.put_part(part("u1", 2, "t2"))
    await store.put_part(part("u1", 3, "t3"))
    await store.put_part(part("u1", 2, "t2b"))  # re-upload of part 2: t2 is orphaned
    await store.put_part(part("u1", 3, "t3"))  # same tag again: nothing orphaned
    assert await collected(store) == [ShardRef(up.object_id, 9, 3, 6, "t2")]

    page = await store.list_parts("u1", max_parts=2)
    assert [p.part.part_number for p in page.parts] == [1, 2] and page.is_truncated
    assert page.next_part_number_marker == 2 and page.parts[1].part.shard_tag == "t2b"
    rest = await store.list_parts("u1", part_number_marker=2)
    assert [p.part.part_number for p in rest.parts] == [3] and not rest.is_truncated

    final = dataclasses.replace(
        obj(bucket, "big.bin"), object_id=up.object_id, partition=9, epoch=3,
        parts=(page.parts[0].part, page.parts[1].part),
    )
    await store.commit_version(obj(bucket, "big.bin", etag="e" * 32))
    with pytest.raises(PreconditionFailed):
        await store.complete_upload("u1", final, if_match="f" * 32)
    assert (await store.get_upload("u1")).upload_id == "u1"  # untouched
    assert await collected(store) == []
    res = await store.complete_upload("u1", final, if_match="e" * 32)
    assert res.version.object_id == up.object_id and len(res.replaced) == 1
    refs = await collected(store)
    assert ShardRef(up.object_id, 9, 3, 6, "t3") in refs  # unused part 3
    assert ShardRef(res.replaced[0].object_id, 7, 1, 6, None) in refs  # replaced version
    assert len(refs) == 2
    with pytest.raises(UploadNotFound):
        await store.get_upload("u1")
    got = await store.get_version(bucket, "big.bin")
    assert [p.shard_tag for p in got.parts] == ["t1", "t2b"]



async def test_complete_with_if_none_match_etag(store: Store, bucket: str, obj) -> None:
    up = upload(bucket, "m", "u1")
    await store.create_upload(up)
    await store.put_part(part("u1", 1, "t1"))
    final = dataclasses.replace(obj(bucket, "m"), object_id=up.object_id, partition=9,
                                epoch=3, parts=(part("u1", 1, "t1").part,))
    current = (await store.commit_version(obj(bucket, "m", etag="e" * 32))).version
    for refused in ("e" * 32, '"' + "e" * 32 + '"'):
        with pytest.raises(PreconditionFailed):
            await store.complete_upload("u1", final, if_none_match=refused)
    assert (await store.get_upload("u1")).upload_id == "u1"  # untouched
    assert (await store.get_version(bucket, "m")).object_id == current.object_id
    assert await collected(store) == []
    res = await store.complete_upload("u1", final, if_none_match="f" * 32)
    assert res.version.object_id == up.object_id
    assert [v.object_id for v in res.replaced] == [current.object_id]

async def test_abort_and_bucket_delete(store: Store, bucket: str) -> None:
    await store.create_upload(upload(bucket, "a", "u1"))
    await store.put_part(part("u1", 1, "t1"))
    await store.abort_upload("u1")
    assert await collected(store) == [ShardRef("u1".ljust(32, "0"), 9, 3, 6, None)]
    for call in (store.abort_upload("u1"), store.put_part(part("u1", 2, "x")),
                 store.list_parts("u1"), store.get_upload("u1")):
        with pytest.raises(UploadNotFound):
            await call
    with pytest.raises(BucketNotFound):
        await store.create_upload(upload("nobucket", "a", "u2"))
    await store.create_upload(upload(bucket, "b", "u3"))
    await store.delete_bucket(bucket)  # uploads in progress are aborted
    assert await collected(store) == [ShardRef("u3".ljust(32, "0"), 9, 3, 6, None)]
    with pytest.raises(UploadNotFound):
        await store.get_upload("u3")


async def test_list_uploads_s3_order_and_markers(store: Store, bucket: str) -> None:
    specs = [("b/x", "u4"), ("a", "u1"), ("a", "u2"), ("b/y", "u5"), ("c", "u6"), ("a", "u3")]
    for n, (key, uid) in enumerate(specs):
        await store.create_upload(upload(bucket, key, uid, initiated=100.0 + n))
    everything = await store.list_uploads(bucket)
    assert [(u.key, u.upload_id) for u in everything.uploads] == [
        ("a", "u1"), ("a", "u2"), ("a", "u3"), ("b/x", "u4"), ("b/y", "u5"), ("c", "u6")
    ]
    first = await store.list_uploads(bucket, max_uploads=2)
    assert [u.upload_id for u in first.uploads] == ["u1", "u2"] and first.is_truncated
    assert (first.next_key_marker, first.next_upload_id_marker) == ("a", "u2")
    second = await store.list_uploads(
        bucket, key_marker="a", upload_id_marker="u2", max_uploads=2
    )
    assert [u.upload_id for u in second.uploads] == ["u3", "u4"]
    after_key = await store.list_uploads(bucket, key_marker="a")
    assert [u.upload_id for u in after_key.uploads] == ["u4", "u5", "u6"]
    grouped = await store.list_uploads(bucket, delimiter="/")
    assert [u.upload_id for u in grouped.uploads] == ["u1", "u2", "u3", "u6"]
    assert grouped.common_prefixes == ("b/",)
    prefixed = await store.list_uploads(bucket, prefix="b/", max_uploads=1)
    assert [u.upload_id for u in prefixed.uploads] == ["u4"] and prefixed.is_truncated


async def test_complete_refuses_a_part_replaced_since_it_was_read(
    store: Store, bucket: str, obj
) -> None:
    """Complete read part 1 (tag t1), then a retry of part 1 replaced it (t1b, t1 queued
    for collection) before the commit: committing t1 would name collected shards."""
    up = upload(bucket, "raced.bin", "u9")
    await store.create_upload(up)
    await store.put_part(part("u9", 1, "t1", size=1000))
    read = (await store.list_parts("u9")).parts[0].part
    await store.put_part(part("u9", 1, "t1b", size=1000))  # the retry commits first
    assert await collected(store) == [ShardRef(up.object_id, 9, 3, 6, "t1")]
    final = dataclasses.replace(obj(bucket, "raced.bin"), object_id=up.object_id,
                                partition=9, epoch=3, parts=(read,))
    with pytest.raises(PartReplaced):
        await store.complete_upload("u9", final)
    assert (await store.get_upload("u9")).upload_id == "u9"  # untouched
    assert await collected(store) == []
    with pytest.raises(ObjectNotFound):
        await store.get_version(bucket, "raced.bin")
    current = (await store.list_parts("u9")).parts[0].part
    final = dataclasses.replace(final, parts=(current,))
    await store.complete_upload("u9", final)
    assert [p.shard_tag for p in (await store.get_version(bucket, "raced.bin")).parts] == ["t1b"]
    assert await collected(store) == []


async def test_complete_pins_the_version_where_the_upload_is_now(store: Store, bucket: str,
                                                                 obj) -> None:
    """The gateway builds the version from the upload it read when Complete began; if the
    rebalancer copied the parts and re-pinned the upload meanwhile (then deletes the old
    copies after its grace), the version must be pinned to the upload's new epoch, never
    to the one read earlier."""
    for epoch in (3, 4):
        await store.save_placement_map(epoch, "{}")
    up = upload(bucket, "moving.bin", "u9")
    await store.create_upload(up)
    await store.put_part(part("u9", 1, "t1"))
    seen = await store.get_upload("u9")  # Complete begins: epoch 3
    assert await store.repin_partition(9, 3, 4) == 1  # the rebalancer moves partition 9
    final = dataclasses.replace(
        obj(bucket, "moving.bin"), object_id=up.object_id, partition=seen.partition,
        epoch=seen.epoch, parts=(part("u9", 1, "t1").part,),
    )
    res = await store.complete_upload("u9", final)
    assert res.version.epoch == 4
    assert (await store.get_version(bucket, "moving.bin")).epoch == 4
    assert await store.epochs_in_use() == {4}  # nothing pins the epoch being emptied


async def test_repin_moves_nothing_when_a_part_was_stored_since_the_copy(
        store: Store, bucket: str) -> None:
    """An upload's parts inherit its epoch: a part stored after the rebalancer read the
    partition was never copied, so the re-pin naming the copied parts must refuse and
    leave every record where it is (the rebalancer reads the partition again)."""
    for epoch in (3, 4):
        await store.save_placement_map(epoch, "{}")
    up = upload(bucket, "growing.bin", "u7")
    await store.create_upload(up)
    await store.put_part(part("u7", 1, "t1"))
    copied = {(up.object_id, "t1")}  # what the rebalancer read and copied
    await store.put_part(part("u7", 2, "t2"))  # the client's next part, meanwhile
    with pytest.raises(PartitionChanged):
        await store.repin_partition(9, 3, 4, copied=copied)
    assert (await store.get_upload("u7")).epoch == 3
    # A write still streaming to the old pods refuses the move too.
    pending = PendingWrite(up.object_id, "t3", bucket, "growing.bin", 9, 3, 6, time.time())
    await store.begin_write(pending)
    with pytest.raises(PartitionChanged):
        await store.repin_partition(9, 3, 4, copied=copied | {(up.object_id, "t2")})
    await store.abort_write(pending)
    # Once everything there was copied, it moves.
    assert await store.repin_partition(9, 3, 4, copied=copied | {(up.object_id, "t2")}) == 1
    assert (await store.get_upload("u7")).epoch == 4


async def test_a_part_written_under_the_epoch_its_upload_left_is_refused(
        store: Store, bucket: str) -> None:
    """A part whose shards went to the old epoch's pods (its write read the upload before
    the re-pin) must not be recorded under the moved upload: the client retries it."""
    for epoch in (3, 4):
        await store.save_placement_map(epoch, "{}")
    up = upload(bucket, "late.bin", "u8")
    await store.create_upload(up)
    pending = PendingWrite(up.object_id, "t1", bucket, "late.bin", 9, 3, 6, time.time())
    await store.begin_write(pending)  # part 1 streams to epoch 3's pods
    assert await store.repin_partition(9, 3, 4) == 2  # an unchecked move (upload, pending)
    await store.abort_write(pending)
    await store.begin_write(pending)  # as a writer that read the upload before the move
    with pytest.raises(UploadRepinned):
        await store.put_part(part("u8", 1, "t1"))
    assert (await store.list_parts("u8")).parts == ()
    await store.abort_write(pending)
    retry = dataclasses.replace(pending, shard_tag="t2", epoch=4)
    await store.begin_write(retry)  # the client's retry, under the upload's epoch
    await store.put_part(part("u8", 1, "t2"))
    assert [p.part.shard_tag for p in (await store.list_parts("u8")).parts] == ["t2"]
