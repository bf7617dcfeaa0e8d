"""A small cluster for maintenance tests: six in-memory pods (tests.support.fakes),
the real SQLite metadata store, a real 4+2 placement map, the ObjectService to
write through, and the healer and scrubber working on the same pieces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from support.fakes import InMemoryPods, body_of

from kurastore.gateway.maintenance.heal import Healer, HealSettings
from kurastore.gateway.maintenance.scrub import Scrubber, ScrubSettings
from kurastore.gateway.objects.api import PutOptions
from kurastore.gateway.objects.config import ObjectConfig
from kurastore.gateway.objects.service import ObjectService
from kurastore.gateway.objects.topology import Topology
from kurastore.metadata import ObjectVersion
from kurastore.metadata.sqlite import SQLiteStore
from kurastore.placement import PodSpec, build_map
from kurastore.storage import ShardId

KiB = 1 << 10


@dataclass
class Cluster:
    service: ObjectService
    store: SQLiteStore
    pods: InMemoryPods
    topology: Topology
    healer: Healer
    scrubber: Scrubber

    async def put(self, key: str, data: bytes, bucket: str = "b") -> ObjectVersion:
        return await self.service.put_object(bucket, key, body_of(data, 16 * KiB), PutOptions())

    async def read(self, key: str, bucket: str = "b") -> bytes:
        reader = await self.service.open_object(bucket, key)
        return b"".join([bytes(piece) async for piece in reader])

    def holders(self, version: ObjectVersion) -> list[str]:
        """Pod ids holding block 0..k+m-1 of a version, from its pinned map."""
        pmap = self.topology.current
        assert pmap.epoch == version.epoch
        return list(pmap.pods_for(version.partition, version.k + version.m))

    def shard(self, version: ObjectVersion, index: int, tag: str = "0") -> bytes | None:
        pod = self.pods.pod(self.holders(version)[index])
        return pod.shards.get((version.partition, ShardId(version.object_id, tag, index).name))

    async def heal_all(self) -> None:
        for _ in range(10):
            await self.healer.heal_once()
            if not await self.store.heal_queue_length():
                return
        raise AssertionError("the heal queue did not drain")


@pytest.fixture
async def cluster(tmp_path) -> AsyncIterator[Cluster]:
    store = await SQLiteStore.open(str(tmp_path / "meta.db"), secret_key=b"k" * 32)
    pods = InMemoryPods(6)
    for record in pods.records():
        await store.put_pod(record)
    # 64 KiB stripes (16 KiB blocks): a 300 KiB object is five stripes, four full.
    config = ObjectConfig(stripe_size=64 * KiB, inline_threshold_bytes=1 * KiB,
                          pod_timeout_s=2.0)
    specs = [PodSpec(r.pod_id, r.zone, r.node) for r in pods.records()]
    pmap = build_map(specs, config.width, partition_bits=4)
    await store.save_placement_map(pmap.epoch, pmap.to_json())
    topology = await Topology.load(store)
    service = ObjectService(store, pods, topology, config)
    await service.create_bucket("b", owner="owner-1")
    healer = Healer(store, pods, topology, config,
                    HealSettings(rate_bytes_s=0, retry_s=5.0, batch_bytes=40 * KiB))
    scrubber = Scrubber(store, pods, topology, ScrubSettings(rate_bytes_s=0))
    yield Cluster(service, store, pods, topology, healer, scrubber)
    healer.close()
    await service.close()
    await pods.close()
    await store.close()
