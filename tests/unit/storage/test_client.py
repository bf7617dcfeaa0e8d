"""PodClient against pods that misbehave: hangs, refusals, 5xx, broken streams."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kurastore.storage import PodClient, PodUnavailable, ShardId

SECRET = b"client-test-secret-0123456789abc"
SID = ShardId("ab" * 16, "p1", 2)


@pytest.fixture
async def silent_pod() -> AsyncIterator[tuple[str, list[int]]]:
    """A pod that accepts connections and never answers, nor reads (like SIGSTOP)."""
    connections: list[int] = []
    writers: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writers.append(writer)
        writer.transport.pause_reading()  # let the socket buffers fill up

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", connections
    for w in writers:
        w.transport.abort()
    server.close()


async def fast_client(**kw: Any) -> PodClient:
    return PodClient(SECRET, connect_timeout_s=0.5, request_timeout_s=0.5, **kw)


async def test_hung_pod_read_fails_within_bound(silent_pod: tuple[str, list[int]]) -> None:
    url, connections = silent_pod
    client = await fast_client(retries=1)
    try:
        start = time.monotonic()
        with pytest.raises(PodUnavailable):
            await client.read_shard(url, 1, SID)
        elapsed = time.monotonic() - start
        assert 0.9 < elapsed < 2.5  # two tries of 0.5 s and one short backoff
        assert len(connections) == 2
        for call in (client.head_shard(url, 1, SID), client.list_partitions(url),
                     client.usage(url)):
            with pytest.raises(PodUnavailable):
                await call
        assert await client.is_ready(url) is False
    finally:
        await client.close()


async def test_hung_pod_put_fails_within_bound(silent_pod: tuple[str, list[int]]) -> None:
    url, connections = silent_pod
    client = await fast_client(retries=3)
    body = os.urandom(48 << 20)  # far more than the socket buffers hold

    async def stream() -> AsyncIterator[memoryview]:
        view = memoryview(body)
        for i in range(0, len(body), 1 << 20):
            yield view[i : i + (1 << 20)]

    try:
        for what in (body, stream(), b"small"):
            start = time.monotonic()
            with pytest.raises(PodUnavailable):
                await client.put_shard(url, 1, SID, what)
            assert time.monotonic() - start < 2.0
        assert len(connections) == 3  # one per PUT: a PUT is never retried
    finally:
        await client.close()


async def test_slow_producer_is_not_a_hung_pod(tmp_path: Any) -> None:
    # The stall watchdog counts only the pod's stalls, not a source slower than the timeout.
    from kurastore.storage import PodConfig
    from kurastore.storage.server import build_pod_app

    app = build_pod_app(PodConfig(data_dir=tmp_path, secret=SECRET))
    async with TestServer(app) as server:
        client = PodClient(SECRET, request_timeout_s=0.3)

        async def slow() -> AsyncIterator[bytes]:
            for _ in range(3):
                await asyncio.sleep(0.4)
                yield b"x" * (2 << 20)

        try:
            info = await client.put_shard(str(server.make_url("")), 1, SID, slow())
            assert info.size == 6 << 20
        finally:
            await client.close()


async def test_refused_connection_is_unavailable() -> None:
    client = await fast_client(retries=1)
    try:
        start = time.monotonic()
        with pytest.raises(PodUnavailable):
            await client.read_shard("http://127.0.0.1:1", 1, SID)
        assert time.monotonic() - start < 1.0
    finally:
        await client.close()


@pytest.fixture
async def failing_pod() -> AsyncIterator[tuple[str, dict[str, int]]]:
    """A pod answering 503 to everything, counting requests per method."""
    counts: dict[str, int] = {}

    async def handler(request: web.Request) -> web.Response:
        counts[request.method] = counts.get(request.method, 0) + 1
        await request.read()
        return web.json_response({"error": "Busy"}, status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with TestServer(app) as server:
        yield str(server.make_url("")).rstrip("/"), counts


async def test_retries_only_idempotent_calls(failing_pod: tuple[str, dict[str, int]]) -> None:
    url, counts = failing_pod
    client = PodClient(SECRET, retries=2)
    try:
        calls = [
            client.read_shard(url, 1, SID),
            client.head_shard(url, 1, SID),
            client.delete_shard(url, 1, SID),
            client.verify_shard(url, 1, SID),
        ]
        for call in calls:
            with pytest.raises(PodUnavailable):
                await call
        assert counts == {"GET": 3, "HEAD": 3, "DELETE": 3, "POST": 3}
        with pytest.raises(PodUnavailable):
            await client.put_shard(url, 1, SID, b"data")

        async def stream() -> AsyncIterator[bytes]:
            yield b"data"

        with pytest.raises(PodUnavailable):
            await client.put_shard(url, 1, SID, stream())
        assert counts["PUT"] == 2
    finally:
        await client.close()


async def test_stream_resumes_where_it_broke() -> None:
    data = os.urandom(3 << 20)
    ranges: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ranges.append(request.headers.get("Range"))
        if len(ranges) == 1:
            # Send half the shard, then drop the connection, as a pod that crashes.
            resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
            assert request.transport is not None
            request.transport.abort()
            return resp
        start = int(request.headers["Range"].removeprefix("bytes=").split("-")[0])
        return web.Response(body=data[start:], status=206)

    app = web.Application()
    app.router.add_get("/v1/shards/{p}/{name}", handler)
    async with TestServer(app) as server:
        client = PodClient(SECRET, retries=1)
        try:
            got = b"".join([c async for c in client.stream_shard(str(server.make_url("")), 1, SID)])
        finally:
            await client.close()
    assert got == data
    assert ranges[0] is None
    assert ranges[1] == f"bytes={len(data) // 2}-{len(data) - 1}"  # resumed, not restarted
    assert len(ranges) == 2
