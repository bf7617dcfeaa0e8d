"""Request header parsing and response header building (pure functions)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from multidict import CIMultiDict

from kurastore.gateway.objects.api import BodyDigest, ByteRange
from kurastore.gateway.objects.checksums import checksum_b64
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3 import headers as hdr
from kurastore.metadata import ObjectVersion


def H(**kw: str) -> CIMultiDict[str]:
    return CIMultiDict({k.replace("_", "-"): v for k, v in kw.items()})


def test_user_metadata_lowercased_without_prefix():
    meta = hdr.user_metadata(CIMultiDict({"X-Amz-Meta-Color": "blue", "x-amz-meta-a-b": "1",
                                          "Content-Type": "x"}))
    assert meta == {"color": "blue", "a-b": "1"}


def test_user_metadata_limit_is_2_kib_of_names_and_values():
    at_limit = {"x-amz-meta-k": "v" * (2048 - 1)}
    assert len(hdr.user_metadata(CIMultiDict(at_limit))["k"]) == 2047
    with pytest.raises(s3e.MetadataTooLarge):
        hdr.user_metadata(CIMultiDict({"x-amz-meta-k": "v" * 2048}))


def test_stored_headers_drop_aws_chunked():
    kept = hdr.stored_headers(H(Content_Encoding="aws-chunked,gzip", Cache_Control="no-cache"))
    assert kept == {"content-encoding": "gzip", "cache-control": "no-cache"}
    assert hdr.stored_headers(H(Content_Encoding="aws-chunked")) == {}
    # The remaining codings come back as S3 echoes them: ", "-separated.
    kept = hdr.stored_headers(H(Content_Encoding="deflate,  gzip, aws-chunked"))
    assert kept == {"content-encoding": "deflate, gzip"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-9", ByteRange(0, 9)),
        ("bytes=5-", ByteRange(5, None)),
        ("bytes=-3", ByteRange(None, 3)),
        ("bytes=9-0", None),  # end before start: ignored
        ("bytes=0-1,4-5", None),  # multi-range: ignored
        ("items=0-1", None),
        ("bytes=-", None),
        (None, None),
    ],
)
def test_parse_range(value, expected):
    assert hdr.parse_range(value) == expected


@pytest.mark.parametrize("value", ["0", "10001", "-1", "x", ""])
def test_part_number_out_of_range_is_invalid_argument(value):
    with pytest.raises(s3e.InvalidArgument):
        hdr.part_number(value)


def test_part_number_bounds():
    assert hdr.part_number("1") == 1 and hdr.part_number("10000") == 10000
    assert hdr.part_number(None) is None


def test_read_conditions_parse_dates_and_ignore_bad_ones():
    cond = hdr.read_conditions(H(If_Match='"abc"', If_Unmodified_Since="garbage",
                                 If_Modified_Since="Mon, 12 Oct 2009 17:50:00 GMT"))
    assert cond.if_match == '"abc"'
    assert cond.if_modified_since == 1255369800.0
    assert cond.if_unmodified_since is None
    copy = hdr.read_conditions(H(x_amz_copy_source_if_none_match="*"), "x-amz-copy-source-")
    assert copy.if_none_match == "*"


def test_write_conditions():
    assert hdr.write_conditions(H(If_None_Match=" * ")).if_none_match == "*"
    assert hdr.write_conditions(H(If_None_Match='"e1"')).if_none_match == "e1"
    assert hdr.write_conditions(H(If_Match='"e1"')).if_match == "e1"
    assert hdr.write_conditions(H(If_Match="*")).if_match == "*"
    none = hdr.write_conditions(H())
    assert (none.if_match, none.if_none_match) == (None, None)


def test_copy_source_decodes_once_and_reads_version():
    src = hdr.copy_source(H(x_amz_copy_source="/b1/a%2Bb%20c%3Fd?versionId=v%2B1"))
    assert (src.bucket, src.key, src.version_id) == ("b1", "a+b c?d", "v+1")
    src = hdr.copy_source(H(x_amz_copy_source="b1/dir/k", x_amz_copy_source_range="bytes=0-9"),
                          with_range=True)
    assert (src.key, src.byte_range) == ("dir/k", ByteRange(0, 9))
    with pytest.raises(s3e.InvalidArgument):
        hdr.copy_source(H(x_amz_copy_source="onlybucket"))
    with pytest.raises(s3e.InvalidArgument):
        hdr.copy_source(H(x_amz_copy_source="b/k", x_amz_copy_source_range="bytes=5-"),
                        with_range=True)


def test_tagging_header():
    assert hdr.tagging_header(H(x_amz_tagging="a=1&b=two%20words&c=")) == {
        "a": "1", "b": "two words", "c": ""}
    with pytest.raises(s3e.InvalidTag):
        hdr.tagging_header(H(x_amz_tagging="&".join(f"k{i}=v" for i in range(11))))
    with pytest.raises(s3e.InvalidTag):
        hdr.tagging_header(H(x_amz_tagging="a=1&a=2"))


def _digest(data: bytes, algo: str | None = None) -> BodyDigest:
    sums = {algo: checksum_b64(algo, data)} if algo else {}
    return BodyDigest(size=len(data), md5=hashlib.md5(data).digest(), checksums=sums)


def test_content_md5_checked_and_validated():
    data = b"hello"
    good = base64.b64encode(hashlib.md5(data).digest()).decode()
    hdr.body_check(hdr.integrity_spec(H(Content_MD5=good)), dict)(_digest(data))
    with pytest.raises(s3e.BadDigest):
        hdr.body_check(hdr.integrity_spec(H(Content_MD5=good)), dict)(_digest(b"other"))
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(s3e.InvalidDigest):
            hdr.integrity_spec(H(Content_MD5=bad))


def test_checksum_header_mismatch_is_bad_digest_naming_the_algorithm():
    data = b"payload"
    spec = hdr.integrity_spec(H(x_amz_checksum_crc32=checksum_b64("CRC32", b"different")))
    assert spec.algorithms == ("CRC32",)
    with pytest.raises(s3e.BadDigest) as info:
        hdr.body_check(spec, dict)(_digest(data, "CRC32"))
    assert info.value.text == "The CRC32 you specified did not match the calculated checksum."
    ok = hdr.integrity_spec(H(x_amz_checksum_sha256=checksum_b64("SHA256", data)))
    hdr.body_check(ok, dict)(_digest(data, "SHA256"))


def test_checksum_in_trailer_is_read_after_the_body():
    data = b"streamed"
    spec = hdr.integrity_spec(H(x_amz_trailer="x-amz-checksum-crc32c",
                                x_amz_sdk_checksum_algorithm="CRC32C"))
    assert spec.algorithm == "CRC32C" and spec.value is None
    trailers: dict[str, str] = {}
    check = hdr.body_check(spec, lambda: trailers)
    trailers["x-amz-checksum-crc32c"] = checksum_b64("CRC32C", data)
    check(_digest(data, "CRC32C"))
    trailers["x-amz-checksum-crc32c"] = checksum_b64("CRC32C", b"nope")
    with pytest.raises(s3e.BadDigest):
        check(_digest(data, "CRC32C"))


def test_malformed_or_multiple_checksum_headers_are_invalid_request():
    with pytest.raises(s3e.InvalidRequest):
        hdr.integrity_spec(H(x_amz_checksum_crc32="AAAA"))  # 3 bytes, not 4
    with pytest.raises(s3e.InvalidRequest):
        hdr.integrity_spec(H(x_amz_checksum_crc32="AAAAAA==", x_amz_checksum_sha1="x"))
    # x-amz-checksum-mode & co. are not checksums
    assert hdr.integrity_spec(H(x_amz_checksum_mode="ENABLED")).algorithm is None


def test_key_encoder():
    enc = hdr.key_encoder({"encoding-type": "url"})
    assert enc("a b+c/d%\u2603") == "a%20b%2Bc/d%25%E2%98%83"
    assert hdr.key_encoder({})("a b") == "a b"
    with pytest.raises(s3e.InvalidArgument):
        hdr.key_encoder({"encoding-type": "base64"})


def test_int_param():
    assert hdr.int_param({}, "max-keys", 1000, 1000) == 1000
    assert hdr.int_param({"max-keys": "5000"}, "max-keys", 1000, 1000) == 1000
    assert hdr.int_param({"max-keys": "0"}, "max-keys", 1000, 1000) == 0
    for bad in ("-1", "ten"):
        with pytest.raises(s3e.InvalidArgument):
            hdr.int_param({"max-keys": bad}, "max-keys", 1000, 1000)


def test_object_headers():
    version = ObjectVersion(
        bucket="b", key="k", version_id="null", object_id="0" * 32, size=3, etag="abc",
        last_modified=1255369800.5, content_type="text/plain",
        headers={"cache-control": "max-age=1"}, user_meta={"color": "blue"},
        checksums={"CRC32": "AAAAAA=="}, checksum_type="FULL_OBJECT", tags={"a": "1"},
    )
    out = hdr.object_headers(version, versioned=False, with_checksums=False)
    assert out["ETag"] == '"abc"'
    assert out["Last-Modified"] == "Mon, 12 Oct 2009 17:50:00 GMT"
    assert out["x-amz-meta-color"] == "blue" and out["Cache-Control"] == "max-age=1"
    assert out["x-amz-tagging-count"] == "1"
    assert "x-amz-version-id" not in out and "x-amz-checksum-crc32" not in out
    out = hdr.object_headers(version, versioned=True, with_checksums=True)
    assert out["x-amz-version-id"] == "null"
    assert out["x-amz-checksum-crc32"] == "AAAAAA=="
    assert out["x-amz-checksum-type"] == "FULL_OBJECT"
