"""Conditional writes and version ids against a real `kurastore server`, as boto3
users see them: If-None-Match (* or an etag) and If-Match on PutObject and
CompleteMultipartUpload, on unversioned and versioned buckets (412, NoSuchKey on a
missing key, one winner among racing creators, a refused write changes nothing), and
the 400 / 404 split between a malformed and an unknown versionId."""

from __future__ import annotations

import os
import threading

import pytest
from botocore.exceptions import ClientError
from support.s3client import error_code

pytestmark = pytest.mark.clients


def status_and_code(call, *args, **kwargs) -> tuple[int, str]:
    with pytest.raises(ClientError) as err:
        call(*args, **kwargs)
    return err.value.response["ResponseMetadata"]["HTTPStatusCode"], error_code(err.value)


def test_put_if_none_match_and_if_match(s3, bucket: str) -> None:
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"one", IfNoneMatch="*")["ETag"]
    assert status_and_code(s3.put_object, Bucket=bucket, Key="k", Body=b"x",
                           IfNoneMatch="*") == (412, "PreconditionFailed")
    assert status_and_code(s3.put_object, Bucket=bucket, Key="k", Body=b"x",
                           IfMatch='"0123456789abcdef0123456789abcdef"') == (412,
                                                                           "PreconditionFailed")
    second = s3.put_object(Bucket=bucket, Key="k", Body=b"two", IfMatch=first)["ETag"]
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"three", IfMatch="*")["ETag"] != second
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"three"

    s3.delete_object(Bucket=bucket, Key="k")
    for if_match in ("*", first):  # no current object: NoSuchKey, not 412
        assert status_and_code(s3.put_object, Bucket=bucket, Key="k", Body=b"x",
                               IfMatch=if_match) == (404, "NoSuchKey")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def _versions(s3, bucket: str) -> list[tuple[str, str, bool]]:
    """(key, etag or "", is latest) of every version and delete marker, newest first."""
    listed = s3.list_object_versions(Bucket=bucket)
    return [(v["Key"], v.get("ETag", ""), v["IsLatest"])
            for v in listed.get("Versions", []) + listed.get("DeleteMarkers", [])]


@pytest.mark.parametrize("versioning", ["Unversioned", "Enabled"])
def test_put_if_none_match_etag(s3, bucket: str, versioning: str) -> None:
    if versioning == "Enabled":
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": versioning})
    # No object yet: any etag holds.
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"one", IfNoneMatch='"deadbeef"')["ETag"]
    second = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["ETag"]
    before = _versions(s3, bucket)
    for refused in (second, second.strip('"'), "*"):
        assert status_and_code(s3.put_object, Bucket=bucket, Key="k", Body=b"x",
                               IfNoneMatch=refused) == (412, "PreconditionFailed")
    assert _versions(s3, bucket) == before  # the refused writes changed nothing
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    # Only the current version counts: an older version's etag does not refuse.
    third = s3.put_object(Bucket=bucket, Key="k", Body=b"three", IfNoneMatch=first)["ETag"]
    assert s3.get_object(Bucket=bucket, Key="k")["ETag"] == third
    # After a delete there is no current object: If-None-Match holds, If-Match is 404.
    s3.delete_object(Bucket=bucket, Key="k")
    assert status_and_code(s3.put_object, Bucket=bucket, Key="k", Body=b"x",
                           IfMatch=third) == (404, "NoSuchKey")
    s3.put_object(Bucket=bucket, Key="k", Body=b"four", IfNoneMatch=third)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"four"
    kept = [k for k, etag, _ in _versions(s3, bucket) if etag]
    assert len(kept) == (4 if versioning == "Enabled" else 1)


def _upload(s3, bucket: str, key: str, body: bytes) -> tuple[str, list[dict]]:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                          Body=body)["ETag"]
    return upload_id, [{"ETag": etag, "PartNumber": 1}]


def test_complete_multipart_upload_conditions(s3, bucket: str) -> None:
    upload_id, parts = _upload(s3, bucket, "m", b"first")
    # If-Match on a key that does not exist: NoSuchKey, and the upload stays.
    assert status_and_code(s3.complete_multipart_upload, Bucket=bucket, Key="m",
                           UploadId=upload_id, MultipartUpload={"Parts": parts},
                           IfMatch="*") == (404, "NoSuchKey")
    done = s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload_id,
                                        MultipartUpload={"Parts": parts}, IfNoneMatch="*")
    upload_id, parts = _upload(s3, bucket, "m", b"second")
    assert status_and_code(s3.complete_multipart_upload, Bucket=bucket, Key="m",
                           UploadId=upload_id, MultipartUpload={"Parts": parts},
                           IfNoneMatch="*") == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == b"first"
    s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload_id,
                                 MultipartUpload={"Parts": parts}, IfMatch=done["ETag"])
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == b"second"


@pytest.mark.parametrize("versioning", ["Unversioned", "Enabled"])
def test_complete_multipart_upload_if_none_match_etag(s3, bucket: str, versioning: str) -> None:
    if versioning == "Enabled":
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": versioning})
    upload_id, parts = _upload(s3, bucket, "m", b"first")
    first = s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload_id,
                                         MultipartUpload={"Parts": parts},
                                         IfNoneMatch='"deadbeef"')["ETag"]
    upload_id, parts = _upload(s3, bucket, "m", b"second")
    before = _versions(s3, bucket)
    assert status_and_code(s3.complete_multipart_upload, Bucket=bucket, Key="m",
                           UploadId=upload_id, MultipartUpload={"Parts": parts},
                           IfNoneMatch=first) == (412, "PreconditionFailed")
    # Nothing changed, and the upload stays open: it completes once the condition holds.
    assert _versions(s3, bucket) == before
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [
        upload_id]
    second = s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload_id,
                                          MultipartUpload={"Parts": parts},
                                          IfNoneMatch='"0123"')["ETag"]
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == b"second"
    upload_id, parts = _upload(s3, bucket, "m", b"third")
    assert status_and_code(s3.complete_multipart_upload, Bucket=bucket, Key="m",
                           UploadId=upload_id, MultipartUpload={"Parts": parts},
                           IfMatch=first) == (412, "PreconditionFailed")
    s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload_id,
                                 MultipartUpload={"Parts": parts}, IfNoneMatch=first)
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == b"third"
    assert second != first


def test_racing_creators_exactly_one_wins(s3, bucket: str) -> None:
    bodies = [os.urandom(300_000) for _ in range(6)]  # sharded, not inlined
    results: list[int | str] = [0] * len(bodies)
    start = threading.Barrier(len(bodies))

    def create(n: int) -> None:
        start.wait()
        try:
            s3.put_object(Bucket=bucket, Key="race", Body=bodies[n], IfNoneMatch="*")
            results[n] = 200
        except ClientError as exc:
            results[n] = error_code(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(200) == 1
    assert set(results) - {200} <= {"PreconditionFailed", "ConditionalRequestConflict"}
    winner = bodies[results.index(200)]
    assert s3.get_object(Bucket=bucket, Key="race")["Body"].read() == winner


def test_malformed_and_unknown_version_ids(s3, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    version = s3.put_object(Bucket=bucket, Key="v", Body=b"data")["VersionId"]
    assert s3.get_object(Bucket=bucket, Key="v", VersionId=version)["Body"].read() == b"data"
    for name in ("get_object", "head_object", "get_object_tagging", "delete_object"):
        with pytest.raises(ClientError) as err:
            getattr(s3, name)(Bucket=bucket, Key="v", VersionId="not-a-version")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        if name != "head_object":  # HEAD answers have no body
            assert error_code(err.value) == "InvalidArgument"
    absent = "f" * 32
    assert status_and_code(s3.get_object, Bucket=bucket, Key="v",
                           VersionId=absent) == (404, "NoSuchVersion")
    assert status_and_code(s3.copy_object, Bucket=bucket, Key="c",
                           CopySource={"Bucket": bucket, "Key": "v",
                                       "VersionId": "bogus"}) == (400, "InvalidArgument")
    assert status_and_code(s3.list_object_versions, Bucket=bucket, KeyMarker="v",
                           VersionIdMarker="bogus") == (400, "InvalidArgument")
    # Nothing was deleted by the refused requests.
    assert s3.get_object(Bucket=bucket, Key="v")["VersionId"] == version
