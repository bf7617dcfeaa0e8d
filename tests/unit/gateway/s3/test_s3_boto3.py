"""boto3 against the real S3 stack, in process: SQLite metadata, six in-memory pods
with a 4+2 placement map, ObjectService and S3Frontend in an aiohttp app served
on a loopback port from a background thread (one server for the module).

Every test uses its own bucket, so they stay independent while sharing the server.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from support.s3_stack import REGION, Server, serve_s3_stack

MiB = 1 << 20
ALICE = ("AKALICE0000000000001", "alice-secret-alice-secret-alice-secret00")
BOB = ("AKBOB000000000000002", "bob-secret-bob-secret-bob-secret-bob-0000")
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with serve_s3_stack(tmp_path_factory.mktemp("s3"), {"alice": ALICE, "bob": BOB}) as srv:
        yield srv


def client(server: Server, keys: tuple[str, str] = ALICE, **config):
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=keys[0],
        aws_secret_access_key=keys[1], region_name=REGION,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=20,
                      **config),
    )  # fmt: skip


@pytest.fixture
def s3(server):
    return client(server)


@pytest.fixture
def bucket(s3) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def code_of(exc_info: pytest.ExceptionInfo[ClientError]) -> str:
    return exc_info.value.response["Error"]["Code"]


def status_of(exc_info: pytest.ExceptionInfo[ClientError]) -> int:
    return exc_info.value.response["ResponseMetadata"]["HTTPStatusCode"]


# --- buckets ---------------------------------------------------------------------------


def test_bucket_lifecycle(server, s3):
    name = f"life-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="kept", Body=b"1")
    s3.create_bucket(Bucket=name)  # us-east-1: re-creating your own bucket succeeds...
    assert s3.get_object(Bucket=name, Key="kept")["Body"].read() == b"1"  # ...changing nothing
    s3.delete_object(Bucket=name, Key="kept")
    listed = s3.list_buckets()
    assert name in [b["Name"] for b in listed["Buckets"]]
    assert listed["Owner"] == {"ID": server.users["alice"], "DisplayName": "alice"}
    head = s3.head_bucket(Bucket=name)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == REGION
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(ClientError) as err:
        s3.delete_bucket(Bucket=name)
    assert code_of(err) == "BucketNotEmpty"
    s3.delete_object(Bucket=name, Key="k")
    assert s3.delete_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as err:
        s3.head_bucket(Bucket=name)
    assert status_of(err) == 404
    with pytest.raises(ClientError) as err:
        s3.list_objects_v2(Bucket=name)
    assert code_of(err) == "NoSuchBucket"


@pytest.mark.parametrize("name", ["ab", "UpperCase", "a..b", "192.168.1.1", "-dash", "x" * 64,
                                  "under_score", "xn--punycode"])
def test_invalid_bucket_names(s3, name):
    botocore_client = client_without_validation(s3)
    with pytest.raises(ClientError) as err:
        botocore_client.create_bucket(Bucket=name)
    assert code_of(err) == "InvalidBucketName"


def client_without_validation(s3):
    s3.meta.events.unregister("before-parameter-build.s3", botocore.handlers.validate_bucket_name)
    return s3


def test_location_constraint(s3):
    name = f"loc-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert code_of(err) == "InvalidLocationConstraint"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})


def test_other_users_bucket_is_access_denied(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="secret", Body=b"alice's")
    bob = client(server, BOB)
    for call in (
        lambda: bob.get_object(Bucket=bucket, Key="secret"),
        lambda: bob.list_objects_v2(Bucket=bucket),
        lambda: bob.put_object(Bucket=bucket, Key="x", Body=b"y"),
        lambda: bob.delete_bucket(Bucket=bucket),
        lambda: bob.copy_object(Bucket=bucket, Key="c", CopySource=f"{bucket}/secret"),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert code_of(err) == "AccessDenied"
    with pytest.raises(ClientError) as err:
        bob.create_bucket(Bucket=bucket)
    assert code_of(err) == "BucketAlreadyExists"
    assert bucket not in [b["Name"] for b in bob.list_buckets()["Buckets"]]
    # bob may not copy alice's object into his own bucket either
    mine = f"bob-{uuid.uuid4().hex[:8]}"
    bob.create_bucket(Bucket=mine)
    with pytest.raises(ClientError) as err:
        bob.copy_object(Bucket=mine, Key="c", CopySource=f"{bucket}/secret")
    assert code_of(err) == "AccessDenied"
    anonymous = client(server, signature_version=botocore.UNSIGNED)
    with pytest.raises(ClientError) as err:
        anonymous.get_object(Bucket=bucket, Key="secret")
    assert code_of(err) == "AccessDenied"


def test_wrong_secret_is_signature_mismatch(server, bucket):
    bad = client(server, (ALICE[0], "wrong" * 8))
    with pytest.raises(ClientError) as err:
        bad.list_objects_v2(Bucket=bucket)
    assert code_of(err) == "SignatureDoesNotMatch"


# --- objects -------------------------------------------------------------------------------

ODD_KEYS = [
    "plain", "with space", "plus+sign", "percent%20literal", "a%2Fb", "unicode/\u2603/\u00fc",
    "a//double", "/leading", "trailing/", "question?mark#hash", "amp&lt<gt>", "~tilde!*'()",
    "emoji\U0001f600", "tab\tchar", "k" * 1024,
]


def test_odd_keys_round_trip_and_list_exactly(s3, bucket):
    for i, key in enumerate(ODD_KEYS):
        s3.put_object(Bucket=bucket, Key=key, Body=f"body {i}".encode())
    for i, key in enumerate(ODD_KEYS):
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == f"body {i}".encode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(ODD_KEYS, key=lambda k: k.encode())
    v1 = [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]]
    assert v1 == listed
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert code_of(err) == "KeyTooLongError"


def test_empty_object(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert put["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b"" and got["ContentLength"] == 0
    assert s3.head_object(Bucket=bucket, Key="empty")["ContentLength"] == 0
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="empty", Range="bytes=0-0")
    assert code_of(err) == "InvalidRange"


def test_headers_and_metadata(s3, bucket):
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    s3.put_object(
        Bucket=bucket, Key="doc", Body=b"<html/>", ContentType="text/html",
        CacheControl="max-age=60", ContentDisposition='attachment; filename="a.html"',
        ContentEncoding="identity", ContentLanguage="en", Expires=expires,
        Metadata={"color": "blue", "Mixed-Case": "v"},
    )  # fmt: skip
    head = s3.head_object(Bucket=bucket, Key="doc")
    assert head["ContentType"] == "text/html" and head["CacheControl"] == "max-age=60"
    assert head["ContentDisposition"] == 'attachment; filename="a.html"'
    assert head["ContentEncoding"] == "identity" and head["ContentLanguage"] == "en"
    assert head["Expires"] == expires
    assert head["Metadata"] == {"color": "blue", "mixed-case": "v"}
    assert head["ETag"] == f'"{hashlib.md5(b"<html/>").hexdigest()}"'
    assert abs(head["LastModified"] - datetime.now(UTC)) < timedelta(minutes=1)
    got = s3.get_object(Bucket=bucket, Key="doc", ResponseContentType="text/plain",
                        ResponseContentDisposition="inline", ResponseCacheControl="no-store")
    assert got["ContentType"] == "text/plain" and got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-store"
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="big-meta", Body=b"x", Metadata={"m": "v" * 2100})
    assert code_of(err) == "MetadataTooLarge"
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="big-meta")
    assert status_of(err) == 404


def test_missing_key_errors(s3, bucket):
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="nope")
    assert code_of(err) == "NoSuchKey"
    assert err.value.response["Error"]["Key"] == "nope"
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="nope")
    assert status_of(err) == 404


def test_ranges(s3, bucket):
    data = os.urandom(300_000)  # above the inline threshold: read from the pods
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    for spec, first, last in (("bytes=0-9", 0, 9), ("bytes=299990-", 299990, 299999),
                              ("bytes=-7", 299993, 299999), ("bytes=1000-2000000", 1000, 299999),
                              ("bytes=262143-262144", 262143, 262144)):  # across stripes
        got = s3.get_object(Bucket=bucket, Key="r", Range=spec)
        assert got["Body"].read() == data[first : last + 1]
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes {first}-{last}/{len(data)}"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=300000-")
    assert code_of(err) == "InvalidRange" and status_of(err) == 416
    assert err.value.response["ResponseMetadata"]["HTTPHeaders"]["content-range"] == (
        "bytes */300000"
    )
    # a syntactically invalid range is ignored: the whole object, 200
    whole = s3.get_object(Bucket=bucket, Key="r", Range="bytes=9-3")
    assert whole["Body"].read() == data and whole["ResponseMetadata"]["HTTPStatusCode"] == 200
    head = s3.head_object(Bucket=bucket, Key="r", Range="bytes=10-19")
    assert head["ContentLength"] == 10 and head["ContentRange"] == "bytes 10-19/300000"


def test_conditional_reads_and_writes(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"v1")["ETag"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"v1"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert code_of(err) == "PreconditionFailed" and status_of(err) == 412
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert status_of(err) == 304
    assert err.value.response["ResponseMetadata"]["HTTPHeaders"]["etag"] == etag
    future = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="c", IfModifiedSince=future)
    assert status_of(err) == 304
    past = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=past)
    assert status_of(err) == 412
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="c", Body=b"v2", IfNoneMatch="*")
    assert code_of(err) == "PreconditionFailed"
    s3.put_object(Bucket=bucket, Key="new", Body=b"n", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="c", Body=b"v2", IfMatch='"0000"')
    assert code_of(err) == "PreconditionFailed"
    s3.put_object(Bucket=bucket, Key="c", Body=b"v2", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"v2"


def test_integrity_checks(s3, bucket):
    data = b"checked body"
    put = s3.put_object(Bucket=bucket, Key="sha", Body=data, ChecksumAlgorithm="SHA256")
    got = s3.get_object(Bucket=bucket, Key="sha", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumSHA256"] == put["ChecksumSHA256"]
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="bad-crc", Body=data, ChecksumCRC32="AAAAAA==")
    assert code_of(err) == "BadDigest"
    assert err.value.response["Error"]["Message"] == (
        "The CRC32 you specified did not match the calculated checksum."
    )
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="bad-md5", Body=data,
                      ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==")
    assert code_of(err) == "BadDigest"
    for key in ("bad-crc", "bad-md5"):
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key=key)


def test_delete_objects(s3, bucket):
    for key in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "missing"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["a", "missing"]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "b"}], "Quiet": True})
    assert "Deleted" not in quiet and "Errors" not in quiet
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["c"]
    with pytest.raises(ClientError) as err:
        s3.delete_objects(Bucket=bucket,
                          Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]})
    assert code_of(err) == "MalformedXML"


def test_copy_object(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"source bytes", ContentType="text/x-src",
                  Metadata={"m": "1"})
    out = s3.copy_object(Bucket=bucket, Key="dst dir/copy", CopySource=f"{bucket}/src")
    assert out["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"source bytes").hexdigest()}"'
    head = s3.head_object(Bucket=bucket, Key="dst dir/copy")
    assert head["ContentType"] == "text/x-src" and head["Metadata"] == {"m": "1"}
    s3.copy_object(Bucket=bucket, Key="replaced", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", ContentType="text/plain", Metadata={"n": "2"})
    head = s3.head_object(Bucket=bucket, Key="replaced")
    assert head["ContentType"] == "text/plain" and head["Metadata"] == {"n": "2"}
    assert s3.get_object(Bucket=bucket, Key="replaced")["Body"].read() == b"source bytes"
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="src", CopySource=f"{bucket}/src")
    assert code_of(err) == "InvalidRequest"
    assert "copy an object to itself" in err.value.response["Error"]["Message"]
    s3.copy_object(Bucket=bucket, Key="src", CopySource=f"{bucket}/src",
                   MetadataDirective="REPLACE", Metadata={"changed": "yes"})
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"changed": "yes"}
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="x", CopySource=f"{bucket}/src",
                       CopySourceIfMatch='"0000"')
    assert status_of(err) == 412
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="x", CopySource=f"{bucket}/nope")
    assert code_of(err) == "NoSuchKey"
    odd = "odd key+%/\u2603"
    s3.put_object(Bucket=bucket, Key=odd, Body=b"odd")
    s3.copy_object(Bucket=bucket, Key="from-odd", CopySource={"Bucket": bucket, "Key": odd})
    assert s3.get_object(Bucket=bucket, Key="from-odd")["Body"].read() == b"odd"


def test_tagging(s3, bucket):
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="a=1&b=two%20words")
    assert s3.get_object(Bucket=bucket, Key="t")["TagCount"] == 2
    tags = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("a", "1"), ("b", "two words")]
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "z", "Value": ""}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "z", "Value": ""}]
    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    with pytest.raises(ClientError) as err:
        s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={
            "TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]})
    assert code_of(err) == "InvalidTag"
    with pytest.raises(ClientError) as err:
        s3.get_bucket_tagging(Bucket=bucket)
    assert code_of(err) == "NoSuchTagSet"
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "s3"}]})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "team", "Value": "s3"}]


def test_acls_and_attributes(server, s3, bucket):
    acl = s3.get_bucket_acl(Bucket=bucket)
    alice = {"ID": server.users["alice"], "DisplayName": "alice"}
    assert acl["Owner"] == alice
    assert acl["Grants"] == [{"Grantee": {**alice, "Type": "CanonicalUser"},
                              "Permission": "FULL_CONTROL"}]
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    grants = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    assert grants[0] == {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    assert len(s3.get_bucket_acl(Bucket=bucket)["Grants"]) == 1
    s3.put_object(Bucket=bucket, Key="o", Body=b"12345", ACL="private")
    assert s3.get_object_acl(Bucket=bucket, Key="o")["Owner"] == alice
    s3.put_object_acl(Bucket=bucket, Key="o", ACL="private")
    attrs = s3.get_object_attributes(Bucket=bucket, Key="o",
                                     ObjectAttributes=["ETag", "ObjectSize", "StorageClass"])
    assert attrs["ETag"] == hashlib.md5(b"12345").hexdigest()
    assert attrs["ObjectSize"] == 5 and attrs["StorageClass"] == "STANDARD"


def test_unsupported_operations_are_not_implemented(s3, bucket):
    for call in (
        lambda: s3.put_bucket_request_payment(
            Bucket=bucket, RequestPaymentConfiguration={"Payer": "Requester"}),
        lambda: s3.put_bucket_website(
            Bucket=bucket, WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}}),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert code_of(err) == "NotImplemented" and status_of(err) == 501
    with pytest.raises(ClientError) as err:
        s3.get_bucket_policy(Bucket=bucket)
    assert code_of(err) == "NoSuchBucketPolicy"


def test_request_payment_is_the_bucket_owners(s3, bucket):
    # As AWS answers for a bucket without Requester Pays; s3cmd `info` shows it.
    assert s3.get_bucket_request_payment(Bucket=bucket)["Payer"] == "BucketOwner"
    with pytest.raises(ClientError) as err:
        s3.put_bucket_request_payment(Bucket=bucket,
                                      RequestPaymentConfiguration={"Payer": "Requester"})
    assert code_of(err) == "NotImplemented" and status_of(err) == 501


def test_versioning(s3, bucket):
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    v1 = s3.put_object(Bucket=bucket, Key="v", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="v", Body=b"two")["VersionId"]
    assert v1 != v2 and v1 != "null"
    assert s3.get_object(Bucket=bucket, Key="v", VersionId=v1)["Body"].read() == b"one"
    gone = s3.delete_object(Bucket=bucket, Key="v")
    assert gone["DeleteMarker"] is True
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="v")
    assert code_of(err) == "NoSuchKey"
    listed = s3.list_object_versions(Bucket=bucket)
    assert sorted(v["VersionId"] for v in listed["Versions"]) == sorted([v1, v2])
    assert [m["VersionId"] for m in listed["DeleteMarkers"]] == [gone["VersionId"]]
    assert listed["DeleteMarkers"][0]["IsLatest"] is True


# --- listing ---------------------------------------------------------------------------------


def test_listing_pagination_with_and_without_delimiter(s3, bucket):
    keys = [f"dir{d}/sub{s}/file{f}" for d in range(3) for s in range(2) for f in range(3)]
    keys += [f"top{i}" for i in range(5)] + ["dir1/loose", "space key", "plus+key"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    want = sorted(keys)
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 4})
    seen = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert seen == want
    v1 = s3.get_paginator("list_objects").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 5})
    assert [o["Key"] for page in v1 for o in page.get("Contents", [])] == want
    for paginator in ("list_objects_v2", "list_objects"):
        pages = list(s3.get_paginator(paginator).paginate(
            Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 2}))
        prefixes = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
        top = [o["Key"] for page in pages for o in page.get("Contents", [])]
        assert prefixes == ["dir0/", "dir1/", "dir2/"], paginator
        assert top == sorted(k for k in keys if "/" not in k), paginator
    sub = s3.list_objects_v2(Bucket=bucket, Prefix="dir1/", Delimiter="/")
    assert [p["Prefix"] for p in sub["CommonPrefixes"]] == ["dir1/sub0/", "dir1/sub1/"]
    assert [o["Key"] for o in sub["Contents"]] == ["dir1/loose"]
    assert sub["KeyCount"] == 3
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="top2")
    assert [o["Key"] for o in after["Contents"]] == ["top3", "top4"]
    owned = s3.list_objects_v2(Bucket=bucket, MaxKeys=1, FetchOwner=True)
    assert owned["Contents"][0]["Owner"]["DisplayName"] == "alice" and owned["IsTruncated"]
    assert "Owner" not in s3.list_objects_v2(Bucket=bucket, MaxKeys=1)["Contents"][0]
    with pytest.raises(ClientError) as err:
        s3.list_objects_v2(Bucket=bucket, ContinuationToken="!!not a token!!")
    assert code_of(err) == "InvalidArgument"


# --- multipart -------------------------------------------------------------------------------


def test_multipart_upload(s3, bucket):
    parts_data = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1 * MiB + 7)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big", ContentType="video/x",
                                        Metadata={"kind": "mp"})
    uid = upload["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in listed] == [("big", uid)]
    etags = []
    for n, data in enumerate(parts_data, 1):
        etags.append(s3.upload_part(Bucket=bucket, Key="big", UploadId=uid, PartNumber=n,
                                    Body=data)["ETag"])
    assert etags[0] == f'"{hashlib.md5(parts_data[0]).hexdigest()}"'
    parts = s3.list_parts(Bucket=bucket, Key="big", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [
        (i + 1, len(d)) for i, d in enumerate(parts_data)]
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 2, "ETag": etags[1]}, {"PartNumber": 1, "ETag": etags[0]}]})
    assert code_of(err) == "InvalidPartOrder"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
    md5s = b"".join(hashlib.md5(d).digest() for d in parts_data)
    assert done["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    whole = s3.get_object(Bucket=bucket, Key="big")
    assert whole["Body"].read() == b"".join(parts_data)
    assert whole["ContentType"] == "video/x" and whole["Metadata"] == {"kind": "mp"}
    second = s3.get_object(Bucket=bucket, Key="big", PartNumber=2)
    assert second["Body"].read() == parts_data[1] and second["PartsCount"] == 3
    assert s3.head_object(Bucket=bucket, Key="big", PartNumber=3)["ContentLength"] == len(
        parts_data[2])
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_multipart_errors_abort_and_part_copy(s3, bucket):
    source = os.urandom(6 * MiB)
    s3.put_object(Bucket=bucket, Key="src", Body=source)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    for bad in (0, 10001):
        with pytest.raises(ClientError) as err:
            s3.upload_part(Bucket=bucket, Key="m", UploadId=uid, PartNumber=bad, Body=b"x")
        assert code_of(err) == "InvalidArgument"
    one = s3.upload_part_copy(Bucket=bucket, Key="m", UploadId=uid, PartNumber=1,
                              CopySource=f"{bucket}/src", CopySourceRange=f"bytes=0-{5 * MiB - 1}")
    two = s3.upload_part_copy(Bucket=bucket, Key="m", UploadId=uid, PartNumber=2,
                              CopySource=f"{bucket}/src",
                              CopySourceRange=f"bytes={5 * MiB}-{6 * MiB - 1}")
    assert one["CopyPartResult"]["ETag"] == f'"{hashlib.md5(source[:5 * MiB]).hexdigest()}"'
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=uid,
                                     MultipartUpload={"Parts": []})
    assert code_of(err) == "MalformedXML"
    s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=uid, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": one["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": two["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == source
    gone = s3.create_multipart_upload(Bucket=bucket, Key="aborted")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="aborted", UploadId=gone, PartNumber=1, Body=b"data")
    assert s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=gone)[
        "ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as err:
        s3.list_parts(Bucket=bucket, Key="aborted", UploadId=gone)
    assert code_of(err) == "NoSuchUpload"
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="aborted")
    assert status_of(err) == 404


def test_transfer_manager_multipart(s3, bucket, tmp_path):
    from boto3.s3.transfer import TransferConfig

    data = os.urandom(12 * MiB + 123)
    path = tmp_path / "up.bin"
    path.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_file(str(path), bucket, "tm/file.bin", Config=cfg)
    out = tmp_path / "down.bin"
    s3.download_file(bucket, "tm/file.bin", str(out), Config=cfg)
    assert out.read_bytes() == data
    head = s3.head_object(Bucket=bucket, Key="tm/file.bin", ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-3"')


# --- failures mid-stream ---------------------------------------------------------------------


def test_lost_data_never_reads_as_a_good_body(server, s3, bucket):
    data = os.urandom(3 * MiB)
    s3.put_object(Bucket=bucket, Key="fragile", Body=data)
    server.pods.kill(0, 1, 2)  # more than m=2 pods: the data cannot be read
    try:
        with pytest.raises((ClientError, botocore.exceptions.BotoCoreError)):
            got = s3.get_object(Bucket=bucket, Key="fragile")
            got["Body"].read()
    finally:
        server.pods.revive(0, 1, 2)
    assert s3.get_object(Bucket=bucket, Key="fragile")["Body"].read() == data
