"""The object service against real pod HTTP servers (kurastore.storage's app on
loopback, aiohttp TestServer) through the real PodClient: PUT, GET, a degraded
GET with a stopped pod, delete and collection."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer
from support.fakes import body_of

from kurastore.gateway.maintenance.collect import collect_once
from kurastore.gateway.objects.api import ByteRange, PutOptions
from kurastore.gateway.objects.config import ObjectConfig
from kurastore.gateway.objects.service import ObjectService
from kurastore.gateway.objects.topology import Topology
from kurastore.metadata import PodRecord
from kurastore.metadata.sqlite import SQLiteStore
from kurastore.placement import PodSpec, build_map
from kurastore.storage import PodClient, PodConfig, build_pod_app

from .conftest import MiB, after_read_grace, random_bytes

SECRET = b"s" * 32


@pytest.fixture
async def real_cluster(tmp_path):
    servers = []
    for i in range(6):
        app = build_pod_app(PodConfig(data_dir=tmp_path / f"pod{i}", secret=SECRET,
                                      pod_id=f"pod-{i}"))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
    store = await SQLiteStore.open(str(tmp_path / "meta.db"), secret_key=b"k" * 32)
    records = [PodRecord(f"pod-{i}", str(s.make_url("")).rstrip("/"), node=f"n{i}")
               for i, s in enumerate(servers)]
    for record in records:
        await store.put_pod(record)
    pmap = build_map([PodSpec(r.pod_id, r.zone, r.node) for r in records], 6, partition_bits=4)
    await store.save_placement_map(pmap.epoch, pmap.to_json())
    client = PodClient(SECRET, request_timeout_s=5.0, retries=0)
    topology = await Topology.load(store)
    service = ObjectService(store, client, topology, ObjectConfig(pod_timeout_s=5.0))
    await service.create_bucket("b", owner="o")
    yield service, servers
    await service.close()
    await client.close()
    await store.close()
    for server in servers:
        await server.close()


async def read_all(reader) -> bytes:
    out = bytearray()
    async for piece in reader:
        out += piece
    return bytes(out)


async def test_round_trip_degraded_read_and_collection(real_cluster):
    service, servers = real_cluster
    data = random_bytes(5 * MiB + 777)
    version = await service.put_object("b", "k", body_of(data, 1 << 20),
                                       PutOptions(content_length=len(data)))
    assert await read_all(await service.open_object("b", "k")) == data
    got = await read_all(await service.open_object("b", "k", byte_range=ByteRange(MiB, 3 * MiB)))
    assert got == data[MiB : 3 * MiB + 1]
    # Overwrite: the old version's shards are collected from every pod.
    await service.put_object("b", "k", body_of(data[:2 * MiB]), PutOptions())
    assert await collect_once(service.store, service.pods, service.topology,
                              now=after_read_grace()) == 1
    for url in (p.url for p in service.topology.pods):
        names = [i.shard.name for i in await service.pods.list_partition(url, version.partition)]
        assert not any(name.startswith(version.object_id) for name in names)
    # Stop the pods holding blocks 0 and 1 of the new version: reads decode from parity.
    current = await service.head_object("b", "k")
    holders = service.topology.current.pods_for(current.partition)
    for pod_id in holders[:2]:
        await servers[int(pod_id.split("-")[1])].close()
    assert await read_all(await service.open_object("b", "k")) == data[:2 * MiB]
    assert service.stats.degraded_reads == 1
    status = await service.pod_status()
    assert sum(not s.ready for s in status) == 2
