"""The data path under failure: dead, hung and corrupt pods, cancelled PUTs, moved data."""

from __future__ import annotations

import asyncio

import pytest

from kurastore.gateway.maintenance.collect import collect_once
from kurastore.gateway.objects.api import PutOptions
from kurastore.gateway.objects.errors import DataLost, DataUnavailable, QuorumNotReached
from kurastore.metadata import ObjectNotFound
from kurastore.placement import PlacementMap
from kurastore.storage import ShardId

from .conftest import KiB, MiB, after_read_grace, random_bytes

SIZE = 3 * MiB + 12_345


def pods_of(cluster, version) -> list[str]:
    """Pod ids holding block 0..k+m-1 of the version, in block order."""
    pmap = cluster.topology.current
    return list(pmap.pods_for(version.partition, version.k + version.m))


async def heal_items(cluster):
    return [item for _id, item in await cluster.store.take_heal(1000)]


async def test_losing_m_pods_reads_exact_bytes(cluster):
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    holders = pods_of(cluster, version)
    cluster.pods.kill(holders[0], holders[2])  # two data blocks
    assert await cluster.read("k") == data
    assert cluster.service.stats.degraded_reads == 1
    assert cluster.service.stats.degraded_stripes == 4
    queued = {(i.index, i.reason) for i in await heal_items(cluster)}
    assert queued == {(0, "unreachable"), (2, "unreachable")}


async def test_losing_parity_pods_is_not_degraded(cluster):
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    holders = pods_of(cluster, version)
    cluster.pods.kill(holders[4], holders[5])
    assert await cluster.read("k") == data
    assert cluster.service.stats.degraded_reads == 0


async def test_missing_shards_are_rebuilt(cluster):
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    holders = pods_of(cluster, version)
    cluster.pods.drop_shards(holders[1], version.object_id)
    assert await cluster.read("k") == data
    assert [(i.index, i.reason) for i in await heal_items(cluster)] == [(1, "missing")]


async def test_corrupt_frame_is_detected_and_rebuilt(cluster):
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    holders = pods_of(cluster, version)
    # Flip one payload byte of stripe 1's frame of block 3.
    frame_size = 32 + MiB // 4
    assert cluster.pods.corrupt(holders[3], version.object_id, frame_size + 32 + 1000) == 1
    assert await cluster.read("k") == data
    assert cluster.service.stats.degraded_stripes == 1
    assert [(i.index, i.reason) for i in await heal_items(cluster)] == [(3, "corrupt")]


async def test_more_than_m_pods_down_is_data_unavailable(cluster):
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    holders = pods_of(cluster, version)
    cluster.pods.kill(*holders[:3])
    with pytest.raises(DataUnavailable):  # worth a retry: the pods may come back
        await cluster.read("k")


async def test_more_than_m_blocks_gone_from_live_pods_is_data_lost(cluster):
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    holders = pods_of(cluster, version)
    for pod in holders[:3]:
        cluster.pods.drop_shards(pod, version.object_id)
    with pytest.raises(DataLost) as lost:
        await cluster.read("k")
    assert not isinstance(lost.value, DataUnavailable)  # every pod answered: no retry helps


async def test_hung_pod_on_read_falls_back_to_parity(make_cluster):
    cluster = await make_cluster(pod_timeout_s=0.2)
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    cluster.pods.hang(pods_of(cluster, version)[1])
    assert await cluster.read("k") == data
    assert cluster.service.stats.degraded_reads == 1


async def test_write_with_one_dead_pod_succeeds_and_queues_heal(cluster):
    cluster.pods.kill(0)
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    assert await cluster.read("k") == data
    holders = pods_of(cluster, version)
    if "pod-0" in holders:
        items = await heal_items(cluster)
        assert [(i.index, i.object_id) for i in items] == [
            (holders.index("pod-0"), version.object_id)
        ]
        assert cluster.service.stats.dropped_shards == 1


async def test_write_losing_m_plus_1_pods_fails_and_leaves_nothing(cluster):
    # Quorum is k+1 = 5: two dead pods of six leave four.
    cluster.pods.kill(0, 1)
    with pytest.raises(QuorumNotReached):
        await cluster.put("k", random_bytes(SIZE))
    with pytest.raises(ObjectNotFound):
        await cluster.service.head_object("b", "k")
    assert await cluster.store.stale_writes(float("inf")) == []
    assert cluster.service.stats.quorum_failures == 1
    # Whatever reached the live pods is queued, and the collector removes it.
    cluster.pods.revive(0, 1)
    await collect_once(cluster.store, cluster.pods, cluster.topology)
    assert cluster.pods.shard_names() == []


async def test_pod_dying_mid_stream_is_dropped(cluster):
    data = random_bytes(SIZE)
    sent = 0

    async def body():
        nonlocal sent
        for i in range(0, len(data), 256 * KiB):
            if sent >= MiB:
                cluster.pods.kill(3)
            sent += 256 * KiB
            yield data[i : i + 256 * KiB]

    version = await cluster.service.put_object("b", "k", body(), PutOptions())
    cluster.pods.revive(3)
    assert await cluster.read("k") == data
    if "pod-3" in pods_of(cluster, version):
        assert len(cluster.pods.shard_names(version.object_id)) == 5


async def test_hung_pod_on_write_is_dropped_after_timeout(make_cluster):
    cluster = await make_cluster(pod_timeout_s=0.2)
    cluster.pods.hang(2)
    data = random_bytes(SIZE)
    await cluster.put("k", data)
    cluster.pods.revive(2)
    assert await cluster.read("k") == data


async def test_client_disconnect_mid_body_leaves_nothing(cluster):
    data = random_bytes(8 * MiB)
    started = asyncio.Event()

    async def slow_body():
        for i in range(0, len(data), 512 * KiB):
            if i >= 3 * MiB:
                started.set()
                await asyncio.sleep(3600)  # the client stalls; then it disconnects
            yield data[i : i + 512 * KiB]

    task = asyncio.create_task(cluster.service.put_object("b", "k", slow_body(), PutOptions()))
    await started.wait()
    assert len(await cluster.store.stale_writes(float("inf"))) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ObjectNotFound):
        await cluster.service.head_object("b", "k")
    assert await cluster.store.stale_writes(float("inf")) == []
    assert len(await cluster.store.take_collect(float("inf"))) == 1
    assert await collect_once(cluster.store, cluster.pods, cluster.topology) == 1
    assert cluster.pods.shard_names() == []


async def test_cancel_after_shards_stored_is_collected(make_cluster):
    cluster = await make_cluster(pod_timeout_s=30)
    data = random_bytes(2 * MiB)
    cluster.pods.pods[5].stall_commit = True  # takes the whole body, never answers
    task = asyncio.create_task(cluster.put("k", data))
    for _ in range(500):
        if len(cluster.pods.shard_names()) >= 4:
            break
        await asyncio.sleep(0.01)
    stored = cluster.pods.shard_names()
    assert len(stored) >= 4  # the PUT now waits for the stalled pods' answers
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ObjectNotFound):
        await cluster.service.head_object("b", "k")
    assert await cluster.store.stale_writes(float("inf")) == []
    assert await collect_once(cluster.store, cluster.pods, cluster.topology) == 1
    assert cluster.pods.shard_names() == []


async def test_stale_pending_write_is_aborted_and_collected(cluster):
    # A gateway died mid-PUT: its pending write and some shards remain.
    from kurastore.metadata import PendingWrite

    pmap = cluster.topology.current
    object_id = "ab" * 16
    partition = pmap.partition_of(object_id)
    await cluster.store.begin_write(
        PendingWrite(object_id, "0", "b", "k", partition, pmap.epoch, 6, started=1000.0)
    )
    for index, pod_id in enumerate(pmap.pods_for(partition, 6)):
        await cluster.pods.put_shard(cluster.pods.pod(pod_id).url, partition,
                                     ShardId(object_id, "0", index), b"x")
    assert await collect_once(cluster.store, cluster.pods, cluster.topology,
                              pending_grace_s=3600) == 1
    assert cluster.pods.shard_names() == []


async def test_collector_retries_when_a_pod_is_down(cluster):
    version = await cluster.put("k", random_bytes(SIZE))
    await cluster.service.delete_object("b", "k")
    holders = pods_of(cluster, version)
    cluster.pods.kill(holders[0])
    due = after_read_grace()
    assert await collect_once(cluster.store, cluster.pods, cluster.topology, now=due) == 0
    assert cluster.pods.shard_names(version.object_id) == [
        (holders[0], f"{version.object_id}.0.0")
    ]
    cluster.pods.revive(holders[0])
    # Requeued with a delay: not due now, due later.
    assert await collect_once(cluster.store, cluster.pods, cluster.topology, now=due) == 0
    later = due + 3600
    assert await collect_once(cluster.store, cluster.pods, cluster.topology, now=later) == 1
    assert cluster.pods.shard_names() == []


async def test_reader_follows_a_repinned_version(cluster):
    """The rebalancer moved the partition after the reader looked the version up."""
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    reader = await cluster.service.open_object("b", "k")
    old_map = cluster.topology.current
    # Epoch 2 shifts every partition's slots by one pod: every shard moves.
    new_map = PlacementMap(old_map.epoch + 1, old_map.partition_bits, old_map.width,
                           old_map.pods, tuple(row[1:] + row[:1] for row in old_map.assignment))
    await cluster.store.save_placement_map(new_map.epoch, new_map.to_json())
    old_pods = old_map.pods_for(version.partition)
    new_pods = new_map.pods_for(version.partition)
    moved = {}
    for index, (src, dst) in enumerate(zip(old_pods, new_pods, strict=True)):
        shard = ShardId(version.object_id, "0", index)
        moved[dst, index] = await cluster.pods.read_shard(cluster.pods.pod(src).url,
                                                         version.partition, shard)
    for src in old_pods:
        cluster.pods.drop_shards(src, version.object_id)
    for (dst, index), blob in moved.items():
        await cluster.pods.put_shard(cluster.pods.pod(dst).url, version.partition,
                                     ShardId(version.object_id, "0", index), blob)
    assert await cluster.store.repin_partition(version.partition, old_map.epoch,
                                               new_map.epoch) >= 1
    got = b"".join([bytes(p) async for p in reader])
    assert got == data
