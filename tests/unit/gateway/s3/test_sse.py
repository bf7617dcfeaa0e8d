"""S3 server-side encryption headers: requests parsed into specs, answers rendered."""

from __future__ import annotations

import base64
import hashlib

import pytest
from multidict import CIMultiDict

from kurastore.gateway.objects.api import SSE_C, SSE_KMS, SSE_S3
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3 import sse

KEY = bytes(range(32))
KEY_B64 = base64.b64encode(KEY).decode()
KEY_MD5 = base64.b64encode(hashlib.md5(KEY).digest()).decode()
SSE_C_HEADERS = {sse.CUSTOMER_ALGORITHM: "AES256", sse.CUSTOMER_KEY: KEY_B64,
                 sse.CUSTOMER_KEY_MD5: KEY_MD5}


def H(**values: str) -> CIMultiDict[str]:
    return CIMultiDict(values)


def test_no_headers_and_no_bucket_default_is_clear():
    assert sse.write_request(CIMultiDict()) is None


def test_sse_s3_and_kms_requests():
    assert sse.write_request(CIMultiDict({sse.SSE: "AES256"})).mode == SSE_S3
    spec = sse.write_request(CIMultiDict({sse.SSE: "aws:kms", sse.KMS_KEY_ID: "k1",
                                          sse.BUCKET_KEY: "true"}))
    assert (spec.mode, spec.kms_key_id, spec.bucket_key) == (SSE_KMS, "k1", True)
    assert sse.write_request(CIMultiDict({sse.SSE: "aws:kms"})).kms_key_id == sse.DEFAULT_KMS_KEY


def test_sse_c_request_carries_the_checked_key():
    spec = sse.write_request(CIMultiDict(SSE_C_HEADERS))
    assert spec.mode == SSE_C and spec.customer_key == KEY


def test_a_copy_source_key_has_its_own_header_names():
    headers = CIMultiDict({"x-amz-copy-source-server-side-encryption-customer-algorithm": "AES256",
                           "x-amz-copy-source-server-side-encryption-customer-key": KEY_B64,
                           "x-amz-copy-source-server-side-encryption-customer-key-md5": KEY_MD5})
    assert sse.customer_key(headers, sse.COPY_SOURCE) == KEY
    assert sse.customer_key(headers) is None


@pytest.mark.parametrize("headers, error", [
    ({sse.SSE: "aes:kms"}, s3e.InvalidArgument),
    ({sse.KMS_KEY_ID: "k1"}, s3e.InvalidArgument),
    ({sse.SSE: "AES256", sse.KMS_KEY_ID: "k1"}, s3e.InvalidArgument),
    ({**SSE_C_HEADERS, sse.SSE: "AES256"}, s3e.InvalidArgument),
    ({**SSE_C_HEADERS, sse.CUSTOMER_KEY_MD5: "AAAAAAAAAAAAAAAAAAAAAA=="}, s3e.InvalidArgument),
    ({**SSE_C_HEADERS, sse.CUSTOMER_ALGORITHM: "AES128"}, s3e.InvalidEncryptionAlgorithmError),
    ({sse.CUSTOMER_KEY: KEY_B64, sse.CUSTOMER_KEY_MD5: KEY_MD5}, s3e.InvalidArgument),
    ({sse.CUSTOMER_ALGORITHM: "AES256"}, s3e.InvalidArgument),
    ({**SSE_C_HEADERS, sse.CUSTOMER_KEY: base64.b64encode(b"short").decode()},
     s3e.InvalidArgument),
    ({sse.SSE: "aws:kms", sse.KMS_CONTEXT: "not base64 json"}, s3e.InvalidArgument),
], ids=["unknown-algorithm", "kms-key-without-kms", "kms-key-with-aes", "sse-c-and-sse",
        "md5-mismatch", "sse-c-aes128", "key-without-algorithm", "algorithm-without-key",
        "short-key", "bad-context"])
def test_bad_requests_are_400s(headers, error):
    with pytest.raises(error) as caught:
        sse.write_request(CIMultiDict(headers))
    assert caught.value.status == 400


def test_a_bucket_default_becomes_a_spec():
    assert sse.bucket_default({}) is None
    assert sse.bucket_default({"encryption": {"algorithm": "AES256"}}).mode == SSE_S3
    spec = sse.bucket_default({"encryption": {"algorithm": "aws:kms:dsse", "kms_key_id": "k9",
                                              "bucket_key_enabled": True}})
    assert (spec.mode, spec.kms_key_id, spec.bucket_key, spec.dsse) == (SSE_KMS, "k9", True, True)
    spec = sse.bucket_default({"encryption": {"algorithm": "aws:kms", "kms_key_id": ""}})
    assert spec.kms_key_id == sse.DEFAULT_KMS_KEY


def test_reads_take_only_a_customer_key():
    assert sse.read_key(CIMultiDict(SSE_C_HEADERS)) == KEY
    with pytest.raises(s3e.InvalidArgument):
        sse.read_key(CIMultiDict({sse.SSE: "AES256"}))


def test_answers_name_the_mode():
    assert sse.response_headers({}) == {}
    assert sse.response_headers({"mode": SSE_S3}) == {sse.SSE: "AES256"}
    assert sse.response_headers({"mode": SSE_KMS, "kms_key_id": "k1"}) == {
        sse.SSE: "aws:kms", sse.KMS_KEY_ID: "k1"}
    assert sse.response_headers({"mode": SSE_C, "key_md5": KEY_MD5}) == {
        sse.CUSTOMER_ALGORITHM: "AES256", sse.CUSTOMER_KEY_MD5: KEY_MD5}
