"""The lean shard-PUT client (_wire.py) against a real pod app over loopback: keep-alive
reuse, chunked bodies, early refusals, wrong lengths and connections the pod closed."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kurastore.storage import ShardExists, ShardId, ShardNotFound

SID = ShardId("cd" * 16, "0", 1)


async def _frames(data: bytes, size: int = 256 << 10) -> AsyncIterator[memoryview]:
    view = memoryview(data)
    for off in range(0, len(data), size):
        yield view[off : off + size]


def _connections(client: Any) -> int:
    wire = client._wire
    return 0 if wire is None else sum(len(c) for c in wire._idle.values())


async def test_sequential_puts_reuse_one_connection(pod: Any) -> None:
    for i in range(20):
        data = os.urandom(1000 + i)
        info = await pod.client.put_shard(pod.url, 3, ShardId(f"{i:032x}", "0", 0), data)
        assert info.size == len(data)
        assert await pod.client.read_shard(pod.url, 3, ShardId(f"{i:032x}", "0", 0)) == data
    assert _connections(pod.client) == 1


async def test_streamed_body_with_and_without_length(pod: Any) -> None:
    data = os.urandom((3 << 20) + 4321)
    info = await pod.client.put_shard(pod.url, 5, SID, _frames(data), length=len(data))
    assert info.size == len(data)
    other = ShardId("ef" * 16, "0", 2)
    info = await pod.client.put_shard(pod.url, 5, other, _frames(data))  # chunked
    assert info.size == len(data)
    assert await pod.client.read_shard(pod.url, 5, SID) == data
    assert await pod.client.read_shard(pod.url, 5, other) == data
    empty = ShardId("ef" * 16, "0", 3)
    assert (await pod.client.put_shard(pod.url, 5, empty, b"")).size == 0


async def test_existing_shard_is_refused_and_the_connection_recovers(pod: Any) -> None:
    data = os.urandom(8 << 20)
    await pod.client.put_shard(pod.url, 7, SID, data)
    with pytest.raises(ShardExists):  # the pod answers 409 before the 8 MiB are sent
        await pod.client.put_shard(pod.url, 7, SID, _frames(data), length=len(data))
    with pytest.raises(ShardExists):
        await pod.client.put_shard(pod.url, 7, SID, b"small")
    assert await pod.client.read_shard(pod.url, 7, SID) == data  # the first copy is intact
    fresh = ShardId("01" * 16, "0", 0)
    assert (await pod.client.put_shard(pod.url, 7, fresh, b"after")).size == 5


@pytest.mark.parametrize("declared", [10, 30])
async def test_wrong_length_stores_nothing(pod: Any, declared: int) -> None:
    with pytest.raises(ValueError):
        await pod.client.put_shard(pod.url, 9, SID, _frames(b"x" * 20, 4), length=declared)
    with pytest.raises(ShardNotFound):
        await pod.client.head_shard(pod.url, 9, SID)
    assert (await pod.client.put_shard(pod.url, 9, SID, b"y" * 20)).size == 20


async def test_connection_closed_by_a_restarted_pod_is_not_reused(
    tmp_path: Any, client: Any, start_pod: Any
) -> None:
    first = await start_pod(tmp_path / "pod", client)
    await client.put_shard(first.url, 1, SID, b"one")
    assert _connections(client) == 1
    port = first.server.port
    await first.server.close()  # the pooled connection is closed under the client
    again = await start_pod(tmp_path / "pod", client, port=port)
    try:
        other = ShardId("02" * 16, "0", 0)
        assert (await client.put_shard(first.url, 1, other, b"two")).size == 3
    finally:
        await again.server.close()


async def test_wrong_secret_is_refused(tmp_path: Any, start_pod: Any) -> None:
    from kurastore.storage import PodAuthError, PodClient

    intruder = PodClient(b"not-the-cluster-secret-0123456789")
    pod = await start_pod(tmp_path / "pod", intruder)
    try:
        with pytest.raises(PodAuthError):
            await intruder.put_shard(pod.url, 1, SID, b"data")
    finally:
        await intruder.close()
        await pod.server.close()


async def test_ranged_reads_over_the_lean_client(pod: Any) -> None:
    data = os.urandom((2 << 20) + 99)
    await pod.client.put_shard(pod.url, 11, SID, data)
    assert await pod.client.read_shard(pod.url, 11, SID) == data
    assert await pod.client.read_shard(pod.url, 11, SID, 5, 10) == data[5:15]
    assert await pod.client.read_shard(pod.url, 11, SID, 1 << 20, 1 << 20) == \
        data[1 << 20 : 2 << 20]
    assert await pod.client.read_shard(pod.url, 11, SID, len(data) - 1) == data[-1:]
    from kurastore.storage import InvalidRange

    with pytest.raises(InvalidRange):
        await pod.client.read_shard(pod.url, 11, SID, len(data) - 5, 10)
    with pytest.raises(ShardNotFound):
        await pod.client.read_shard(pod.url, 11, ShardId("99" * 16, "0", 0), 0, 10)
    assert _connections(pod.client) == 1  # errors with complete answers keep the connection


async def _answering_server(answer_slowly: bool) -> tuple[asyncio.Server, str]:
    """A stand-in pod on loopback that reads one request head, then either never
    answers, or answers a 10-byte body one byte every 0.1 s."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if answer_slowly:
            writer.write(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n")
            for byte in b"0123456789":
                await asyncio.sleep(0.1)
                writer.write(bytes([byte]))
                await writer.drain()
        else:
            await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_a_silent_pod_times_out_but_a_slow_steady_one_does_not() -> None:
    from kurastore.storage import PodClient, PodUnavailable

    client = PodClient(b"s" * 32, request_timeout_s=0.3, retries=0)
    silent, silent_url = await _answering_server(answer_slowly=False)
    slow, slow_url = await _answering_server(answer_slowly=True)
    try:
        started = time.monotonic()
        with pytest.raises(PodUnavailable):
            await client.read_shard(silent_url, 1, SID, 0, 10)
        assert 0.3 <= time.monotonic() - started < 2.0
        # A whole second in all, but never 0.3 s without a byte: not a stall.
        assert await client.read_shard(slow_url, 1, SID, 0, 10) == b"0123456789"
    finally:
        await client.close()
        for server in (silent, slow):
            server.close()


async def test_an_answered_read_leaves_no_garbage_cycle_holding_its_body(pod: Any) -> None:
    """Each answer's body is freed when its reader drops it, not at the next full garbage
    collection (a timer callback that re-armed itself once kept every body alive)."""
    data = os.urandom(1 << 20)
    await pod.client.put_shard(pod.url, 9, SID, data)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(3):
            assert await pod.client.read_shard(pod.url, 9, SID) == data
        gc.collect()
        # (only the client's own objects: the pod app in this process may leave others)
        held = [o for o in gc.garbage if type(o).__name__ == "WireResponse"
                or getattr(o, "__qualname__", "").endswith("_await_answer.<locals>.watch")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert held == []
