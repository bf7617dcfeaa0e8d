"""Scrub: the pod re-reads a shard and names exactly the stripes whose frames are bad."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from kurastore.erasure import ErasureParams, encode_stripe, frame_owner
from kurastore.storage import PodClient, ShardId, ShardNotFound, VerifyResult
from kurastore.storage._scrub import verify_file

PARAMS = ErasureParams(k=4, m=2, block_size=4096)
INDEX = 1


def shard_bytes(size: int, index: int = INDEX, params: ErasureParams = PARAMS,
                owner: bytes | None = None) -> bytes:
    """The shard file of block `index` for a part of `size` random bytes (frames bound
    to `owner` when given, as the data path writes them)."""
    data = os.urandom(size)
    frames = []
    for s in range(params.stripe_count(size)):
        chunk = data[s * params.stripe_size : (s + 1) * params.stripe_size]
        frames.append(encode_stripe(params, s, chunk, owner)[index])
    out = b"".join(frames)
    assert len(out) == params.shard_size(size)
    return out


def flip(buf: bytes, offset: int) -> bytes:
    b = bytearray(buf)
    b[offset] ^= 0x40
    return bytes(b)


def check(tmp_path: Path, content: bytes, index: int = INDEX,
          owner: bytes | None = None) -> VerifyResult:
    path = tmp_path / "shard"
    path.write_bytes(content)
    return verify_file(path, index, owner)


FS = PARAMS.frame_size
SIZE = 5 * PARAMS.stripe_size + 1000  # five full stripes and a short one


def test_intact_shards(tmp_path: Path) -> None:
    assert check(tmp_path, shard_bytes(SIZE)) == VerifyResult(True, 6, ())
    assert check(tmp_path, shard_bytes(3 * PARAMS.stripe_size)) == VerifyResult(True, 3, ())
    assert check(tmp_path, shard_bytes(10)) == VerifyResult(True, 1, ())
    assert check(tmp_path, b"") == VerifyResult(True, 0, ())


def test_a_shard_of_another_part_is_lost_whole(tmp_path: Path) -> None:
    # Intact frames of the same geometry, but another part's (a misdirected write):
    # nothing in them can be trusted for this part.
    mine, other = frame_owner("a" * 32, "0"), frame_owner("b" * 32, "0")
    assert check(tmp_path, shard_bytes(SIZE, owner=mine), owner=mine) == VerifyResult(
        True, 6, ())
    assert check(tmp_path, shard_bytes(SIZE, owner=other), owner=mine) == VerifyResult(
        False, 0, ())


@pytest.mark.parametrize(
    ("offset", "bad"),
    [
        (2 * FS + 32 + 100, (2,)),  # payload of stripe 2
        (3 * FS + 9, (3,)),  # header (stripe number) of stripe 3
        (5 * FS + 40, (5,)),  # the short last frame
        (0 * FS + 200, (0,)),  # frame 0's payload: geometry comes from its header
        (0 * FS + 17, (0,)),  # frame 0's payload length: geometry from a later frame
        (0 * FS + 1, (0,)),  # frame 0's magic
    ],
)
def test_flipped_byte_names_its_stripe(tmp_path: Path, offset: int, bad: tuple[int, ...]) -> None:
    assert check(tmp_path, flip(shard_bytes(SIZE), offset)) == VerifyResult(False, 6, bad)


def test_two_bad_frames(tmp_path: Path) -> None:
    content = flip(flip(shard_bytes(SIZE), FS + 500), 4 * FS + 3000)
    assert check(tmp_path, content) == VerifyResult(False, 6, (1, 4))


def test_truncated_shard(tmp_path: Path) -> None:
    content = shard_bytes(SIZE)
    assert check(tmp_path, content[:-1]) == VerifyResult(False, 6, (5,))
    assert check(tmp_path, content[: 3 * FS + 100]) == VerifyResult(False, 4, (3,))


def test_misplaced_shard_is_bad(tmp_path: Path) -> None:
    # A shard holding index 2's frames stored under index 1: every frame is wrong.
    result = check(tmp_path, shard_bytes(SIZE, index=2))
    assert not result.ok


def test_garbage_is_lost(tmp_path: Path) -> None:
    assert check(tmp_path, os.urandom(50_000)) == VerifyResult(False, 0, ())


def test_large_block_geometry(tmp_path: Path) -> None:
    params = ErasureParams.for_stripe(8, 3, 8 << 20)  # 1 MiB blocks
    content = shard_bytes(3 * params.stripe_size + 5, params=params)
    assert check(tmp_path, content) == VerifyResult(True, 4, ())
    bad = flip(content, params.frame_size + 12345)
    assert check(tmp_path, bad) == VerifyResult(False, 4, (1,))


async def test_verify_over_http(pod: Any) -> None:
    c, url = pod.client, pod.url
    good, damaged = ShardId("1" * 32, "p1", INDEX), ShardId("2" * 32, "p1", INDEX)
    content = shard_bytes(SIZE)
    await c.put_shard(url, 3, good, content)
    await c.put_shard(url, 3, damaged, flip(content, 2 * FS + 77))
    assert await c.verify_shard(url, 3, good) == VerifyResult(True, 6, ())
    assert await c.verify_shard(url, 3, damaged) == VerifyResult(False, 6, (2,))
    with pytest.raises(ShardNotFound):
        await c.verify_shard(url, 3, ShardId("3" * 32, "p1", INDEX))
    assert isinstance(c, PodClient)
