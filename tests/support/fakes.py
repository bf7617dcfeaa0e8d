"""In-memory fakes that behave like the real collaborators (not scripted mocks).

InMemoryPods has PodClient's method signatures and semantics (shards are never
overwritten, byte ranges, 404s, streaming bodies) and keeps every pod's shards in
a dict, so a test can kill a pod (PodUnavailable), hang it (calls block until it
is revived or the caller gives up, as a SIGSTOP'd pod that still accepts
connections), slow it down, corrupt stored bytes, and look at what each pod
holds, how many requests reached it and how much was read from it.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kurastore.erasure import frame_owner
from kurastore.metadata import PodRecord
from kurastore.storage import (
    PodError,
    PodTimedOut,
    PodUnavailable,
    PodUsage,
    ShardExists,
    ShardId,
    ShardInfo,
    ShardNotFound,
    ShardPieces,
    ShardPut,
    VerifyResult,
)
from kurastore.storage._scrub import verify_file
from kurastore.storage.errors import InvalidRange

Body = bytes | memoryview | AsyncIterable[bytes | memoryview]


@dataclass
class FakePod:
    pod_id: str
    url: str
    zone: str = ""
    node: str = ""
    state: str = "up"  # "up", "dead" or "hung"
    stall_commit: bool = False  # take a whole body, then never answer (until revived)
    shards: dict[tuple[int, str], bytes] = field(default_factory=dict)  # (partition, name)
    mtimes: dict[tuple[int, str], float] = field(default_factory=dict)
    delay_s: float = 0.0  # every call starts answering this much later (a slow pod)
    bytes_read: int = 0
    reads: int = 0  # reads answered
    writes: int = 0  # shards stored
    calls: int = 0  # requests received, answered or not (a hung pod still counts them)
    revived: asyncio.Event = field(default_factory=asyncio.Event)

    async def enter(self) -> None:
        """A request arrives: count it, then answer late, fail or block as set."""
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        await self.check()

    async def check(self) -> None:
        """Fail or block as the pod's state says; called at every step of a call."""
        while self.state == "hung":
            await self.revived.wait()
        if self.state == "dead":
            raise PodUnavailable("connection refused", self.url)

    def record(self) -> PodRecord:
        return PodRecord(pod_id=self.pod_id, url=self.url, zone=self.zone, node=self.node)


class InMemoryPods:
    """`count` pods named pod-0..pod-{count-1}, each in its own node."""

    def __init__(self, count: int = 6, *, capacity_bytes: int = 1 << 40) -> None:
        self.pods = [
            FakePod(f"pod-{i}", f"http://pod-{i}.test:9101", node=f"node-{i}")
            for i in range(count)
        ]
        self._by_url = {pod.url: pod for pod in self.pods}
        self.capacity_bytes = capacity_bytes

    # --- test controls --------------------------------------------------------
    def pod(self, which: int | str) -> FakePod:
        if isinstance(which, int):
            return self.pods[which]
        for pod in self.pods:
            if which in (pod.pod_id, pod.url):
                return pod
        raise KeyError(which)

    def records(self) -> list[PodRecord]:
        return [pod.record() for pod in self.pods]

    def kill(self, *which: int | str) -> None:
        for w in which:
            self.pod(w).state = "dead"

    def hang(self, *which: int | str) -> None:
        for w in which:
            pod = self.pod(w)
            pod.revived = asyncio.Event()
            pod.state = "hung"

    def revive(self, *which: int | str) -> None:
        for w in which:
            pod = self.pod(w)
            pod.state = "up"
            pod.stall_commit = False
            pod.revived.set()

    def corrupt(self, which: int | str, object_id: str, offset: int) -> int:
        """Flip one byte at `offset` of every shard of `object_id` on a pod."""
        pod = self.pod(which)
        hits = 0
        for key, data in list(pod.shards.items()):
            if key[1].startswith(object_id) and offset < len(data):
                buf = bytearray(data)
                buf[offset] ^= 0x5A
                pod.shards[key] = bytes(buf)
                hits += 1
        return hits

    def shard_names(self, object_id: str | None = None) -> list[tuple[str, str]]:
        """(pod_id, shard name) of every stored shard (of one object id)."""
        return sorted(
            (pod.pod_id, name)
            for pod in self.pods
            for (_partition, name) in pod.shards
            if object_id is None or name.startswith(object_id)
        )

    def drop_shards(self, which: int | str, object_id: str) -> int:
        """Lose a pod's shards of one object id (as after a disk replacement)."""
        pod = self.pod(which)
        keys = [key for key in pod.shards if key[1].startswith(object_id)]
        for key in keys:
            del pod.shards[key]
        return len(keys)

    @property
    def bytes_read(self) -> int:
        return sum(pod.bytes_read for pod in self.pods)

    # --- the PodClient interface ---------------------------------------------------
    def _pod(self, url: str) -> FakePod:
        pod = self._by_url.get(url)
        if pod is None:
            raise PodUnavailable("unknown host", url)
        return pod

    async def put_shard(
        self,
        url: str,
        partition: int,
        shard: ShardId,
        body: Body,
        length: int | None = None,
    ) -> ShardInfo:
        pod = self._pod(url)
        await pod.enter()
        key = (partition, shard.name)
        if key in pod.shards:
            raise ShardExists(f"shard {shard.name} exists", url)
        received = bytearray()
        if isinstance(body, bytes | bytearray | memoryview):
            received += body
        else:
            async for chunk in body:
                await pod.check()
                received += chunk
                await asyncio.sleep(0)  # let other streams run, as a socket would
        if pod.stall_commit:
            pod.revived = asyncio.Event()
            await pod.revived.wait()
        await pod.check()
        if length is not None and len(received) != length:
            raise ValueError(f"body of {len(received)} bytes, expected {length}")
        if key in pod.shards:
            raise ShardExists(f"shard {shard.name} exists", url)
        pod.shards[key] = bytes(received)
        pod.mtimes[key] = time.time()
        pod.writes += 1
        return ShardInfo(partition, shard, len(received), pod.mtimes[key])

    async def put_shards(
        self,
        puts: Sequence[ShardPut],
        *,
        timeout_s: float,
        grace_s: Callable[[float], float],
        prepare: Callable[[], Sequence[ShardPieces]] | None = None,
    ) -> list[ShardInfo | PodError]:
        """PodClient.put_shards: every put at once, with the same deadlines; `prepare`
        runs in a worker thread first, as on the real client's burst thread."""
        loop = asyncio.get_running_loop()
        pieces = (await asyncio.to_thread(prepare) if prepare is not None
                  else [put.pieces for put in puts])
        started = loop.time()
        results: list[ShardInfo | PodError] = [PodUnavailable("pod has no URL")] * len(puts)
        running: dict[asyncio.Future[ShardInfo], int] = {}
        for position, put in enumerate(puts):
            if put.url is not None:
                body = b"".join(bytes(piece) for piece in pieces[position])
                running[asyncio.ensure_future(
                    self.put_shard(put.url, put.partition, put.shard, body))] = position
        moved, grace = None, math.inf  # the latest success, and the grace it gave
        given_up: list[asyncio.Future[ShardInfo]] = []

        def due(position: int) -> float:
            deadline = started + timeout_s
            if moved is not None:
                deadline = min(deadline, moved + min(grace, puts[position].patience_s))
            return deadline

        while running:
            now = loop.time()
            for task, position in list(running.items()):
                if due(position) <= now:
                    task.cancel()
                    given_up.append(task)
                    del running[task]
                    results[position] = PodTimedOut("no answer in time", puts[position].url)
            if not running:
                break
            done, _ = await asyncio.wait(
                running, timeout=min(due(p) for p in running.values()) - now,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done:
                position = running.pop(task)
                try:
                    results[position] = task.result()
                except PodError as exc:
                    results[position] = exc
                    continue
                moved = loop.time()
                grace = grace_s(moved - started)
        await asyncio.gather(*given_up, return_exceptions=True)
        return results

    async def read_shard(
        self,
        url: str,
        partition: int,
        shard: ShardId,
        offset: int = 0,
        length: int | None = None,
    ) -> bytes:
        pod = self._pod(url)
        await pod.enter()
        data = pod.shards.get((partition, shard.name))
        if data is None:
            raise ShardNotFound(f"no shard {shard.name}", url)
        end = len(data) if length is None else offset + length
        if offset < 0 or end > len(data) or (offset >= len(data) and len(data) > 0):
            raise InvalidRange(f"{offset}+{length} outside {len(data)} bytes", url)
        pod.reads += 1
        pod.bytes_read += end - offset
        await asyncio.sleep(0)
        return data[offset:end]

    async def head_shard(self, url: str, partition: int, shard: ShardId) -> ShardInfo:
        pod = self._pod(url)
        await pod.enter()
        key = (partition, shard.name)
        if key not in pod.shards:
            raise ShardNotFound(f"no shard {shard.name}", url)
        return ShardInfo(partition, shard, len(pod.shards[key]), pod.mtimes[key])

    async def delete_shard(self, url: str, partition: int, shard: ShardId) -> bool:
        pod = self._pod(url)
        await pod.enter()
        return pod.shards.pop((partition, shard.name), None) is not None

    async def delete_object_shards(
        self, url: str, partition: int, object_id: str, shard_tag: str | None = None
    ) -> int:
        pod = self._pod(url)
        await pod.enter()
        prefix = object_id + "." + (shard_tag + "." if shard_tag is not None else "")
        doomed = [key for key in pod.shards if key[0] == partition and key[1].startswith(prefix)]
        for key in doomed:
            del pod.shards[key]
            pod.mtimes.pop(key, None)
        return len(doomed)

    async def list_partitions(self, url: str) -> list[int]:
        pod = self._pod(url)
        await pod.enter()
        return sorted({partition for partition, _name in pod.shards})

    async def list_partition(self, url: str, partition: int) -> list[ShardInfo]:
        pod = self._pod(url)
        await pod.enter()
        return [
            ShardInfo(p, ShardId.parse(name), len(data), pod.mtimes.get((p, name), 0.0))
            for (p, name), data in sorted(pod.shards.items())
            if p == partition
        ]

    async def verify_shard(self, url: str, partition: int, shard: ShardId) -> VerifyResult:
        """The pod's own scrub (storage._scrub.verify_file) run on the stored bytes."""
        pod = self._pod(url)
        await pod.enter()
        data = pod.shards.get((partition, shard.name))
        if data is None:
            raise ShardNotFound(f"no shard {shard.name}", url)
        with tempfile.NamedTemporaryFile() as f:
            f.write(data)
            f.flush()
            return verify_file(Path(f.name), shard.index,
                               frame_owner(shard.object_id, shard.shard_tag))

    async def usage(self, url: str) -> PodUsage:
        pod = self._pod(url)
        await pod.enter()
        used = sum(len(data) for data in pod.shards.values())
        return PodUsage(self.capacity_bytes, used, self.capacity_bytes - used, len(pod.shards))

    async def close(self) -> None:
        for pod in self.pods:
            pod.revived.set()


def chunks_of(data: bytes, size: int) -> Iterable[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


async def body_of(data: bytes, chunk_size: int = 65536) -> AsyncIterable[bytes]:
    """An async body as an HTTP adapter hands it over, in chunks."""
    for chunk in chunks_of(data, chunk_size):
        yield chunk
