"""Retired placement epochs: no write lands under an epoch the cluster has retired,
and change notices reach the gateway's caches (both backends)."""

from __future__ import annotations

import asyncio
import time

import pytest

from kurastore.metadata import (
    EpochRetired,
    MetadataUnavailable,
    PendingWrite,
    PodRecord,
    Store,
    UploadRecord,
)


def pending(epoch: int, object_id: str = "a" * 32) -> PendingWrite:
    return PendingWrite(object_id, "0", "photos", "k", 5, epoch, 6, time.time())


async def test_an_epoch_is_retired_only_when_nothing_pins_it(store: Store, bucket: str, obj):
    for epoch in (1, 2, 3):
        await store.save_placement_map(epoch, f'{{"e": {epoch}}}')
    await store.commit_version(obj(bucket, "one", epoch=1))
    await store.begin_write(pending(2))
    assert await store.retire_epochs(3) == []  # 1 pinned by a version, 2 by a pending write
    await store.abort_write(pending(2))
    assert await store.retire_epochs(3) == [2]
    assert await store.repin_partition(7, 1, 3) == 1
    assert await store.retire_epochs(99) == [1]  # never the latest (3)
    assert await store.retire_epochs(99) == []
    await store.commit_version(obj(bucket, "three", epoch=3))  # the current epoch works


async def test_no_write_lands_under_a_retired_epoch(store: Store, bucket: str, obj):
    await store.save_placement_map(1, "{}")
    await store.save_placement_map(2, "{}")
    assert await store.retire_epochs(2) == [1]
    with pytest.raises(EpochRetired):
        await store.begin_write(pending(1))
    with pytest.raises(EpochRetired):
        await store.commit_version(obj(bucket, "late", epoch=1))
    with pytest.raises(EpochRetired):
        await store.create_upload(
            UploadRecord("u1", bucket, "k", "b" * 32, 1.0, partition=5, epoch=1)
        )
    # Retryable, like an unreachable database: the S3 and Swift tables answer 503.
    assert issubclass(EpochRetired, MetadataUnavailable)
    assert await store.stale_writes(time.time() + 60) == []
    assert await store.bucket_usage(bucket) == (0, 0)
    assert await store.epochs_in_use() == set()
    # Inline objects and delete markers place no shards: no epoch to check.
    await store.commit_version(obj(bucket, "tiny", inline=b"x", epoch=1))
    await store.commit_version(obj(bucket, "now", epoch=2))
    assert (await store.bucket_usage(bucket))[0] == 2


async def test_change_notices_reach_the_callbacks(store: Store) -> None:
    seen: set[str] = set()
    both = asyncio.Event()

    def note(topic: str) -> None:
        seen.add(topic)
        if {"placement", "pods"} <= seen:
            both.set()

    store.on_change(note)
    await store.save_placement_map(1, "{}")
    await store.put_pod(PodRecord("p0", "http://127.0.0.1:1", "z", "n", 1.0, "active"))
    async with asyncio.timeout(5):  # PostgreSQL: NOTIFY through the listening connection
        await both.wait()
