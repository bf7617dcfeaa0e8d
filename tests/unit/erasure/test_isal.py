"""ISA-L computes zfec's code: every parity block and every rebuilt data block is
byte-identical to zfec's, so shards written by either read back with either."""

from __future__ import annotations

import itertools
import os
import random

import pytest
import zfec

from kurastore.erasure import ErasureParams, decode_stripe, encode_stripe
from kurastore.erasure import _codec as codec_module
from kurastore.erasure._frame import verify_frame
from kurastore.erasure._isal import isal_available, isal_code

GEOMETRIES = [(2, 1), (2, 2), (3, 2), (4, 2), (6, 3), (8, 3), (10, 4), (12, 4)]


def test_libisal_is_installed():
    # scripts/system-deps.sh installs libisal2; without it the store still works (zfec)
    # but pays about 9x more CPU for parity, so the test suite insists on it.
    assert isal_available()


@pytest.mark.parametrize(("k", "m"), GEOMETRIES)
def test_parity_identical_to_zfec(k, m):
    rng = random.Random(k * 100 + m)
    code = isal_code(k, k + m)
    for size in (1, 31, 64, 4096, 65536 + 64, 262144):
        blocks = [rng.randbytes(size) for _ in range(k)]
        expected = zfec.Encoder(k, k + m).encode(blocks, list(range(k, k + m)))
        assert [bytes(b) for b in code.encode_parity(blocks)] == expected


@pytest.mark.parametrize(("k", "m"), [(2, 1), (4, 2), (6, 3), (8, 3)])
def test_every_erasure_pattern_decodes_like_zfec(k, m):
    n = k + m
    blocks = [os.urandom(1024) for _ in range(k)]
    full = blocks + zfec.Encoder(k, n).encode(blocks, list(range(k, n)))
    code = isal_code(k, n)
    for chosen in itertools.combinations(range(n), k):
        rebuilt = code.decode(list(chosen), [full[i] for i in chosen])
        assert [bytes(b) for b in rebuilt] == blocks, chosen


def test_memoryview_slices_are_read_in_place():
    # Stripes reach the codec as read-only views into a larger body.
    body = os.urandom(4 * 8192 + 100)
    view = memoryview(body).toreadonly()
    blocks = [view[50 + i * 8192 : 50 + (i + 1) * 8192] for i in range(4)]
    expected = zfec.Encoder(4, 6).encode([bytes(b) for b in blocks], [4, 5])
    assert [bytes(b) for b in isal_code(4, 6).encode_parity(blocks)] == expected


def test_bad_block_lists_are_refused():
    code = isal_code(4, 6)
    with pytest.raises(ValueError):
        code.encode_parity([b"ab", b"cd", b"ef"])
    with pytest.raises(ValueError):
        code.encode_parity([b"ab", b"cd", b"ef", b"g"])
    with pytest.raises(ValueError):
        code.decode([0, 0, 1, 2], [b"ab"] * 4)


def test_frames_written_by_either_codec_read_back_by_the_other(monkeypatch):
    params = ErasureParams(4, 2, 4096)
    data = os.urandom(3 * 4096 + 17)
    fast = encode_stripe(params, 0, data)
    monkeypatch.setattr(codec_module, "isal_code", lambda k, n: None)
    slow = encode_stripe(params, 0, data)
    assert fast == slow
    frames = [verify_frame(f) for f in fast]
    assert decode_stripe(params, frames[2:]) == data  # zfec decodes ISA-L's frames
    monkeypatch.undo()
    assert decode_stripe(params, [verify_frame(f) for f in slow][2:]) == data
