"""The rebalancer against in-memory pods and the real SQLite store: scale out 6 -> 7
pods and drain back to 6 while every object stays readable; the moved share of
shards is close to the ideal; old copies go only after the grace; every record ends
pinned to the current epoch."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from support.fakes import InMemoryPods, body_of

from kurastore.gateway.maintenance.rebalance import (
    Rebalancer,
    RebalanceSettings,
    moved_slots,
)
from kurastore.gateway.maintenance.scrub import Scrubber, ScrubSettings
from kurastore.gateway.objects.api import CompletedPart, PutOptions
from kurastore.gateway.objects.config import ObjectConfig
from kurastore.gateway.objects.service import ObjectService
from kurastore.gateway.objects.topology import Topology
from kurastore.metadata import EpochRetired
from kurastore.metadata.sqlite import SQLiteStore
from kurastore.placement import PlacementMap, PodSpec, build_map
from kurastore.storage import ShardId, ShardInfo

KiB = 1 << 10
BITS = 8  # 256 partitions: enough for the moved share to be close to the ideal
GRACE_S = 100.0


@dataclass
class Scale:
    store: SQLiteStore
    pods: InMemoryPods
    topology: Topology
    service: ObjectService
    config: ObjectConfig
    rebalancer: Rebalancer
    objects: dict[str, bytes]

    async def read(self, key: str, service: ObjectService | None = None) -> bytes:
        reader = await (service or self.service).open_object("b", key)
        return b"".join([bytes(piece) async for piece in reader])

    async def next_map(self, weights: dict[str, float]) -> PlacementMap:
        """The epoch publish(weights) would make, not saved."""
        latest = await self.store.latest_placement_map()
        assert latest is not None
        previous = PlacementMap.from_json(latest[1])
        specs = [PodSpec(r.pod_id, r.zone, r.node, weight=weights[r.pod_id])
                 for r in self.pods.records() if r.pod_id in weights]
        return build_map(specs, self.config.width, previous=previous, partition_bits=BITS)

    async def publish(self, weights: dict[str, float]) -> PlacementMap:
        """A new epoch over the pods named (weight 0: draining, holds nothing)."""
        for record in self.pods.records():
            if record.pod_id in weights:
                await self.store.put_pod(record)
        new = await self.next_map(weights)
        await self.store.save_placement_map(new.epoch, new.to_json())
        await self.topology.refresh()
        return new

    def shard_count(self, pod: str | None = None) -> int:
        pods = self.pods.pods if pod is None else [self.pods.pod(pod)]
        return sum(len(p.shards) for p in pods)

    async def check_placed(self) -> None:
        """Every block of every part is on the pod its pinned epoch names."""
        for partition in range(1 << BITS):
            for part in await self.store.partition_parts(partition):
                pmap = await self.topology.get_map(part.epoch)
                for i, pod_id in enumerate(pmap.pods_for(partition, part.width)):
                    name = ShardId(part.object_id, part.shard_tag, i).name
                    assert (partition, name) in self.pods.pod(pod_id).shards

    async def read_all(self) -> None:
        for key, data in self.objects.items():
            assert await self.read(key) == data, key


@pytest.fixture
async def scale(tmp_path) -> AsyncIterator[Scale]:
    store = await SQLiteStore.open(str(tmp_path / "meta.db"), secret_key=b"k" * 32)
    pods = InMemoryPods(8)  # pod-6 (and pod-7) join later
    config = ObjectConfig(stripe_size=64 * KiB, inline_threshold_bytes=1 * KiB,
                          pod_timeout_s=2.0)
    records = pods.records()[:6]
    for record in records:
        await store.put_pod(record)
    specs = [PodSpec(r.pod_id, r.zone, r.node) for r in records]
    pmap = build_map(specs, config.width, partition_bits=BITS)
    await store.save_placement_map(pmap.epoch, pmap.to_json())
    topology = await Topology.load(store)
    service = ObjectService(store, pods, topology, config)
    await service.create_bucket("b", owner="owner-1")
    rng = random.Random(7)
    objects = {}
    for n in range(300):
        data = os.urandom(rng.choice([3 * KiB, 20 * KiB, 70 * KiB, 150 * KiB]))
        await service.put_object("b", f"obj-{n}", body_of(data, 16 * KiB), PutOptions())
        objects[f"obj-{n}"] = data
    rebalancer = Rebalancer(store, pods, topology, config,
                            RebalanceSettings(rate_bytes_s=0, grace_s=GRACE_S,
                                              chunk_bytes=32 * KiB))
    yield Scale(store, pods, topology, service, config, rebalancer, objects)
    rebalancer.close()
    await service.close()
    await pods.close()
    await store.close()


async def rebalance_while_reading(scale: Scale) -> None:
    """Runs passes until done while a reader reads every object over and over."""
    done = asyncio.Event()
    reads = 0

    async def reader() -> None:
        nonlocal reads
        while not done.is_set():
            for key, data in scale.objects.items():
                assert await scale.read(key) == data, key
                reads += 1
                if done.is_set():
                    return

    task = asyncio.create_task(reader())
    for _ in range(5):
        await scale.rebalancer.rebalance_once()
        if scale.rebalancer.progress.done:
            break
    done.set()
    await task
    assert reads > 0
    assert scale.rebalancer.progress.done


def test_moved_slots_are_the_diff() -> None:
    specs = [PodSpec(f"pod-{i}", "", f"node-{i}") for i in range(6)]
    old = build_map(specs, 6, partition_bits=BITS)
    new = build_map([*specs, PodSpec("pod-6", "", "node-6")], 6, previous=old,
                    partition_bits=BITS)
    total = sum(len(moved_slots(old, new, p, 6)) for p in range(1 << BITS))
    assert 0 < total <= 1.15 * (6 << BITS) / 7
    for p in range(1 << BITS):
        for slot in moved_slots(old, new, p, 6):
            assert new.pods_for(p, 6)[slot] == "pod-6"  # only the new pod gains


async def test_scale_out_and_drain(scale: Scale) -> None:
    old = scale.topology.current
    total = scale.shard_count()
    new = await scale.publish({f"pod-{i}": 1.0 for i in range(7)})

    await rebalance_while_reading(scale)

    progress = scale.rebalancer.progress
    assert await scale.store.epochs_in_use() == {new.epoch}
    assert progress.retired_epochs == [old.epoch]
    share = progress.shards_moved / total
    assert 1 / 7 / 1.15 <= share <= 1.15 / 7, share
    assert scale.shard_count("pod-6") == progress.shards_moved
    assert progress.bytes_moved > 0 and progress.bytes_left == 0
    # The old copies stay for the grace (reads that opened the old pins still find them).
    assert scale.shard_count() == total + progress.shards_moved
    assert progress.old_copies_waiting == progress.shards_moved
    assert await scale.rebalancer.delete_old_copies() == 0
    deleted = await scale.rebalancer.delete_old_copies(now=time.time() + GRACE_S + 1)
    assert deleted == progress.shards_moved
    assert scale.shard_count() == total
    await scale.check_placed()
    await scale.read_all()

    # Drain pod-6: weight 0, a new epoch in which it holds nothing; it ends empty.
    drained = await scale.publish({**{f"pod-{i}": 1.0 for i in range(6)}, "pod-6": 0.0})
    assert not drained.partitions_of("pod-6")
    await rebalance_while_reading(scale)
    assert await scale.store.epochs_in_use() == {drained.epoch}
    assert scale.rebalancer.holds_old_copies("pod-6")
    await scale.rebalancer.delete_old_copies(now=1e12)
    assert scale.shard_count("pod-6") == 0
    assert not scale.rebalancer.holds_old_copies("pod-6")
    assert scale.shard_count() == total
    await scale.check_placed()
    await scale.read_all()


async def test_unreadable_old_copy_is_rebuilt(scale: Scale) -> None:
    old = scale.topology.current
    new = await scale.publish({f"pod-{i}": 1.0 for i in range(7)})
    # Find an object with a moved slot and drop its old copy there.
    for key in scale.objects:
        v = await scale.service.store.get_version("b", key)
        slots = moved_slots(old, new, v.partition, v.k + v.m) if v.k else []
        if slots:
            source = old.pods_for(v.partition, v.k + v.m)[slots[0]]
            assert scale.pods.drop_shards(source, v.object_id) >= 1
            break
    else:
        raise AssertionError("no object has a moved slot")
    await rebalance_until_done(scale)
    assert scale.rebalancer.progress.shards_rebuilt >= 1
    await scale.rebalancer.delete_old_copies(now=1e12)
    await scale.check_placed()
    await scale.read_all()


async def rebalance_until_done(scale: Scale) -> None:
    for _ in range(5):
        await scale.rebalancer.rebalance_once()
        if scale.rebalancer.progress.done:
            return
    raise AssertionError("rebalance did not finish")


class _MissesNotices:
    """The store as a gateway sees it whose change listener is down: no notices."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    def on_change(self, callback: object) -> None:
        pass

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


async def test_write_under_a_retired_epoch_is_refused(scale: Scale) -> None:
    # A second gateway whose topology has not seen the new epoch (no notices, no polls).
    stale = await Topology.load(_MissesNotices(scale.store), max_age_s=3600)  # type: ignore[arg-type]
    late = ObjectService(scale.store, scale.pods, stale, scale.config)
    try:
        old = stale.current
        new = await scale.publish({f"pod-{i}": 1.0 for i in range(7)})
        await scale.rebalancer.rebalance_once()
        assert scale.rebalancer.progress.done  # and the old epoch, pinned by nothing, retired
        data = os.urandom(90 * KiB)
        with pytest.raises(EpochRetired):
            await late.put_object("b", "late", body_of(data, 16 * KiB), PutOptions())
        assert stale.current.epoch == old.epoch < new.epoch
        assert await scale.store.epochs_in_use() == {new.epoch}
        assert await scale.store.stale_writes(time.time() + 60) == []
        await stale.refresh()  # what the gateway's next poll does
        v = await late.put_object("b", "late", body_of(data, 16 * KiB), PutOptions())
        assert v.epoch == new.epoch
        await scale.check_placed()
        assert await scale.read("late") == data
    finally:
        await late.close()


async def test_crash_before_repin_resumes_without_copying_again(scale: Scale) -> None:
    new = await scale.publish({f"pod-{i}": 1.0 for i in range(7)})

    async def crash(partition: int, from_epoch: int, to_epoch: int, **_: Any) -> int:
        raise RuntimeError("gateway died")

    scale.store.repin_partition = crash  # type: ignore[method-assign]
    await scale.rebalancer.rebalance_once()
    del scale.store.repin_partition
    copied = scale.shard_count("pod-6")
    writes = scale.pods.pod("pod-6").writes
    assert copied > 0 and scale.rebalancer.progress.partitions_moved == 0
    assert await scale.store.epochs_in_use() == {new.epoch - 1}  # nothing re-pinned
    await scale.read_all()

    restarted = Rebalancer(scale.store, scale.pods, scale.topology, scale.config,
                           RebalanceSettings(rate_bytes_s=0, grace_s=0))
    try:
        await restarted.rebalance_once()
        assert restarted.progress.done
        assert await scale.store.epochs_in_use() == {new.epoch}
        assert scale.pods.pod("pod-6").writes == writes  # verified, not copied again
        assert scale.shard_count("pod-6") == copied
        await restarted.delete_old_copies()
    finally:
        restarted.close()
    await scale.check_placed()
    await scale.read_all()


async def test_a_part_stored_while_its_partition_moves_is_moved_too(scale: Scale) -> None:
    """An upload's parts inherit its epoch. A part stored after the rebalancer read the
    partition, before its re-pin, must be copied too (the re-pin refuses and the
    partition is read again), never re-pinned while its shards are on the old pods
    only (a fault-injection run lost two acknowledged uploads that way)."""
    seven = {f"pod-{i}": 1.0 for i in range(7)}
    old, coming = scale.topology.current, await scale.next_map(seven)
    # object ids are random: start uploads until one lands in a partition that moves
    for _ in range(200):
        up = await scale.service.create_upload("b", "growing")
        if moved_slots(old, coming, up.partition, 6):
            break
        await scale.service.abort_upload("b", "growing", up.upload_id)
    first, second = os.urandom(5 << 20), os.urandom(90 * KiB)  # S3: 5 MiB but the last
    p1 = await scale.service.upload_part("b", "growing", up.upload_id, 1,
                                         body_of(first, 16 * KiB))
    new = await scale.publish(seven)
    assert moved_slots(await scale.topology.get_map(up.epoch), new, up.partition, 6)
    repin = scale.store.repin_partition
    parts: list[Any] = [p1]

    async def part_arrives_first(partition: int, *args: Any, **kwargs: Any) -> int:
        if partition == up.partition and len(parts) == 1:  # the client's next part
            parts.append(await scale.service.upload_part(
                "b", "growing", up.upload_id, 2, body_of(second, 16 * KiB)))
        return await repin(partition, *args, **kwargs)

    scale.store.repin_partition = part_arrives_first  # type: ignore[method-assign]
    await rebalance_until_done(scale)
    del scale.store.repin_partition
    assert len(parts) == 2
    assert (await scale.store.get_upload(up.upload_id)).epoch == new.epoch
    await scale.check_placed()  # the late part's blocks are where the new epoch says
    scale.rebalancer.settings = RebalanceSettings(rate_bytes_s=0, grace_s=0)
    await scale.rebalancer.delete_old_copies(now=time.time() + 2 * GRACE_S)
    await scale.service.complete_upload(
        "b", "growing", up.upload_id,
        [CompletedPart(p.part.part_number, p.part.etag) for p in parts])
    assert await scale.read("growing") == first + second


async def test_scale_in_within_the_grace_keeps_copies_that_became_homes(scale: Scale) -> None:
    """6 -> 8 -> 6 pods, the drain published before the first move's grace is over: slots
    go back to the pods they left, whose old copies are still there. Once every grace is
    over, every block is still on the pod its record's epoch names."""
    total = scale.shard_count()
    six = {f"pod-{i}": 1.0 for i in range(6)}
    await scale.publish({**six, "pod-6": 1.0, "pod-7": 1.0})
    await rebalance_while_reading(scale)
    out = scale.rebalancer.progress.shards_moved
    assert out > 0 and scale.rebalancer.progress.old_copies_waiting == out

    drained = await scale.publish({**six, "pod-6": 0.0, "pod-7": 0.0})
    await rebalance_while_reading(scale)
    assert await scale.store.epochs_in_use() == {drained.epoch}
    await scale.rebalancer.delete_old_copies(now=time.time() + GRACE_S + 1)
    await scale.rebalancer.delete_old_copies(now=1e12)
    assert scale.rebalancer.progress.old_copies_waiting == 0
    assert scale.shard_count("pod-6") == scale.shard_count("pod-7") == 0
    await scale.check_placed()
    assert scale.shard_count() == total
    await scale.read_all()


class MovedAfterListing:
    """The in-memory pods, with the rebalancer running a whole pass right after a
    scrubber listed which partitions every pod holds (a scrub overlapping a move)."""

    def __init__(self, scale: Scale) -> None:
        self._scale = scale
        self._moved = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._scale.pods, name)

    async def list_partition(self, url: str, partition: int) -> list[ShardInfo]:
        if not self._moved:
            self._moved = True
            while not (await self._scale.rebalancer.rebalance_once() == 0
                       and self._scale.rebalancer.progress.done):
                pass
        return await self._scale.pods.list_partition(url, partition)


async def test_scrub_overlapping_a_move_counts_blocks_where_their_records_say(
    scale: Scale,
) -> None:
    await scale.publish({f"pod-{i}": 1.0 for i in range(8)})
    pods: Any = MovedAfterListing(scale)
    scrubber = Scrubber(scale.store, pods, scale.topology, ScrubSettings(rate_bytes_s=0),
                        keep=scale.rebalancer.holds_old_copy)

    durability = await scrubber.scrub_pass()

    assert scale.rebalancer.progress.shards_moved > 0  # the move did happen mid-pass
    assert durability.objects == {6: len(scale.objects)}
    assert await scale.store.heal_queue_length() == 0
    assert scrubber.progress.pod("pod-6").missing == 0
    assert scrubber.progress.pod("pod-6").shards_checked > 0
