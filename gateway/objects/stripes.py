"""BatchRead: the object bytes of a run of stripes of one part, read from its pods.

Rules:
- Per block index, one read_shard request covers the run of frames it is
  wanted for (frame s of a shard starts at s * frame_size). Only the data blocks
  holding wanted bytes are read first, except those on a pod the health tracker
  calls suspect: their stripes get parity read at once instead.
- Reads are hedged: a read still unanswered after its pod's hedge delay gets
  other blocks (parity) read beside it for its stripes. A stripe is done when
  all its wanted data blocks are good (no decode) or any k good blocks exist
  (decoded in the executor); reads still running then are cancelled, and a pod
  given up on that way is reported slow to the health tracker.
- Every frame is verified (checksum, index, stripe, geometry, stripe length)
  before use. When nothing more can arrive, fewer than k good blocks is DataLost,
  DataUnavailable when a pod that did not answer held one of the missing blocks.
- A read of a pod on probation (suspect, or failed since it last answered; a suspect
  one is read only when fewer than k blocks are to be had elsewhere) gets
  suspect_read_timeout_s, not pod_timeout_s: with more than m pods of a stripe hung,
  a GET answers 503 within seconds once they are known to be, cool-down or not.
- Blocks found bad are reported in `bad` (index -> "missing", "unreachable" or
  "corrupt"); indices whose pod failed outright are added to `down`, so later
  batches of the same reader skip them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from kurastore.erasure import (
    ErasureError,
    ErasureParams,
    Frame,
    decode_stripe,
    frame_owner,
    plan_range,
    split_frames,
    verify_frame,
)
from kurastore.gateway.objects.context import ObjectContext
from kurastore.gateway.objects.errors import DataLost, DataUnavailable
from kurastore.gateway.objects.fanout import read_range
from kurastore.metadata import ObjectVersion, PartLayout, PlacementMapNotFound
from kurastore.storage import PodError, PodUnavailable, ShardId, ShardNotFound


@dataclass
class _Read:
    """One read_shard request in flight: block `index` for a run of stripes."""

    index: int
    stripes: list[int]
    hedge_at: float  # loop time after which its stripes get other blocks read too
    overdue: bool = False


class BatchRead:
    def __init__(
        self,
        ctx: ObjectContext,
        version: ObjectVersion,
        part: PartLayout,
        params: ErasureParams,
        first_stripe: int,
        last_stripe: int,
        lo: int,
        hi: int,
        down: set[tuple[int, str, int]],
    ) -> None:
        self._ctx = ctx
        self._version = version
        self._part = part
        self._params = params
        self._owner = frame_owner(version.object_id, part.shard_tag)
        self._stripes = range(first_stripe, last_stripe + 1)
        size = params.stripe_size
        plan = plan_range(params, part.size, max(lo, first_stripe * size),
                          min(hi, (last_stripe + 1) * size) - 1)
        self._plan = {read.stripe: read for read in plan.stripes}
        self._want = {s: self._plan[s].indices for s in self._stripes}
        self._down = down
        self._urls: list[str | None] = []
        self._frames: dict[int, dict[int, Frame]] = {s: {} for s in self._stripes}
        self._tried: dict[int, set[int]] = {s: set() for s in self._stripes}  # indices asked
        self._running: dict[asyncio.Task[None], _Read] = {}
        self.bad: dict[int, str] = {}
        self.degraded_stripes = 0
        self.hedged = 0  # reads that outlived their hedge delay

    # --- geometry -------------------------------------------------------------
    def _window(self, stripe: int) -> tuple[int, int, int]:
        """(x, y, block_len): wanted bytes [x, y) relative to the stripe's data."""
        read = self._plan[stripe]
        return read.offset, read.offset + read.length, read.block_size

    def _span(self, first: int, last: int) -> tuple[int, int]:
        """Shard (offset, length) of frames first..last."""
        p = self._params
        offset = first * p.frame_size
        end = min((last + 1) * p.frame_size, p.shard_size(self._part.size))
        return offset, end - offset

    # --- state of a stripe ----------------------------------------------------
    def _usable(self, index: int) -> bool:
        return (self._version.epoch, self._part.shard_tag, index) not in self._down

    def _done(self, stripe: int) -> bool:
        frames = self._frames[stripe]
        return len(frames) >= self._params.k or all(i in frames for i in self._want[stripe])

    def _live(self, stripe: int) -> set[int]:
        """Indices still being read for `stripe` and not yet overdue."""
        return {r.index for r in self._running.values()
                if not r.overdue and stripe in r.stripes}

    def _shortfall(self, stripe: int) -> int:
        """How many more blocks to read for `stripe` now (0 while it is on track)."""
        if self._done(stripe):
            return 0
        frames, live = self._frames[stripe], self._live(stripe)
        if all(i in frames or i in live for i in self._want[stripe]):
            return 0  # every wanted data block is coming in time: no decode needed
        return max(0, self._params.k - len(frames) - len(live))

    def _candidates(self, stripe: int) -> list[int]:
        """Blocks not yet asked for: those on healthy pods first, suspect ones last."""
        health = self._ctx.health
        fresh = [i for i in range(self._params.width)
                 if i not in self._tried[stripe] and self._usable(i)]
        return sorted(fresh, key=lambda i: health.is_suspect(self._urls[i]))

    # --- reading --------------------------------------------------------------
    def _launch(self, runs: dict[int, list[int]]) -> None:
        loop = asyncio.get_running_loop()
        for index, stripes in runs.items():
            for stripe in stripes:
                self._tried[stripe].add(index)
            hedge_at = loop.time() + self._ctx.health.hedge_delay_s(self._urls[index])
            read = _Read(index, sorted(stripes), hedge_at)
            self._running[asyncio.create_task(self._read(read))] = read

    def _start(self) -> None:
        """The wanted data blocks on pods not known to be in trouble."""
        health = self._ctx.health
        runs: dict[int, list[int]] = {}
        for stripe in self._stripes:
            for index in self._want[stripe]:
                if self._usable(index) and not health.is_suspect(self._urls[index]):
                    runs.setdefault(index, []).append(stripe)
        self._launch(runs)
        self._top_up()

    def _top_up(self) -> None:
        """Read more blocks for every stripe that cannot finish with what is running."""
        runs: dict[int, list[int]] = {}
        for stripe in self._stripes:
            need = self._shortfall(stripe)
            for index in self._candidates(stripe)[:need]:
                runs.setdefault(index, []).append(stripe)
        self._launch(runs)

    async def _read(self, read: _Read) -> None:
        index, tag = read.index, self._part.shard_tag
        url = self._urls[index]
        first, last = read.stripes[0], read.stripes[-1]
        offset, length = self._span(first, last)
        shard = ShardId(self._version.object_id, tag, index)
        loop = asyncio.get_running_loop()
        started = loop.time()
        config = self._ctx.config
        timeout_s = (min(config.pod_timeout_s, config.suspect_read_timeout_s)
                     if self._ctx.health.on_probation(url) else config.pod_timeout_s)
        try:
            buf = await read_range(
                self._ctx.pods, url, self._version.partition, shard, offset, length, timeout_s,
            )
        except ShardNotFound:
            self._ctx.health.succeeded(url)  # the pod answered: only the shard is gone
            self._fail(index, "missing")
            return
        except PodError as exc:
            if isinstance(exc, PodUnavailable):
                self._ctx.health.failed(url, "unreachable")
            self._fail(index, "unreachable")
            return
        self._ctx.health.succeeded(url, loop.time() - started)
        pieces = split_frames(buf, self._params)
        for n, stripe in enumerate(range(first, last + 1)):
            if stripe not in read.stripes or index in self._frames[stripe]:
                continue
            frame = self._verify(pieces[n] if n < len(pieces) else b"", index, stripe)
            if frame is None:
                self.bad.setdefault(index, "corrupt")
            else:
                self._frames[stripe][index] = frame

    def _verify(self, buf: bytes | memoryview, index: int, stripe: int) -> Frame | None:
        try:
            frame = verify_frame(buf, index=index, stripe=stripe, params=self._params,
                                 owner=self._owner)
        except ErasureError:
            return None
        if frame.data_len != self._params.stripe_data_len(self._part.size, stripe):
            return None  # a stale or misplaced frame
        return frame

    def _fail(self, index: int, reason: str) -> None:
        self.bad.setdefault(index, reason)
        self._down.add((self._version.epoch, self._part.shard_tag, index))

    async def _drive(self) -> None:
        """Wait for reads, hedging the overdue ones, until every stripe is done or
        nothing more can arrive."""
        loop = asyncio.get_running_loop()
        while self._running and not all(self._done(s) for s in self._stripes):
            hedges = [r.hedge_at for r in self._running.values() if not r.overdue]
            timeout = max(0.0, min(hedges) - loop.time()) if hedges else None
            finished, _ = await asyncio.wait(
                self._running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in finished:
                del self._running[task]
                task.result()  # a bug in _read surfaces here, not as a silent DataLost
            now = loop.time()
            for read in self._running.values():
                if not read.overdue and read.hedge_at <= now:
                    read.overdue = True
                    self.hedged += 1
            self._top_up()

    async def _stop_laggards(self) -> None:
        for task, read in self._running.items():
            task.cancel()
            if read.overdue:  # given up on: the next requests read around this pod
                self._ctx.health.failed(self._urls[read.index], "slow")
                self.bad.setdefault(read.index, "unreachable")
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._running.clear()

    async def run(self) -> list[memoryview]:
        v = self._version
        try:
            pmap = await self._ctx.topology.get_map(v.epoch)
        except PlacementMapNotFound as exc:
            raise DataLost(f"placement epoch {v.epoch} of {v.object_id} is gone") from exc
        topology = self._ctx.topology
        await topology.ensure_fresh()
        self._urls = [topology.url_of(pod) for pod in pmap.pods_for(v.partition, v.k + v.m)]
        try:
            self._start()
            await self._drive()
        finally:
            await self._stop_laggards()
        pieces: list[memoryview] = []
        for stripe in self._stripes:
            frames = self._frames[stripe]
            if all(i in frames for i in self._want[stripe]):
                pieces.extend(self._views(stripe, self._want[stripe]))
            else:
                pieces.append(await self._decode(stripe))
        return pieces

    def _views(self, stripe: int, indices: Iterable[int]) -> list[memoryview]:
        x, y, block_len = self._window(stripe)
        views = []
        for index in indices:
            base = index * block_len
            a, b = max(x, base), min(y, base + block_len)
            views.append(self._frames[stripe][index].payload[a - base : b - base])
        return views

    async def _decode(self, stripe: int) -> memoryview:
        frames = self._frames[stripe]
        k = self._params.k
        if len(frames) < k:
            unanswered = any(reason == "unreachable" for reason in self.bad.values())
            raise (DataUnavailable if unanswered else DataLost)(
                f"stripe {stripe} of {self._version.object_id}.{self._part.shard_tag}: "
                f"{len(frames)} good blocks of {k} needed"
            )
        chosen = {i: frames[i] for i in sorted(frames)[:k]}
        self.degraded_stripes += 1
        data = await self._ctx.cpu.run(decode_stripe, self._params, chosen)
        x, y, _ = self._window(stripe)
        return memoryview(data)[x:y]
