"""The codec: a stripe's bytes to k + m frames, and any k verified frames back to the bytes.

zfec is systematic Reed-Solomon: blocks 0..k-1 are the stripe's data itself, so encoding
only computes the m parity blocks (desired_blocknums), and a read holding all k data blocks
joins them without decoding. Encoder/Decoder objects hold a precomputed matrix and are
cached per (k, n); zfec releases the GIL while it computes and only reads the matrix, so one
cached object serves every thread of a pool. Where libisal is installed the same code is
computed by ISA-L (_isal: byte-identical blocks, about 9x less CPU).

Rules: no I/O, no copies beyond the one that builds each frame (data blocks are memoryview
slices of the caller's stripe) and the one that joins a decoded stripe. Padding exists only
inside the last blocks of a short stripe; decode_stripe trims it, so no caller ever sees it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import zfec

from kurastore.erasure._errors import NotEnoughBlocks, StripeMismatch
from kurastore.erasure._frame import Frame, byte_view, pack_header
from kurastore.erasure._isal import isal_code
from kurastore.erasure._params import ErasureParams

__all__ = ["decode_stripe", "encode_stripe", "encode_stripe_parts"]

Buffer = bytes | bytearray | memoryview


@lru_cache(maxsize=64)
def _encoder(k: int, n: int) -> zfec.Encoder:
    return zfec.Encoder(k, n)


@lru_cache(maxsize=64)
def _decoder(k: int, n: int) -> zfec.Decoder:
    return zfec.Decoder(k, n)


@lru_cache(maxsize=64)
def _parity_numbers(k: int, n: int) -> tuple[int, ...]:
    return tuple(range(k, n))


def _data_blocks(params: ErasureParams, view: memoryview) -> list[Buffer]:
    """The k equal-length data blocks of a stripe: views of it where possible."""
    k, size = params.k, len(view)
    if size == params.stripe_size:
        bs = params.block_size
        return [view[i * bs : (i + 1) * bs] for i in range(k)]
    # A short stripe: short blocks, zero padding only where the data runs out.
    bs = params.block_len(size)
    whole = size // bs
    blocks: list[Buffer] = [view[i * bs : (i + 1) * bs] for i in range(whole)]
    if whole < k and size % bs:
        blocks.append(bytes(view[whole * bs :]) + bytes(bs - size % bs))
    if len(blocks) < k:
        blocks.extend([bytes(bs)] * (k - len(blocks)))
    return blocks


def encode_stripe_parts(
    params: ErasureParams, stripe_no: int, data: Buffer, owner: bytes | None = None
) -> list[tuple[bytes, Buffer]]:
    """Like encode_stripe, but each frame as (header, payload) without joining them.

    For writers that can send two buffers (os.writev, a chunked body): it skips the copy
    that encode_stripe spends building each frame. Data payloads are views into `data`,
    so `data` must not change until the frames are written.
    """
    view = byte_view(data)
    if not 0 < len(view) <= params.stripe_size:
        raise ValueError(
            f"a stripe holds 1..{params.stripe_size} bytes, got {len(view)} (stripe {stripe_no})"
        )
    k, m, n = params.k, params.m, params.width
    blocks = _data_blocks(params, view)
    fast = isal_code(k, n)
    if fast is not None:
        blocks.extend(fast.encode_parity(blocks))
    else:
        blocks.extend(_encoder(k, n).encode(blocks, _parity_numbers(k, n)))
    size = len(view)
    return [(pack_header(k, m, i, stripe_no, size, block, owner), block)
            for i, block in enumerate(blocks)]


def encode_stripe(
    params: ErasureParams, stripe_no: int, data: Buffer, owner: bytes | None = None
) -> list[bytes]:
    """Encode one stripe into its k + m frames, in index order 0..k+m-1, bound to `owner`
    (frame_owner of the part; frame version 2) when given.

    `data` is stripe_size bytes, except for a part's last stripe, which may hold
    1..stripe_size bytes and then yields frames with short blocks. Frames of full stripes
    are exactly params.frame_size bytes. Raises ValueError for an empty or oversized stripe.
    Each frame is its own bytes object, so it costs one copy of the stripe (and, with
    glibc's default thresholds, fresh pages from the kernel for each 1 MiB stripe); a
    writer that can send header and payload separately uses encode_stripe_parts instead.
    """
    return [b"".join(parts) for parts in encode_stripe_parts(params, stripe_no, data, owner)]


def _by_index(frames: Mapping[int, Frame] | Sequence[Frame]) -> dict[int, Frame]:
    if isinstance(frames, Mapping):
        for key, frame in frames.items():
            if key != frame.index:
                raise StripeMismatch(f"frame of index {frame.index} given under key {key}")
        return dict(frames)
    by_index: dict[int, Frame] = {}
    for frame in frames:
        by_index.setdefault(frame.index, frame)
    return by_index


def _check_one_stripe(params: ErasureParams, by_index: dict[int, Frame]) -> Frame:
    first = next(iter(by_index.values()))
    for frame in by_index.values():
        if frame.stripe != first.stripe:
            raise StripeMismatch(
                f"frames of stripes {first.stripe} and {frame.stripe} given together"
            )
        if (frame.k, frame.m) != (params.k, params.m):
            raise StripeMismatch(
                f"stripe {frame.stripe}: frame {frame.index} is {frame.k}+{frame.m}, "
                f"expected {params.k}+{params.m}"
            )
        if frame.data_len != first.data_len or len(frame.payload) != len(first.payload):
            raise StripeMismatch(
                f"stripe {frame.stripe}: frames {first.index} and {frame.index} disagree on "
                "the stripe's length"
            )
    if first.data_len > params.stripe_size or len(first.payload) != params.block_len(
        first.data_len
    ):
        raise StripeMismatch(
            f"stripe {first.stripe}: {first.data_len} bytes in {len(first.payload)}-byte "
            f"blocks does not fit {params.k}+{params.m} with {params.block_size}-byte blocks"
        )
    return first


def _rebuild(k: int, n: int, chosen: list[int], payloads: list[Buffer]) -> Sequence[Buffer]:
    """Data blocks 0..k-1 from the k blocks `chosen` (a real decode: a data block is missing)."""
    fast = isal_code(k, n)
    if fast is not None:
        return fast.decode(chosen, payloads)
    # zfec reorders the sequences it is given in place: hand it fresh tuples.
    return _decoder(k, n).decode(tuple(payloads), tuple(chosen))


def decode_stripe(params: ErasureParams, frames: Mapping[int, Frame] | Sequence[Frame]) -> bytes:
    """The data of one stripe (exactly data_len bytes) from any >= k verified frames of it.

    When frames 0..k-1 are all present they are joined as they are (no decode). Otherwise
    the data frames present plus the lowest parity frames make k, and zfec rebuilds the
    missing data blocks. Raises NotEnoughBlocks or StripeMismatch.
    """
    by_index = _by_index(frames)
    if not by_index:
        raise NotEnoughBlocks(stripe=None, have=0, need=params.k)
    first = _check_one_stripe(params, by_index)
    k, n = params.k, params.width
    if len(by_index) < k:
        raise NotEnoughBlocks(stripe=first.stripe, have=len(by_index), need=k)
    if all(i in by_index for i in range(k)):
        blocks: Sequence[Buffer] = [by_index[i].payload for i in range(k)]
    else:
        chosen = sorted(by_index)[:k]  # data blocks sort first: decode the fewest
        blocks = _rebuild(k, n, chosen, [by_index[i].payload for i in chosen])
    bs, data_len = len(first.payload), first.data_len
    whole, rest = divmod(data_len, bs)
    if rest:
        return b"".join([*blocks[:whole], memoryview(blocks[whole])[:rest]])
    return b"".join(blocks[:whole])
