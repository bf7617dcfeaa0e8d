"""Re-creating a bucket one already owns, against a real `kurastore server`: in
us-east-1 AWS answers 200 and resets the bucket's ACL to the request's."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.clients

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def _public_reads(s3, bucket: str) -> list[str]:
    grants = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    return [g["Permission"] for g in grants if g["Grantee"].get("URI") == ALL_USERS]


def test_recreate_owned_bucket_resets_its_acl(s3, bucket: str) -> None:
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert _public_reads(s3, bucket) == ["READ"]
    s3.create_bucket(Bucket=bucket)  # no ACL asked: back to private
    assert _public_reads(s3, bucket) == []
    s3.create_bucket(Bucket=bucket, ACL="public-read")
    assert _public_reads(s3, bucket) == ["READ"]
    s3.create_bucket(Bucket=bucket, ACL="private")
    assert _public_reads(s3, bucket) == []
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]].count(bucket) == 1
