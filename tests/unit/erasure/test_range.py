"""plan_range: a range reads exactly the frames it needs, and they give back exactly its bytes."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kurastore.erasure import (
    FRAME_HEADER_SIZE,
    ErasureParams,
    decode_stripe,
    encode_stripe,
    plan_range,
    split_frames,
    verify_frame,
)

GEOMETRIES = [(2, 1), (4, 2), (8, 3), (16, 4)]


def _shards(params, data):
    shards = [bytearray() for _ in range(params.width)]
    for stripe in range(params.stripe_count(len(data))):
        piece = data[stripe * params.stripe_size : (stripe + 1) * params.stripe_size]
        for i, frame in enumerate(encode_stripe(params, stripe, piece)):
            shards[i] += frame
    return [bytes(s) for s in shards]


def _needed_blocks(params, size, start, end):
    """(stripe, index) of every data block holding a byte of [start, end], by brute force."""
    needed = set()
    for pos in range(start, end + 1):
        stripe, offset = divmod(pos, params.stripe_size)
        block = params.block_len(params.stripe_data_len(size, stripe))
        needed.add((stripe, offset // block))
    return needed


@st.composite
def cases(draw):
    params = ErasureParams(*draw(st.sampled_from(GEOMETRIES)), draw(st.sampled_from([64, 128])))
    size = draw(st.integers(1, 5 * params.stripe_size + params.block_size + 3))
    start = draw(st.integers(0, size - 1))
    end = draw(st.integers(start, size - 1))
    return params, size, start, end


@settings(max_examples=150, deadline=None)
@given(cases(), st.integers(0, 2**32))
def test_planned_reads_are_exactly_the_needed_frames_and_give_the_range(case, seed):
    rng = random.Random(seed)
    params, size, start, end = case
    data = rng.randbytes(size)
    shards = _shards(params, data)
    plan = plan_range(params, size, start, end)

    needed = _needed_blocks(params, size, start, end)
    assert {(r.stripe, i) for r in plan.stripes for i in r.indices} == needed
    assert (plan.first_stripe, plan.last_stripe) == (start // params.stripe_size,
                                                     end // params.stripe_size)

    # The fast path: read only shard_reads(), verify, extract; no decode.
    frame_of = {}
    read_bytes = 0
    for index, (offset, length) in plan.shard_reads().items():
        raw = shards[index][offset : offset + length]
        assert len(raw) == length
        read_bytes += length
        first = offset // params.frame_size
        for n, piece in enumerate(split_frames(raw, params)):
            frame = verify_frame(piece, index=index, stripe=first + n, params=params)
            frame_of[first + n, index] = frame.payload
    assert set(frame_of) == needed  # no frame read that the range does not need
    expected_bytes = sum(
        FRAME_HEADER_SIZE + params.block_len(params.stripe_data_len(size, s)) for s, _ in needed
    )
    assert read_bytes == expected_bytes
    got = b"".join(
        r.extract({i: frame_of[r.stripe, i] for i in r.indices}) for r in plan.stripes
    )
    assert got == data[start : end + 1]


@settings(max_examples=60, deadline=None)
@given(cases(), st.integers(0, 2**32))
def test_degraded_range_read_decodes_whole_stripes_from_any_k_shards(case, seed):
    rng = random.Random(seed)
    params, size, start, end = case
    data = rng.randbytes(size)
    shards = _shards(params, data)
    plan = plan_range(params, size, start, end)
    assert plan.shard_offset == plan.first_stripe * params.frame_size
    survivors = rng.sample(range(params.width), params.k)
    per_stripe = {}
    for index in survivors:
        raw = shards[index][plan.shard_offset : plan.shard_offset + plan.shard_length]
        assert len(raw) == plan.shard_length
        pieces = split_frames(raw, params)
        assert len(pieces) == plan.last_stripe - plan.first_stripe + 1
        for n, piece in enumerate(pieces):
            stripe = plan.first_stripe + n
            per_stripe.setdefault(stripe, []).append(
                verify_frame(piece, index=index, stripe=stripe, params=params)
            )
    decoded = b"".join(decode_stripe(params, per_stripe[s]) for s in sorted(per_stripe))
    assert decoded[plan.skip : plan.skip + plan.length] == data[start : end + 1]
    for read in plan.stripes:
        stripe_data = decode_stripe(params, per_stripe[read.stripe])
        lo = read.stripe * params.stripe_size
        assert stripe_data[read.offset : read.offset + read.length] == data[
            max(start, lo) : min(end + 1, lo + params.stripe_size)
        ]


def test_the_documented_example():
    params = ErasureParams.for_stripe(4, 2)
    plan = plan_range(params, 3_000_000, 1_000_000, 1_100_000)
    assert (plan.first_stripe, plan.last_stripe) == (0, 1)
    assert (plan.shard_offset, plan.shard_length) == (0, 2 * 262176)
    assert [(r.stripe, r.indices) for r in plan.stripes] == [(0, (3,)), (1, (0,))]
    assert plan.shard_reads() == {3: (0, 262176), 0: (262176, 262176)}
    assert (plan.skip, plan.length) == (1_000_000, 100_001)


def test_a_one_byte_range_in_the_short_last_stripe():
    params = ErasureParams(4, 2, 64)
    plan = plan_range(params, 300, 299, 299)  # stripe 1 holds 44 bytes in 11-byte blocks
    assert plan.stripes[0].indices == (3,)
    assert plan.stripes[0].block_size == 11
    assert (plan.shard_offset, plan.shard_length) == (params.frame_size, FRAME_HEADER_SIZE + 11)


def test_extract_checks_block_lengths():
    plan = plan_range(ErasureParams(2, 1, 64), 128, 0, 127)
    with pytest.raises(ValueError):
        plan.stripes[0].extract({0: bytes(64), 1: bytes(10)})


@pytest.mark.parametrize(
    ("size", "start", "end"),
    [(0, 0, 0), (10, 0, 10), (10, 5, 4), (10, -1, 3), (10, 3, 99), (10, 1.0, 2), (10, True, 2)],
)
def test_ranges_outside_the_part_are_refused(size, start, end):
    with pytest.raises(ValueError):
        plan_range(ErasureParams(2, 1, 64), size, start, end)


def test_random_ranges_on_one_mib_stripes():
    params = ErasureParams.for_stripe(8, 3)
    rng = random.Random(5)
    size = 3 * params.stripe_size + 12345
    for _ in range(200):
        start = rng.randrange(size)
        end = rng.randrange(start, size)
        plan = plan_range(params, size, start, end)
        reads = plan.shard_reads()
        assert all(plan.shard_offset <= o and o + n <= plan.shard_offset + plan.shard_length
                   for o, n in reads.values())
        assert sum(r.length for r in plan.stripes) == plan.length == end - start + 1
