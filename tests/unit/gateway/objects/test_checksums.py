"""The S3 checksums: known values, streaming equals one-shot, CRC combination
equals the CRC of the concatenation, composite multipart values."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib

import pytest
from awscrt import checksums as crt
from hypothesis import given, settings
from hypothesis import strategies as st

from kurastore.gateway.objects import checksums

# Check values of the three CRCs over b"123456789" (the catalogue's "check").
CHECK = {"CRC32": 0xCBF43926, "CRC32C": 0xE3069283, "CRC64NVME": 0xAE8B14860A799888}


@pytest.mark.parametrize("algorithm", checksums.CRC_ALGORITHMS)
def test_crc_check_values(algorithm: str) -> None:
    raw = base64.b64decode(checksums.checksum_b64(algorithm, b"123456789"))
    assert int.from_bytes(raw, "big") == CHECK[algorithm]


def test_known_values_as_s3_sends_them() -> None:
    assert checksums.checksum_b64("CRC32", b"") == "AAAAAA=="
    assert (
        checksums.checksum_b64("crc32", b"hello")
        == base64.b64encode(zlib.crc32(b"hello").to_bytes(4, "big")).decode()
    )
    assert (
        checksums.checksum_b64("SHA256", b"abc")
        == base64.b64encode(hashlib.sha256(b"abc").digest()).decode()
    )
    assert checksums.checksum_b64("SHA1", b"abc") == "qZk+NkcGgWq6PiVxeFDCbJzQ2J0="


@pytest.mark.parametrize("algorithm", checksums.ALGORITHMS)
def test_streaming_equals_one_shot(algorithm: str) -> None:
    data = os.urandom(300_001)
    hasher = checksums.new_hasher(algorithm)
    view = memoryview(data)
    for start in range(0, len(data), 65_536):
        hasher.update(view[start : start + 65_536])
    assert hasher.b64() == checksums.checksum_b64(algorithm, data)
    assert len(hasher.digest()) == checksums.digest_size(algorithm)
    assert checksums.is_valid_b64(algorithm, hasher.b64())


def test_header_names_round_trip() -> None:
    for algorithm in checksums.ALGORITHMS:
        name = checksums.header_name(algorithm)
        assert name == "x-amz-checksum-" + algorithm.lower()
        assert checksums.algorithm_from_header(name.upper()) == algorithm
    assert checksums.algorithm_from_header("x-amz-checksum-md4") is None
    assert checksums.algorithm_from_header("x-amz-checksum-type") is None
    assert checksums.algorithm_from_header("content-md5") is None
    with pytest.raises(ValueError):
        checksums.new_hasher("BLAKE3")


# The 2026 algorithms over b"": the reference digests, big-endian, as the SDKs encode them
# (XXH64 and XXH3 with seed 0).
EMPTY = {
    "MD5": "d41d8cd98f00b204e9800998ecf8427e",
    "SHA512": hashlib.sha512(b"").hexdigest(),
    "XXHASH64": "ef46db3751d8e999",
    "XXHASH3": "2d06800538d394c2",
    "XXHASH128": "99aa06d3014798d86001c324468d497f",
}


@pytest.mark.parametrize("algorithm", sorted(EMPTY))
def test_the_2026_algorithms_give_the_reference_digests(algorithm: str) -> None:
    assert base64.b64decode(checksums.checksum_b64(algorithm, b"")).hex() == EMPTY[algorithm]
    data = os.urandom(1000)
    if algorithm == "MD5":
        assert checksums.checksum_b64("md5", data) == base64.b64encode(
            hashlib.md5(data).digest()).decode()


def test_is_valid_b64_checks_length_and_alphabet() -> None:
    assert checksums.is_valid_b64("CRC32", "AAAAAA==")
    assert not checksums.is_valid_b64("CRC32", "AAAAAAAAAAA=")  # 8 bytes
    assert not checksums.is_valid_b64("CRC64NVME", "AAAAAA==")
    assert not checksums.is_valid_b64("CRC32", "AAA*AA==")
    assert not checksums.is_valid_b64("CRC32", "AAAAAA=")
    assert not checksums.is_valid_b64("SHA256", "é" * 44)


def test_composite_checksum_is_hash_of_raw_part_checksums() -> None:
    parts = [os.urandom(1000), os.urandom(17), b""]
    for algorithm in checksums.ALGORITHMS:
        part_b64 = [checksums.checksum_b64(algorithm, p) for p in parts]
        raw = b"".join(base64.b64decode(v) for v in part_b64)
        expected = checksums.checksum_b64(algorithm, raw) + "-3"
        assert checksums.composite_checksum(algorithm, part_b64) == expected


@settings(max_examples=60, deadline=None)
@given(
    algorithm=st.sampled_from(checksums.CRC_ALGORITHMS),
    a=st.binary(max_size=3000),
    b=st.binary(max_size=3000),
)
def test_combine_equals_crc_of_concatenation(algorithm: str, a: bytes, b: bytes) -> None:
    crc_a = base64.b64decode(checksums.checksum_b64(algorithm, a))
    crc_b = base64.b64decode(checksums.checksum_b64(algorithm, b))
    whole = base64.b64decode(checksums.checksum_b64(algorithm, a + b))
    assert checksums.combine_crc(algorithm, crc_a, crc_b, len(b)) == whole


@pytest.mark.parametrize("algorithm", checksums.CRC_ALGORITHMS)
def test_combine_folds_many_large_parts(algorithm: str) -> None:
    parts = [os.urandom(n) for n in (5 << 20, 1, 3 << 20, 0, 777)]
    total = base64.b64decode(checksums.checksum_b64(algorithm, parts[0]))
    for part in parts[1:]:
        crc = base64.b64decode(checksums.checksum_b64(algorithm, part))
        total = checksums.combine_crc(algorithm, total, crc, len(part))
    assert total == base64.b64decode(checksums.checksum_b64(algorithm, b"".join(parts)))


def test_combine_matches_awscrt_for_lengths_too_large_to_hash() -> None:
    # Independent implementation (aws-c-checksums) as the oracle for 5 GiB parts.
    crc_a, crc_b = os.urandom(8), os.urandom(8)
    for algorithm, combine, size in (
        ("CRC32", crt.combine_crc32, 4),
        ("CRC32C", crt.combine_crc32c, 4),
        ("CRC64NVME", crt.combine_crc64nvme, 8),
    ):
        a, b = crc_a[:size], crc_b[:size]
        for length in (1, 5 << 30, (5 << 40) + 3):
            expected = combine(int.from_bytes(a, "big"), int.from_bytes(b, "big"), length)
            got = checksums.combine_crc(algorithm, a, b, length)
            assert int.from_bytes(got, "big") == expected


def test_combine_refuses_non_crc() -> None:
    with pytest.raises(ValueError):
        checksums.combine_crc("SHA256", b"", b"", 0)
