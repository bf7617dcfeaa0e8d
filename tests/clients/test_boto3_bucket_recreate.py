"""Re-creating a bucket one already owns, against a real `kurastore server` (region
us-east-1): with the bucket's own ACL (no ACL asked means private) AWS's legacy 200;
with another ACL 409 BucketAlreadyExists, as Ceph RGW answers. Neither changes the
bucket's ACL."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from support.s3client import error_code

pytestmark = pytest.mark.clients

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def _public_reads(s3, bucket: str) -> list[str]:
    grants = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    return [g["Permission"] for g in grants if g["Grantee"].get("URI") == ALL_USERS]


def _refused(call, **kwargs) -> tuple[int, str]:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["ResponseMetadata"]["HTTPStatusCode"], error_code(err.value)


def test_recreate_with_the_same_acl_succeeds(s3, bucket: str) -> None:
    s3.create_bucket(Bucket=bucket)  # private, as the bucket is
    s3.create_bucket(Bucket=bucket, ACL="private")
    assert _public_reads(s3, bucket) == []
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    s3.create_bucket(Bucket=bucket, ACL="public-read")
    assert _public_reads(s3, bucket) == ["READ"]
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]].count(bucket) == 1


def test_recreate_with_another_acl_is_refused_and_changes_nothing(s3, bucket: str) -> None:
    conflict = (409, "BucketAlreadyExists")
    assert _refused(s3.create_bucket, Bucket=bucket, ACL="public-read") == conflict
    assert _refused(s3.create_bucket, Bucket=bucket,
                    GrantRead=f"uri={ALL_USERS}") == conflict
    assert _public_reads(s3, bucket) == []
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert _refused(s3.create_bucket, Bucket=bucket) == conflict  # no ACL asked: private
    assert _refused(s3.create_bucket, Bucket=bucket, ACL="public-read-write") == conflict
    assert _public_reads(s3, bucket) == ["READ"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept"
