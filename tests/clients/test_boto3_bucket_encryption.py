"""boto3 against a real kurastore server: a bucket's default encryption configuration
(Put/Get/DeleteBucketEncryption), its errors, and who may set it. The second user is
made with the admin CLI, as an operator would."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from botocore.exceptions import ClientError
from support.s3client import error_code, signed_put

pytestmark = pytest.mark.clients

NOT_FOUND = "ServerSideEncryptionConfigurationNotFoundError"


def _config(algorithm: str, key_id: str | None = None, bucket_key: bool | None = None) -> dict:
    by_default = {"SSEAlgorithm": algorithm}
    if key_id is not None:
        by_default["KMSMasterKeyID"] = key_id
    rule: dict = {"ApplyServerSideEncryptionByDefault": by_default}
    if bucket_key is not None:
        rule["BucketKeyEnabled"] = bucket_key
    return {"Rules": [rule]}


def _error(call, *args, **kwargs) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as err:
        call(*args, **kwargs)
    resp = err.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], error_code(err.value), resp["Error"][
        "Message"]


def test_aes256_put_get_delete_round_trip(s3, bucket: str) -> None:
    status, code, message = _error(s3.get_bucket_encryption, Bucket=bucket)
    assert (status, code) == (404, NOT_FOUND)
    assert message == "The server side encryption configuration was not found"

    put = s3.put_bucket_encryption(Bucket=bucket,
                                   ServerSideEncryptionConfiguration=_config("AES256"))
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    got = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert got == {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                              "BucketKeyEnabled": False}]}

    deleted = s3.delete_bucket_encryption(Bucket=bucket)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert _error(s3.get_bucket_encryption, Bucket=bucket)[:2] == (404, NOT_FOUND)
    again = s3.delete_bucket_encryption(Bucket=bucket)  # deleting none is fine too
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_kms_with_key_and_bucket_key_replaces_the_previous_one(s3, bucket: str) -> None:
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=_config("AES256"))
    key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    s3.put_bucket_encryption(Bucket=bucket,
                             ServerSideEncryptionConfiguration=_config("aws:kms", key, True))
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
        "Rules"][0]
    assert rule == {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                           "KMSMasterKeyID": key},
                    "BucketKeyEnabled": True}
    s3.put_bucket_encryption(Bucket=bucket,
                             ServerSideEncryptionConfiguration=_config("aws:kms:dsse"))
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
        "Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms:dsse"}


def test_bad_configurations_are_refused_and_change_nothing(s3, bucket: str) -> None:
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=_config("AES256"))
    status, code, message = _error(
        s3.put_bucket_encryption, Bucket=bucket,
        ServerSideEncryptionConfiguration=_config("AES256", "some-key"))
    assert (status, code) == (400, "InvalidArgument")
    assert message == ("a KMSMasterKeyID is not applicable if the default sse algorithm is "
                       "not aws:kms or aws:kms:dsse")
    for bad in (_config("AES128"), {"Rules": []},
                {"Rules": [_config("AES256")["Rules"][0]] * 2}):
        status, code, _ = _error(s3.put_bucket_encryption, Bucket=bucket,
                                 ServerSideEncryptionConfiguration=bad)
        assert (status, code) == (400, "MalformedXML")
    got = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert got["Rules"][0]["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


def _raw_put(server, bucket: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """A signed PUT ?encryption with exactly this body and these headers."""
    return signed_put(f"{server.endpoint}/{bucket}?encryption", body, headers)


def test_malformed_xml_and_a_wrong_content_md5(server, s3, bucket: str) -> None:
    status, body = _raw_put(server, bucket, b"<ServerSideEncryptionConfiguration><Rule>", {})
    assert status == 400 and b"<Code>MalformedXML</Code>" in body
    good = (b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault>"
            b"<SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule>"
            b"</ServerSideEncryptionConfiguration>")
    wrong_md5 = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    status, body = _raw_put(server, bucket, good, {"Content-MD5": wrong_md5})
    assert status == 400 and b"<Code>BadDigest</Code>" in body
    assert _error(s3.get_bucket_encryption, Bucket=bucket)[:2] == (404, NOT_FOUND)
    right_md5 = base64.b64encode(hashlib.md5(good).digest()).decode()
    assert _raw_put(server, bucket, good, {"Content-MD5": right_md5})[0] == 200
    assert s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
        "Rules"][0]["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


def test_only_the_owner_or_a_policy_grant_may_configure(s3, bucket: str, other: dict) -> None:
    theirs = other["client"]
    for call, kwargs in (
        (theirs.put_bucket_encryption, {"ServerSideEncryptionConfiguration": _config("AES256")}),
        (theirs.get_bucket_encryption, {}),
        (theirs.delete_bucket_encryption, {}),
    ):
        assert _error(call, Bucket=bucket, **kwargs)[:2] == (403, "AccessDenied")
    assert _error(s3.get_bucket_encryption, Bucket=bucket)[:2] == (404, NOT_FOUND)

    principal = {"AWS": [other["id"]]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": principal, "Action": "s3:PutEncryptionConfiguration",
         "Resource": f"arn:aws:s3:::{bucket}"}]}))
    theirs.put_bucket_encryption(Bucket=bucket,
                                 ServerSideEncryptionConfiguration=_config("aws:kms", "k1"))
    assert _error(theirs.get_bucket_encryption, Bucket=bucket)[:2] == (403, "AccessDenied")
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
        "Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms",
                                                          "KMSMasterKeyID": "k1"}
    theirs.delete_bucket_encryption(Bucket=bucket)  # Delete is s3:PutEncryptionConfiguration
    assert _error(s3.get_bucket_encryption, Bucket=bucket)[:2] == (404, NOT_FOUND)
    s3.delete_bucket_policy(Bucket=bucket)
