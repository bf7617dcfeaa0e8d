"""boto3 (and a browser's CORS requests) against a real kurastore server: object and
bucket tagging with their limits, CORS configuration and answers, lifecycle
configuration and the x-amz-expiration it implies."""

from __future__ import annotations

import datetime
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError
from support.s3client import error_code

pytestmark = pytest.mark.clients


def _tags(pairs: dict[str, str]) -> dict:
    return {"TagSet": [{"Key": k, "Value": v} for k, v in pairs.items()]}


def test_object_tags_on_put_copy_multipart_and_by_version(s3, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="b=2&a=1")["VersionId"]
    assert s3.head_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPHeaders"][
        "x-amz-tagging-count"] == "2"
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == _tags({"a": "1", "b": "2"})[
        "TagSet"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"y")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    by_version = s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=first)
    assert by_version["VersionId"] == first and len(by_version["TagSet"]) == 2

    source = {"Bucket": bucket, "Key": "k", "VersionId": first}
    s3.copy_object(Bucket=bucket, Key="copied", CopySource=source)  # tags come along
    assert len(s3.get_object_tagging(Bucket=bucket, Key="copied")["TagSet"]) == 2
    s3.copy_object(Bucket=bucket, Key="replaced", CopySource=source, Tagging="c=3",
                   TaggingDirective="REPLACE")
    assert s3.get_object_tagging(Bucket=bucket, Key="replaced")["TagSet"] == [
        {"Key": "c", "Value": "3"}]
    s3.copy_object(Bucket=bucket, Key="meta", CopySource=source, MetadataDirective="REPLACE",
                   Metadata={"m": "1"})  # tagging directive COPY still copies the tags
    assert len(s3.get_object_tagging(Bucket=bucket, Key="meta")["TagSet"]) == 2

    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="p=q")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"z")
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={
        "Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="mp")["TagSet"] == [{"Key": "p", "Value": "q"}]


def test_tag_limits(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    for bad in ({f"k{i}": "v" for i in range(11)}, {"k" * 129: "v"}, {"k": "v" * 257}):
        with pytest.raises(ClientError) as err:
            s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=_tags(bad))
        assert error_code(err.value) == "InvalidTag"
    ten = {f"k{i}": "v" * 256 for i in range(10)}
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=_tags(ten))
    assert len(s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"]) == 10
    s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []

    with pytest.raises(ClientError) as err:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_code(err.value) == "NoSuchTagSet"
    fifty = {f"t{i:02d}": str(i) for i in range(50)}
    put = s3.put_bucket_tagging(Bucket=bucket, Tagging=_tags(fifty))
    # 200, not AWS's 204: minio-js takes only 200 (RGW and MinIO answer so too).
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert len(s3.get_bucket_tagging(Bucket=bucket)["TagSet"]) == 50
    with pytest.raises(ClientError) as err:
        s3.put_bucket_tagging(Bucket=bucket, Tagging=_tags({**fifty, "one-more": "x"}))
    assert error_code(err.value) == "InvalidTag"
    s3.delete_bucket_tagging(Bucket=bucket)


def _request(url: str, method: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_cors_configuration_preflight_and_actual_requests(s3, server, bucket: str) -> None:
    with pytest.raises(ClientError) as err:
        s3.get_bucket_cors(Bucket=bucket)
    assert error_code(err.value) == "NoSuchCORSConfiguration"
    url = f"{server.endpoint}/{bucket}/page.html"
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT",
                 "Access-Control-Request-Headers": "Content-Type, X-Amz-Meta-A"}
    assert _request(url, "OPTIONS", preflight)[0] == 403  # no configuration yet
    rules = [{"AllowedMethods": ["GET", "PUT"], "AllowedOrigins": ["https://*.example.com"],
              "AllowedHeaders": ["content-type", "x-amz-meta-*"], "ExposeHeaders": ["ETag"],
              "MaxAgeSeconds": 600}]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == rules

    status, headers = _request(url, "OPTIONS", preflight)
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert headers["Access-Control-Allow-Methods"] == "GET, PUT"
    assert headers["Access-Control-Max-Age"] == "600"
    # The requested headers, echoed in lower case as S3 does (and minio-go's suite checks).
    assert headers["Access-Control-Allow-Headers"] == "content-type, x-amz-meta-a"
    assert _request(url, "OPTIONS", {**preflight, "Origin": "https://evil.test"})[0] == 403
    assert _request(url, "OPTIONS", {**preflight, "Access-Control-Request-Method": "DELETE"}
                    )[0] == 403
    assert _request(url, "OPTIONS", {"Origin": "https://app.example.com"})[0] == 400

    # An actual (here unsigned, so refused) request still carries the CORS answer.
    s3.put_object(Bucket=bucket, Key="page.html", Body=b"<p>")
    status, headers = _request(url, "GET", {"Origin": "https://app.example.com"})
    assert status == 403 and headers["Access-Control-Expose-Headers"] == "ETag"
    presigned = s3.generate_presigned_url("get_object", Params={"Bucket": bucket,
                                                                "Key": "page.html"})
    status, headers = _request(presigned, "GET", {"Origin": "https://app.example.com"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Access-Control-Allow-Origin" not in _request(presigned, "GET", {})[1]

    s3.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(ClientError) as err:
        s3.get_bucket_cors(Bucket=bucket)
    assert error_code(err.value) == "NoSuchCORSConfiguration"


def test_lifecycle_configuration_and_expiration_header(s3, bucket: str) -> None:
    with pytest.raises(ClientError) as err:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_code(err.value) == "NoSuchLifecycleConfiguration"
    rules = [
        {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled",
         "Expiration": {"Days": 7}},
        {"ID": "old", "Filter": {"And": {"Prefix": "data/", "Tags": [{"Key": "t",
                                                                       "Value": "1"}]}},
         "Status": "Enabled", "NoncurrentVersionExpiration": {"NoncurrentDays": 30}},
        {"ID": "mpu", "Filter": {}, "Status": "Disabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == rules

    put = s3.put_object(Bucket=bucket, Key="logs/today", Body=b"x")
    assert 'rule-id="logs"' in put["Expiration"]
    expires = s3.head_object(Bucket=bucket, Key="logs/today")["Expiration"]
    when = datetime.datetime.strptime(expires.split('"')[1], "%a, %d %b %Y %H:%M:%S GMT")
    days = (when - datetime.datetime.now(datetime.UTC).replace(tzinfo=None)).days
    assert days == 7 and (when.hour, when.minute) == (0, 0)  # midnight UTC
    s3.put_object(Bucket=bucket, Key="other", Body=b"x")
    assert "Expiration" not in s3.head_object(Bucket=bucket, Key="other")

    for bad, code in [
        ({"ID": "x" * 256, "Prefix": "", "Status": "Enabled", "Expiration": {"Days": 1}},
         "InvalidArgument"),
        ({"ID": "a", "Prefix": "", "Status": "enabled", "Expiration": {"Days": 1}},
         "MalformedXML"),
        ({"ID": "a", "Prefix": "", "Status": "Enabled", "Expiration": {"Days": 0}},
         "InvalidArgument"),
    ]:
        with pytest.raises(ClientError) as err:
            s3.put_bucket_lifecycle_configuration(Bucket=bucket,
                                                  LifecycleConfiguration={"Rules": [bad]})
        assert error_code(err.value) == code, bad
    twice = [{"ID": "same", "Prefix": p, "Status": "Enabled", "Expiration": {"Days": 1}}
             for p in ("a", "b")]
    with pytest.raises(ClientError) as err:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket,
                                              LifecycleConfiguration={"Rules": twice})
    assert error_code(err.value) == "InvalidArgument"
    assert s3.delete_bucket_lifecycle(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert "Expiration" not in s3.head_object(Bucket=bucket, Key="logs/today")
