"""The .torrent building blocks: bencoding, piece hashing over chunks of any size,
piece length scaling and the file's name."""

from __future__ import annotations

import hashlib
import os

import pytest

from kurastore.gateway.s3.torrent import (
    MAX_PIECES,
    MIN_PIECE,
    PieceHasher,
    bencode,
    piece_length,
    torrent_name,
)


def test_bencode_matches_the_bittorrent_spec() -> None:
    assert bencode(42) == b"i42e" and bencode(-3) == b"i-3e"
    assert bencode(b"spam") == b"4:spam" and bencode("é") == b"2:\xc3\xa9"
    assert bencode([b"a", 1]) == b"l1:ai1ee"
    assert bencode({b"b": 1, b"a": b"x"}) == b"d1:a1:x1:bi1ee"  # keys sorted
    with pytest.raises(TypeError):
        bencode(True)


@pytest.mark.parametrize("chunk", [1, 4096, 100_000, 262_144, 262_145, 3 << 20])
def test_pieces_do_not_depend_on_how_the_stream_is_cut(chunk: int) -> None:
    data = os.urandom(1_000_003)
    hasher = PieceHasher(MIN_PIECE)
    for at in range(0, len(data), chunk):
        hasher.feed(data[at:at + chunk])
    expected = b"".join(hashlib.sha1(data[at:at + MIN_PIECE]).digest()
                        for at in range(0, len(data), MIN_PIECE))
    assert hasher.pieces() == expected


def test_empty_stream_has_no_pieces() -> None:
    assert PieceHasher(MIN_PIECE).pieces() == b""


def test_piece_length_grows_to_keep_the_piece_count_bounded() -> None:
    assert piece_length(0) == piece_length(MIN_PIECE * MAX_PIECES) == MIN_PIECE
    big = 4_900_000_000
    length = piece_length(big)
    assert length & (length - 1) == 0 and -(-big // length) <= MAX_PIECES
    assert -(-big // (length // 2)) > MAX_PIECES


def test_torrent_name_is_the_keys_last_segment() -> None:
    assert torrent_name("b", "films/2024/a.mpg") == "a.mpg"
    assert torrent_name("b", "dir/") == "dir"
    assert torrent_name("b", "/") == "b"
