"""A small cluster for object-service tests: six in-memory pods (tests.support.fakes),
the real SQLite metadata store in tmp_path, a real 4+2 placement map, and the
ObjectService on top."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from support.fakes import InMemoryPods, body_of

from kurastore.gateway.objects.api import PutOptions
from kurastore.gateway.objects.config import ObjectConfig
from kurastore.gateway.objects.encryption import Keyring
from kurastore.gateway.objects.service import ObjectService
from kurastore.gateway.objects.topology import Topology
from kurastore.metadata.sqlite import SQLiteStore
from kurastore.placement import PodSpec, build_map

KiB = 1 << 10
CLUSTER_KEY = bytes(range(32))  # seals server-side encryption's data keys
MiB = 1 << 20


@dataclass
class Cluster:
    service: ObjectService
    store: SQLiteStore
    pods: InMemoryPods
    topology: Topology

    async def put(self, key: str, data: bytes, *, bucket: str = "b", chunk: int = 65536,
                  **opts: object):
        return await self.service.put_object(bucket, key, body_of(data, chunk),
                                             PutOptions(**opts))  # type: ignore[arg-type]

    async def read(self, key: str, *, bucket: str = "b", **kwargs: object) -> bytes:
        reader = await self.service.open_object(bucket, key, **kwargs)  # type: ignore[arg-type]
        out = bytearray()
        async for piece in reader:
            out += piece
        assert len(out) == reader.length
        return bytes(out)


@pytest.fixture
async def make_cluster(tmp_path) -> AsyncIterator[Callable]:
    made: list[Cluster] = []

    async def make(pod_count: int = 6, **config: object) -> Cluster:
        store = await SQLiteStore.open(str(tmp_path / f"meta{len(made)}.db"),
                                       secret_key=b"k" * 32)
        pods = InMemoryPods(pod_count)
        for record in pods.records():
            await store.put_pod(record)
        cfg = ObjectConfig(**{"pod_timeout_s": 2.0, **config})  # type: ignore[arg-type]
        specs = [PodSpec(r.pod_id, r.zone, r.node) for r in pods.records()]
        pmap = build_map(specs, cfg.width, partition_bits=6)
        await store.save_placement_map(pmap.epoch, pmap.to_json())
        topology = await Topology.load(store)
        service = ObjectService(store, pods, topology, cfg, keyring=Keyring(CLUSTER_KEY))
        await service.create_bucket("b", owner="owner-1")
        cluster = Cluster(service, store, pods, topology)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.service.close()
        await cluster.pods.close()
        await cluster.store.close()


@pytest.fixture
async def cluster(make_cluster) -> Cluster:
    return await make_cluster()


def random_bytes(n: int, seed: int = 0) -> bytes:
    return os.urandom(n) if seed == 0 else bytes((i * 31 + seed) % 251 for i in range(n))


def after_read_grace() -> float:
    """A `now` for the collector past the grace a removed version's shards get (readers
    that opened it may still stream it; metadata queues them that much later)."""
    return time.time() + 86_400
