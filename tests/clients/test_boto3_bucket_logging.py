"""boto3 against a real kurastore server: server access logging. PutBucketLogging and
GetBucketLogging with AWS's checks of the target bucket and their error codes, who may
set and read the configuration, and the delivery itself: requests on a logged bucket
come back as S3 server access log records in objects of the target bucket."""

from __future__ import annotations

import json
import re
import shlex
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from support.cluster import REGION, ServerProcess, create_user
from support.s3client import error_code, make_client, signed_put

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
    return signed_put(f"{server.endpoint}/{bucket}?logging", body)


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


# --- delivery -----------------------------------------------------------------------------

FIELDS = ("BucketOwner", "Bucket", "Time", "RemoteIP", "Requester", "RequestID", "Operation",
          "Key", "RequestURI", "HTTPStatus", "ErrorCode", "BytesSent", "ObjectSize",
          "TotalTime", "TurnAroundTime", "Referrer", "UserAgent", "VersionId", "HostId",
          "SignatureVersion", "CipherSuite", "AuthenticationType", "HostHeader",
          "TLSVersion", "AccessPointARN", "ACLRequired")
SIMPLE_KEY = re.compile(r"\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d-[0-9A-F]{16}")


def _server(tmp: Path, *extra: str) -> ServerProcess:
    proc = ServerProcess(tmp / "data", extra_args=list(extra))
    proc.start()
    return proc


@pytest.fixture(scope="module")
def log_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that delivers each bucket's log records every second."""
    proc = _server(tmp_path_factory.mktemp("server-log"), "--access-log-roll", "1")
    try:
        yield proc
    finally:
        proc.stop()


def _parse(line: str) -> dict[str, str]:
    """One record, split as a log reader would: quoted fields, the [time] as one field."""
    head, _, rest = line.partition("[")
    stamp, _, tail = rest.partition("]")
    fields = [*head.split(), stamp, *shlex.split(tail)]
    assert len(fields) == len(FIELDS), line
    return dict(zip(FIELDS, fields, strict=True))


def _delivered(s3, bucket: str, prefix: str) -> dict[str, str]:
    """key -> body of every log object under prefix."""
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get(
        "Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode() for k in keys}


def _wait_for(s3, bucket: str, prefix: str, done: Callable[[list[dict[str, str]]], bool],
              timeout_s: float = 30.0) -> tuple[dict[str, str], list[dict[str, str]]]:
    deadline = time.monotonic() + timeout_s
    while True:
        objects = _delivered(s3, bucket, prefix)
        records = [_parse(line) for body in objects.values() for line in body.splitlines()]
        if done(records) or time.monotonic() > deadline:
            return objects, records
        time.sleep(0.3)


def _request_id(call, **kwargs) -> tuple[str, dict]:
    try:
        answer = call(**kwargs)
    except ClientError as exc:
        answer = exc.response
    return answer["ResponseMetadata"]["RequestId"], answer


def test_requests_are_delivered_as_log_records(log_server) -> None:
    s3 = make_client(log_server.endpoint)
    source, target = _new_bucket(s3), _new_bucket(s3)
    owner = _owner_id(s3, source)
    _allow_delivery(s3, target, source)
    _enable(s3, source, target)

    body = b"x" * 1234
    put_id, _ = _request_id(s3.put_object, Bucket=source, Key="dir/a b.txt", Body=body)
    get_id, got = _request_id(s3.get_object, Bucket=source, Key="dir/a b.txt")
    got["Body"].read()
    missing_id, missing = _request_id(s3.get_object, Bucket=source, Key="nope")
    assert missing["Error"]["Code"] == "NoSuchKey"
    delete_id, _ = _request_id(s3.delete_object, Bucket=source, Key="dir/a b.txt")
    presigner = make_client(log_server.endpoint, signature_version="s3v4")
    url = presigner.generate_presigned_url("head_object",
                                           Params={"Bucket": source, "Key": "nope"})
    signature = url.split("X-Amz-Signature=", 1)[1].split("&", 1)[0]
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"))
    wanted = {put_id, get_id, missing_id, delete_id}

    objects, records = _wait_for(s3, target, PREFIX, lambda recs: wanted <= {
        r["RequestID"] for r in recs} and any(r["AuthenticationType"] == "QueryString"
                                              for r in recs))
    assert objects and all(SIMPLE_KEY.fullmatch(k[len(PREFIX):]) for k in objects), objects
    by_id = {r["RequestID"]: r for r in records}
    assert wanted <= set(by_id), records
    put, get, miss, delete = (by_id[i] for i in (put_id, get_id, missing_id, delete_id))
    for record in (put, get, miss, delete):
        assert record["BucketOwner"] == owner and record["Bucket"] == source
        assert record["Requester"] == owner and record["RemoteIP"] == "127.0.0.1"
        assert record["SignatureVersion"] == "SigV4"
        assert record["AuthenticationType"] == "AuthHeader"
        assert record["HostHeader"] == log_server.endpoint.split("//", 1)[1]
        assert re.fullmatch(r"\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000", record["Time"])
        assert record["UserAgent"].startswith("Boto3/")
    assert (put["Operation"], put["Key"], put["HTTPStatus"], put["ErrorCode"]) == (
        "REST.PUT.OBJECT", "dir/a%20b.txt", "200", "-")
    assert (put["BytesSent"], put["ObjectSize"]) == ("-", "1234")
    assert put["RequestURI"] == f"PUT /{source}/dir/a%20b.txt HTTP/1.1"
    assert (get["Operation"], get["HTTPStatus"], get["BytesSent"], get["ObjectSize"]) == (
        "REST.GET.OBJECT", "200", "1234", "1234")
    assert int(get["TotalTime"]) >= int(get["TurnAroundTime"]) >= 0
    assert (miss["Operation"], miss["Key"], miss["HTTPStatus"], miss["ErrorCode"]) == (
        "REST.GET.OBJECT", "nope", "404", "NoSuchKey")
    assert int(miss["BytesSent"]) > 0 and miss["ObjectSize"] == "-"
    assert (delete["Operation"], delete["HTTPStatus"]) == ("REST.DELETE.OBJECT", "204")

    # A presigned URL's signature never reaches the log; nor does any Authorization header.
    presigned = next(r for r in records if r["AuthenticationType"] == "QueryString")
    assert presigned["Operation"] == "REST.HEAD.OBJECT" and presigned["HTTPStatus"] == "404"
    assert "X-Amz-Signature=REDACTED" in presigned["RequestURI"]
    text = "".join(objects.values())
    assert signature not in text and "AWS4-HMAC-SHA256 Credential=" not in text


def test_log_objects_delivered_into_the_logged_bucket_are_not_logged(log_server) -> None:
    s3 = make_client(log_server.endpoint)
    bucket = _new_bucket(s3)
    _allow_delivery(s3, bucket, bucket)
    _enable(s3, bucket, bucket)  # AWS allows it (and warns of a loop): there is none here
    put_id, _ = _request_id(s3.put_object, Bucket=bucket, Key="k", Body=b"1")
    _, records = _wait_for(s3, bucket, PREFIX, lambda recs: put_id in {
        r["RequestID"] for r in recs})
    assert put_id in {r["RequestID"] for r in records}
    time.sleep(3)  # several roll intervals: a delivery that logged itself would show now
    # Only what this test's client did: its requests reading the logs back, never a
    # PUT of a log object.
    _, records = _wait_for(s3, bucket, PREFIX, lambda recs: True)
    assert not [r for r in records if r["Operation"] == "REST.PUT.OBJECT"
                and r["Key"].startswith(PREFIX)]
    assert all(r["Requester"] == _owner_id(s3, bucket) for r in records)


def test_partitioned_keys_and_target_grants(log_server) -> None:
    s3 = make_client(log_server.endpoint)
    reader = create_user(log_server, f"reader-{uuid.uuid4().hex[:8]}")
    source, target = _new_bucket(s3), _new_bucket(s3)
    owner = _owner_id(s3, source)
    _allow_delivery(s3, target, source)
    grant = {"Grantee": {"Type": "CanonicalUser", "ID": reader["user_id"]}, "Permission": "READ"}
    _enable(s3, source, target, TargetGrants=[grant], TargetObjectKeyFormat={
        "PartitionedPrefix": {"PartitionDateSource": "EventTime"}})
    put_id, _ = _request_id(s3.put_object, Bucket=source, Key="k", Body=b"1")
    objects, records = _wait_for(s3, target, PREFIX, lambda recs: put_id in {
        r["RequestID"] for r in recs})
    assert put_id in {r["RequestID"] for r in records}
    day = time.strftime("%Y/%m/%d", time.gmtime())
    stamp = time.strftime("%Y-%m-%d-00-00-00", time.gmtime())
    pattern = re.compile(rf"{PREFIX}{owner}/{REGION}/{source}/{day}/{stamp}-[0-9A-F]{{16}}")
    assert all(pattern.fullmatch(k) for k in objects), objects
    # TargetGrants: the grantee may read the log objects.
    theirs = make_client(log_server.endpoint, reader["access_key"], reader["secret_key"])
    key = next(iter(objects))
    assert theirs.get_object(Bucket=target, Key=key)["Body"].read().decode() == objects[key]


def test_a_clean_shutdown_delivers_what_is_buffered(tmp_path: Path) -> None:
    proc = _server(tmp_path, "--access-log-roll", "3600")
    try:
        s3 = make_client(proc.endpoint)
        source, target = _new_bucket(s3), _new_bucket(s3)
        _allow_delivery(s3, target, source)
        _enable(s3, source, target)
        put_id, _ = _request_id(s3.put_object, Bucket=source, Key="k", Body=b"1")
        time.sleep(1)
        assert not _delivered(s3, target, PREFIX)  # an hour's roll: nothing yet
        proc.stop()
        proc.start()
        _, records = _wait_for(s3, target, PREFIX, lambda recs: bool(recs), timeout_s=5)
        assert put_id in {r["RequestID"] for r in records}
    finally:
        proc.stop()
