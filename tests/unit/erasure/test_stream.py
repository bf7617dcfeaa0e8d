"""StripeCutter and StreamEncoder: arbitrary chunks in, the same stripes as slicing out."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kurastore.erasure import ErasureParams, StreamEncoder, StripeCutter, encode_stripe

PARAMS = ErasureParams(4, 2, 64)  # 256-byte stripes


def _chunks(data, cuts, kind):
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for lo, hi in itertools.pairwise(bounds):
        piece = data[lo:hi]
        yield {"bytes": piece, "bytearray": bytearray(piece), "view": memoryview(piece)}[kind]


@settings(max_examples=80, deadline=None)
@given(
    st.binary(max_size=6 * PARAMS.stripe_size + 10),
    st.lists(st.integers(0, 10_000), max_size=20),
    st.sampled_from(["bytes", "bytearray", "view"]),
)
def test_cutting_any_chunking_gives_the_stripes_of_the_body(data, cuts, kind):
    cutter = StripeCutter(PARAMS)
    stripes = []
    for chunk in _chunks(data, cuts, kind):
        stripes.extend(bytes(s) for s in cutter.feed(chunk))
    last = cutter.finish()
    size = PARAMS.stripe_size
    assert stripes == [data[i : i + size] for i in range(0, len(data) - len(data) % size, size)]
    rest = data[len(data) - len(data) % size :]
    assert last == (rest or None)
    assert cutter.size == len(data)


def test_whole_stripes_of_an_immutable_chunk_are_not_copied():
    body = bytes(range(256)) * 3 + b"tail"
    cutter = StripeCutter(PARAMS)
    stripes = cutter.feed(body)
    assert len(stripes) == 3
    assert all(s.obj is body for s in stripes)
    assert cutter.finish() == b"tail"


@pytest.mark.parametrize("wrap", [lambda b: b, lambda b: memoryview(b).toreadonly()])
def test_a_reused_bytearray_chunk_does_not_change_emitted_stripes(wrap):
    cutter = StripeCutter(PARAMS)
    buf = bytearray(b"a" * 300)
    first = cutter.feed(wrap(buf))
    buf[:] = b"b" * 300
    second = cutter.feed(wrap(buf))
    assert bytes(first[0]) == b"a" * 256
    assert bytes(second[0]) == b"a" * 44 + b"b" * 212
    assert all(s.readonly for s in first + second)
    assert cutter.finish() == b"b" * 88


def test_feed_after_finish_is_refused():
    cutter = StripeCutter(PARAMS)
    assert cutter.finish() is None
    with pytest.raises(ValueError):
        cutter.feed(b"x")


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=4 * PARAMS.stripe_size), st.lists(st.integers(0, 2000), max_size=8))
def test_stream_encoder_numbers_and_encodes_every_stripe(data, cuts):
    encoder = StreamEncoder(PARAMS, first_stripe=10)
    out = []
    for chunk in _chunks(data, cuts, "bytes"):
        out.extend(encoder.feed(chunk))
    out.extend(encoder.finish())
    size = PARAMS.stripe_size
    expected = [
        (10 + n, encode_stripe(PARAMS, 10 + n, data[lo : lo + size]))
        for n, lo in enumerate(range(0, len(data), size))
    ]
    assert out == expected
    assert encoder.size == len(data)
    assert encoder.next_stripe == 10 + len(expected)
