"""Fan-out to pods: k+m parallel shard streams with a write quorum, and bounded
shard range reads.

Rules:
- One streaming put_shard request per shard: block i of every stripe goes to
  pod i of the partition's list, fed through a bounded queue, so a write holds
  at most `stripes_in_flight` frames per pod whatever the object's size.
- A pod that fails is dropped from the write; the others go on. A pod that is
  behind is waited on only while the others are not done: once they took the
  stripe (or, at the end, answered), it gets a grace proportional to the time
  they took (ObjectConfig.straggler_grace_s; at most suspect_grace_s for a pod
  the health tracker calls suspect), then it is dropped, so one hung pod never
  wedges the stripe pipeline. pod_timeout_s bounds every wait regardless.
- Fewer live streams than the quorum: the write stops at once with
  QuorumNotReached. Every drop and every stored shard is told to the health
  tracker.
- `close()` cancels every stream still running (the pods discard their temp
  files); callers always call it, also on success.
- A stripe sent with its StripeCharge (budget.py) is given back once every stream has
  sent its frame or dropped it by failing; the caller gives back what is left when
  the write ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from kurastore.gateway.objects.budget import StripeCharge
from kurastore.gateway.objects.config import ObjectConfig
from kurastore.gateway.objects.context import Pods
from kurastore.gateway.objects.errors import QuorumNotReached
from kurastore.gateway.objects.health import PodHealth
from kurastore.storage import PodUnavailable, ShardId, ShardInfo

log = logging.getLogger(__name__)

_END = None
# One frame as the buffers to send back to back: (header, payload) from
# encode_stripe_parts, so the payload is never copied into a joined frame.
FramePieces = tuple[bytes | memoryview, ...]
# What a stream's queue holds: a frame and the charge of its stripe, or _END.
_Item = tuple[FramePieces, StripeCharge | None] | None


class _Stream:
    def __init__(self, index: int, url: str | None, max_queued: int, suspect: bool) -> None:
        self.index = index
        self.url = url
        self.suspect = suspect  # never waited on long: it failed lately
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(max_queued)
        self.sending: StripeCharge | None = None  # the charge of the frame being sent
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
            _release(self.queue.get_nowait())
        sending, self.sending = self.sending, None
        if sending is not None:
            sending.stream_done()
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()


def _release(item: _Item) -> None:
    if item is not None and item[1] is not None:
        item[1].stream_done()


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
        config: ObjectConfig,
        health: PodHealth,
        shard_length: int | None = None,
    ) -> None:
        self._pods = pods
        self._partition = partition
        self._object_id = object_id
        self._shard_tag = shard_tag
        self._quorum = quorum
        self._config = config
        self._health = health
        self._shard_length = shard_length
        self._streams = [
            _Stream(i, url, config.stripes_in_flight, health.is_suspect(url))
            for i, url in enumerate(urls)
        ]
        self._started = 0.0
        self.stalled: list[int] = []  # block indices dropped for being too slow

    def start(self) -> None:
        self._started = asyncio.get_running_loop().time()
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
            if isinstance(exc, PodUnavailable):
                self._health.failed(stream.url, "unreachable")
            stream.fail(exc)
        else:
            self._health.succeeded(stream.url)

    @staticmethod
    async def _feed(stream: _Stream) -> AsyncIterator[bytes | memoryview]:
        while True:
            item = await stream.queue.get()
            if item is _END:
                return
            frame, charge = item
            stream.sending = charge
            for piece in frame:
                yield piece
            # Asked for more: the pod client has written the frame's last piece.
            if charge is not None and stream.sending is charge:
                stream.sending = None
                charge.stream_done()

    def _check_quorum(self) -> None:
        alive = sum(1 for stream in self._streams if stream.alive)
        if alive < self._quorum:
            reasons = "; ".join(str(s.error) for s in self._streams if s.error is not None)
            raise QuorumNotReached(
                f"{alive} of {len(self._streams)} pods left, {self._quorum} needed ({reasons})"
            )

    # --- waiting on the streams behind ------------------------------------------------
    def _deadline(self, stream: _Stream, hard: float, moved: float | None, since: float) -> float:
        """When to give up on `stream`: at `hard` at the latest; once the others are done
        (the last of them at `moved`, having taken `moved - since`), after a grace."""
        if moved is None:
            return hard
        grace = self._config.straggler_grace_s(moved - since)
        if stream.suspect:
            grace = min(grace, self._config.suspect_grace_s)
        return min(hard, moved + grace)

    async def _wait(
        self,
        waiting: dict[asyncio.Future[None], _Stream],
        *,
        since: float,
        moved: float | None,
        reason: str,
    ) -> None:
        """Wait for each future (a stream taking a frame, or answering), dropping the
        streams whose deadline passes first."""
        loop = asyncio.get_running_loop()
        hard = loop.time() + self._config.pod_timeout_s
        try:
            while waiting:
                due = min(self._deadline(s, hard, moved, since) for s in waiting.values())
                finished, _ = await asyncio.wait(
                    waiting, timeout=max(0.0, due - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                now = loop.time()
                for future in finished:
                    if waiting.pop(future).alive:
                        moved = now
                for future, stream in list(waiting.items()):
                    if self._deadline(stream, hard, moved, since) <= now:
                        del waiting[future]
                        future.cancel()
                        self._drop(stream, reason, now - since)
        finally:
            for future in waiting:
                future.cancel()

    def _drop(self, stream: _Stream, reason: str, waited_s: float) -> None:
        if not stream.alive:
            return
        log.warning("pod %s %s (%.1f s): dropped from the write of %s.%s", stream.url, reason,
                    waited_s, self._object_id, self._shard_tag)
        self._health.failed(stream.url, reason)
        stream.fail(PodUnavailable(reason, stream.url))
        self.stalled.append(stream.index)

    async def _deliver(self, item_of: Callable[[_Stream], _Item]) -> None:
        """Queue one item per live stream; the streams with a full queue are waited on."""
        since = asyncio.get_running_loop().time()
        moved: float | None = None
        waiting: dict[asyncio.Future[None], _Stream] = {}
        for stream in self._streams:
            if not stream.alive:
                continue
            if stream.queue.full():
                item = item_of(stream)
                put = asyncio.ensure_future(stream.queue.put(item))
                if item is not None:  # a stream dropped before it took its frame
                    put.add_done_callback(lambda f, item=item: f.cancelled() and _release(item))
                waiting[put] = stream
            else:
                stream.queue.put_nowait(item_of(stream))
                moved = since
        if waiting:
            await self._wait(waiting, since=since, moved=moved, reason="stalled")

    # --- the write ---------------------------------------------------------------------
    async def send(self, frames: Sequence[FramePieces], charge: StripeCharge | None = None) -> None:
        """Queue frame i of one stripe for pod i (waits while pods are behind, within
        the grace above); `charge` is given back once every stream is done with it."""
        if charge is not None:
            charge.sent_to(sum(1 for stream in self._streams if stream.alive))
        await self._deliver(lambda stream: (frames[stream.index], charge))
        self._check_quorum()

    async def finish(self) -> tuple[list[int], list[int]]:
        """End every stream and wait for the pods' answers. Returns (stored, missing)
        block indices; raises QuorumNotReached when fewer than the quorum stored."""
        await self._deliver(lambda _stream: _END)
        answers: dict[asyncio.Future[None], _Stream] = {
            s.task: s for s in self._streams if s.alive and s.task is not None
        }
        if answers:
            # The grace scales with the whole write: a pod may need longer to fsync a
            # large shard, but not much longer than its peers did.
            await self._wait(answers, since=self._started, moved=None, reason="did not answer")
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
