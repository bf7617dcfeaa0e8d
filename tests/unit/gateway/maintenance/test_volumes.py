"""VolumeWatch against real pod processes' app (aiohttp TestServer) and real volumes: a pod
restarted on a wiped volume is reported once, a pod that does not answer never is."""

from __future__ import annotations

import shutil
from pathlib import Path

from aiohttp.test_utils import TestServer

from kurastore.gateway.maintenance.volumes import VolumeWatch
from kurastore.gateway.objects.topology import Topology
from kurastore.metadata import PodRecord
from kurastore.metadata.sqlite import SQLiteStore
from kurastore.placement import PodSpec, build_map
from kurastore.storage import PodClient, PodConfig
from kurastore.storage.server import build_pod_app

SECRET = b"volume-watch-test-secret-0123456789"


async def _pod(data_dir: Path, port: int | None = None) -> TestServer:
    server = TestServer(build_pod_app(PodConfig(data_dir=data_dir, secret=SECRET)),
                        **({"port": port} if port else {}))
    await server.start_server()
    return server


async def test_a_pod_back_on_an_empty_volume_is_reported_once(tmp_path: Path) -> None:
    store = await SQLiteStore.open(str(tmp_path / "meta.db"), secret_key=b"k" * 32)
    client = PodClient(SECRET, request_timeout_s=2.0, retries=0)
    servers = [await _pod(tmp_path / f"pod-{i}") for i in range(3)]
    try:
        records = [PodRecord(f"pod-{i}", str(s.make_url("")).rstrip("/"))
                   for i, s in enumerate(servers)]
        for record in records:
            await store.put_pod(record)
        pmap = build_map([PodSpec(r.pod_id) for r in records], 3, partition_bits=4)
        await store.save_placement_map(pmap.epoch, pmap.to_json())
        topology = await Topology.load(store)
        lost: list[str] = []
        watch = VolumeWatch(client, topology, lost.append)

        assert await watch.check() == []  # the first answers are the baseline
        assert len(set(watch.seen.values())) == 3
        before = dict(watch.seen)
        # Restarted on the same volume: same id, nothing lost.
        port = servers[1].port
        await servers[1].close()
        servers[1] = await _pod(tmp_path / "pod-1", port)
        assert await watch.check() == [] and watch.seen == before

        # Restarted on an empty volume: reported, once.
        await servers[1].close()
        shutil.rmtree(tmp_path / "pod-1")
        servers[1] = await _pod(tmp_path / "pod-1", port)
        assert await watch.check() == ["pod-1"]
        assert lost == ["pod-1"] and watch.losses == 1
        assert watch.seen["pod-1"] != before["pod-1"]
        assert await watch.check() == []

        # A pod that does not answer is not lost.
        await servers[2].close()
        assert await watch.check() == [] and lost == ["pod-1"]
    finally:
        for server in servers:
            await server.close()
        await client.close()
        await store.close()
