"""Scrub: re-read one shard (file or packed) and check every frame (the pod side of
`verify_shard`).

The pod does not know the part's geometry, so it learns it from the shard itself: the
first frame whose checksum matches gives k, m and the block size (a full frame's payload
length, or - when frame 0 is damaged - the offset of a later good frame divided by its
stripe number). Lengths are never taken from a header that failed its checksum, except as
a guess that a checksum must then confirm.

Rules:
- Every frame must verify with the shard's own index and its position as stripe number,
  so a misplaced or reordered frame counts as bad, like a flipped bit.
- Reads go in windows of whole frames (~16 MiB), so memory stays bounded for any shard size.
- When no frame can be trusted at all, the result is ok=False, frames=0, bad_stripes=():
  the caller must treat the whole shard as lost.
- Blocking: runs on the pod's I/O executor.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

from kurastore.erasure import (
    FRAME_HEADER_SIZE,
    FRAME_MAGIC,
    ErasureParams,
    FrameCorrupt,
    split_frames,
    verify_frame,
)
from kurastore.storage.api import VerifyResult

__all__ = ["verify_bytes", "verify_file"]

_HEADER = FRAME_HEADER_SIZE
_MAGIC = FRAME_MAGIC
_PAYLOAD_LEN = slice(16, 20)  # u32 little-endian in a version-1 header; a guess until checked
_WINDOW = 16 << 20
_SCAN_LIMIT = 256 << 20  # how far to look for a good frame when frame 0 is damaged
_ALIGN = 64


def verify_file(path: Path, index: int, owner: bytes | None = None) -> VerifyResult:
    """Check every frame of the shard at `path`, which must hold block index `index` of the
    part `owner` names (frame_owner; frames of version 2 are bound to it)."""
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return VerifyResult(True, 0, ())  # the shard of an empty part
        params = _geometry(f, size, index, owner)
        if params is None:
            return VerifyResult(False, 0, ())
        return _check_frames(f, size, index, params, owner)


def verify_bytes(data: bytes, index: int, owner: bytes | None = None) -> VerifyResult:
    """verify_file for a shard held in memory (a packed shard, read whole)."""
    with io.BytesIO(data) as f:
        if not data:
            return VerifyResult(True, 0, ())
        params = _geometry(f, len(data), index, owner)
        if params is None:
            return VerifyResult(False, 0, ())
        return _check_frames(f, len(data), index, params, owner)


def _check_frames(f: BinaryIO, size: int, index: int, params: ErasureParams,
                  owner: bytes | None) -> VerifyResult:
    frame_size = params.frame_size
    window = bytearray(max(1, _WINDOW // frame_size) * frame_size)
    bad: list[int] = []
    frames = 0
    pos = 0
    f.seek(0)
    while pos < size:
        n = _fill(f, window)
        if not n:
            break
        for piece in split_frames(memoryview(window)[:n], params):
            try:
                verify_frame(piece, index=index, stripe=frames, params=params, owner=owner)
            except FrameCorrupt:
                bad.append(frames)
            frames += 1
        pos += n
    # Every frame but the last is full: a short frame in the middle would have been cut
    # into pieces above and failed, so the count and the list are complete.
    return VerifyResult(not bad, frames, tuple(bad))


def _fill(f: BinaryIO, buf: bytearray) -> int:
    """Read until `buf` is full or the file ends; return the bytes read."""
    view, got = memoryview(buf), 0
    while got < len(buf):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _payload_len(header: bytes) -> int | None:
    if len(header) < _HEADER or header[:4] != _MAGIC:
        return None
    return int.from_bytes(header[_PAYLOAD_LEN], "little")


def _read_at(f: BinaryIO, offset: int, n: int) -> bytes:
    f.seek(offset)
    return f.read(n)


def _try_frame(f: BinaryIO, offset: int, size: int, index: int,
               owner: bytes | None) -> tuple[int, int, int] | None:
    """(k, m, stripe) of the frame at `offset` if it verifies, else None."""
    length = _payload_len(_read_at(f, offset, _HEADER))
    if length is None or offset + _HEADER + length > size:
        return None
    try:
        frame = verify_frame(_read_at(f, offset, _HEADER + length), index=index, owner=owner)
    except FrameCorrupt:
        return None
    return frame.k, frame.m, frame.stripe


def _params(k: int, m: int, block_size: int) -> ErasureParams | None:
    try:
        return ErasureParams(k=k, m=m, block_size=block_size)
    except ValueError:
        return None


def _geometry(f: BinaryIO, size: int, index: int, owner: bytes | None) -> ErasureParams | None:
    first = _try_frame(f, 0, size, index, owner)
    if first is not None and first[2] == 0:
        k, m, _ = first
        length = _payload_len(_read_at(f, 0, _HEADER))
        assert length is not None
        if _HEADER + length == size:
            # One (possibly short) frame: any block size at least its payload will do.
            return _params(k, m, max(_ALIGN, -(-length // _ALIGN) * _ALIGN))
        return _params(k, m, length)
    # Frame 0 is damaged: find a later good frame; its offset / its stripe = frame size.
    limit = min(size, _SCAN_LIMIT)
    offset = 1
    while offset < limit:
        chunk = _read_at(f, offset, min(_WINDOW, limit - offset) + len(_MAGIC) - 1)
        hit = chunk.find(_MAGIC)
        if hit < 0:
            offset += max(1, len(chunk) - len(_MAGIC) + 1)
            continue
        at = offset + hit
        found = _try_frame(f, at, size, index, owner)
        if found is not None and found[2] > 0 and at % found[2] == 0:
            params = _params(found[0], found[1], at // found[2] - _HEADER)
            if params is not None:
                return params
        offset = at + 1
    return None
