"""Bucket default encryption documents (PutBucketEncryption / GetBucketEncryption):
what is accepted and stored, what is refused with which S3 error, what a Get renders,
and what the write path reads back from the bucket's settings."""

from __future__ import annotations

import defusedxml.ElementTree as SafeET
import pytest

from kurastore.gateway.s3 import bucket_encryption as be
from kurastore.gateway.s3 import errors as s3e

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _config(*rules: str, ns: bool = True) -> bytes:
    attrs = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"' if ns else ""
    return (f"<ServerSideEncryptionConfiguration{attrs}>"
            + "".join(f"<Rule>{r}</Rule>" for r in rules)
            + "</ServerSideEncryptionConfiguration>").encode()


def _default(algorithm: str, key_id: str | None = None) -> str:
    key = f"<KMSMasterKeyID>{key_id}</KMSMasterKeyID>" if key_id is not None else ""
    return (f"<ApplyServerSideEncryptionByDefault><SSEAlgorithm>{algorithm}</SSEAlgorithm>"
            f"{key}</ApplyServerSideEncryptionByDefault>")


def test_aes256_is_stored_in_the_shape_the_write_path_reads() -> None:
    stored = be.parse_config(_config(_default("AES256")))
    assert stored == {"algorithm": "AES256", "kms_key_id": "", "bucket_key_enabled": False}
    assert be.default_encryption({"encryption": stored}) == stored


@pytest.mark.parametrize("algorithm", ["aws:kms", "aws:kms:dsse"])
def test_kms_keeps_key_id_and_bucket_key(algorithm: str) -> None:
    body = _config(_default(algorithm, " arn:aws:kms:us-east-1:1:key/k1 ")
                   + "<BucketKeyEnabled>true</BucketKeyEnabled>")
    assert be.parse_config(body) == {"algorithm": algorithm,
                                     "kms_key_id": "arn:aws:kms:us-east-1:1:key/k1",
                                     "bucket_key_enabled": True}
    no_key = be.parse_config(_config(_default(algorithm), ns=False))
    assert no_key == {"algorithm": algorithm, "kms_key_id": "", "bucket_key_enabled": False}


def test_render_is_what_get_bucket_encryption_answers() -> None:
    doc = SafeET.fromstring(be.render_config(
        {"algorithm": "aws:kms", "kms_key_id": "k&1", "bucket_key_enabled": True}))
    assert doc.tag == NS + "ServerSideEncryptionConfiguration"
    rules = doc.findall(NS + "Rule")
    assert len(rules) == 1
    by_default = rules[0].find(NS + "ApplyServerSideEncryptionByDefault")
    assert by_default.findtext(NS + "SSEAlgorithm") == "aws:kms"
    assert by_default.findtext(NS + "KMSMasterKeyID") == "k&1"
    assert rules[0].findtext(NS + "BucketKeyEnabled") == "true"

    plain = SafeET.fromstring(be.render_config(
        {"algorithm": "AES256", "kms_key_id": "", "bucket_key_enabled": False}))
    rule = plain.find(NS + "Rule")
    assert rule.find(f"{NS}ApplyServerSideEncryptionByDefault/{NS}KMSMasterKeyID") is None
    assert rule.findtext(NS + "BucketKeyEnabled") == "false"  # AWS always says it


@pytest.mark.parametrize("stored", [
    {"algorithm": "AES256", "kms_key_id": "", "bucket_key_enabled": False},
    {"algorithm": "aws:kms", "kms_key_id": "alias/mine", "bucket_key_enabled": True},
    {"algorithm": "aws:kms:dsse", "kms_key_id": "", "bucket_key_enabled": False},
])
def test_render_then_parse_round_trips(stored: dict) -> None:
    assert be.parse_config(be.render_config(stored)) == stored


@pytest.mark.parametrize("body", [
    b"",
    b"<ServerSideEncryptionConfiguration>",
    b"<CORSConfiguration/>",
    _config(),
    _config(_default("AES256"), _default("AES256")),
    _config("<BucketKeyEnabled>true</BucketKeyEnabled>"),
    _config(_default("AES128")),
    _config(_default("aws:KMS")),
    _config("<ApplyServerSideEncryptionByDefault/>"),
    _config(_default("aws:kms", "")),
    _config(_default("AES256") + "<BucketKeyEnabled>yes</BucketKeyEnabled>"),
    _config(_default("AES256") + "<BlockedEncryptionTypes><EncryptionType>X"
            "</EncryptionType></BlockedEncryptionTypes>"),
])
def test_documents_that_do_not_validate_are_malformed(body: bytes) -> None:
    with pytest.raises(s3e.MalformedXML):
        be.parse_config(body)


def test_kms_key_with_aes256_is_invalid_argument_with_aws_message() -> None:
    with pytest.raises(s3e.InvalidArgument) as err:
        be.parse_config(_config(_default("AES256", "k1")))
    assert err.value.text == ("a KMSMasterKeyID is not applicable if the default sse "
                              "algorithm is not aws:kms or aws:kms:dsse")
    assert err.value.fields == {"ArgumentName": "ApplyServerSideEncryptionByDefault"}
    assert err.value.status == 400


def test_blocking_sse_c_is_refused_not_ignored() -> None:
    blocked = "<BlockedEncryptionTypes><EncryptionType>{}</EncryptionType></BlockedEncryptionTypes>"
    with pytest.raises(s3e.NotImplemented_):
        be.parse_config(_config(_default("AES256") + blocked.format("SSE-C")))
    stored = be.parse_config(_config(_default("AES256") + blocked.format("NONE")))
    assert stored["algorithm"] == "AES256"


@pytest.mark.parametrize("settings", [
    {},
    {"cors": []},
    {"encryption": None},
    {"encryption": "AES256"},
    {"encryption": {"algorithm": "AES128", "kms_key_id": "", "bucket_key_enabled": False}},
])
def test_default_encryption_is_none_without_a_configuration(settings: dict) -> None:
    assert be.default_encryption(settings) is None


def test_default_encryption_fills_the_shape() -> None:
    assert be.default_encryption({"encryption": {"algorithm": "aws:kms"}}) == {
        "algorithm": "aws:kms", "kms_key_id": "", "bucket_key_enabled": False}
