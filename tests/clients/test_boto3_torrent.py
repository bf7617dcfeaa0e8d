"""GetObjectTorrent from boto3 against a real kurastore server: the .torrent describes
the object exactly (length, SHA-1 of every piece) and names the object's URL as its
web seed; reading it needs read access to the object, as the object itself does."""

from __future__ import annotations

import hashlib
import os

import pytest
from botocore.exceptions import ClientError
from support.s3client import error_code

pytestmark = pytest.mark.clients


def _bdecode(data: bytes, at: int = 0) -> tuple[object, int]:
    """A bencoded value starting at `at`, and where it ends (BEP 3)."""
    kind = data[at:at + 1]
    if kind == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1:end]), end + 1
    if kind in (b"l", b"d"):
        items, at = [], at + 1
        while data[at:at + 1] != b"e":
            item, at = _bdecode(data, at)
            items.append(item)
        if kind == b"l":
            return items, at + 1
        keys = items[0::2]
        assert keys == sorted(keys), "dict keys must be sorted"
        return dict(zip(keys, items[1::2], strict=True)), at + 1
    colon = data.index(b":", at)
    length = int(data[at:colon])
    return data[colon + 1:colon + 1 + length], colon + 1 + length


def _torrent(s3, bucket: str, key: str) -> dict:
    answer = s3.get_object_torrent(Bucket=bucket, Key=key)
    body = answer["Body"].read()
    value, end = _bdecode(body)
    assert end == len(body) and isinstance(value, dict)
    assert answer["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/x-bittorrent"
    return value


def test_torrent_describes_the_object_piece_by_piece(server, s3, bucket: str) -> None:
    data = os.urandom(1_300_000)  # five 256 KiB pieces, the last one short
    s3.put_object(Bucket=bucket, Key="films/avatar.mpg", Body=data)
    torrent = _torrent(s3, bucket, "films/avatar.mpg")
    info = torrent[b"info"]
    assert info[b"name"] == b"avatar.mpg" and info[b"length"] == len(data)
    piece = info[b"piece length"]
    assert piece == 256 * 1024
    expected = b"".join(hashlib.sha1(data[i:i + piece]).digest()
                        for i in range(0, len(data), piece))
    assert info[b"pieces"] == expected
    assert torrent[b"url-list"] == [f"{server.endpoint}/{bucket}/films/avatar.mpg".encode()]


def test_torrent_of_another_users_object_is_denied(s3, bucket: str, other: dict) -> None:
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret")
    with pytest.raises(ClientError) as err:
        other["client"].get_object_torrent(Bucket=bucket, Key="private")
    assert error_code(err.value) == "AccessDenied"
    with pytest.raises(ClientError) as err:
        s3.get_object_torrent(Bucket=bucket, Key="absent")
    assert error_code(err.value) == "NoSuchKey"
