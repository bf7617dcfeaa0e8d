"""The frame format: its documented layout, corruption detection, versions, splitting."""

import struct

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from kurastore.erasure import (
    FRAME_HEADER_SIZE,
    FRAME_MAGIC,
    FRAME_VERSION,
    ErasureParams,
    FrameCorrupt,
    UnknownFrameVersion,
    encode_stripe,
    frame_header_size,
    frame_owner,
    split_frames,
    verify_frame,
)

GEOMETRIES = [(2, 1), (4, 2), (8, 3), (16, 4)]

# Frames written by format version 1: they must verify forever (shards outlive code).
GOLDEN_2_1_STRIPE_5_HELLO = [
    "4b5345460102010005000000000000000300000005000000a3b0c2c229808c0568656c",
    "4b5345460102010105000000000000000300000005000000b18cb1af0967c74a6c6f00",
    "4b5345460102010205000000000000000300000005000000e5b1c54ec7d3f5a66071b4",
]


def test_version_1_frames_are_byte_for_byte_stable():
    frames = encode_stripe(ErasureParams(2, 1, 64), 5, b"hello")
    assert [f.hex() for f in frames] == GOLDEN_2_1_STRIPE_5_HELLO
    for i, golden in enumerate(GOLDEN_2_1_STRIPE_5_HELLO):
        frame = verify_frame(bytes.fromhex(golden), index=i, stripe=5)
        assert (frame.k, frame.m, frame.data_len, frame.version) == (2, 1, 5, 1)


def test_the_header_matches_the_documented_layout():
    payload_source = bytes(range(200))
    params = ErasureParams(4, 2, 64)
    frames = encode_stripe(params, 2**40 + 3, payload_source)
    for i, raw in enumerate(frames):
        magic, version, k, m, index, stripe, payload_len, data_len, checksum = struct.unpack(
            "<4sBBBBQIIQ", raw[:32]
        )
        payload = raw[32:]
        assert (magic, version, k, m, index) == (FRAME_MAGIC, 1, 4, 2, i)
        assert (stripe, payload_len, data_len) == (2**40 + 3, 50, 200)
        assert len(payload) == payload_len == -(-data_len // k)
        seed = xxhash.xxh3_64_intdigest(raw[:24])
        assert checksum == xxhash.xxh3_64_intdigest(payload, seed)
        if i < 4:  # systematic: data blocks are the data itself
            assert payload == payload_source[i * 50 : (i + 1) * 50]
    assert FRAME_HEADER_SIZE == frame_header_size(FRAME_VERSION) == 32


def test_verify_returns_a_view_of_the_payload():
    params = ErasureParams(2, 1, 64)
    raw = bytearray(encode_stripe(params, 0, bytes(range(128)))[1])
    frame = verify_frame(raw, index=1, stripe=0, params=params)
    assert isinstance(frame.payload, memoryview)
    assert frame.payload.obj is raw
    assert bytes(frame.payload) == bytes(range(64, 128))


@pytest.mark.parametrize(("k", "m"), GEOMETRIES)
def test_every_single_bit_flip_in_any_frame_is_detected(k, m):
    params = ErasureParams(k, m, 64)
    stripe = 7
    data = bytes((i * 31 + 7) % 251 for i in range(params.stripe_size - 5))
    for index, raw in enumerate(encode_stripe(params, stripe, data)):
        buf = bytearray(raw)
        for bit in range(len(buf) * 8):
            buf[bit // 8] ^= 1 << (bit % 8)
            with pytest.raises(FrameCorrupt) as err:
                verify_frame(buf, index=index, stripe=stripe, params=params)
            assert f"shard index {index}, stripe {stripe}" in str(err.value)
            assert (err.value.index, err.value.stripe) == (index, stripe)
            with pytest.raises(FrameCorrupt):  # also caught with no expectations given
                verify_frame(buf)
            buf[bit // 8] ^= 1 << (bit % 8)
        assert verify_frame(buf, index=index, stripe=stripe, params=params).index == index


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_a_bit_flip_in_a_full_size_frame_is_detected(data):
    params = ErasureParams.for_stripe(4, 2)
    frames = _big_frames(params)
    index = data.draw(st.integers(0, params.width - 1))
    bit = data.draw(st.integers(0, len(frames[index]) * 8 - 1))
    buf = bytearray(frames[index])
    buf[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(FrameCorrupt, match=f"shard index {index}, stripe 3"):
        verify_frame(buf, index=index, stripe=3, params=params)


_BIG: dict = {}


def _big_frames(params):
    if params not in _BIG:
        _BIG[params] = encode_stripe(params, 3, bytes(range(256)) * (params.stripe_size // 256))
    return _BIG[params]


def test_unknown_version_is_a_typed_error():
    raw = bytearray(encode_stripe(ErasureParams(2, 1, 64), 4, b"abcdef")[0])
    for version in (0, 3, 255):
        raw[4] = version
        with pytest.raises(UnknownFrameVersion) as err:
            verify_frame(raw, index=0, stripe=4)
        assert err.value.version == version
        assert isinstance(err.value, FrameCorrupt)
        assert f"version {version}" in str(err.value)
        assert "shard index 0, stripe 4" in str(err.value)
    with pytest.raises(UnknownFrameVersion):
        frame_header_size(3)


def test_version_2_frames_are_bound_to_their_owner():
    params = ErasureParams(2, 1, 64)
    mine, other = frame_owner("a" * 32, "0"), frame_owner("b" * 32, "0")
    frames = encode_stripe(params, 4, b"abcdef", mine)
    assert all(f[4] == 2 for f in frames)  # the version byte
    for index, raw in enumerate(frames):
        frame = verify_frame(raw, index=index, stripe=4, params=params, owner=mine)
        assert frame.version == 2 and frame.data_len == 6
        # The same bytes claimed by another part (a misdirected write), or by the same
        # object's other part, or checked without saying whose: all corrupt.
        for wrong in (other, frame_owner("a" * 32, "1"), None):
            with pytest.raises(FrameCorrupt):
                verify_frame(raw, index=index, stripe=4, params=params, owner=wrong)


def test_version_1_frames_still_verify_whatever_the_owner():
    params = ErasureParams(2, 1, 64)
    legacy = encode_stripe(params, 4, b"abcdef")  # no owner: what was written before
    assert legacy[0][4] == 1
    for owner in (None, frame_owner("a" * 32, "0")):
        assert verify_frame(legacy[0], index=0, stripe=4, params=params, owner=owner).version == 1


@pytest.mark.parametrize(
    ("cut", "reason"),
    [(0, "truncated"), (3, "truncated"), (20, "truncated header"), (40, "payload bytes")],
)
def test_truncated_frames(cut, reason):
    raw = encode_stripe(ErasureParams(2, 1, 64), 1, bytes(100))[0]
    with pytest.raises(FrameCorrupt, match=reason):
        verify_frame(raw[:cut], index=0, stripe=1)


def test_bad_magic():
    raw = b"XXXX" + encode_stripe(ErasureParams(2, 1, 64), 1, bytes(100))[0][4:]
    with pytest.raises(FrameCorrupt, match="bad magic"):
        verify_frame(raw)


def test_a_valid_frame_in_the_wrong_place_is_corrupt():
    params = ErasureParams(4, 2, 64)
    raw = encode_stripe(params, 9, bytes(range(256)))[2]
    with pytest.raises(FrameCorrupt, match="holds index 2") as err:
        verify_frame(raw, index=3, stripe=9)
    assert (err.value.index, err.value.stripe) == (3, 9)
    with pytest.raises(FrameCorrupt, match="holds stripe 9"):
        verify_frame(raw, index=2, stripe=8)
    with pytest.raises(FrameCorrupt, match="geometry"):
        verify_frame(raw, params=ErasureParams(4, 3, 64))
    big = encode_stripe(ErasureParams(4, 2, 128), 0, bytes(512))[0]
    with pytest.raises(FrameCorrupt, match="geometry"):
        verify_frame(big, params=params)  # a 128-byte block cannot belong to 64-byte blocks
    frame = verify_frame(raw)
    assert (frame.index, frame.stripe, frame.k, frame.m, frame.data_len) == (2, 9, 4, 2, 256)


def _shard(params, data, index):
    out = bytearray()
    for stripe in range(params.stripe_count(len(data))):
        piece = data[stripe * params.stripe_size : (stripe + 1) * params.stripe_size]
        out += encode_stripe(params, stripe, piece)[index]
    return bytes(out)


@given(st.sampled_from(GEOMETRIES), st.integers(1, 6 * 16 * 64), st.data())
def test_split_frames_cuts_a_shard_into_its_frames(geometry, size, data):
    params = ErasureParams(*geometry, 64)
    index = data.draw(st.integers(0, params.width - 1))
    shard = _shard(params, bytes(size), index)
    assert len(shard) == params.shard_size(size)
    pieces = split_frames(shard, params)
    assert len(pieces) == params.stripe_count(size)
    for stripe, piece in enumerate(pieces):
        frame = verify_frame(piece, index=index, stripe=stripe, params=params)
        assert frame.data_len == params.stripe_data_len(size, stripe)
    assert split_frames(b"", params) == []


def test_a_damaged_length_loses_one_frame_not_the_rest():
    params = ErasureParams(2, 1, 64)
    shard = bytearray(_shard(params, bytes(range(200)) * 3, 1))
    struct.pack_into("<I", shard, params.frame_size + 16, 7)  # stripe 1's payload_len
    pieces = split_frames(shard, params)
    assert len(pieces) == params.stripe_count(600)
    for stripe, piece in enumerate(pieces):
        if stripe == 1:
            with pytest.raises(FrameCorrupt, match="shard index 1, stripe 1"):
                verify_frame(piece, index=1, stripe=1)
        else:
            verify_frame(piece, index=1, stripe=stripe)


def test_a_truncated_read_fails_on_its_last_frame():
    params = ErasureParams(2, 1, 64)
    shard = _shard(params, bytes(300), 0)
    pieces = split_frames(shard[:-10], params)
    verify_frame(pieces[0], index=0, stripe=0)
    with pytest.raises(FrameCorrupt):
        verify_frame(pieces[-1], index=0, stripe=len(pieces) - 1)


def _crafted(k, m, index, stripe, payload, data_len):
    """A frame with a correct checksum over a header no honest writer produces."""
    prefix = struct.pack("<4sBBBBQII", FRAME_MAGIC, 1, k, m, index, stripe, len(payload), data_len)
    checksum = xxhash.xxh3_64_intdigest(payload, xxhash.xxh3_64_intdigest(prefix))
    return prefix + struct.pack("<Q", checksum) + payload


@pytest.mark.parametrize(
    ("k", "m", "index", "data_len", "reason"),
    [
        (0, 1, 0, 4, "impossible geometry"),
        (2, 0, 0, 4, "impossible geometry"),
        (2, 1, 3, 4, "impossible geometry"),
        (2, 1, 0, 0, "does not match payload length"),
        (2, 1, 0, 9, "does not match payload length"),  # ceil(9 / 2) = 5, not 4
    ],
)
def test_a_checksummed_but_inconsistent_header_is_corrupt(k, m, index, data_len, reason):
    raw = _crafted(k, m, index, 0, b"abcd", data_len)
    with pytest.raises(FrameCorrupt, match=reason):
        verify_frame(raw)
    assert verify_frame(_crafted(2, 1, 2, 0, b"abcd", 8)).index == 2  # the honest twin


@pytest.mark.parametrize("stripe", [-1, 2**64])
def test_stripe_numbers_must_fit_the_header(stripe):
    with pytest.raises(ValueError):
        encode_stripe(ErasureParams(2, 1, 64), stripe, b"abc")


def test_any_contiguous_buffer_is_accepted():
    import array

    raw = encode_stripe(ErasureParams(2, 1, 64), 0, bytes(range(64)))[0]
    assert len(raw) % 4 == 0
    words = array.array("I", raw)  # a view of 4-byte items is read as bytes
    assert verify_frame(memoryview(words), index=0).data_len == 64
