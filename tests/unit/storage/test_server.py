"""The pod service end to end: the real app on loopback, driven by the real PodClient."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from kurastore.storage import (
    InsufficientStorage,
    InvalidRange,
    PodAuthError,
    PodClient,
    ShardExists,
    ShardId,
    ShardNotFound,
    ShardTooLarge,
)
from kurastore.storage.auth import sign_request
from kurastore.storage.server import POD_METRICS

Pod = Any
SECRET = b"unit-test-cluster-secret-0123456789"  # the conftest's; checked below


def shard(n: int = 0, tag: str = "p1", index: int = 0) -> ShardId:
    return ShardId(f"{n:032x}", tag, index)


async def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait until `condition()` holds (the pod finishes an abort after the client left)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_secret_matches_the_fixture(secret: bytes) -> None:
    assert secret == SECRET


async def test_put_get_head_range_delete(pod: Pod) -> None:
    c, url = pod.client, pod.url
    data = os.urandom(3 << 20)
    info = await c.put_shard(url, 5, shard(1), data)
    assert (info.partition, info.size) == (5, len(data))
    assert await c.read_shard(url, 5, shard(1)) == data
    assert await c.read_shard(url, 5, shard(1), 1000, 5000) == data[1000:6000]
    assert await c.read_shard(url, 5, shard(1), len(data) - 10) == data[-10:]
    assert await c.read_shard(url, 5, shard(1), 7, 0) == b""
    streamed = b"".join([x async for x in c.stream_shard(url, 5, shard(1), 10, 2 << 20)])
    assert streamed == data[10 : 10 + (2 << 20)]
    head = await c.head_shard(url, 5, shard(1))
    assert (head.size, head.mtime) == (len(data), info.mtime)
    assert await c.delete_shard(url, 5, shard(1)) is True
    assert await c.delete_shard(url, 5, shard(1)) is False
    with pytest.raises(ShardNotFound):
        await c.read_shard(url, 5, shard(1))
    with pytest.raises(ShardNotFound):
        await c.head_shard(url, 5, shard(1))
    with pytest.raises(ShardNotFound):
        [x async for x in c.stream_shard(url, 5, shard(1))]


async def test_ranges_outside_the_shard(pod: Pod) -> None:
    c, url = pod.client, pod.url
    await c.put_shard(url, 1, shard(1), b"0123456789")
    with pytest.raises(InvalidRange):
        await c.read_shard(url, 1, shard(1), 10)
    with pytest.raises(InvalidRange):
        await c.read_shard(url, 1, shard(1), 5, 6)  # one byte too many
    with pytest.raises(InvalidRange):
        await c.read_shard(url, 1, shard(1), 11, 0)
    with pytest.raises(InvalidRange):
        [x async for x in c.stream_shard(url, 1, shard(1), 8, 5)]


async def test_streamed_put_chunked_and_with_length(pod: Pod) -> None:
    c, url = pod.client, pod.url
    data = os.urandom(5_000_000)

    async def chunks() -> AsyncIterator[bytes | memoryview]:
        view = memoryview(data)
        for i in range(0, len(data), 300_001):
            await asyncio.sleep(0)
            yield view[i : i + 300_001]

    await c.put_shard(url, 2, shard(1), chunks())
    await c.put_shard(url, 2, shard(2), chunks(), length=len(data))
    await c.put_shard(url, 2, shard(3), b"")
    assert await c.read_shard(url, 2, shard(1)) == data
    assert await c.read_shard(url, 2, shard(2)) == data
    assert await c.read_shard(url, 2, shard(3)) == b""
    with pytest.raises(ValueError):
        await c.put_shard(url, 2, shard(4), chunks(), length=len(data) + 1)
    with pytest.raises(ValueError):
        await c.put_shard(url, 2, shard(5), chunks(), length=len(data) - 1)
    await eventually(lambda: not os.listdir(pod.data_dir / "tmp"))
    names = {i.shard for i in await c.list_partition(url, 2)}
    assert names == {shard(1), shard(2), shard(3)}


async def test_overwrite_refused(pod: Pod) -> None:
    c, url = pod.client, pod.url
    await c.put_shard(url, 3, shard(1), b"original")
    with pytest.raises(ShardExists):
        await c.put_shard(url, 3, shard(1), os.urandom(4 << 20))
    assert await c.read_shard(url, 3, shard(1)) == b"original"
    # Racing PUTs of one name: exactly one wins, the others get ShardExists.
    results = await asyncio.gather(
        *(c.put_shard(url, 3, shard(2), bytes([i]) * 100_000) for i in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, ShardExists) for r in results if isinstance(r, BaseException))
    assert os.listdir(pod.data_dir / "tmp") == []


async def test_listing_and_object_delete(pod: Pod) -> None:
    c, url = pod.client, pod.url
    for part, n, tag, index in [(7, 1, "p1", 0), (7, 1, "p1", 4), (7, 1, "p2", 4), (9, 2, "p1", 1)]:
        await c.put_shard(url, part, shard(n, tag, index), b"x" * index)
    assert await c.list_partitions(url) == [7, 9]
    listed = await c.list_partition(url, 7)
    assert [(i.shard, i.size) for i in listed] == [
        (shard(1, "p1", 0), 0), (shard(1, "p1", 4), 4), (shard(1, "p2", 4), 4)
    ]
    assert await c.list_partition(url, 8) == []
    assert await c.delete_object_shards(url, 7, f"{1:032x}", "p1") == 2
    assert await c.delete_object_shards(url, 7, f"{1:032x}") == 1
    assert await c.delete_object_shards(url, 7, f"{1:032x}") == 0
    assert await c.list_partitions(url) == [9]
    assert not (pod.data_dir / "shards" / "7").exists()


async def test_usage_and_readiness(pod: Pod) -> None:
    c, url = pod.client, pod.url
    await c.put_shard(url, 1, shard(1), b"a" * 1000)
    await c.put_shard(url, 1, shard(2), b"a" * 24)
    u = await c.usage(url)
    assert (u.used_bytes, u.shards) == (1024, 2)
    assert u.capacity_bytes > u.free_bytes > 0
    assert await c.is_ready(url) is True
    assert await c.is_ready("http://127.0.0.1:1") is False


async def test_disk_full_answers_507_and_reads_go_on(
    tmp_path: Path, client: PodClient, start_pod: Any
) -> None:
    pod = await start_pod(tmp_path / "small", client, capacity_bytes=3 << 20)
    try:
        c, url = pod.client, pod.url
        await c.put_shard(url, 1, shard(1), b"k" * (2 << 20))
        with pytest.raises(InsufficientStorage):
            await c.put_shard(url, 1, shard(2), os.urandom(2 << 20))

        async def stream() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"s" * (1 << 20)

        with pytest.raises(InsufficientStorage):
            await c.put_shard(url, 1, shard(3), stream())
        assert os.listdir(pod.data_dir / "tmp") == []
        assert await c.read_shard(url, 1, shard(1)) == b"k" * (2 << 20)
        assert [i.shard for i in await c.list_partition(url, 1)] == [shard(1)]
        u = await c.usage(url)
        assert (u.capacity_bytes, u.used_bytes, u.free_bytes) == (3 << 20, 2 << 20, 1 << 20)
    finally:
        await pod.server.close()


async def test_cut_off_upload_leaves_nothing(pod: Pod, tmp_path: Path) -> None:
    target = f"/v1/shards/4/{shard(1).name}"
    host, port = pod.url.removeprefix("http://").split(":")
    # A large body (streamed to a temporary file) and a small one (taken whole first).
    for declared, sent in ((8 << 20, 3 << 20), (100_000, 5_000)):
        _reader, writer = await asyncio.open_connection(host, int(port))
        head = (f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n"
                f"X-Kura-Auth: {sign_request(SECRET, 'PUT', target)}\r\n\r\n")
        writer.write(head.encode() + os.urandom(sent))
        await writer.drain()
        await asyncio.sleep(0.3)  # the pod has written part of it to its temporary file
        writer.transport.abort()  # the gateway dies mid-body
    await eventually(lambda: not os.listdir(pod.data_dir / "tmp"))
    with pytest.raises(ShardNotFound):
        await pod.client.head_shard(pod.url, 4, shard(1))
    assert (await pod.client.usage(pod.url)).used_bytes == 0
    # A producer failing mid-stream aborts the PUT the same way.

    async def failing() -> AsyncIterator[bytes]:
        yield b"a" * (2 << 20)
        raise RuntimeError("source broke")

    with pytest.raises(Exception):  # noqa: B017 - whatever the producer raised, nothing stays
        await pod.client.put_shard(pod.url, 4, shard(2), failing())
    await eventually(lambda: not os.listdir(pod.data_dir / "tmp"))
    assert await pod.client.list_partitions(pod.url) == []


async def test_restart_cleans_temporary_files(
    tmp_path: Path, client: PodClient, start_pod: Any
) -> None:
    data_dir = tmp_path / "pod"
    pod = await start_pod(data_dir, client)
    await client.put_shard(pod.url, 1, shard(1), b"kept")
    await pod.server.close()
    # What a crash mid-write leaves behind (the process died before unlinking).
    (data_dir / "tmp" / f"1.{shard(2).name}.dead.part").write_bytes(b"partial")
    pod = await start_pod(data_dir, client)
    try:
        assert os.listdir(data_dir / "tmp") == []
        assert await client.read_shard(pod.url, 1, shard(1)) == b"kept"
        assert [i.shard for i in await client.list_partition(pod.url, 1)] == [shard(1)]
    finally:
        await pod.server.close()


TRAVERSALS = [
    "/v1/shards/1/../../../../etc/passwd",
    "/v1/shards/1/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/v1/shards/1/%2e%2e%2f%2e%2e%2fvictim",
    "/v1/shards/..%2F..%2F/" + shard(1).name,
    "/v1/shards/1//etc/passwd",
    "/v1/shards/1/%2Fetc%2Fpasswd",
    "/v1/shards/1/" + shard(1).name + "%00",
    "/v1/shards/1/" + shard(1).name.replace(".p1.", ".p1%00.", 1),
    "/v1/shards/-1/" + shard(1).name,
    "/v1/shards/01/" + shard(1).name,
    "/v1/shards/99999999999/" + shard(1).name,
    "/v1/shards/1/" + "a" * 5000,
    "/v1/shards/1/" + shard(1).name.replace("p1", "..", 1),
    "/v1/shards/1/" + shard(1).name + "/../../../../victim",
    "/v1/objects/1/..%2F..%2Fvictim",
    "/v1/objects/1/" + f"{1:032x}" + "?tag=..%2F..%2F..",
    "/v1/partitions/..%2F..",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_path_traversal_refused(
    pod: Pod, tmp_path: Path, target: str, raw_request: Any
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    for method in ("PUT", "GET", "DELETE", "HEAD", "POST"):
        body = b"evil" if method == "PUT" else b""
        status, _ = await raw_request(pod.url, method, target, body=body)
        assert status in (400, 404, 405), (method, target, status)
    assert victim.read_bytes() == b"precious"
    outside = set(os.listdir(tmp_path))
    assert outside == {"pod", "victim"}
    assert os.listdir(pod.data_dir / "shards") == []
    assert os.listdir(pod.data_dir / "tmp") == []


async def test_auth_missing_wrong_stale(
    pod: Pod, caplog: pytest.LogCaptureFixture, raw_request: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    target = f"/v1/shards/1/{shard(1).name}"
    assert (await raw_request(pod.url, "PUT", target, body=b"x", auth=False))[0] == 401
    wrong = b"not-the-cluster-secret-at-all-000"
    assert (await raw_request(pod.url, "PUT", target, body=b"x", secret=wrong))[0] == 403
    stale = (await raw_request(pod.url, "PUT", target, body=b"x", now=0))[0]
    assert stale == 403
    assert (await raw_request(pod.url, "GET", "/v1/usage", auth=False))[0] == 401
    assert (await raw_request(pod.url, "GET", "/metrics", auth=False))[0] == 401
    assert (await raw_request(pod.url, "GET", "/healthz", auth=False))[0] == 200
    assert (await raw_request(pod.url, "GET", "/readyz", auth=False))[0] == 200
    bad = PodClient(wrong, retries=3)
    try:
        with pytest.raises(PodAuthError):
            await bad.read_shard(pod.url, 1, shard(1))
        with pytest.raises(PodAuthError):
            await bad.put_shard(pod.url, 1, shard(1), b"x")
    finally:
        await bad.close()
    metrics = pod.app[POD_METRICS]
    assert metrics.requests.labels("GetShard", "403")._value.get() == 1  # not retried
    assert os.listdir(pod.data_dir / "shards") == []
    text = caplog.text
    assert SECRET.decode() not in text and wrong.decode() not in text
    assert "X-Kura-Auth" not in text


async def test_metrics_and_access_log(
    pod: Pod, caplog: pytest.LogCaptureFixture, raw_request: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="kurastore.storage.access")  # every request
    c, url = pod.client, pod.url
    await c.put_shard(url, 1, shard(1), b"m" * 5000)
    await c.read_shard(url, 1, shard(1), 0, 1000)
    # A request is counted once its answer is written, which may be just after the
    # client has read it: scrape until both are in (a busy machine delays it).
    for _ in range(50):
        status, body = await raw_request(url, "GET", "/metrics")
        assert status == 200
        text = body.decode()
        if 'op="GetShard"' in text:
            break
        await asyncio.sleep(0.1)
    assert 'kurastore_pod_requests_total{op="PutShard",status="201"} 1.0' in text
    assert 'kurastore_pod_requests_total{op="GetShard",status="206"} 1.0' in text
    assert "kurastore_pod_received_bytes_total 5000.0" in text
    assert "kurastore_pod_used_bytes 5000.0" in text
    assert "kurastore_pod_packs 1.0" in text  # a 5000-byte shard is packed
    assert "kurastore_pod_pack_live_bytes 8192.0" in text  # header + payload, 4 KiB blocks
    assert 'kurastore_pod_request_duration_seconds_count{op="PutShard"} 1.0' in text
    lines = [r.getMessage() for r in caplog.records if r.name == "kurastore.storage.access"]
    assert any('"op":"PutShard"' in m and '"status":201' in m and '"bytes_in":5000' in m
               for m in lines)
    assert any('"op":"GetShard"' in m and '"status":206' in m and '"bytes_out":1000' in m
               for m in lines)
    assert all("X-Kura-Auth" not in m and SECRET.decode() not in m for m in lines)
    sent = sum(json.loads(m)["bytes_out"] for m in lines if '"op":"Metrics"' not in m)
    assert f"kurastore_pod_sent_bytes_total {float(sent)}" in text


async def test_at_info_only_failed_requests_are_logged(
    pod: Pod, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kurastore.storage.access")
    c, url = pod.client, pod.url
    await c.put_shard(url, 2, shard(2), b"quiet" * 100)
    assert await c.read_shard(url, 2, shard(2)) == b"quiet" * 100
    with pytest.raises(ShardNotFound):
        await c.read_shard(url, 2, shard(3))
    # A request is logged once its answer is written, possibly just after the client
    # has it: wait for the 404's line, then a little more for any line of the others.
    for _ in range(50):
        if any(r.name == "kurastore.storage.access" for r in caplog.records):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    lines = [r.getMessage() for r in caplog.records if r.name == "kurastore.storage.access"]
    assert len(lines) == 1
    assert '"op":"GetShard"' in lines[0] and '"status":404' in lines[0]


async def test_public_metrics_and_shard_size_limit(
    tmp_path: Path, client: PodClient, start_pod: Any, raw_request: Any
) -> None:
    pod = await start_pod(tmp_path / "p", client, metrics_public=True, max_shard_bytes=1 << 20)
    try:
        status, body = await raw_request(pod.url, "GET", "/metrics", auth=False)
        assert status == 200 and b"kurastore_pod_requests_total" in body
        assert (await raw_request(pod.url, "GET", "/v1/usage", auth=False))[0] == 401
        with pytest.raises(ShardTooLarge):
            await client.put_shard(pod.url, 1, shard(1), b"x" * ((1 << 20) + 1))

        async def stream() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b"y" * (1 << 19)

        with pytest.raises(ShardTooLarge):
            await client.put_shard(pod.url, 1, shard(2), stream())
        assert await client.list_partitions(pod.url) == []
        assert os.listdir(pod.data_dir / "tmp") == []
    finally:
        await pod.server.close()
