"""The facade's pass-throughs: buckets, listing, delete and collection, tags, identity,
pod health."""

from __future__ import annotations

import pytest

from kurastore.gateway.maintenance.collect import collect_once, run_collector
from kurastore.gateway.objects.errors import QuorumNotReached
from kurastore.metadata import BucketNotEmpty, ObjectNotFound, UserExists

from .conftest import MiB, after_read_grace, random_bytes


async def test_delete_then_collector_removes_shards(cluster):
    v = await cluster.put("k", random_bytes(2 * MiB))
    assert len(cluster.pods.shard_names(v.object_id)) == 6
    await cluster.service.delete_object("b", "k")
    # Deleting never touches pods inline.
    assert len(cluster.pods.shard_names(v.object_id)) == 6
    with pytest.raises(ObjectNotFound):
        await cluster.service.open_object("b", "k")
    # Not before readers that opened the version can have finished.
    assert await collect_once(cluster.store, cluster.pods, cluster.topology) == 0
    assert await collect_once(cluster.store, cluster.pods, cluster.topology,
                              now=after_read_grace()) == 1
    assert cluster.pods.shard_names() == []


async def test_run_collector_loop_stops(cluster):
    import asyncio

    # A write that failed after four pods stored their shards: collectable at once.
    for pod in cluster.pods.pods[4:]:
        pod.stall_commit = True
    with pytest.raises(QuorumNotReached):
        await cluster.put("k", random_bytes(MiB + 1))
    assert len(cluster.pods.shard_names()) == 4
    cluster.pods.revive(4, 5)
    stop = asyncio.Event()
    task = asyncio.create_task(run_collector(cluster.store, cluster.pods, cluster.topology,
                                             interval_s=0.01, stop_event=stop))
    for _ in range(200):
        if not cluster.pods.shard_names():
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert cluster.pods.shard_names() == []


async def test_inline_delete_is_collected_without_pods(cluster):
    await cluster.put("small", b"tiny")
    await cluster.service.delete_object("b", "small")
    await collect_once(cluster.store, cluster.pods, cluster.topology)
    assert await cluster.store.take_collect(float("inf")) == []


async def test_buckets_and_listing(cluster):
    svc = cluster.service
    await svc.create_bucket("other", owner="owner-2", region="eu-west-1")
    assert [b.name for b in await svc.list_buckets("owner-1")] == ["b"]
    for key in ("a/1", "a/2", "b"):
        await cluster.put(key, b"x" * 3)
    page = await svc.list_objects("b", delimiter="/")
    assert [e.key for e in page.entries] == ["b"] and page.common_prefixes == ("a/",)
    assert await svc.bucket_usage("b") == (3, 9)
    with pytest.raises(BucketNotEmpty):
        await svc.delete_bucket("b")
    await svc.delete_bucket("other")
    assert [b.name for b in await svc.list_buckets()] == ["b"]


async def test_versioned_bucket_keeps_versions(cluster):
    svc = cluster.service
    await svc.update_bucket("b", versioning="Enabled")
    one = await cluster.put("k", random_bytes(MiB))
    two_data = random_bytes(100)
    await cluster.put("k", two_data)
    assert one.version_id not in ("", "null")
    assert await cluster.read("k", version_id=one.version_id) != two_data
    deleted = await svc.delete_object("b", "k")
    assert deleted.delete_marker
    with pytest.raises(ObjectNotFound):
        await svc.head_object("b", "k")
    with pytest.raises(ObjectNotFound) as info:
        await svc.open_object("b", "k", version_id=deleted.version_id)
    assert info.value.delete_marker
    page = await svc.list_versions("b")
    assert len(page.entries) == 3


async def test_tags(cluster):
    await cluster.put("k", b"abc")
    v = await cluster.service.put_object_tags("b", "k", None, {"x": "y"})
    assert dict(v.tags) == {"x": "y"}
    assert dict((await cluster.service.head_object("b", "k")).tags) == {"x": "y"}


async def test_identity(cluster):
    svc = cluster.service
    user, key = await svc.create_user("alice")
    assert len(key.access_key) == 20 and key.access_key.isalnum() and key.access_key.isupper()
    assert len(key.secret_key) == 40
    assert await svc.lookup_secret(key.access_key) == (key.secret_key, user.user_id)
    assert await svc.lookup_secret("NOPE" * 5) is None
    second = await svc.create_access_key(user.user_id)
    assert {k.access_key for k in await svc.list_access_keys(user.user_id)} == {
        key.access_key, second.access_key}
    await svc.delete_access_key(key.access_key)
    assert await svc.lookup_secret(key.access_key) is None  # the cache forgot it
    with pytest.raises(UserExists):
        await svc.create_user("alice")
    root, _ = await svc.create_user("root", is_admin=True, access_key="ROOTKEY0000000000000",
                                    secret_key="s" * 40)
    assert await svc.lookup_secret("ROOTKEY0000000000000") == ("s" * 40, root.user_id)
    await svc.delete_user(user.user_id)
    assert await svc.lookup_secret(second.access_key) is None
    assert [u.name for u in await svc.list_users()] == ["root"]


async def test_pod_status_and_readiness(cluster):
    await cluster.put("k", random_bytes(MiB))
    cluster.pods.kill(1)
    status = await cluster.service.pod_status()
    assert [(s.pod_id, s.ready) for s in status] == [
        (f"pod-{i}", i != 1) for i in range(6)
    ]
    assert sum(s.usage.shards for s in status if s.usage) == 5
    ready, detail = await cluster.service.readiness()
    assert ready and detail["pods_ready"] == 5
    cluster.pods.kill(2)
    ready, _ = await cluster.service.readiness()
    assert not ready
    summary = await cluster.service.cluster_status()
    assert summary["epoch"] == 1 and len(summary["pods"]) == 6


async def test_new_writes_use_the_new_epoch_and_reads_the_pinned_one(cluster):
    from kurastore.placement import PlacementMap

    first_data = random_bytes(MiB + 1)
    first = await cluster.put("a", first_data)
    old = cluster.topology.current
    new = PlacementMap(old.epoch + 1, old.partition_bits, old.width, old.pods,
                       tuple(row[1:] + row[:1] for row in old.assignment))
    await cluster.store.save_placement_map(new.epoch, new.to_json())
    await cluster.topology.refresh()
    second_data = random_bytes(MiB + 2)
    second = await cluster.put("b", second_data)
    assert (first.epoch, second.epoch) == (old.epoch, new.epoch)
    for version, pmap in ((first, old), (second, new)):
        holders = pmap.pods_for(version.partition)
        where = dict((name.rsplit(".", 1)[1], pod)
                     for pod, name in cluster.pods.shard_names(version.object_id))
        assert [where[str(i)] for i in range(6)] == list(holders)
    assert await cluster.read("a") == first_data
    assert await cluster.read("b") == second_data
