"""Shard names and partitions: only canonical, harmless names pass; the auth header."""

from __future__ import annotations

import pytest

import kurastore.storage as storage
from kurastore.storage import InvalidShardName, ShardId
from kurastore.storage.api import validate_partition
from kurastore.storage.auth import AuthMissing, AuthRejected, check_request, sign_request

OID = "0123456789abcdef0123456789abcdef"


def test_exported_members_exist() -> None:
    for name in storage.__all__:
        assert getattr(storage, name) is not None, name


def test_name_round_trip() -> None:
    sid = ShardId(OID, "part-0001", 255)
    assert sid.name == f"{OID}.part-0001.255"
    assert ShardId.parse(sid.name) == sid


@pytest.mark.parametrize(
    "name",
    [
        "",
        f"{OID}.p.256",  # index out of range
        f"{OID}.p.01",  # two spellings of one index
        f"{OID}.p.-1",
        f"{OID.upper()}.p.0",
        f"{OID[:-1]}.p.0",
        f"{OID}..0",
        f"{OID}.p.q.0",  # a '.' inside the tag
        f"{OID}.p/../x.0",
        f"../../{OID}.p.0",
        f"/etc/{OID}.p.0",
        f"{OID}.p\x00.0",
        f"{OID}.p.0\n",
        f"{OID}.{'a' * 41}.0",
        f"{OID}.P.0",
        f"{OID}.p.٣",  # a non-ASCII digit
        "x" * 10_000,
    ],
)
def test_bad_names_refused(name: str) -> None:
    with pytest.raises(InvalidShardName):
        ShardId.parse(name)


def test_invalid_shard_name_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        ShardId(OID, "p", 300)
    with pytest.raises(ValueError):
        ShardId("../../etc", "p", 0)


@pytest.mark.parametrize("bad", ["", "-1", "007", "1e3", "../1", "2147483648", "٣", " 1", -1, True])
def test_bad_partitions_refused(bad: object) -> None:
    with pytest.raises(InvalidShardName):
        validate_partition(bad)  # type: ignore[arg-type]


def test_partition_bounds() -> None:
    assert validate_partition("0") == 0
    assert validate_partition(2**31 - 1) == 2**31 - 1


SECRET = b"k" * 32


def test_auth_accepts_own_signature() -> None:
    header = sign_request(SECRET, "put", "/v1/shards/1/x?a=b", now=1_000_000)
    check_request(SECRET, header, "PUT", "/v1/shards/1/x?a=b", now=1_000_100)


@pytest.mark.parametrize(
    ("method", "target", "secret", "now"),
    [
        ("GET", "/v1/shards/1/x?a=b", SECRET, 1_000_000),  # other method
        ("PUT", "/v1/shards/1/x", SECRET, 1_000_000),  # other query
        ("PUT", "/v1/shards/2/x?a=b", SECRET, 1_000_000),  # other path
        ("PUT", "/v1/shards/1/x?a=b", b"j" * 32, 1_000_000),  # other secret
        ("PUT", "/v1/shards/1/x?a=b", SECRET, 1_000_301),  # stale
        ("PUT", "/v1/shards/1/x?a=b", SECRET, 999_699),  # from the future
    ],
)
def test_auth_rejects(method: str, target: str, secret: bytes, now: float) -> None:
    header = sign_request(SECRET, "PUT", "/v1/shards/1/x?a=b", now=1_000_000)
    with pytest.raises(AuthRejected):
        check_request(secret, header, method, target, now=now)


@pytest.mark.parametrize(
    "header", [None, "", "garbage", "123.", "abc." + "0" * 64, "1." + "g" * 64]
)
def test_auth_missing_or_malformed(header: str | None) -> None:
    with pytest.raises(AuthMissing):
        check_request(SECRET, header, "GET", "/v1/usage", now=1)
