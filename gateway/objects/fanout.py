"""Fan-out to pods: k+m parallel shard streams with a write quorum, and bounded
shard range reads.

Rules:
- One streaming put_shard request per shard: block i of every stripe goes to
  pod i of the partition's list, fed through a bounded queue, so a write holds
  at most `max_queued` frames per pod whatever the object's size.
- A pod that fails, or stalls longer than the timeout, is dropped from the
  write; the others go on. Fewer live streams than the quorum: the write stops
  at once with QuorumNotReached.
- `close()` cancels every stream still running (the pods discard their temp
  files); callers always call it, also on success.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

from kurastore.gateway.objects.context import Pods
from kurastore.gateway.objects.errors import QuorumNotReached
from kurastore.storage import PodUnavailable, ShardId, ShardInfo

log = logging.getLogger(__name__)

_END = None
# One frame as the buffers to send back to back: (header, payload) from
# encode_stripe_parts, so the payload is never copied into a joined frame.
FramePieces = tuple[bytes | memoryview, ...]


class _Stream:
    def __init__(self, index: int, url: str | None, max_queued: int) -> None:
        self.index = index
        self.url = url
        self.queue: asyncio.Queue[FramePieces | None] = asyncio.Queue(max_queued)
        self.task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None if url else PodUnavailable("pod has no URL")
        self.info: ShardInfo | None = None

    @property
    def alive(self) -> bool:
        return self.error is None

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        # Free the frames nobody will send, and unblock a producer waiting on put().
        while not self.queue.empty():
            self.queue.get_nowait()
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()


class ShardWriter:
    """Streams the frames of one part to its k+m pods."""

    def __init__(
        self,
        pods: Pods,
        urls: Sequence[str | None],
        partition: int,
        object_id: str,
        shard_tag: str,
        *,
        quorum: int,
        timeout_s: float,
        max_queued: int,
        shard_length: int | None = None,
    ) -> None:
        self._pods = pods
        self._partition = partition
        self._object_id = object_id
        self._shard_tag = shard_tag
        self._quorum = quorum
        self._timeout_s = timeout_s
        self._shard_length = shard_length
        self._streams = [_Stream(i, url, max_queued) for i, url in enumerate(urls)]

    def start(self) -> None:
        for stream in self._streams:
            if stream.alive:
                stream.task = asyncio.create_task(self._run(stream))
        self._check_quorum()

    async def _run(self, stream: _Stream) -> None:
        shard = ShardId(self._object_id, self._shard_tag, stream.index)
        assert stream.url is not None
        try:
            stream.info = await self._pods.put_shard(
                stream.url, self._partition, shard, self._feed(stream), self._shard_length
            )
        except Exception as exc:  # any failure of one pod only drops that pod
            log.warning("shard write %s to %s failed: %r", shard.name, stream.url, exc)
            stream.fail(exc)

    @staticmethod
    async def _feed(stream: _Stream) -> AsyncIterator[bytes | memoryview]:
        while True:
            frame = await stream.queue.get()
            if frame is _END:
                return
            for piece in frame:
                yield piece

    def _check_quorum(self) -> None:
        alive = sum(1 for stream in self._streams if stream.alive)
        if alive < self._quorum:
            reasons = "; ".join(str(s.error) for s in self._streams if s.error is not None)
            raise QuorumNotReached(
                f"{alive} of {len(self._streams)} pods left, {self._quorum} needed ({reasons})"
            )

    async def _put(self, stream: _Stream, item: FramePieces | None) -> None:
        if not stream.queue.full():
            stream.queue.put_nowait(item)
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await stream.queue.put(item)
        except TimeoutError:
            log.warning("pod %s stalled for %.0f s: dropped from the write",
                        stream.url, self._timeout_s)
            stream.fail(PodUnavailable("stalled", stream.url))

    async def send(self, frames: Sequence[FramePieces]) -> None:
        """Queue frame i of one stripe for pod i (waits while a pod is behind)."""
        for stream in self._streams:
            if stream.alive:
                await self._put(stream, frames[stream.index])
        self._check_quorum()

    async def finish(self) -> tuple[list[int], list[int]]:
        """End every stream and wait for the pods' answers. Returns (stored, missing)
        block indices; raises QuorumNotReached when fewer than the quorum stored."""
        for stream in self._streams:
            if stream.alive:
                await self._put(stream, _END)
        tasks = [s.task for s in self._streams if s.alive and s.task is not None]
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=self._timeout_s)
            for stream in self._streams:
                if stream.task in late:
                    stream.fail(PodUnavailable("no answer", stream.url))
        for stream in self._streams:
            if stream.alive and stream.info is None:
                stream.fail(PodUnavailable("stream ended without an answer", stream.url))
        self._check_quorum()
        stored = [s.index for s in self._streams if s.info is not None]
        missing = [s.index for s in self._streams if s.info is None]
        return stored, missing

    async def close(self) -> None:
        """Cancel and reap every stream still running."""
        tasks = [s.task for s in self._streams if s.task is not None]
        for task in tasks:
            if not task.done():
                task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def read_range(
    pods: Pods,
    url: str | None,
    partition: int,
    shard: ShardId,
    offset: int,
    length: int,
    timeout_s: float,
) -> bytes:
    """One shard byte range; a timeout or missing URL is PodUnavailable."""
    if url is None:
        raise PodUnavailable(f"no URL for the pod of block {shard.index}")
    try:
        async with asyncio.timeout(timeout_s):
            return await pods.read_shard(url, partition, shard, offset, length)
    except TimeoutError as exc:
        raise PodUnavailable("read timed out", url) from exc
