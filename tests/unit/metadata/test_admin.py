"""Users and access keys, pods, placement maps and re-pinning, work queues."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from kurastore.metadata import (
    AccessKey,
    AccessKeyNotFound,
    HealItem,
    PendingWrite,
    PlacementMapNotFound,
    PodRecord,
    ShardRef,
    Store,
    UploadRecord,
    UserExists,
    UserNotFound,
    UserRecord,
)


async def test_users_and_keys(store: Store) -> None:
    alice = UserRecord("a" * 64, "alice", 1.0, is_admin=True)
    await store.create_user(alice)
    await store.create_user(UserRecord("b" * 64, "bob", 2.0))
    with pytest.raises(UserExists):
        await store.create_user(UserRecord("c" * 64, "alice", 3.0))
    with pytest.raises(UserExists):
        await store.create_user(UserRecord("a" * 64, "carol", 3.0))
    assert await store.get_user("a" * 64) == alice
    assert await store.get_user_by_name("alice") == alice
    assert [u.name for u in await store.list_users()] == ["alice", "bob"]
    key = AccessKey("AKIAEXAMPLE1", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "a" * 64, 5.0)
    await store.create_access_key(key)
    await store.create_access_key(AccessKey("AKIAEXAMPLE2", "s2", "a" * 64, 6.0, enabled=False))
    assert await store.get_access_key("AKIAEXAMPLE1") == key
    assert [k.enabled for k in await store.list_access_keys("a" * 64)] == [True, False]
    with pytest.raises(UserNotFound):
        await store.create_access_key(AccessKey("AKIAX", "s", "z" * 64, 1.0))
    await store.delete_access_key("AKIAEXAMPLE2")
    with pytest.raises(AccessKeyNotFound):
        await store.get_access_key("AKIAEXAMPLE2")
    await store.delete_user("a" * 64)
    with pytest.raises(AccessKeyNotFound):
        await store.get_access_key("AKIAEXAMPLE1")
    for missing in (store.get_user("a" * 64), store.get_user_by_name("alice"),
                    store.delete_user("a" * 64)):
        with pytest.raises(UserNotFound):
            await missing


async def test_sqlite_secret_is_not_in_the_file_in_clear(tmp_path: Path) -> None:
    from kurastore.metadata.sqlite import SQLiteStore

    secret = "Sup3rS3cretValue/ThatMustNotLeak+0123456789"
    path = tmp_path / "meta.db"
    store = await SQLiteStore.open(str(path), secret_key=b"k" * 32)
    await store.create_user(UserRecord("a" * 64, "alice", 1.0))
    await store.create_access_key(AccessKey("AKIAFILECHECK", secret, "a" * 64, 1.0))
    await store.close()
    raw = await asyncio.to_thread(
        lambda: b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    )
    assert b"AKIAFILECHECK" in raw  # the grep does look at the data written
    assert secret.encode() not in raw
    reopened = await SQLiteStore.open(str(path), secret_key=b"k" * 32)
    assert (await reopened.get_access_key("AKIAFILECHECK")).secret_key == secret
    await reopened.close()
    wrong = await SQLiteStore.open(str(path), secret_key=b"x" * 32)
    with pytest.raises(Exception, match="does not decrypt") as err:
        await wrong.get_access_key("AKIAFILECHECK")
    assert secret not in str(err.value)
    await wrong.close()


async def test_placement_maps_and_pods(store: Store) -> None:
    assert await store.latest_placement_map() is None
    await store.save_placement_map(1, '{"e": 1}')
    await store.save_placement_map(4, '{"e": 4}')
    for bad in (4, 2):
        with pytest.raises(ValueError):
            await store.save_placement_map(bad, "{}")
    assert await store.latest_placement_map() == (4, '{"e": 4}')
    assert await store.get_placement_map(1) == '{"e": 1}'
    with pytest.raises(PlacementMapNotFound):
        await store.get_placement_map(2)
    p1 = PodRecord("pod-1", "http://10.0.0.1:9000", zone="z1", node="n1", weight=2.0)
    await store.put_pod(PodRecord("pod-2", "http://10.0.0.2:9000"))
    await store.put_pod(p1)
    await store.put_pod(dataclasses.replace(p1, state="draining"))
    assert [(p.pod_id, p.state) for p in await store.list_pods()] == [
        ("pod-1", "draining"), ("pod-2", "active")
    ]


async def test_repin_and_epochs_in_use(store: Store, bucket: str, obj) -> None:
    await store.commit_version(obj(bucket, "a", partition=5, epoch=1))
    await store.commit_version(obj(bucket, "b", partition=5, epoch=1))
    await store.commit_version(obj(bucket, "c", partition=6, epoch=1))
    await store.commit_version(obj(bucket, "d", partition=5, epoch=2))
    await store.commit_version(obj(bucket, "tiny", inline=b"x", partition=5, epoch=9))
    await store.create_upload(UploadRecord("u", bucket, "e", "0" * 32, 1.0, partition=5, epoch=1))
    await store.begin_write(PendingWrite("1" * 32, None, bucket, "f", 5, 1, 6, 1.0))
    await store.begin_write(PendingWrite("2" * 32, None, bucket, "g", 5, 3, 6, 1.0))
    assert await store.epochs_in_use() == {1, 2, 3}  # inline objects pin nothing
    assert await store.repin_partition(5, 1, 2) == 4  # a, b, the upload, the pending write
    assert (await store.get_version(bucket, "a")).epoch == 2
    assert (await store.get_version(bucket, "c")).epoch == 1
    assert (await store.get_upload("u")).epoch == 2
    assert {p.epoch for p in await store.stale_writes(5.0)} == {2, 3}
    assert await store.repin_partition(6, 1, 2) == 1
    assert await store.epochs_in_use() == {2, 3}
    assert await store.repin_partition(6, 1, 2) == 0


async def test_collect_queue(store: Store) -> None:
    now = time.time()
    refs = [ShardRef(f"{i:032x}", i, 1, 6, f"t{i}") for i in range(3)]
    await store.queue_collect(refs[:2])
    await store.queue_collect(refs[2:], not_before=now + 3600)
    due = await store.take_collect(now, limit=10)
    assert [r for _, r in due] == refs[:2]
    assert [r for _, r in await store.take_collect(now, limit=1)] == refs[:1]
    await store.done_collect([due[0][0]])
    assert [r for _, r in await store.take_collect(now + 7200)] == refs[1:]


async def test_heal_queue_dedupes(store: Store) -> None:
    item = HealItem("a" * 32, "p1", 3, 11, 2, "missing", 1.0)
    await store.queue_heal([item, item, dataclasses.replace(item, reason="corrupt", queued=2.0)])
    await store.queue_heal([dataclasses.replace(item, index=4)])
    assert await store.heal_queue_length() == 2
    taken = await store.take_heal(limit=10)
    assert [h for _, h in taken] == [item, dataclasses.replace(item, index=4)]
    await store.done_heal([taken[0][0]])
    assert await store.heal_queue_length() == 1
