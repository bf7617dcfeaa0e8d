"""The pod's lean lane (_lane.py) on a real socket: what it serves itself, what it hands
to the aiohttp app on the same connection, and that both answer alike.

Every other test of this package goes through the lane too (the conftest serves pods with
PodListener); these look at the connection-level behaviour only the lane has."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
from typing import Any

import pytest

from kurastore.storage import ShardId, ShardNotFound
from kurastore.storage._listener import PodListener
from kurastore.storage._pack import PACK_MAX_SHARD
from kurastore.storage.auth import sign_request
from kurastore.storage.server import SHARD_STORE

SECRET = b"unit-test-cluster-secret-0123456789"


def _sid(n: int) -> ShardId:
    return ShardId(f"{n:032x}", "p1", 0)


class Conn:
    """One raw keep-alive connection: send requests byte for byte, read answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Conn:
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    def request_bytes(self, method: str, target: str, body: bytes | None = None,
                      headers: dict[str, str] | None = None, auth: bool = True) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", "Host: pod"]
        if auth:
            lines.append(f"X-Kura-Auth: {sign_request(SECRET, method, target)}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def answer(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if head_only:
            return status, headers, b""
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def call(self, method: str, target: str, body: bytes | None = None,
                   **kw: Any) -> tuple[int, dict[str, str], bytes]:
        self.send(self.request_bytes(method, target, body, **kw))
        return await self.answer(head_only=method == "HEAD")

    async def closed_by_peer(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 5) == b""

    def close(self) -> None:
        self.writer.close()


def _target(partition: int, sid: ShardId) -> str:
    return f"/v1/shards/{partition}/{sid.name}"


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 65535, 65536, 262144 + 7, 2 << 20,
                                  (2 << 20) + 1, 3 << 20])
async def test_whole_body_puts_store_exact_bytes(pod: Any, size: int) -> None:
    # Around the small-shard (whole body, page cache) and staged O_DIRECT (2 MiB) cut-offs.
    data = os.urandom(size)
    info = await pod.client.put_shard(pod.url, 3, _sid(size), data)
    assert info.size == size
    path = pod.data_dir / "shards" / "3" / _sid(size).name
    if size <= PACK_MAX_SHARD:  # appended to a pack: no file of its own
        assert not path.exists()
        assert any(data in p.read_bytes() for p in (pod.data_dir / "packs").glob("*.pack"))
    else:
        assert path.read_bytes() == data
    assert await pod.client.read_shard(pod.url, 3, _sid(size)) == data
    assert os.listdir(pod.data_dir / "tmp") == []
    assert (await pod.client.usage(pod.url)).used_bytes == size


async def test_range_forms_match_http(pod: Any) -> None:
    data = os.urandom(3 << 20)  # larger than one inline read: the big ranges use sendfile
    await pod.client.put_shard(pod.url, 2, _sid(1), data)
    conn = await Conn.open(pod.url)
    target = _target(2, _sid(1))
    cases = {
        "bytes=10-19": (206, data[10:20], "bytes 10-19/3145728"),
        "bytes=3145700-": (206, data[3145700:], "bytes 3145700-3145727/3145728"),
        "bytes=-5": (206, data[-5:], "bytes 3145723-3145727/3145728"),
        "bytes=0-99999999": (206, data, "bytes 0-3145727/3145728"),
        "bytes=1048576-3145727": (206, data[1048576:], "bytes 1048576-3145727/3145728"),
    }
    try:
        for rng, (status, body, content_range) in cases.items():
            got = await conn.call("GET", target, headers={"Range": rng})
            assert (got[0], got[1].get("content-range"), got[2]) == (status, content_range, body)
        status, _headers, body = await conn.call("GET", target)
        assert (status, body) == (200, data)
        for bad in ("bytes=5-1", "bytes=-", "bytes=3145728-"):
            assert (await conn.call("GET", target, headers={"Range": bad}))[0] == 416
    finally:
        conn.close()


async def test_refusals_come_before_the_body_and_close(pod: Any) -> None:
    target = _target(1, _sid(2))
    conn = await Conn.open(pod.url)
    # No auth, and a body announced but never sent: the answer must not wait for it.
    head = conn.request_bytes("PUT", target, b"x" * 100_000, auth=False)
    conn.send(head[: head.index(b"\r\n\r\n") + 4])
    status, headers, body = await conn.answer()
    assert (status, headers.get("connection")) == (401, "close")
    assert b"PodAuthError" in body
    assert await conn.closed_by_peer()
    conn.close()
    # A wrong signature, a bad name and a bad partition, the same way.
    for target_, auth_target, status in (
        (target, "/elsewhere", 403),
        ("/v1/shards/1/not-a-shard", "/v1/shards/1/not-a-shard", 400),
        (f"/v1/shards/007/{_sid(2).name}", f"/v1/shards/007/{_sid(2).name}", 400),
    ):
        conn = await Conn.open(pod.url)
        conn.send(f"PUT {target_} HTTP/1.1\r\nHost: pod\r\nContent-Length: 5000\r\n"
                  f"X-Kura-Auth: {sign_request(SECRET, 'PUT', auth_target)}\r\n\r\n".encode())
        got_status, headers, _body = await conn.answer()
        assert (got_status, headers.get("connection")) == (status, "close")
        conn.close()
    with pytest.raises(ShardNotFound):
        await pod.client.head_shard(pod.url, 1, _sid(2))


async def test_a_refusal_reaches_a_client_still_sending_its_body(
    tmp_path: Any, start_pod: Any
) -> None:
    # The gateway's own client writes the whole body while the pod refuses it before
    # reading any: the client must hear the refusal itself (an auth error), not an
    # unreachable pod, and the pod must keep nothing.
    from kurastore.storage import PodAuthError, PodClient

    intruder = PodClient(b"not-the-cluster-secret-0123456789")
    pod = await start_pod(tmp_path / "pod", intruder)
    try:
        for size in (3 << 20, 1 << 20, 200_000):
            with pytest.raises(PodAuthError):
                await intruder.put_shard(pod.url, 1, _sid(size), os.urandom(size))
        assert os.listdir(pod.data_dir / "tmp") == []
    finally:
        await intruder.close()
        await pod.server.close()


async def test_other_requests_are_handed_to_aiohttp_on_the_same_connection(pod: Any) -> None:
    conn = await Conn.open(pod.url)
    try:
        assert (await conn.call("PUT", _target(4, _sid(1)), b"first"))[0] == 201
        # HEAD and DELETE are the aiohttp app's: the connection moves there and stays usable.
        status, headers, _ = await conn.call("HEAD", _target(4, _sid(1)))
        assert (status, headers.get("content-length")) == (200, "5")
        assert (await conn.call("DELETE", _target(4, _sid(1))))[0] == 204
        assert (await conn.call("PUT", _target(4, _sid(2)), b"second"))[0] == 201
        status, _, body = await conn.call("GET", _target(4, _sid(2)))
        assert (status, body) == (200, b"second")
        status, _, body = await conn.call("GET", "/v1/usage")
        assert status == 200 and json.loads(body)["shards"] == 1
    finally:
        conn.close()


async def test_chunked_and_expect_bodies_are_served_by_aiohttp(pod: Any) -> None:
    conn = await Conn.open(pod.url)
    try:
        target = _target(6, _sid(1))
        conn.send(conn.request_bytes("PUT", target, headers={"Transfer-Encoding": "chunked"})
                  + b"5\r\nhello\r\n0\r\n\r\n")
        assert (await conn.answer())[0] == 201
        target = _target(6, _sid(2))
        conn.send(conn.request_bytes("PUT", target, b"", headers={"Expect": "100-continue"})
                  .replace(b"Content-Length: 0", b"Content-Length: 3"))
        status, _, _ = await conn.answer()
        assert status == 100
        conn.send(b"abc")
        assert (await conn.answer())[0] == 201
    finally:
        conn.close()
    assert await pod.client.read_shard(pod.url, 6, _sid(1)) == b"hello"
    assert await pod.client.read_shard(pod.url, 6, _sid(2)) == b"abc"


async def test_pipelined_requests_are_answered_in_order(pod: Any) -> None:
    conn = await Conn.open(pod.url)
    try:
        bodies = [os.urandom(n) for n in (10, 70_000, 300_000)]
        burst = b"".join(conn.request_bytes("PUT", _target(7, _sid(i)), body)
                         for i, body in enumerate(bodies))
        burst += b"".join(conn.request_bytes("GET", _target(7, _sid(i)))
                          for i in range(len(bodies)))
        conn.send(burst)
        for _ in bodies:
            assert (await conn.answer())[0] == 201
        for body in bodies:
            status, _, got = await conn.answer()
            assert (status, got) == (200, body)
    finally:
        conn.close()


async def test_a_client_that_stops_sending_after_its_request_still_gets_the_answer(
    pod: Any,
) -> None:
    """A half-close (shutdown of the sending side) right after a PUT is no disconnect: the
    shard is stored, the 201 comes back, then the pod closes."""
    conn = await Conn.open(pod.url)
    try:
        body = os.urandom(100_000)
        conn.send(conn.request_bytes("PUT", _target(7, _sid(9)), body))
        await conn.writer.drain()
        conn.writer.write_eof()
        assert (await conn.answer())[0] == 201
        assert await conn.closed_by_peer()
    finally:
        conn.close()
    assert await pod.client.read_shard(pod.url, 7, _sid(9)) == body


async def test_packed_shards_are_served_by_the_event_loop_and_files_by_a_thread(
    pod: Any,
) -> None:
    """Small shards (a pack's) never start a lane thread; a shard file does, on the same
    connection, and both read back exact."""
    def lane_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "pod-lane"}

    before = lane_threads()
    conn = await Conn.open(pod.url)
    try:
        small, large = os.urandom(256 << 10), os.urandom(PACK_MAX_SHARD + 1)
        assert (await conn.call("PUT", _target(8, _sid(1)), small))[0] == 201
        assert (await conn.call("GET", _target(8, _sid(1))))[::2] == (200, small)
        assert lane_threads() == before
        assert (await conn.call("PUT", _target(8, _sid(2)), large))[0] == 201
        assert (await conn.call("GET", _target(8, _sid(2))))[::2] == (200, large)
        assert len(lane_threads() - before) == 1
    finally:
        conn.close()


async def test_existing_shard_is_a_conflict_and_keeps_the_first(pod: Any) -> None:
    conn = await Conn.open(pod.url)
    try:
        assert (await conn.call("PUT", _target(8, _sid(1)), b"one"))[0] == 201
        status, _, body = await conn.call("PUT", _target(8, _sid(1)), b"two!")
        assert status == 409 and b"ShardExists" in body
        assert (await conn.call("GET", _target(8, _sid(1))))[2] == b"one"  # still usable
    finally:
        conn.close()
    assert (await pod.client.usage(pod.url)).used_bytes == 3


async def test_a_body_cut_off_stores_nothing_and_its_buffer_is_reused_cleanly(
    pod: Any,
) -> None:
    # Packed PUT bodies are received straight into a staging buffer of the pack's.
    staging = pod.app[SHARD_STORE].staging
    idle = len(staging._idle)
    conn = await Conn.open(pod.url)
    conn.send(conn.request_bytes("PUT", _target(4, _sid(1)), os.urandom(300_000))[:-1000])
    await conn.writer.drain()
    await asyncio.sleep(0.3)  # the pod has the rest of the request
    conn.close()
    for _ in range(100):
        if len(staging._idle) > idle:
            break
        await asyncio.sleep(0.02)
    assert len(staging._idle) == idle + 1  # given back, not leaked
    with pytest.raises(ShardNotFound):
        await pod.client.read_shard(pod.url, 4, _sid(1))
    assert (await pod.client.usage(pod.url)).used_bytes == 0
    # The buffer the cut body half filled carries the next body alone.
    other = os.urandom(200_000)
    assert (await pod.client.put_shard(pod.url, 4, _sid(2), other)).size == len(other)
    assert len(staging._idle) == idle + 1  # taken and given back before the answer
    assert await pod.client.read_shard(pod.url, 4, _sid(2)) == other


async def test_requests_are_counted_and_logged(pod: Any, caplog: Any) -> None:
    caplog.set_level("DEBUG", logger="kurastore.storage.access")  # every request
    await pod.client.put_shard(pod.url, 9, _sid(1), b"counted")
    await pod.client.read_shard(pod.url, 9, _sid(1))
    conn = await Conn.open(pod.url)
    try:
        _, _, metrics = await conn.call("GET", "/metrics")
    finally:
        conn.close()
    text = metrics.decode()
    assert 'kurastore_pod_requests_total{op="PutShard",status="201"} 1.0' in text
    assert 'kurastore_pod_requests_total{op="GetShard",status="200"} 1.0' in text
    assert "kurastore_pod_received_bytes_total 7.0" in text
    lines = [r.getMessage() for r in caplog.records if r.name == "kurastore.storage.access"]
    assert any('"op":"PutShard"' in line and '"status":201' in line for line in lines)
    assert not any("X-Kura-Auth" in line or SECRET.decode() in line for line in lines)


async def test_stop_closes_idle_connections_and_finishes_busy_ones(
    tmp_path: Any, client: Any, start_pod: Any
) -> None:
    pod = await start_pod(tmp_path / "pod", client)
    idle = await Conn.open(pod.url)
    assert (await idle.call("PUT", _target(1, _sid(1)), b"kept"))[0] == 201
    listener: PodListener = pod.server.listener
    await listener.stop()
    assert await idle.closed_by_peer()
    idle.close()
    with pytest.raises(OSError):
        await Conn.open(pod.url)


async def test_keepalive_timeout_closes_silent_and_stalled_connections(pod: Any) -> None:
    lane = pod.server.listener._lane
    lane.keepalive_s = 0.2
    silent, stalled, used = [await Conn.open(pod.url) for _ in range(3)]
    try:
        stalled.send(b"GET /v1/shards/1/")  # part of a head, then nothing
        assert (await used.call("PUT", _target(1, _sid(1)), b"x"))[0] == 201
        for conn in (silent, stalled, used):
            assert await conn.closed_by_peer()
    finally:
        for conn in (silent, stalled, used):
            conn.close()


async def test_bodies_larger_than_a_write_batch_are_streamed_in_the_lane(
    tmp_path: Any, client: Any, start_pod: Any
) -> None:
    pod = await start_pod(tmp_path / "pod", client, write_batch_bytes=64 << 10)
    try:
        data = os.urandom((1 << 20) + 7)  # 16 batches and a bit
        conn = await Conn.open(pod.url)
        try:
            status, _, body = await conn.call("PUT", _target(5, _sid(1)), data)
            assert status == 201 and json.loads(body)["size"] == len(data)
            # Refused before the body is taken (the shard exists): the answer comes at
            # once and the connection closes, since the unread body cannot be told apart
            # from a next request.
            conn.send(conn.request_bytes("PUT", _target(5, _sid(1)), data))
            status, headers, body = await conn.answer()
            assert (status, headers.get("connection")) == (409, "close")
            assert b"ShardExists" in body
        finally:
            conn.close()
        assert await pod.client.read_shard(pod.url, 5, _sid(1)) == data
        # Cut off half way: nothing stored, nothing left behind.
        conn = await Conn.open(pod.url)
        request = conn.request_bytes("PUT", _target(5, _sid(2)), data)
        conn.send(request[: len(request) // 2])
        await conn.writer.drain()
        conn.close()
        cut_off = 'kurastore_pod_requests_total{op="PutShard",status="499"} 1.0'
        for _ in range(100):  # until the pod has given up on the body
            conn = await Conn.open(pod.url)
            try:
                metrics = (await conn.call("GET", "/metrics"))[2].decode()
            finally:
                conn.close()
            if cut_off in metrics:
                break
            await asyncio.sleep(0.02)
        assert cut_off in metrics
        assert os.listdir(pod.data_dir / "tmp") == []
        with pytest.raises(ShardNotFound):
            await pod.client.head_shard(pod.url, 5, _sid(2))
        assert (await pod.client.usage(pod.url)).used_bytes == len(data)
    finally:
        await pod.server.close()


async def test_connections_beyond_the_thread_cap_are_served_by_aiohttp(pod: Any) -> None:
    # Every connection the event lane passes on goes to aiohttp: a shard too large for a
    # pack is the thread lane's.
    pod.server.listener._lane.max_threads = 0
    before = {t for t in threading.enumerate() if t.name == "pod-lane"}
    conn = await Conn.open(pod.url)
    try:
        data = os.urandom(PACK_MAX_SHARD + 300_000)
        assert (await conn.call("PUT", _target(3, _sid(9)), data))[0] == 201
        status, _, body = await conn.call("GET", _target(3, _sid(9)),
                                          headers={"Range": "bytes=5-9"})
        assert (status, body) == (206, data[5:10])
        # Checked while the connection is open: a lane thread would still be serving it.
        assert {t for t in threading.enumerate() if t.name == "pod-lane"} <= before
    finally:
        conn.close()


@pytest.mark.parametrize("size", [4, 2 << 20], ids=["packed-event-lane", "file-thread-lane"])
async def test_a_disk_error_is_an_internal_error_not_a_cut_off(
    pod: Any, monkeypatch: Any, caplog: Any, size: int
) -> None:
    from kurastore.storage.server import SHARD_STORE

    def failing_disk(*_args: Any) -> None:
        raise OSError(errno.EIO, "Input/output error")

    store = pod.app[SHARD_STORE]
    # A packed shard fails in the pack's batch write (on the committer thread), a larger
    # one in the thread lane's write.
    monkeypatch.setattr(store.packs, "_append", failing_disk)
    monkeypatch.setattr(store, "write_whole", failing_disk)
    caplog.set_level("INFO", logger="kurastore.storage")
    conn = await Conn.open(pod.url)
    try:
        status, headers, body = await conn.call("PUT", _target(2, _sid(3)), b"x" * size)
        assert (status, headers.get("connection")) == (500, "close")
        assert json.loads(body)["error"] == "InternalError"
        assert await conn.closed_by_peer()
    finally:
        conn.close()
    assert any(r.levelname == "ERROR" and "internal error on PUT" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(ShardNotFound):
        await pod.client.head_shard(pod.url, 2, _sid(3))


async def test_old_layout_shards_are_served(pod: Any) -> None:
    """Shards a pod wrote before the flat layout (shards/<p>/<object_id>/<tag>.<i>) are
    read whole (from memory and with sendfile), by range, listed and deleted."""
    blobs = {n: os.urandom(size) for n, size in ((1, 5000), (2, 3 << 20))}
    for n, data in blobs.items():
        obj_dir = pod.data_dir / "shards" / "8" / _sid(n).object_id
        obj_dir.mkdir(parents=True)
        (obj_dir / _sid(n).file_name).write_bytes(data)
    for n, data in blobs.items():
        assert await pod.client.read_shard(pod.url, 8, _sid(n)) == data
        assert await pod.client.read_shard(pod.url, 8, _sid(n), 10, 100) == data[10:110]
        chunks = [bytes(c) async for c in pod.client.stream_shard(pod.url, 8, _sid(n))]
        assert b"".join(chunks) == data
        assert (await pod.client.head_shard(pod.url, 8, _sid(n))).size == len(data)
    listed = await pod.client.list_partition(pod.url, 8)
    assert [i.shard for i in listed] == [_sid(1), _sid(2)]
    # Found (not 404) by the verify handler; random bytes are no valid frames.
    assert not (await pod.client.verify_shard(pod.url, 8, _sid(1))).ok
    for n in blobs:
        await pod.client.delete_shard(pod.url, 8, _sid(n))
    assert not (pod.data_dir / "shards" / "8").exists()
