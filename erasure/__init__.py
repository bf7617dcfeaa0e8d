"""kurastore.erasure: the erasure codec and the frame format.

Stripes of a part's body become k data + m parity blocks (zfec, systematic Reed-Solomon);
each block is framed with a versioned header and an XXH3-64 checksum (format: _frame);
any k verified frames of a stripe give its bytes back; plan_range maps a byte range to the
stripes, blocks and shard bytes to read.

Write: StripeCutter.feed(chunk) -> stripes -> encode_stripe_parts (or encode_stripe) in a
thread pool -> frame i to shard i. Read: plan_range -> RangePlan.shard_reads() ->
split_frames -> verify_frame -> StripeRead.extract; when a data frame is missing or
corrupt, read any k shards (shard_offset/shard_length) and decode_stripe.

Rules: pure and synchronous. No I/O, nothing of kurastore imported (zfec, xxhash, the
standard library, and Intel ISA-L through ctypes where libisal is installed: _isal).
CPU-heavy calls (encode_stripe, decode_stripe, verify_frame on large frames) release the
GIL in their C parts and belong in the caller's thread pool.
"""

from kurastore.erasure._codec import decode_stripe, encode_stripe, encode_stripe_parts
from kurastore.erasure._errors import (
    ErasureError,
    FrameCorrupt,
    InvalidParams,
    NotEnoughBlocks,
    StripeMismatch,
    UnknownFrameVersion,
)
from kurastore.erasure._frame import (
    FRAME_HEADER_SIZE,
    FRAME_MAGIC,
    FRAME_VERSION,
    Frame,
    frame_header_size,
    frame_owner,
    split_frames,
    verify_frame,
)
from kurastore.erasure._params import BLOCK_ALIGN, MAX_BLOCK_SIZE, MAX_K, MAX_M, ErasureParams
from kurastore.erasure._range import RangePlan, StripeRead, plan_range
from kurastore.erasure._stream import StreamEncoder, StripeCutter

__all__ = [
    "BLOCK_ALIGN",
    "FRAME_HEADER_SIZE",
    "FRAME_MAGIC",
    "FRAME_VERSION",
    "MAX_BLOCK_SIZE",
    "MAX_K",
    "MAX_M",
    "ErasureError",
    "ErasureParams",
    "Frame",
    "FrameCorrupt",
    "InvalidParams",
    "NotEnoughBlocks",
    "RangePlan",
    "StreamEncoder",
    "StripeCutter",
    "StripeMismatch",
    "StripeRead",
    "UnknownFrameVersion",
    "decode_stripe",
    "encode_stripe",
    "encode_stripe_parts",
    "frame_header_size",
    "frame_owner",
    "plan_range",
    "split_frames",
    "verify_frame",
]
