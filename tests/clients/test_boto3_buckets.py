"""boto3 against a real kurastore server: buckets, listings, users and auth errors."""

from __future__ import annotations

import concurrent.futures
import uuid

import pytest
from botocore.exceptions import ClientError
from support.cluster import ACCESS_KEY, SECRET_KEY, create_user
from support.s3client import error_code, make_client

pytestmark = pytest.mark.clients


def test_bucket_lifecycle(s3) -> None:
    name = f"life-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    head = s3.head_bucket(Bucket=name)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] in (None, "")
    s3.put_object(Bucket=name, Key="k", Body=b"v")
    # In us-east-1, creating a bucket you own again succeeds and keeps its objects (AWS).
    s3.create_bucket(Bucket=name)
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"v"
    with pytest.raises(ClientError) as err:
        s3.delete_bucket(Bucket=name)
    assert error_code(err.value) == "BucketNotEmpty"
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as err:
        s3.head_bucket(Bucket=name)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as err:
        s3.list_objects_v2(Bucket=name)
    assert error_code(err.value) == "NoSuchBucket"


@pytest.mark.parametrize("name", ["ab", "UPPER", "under_score", "-dash", "a" * 64,
                                  "192.168.1.1", "dots..dots"])
def test_invalid_bucket_names(s3, name: str) -> None:
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket=name)
    assert error_code(err.value) == "InvalidBucketName"


def _fill(s3, bucket: str, keys: list[str]) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"."), keys))


def test_listing_pagination_2500_keys(s3, bucket: str) -> None:
    keys = [f"dir{i % 7}/sub{i % 3}/file{i:05d}" for i in range(2300)] + \
           [f"top{i:04d}" for i in range(200)]
    _fill(s3, bucket, keys)
    expected = sorted(keys)
    # v2 without delimiter, pages of 1000
    seen = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        assert page["KeyCount"] <= 1000
        seen += [o["Key"] for o in page.get("Contents", [])]
    assert seen == expected
    # v2 with delimiter and small pages: prefixes count toward MaxKeys
    seen, prefixes = [], []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 50}
    ):
        seen += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert prefixes == [f"dir{i}/" for i in range(7)]
    assert seen == [k for k in expected if k.startswith("top")]
    # v1 with marker paging
    seen = []
    for page in s3.get_paginator("list_objects").paginate(
        Bucket=bucket, Prefix="dir3/", PaginationConfig={"PageSize": 100}
    ):
        seen += [o["Key"] for o in page.get("Contents", [])]
    assert seen == [k for k in expected if k.startswith("dir3/")]
    # prefix + delimiter one level down
    res = s3.list_objects_v2(Bucket=bucket, Prefix="dir1/", Delimiter="/")
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == ["dir1/sub0/", "dir1/sub1/",
                                                            "dir1/sub2/"]
    # start-after and fetch-owner
    res = s3.list_objects_v2(Bucket=bucket, StartAfter=expected[-3], FetchOwner=True)
    assert [o["Key"] for o in res["Contents"]] == expected[-2:]
    assert res["Contents"][0]["Owner"]["ID"] == s3.list_buckets()["Owner"]["ID"]
    versions = s3.list_object_versions(Bucket=bucket, Prefix="top00", MaxKeys=5)
    assert [v["Key"] for v in versions["Versions"]] == [k for k in expected
                                                       if k.startswith("top00")][:5]


def test_max_keys_zero_and_url_encoding(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a b", Body=b"")
    res = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert res["KeyCount"] == 0 and res["IsTruncated"] is False


def test_another_users_bucket_is_access_denied(server, s3, bucket: str) -> None:
    created = create_user(server, f"u{uuid.uuid4().hex[:8]}")
    assert set(created) >= {"user", "access_key", "secret_key"}
    other = make_client(server.endpoint, created["access_key"], created["secret_key"])
    assert other.list_buckets()["Buckets"] == []
    with pytest.raises(ClientError) as err:
        other.list_objects_v2(Bucket=bucket)
    assert error_code(err.value) == "AccessDenied"
    with pytest.raises(ClientError) as err:
        other.put_object(Bucket=bucket, Key="intruder", Body=b"x")
    assert error_code(err.value) == "AccessDenied"
    mine = f"own-{uuid.uuid4().hex[:8]}"
    other.create_bucket(Bucket=mine)
    other.put_object(Bucket=mine, Key="k", Body=b"mine")
    assert other.get_object(Bucket=mine, Key="k")["Body"].read() == b"mine"
    other.delete_object(Bucket=mine, Key="k")
    other.delete_bucket(Bucket=mine)


def test_bad_credentials(server, bucket: str) -> None:
    wrong_secret = make_client(server.endpoint, ACCESS_KEY, "x" * 40)
    with pytest.raises(ClientError) as err:
        wrong_secret.list_objects_v2(Bucket=bucket)
    assert error_code(err.value) == "SignatureDoesNotMatch"
    unknown = make_client(server.endpoint, "KSUNKNOWNKEY00000000", SECRET_KEY)
    with pytest.raises(ClientError) as err:
        unknown.list_objects_v2(Bucket=bucket)
    assert error_code(err.value) == "InvalidAccessKeyId"


def test_unsupported_operation_is_not_implemented(s3, bucket: str) -> None:
    with pytest.raises(ClientError) as err:
        s3.put_bucket_website(Bucket=bucket,
                              WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}})
    assert error_code(err.value) == "NotImplemented"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501


def test_request_ids_on_every_answer(s3, bucket: str) -> None:
    ok = s3.list_objects_v2(Bucket=bucket)
    assert ok["ResponseMetadata"]["RequestId"]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="missing")
    assert err.value.response["ResponseMetadata"]["RequestId"]
