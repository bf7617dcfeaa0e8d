"""Burst writes (PodClient.put_shards, _burst.py) against real pods over loopback: every
shard stored and read back, one pod's failure reported in its place and nowhere else,
deadlines for pods that never answer, and keep-alive connections reused only when sound."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kurastore.storage import (
    PodClient,
    PodTimedOut,
    PodUnavailable,
    ShardExists,
    ShardId,
    ShardInfo,
    ShardNotFound,
    ShardPut,
)

OID = "ab" * 16


def _pooled(client: PodClient) -> int:
    burst = client._burst
    return 0 if burst is None else sum(len(c) for c in burst[0]._idle.values())


@pytest.fixture
async def pods(tmp_path: Path, client: PodClient, start_pod: Any) -> AsyncIterator[Any]:
    """`await pods(n)`: n more running pods, all stopped after the test."""
    running: list[Any] = []

    async def start(count: int) -> list[Any]:
        for _ in range(count):
            running.append(await start_pod(tmp_path / f"pod{len(running)}", client))
        return running[-count:]

    yield start
    for pod in running:
        await pod.server.close()


def _address(listening: bool) -> tuple[socket.socket, str]:
    """A loopback port where nothing listens (connections refused) or where a socket
    listens that nobody serves: the kernel takes the connection and the bytes, as for a
    SIGSTOPped pod, and no answer ever comes."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    if listening:
        sock.listen(8)
    else:
        sock.close()
    return sock, url


def _puts(urls: list[str | None], data: list[bytes], **kw: Any) -> list[ShardPut]:
    # Each shard in three pieces, as frames are sent (header, payload, ...).
    return [
        ShardPut(url, 11, ShardId(OID, "0", i), [d[:7], memoryview(d)[7:1000], d[1000:]], **kw)
        for i, (url, d) in enumerate(zip(urls, data, strict=True))
    ]


async def test_every_shard_is_stored_and_connections_are_reused(
    client: PodClient, pods: Any
) -> None:
    running = await pods(3)
    for round_no in range(3):
        data = [os.urandom(300_000 + i) for i in range(3)]
        puts = [
            ShardPut(p.url, 11, ShardId(f"{round_no:032x}", "0", i), [data[i][:5], data[i][5:]])
            for i, p in enumerate(running)
        ]
        results = await client.put_shards(puts, timeout_s=5, grace_s=lambda _t: 1.0)
        assert [r.size for r in results if isinstance(r, ShardInfo)] == [len(d) for d in data]
        for put, d in zip(puts, data, strict=True):
            assert await client.read_shard(put.url, 11, put.shard) == d
    assert _pooled(client) == 3  # one connection per pod, kept across the bursts


async def test_one_refused_or_dead_pod_fails_only_its_own_put(
    client: PodClient, pods: Any
) -> None:
    running = await pods(3)
    _closed, dead_url = _address(listening=False)
    data = [os.urandom(200_000) for _ in range(5)]
    taken = ShardId(OID, "0", 1)
    await client.put_shard(running[1].url, 11, taken, b"already here")
    urls: list[str | None] = [running[0].url, running[1].url, dead_url, None, running[2].url]
    results = await client.put_shards(_puts(urls, data), timeout_s=5, grace_s=lambda _t: 1.0)
    assert isinstance(results[0], ShardInfo) and results[0].size == len(data[0])
    assert isinstance(results[1], ShardExists)
    assert isinstance(results[2], PodUnavailable) and not isinstance(results[2], PodTimedOut)
    assert isinstance(results[3], PodUnavailable)  # no URL: no request at all
    assert isinstance(results[4], ShardInfo)
    assert await client.read_shard(running[1].url, 11, taken) == b"already here"
    assert await client.read_shard(running[2].url, 11, ShardId(OID, "0", 4)) == data[4]
    # The refused connection was closed, not pooled: the next burst to that pod works.
    fresh = ShardPut(running[1].url, 11, ShardId("cd" * 16, "0", 0), [b"next"])
    assert isinstance((await client.put_shards([fresh], timeout_s=5,
                                               grace_s=lambda _t: 1.0))[0], ShardInfo)


async def test_prepared_bytes_are_made_on_the_burst_thread_and_sent(
    client: PodClient, pods: Any
) -> None:
    """With `prepare`, each put's bytes are what it returns, made off the event loop's
    thread; a put without a pod still lets it run; what it raises is raised, unsent."""
    running = await pods(2)
    data = [os.urandom(250_000) for _ in range(3)]
    made_on: list[str] = []

    def prepare() -> list[list[bytes]]:
        made_on.append(threading.current_thread().name)
        return [[d[:10], d[10:]] for d in data]

    urls: list[str | None] = [running[0].url, None, running[1].url]
    puts = [ShardPut(url, 11, ShardId(OID, "0", i), ()) for i, url in enumerate(urls)]
    results = await client.put_shards(puts, timeout_s=5, grace_s=lambda _t: 1.0,
                                      prepare=prepare)
    assert made_on and made_on[0].startswith("kura-burst")
    assert isinstance(results[1], PodUnavailable)
    for put, result, d in zip(puts, results, data, strict=True):
        if put.url is not None:
            assert isinstance(result, ShardInfo) and result.size == len(d)
            assert await client.read_shard(put.url, 11, put.shard) == d

    def broken() -> list[list[bytes]]:
        raise RuntimeError("codec trouble")

    later = [ShardPut(running[0].url, 11, ShardId("ef" * 16, "0", 0), ())]
    with pytest.raises(RuntimeError, match="codec trouble"):
        await client.put_shards(later, timeout_s=5, grace_s=lambda _t: 1.0, prepare=broken)
    with pytest.raises(ShardNotFound):
        await client.read_shard(running[0].url, 11, later[0].shard)


async def test_a_pod_that_never_answers_costs_the_grace_not_the_timeout(
    client: PodClient, pods: Any
) -> None:
    running = await pods(2)
    hung, hung_url = _address(listening=True)
    try:
        data = [os.urandom(100_000) for _ in range(3)]
        started = time.monotonic()
        results = await client.put_shards(
            _puts([running[0].url, hung_url, running[1].url], data), timeout_s=30,
            grace_s=lambda _t: 0.3,
        )
        elapsed = time.monotonic() - started
        assert isinstance(results[1], PodTimedOut)
        assert isinstance(results[0], ShardInfo) and isinstance(results[2], ShardInfo)
        assert 0.3 <= elapsed < 2.0, elapsed

        # Patience caps the grace for one put (a pod already known to be in trouble).
        data = [os.urandom(1000) for _ in range(2)]
        puts = [ShardPut(running[0].url, 12, ShardId(OID, "0", 0), [data[0]]),
                ShardPut(hung_url, 12, ShardId(OID, "0", 1), [data[1]], patience_s=0.05)]
        started = time.monotonic()
        results = await client.put_shards(puts, timeout_s=30, grace_s=lambda _t: 10.0)
        assert isinstance(results[1], PodTimedOut)
        assert time.monotonic() - started < 1.0

        # Alone, with nobody else answering, only the hard timeout ends the wait.
        started = time.monotonic()
        results = await client.put_shards(puts[1:], timeout_s=0.4, grace_s=lambda _t: 0.0)
        assert isinstance(results[0], PodTimedOut)
        assert 0.4 <= time.monotonic() - started < 2.0
    finally:
        hung.close()


async def test_a_connection_the_pod_closed_is_not_reused(
    tmp_path: Path, client: PodClient, start_pod: Any
) -> None:
    first = await start_pod(tmp_path / "pod", client)
    put = ShardPut(first.url, 3, ShardId(OID, "0", 0), [b"one"])
    assert isinstance((await client.put_shards([put], timeout_s=5,
                                               grace_s=lambda _t: 1.0))[0], ShardInfo)
    assert _pooled(client) == 1
    port = first.server.port
    await first.server.close()  # the pooled connection is closed under the client
    again = await start_pod(tmp_path / "pod", client, port=port)
    try:
        await asyncio.sleep(0.05)
        put = ShardPut(again.url, 3, ShardId(OID, "0", 1), [b"two"])
        result = (await client.put_shards([put], timeout_s=5, grace_s=lambda _t: 1.0))[0]
        assert isinstance(result, ShardInfo), result
        assert await client.read_shard(again.url, 3, put.shard) == b"two"
    finally:
        await again.server.close()


@pytest.mark.parametrize("size", [0, 1, 5 << 20])
async def test_sizes_from_empty_to_a_few_mebibytes(
    pod: Any, size: int
) -> None:
    data = os.urandom(size)
    put = ShardPut(pod.url, 4, ShardId(OID, "0", 2), [data] if size else [])
    result = (await pod.client.put_shards([put], timeout_s=10, grace_s=lambda _t: 1.0))[0]
    assert isinstance(result, ShardInfo) and result.size == size
    assert await pod.client.read_shard(pod.url, 4, put.shard) == data

