"""boto3 against a real kurastore server: server access logging. PutBucketLogging and
GetBucketLogging with AWS's checks of the target bucket and their error codes, who may
set and read the configuration, and the delivery itself: requests on a logged bucket
come back as S3 server access log records in objects of the target bucket."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from support.cluster import ACCESS_KEY, REGION, SECRET_KEY
from support.s3client import error_code

pytestmark = pytest.mark.clients

PREFIX = "logs/"


def _owner_id(s3, bucket: str) -> str:
    return s3.get_bucket_acl(Bucket=bucket)["Owner"]["ID"]


def _allow_delivery(s3, target: str, source: str, prefix: str = PREFIX,
                    account: str | None = None) -> None:
    """The target bucket policy AWS's user guide asks for: the logging service may put
    objects under the prefix, for this source bucket and account only."""
    statement = {
        "Sid": "S3ServerAccessLogsPolicy", "Effect": "Allow",
        "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{target}/{prefix}*",
        "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{source}"},
                      "StringEquals": {"aws:SourceAccount": account or _owner_id(s3, source)}},
    }  # fmt: skip
    s3.put_bucket_policy(Bucket=target, Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": [statement]}))


def _enable(s3, source: str, target: str, prefix: str = PREFIX, **extra) -> None:
    s3.put_bucket_logging(Bucket=source, BucketLoggingStatus={
        "LoggingEnabled": {"TargetBucket": target, "TargetPrefix": prefix, **extra}})


def _refused(call, **kwargs) -> tuple[int, str]:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["ResponseMetadata"]["HTTPStatusCode"], error_code(err.value)


def _new_bucket(s3, **kwargs) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, **kwargs)
    return name


@pytest.fixture
def target(s3) -> Iterator[str]:
    name = _new_bucket(s3)
    yield name
    for item in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)


# --- configuration -----------------------------------------------------------------------


def test_put_get_and_disable(s3, bucket: str, target: str, other) -> None:
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=bucket)
    _allow_delivery(s3, target, bucket)

    _enable(s3, bucket, target)
    # No TargetObjectKeyFormat given: the default, SimplePrefix, is answered.
    assert s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"] == {
        "TargetBucket": target, "TargetPrefix": PREFIX,
        "TargetObjectKeyFormat": {"SimplePrefix": {}}}  # fmt: skip

    partitioned = {"PartitionedPrefix": {"PartitionDateSource": "EventTime"}}
    _enable(s3, bucket, target, TargetObjectKeyFormat=partitioned)
    assert s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"][
        "TargetObjectKeyFormat"] == partitioned

    # Target grants are kept and answered (they become the log objects' ACL).
    grant = {"Grantee": {"Type": "CanonicalUser", "ID": other["id"]}, "Permission": "READ"}
    _enable(s3, bucket, target, TargetGrants=[grant])
    grants = s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"]["TargetGrants"]
    assert grants == [{"Grantee": {"Type": "CanonicalUser", "ID": other["id"],
                                   "DisplayName": other["name"]}, "Permission": "READ"}]

    s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={})
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=bucket)


def test_log_delivery_group_acl_grants_delivery(s3, bucket: str, target: str) -> None:
    assert _refused(_enable, s3=s3, source=bucket, target=target) == (
        400, "InvalidTargetBucketForLogging")
    s3.put_bucket_acl(Bucket=target, ACL="log-delivery-write")
    _enable(s3, bucket, target)
    assert s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"]["TargetBucket"] == target


def test_target_bucket_checks(s3, bucket: str, target: str, other) -> None:
    # Missing, or without a grant for the log delivery.
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    assert _refused(_enable, s3=s3, source=bucket, target=missing) == (
        400, "InvalidTargetBucketForLogging")
    assert _refused(_enable, s3=s3, source=bucket, target=target) == (
        400, "InvalidTargetBucketForLogging")
    # A grant to someone else than the logging service, or for another source bucket.
    s3.put_bucket_policy(Bucket=target, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{target}/*"}]}))  # fmt: skip
    assert _refused(_enable, s3=s3, source=bucket, target=target)[1] == (
        "InvalidTargetBucketForLogging")
    _allow_delivery(s3, target, "some-other-bucket", account=_owner_id(s3, bucket))
    assert _refused(_enable, s3=s3, source=bucket, target=target)[1] == (
        "InvalidTargetBucketForLogging")
    # A grant on another prefix.
    _allow_delivery(s3, target, bucket, prefix="elsewhere/")
    assert _refused(_enable, s3=s3, source=bucket, target=target)[1] == (
        "InvalidTargetBucketForLogging")

    # Another owner's bucket, even one that grants the delivery.
    theirs = _new_bucket(other["client"])
    _allow_delivery(other["client"], theirs, bucket, account=_owner_id(s3, bucket))
    try:
        assert _refused(_enable, s3=s3, source=bucket, target=theirs) == (
            400, "InvalidTargetBucketForLogging")
    finally:
        other["client"].delete_bucket(Bucket=theirs)

    # Target grants on a bucket whose ACLs are off (BucketOwnerEnforced).
    _allow_delivery(s3, target, bucket)
    s3.put_bucket_ownership_controls(Bucket=target, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    grant = {"Grantee": {"Type": "CanonicalUser", "ID": other["id"]}, "Permission": "READ"}
    assert _refused(_enable, s3=s3, source=bucket, target=target, TargetGrants=[grant]) == (
        400, "AccessControlListNotSupported")
    _enable(s3, bucket, target)  # without grants, policy-only delivery is fine


def test_object_lock_default_retention_target_is_refused(s3, bucket: str) -> None:
    locked = _new_bucket(s3, ObjectLockEnabledForBucket=True)
    try:
        _allow_delivery(s3, locked, bucket)
        _enable(s3, bucket, locked)  # Object Lock without a default retention is fine
        s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
        assert _refused(_enable, s3=s3, source=bucket, target=locked) == (
            400, "InvalidTargetBucketForLogging")
    finally:
        s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={})
        s3.delete_bucket(Bucket=locked)


def _raw_put_logging(server, bucket: str, body: bytes) -> tuple[int, bytes]:
    """A signed PUT ?logging with exactly this body."""
    url = f"{server.endpoint}/{bucket}?logging"
    request = AWSRequest(method="PUT", url=url, data=body)
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
    prepared = urllib.request.Request(url, data=body, method="PUT",
                                      headers=dict(request.headers.items()))
    try:
        with urllib.request.urlopen(prepared) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_malformed_documents(server, s3, bucket: str, target: str) -> None:
    _allow_delivery(s3, target, bucket)
    for body in (
        b"<BucketLoggingStatus><LoggingEnabled>",
        b"<BucketLoggingStatus><LoggingEnabled><TargetPrefix>x</TargetPrefix>"
        b"</LoggingEnabled></BucketLoggingStatus>",
        b"<NotLogging/>",
    ):
        status, answer = _raw_put_logging(server, bucket, body)
        assert status == 400 and b"<Code>MalformedXML</Code>" in answer, body
    bad_source = {"PartitionedPrefix": {"PartitionDateSource": "kaboom"}}
    assert _refused(_enable, s3=s3, source=bucket, target=target,
                    TargetObjectKeyFormat=bad_source) == (400, "MalformedXML")
    bad_grant = {"Grantee": {"Type": "CanonicalUser", "ID": _owner_id(s3, bucket)},
                 "Permission": "WRITE_ACP"}
    assert _refused(_enable, s3=s3, source=bucket, target=target,
                    TargetGrants=[bad_grant]) == (400, "MalformedXML")
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=bucket)


def test_another_user_may_neither_read_nor_set_it(s3, bucket: str, target: str, other) -> None:
    _allow_delivery(s3, target, bucket)
    _enable(s3, bucket, target)
    theirs = other["client"]
    assert _refused(theirs.get_bucket_logging, Bucket=bucket) == (403, "AccessDenied")
    assert _refused(theirs.put_bucket_logging, Bucket=bucket,
                    BucketLoggingStatus={}) == (403, "AccessDenied")
    # A policy may let others read the configuration; setting it stays the owner's (AWS).
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetBucketLogging",
                                                          "s3:PutBucketLogging"],
         "Resource": f"arn:aws:s3:::{bucket}"}]}))  # fmt: skip
    assert theirs.get_bucket_logging(Bucket=bucket)["LoggingEnabled"]["TargetBucket"] == target
    assert _refused(theirs.put_bucket_logging, Bucket=bucket,
                    BucketLoggingStatus={}) == (403, "AccessDenied")
    assert s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"]["TargetBucket"] == target
    # And the owner is refused when its own policy denies it.
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:PutBucketLogging",
         "Resource": f"arn:aws:s3:::{bucket}"}]}))  # fmt: skip
    assert _refused(s3.put_bucket_logging, Bucket=bucket,
                    BucketLoggingStatus={}) == (403, "AccessDenied")
    s3.delete_bucket_policy(Bucket=bucket)
