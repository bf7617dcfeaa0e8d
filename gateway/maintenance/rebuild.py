"""Rebuilding shards of one part from any k healthy ones: the healer's data path.

Rules:
- The part's geometry and size come from its record (PinnedPart), never from the
  shards themselves.
- Stripes are rebuilt in batches of about `batch_bytes` per source shard: one
  ranged read per source and batch, every frame verified (checksum, index, stripe
  number, stripe length) before use. Sources go data blocks first and healthy
  pods before suspect ones; a stripe short of k good frames pulls the next source
  in; a source that fails outright (pod down, shard missing) is dropped for the
  rest of the part.
- Each stripe is decoded and re-encoded in the CPU pool: encode_stripe_parts gives
  all k+m frames, byte-identical to what the write path stored. The target frames
  are streamed to their pods by the data path's ShardWriter, so memory stays a
  batch or two whatever the part's size.
- A stripe with fewer than k good frames: NotEnoughBlocks, and nothing is stored
  (the writer's streams are cancelled; pods discard unfinished shards).
- Every byte read from and written to pods is paid to the throttle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from kurastore.erasure import (
    ErasureError,
    ErasureParams,
    Frame,
    NotEnoughBlocks,
    decode_stripe,
    encode_stripe_parts,
    frame_owner,
    split_frames,
    verify_frame,
)
from kurastore.gateway.maintenance.pods import MaintenancePods
from kurastore.gateway.maintenance.throttle import Throttle
from kurastore.gateway.objects.config import ObjectConfig
from kurastore.gateway.objects.errors import QuorumNotReached
from kurastore.gateway.objects.executor import CpuPool
from kurastore.gateway.objects.fanout import FramePieces, ShardWriter, read_range
from kurastore.gateway.objects.health import PodHealth
from kurastore.metadata import PinnedPart
from kurastore.storage import PodError, PodUnavailable, ShardId, ShardNotFound


@dataclass
class Rebuild:
    """What one rebuild of a part achieved."""

    stored: list[int] = field(default_factory=list)  # target indices now on their pods
    failed: dict[int, str] = field(default_factory=dict)  # target index -> why not
    bytes_read: int = 0
    bytes_written: int = 0


def _recode(
    params: ErasureParams, stripes: list[tuple[int, dict[int, Frame]]], owner: bytes
) -> list[list[tuple[bytes, bytes | memoryview]]]:
    """Decode each stripe from k of its frames and encode it again, bound to `owner`
    (CPU pool)."""
    out: list[list[tuple[bytes, bytes | memoryview]]] = []
    for stripe, frames in stripes:
        chosen = {i: frames[i] for i in sorted(frames)[: params.k]}
        out.append(encode_stripe_parts(params, stripe, decode_stripe(params, chosen), owner))
    return out


class PartRebuilder:
    """Rebuilds `targets` of one part; use once."""

    def __init__(
        self,
        pods: MaintenancePods,
        urls: Sequence[str | None],
        part: PinnedPart,
        targets: Sequence[int],
        *,
        cpu: CpuPool,
        throttle: Throttle,
        config: ObjectConfig,
        health: PodHealth,
        batch_bytes: int = 4 << 20,
    ) -> None:
        self._pods = pods
        self._urls = list(urls)
        self._part = part
        self._targets = sorted(set(targets))
        self._cpu = cpu
        self._throttle = throttle
        self._config = config
        self._health = health
        self.params = ErasureParams(part.k, part.m, part.block_size)
        self._owner = frame_owner(part.object_id, part.shard_tag)
        self._per_batch = max(1, batch_bytes // self.params.frame_size)
        self._shard_len = self.params.shard_size(part.size)
        candidates = [
            i for i in range(self.params.width)
            if i not in self._targets and self._urls[i] is not None
        ]
        # Healthy pods first, then data blocks first (all k data blocks: no decode).
        self._sources = sorted(
            candidates, key=lambda i: (health.is_suspect(self._urls[i]), i >= part.k, i)
        )
        self._dead: set[int] = set()
        self.result = Rebuild()

    # --- reading the sources -----------------------------------------------------------
    async def _read_source(self, index: int, first: int, last: int) -> dict[int, Frame]:
        p = self.params
        offset = first * p.frame_size
        length = min((last + 1) * p.frame_size, self._shard_len) - offset
        url = self._urls[index]
        shard = ShardId(self._part.object_id, self._part.shard_tag, index)
        try:
            buf = await read_range(self._pods, url, self._part.partition, shard, offset,
                                   length, self._config.pod_timeout_s)
        except PodError as exc:
            if isinstance(exc, PodUnavailable):
                self._health.failed(url, "unreachable")
            elif isinstance(exc, ShardNotFound):
                self._health.succeeded(url)
            self._dead.add(index)
            return {}
        self._health.succeeded(url)
        self.result.bytes_read += len(buf)
        await self._throttle.take(len(buf))
        good: dict[int, Frame] = {}
        for n, piece in enumerate(split_frames(buf, p)):
            stripe = first + n
            if stripe > last:
                break
            try:
                frame = verify_frame(piece, index=index, stripe=stripe, params=p,
                                     owner=self._owner)
            except ErasureError:
                continue
            if frame.data_len == p.stripe_data_len(self._part.size, stripe):
                good[stripe] = frame
        return good

    async def _read_batch(self, first: int, last: int) -> dict[int, dict[int, Frame]]:
        """At least k good frames of every stripe first..last, or NotEnoughBlocks."""
        k = self.params.k
        frames: dict[int, dict[int, Frame]] = {s: {} for s in range(first, last + 1)}
        tried: set[int] = set()
        while True:
            short = [s for s, got in frames.items() if len(got) < k]
            if not short:
                return frames
            need = k - min(len(frames[s]) for s in short)
            fresh = [i for i in self._sources if i not in tried and i not in self._dead][:need]
            if not fresh:
                worst = min(short, key=lambda s: len(frames[s]))
                raise NotEnoughBlocks(stripe=worst, have=len(frames[worst]), need=k)
            tried.update(fresh)
            found = await asyncio.gather(*(self._read_source(i, first, last) for i in fresh))
            for index, good in zip(fresh, found, strict=True):
                for stripe, frame in good.items():
                    frames[stripe][index] = frame

    # --- the rebuild ---------------------------------------------------------------------
    async def run(self) -> Rebuild:
        part, width = self._part, self.params.width
        urls = [self._urls[i] if i in self._targets else None for i in range(width)]
        writer = ShardWriter(
            self._pods, urls, part.partition, part.object_id, part.shard_tag, quorum=1,
            config=self._config, health=self._health, shard_length=self._shard_len,
        )
        try:
            writer.start()
            count = self.params.stripe_count(part.size)
            for first in range(0, count, self._per_batch):
                last = min(count, first + self._per_batch) - 1
                frames = await self._read_batch(first, last)
                batch = [(s, frames[s]) for s in range(first, last + 1)]
                for stripe_frames in await self._cpu.run(_recode, self.params, batch,
                                                         self._owner):
                    await self._send(writer, stripe_frames)
            stored, _missing = await writer.finish()
        except QuorumNotReached as exc:
            # Every target pod failed or stalled: none of them stored its shard.
            self.result.failed = {i: str(exc) for i in self._targets}
            return self.result
        finally:
            await writer.close()
        for i in self._targets:
            if i in stored:
                self.result.stored.append(i)
            else:
                self.result.failed[i] = "the pod did not store the shard"
        return self.result

    async def _send(self, writer: ShardWriter, frames: Sequence[FramePieces]) -> None:
        await writer.send(frames)
        sent = sum(len(piece) for i in self._targets for piece in frames[i])
        self.result.bytes_written += sent
        await self._throttle.take(sent)
