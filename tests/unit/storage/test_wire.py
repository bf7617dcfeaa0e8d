"""The lean shard-PUT client (_wire.py) against a real pod app over loopback: keep-alive
reuse, chunked bodies, early refusals, wrong lengths and connections the pod closed."""

from __future__ import annotations

import os
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
