"""S3 behaviours found wrong by the ceph/s3-tests conformance suite, checked with
boto3 against the real S3 stack in process (SQLite metadata, six in-memory pods,
ObjectService and S3Frontend on a loopback port, one server for the module).

Each test names the s3-tests case it stands for.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import pytest
from aiohttp.test_utils import make_mocked_request
from botocore.config import Config
from botocore.exceptions import ClientError
from support.s3_stack import REGION, serve_s3_stack

from kurastore.gateway.app import build_gateway_app
from kurastore.gateway.config import GatewayConfig

MiB = 1 << 20
KEYS = ("AKCONFORM00000000001", "conform-secret-conform-secret-conform-00")


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator:
    with serve_s3_stack(tmp_path_factory.mktemp("s3c"), {"conform": KEYS}) as srv:
        yield boto3.client(
            "s3", endpoint_url=srv.endpoint, aws_access_key_id=KEYS[0],
            aws_secret_access_key=KEYS[1], region_name=REGION,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=20),
        )  # fmt: skip


@pytest.fixture
def bucket(s3) -> str:
    name = f"c-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _error(exc_info: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = exc_info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def test_list_v1_echoes_prefix_unencoded(s3, bucket):
    """test_bucket_list_prefix_unreadable: botocore asks for encoding-type=url but
    decodes only Marker/NextMarker/Delimiter/keys of a v1 listing, not its Prefix."""
    s3.put_object(Bucket=bucket, Key="\nkey", Body=b"")
    v1 = s3.list_objects(Bucket=bucket, Prefix="\n")
    assert v1["Prefix"] == "\n" and [o["Key"] for o in v1["Contents"]] == ["\nkey"]
    v2 = s3.list_objects_v2(Bucket=bucket, Prefix="\n")
    assert v2["Prefix"] == "\n" and [o["Key"] for o in v2["Contents"]] == ["\nkey"]


def test_content_encoding_kept_as_sent_without_aws_chunked(s3, bucket):
    """test_object_content_encoding_aws_chunked."""
    for sent, kept in (("deflate, gzip", "deflate, gzip"), ("gzip, aws-chunked", "gzip"),
                       ("aws-chunked, gzip", "gzip"), ("aws-chunked", None)):
        s3.put_object(Bucket=bucket, Key="e", Body=b"x", ContentEncoding=sent)
        assert s3.head_object(Bucket=bucket, Key="e").get("ContentEncoding") == kept


def test_upload_part_copy_range_past_source_end(s3, bucket):
    """test_multipart_copy_invalid_range: a copy range is not clipped."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"12345")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    with pytest.raises(ClientError) as err:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src"},
                            CopySourceRange="bytes=0-21")
    assert _error(err) == (416, "InvalidRange")
    part = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                               CopySource={"Bucket": bucket, "Key": "src"},
                               CopySourceRange="bytes=1-4")
    s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"2345"


def _multipart(s3, bucket: str, key: str, parts: list[bytes]) -> str:
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=uid,
                                                     PartNumber=n, Body=body)["ETag"]}
            for n, body in enumerate(parts, 1)]
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid,
                                        MultipartUpload={"Parts": done})["ETag"]


def test_object_attributes_parts_of_multipart_objects(s3, bucket):
    """test_get_(single_)multipart_object_attributes: PartsCount on the wire, and a
    one-part multipart object has parts while a plain PUT has none."""
    wanted = ["ETag", "ObjectParts", "ObjectSize"]
    etag = _multipart(s3, bucket, "one", [b"a" * 100])
    attrs = s3.get_object_attributes(Bucket=bucket, Key="one", ObjectAttributes=wanted)
    assert attrs["ETag"] == etag.strip('"') and attrs["ObjectSize"] == 100
    parts = attrs["ObjectParts"]
    assert parts["TotalPartsCount"] == 1 and parts["IsTruncated"] is False
    assert [(p["PartNumber"], p["Size"]) for p in parts["Parts"]] == [(1, 100)]
    _multipart(s3, bucket, "two", [b"b" * (5 * MiB), b"c" * 7])
    attrs = s3.get_object_attributes(Bucket=bucket, Key="two", ObjectAttributes=wanted,
                                     MaxParts=1)
    parts = attrs["ObjectParts"]
    assert parts["TotalPartsCount"] == 2 and parts["IsTruncated"] is True
    assert [(p["PartNumber"], p["Size"]) for p in parts["Parts"]] == [(1, 5 * MiB)]
    s3.put_object(Bucket=bucket, Key="plain", Body=b"z")
    plain = s3.get_object_attributes(Bucket=bucket, Key="plain", ObjectAttributes=wanted)
    assert "ObjectParts" not in plain


def test_put_if_match_on_missing_key_is_no_such_key(s3, bucket):
    """test_put_object_if_match: If-Match with no object is 404 NoSuchKey; with an
    object whose etag differs it is 412."""
    for value in ("*", "badetag"):
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket=bucket, Key="k", Body=b"v", IfMatch=value)
        assert _error(err) == (404, "NoSuchKey")
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch="badetag")
    assert _error(err) == (412, "PreconditionFailed")
    s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v2"


async def test_gateway_routes_keys_with_newlines_to_s3():
    """The server's catch-all S3 route matches a key holding a newline (%0A);
    a '.*' pattern would not, and such a PUT answered a bare 404."""
    app = build_gateway_app(GatewayConfig(cluster_secret=b"c" * 16, metadata_key=b"m" * 32))
    for path in ("/b/%0Akey", "/b/a%0Ab%0D%0Ac", "/b/plain"):
        match = await app.router.resolve(make_mocked_request("PUT", path, app=app))
        assert match.http_exception is None and match.handler.__name__ == "_s3", path


def test_repeated_complete_multipart_answers_the_first_result(s3, bucket):
    """test_multipart_upload(_small): a retried CompleteMultipartUpload succeeds
    with the same ETag; other parts, or a replaced object, still get NoSuchUpload."""
    uid = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    one = s3.upload_part(Bucket=bucket, Key="m", UploadId=uid, PartNumber=1, Body=b"x" * 10)
    parts = {"Parts": [{"PartNumber": 1, "ETag": one["ETag"]}]}
    first = s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=uid,
                                         MultipartUpload=parts)
    again = s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=uid,
                                         MultipartUpload=parts)
    assert again["ETag"] == first["ETag"] and again["Key"] == "m"
    other = {"Parts": [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]}
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=uid,
                                     MultipartUpload=other)
    assert _error(err) == (404, "NoSuchUpload")
    s3.put_object(Bucket=bucket, Key="m", Body=b"replaced")
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=uid,
                                     MultipartUpload=parts)
    assert _error(err) == (404, "NoSuchUpload")
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == b"replaced"
