"""Multipart checksum headers: the type CreateMultipartUpload asks for, and the
whole-object checks of CompleteMultipartUpload."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3 import mpu_checksums
from kurastore.metadata import ObjectVersion


@pytest.mark.parametrize(("algorithm", "header", "expected"), [
    ("", "", ""), ("CRC32", "", "COMPOSITE"), ("SHA1", "", "COMPOSITE"),
    ("CRC64NVME", "", "FULL_OBJECT"), ("CRC32C", "full_object", "FULL_OBJECT"),
    ("SHA256", "COMPOSITE", "COMPOSITE"),
])
def test_requested_type(algorithm: str, header: str, expected: str) -> None:
    headers = CIMultiDict({"x-amz-checksum-type": header} if header else {})
    assert mpu_checksums.requested_type(headers, algorithm) == expected


@pytest.mark.parametrize(("algorithm", "header"), [
    ("SHA1", "FULL_OBJECT"), ("SHA256", "FULL_OBJECT"), ("CRC64NVME", "COMPOSITE"),
    ("CRC32", "PARTIAL"), ("", "COMPOSITE"),
])
def test_refused_types(algorithm: str, header: str) -> None:
    with pytest.raises(s3e.InvalidRequest):
        mpu_checksums.requested_type(CIMultiDict({"x-amz-checksum-type": header}), algorithm)


def version(sums: dict[str, str], kind: str, size: int = 10) -> ObjectVersion:
    return ObjectVersion(bucket="b", key="k", version_id="", object_id="o", size=size, etag="e",
                         last_modified=0.0, owner="u", checksums=sums, checksum_type=kind)


def test_complete_check() -> None:
    full = version({"CRC32": "AAAAAQ=="}, "FULL_OBJECT")
    mpu_checksums.complete_check(CIMultiDict({
        "x-amz-checksum-crc32": "AAAAAQ==", "x-amz-checksum-type": "FULL_OBJECT",
        "x-amz-mp-object-size": "10",
    }))(full)
    with pytest.raises(s3e.BadDigest):
        mpu_checksums.complete_check(CIMultiDict({"x-amz-checksum-crc32": "AAAAAg=="}))(full)
    with pytest.raises(s3e.InvalidRequest):
        mpu_checksums.complete_check(CIMultiDict({"x-amz-mp-object-size": "11"}))(full)
    with pytest.raises(s3e.InvalidRequest):
        mpu_checksums.complete_check(CIMultiDict({"x-amz-checksum-type": "COMPOSITE"}))(full)
    with pytest.raises(s3e.InvalidRequest):
        mpu_checksums.complete_check(CIMultiDict({"x-amz-checksum-sha1": "x"}))(full)
    composite = version({"SHA256": "abc=-3"}, "COMPOSITE")
    for sent in ("abc=-3", "abc="):
        mpu_checksums.complete_check(CIMultiDict({"x-amz-checksum-sha256": sent}))(composite)
