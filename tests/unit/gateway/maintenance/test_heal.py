"""The healer against in-memory pods and the real SQLite store: missing and corrupt
shards are rebuilt byte-exact on their pods; gone objects, dead pods, ordering."""

from __future__ import annotations

import os
import time

from kurastore.erasure import ErasureParams, frame_owner, split_frames, verify_frame
from kurastore.gateway.maintenance.heal import order_groups
from kurastore.gateway.maintenance.throttle import Throttle
from kurastore.metadata import HealItem, ObjectVersion

KiB = 1 << 10


def item(v: ObjectVersion, index: int, reason: str, tag: str = "0") -> HealItem:
    return HealItem(v.object_id, tag, index, v.partition, v.epoch, reason, time.time())


def assert_valid_shard(data: bytes, v: ObjectVersion, index: int) -> None:
    params = ErasureParams(v.k, v.m, v.block_size)
    frames = split_frames(data, params)
    assert len(frames) == params.stripe_count(v.size)
    for stripe, frame in enumerate(frames):
        verify_frame(frame, index=index, stripe=stripe, params=params,
                     owner=frame_owner(v.object_id, "0"))


async def test_missing_shards_are_rebuilt_byte_exact(cluster) -> None:
    data = os.urandom(300 * KiB)
    v = await cluster.put("k", data)
    originals = {i: cluster.shard(v, i) for i in range(6)}
    # Two data blocks lost: the rebuild must decode from parity, not just copy.
    for index in (0, 2):
        assert cluster.pods.drop_shards(cluster.holders(v)[index], v.object_id) == 1
    await cluster.store.queue_heal([item(v, 0, "missing"), item(v, 2, "unreachable")])

    assert await cluster.healer.heal_once() == 2

    for index in (0, 2):
        assert cluster.shard(v, index) == originals[index]
        assert_valid_shard(cluster.shard(v, index), v, index)
    assert await cluster.store.heal_queue_length() == 0
    progress = cluster.healer.progress
    assert progress.healed == 2
    assert progress.bytes_rebuilt == 2 * len(originals[0])
    assert progress.bytes_read >= 4 * len(originals[0])  # k sources, each read once
    cluster.pods.kill(cluster.holders(v)[1], cluster.holders(v)[3])  # m others gone now
    assert await cluster.read("k") == data


async def test_corrupt_shard_is_replaced(cluster) -> None:
    data = os.urandom(200 * KiB)
    v = await cluster.put("k", data)
    original = cluster.shard(v, 4)  # a parity block
    assert cluster.pods.corrupt(cluster.holders(v)[4], v.object_id, 16 * KiB + 100) == 1
    assert cluster.shard(v, 4) != original
    await cluster.store.queue_heal([item(v, 4, "corrupt")])

    await cluster.heal_all()

    assert cluster.shard(v, 4) == original
    assert cluster.healer.progress.healed == 1


def _frame_offset(v: ObjectVersion, stripe: int) -> int:
    """An offset inside the payload of `stripe`'s frame in a shard of `v`."""
    return stripe * ErasureParams(v.k, v.m, v.block_size).frame_size + 100


async def test_corrupt_shards_each_bad_in_another_stripe_are_all_replaced(cluster) -> None:
    # Three of six shards corrupt, each in a different stripe: every stripe still has
    # five good frames, so the object reads back; deleting all three before rebuilding
    # (as the healer once did) would leave three shards and lose it.
    data = os.urandom(300 * KiB)
    v = await cluster.put("k", data)
    assert ErasureParams(v.k, v.m, v.block_size).stripe_count(v.size) >= 3
    originals = {i: cluster.shard(v, i) for i in range(6)}
    for index, stripe in ((0, 0), (1, 1), (2, 2)):
        assert cluster.pods.corrupt(cluster.holders(v)[index], v.object_id,
                                    _frame_offset(v, stripe)) == 1
    assert await cluster.read("k") == data
    await cluster.store.queue_heal([item(v, i, "corrupt") for i in (0, 1, 2)])

    await cluster.heal_all()

    assert {i: cluster.shard(v, i) for i in range(6)} == originals
    assert cluster.healer.progress.healed == 3
    cluster.pods.kill(cluster.holders(v)[4], cluster.holders(v)[5])
    assert await cluster.read("k") == data


async def test_a_corrupt_shard_whose_good_frames_are_needed_stays_in_place(cluster) -> None:
    # Stripe 0 has bad frames in shards 0 and 1, stripe 1 in shards 2 and 3: each
    # stripe has exactly k = 4 good frames, so no corrupt shard can be deleted without
    # losing a stripe. The healer leaves them all, and the object still reads back.
    data = os.urandom(300 * KiB)
    v = await cluster.put("k", data)
    for index, stripe in ((0, 0), (1, 0), (2, 1), (3, 1)):
        assert cluster.pods.corrupt(cluster.holders(v)[index], v.object_id,
                                    _frame_offset(v, stripe)) == 1
    damaged = {i: cluster.shard(v, i) for i in range(6)}
    await cluster.store.queue_heal([item(v, i, "corrupt") for i in range(4)])

    await cluster.healer.heal_once()

    assert {i: cluster.shard(v, i) for i in range(6)} == damaged  # nothing deleted
    assert cluster.healer.progress.healed == 0
    assert await cluster.store.heal_queue_length() == 4  # still waiting, not dropped
    assert await cluster.read("k") == data


async def _missing_5_and_corrupt_0_1(cluster) -> tuple[ObjectVersion, dict[int, bytes]]:
    """A 300 KiB object whose shard 5 is gone, shard 0 bad in stripe 0 and shard 1 in
    stripe 1; returns it and its shards as written."""
    v = await cluster.put("k", os.urandom(300 * KiB))
    originals = {i: cluster.shard(v, i) for i in range(6)}
    assert cluster.pods.drop_shards(cluster.holders(v)[5], v.object_id) == 1
    for index, stripe in ((0, 0), (1, 1)):
        assert cluster.pods.corrupt(cluster.holders(v)[index], v.object_id,
                                    _frame_offset(v, stripe)) == 1
    return v, originals


async def test_a_missing_shard_healed_first_makes_a_corrupt_one_replaceable(cluster) -> None:
    # Shard 5 is gone; shard 0 is bad in stripe 0 and shard 1 in stripe 1. Before
    # shard 5 is back, stripe 1 has only k good frames with shard 0's: shard 0 can be
    # replaced only after shard 5 is rebuilt (from the corrupt shards' good frames).
    v, originals = await _missing_5_and_corrupt_0_1(cluster)
    await cluster.store.queue_heal([item(v, 0, "corrupt"), item(v, 1, "corrupt"),
                                    item(v, 5, "missing")])

    await cluster.heal_all()

    assert {i: cluster.shard(v, i) for i in range(6)} == originals
    assert cluster.healer.progress.healed == 3


async def test_damage_found_beside_a_queued_shard_is_queued_and_healed(cluster) -> None:
    # Only shard 0 was reported (a degraded read), yet checking the other shards before
    # replacing it finds shard 1 corrupt and shard 5 gone: those are healed too, not
    # left for the scrubber's next pass.
    v, originals = await _missing_5_and_corrupt_0_1(cluster)
    await cluster.store.queue_heal([item(v, 0, "corrupt")])

    await cluster.healer.heal_once()  # shard 0 waits: stripe 1 needs its good frame
    assert await cluster.store.heal_queue_length() == 3
    for _ in range(3):  # rounds past shard 0's retry delay
        await cluster.healer.heal_once(now=time.time() + 60)

    assert {i: cluster.shard(v, i) for i in range(6)} == originals
    assert cluster.healer.progress.healed == 3
    assert await cluster.store.heal_queue_length() == 0


async def test_healthy_shard_is_left_alone(cluster) -> None:
    v = await cluster.put("k", os.urandom(100 * KiB))
    pod = cluster.pods.pod(cluster.holders(v)[1])
    writes = pod.writes
    await cluster.store.queue_heal([item(v, 1, "unreachable")])  # a read timed out once
    await cluster.heal_all()
    assert pod.writes == writes
    assert cluster.healer.progress.healthy == 1
    assert cluster.healer.progress.healed == 0


async def test_multipart_part_is_healed(cluster) -> None:
    from support.fakes import body_of

    from kurastore.gateway.objects.api import CompletedPart

    svc = cluster.service
    upload = await svc.create_upload("b", "mp")
    part_data = [os.urandom(5 * 1024 * KiB + 7), os.urandom(70 * KiB)]
    parts = []
    for n, body in enumerate(part_data, start=1):
        rec = await svc.upload_part("b", "mp", upload.upload_id, n, body_of(body, 256 * KiB))
        parts.append((n, rec.part))
    v = await svc.complete_upload(
        "b", "mp", upload.upload_id, [CompletedPart(n, p.etag) for n, p in parts]
    )
    tag = v.parts[1].shard_tag
    original = cluster.shard(v, 5, tag)
    cluster.pods.pod(cluster.holders(v)[5]).shards.pop(
        (v.partition, f"{v.object_id}.{tag}.5"))
    await cluster.store.queue_heal([item(v, 5, "missing", tag)])
    await cluster.heal_all()
    assert cluster.shard(v, 5, tag) == original


async def test_deleted_object_is_dropped_from_the_queue(cluster) -> None:
    v = await cluster.put("k", os.urandom(100 * KiB))
    cluster.pods.drop_shards(cluster.holders(v)[0], v.object_id)
    await cluster.service.delete_object("b", "k")
    await cluster.store.queue_heal([item(v, 0, "missing")])
    await cluster.heal_all()
    assert cluster.shard(v, 0) is None  # nothing rebuilt for a gone object
    assert cluster.healer.progress.dropped == 1


async def test_dead_target_pod_defers_then_heals(cluster) -> None:
    v = await cluster.put("k", os.urandom(100 * KiB))
    original = cluster.shard(v, 3)
    target = cluster.holders(v)[3]
    cluster.pods.drop_shards(target, v.object_id)
    cluster.pods.kill(target)
    await cluster.store.queue_heal([item(v, 3, "missing")])

    t = time.time()
    assert await cluster.healer.heal_once(now=t) == 0
    assert await cluster.store.heal_queue_length() == 1  # still queued: resumable
    assert cluster.healer.progress.deferred == 1
    assert await cluster.healer.heal_once(now=t + 1.5) == 0  # tried again after 1 s...
    assert cluster.healer.progress.deferred == 2
    assert await cluster.healer.heal_once(now=t + 3) == 0  # ...then waits 2 s
    assert cluster.healer.progress.deferred == 2
    cluster.pods.revive(target)
    assert await cluster.healer.heal_once(now=t + 4) == 1
    assert cluster.shard(v, 3) == original
    assert await cluster.store.heal_queue_length() == 0


async def test_fewer_than_k_sources_keeps_the_item(cluster) -> None:
    v = await cluster.put("k", os.urandom(100 * KiB))
    holders = cluster.holders(v)
    cluster.pods.drop_shards(holders[0], v.object_id)
    cluster.pods.kill(holders[1], holders[2], holders[4])  # 2 sources left of k=4
    await cluster.store.queue_heal([item(v, 0, "missing")])
    await cluster.healer.heal_once()
    assert await cluster.store.heal_queue_length() == 1
    assert cluster.healer.progress.unrecoverable == 1
    assert cluster.shard(v, 0) is None  # nothing half-written


def test_parts_with_fewest_healthy_blocks_go_first() -> None:
    def hi(oid: str, index: int, reason: str, queued: float) -> HealItem:
        return HealItem(oid * 32, "0", index, 1, 1, reason, queued)

    groups = {
        ("a", "0"): [(1, hi("a", 0, "unreachable", 1.0))],
        ("b", "0"): [(2, hi("b", 0, "missing", 5.0)), (3, hi("b", 1, "missing", 5.0))],
        ("c", "0"): [(4, hi("c", 2, "corrupt", 9.0))],
        ("d", "0"): [(5, hi("d", 2, "missing", 2.0))],
    }
    order = [g[0][1].object_id[0] for g in order_groups(groups)]
    assert order == ["b", "d", "c", "a"]


def test_throttle_spends_its_budget_then_waits() -> None:
    now = [0.0]
    throttle = Throttle(1000.0, clock=lambda: now[0])
    assert throttle.delay_for(1000) == 0.0  # one second of burst
    assert throttle.delay_for(500) == 0.5
    now[0] = 2.0  # idle time refills up to the burst, not beyond
    assert throttle.delay_for(1000) == 0.0
    assert Throttle(0).delay_for(10**12) == 0.0


async def test_running_healer_wakes_when_items_are_queued(cluster) -> None:
    import asyncio

    from kurastore.gateway.maintenance.heal import Healer, HealSettings

    v = await cluster.put("k", os.urandom(100 * KiB))
    original = cluster.shard(v, 2)
    cluster.pods.drop_shards(cluster.holders(v)[2], v.object_id)
    healer = Healer(cluster.store, cluster.pods, cluster.topology, cluster.service.config,
                    HealSettings(interval_s=30.0, rate_bytes_s=0))
    stop = asyncio.Event()
    task = asyncio.create_task(healer.run(stop))
    try:
        await asyncio.sleep(0.05)  # the first round found nothing: it waits 30 s now
        await cluster.store.queue_heal([item(v, 2, "missing")])
        healer.wake()
        for _ in range(250):  # 5 s at most, far below the 30 s poll
            if cluster.shard(v, 2) == original:
                break
            await asyncio.sleep(0.02)
        assert cluster.shard(v, 2) == original
    finally:
        stop.set()
        await task
        healer.close()
