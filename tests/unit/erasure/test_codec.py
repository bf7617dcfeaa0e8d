"""encode_stripe / decode_stripe: any k of k + m frames give back exactly the stripe's bytes."""

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kurastore.erasure._codec as codec_module
from kurastore.erasure import (
    ErasureParams,
    NotEnoughBlocks,
    StripeMismatch,
    decode_stripe,
    encode_stripe,
    encode_stripe_parts,
    verify_frame,
)

GEOMETRIES = [(2, 1), (4, 2), (8, 3), (16, 4)]
BLOCK = 64


def _encode_part(params, data):
    """Every stripe's verified frames, as a reader would see them."""
    stripes = []
    for stripe in range(params.stripe_count(len(data))):
        piece = data[stripe * params.stripe_size : (stripe + 1) * params.stripe_size]
        frames = encode_stripe(params, stripe, piece)
        assert len(frames) == params.width
        stripes.append(
            [verify_frame(f, index=i, stripe=stripe, params=params) for i, f in enumerate(frames)]
        )
    return stripes


def _sizes(params):
    b, s = params.block_size, params.stripe_size
    return [0, 1, b - 1, b, b + 1, s - 1, s, s + 1, 5 * s + 7]


def _loss_patterns(width, k, rng, limit=60):
    """Every set of lost blocks that leaves exactly k, or a sample of them when too many."""
    patterns = list(itertools.combinations(range(width), width - k))
    return patterns if len(patterns) <= limit else rng.sample(patterns, limit)


@pytest.mark.parametrize(("k", "m"), [*GEOMETRIES, (1, 1), (3, 2)])
def test_any_k_frames_rebuild_every_size(k, m):
    params = ErasureParams(k, m, BLOCK)
    rng = random.Random(k * 100 + m)
    for size in _sizes(params):
        data = rng.randbytes(size)
        stripes = _encode_part(params, data)
        assert len(stripes) == params.stripe_count(size)
        patterns = _loss_patterns(params.width, k, rng)
        for stripe, frames in enumerate(stripes):
            expected = data[stripe * params.stripe_size : (stripe + 1) * params.stripe_size]
            assert all(f.data_len == len(expected) for f in frames)
            for lost in rng.sample(patterns, min(len(patterns), 12)):
                kept = [f for f in frames if f.index not in lost]
                assert decode_stripe(params, kept) == expected
            # More than k frames is fine too, given in any order, as a sequence or mapping.
            shuffled = rng.sample(frames, len(frames))
            assert decode_stripe(params, shuffled) == expected
            assert decode_stripe(params, {f.index: f for f in shuffled}) == expected


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(GEOMETRIES), st.binary(min_size=1, max_size=3000), st.data())
def test_random_data_and_random_losses(geometry, data, draw):
    params = ErasureParams(*geometry, BLOCK)
    stripes = _encode_part(params, data)
    rebuilt = []
    for frames in stripes:
        keep = draw.draw(st.permutations(frames)).__getitem__(slice(params.k))
        rebuilt.append(decode_stripe(params, keep))
    assert b"".join(rebuilt) == data


@settings(max_examples=6, deadline=None)
@given(st.sampled_from([(4, 2), (8, 3)]), st.integers(1, (5 << 20) // 2), st.integers(0, 2**32))
def test_one_mib_stripes_with_m_data_blocks_lost(geometry, size, seed):
    rng = random.Random(seed)  # hypothesis's own Random draws every byte: slow for MiBs
    params = ErasureParams.for_stripe(*geometry)
    data = rng.randbytes(size)
    out = []
    for frames in _encode_part(params, data):
        lost = set(rng.sample(range(params.k), params.m))  # the worst case: data blocks
        out.append(decode_stripe(params, [f for f in frames if f.index not in lost]))
    assert b"".join(out) == data


def test_padding_never_reaches_the_caller():
    params = ErasureParams(4, 2, BLOCK)
    frames = _encode_part(params, b"xyz")[0]
    assert [len(f.payload) for f in frames] == [1] * 6  # ceil(3 / 4): short blocks
    assert bytes(frames[3].payload) == b"\0"  # padding, inside the frame only
    assert decode_stripe(params, frames[2:]) == b"xyz"
    assert decode_stripe(params, frames[:4]) == b"xyz"


def test_all_data_frames_present_means_no_decode(monkeypatch):
    params = ErasureParams(8, 3, BLOCK)
    data = bytes(range(250)) * 2  # one short stripe
    frames = _encode_part(params, data)[0]
    rebuilds = []
    real = codec_module._rebuild
    monkeypatch.setattr(codec_module, "_rebuild",
                        lambda *args: rebuilds.append(args[2]) or real(*args))
    assert decode_stripe(params, frames[:8]) == data
    assert decode_stripe(params, frames) == data
    assert rebuilds == []  # no decode was ever asked for
    assert decode_stripe(params, frames[1:9]) == data
    assert rebuilds == [[1, 2, 3, 4, 5, 6, 7, 8]]


def test_parts_are_the_frames_unjoined():
    params = ErasureParams(4, 2, BLOCK)
    data = bytes(range(256))
    parts = encode_stripe_parts(params, 3, data)
    assert [h + bytes(p) for h, p in parts] == encode_stripe(params, 3, data)
    assert memoryview(parts[0][1]).obj is data  # data payloads are views, not copies


def test_full_stripe_frames_are_exactly_frame_size():
    params = ErasureParams.for_stripe(8, 3)
    frames = encode_stripe(params, 0, bytes(params.stripe_size))
    assert {len(f) for f in frames} == {params.frame_size}


@pytest.mark.parametrize("size", [0, ErasureParams(4, 2, BLOCK).stripe_size + 1])
def test_a_stripe_must_hold_1_to_stripe_size_bytes(size):
    with pytest.raises(ValueError):
        encode_stripe(ErasureParams(4, 2, BLOCK), 0, bytes(size))


def test_fewer_than_k_frames():
    params = ErasureParams(4, 2, BLOCK)
    frames = _encode_part(params, bytes(300))[0]
    with pytest.raises(NotEnoughBlocks, match="stripe 0: 3 valid block") as err:
        decode_stripe(params, frames[3:])
    assert (err.value.stripe, err.value.have, err.value.need) == (0, 3, 4)
    with pytest.raises(NotEnoughBlocks):
        decode_stripe(params, [])
    with pytest.raises(NotEnoughBlocks):  # duplicates do not count twice
        decode_stripe(params, [frames[0]] * 4 + [frames[1]])


def test_frames_of_different_stripes_are_refused():
    params = ErasureParams(4, 2, BLOCK)
    stripes = _encode_part(params, bytes(range(256)) * 2)
    mixed = stripes[0][:2] + stripes[1][2:4]
    with pytest.raises(StripeMismatch, match="stripes 0 and 1"):
        decode_stripe(params, mixed)


def test_frames_of_different_geometry_are_refused():
    params = ErasureParams(4, 2, BLOCK)
    other = _encode_part(ErasureParams(4, 3, BLOCK), bytes(256))[0]
    with pytest.raises(StripeMismatch, match="4\\+3"):
        decode_stripe(params, other)
    frames = _encode_part(params, bytes(256))[0]
    short = _encode_part(params, bytes(100))[0]
    with pytest.raises(StripeMismatch, match="length"):
        decode_stripe(params, frames[:3] + short[3:4])
    with pytest.raises(StripeMismatch, match="does not fit"):
        big_blocks = _encode_part(ErasureParams(4, 2, 256), bytes(1024))[0]
        decode_stripe(ErasureParams(4, 2, 128), big_blocks)


def test_a_mapping_key_must_be_the_frame_index():
    params = ErasureParams(2, 1, BLOCK)
    frames = _encode_part(params, bytes(100))[0]
    with pytest.raises(StripeMismatch, match="under key 0"):
        decode_stripe(params, {0: frames[1], 1: frames[0]})
