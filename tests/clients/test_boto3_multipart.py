"""boto3 multipart uploads against a real kurastore server."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from support.s3client import error_code

pytestmark = pytest.mark.clients

MiB = 1 << 20


def multipart_etag(parts: list[bytes]) -> str:
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def test_transfer_manager_100mib(s3, bucket: str, workdir: Path) -> None:
    src = workdir / "big.bin"
    data = os.urandom(100 * MiB)
    src.write_bytes(data)
    s3.upload_file(str(src), bucket, "big.bin")  # default TransferConfig: 8 MiB parts
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-13"')
    dst = workdir / "back.bin"
    s3.download_file(bucket, "big.bin", str(dst))
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()
    part2 = s3.get_object(Bucket=bucket, Key="big.bin", PartNumber=2)
    assert part2["PartsCount"] == 13
    assert part2["Body"].read() == data[8 * MiB:16 * MiB]


def test_manual_multipart_lifecycle(s3, bucket: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB + 7), os.urandom(1000)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ContentType="video/mp4",
                                    Metadata={"m": "1"})
    uid = up["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in listed] == [("mp", uid)]
    etags = []
    for n, body in enumerate(parts, start=1):
        etags.append(s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=n,
                                    Body=body)["ETag"])
    listed_parts = s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed_parts] == [
        (n, e, len(b)) for n, (e, b) in enumerate(zip(etags, parts, strict=True), start=1)
    ]
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="mp")  # not visible before Complete
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                   for n, e in enumerate(etags, start=1)]},
    )
    assert done["ETag"] == multipart_etag(parts)
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["Body"].read() == b"".join(parts)
    assert got["ContentType"] == "video/mp4" and got["Metadata"] == {"m": "1"}
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    rng = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={5 * MiB - 10}-{5 * MiB + 9}")
    assert rng["Body"].read() == b"".join(parts)[5 * MiB - 10:5 * MiB + 10]


def test_multipart_errors(s3, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="bad")["UploadId"]
    small = s3.upload_part(Bucket=bucket, Key="bad", UploadId=uid, PartNumber=1,
                           Body=b"tiny")["ETag"]
    last = s3.upload_part(Bucket=bucket, Key="bad", UploadId=uid, PartNumber=2,
                          Body=b"end")["ETag"]
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="bad", UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": small},
                                       {"PartNumber": 2, "ETag": last}]})
    assert error_code(err.value) == "EntityTooSmall"
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="bad", UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": last},
                                       {"PartNumber": 1, "ETag": small}]})
    assert error_code(err.value) == "InvalidPartOrder"
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="bad", UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]})
    assert error_code(err.value) == "InvalidPart"
    with pytest.raises(ClientError) as err:
        s3.upload_part(Bucket=bucket, Key="bad", UploadId=uid, PartNumber=10001, Body=b"x")
    assert error_code(err.value) == "InvalidArgument"
    s3.abort_multipart_upload(Bucket=bucket, Key="bad", UploadId=uid)
    with pytest.raises(ClientError) as err:
        s3.list_parts(Bucket=bucket, Key="bad", UploadId=uid)
    assert error_code(err.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="bad")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_malformed_complete_xml(server, s3, bucket: str) -> None:
    import urllib.error
    import urllib.request

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from support.cluster import ACCESS_KEY, REGION, SECRET_KEY

    uid = s3.create_multipart_upload(Bucket=bucket, Key="x")["UploadId"]
    broken = b"<CompleteMultipartUpload><Part><PartNumber>1"
    request = AWSRequest(method="POST", url=f"{server.endpoint}/{bucket}/x?uploadId={uid}",
                         data=broken)
    request.headers["x-amz-content-sha256"] = hashlib.sha256(broken).hexdigest()
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
    req = urllib.request.Request(request.url, data=broken, method="POST",
                                 headers=dict(request.headers.items()))
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 400
    assert b"<Code>MalformedXML</Code>" in err.value.read()
    # The upload is untouched and can still be aborted.
    s3.abort_multipart_upload(Bucket=bucket, Key="x", UploadId=uid)


def test_upload_part_copy_with_range(s3, bucket: str) -> None:
    src = os.urandom(12 * MiB)
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="cp")["UploadId"]
    p1 = s3.upload_part_copy(Bucket=bucket, Key="cp", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "src"},
                             CopySourceRange=f"bytes=0-{6 * MiB - 1}")["CopyPartResult"]["ETag"]
    p2 = s3.upload_part_copy(Bucket=bucket, Key="cp", UploadId=uid, PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "src"},
                             CopySourceRange=f"bytes={10 * MiB}-{12 * MiB - 1}"
                             )["CopyPartResult"]["ETag"]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="cp", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": p2}]})
    body = s3.get_object(Bucket=bucket, Key="cp")["Body"].read()
    assert body == src[:6 * MiB] + src[10 * MiB:]


def test_multipart_with_checksums(s3, bucket: str, workdir: Path) -> None:
    from boto3.s3.transfer import TransferConfig

    data = os.urandom(20 * MiB + 3)
    path = workdir / "ck.bin"
    path.write_bytes(data)
    s3.upload_file(str(path), bucket, "ck.bin", ExtraArgs={"ChecksumAlgorithm": "CRC32"},
                   Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    head = s3.head_object(Bucket=bucket, Key="ck.bin", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(data)
    assert head.get("ChecksumCRC32")
    assert s3.get_object(Bucket=bucket, Key="ck.bin")["Body"].read() == data
