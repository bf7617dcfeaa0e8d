"""ErasureParams: bounds, derived sizes, and the shard arithmetic every reader relies on."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kurastore.erasure import (
    BLOCK_ALIGN,
    FRAME_HEADER_SIZE,
    MAX_K,
    MAX_M,
    ErasureParams,
    InvalidParams,
    encode_stripe,
)


@pytest.mark.parametrize(
    ("k", "m", "block_size"),
    [
        (0, 1, 64),
        (MAX_K + 1, 1, 64),
        (4, 0, 64),
        (4, MAX_M + 1, 64),
        (-1, 2, 64),
        (4, 2, 0),
        (4, 2, 100),  # not a multiple of 64
        (4, 2, 1 << 40),
        (True, 2, 64),  # a bool is not a count
        (4.0, 2, 64),
        ("4", 2, 64),
    ],
)
def test_out_of_range_params_are_refused(k, m, block_size):
    with pytest.raises(InvalidParams) as err:
        ErasureParams(k, m, block_size)
    assert isinstance(err.value, ValueError)  # config loaders may catch ValueError


@pytest.mark.parametrize(("k", "m"), [(1, 1), (2, 1), (4, 2), (8, 3), (16, 4), (MAX_K, MAX_M)])
def test_supported_geometries(k, m):
    p = ErasureParams(k, m, 1024)
    assert (p.width, p.stripe_size, p.frame_size) == (k + m, k * 1024, FRAME_HEADER_SIZE + 1024)


def test_for_stripe_rounds_the_block_up_to_the_alignment():
    assert ErasureParams.for_stripe(4, 2).block_size == 1 << 18
    assert ErasureParams.for_stripe(8, 3).stripe_size == 1 << 20
    odd = ErasureParams.for_stripe(3, 2)
    assert odd.block_size % BLOCK_ALIGN == 0
    assert (1 << 20) <= odd.stripe_size < (1 << 20) + 3 * BLOCK_ALIGN
    assert ErasureParams.for_stripe(16, 4, stripe_size=1).block_size == BLOCK_ALIGN
    with pytest.raises(InvalidParams):
        ErasureParams.for_stripe(4, 2, stripe_size=0)
    with pytest.raises(InvalidParams):
        ErasureParams.for_stripe(0, 2)


def test_stripe_count_and_shard_size_of_an_empty_part():
    p = ErasureParams(4, 2, 64)
    assert p.stripe_count(0) == 0
    assert p.shard_size(0) == 0
    with pytest.raises(ValueError):
        p.stripe_count(-1)
    with pytest.raises(ValueError):
        p.shard_size(-1)


@given(
    st.sampled_from([(1, 1), (2, 1), (3, 2), (4, 2), (8, 3), (16, 4)]),
    st.integers(0, 7 * 16 * 128),
)
def test_shard_size_is_the_length_of_the_encoded_shards(geometry, size):
    k, m = geometry
    p = ErasureParams(k, m, 128)
    data = bytes(range(256)) * (size // 256 + 1)
    shard_lengths = [0] * p.width
    for stripe in range(p.stripe_count(size)):
        lo = stripe * p.stripe_size
        piece = data[lo : min(size, lo + p.stripe_size)]
        assert p.stripe_data_len(size, stripe) == len(piece)
        for i, frame in enumerate(encode_stripe(p, stripe, piece)):
            shard_lengths[i] += len(frame)
    assert shard_lengths == [p.shard_size(size)] * p.width
    assert p.stripe_count(size) == -(-size // p.stripe_size)


def test_stripe_data_len_outside_the_part():
    p = ErasureParams(2, 1, 64)
    assert p.stripe_data_len(200, 1) == 72
    with pytest.raises(ValueError):
        p.stripe_data_len(200, 2)
    with pytest.raises(ValueError):
        p.stripe_data_len(0, 0)
