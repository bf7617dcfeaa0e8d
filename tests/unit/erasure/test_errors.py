"""The error tree: typed, informative, and intact across a process pool (pickling)."""

import pickle

import pytest

from kurastore.erasure import (
    ErasureError,
    FrameCorrupt,
    InvalidParams,
    NotEnoughBlocks,
    StripeMismatch,
    UnknownFrameVersion,
)


def test_the_tree():
    for cls in (InvalidParams, FrameCorrupt, NotEnoughBlocks, StripeMismatch):
        assert issubclass(cls, ErasureError)
    assert issubclass(UnknownFrameVersion, FrameCorrupt)
    assert issubclass(InvalidParams, ValueError)


@pytest.mark.parametrize(
    "exc",
    [
        FrameCorrupt("checksum mismatch", index=3, stripe=12),
        FrameCorrupt("bad magic"),
        UnknownFrameVersion(7, index=0, stripe=1),
        NotEnoughBlocks(stripe=4, have=2, need=4),
        StripeMismatch("frames of stripes 0 and 1 given together"),
        InvalidParams("k=0 is out of range 1..32"),
    ],
)
def test_errors_survive_pickling_with_their_attributes(exc):
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert vars(back) == vars(exc)


def test_messages_name_the_block():
    assert str(FrameCorrupt("checksum mismatch", index=3, stripe=12)) == (
        "corrupt frame (shard index 3, stripe 12): checksum mismatch"
    )
    assert "shard index ?, stripe ?" in str(FrameCorrupt("bad magic"))
    exc = UnknownFrameVersion(7, index=0, stripe=1)
    assert (exc.version, exc.index, exc.stripe) == (7, 0, 1)
    assert str(NotEnoughBlocks(stripe=None, have=0, need=4)).startswith("stripe ?: 0 valid")
