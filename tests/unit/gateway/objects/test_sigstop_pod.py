"""A real pod process stopped with SIGSTOP (its kernel still takes connections and
bytes, nobody answers) among five pod servers on loopback, through the real
PodClient with its 30 s timeouts: GET and PUT stay fast, and the pod is used
again once it is continued."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from asyncio.subprocess import Process

import pytest
from aiohttp.test_utils import TestServer
from support.cluster import free_port
from support.fakes import body_of

from kurastore.gateway.objects.api import PutOptions
from kurastore.gateway.objects.config import ObjectConfig
from kurastore.gateway.objects.service import ObjectService
from kurastore.gateway.objects.topology import Topology
from kurastore.metadata import PodRecord
from kurastore.metadata.sqlite import SQLiteStore
from kurastore.placement import PlacementMap, PodSpec, build_map
from kurastore.storage import PodClient, PodConfig, build_pod_app

from .conftest import MiB, random_bytes

SECRET = b"s" * 32


async def start_pod_process(tmp_path, client: PodClient) -> tuple[Process, str]:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "pod-5.log"
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kurastore.storage", "--data", str(tmp_path / "pod-5"),
            "--listen", f"127.0.0.1:{port}", "--secret-file", str(secret_file),
            "--pod-id", "pod-5", "--log-level", "WARNING",
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    finally:
        os.close(log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.returncode is None:
        if await client.is_ready(url):
            return proc, url
        await asyncio.sleep(0.05)
    if proc.returncode is None:
        proc.kill()
    await proc.wait()
    raise RuntimeError(f"the pod process did not come up: {log_path.read_text()[-2000:]}")


@pytest.fixture
async def stoppable_cluster(tmp_path):
    client = PodClient(SECRET, request_timeout_s=30.0)
    servers = []
    for i in range(5):
        app = build_pod_app(PodConfig(data_dir=tmp_path / f"pod-{i}", secret=SECRET,
                                      pod_id=f"pod-{i}"))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
    proc, proc_url = await start_pod_process(tmp_path, client)
    store = await SQLiteStore.open(str(tmp_path / "meta.db"), secret_key=b"k" * 32)
    urls = [str(s.make_url("")).rstrip("/") for s in servers] + [proc_url]
    records = [PodRecord(f"pod-{i}", url, node=f"n{i}") for i, url in enumerate(urls)]
    for record in records:
        await store.put_pod(record)
    built = build_map([PodSpec(r.pod_id, r.zone, r.node) for r in records], 6, partition_bits=4)
    # The stopped pod holds data block 1 of every partition, so every GET needs it.
    rows = []
    for row in built.assignment:
        others = [p for p in row if p != "pod-5"]
        rows.append((others[0], "pod-5", *others[1:]))
    pmap = PlacementMap(built.epoch, built.partition_bits, built.width, built.pods, tuple(rows))
    await store.save_placement_map(pmap.epoch, pmap.to_json())
    service = ObjectService(store, client, await Topology.load(store),
                            ObjectConfig(pod_timeout_s=30.0))
    await service.create_bucket("b", owner="o")
    try:
        yield service, proc, proc_url
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
        await service.close()
        await client.close()
        await store.close()
        for server in servers:
            await server.close()


async def read_all(service: ObjectService, key: str) -> bytes:
    out = bytearray()
    async for piece in await service.open_object("b", key):
        out += piece
    return bytes(out)


async def put(service: ObjectService, key: str, data: bytes) -> None:
    await service.put_object("b", key, body_of(data, MiB), PutOptions(content_length=len(data)))


async def test_sigstopped_pod_costs_a_bounded_wait(stoppable_cluster):
    service, proc, url = stoppable_cluster
    before = random_bytes(5 * MiB + 777)
    await put(service, "before", before)
    proc.send_signal(signal.SIGSTOP)

    started = time.monotonic()
    assert await read_all(service, "before") == before
    first_get = time.monotonic() - started
    assert first_get < 2.0, first_get  # one hedge delay, not the 30 s timeout
    assert service.health.is_suspect(url)

    started = time.monotonic()
    assert await read_all(service, "before") == before
    assert time.monotonic() - started < 0.5  # read around the suspect pod at once

    during = random_bytes(5 * MiB, seed=5)
    started = time.monotonic()
    await put(service, "during", during)
    put_s = time.monotonic() - started
    assert put_s < 2.5, put_s  # the suspect pod is tried, then dropped within 0.25 s
    assert service.stats.stalled_shards == 1

    small = random_bytes(MiB + 3, seed=6)  # small enough to be sent in one burst
    started = time.monotonic()
    await put(service, "during-small", small)
    put_s = time.monotonic() - started
    assert put_s < 1.5, put_s  # the same 0.25 s patience for the suspect pod
    assert service.stats.stalled_shards == 2

    proc.send_signal(signal.SIGCONT)
    await put(service, "after", random_bytes(2 * MiB, seed=9))  # the write probes the pod
    assert not service.health.is_suspect(url)
    assert await read_all(service, "during") == during
    assert await read_all(service, "during-small") == small
