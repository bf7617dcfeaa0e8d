"""The frame format: a block with its header and checksum, as pods store and send it.

A shard file is the frames of one index i of one part, stripe 0 first, back to back. Every
frame but a part's last is exactly FRAME_HEADER_SIZE + block_size bytes, so frame s of a
shard starts at s * frame_size. Version 1, all integers little-endian:

    offset size  field
         0    4  magic          b"KSEF" (kurastore erasure frame)
         4    1  version        1 or 2; readers dispatch on this byte (_READERS)
         5    1  k              data blocks per stripe
         6    1  m              parity blocks per stripe
         7    1  index          block index 0..k+m-1 (0..k-1: data, k..: parity)
         8    8  stripe         stripe number within the part, u64
        16    4  payload_len    bytes of block payload that follow the header, u32
        20    4  data_len       bytes of object data in the whole stripe, u32 (1..k*block)
        24    8  checksum       XXH3_64(payload, seed=XXH3_64(bytes 0..23, seed=0)), u64
        32    …  payload        the block: payload_len == ceil(data_len / k); the tail of
                                the last data blocks of a short stripe is zero padding

The checksum covers header and payload without copying them together: the header hash seeds
the payload hash, so a flipped bit anywhere (header fields included) changes it.

Version 2 (written today) has the same layout and binds the frame to its owner, the part it
belongs to (`frame_owner`: object id and shard tag): the header hash covers bytes 0..23
followed by the owner, so

        24    8  checksum       XXH3_64(payload, seed=XXH3_64(bytes 0..23 + owner, seed=0))

Why: a version-1 frame proves its index, stripe and lengths but not whose it is, so a
shard file of another part with the same geometry (a misdirected write, a file restored to
the wrong place) verified, and a GET returned that part's bytes with a 200 (found by fault
injection: another object's shard file in place of one shard). Readers of version 2 must
say which owner they expect; version 1 frames, written before, verify as before.

Why XXH3_64 and not XXH64: the same 64-bit digest, but measured here (bench/codec.py,
x86-64, python-xxhash 4.1 with libxxhash 0.8.4) XXH3_64 hashes ~1.8x faster on large
buffers (~8.5-9 vs ~5 GB/s on 64 MiB) and ~3.5x faster on cache-resident 256 KiB blocks
(~30 vs ~9 GB/s), which is our case: a block is hashed right after zfec or the network
touched it. Verifying a 1 MiB stripe's k frames then costs ~3% of a zfec decode.

GIL: the xxhash binding releases the GIL while hashing a buffer of more than 64 KiB and
holds it up to 64 KiB (its XXHASH_GIL_MINSIZE). Measured with bench/codec.py's probe (a
Python thread's CPU time while another hashes back to back): ~1.0 for 64 KiB + 64 bytes
and larger (as md5 and zfec), ~0.1 for exactly 64 KiB (as a plain bytes copy). So frames
of blocks over 64 KiB (4+2 and 8+3 with 1 MiB stripes) hash in parallel in a thread pool;
64 KiB blocks (16+4 with 1 MiB stripes) hash under the GIL, ~2 us each.

A later format must get a new version byte and a reader in _READERS; version 1 stays
readable forever. Readers never trust a length before its frame's checksum matches, except
to cut a shard into frames, which uses the fixed frame size so that a flipped length bit
loses one frame, never the ones after it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xxhash import xxh3_64_intdigest as _xxh3

from kurastore.erasure._errors import FrameCorrupt, UnknownFrameVersion

if TYPE_CHECKING:
    from kurastore.erasure._params import ErasureParams

__all__ = [
    "FRAME_HEADER_SIZE",
    "FRAME_MAGIC",
    "FRAME_VERSION",
    "Frame",
    "byte_view",
    "frame_header_size",
    "frame_owner",
    "pack_header",
    "split_frames",
    "verify_frame",
]

FRAME_MAGIC = b"KSEF"
FRAME_VERSION = 2  # written when the owner is known (always, on the data path)
FRAME_HEADER_SIZE = 32  # header of both versions; no trailer

_PREFIX_V1 = struct.Struct("<4sBBBBQII")  # the checksummed header fields, bytes 0..23
_CHECKSUM_V1 = struct.Struct("<Q")
_MAX_U32 = (1 << 32) - 1
_MAX_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class Frame:
    """A frame whose checksum and header matched: one block of one stripe."""

    index: int
    stripe: int
    k: int
    m: int
    data_len: int  # object-data bytes of the whole stripe
    payload: memoryview  # the block, including any zero padding; a view into the frame
    version: int = FRAME_VERSION


def frame_owner(object_id: str, shard_tag: str) -> bytes:
    """What a version-2 frame is bound to: the part (object id and shard tag) it belongs to."""
    return f"{object_id}.{shard_tag}".encode()


def pack_header(
    k: int, m: int, index: int, stripe: int, data_len: int, payload: bytes | memoryview,
    owner: bytes | None = None,
) -> bytes:
    """The header for `payload`, checksum included (FRAME_HEADER_SIZE bytes): version 2
    bound to `owner`, or version 1 without one."""
    if not 0 <= stripe <= _MAX_U64:
        raise ValueError(f"stripe number {stripe} does not fit the frame header")
    if not 0 < data_len <= _MAX_U32:
        raise ValueError(f"stripe data length {data_len} does not fit the frame header")
    version = 1 if owner is None else 2
    prefix = _PREFIX_V1.pack(FRAME_MAGIC, version, k, m, index, stripe, len(payload), data_len)
    seed = _xxh3(prefix) if owner is None else _xxh3(prefix + owner)
    return prefix + _CHECKSUM_V1.pack(_xxh3(payload, seed))


def frame_header_size(version: int = FRAME_VERSION) -> int:
    """Header bytes of a frame of `version`; raises UnknownFrameVersion for an unknown one."""
    if version not in _HEADER_SIZES:
        raise UnknownFrameVersion(version)
    return _HEADER_SIZES[version]


def byte_view(buf: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(buf)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def verify_frame(
    buf: bytes | bytearray | memoryview,
    *,
    index: int | None = None,
    stripe: int | None = None,
    params: ErasureParams | None = None,
    owner: bytes | None = None,
) -> Frame:
    """Check one whole frame and return it; the payload is a view into `buf`, not a copy.

    `index`, `stripe`, `params` and `owner` are what the caller expects (the shard it
    read, the stripe it asked for, the part's geometry, the part's frame_owner); a frame
    that disagrees is corrupt too (a misplaced or stale shard is as wrong as a flipped
    bit). A version-2 frame cannot be checked without its owner.
    Raises FrameCorrupt (bad magic, length, checksum, or unexpected index, stripe or
    geometry) or UnknownFrameVersion.
    """
    view = byte_view(buf)
    if len(view) < len(FRAME_MAGIC) + 1:
        raise FrameCorrupt(f"truncated: {len(view)} bytes", index=index, stripe=stripe)
    if view[: len(FRAME_MAGIC)] != FRAME_MAGIC:
        raise FrameCorrupt("bad magic", index=index, stripe=stripe)
    reader = _READERS.get(view[4])
    if reader is None:
        raise UnknownFrameVersion(view[4], index=index, stripe=stripe)
    return reader(view, index, stripe, params, owner)


def _read_v1(
    view: memoryview, index: int | None, stripe: int | None, params: ErasureParams | None,
    owner: bytes | None = None,
) -> Frame:
    if len(view) < FRAME_HEADER_SIZE:
        raise FrameCorrupt(f"truncated header: {len(view)} bytes", index=index, stripe=stripe)
    _, version, k, m, got_index, got_stripe, payload_len, data_len = _PREFIX_V1.unpack_from(view)
    (checksum,) = _CHECKSUM_V1.unpack_from(view, _PREFIX_V1.size)

    def corrupt(reason: str) -> FrameCorrupt:
        # Name the block by what the caller expected when it said; the header may be the lie.
        return FrameCorrupt(
            reason,
            index=got_index if index is None else index,
            stripe=got_stripe if stripe is None else stripe,
        )

    present = len(view) - FRAME_HEADER_SIZE
    if payload_len != present:
        raise corrupt(f"header says {payload_len} payload bytes, {present} present")
    payload = view[FRAME_HEADER_SIZE:]
    if version == 1:
        seed = _xxh3(view[: _PREFIX_V1.size])
    elif owner is None:
        raise corrupt("a version-2 frame needs its owner to be checked")
    else:
        seed = _xxh3(bytes(view[: _PREFIX_V1.size]) + owner)
    if _xxh3(payload, seed) != checksum:
        raise corrupt("checksum mismatch (or a frame of another part)")
    # The header is now trusted: what remains are writer bugs and misplaced frames.
    if k < 1 or m < 1 or got_index >= k + m:
        raise corrupt(f"impossible geometry k={k} m={m} index={got_index}")
    if data_len < 1 or -(-data_len // k) != payload_len:
        raise corrupt(f"data length {data_len} does not match payload length {payload_len}")
    if index is not None and got_index != index:
        raise corrupt(f"frame holds index {got_index}")
    if stripe is not None and got_stripe != stripe:
        raise corrupt(f"frame holds stripe {got_stripe}")
    if params is not None and (
        k != params.k or m != params.m or payload_len > params.block_size
    ):
        raise corrupt(
            f"frame geometry {k}+{m} with {payload_len}-byte block does not match "
            f"{params.k}+{params.m} with {params.block_size}-byte blocks"
        )
    return Frame(got_index, got_stripe, k, m, data_len, payload, version)


# Version 2 differs from version 1 only in what seeds the checksum (see the docstring).
_READERS: dict[int, Callable[..., Frame]] = {1: _read_v1, 2: _read_v1}
_HEADER_SIZES: dict[int, int] = {1: FRAME_HEADER_SIZE, 2: FRAME_HEADER_SIZE}


def split_frames(buf: bytes | bytearray | memoryview, params: ErasureParams) -> list[memoryview]:
    """Cut a run of consecutive frames read from one shard into frames (views, no copy).

    Every frame but a part's last is whole (header + params.block_size), so the run is cut
    at that size, taking the header size from each frame's version byte; a shorter rest is
    the part's short last frame. Lengths in headers are not trusted here (see the module
    docstring): a damaged frame comes back as a piece that verify_frame rejects.
    """
    view = byte_view(buf)
    frames = []
    pos, end = 0, len(view)
    while pos < end:
        header = FRAME_HEADER_SIZE
        if view[pos : pos + len(FRAME_MAGIC)] == FRAME_MAGIC and pos + 4 < end:
            header = _HEADER_SIZES.get(view[pos + 4], FRAME_HEADER_SIZE)
        step = min(header + params.block_size, end - pos)
        frames.append(view[pos : pos + step])
        pos += step
    return frames
