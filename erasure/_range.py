"""Range reads: which stripes, blocks and shard bytes a byte range of a part needs.

plan_range maps [start, end] (inclusive, within one part) to the stripes that hold it, the
data blocks of each stripe that overlap it, and byte ranges of whole frames to read from the
shards, so a range GET reads only what it needs and can still verify every frame.

Worked example, 4+2 with 1 MiB stripes (block 262144, frame 262176 bytes), a part of
3,000,000 bytes, range 1,000,000..1,100,000:
    stripes 0..1 (stripe 0 holds bytes 0..1048575);
    stripe 0 needs blocks 3 (its bytes 786432..1048575), stripe 1 needs block 0;
    every shard: bytes 0..524351 (frames 0 and 1); shard_reads() narrows it to
    {3: frame 0 only, 0: frame 1 only};
    decoded stripes 0..1 joined: skip 1,000,000 bytes, return 100,001.
Two ways to use a plan: fetch each StripeRead's data blocks and StripeRead.extract() them
(fast path, no decode), or decode whole stripes from any k frames and take
decoded[read.offset : read.offset + read.length].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kurastore.erasure._frame import FRAME_HEADER_SIZE, byte_view
from kurastore.erasure._params import ErasureParams

__all__ = ["RangePlan", "StripeRead", "plan_range"]

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class StripeRead:
    """The part of one stripe a range needs."""

    stripe: int
    indices: tuple[int, ...]  # data block indices that overlap the range, ascending
    offset: int = 0  # first byte of the range inside this stripe's data
    length: int = 0  # bytes of the range inside this stripe
    block_size: int = 0  # payload bytes of this stripe's blocks (short for a short stripe)

    def extract(self, blocks: Mapping[int, Buffer]) -> bytes:
        """The range's bytes in this stripe, from the payloads of the blocks in `indices`."""
        bs, start, stop = self.block_size, self.offset, self.offset + self.length
        pieces = []
        for i in self.indices:
            payload = byte_view(blocks[i])
            if len(payload) != bs:
                raise ValueError(f"block {i} of stripe {self.stripe} has {len(payload)} bytes")
            lo, hi = max(start, i * bs), min(stop, (i + 1) * bs)
            pieces.append(payload[lo - i * bs : hi - i * bs])
        return b"".join(pieces)


@dataclass(frozen=True)
class RangePlan:
    """How to serve [start, end] of a part; see the module docstring for an example."""

    first_stripe: int
    last_stripe: int
    shard_offset: int  # byte range to read from each shard: whole frames of first..last
    shard_length: int
    skip: int  # bytes to drop from the start of the joined data of first..last stripes
    length: int  # bytes to return after skip
    stripes: tuple[StripeRead, ...]

    def shard_reads(self) -> dict[int, tuple[int, int]]:
        """The narrowest (offset, length) to read from each data shard the range touches.

        A shard's needed stripes are always consecutive (inner stripes need every block),
        so one read per shard suffices; a reader going degraded falls back to the full
        shard_offset/shard_length on any k shards.
        """
        frame = self.stripes[0].block_size + FRAME_HEADER_SIZE if self.stripes else 0
        end = self.shard_offset + self.shard_length
        spans: dict[int, list[int]] = {}
        for read in self.stripes:
            for i in read.indices:
                spans.setdefault(i, [read.stripe, read.stripe])[1] = read.stripe
        reads = {}
        for i, (low, high) in sorted(spans.items()):
            offset = self.shard_offset + (low - self.first_stripe) * frame
            stop = end if high == self.last_stripe else offset + (high - low + 1) * frame
            reads[i] = (offset, stop - offset)
        return reads


def plan_range(params: ErasureParams, part_size: int, start: int, end: int) -> RangePlan:
    """Plan the read of bytes [start, end] (inclusive) of a part of `part_size` bytes.

    Raises ValueError unless 0 <= start <= end < part_size.
    """
    for name, value in (("part_size", part_size), ("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if not 0 <= start <= end < part_size:
        raise ValueError(f"range {start}..{end} is outside a part of {part_size} bytes")
    size, frame = params.stripe_size, params.frame_size
    first, last = start // size, end // size
    reads = []
    for stripe in range(first, last + 1):
        base = stripe * size
        data_len = min(size, part_size - base)
        block = params.block_len(data_len)
        lo = max(start, base) - base
        hi = min(end, base + data_len - 1) - base
        indices = tuple(range(lo // block, hi // block + 1))
        reads.append(StripeRead(stripe, indices, lo, hi - lo + 1, block))
    shard_offset = first * frame
    shard_end = min((last + 1) * frame, params.shard_size(part_size))
    return RangePlan(
        first_stripe=first,
        last_stripe=last,
        shard_offset=shard_offset,
        shard_length=shard_end - shard_offset,
        skip=start - first * size,
        length=end - start + 1,
        stripes=tuple(reads),
    )
