"""BatchRead: the object bytes of a run of stripes of one part, read from its pods.

Rules:
- Per block index, one read_shard request covers the run of frames it is
  wanted for (frame s of a shard starts at s * frame_size). Only the data blocks
  holding wanted bytes are read first.
- Every frame is verified (checksum, index, stripe, geometry, stripe length)
  before use. A stripe missing a wanted block gets the other blocks (parity)
  read for it and is decoded in the executor; fewer than k good blocks is
  DataLost.
- Blocks found bad are reported in `bad` (index -> "missing", "unreachable" or
  "corrupt"); indices whose pod failed outright are added to `down`, so later
  batches of the same reader skip them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from kurastore.erasure import (
    ErasureError,
    ErasureParams,
    Frame,
    decode_stripe,
    plan_range,
    split_frames,
    verify_frame,
)
from kurastore.gateway.objects.context import ObjectContext
from kurastore.gateway.objects.errors import DataLost
from kurastore.gateway.objects.fanout import read_range
from kurastore.metadata import ObjectVersion, PartLayout, PlacementMapNotFound
from kurastore.storage import PodError, ShardId, ShardNotFound


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
        self._stripes = range(first_stripe, last_stripe + 1)
        size = params.stripe_size
        plan = plan_range(params, part.size, max(lo, first_stripe * size),
                          min(hi, (last_stripe + 1) * size) - 1)
        self._plan = {read.stripe: read for read in plan.stripes}
        self._down = down
        self._urls: list[str | None] = []
        self._frames: dict[int, dict[int, Frame]] = {s: {} for s in self._stripes}
        self._tried: dict[int, set[int]] = {}  # index -> stripes asked for
        self.bad: dict[int, str] = {}
        self.degraded_stripes = 0

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

    # --- reading --------------------------------------------------------------
    async def _read(self, index: int, stripes: Iterable[int]) -> None:
        wanted = sorted(set(stripes))
        if not wanted:
            return
        self._tried.setdefault(index, set()).update(wanted)
        tag = self._part.shard_tag
        if (self._version.epoch, tag, index) in self._down:
            return
        first, last = wanted[0], wanted[-1]
        offset, length = self._span(first, last)
        shard = ShardId(self._version.object_id, tag, index)
        try:
            buf = await read_range(
                self._ctx.pods, self._urls[index], self._version.partition, shard,
                offset, length, self._ctx.config.pod_timeout_s,
            )
        except ShardNotFound:
            self._fail(index, "missing")
            return
        except PodError:
            self._fail(index, "unreachable")
            return
        pieces = split_frames(buf, self._params)
        for n, stripe in enumerate(range(first, last + 1)):
            if stripe not in wanted or index in self._frames[stripe]:
                continue
            frame = self._verify(pieces[n] if n < len(pieces) else b"", index, stripe)
            if frame is None:
                self.bad.setdefault(index, "corrupt")
            else:
                self._frames[stripe][index] = frame

    def _verify(self, buf: bytes | memoryview, index: int, stripe: int) -> Frame | None:
        try:
            frame = verify_frame(buf, index=index, stripe=stripe, params=self._params)
        except ErasureError:
            return None
        if frame.data_len != self._params.stripe_data_len(self._part.size, stripe):
            return None  # a stale or misplaced frame
        return frame

    def _fail(self, index: int, reason: str) -> None:
        self.bad.setdefault(index, reason)
        self._down.add((self._version.epoch, self._part.shard_tag, index))

    async def run(self) -> list[memoryview]:
        v = self._version
        try:
            pmap = await self._ctx.topology.get_map(v.epoch)
        except PlacementMapNotFound as exc:
            raise DataLost(f"placement epoch {v.epoch} of {v.object_id} is gone") from exc
        topology = self._ctx.topology
        await topology.ensure_fresh()
        self._urls = [topology.url_of(pod) for pod in pmap.pods_for(v.partition, v.k + v.m)]

        wanted = {s: self._plan[s].indices for s in self._stripes}
        runs: dict[int, list[int]] = {}
        for stripe, indices in wanted.items():
            for index in indices:
                runs.setdefault(index, []).append(stripe)
        await asyncio.gather(*(self._read(i, ss) for i, ss in runs.items()))

        short = [s for s in self._stripes if any(i not in self._frames[s] for i in wanted[s])]
        if short:
            await self._read_more(short)
        pieces: list[memoryview] = []
        for stripe in self._stripes:
            if stripe in short:
                pieces.append(await self._decode(stripe))
            else:
                pieces.extend(self._views(stripe, wanted[stripe]))
        return pieces

    async def _read_more(self, short: list[int]) -> None:
        """Read every other block of the stripes that lack a wanted one."""
        reads = []
        for index in range(self._params.width):
            tried = self._tried.get(index, set())
            todo = [s for s in short if s not in tried]
            reads.append(self._read(index, todo))
        await asyncio.gather(*reads)

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
            raise DataLost(
                f"stripe {stripe} of {self._version.object_id}.{self._part.shard_tag}: "
                f"{len(frames)} good blocks of {k} needed"
            )
        chosen = {i: frames[i] for i in sorted(frames)[:k]}
        self.degraded_stripes += 1
        data = await self._ctx.cpu.run(decode_stripe, self._params, chosen)
        x, y, _ = self._window(stripe)
        return memoryview(data)[x:y]
