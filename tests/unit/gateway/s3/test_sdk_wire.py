"""What the AWS SDKs for Go v2 and Java v2 send and read, on the wire: list-valued
headers as one line per value (HTTP makes repeated field lines the same list as one
comma-joined line, RFC 9110 section 5.3), and PutObject's checksum type."""

from __future__ import annotations

import http.client
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from support.s3_stack import REGION, Server, serve_s3_stack

KEYS = ("AKREPEAT000000000001", "repeat-secret-repeat-secret-repeat-00000")
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
MiB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with serve_s3_stack(tmp_path_factory.mktemp("s3"), {"repeat": KEYS}) as srv:
        yield srv


def signed_get(server: Server, path: str, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    """GET `path` signed with SigV4 over every header line, duplicates kept as lines."""
    request = AWSRequest(method="GET", url=server.endpoint + path)
    for name, value in headers:
        request.headers.add_header(name, value)  # appends: repeated lines stay repeated
    S3SigV4Auth(Credentials(*KEYS), "s3", REGION).add_auth(request)
    url = urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in request.headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def client(server: Server):
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=KEYS[0],
        aws_secret_access_key=KEYS[1],
        region_name=REGION,
    )


def test_object_attributes_as_repeated_header_lines(server: Server) -> None:
    s3 = client(server)
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    parts = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(
                Bucket=bucket, Key="mp", UploadId=upload, PartNumber=n, Body=body
            )["ETag"],
        }
        for n, body in enumerate((b"a" * (5 * MiB), b"tail"), 1)
    ]
    etag = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": parts}
    )["ETag"]

    status, body = signed_get(
        server,
        f"/{bucket}/mp?attributes",
        [
            ("x-amz-object-attributes", "ETag"),
            ("x-amz-object-attributes", "ObjectParts"),
            ("x-amz-object-attributes", "ObjectSize"),
        ],
    )
    assert status == 200, body
    doc = ET.fromstring(body)
    assert doc.findtext(f"{NS}ETag") == etag.strip('"')
    assert doc.findtext(f"{NS}ObjectSize") == str(5 * MiB + 4)
    assert doc.findtext(f"{NS}ObjectParts/{NS}PartsCount") == "2"

    # Mixed forms are one list too; an unknown name in any line is still refused.
    status, body = signed_get(
        server,
        f"/{bucket}/mp?attributes",
        [
            ("x-amz-object-attributes", "ETag,StorageClass"),
            ("x-amz-object-attributes", "ObjectSize"),
        ],
    )
    doc = ET.fromstring(body)
    assert status == 200 and doc.findtext(f"{NS}ObjectSize") == str(5 * MiB + 4)
    assert doc.findtext(f"{NS}StorageClass") == "STANDARD"
    status, body = signed_get(
        server,
        f"/{bucket}/mp?attributes",
        [
            ("x-amz-object-attributes", "ETag"),
            ("x-amz-object-attributes", "Bogus"),
        ],
    )
    assert status == 400 and b"InvalidArgument" in body


def test_put_object_answers_its_checksum_type(server: Server) -> None:
    """AWS: "For PutObject uploads, the checksum type is always FULL_OBJECT"; the SDKs
    expose it as PutObjectOutput.ChecksumType."""
    s3 = client(server)
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"data", ChecksumAlgorithm="CRC64NVME")
    assert put["ChecksumType"] == "FULL_OBJECT" and put["ChecksumCRC64NVME"]
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumType"] == "FULL_OBJECT"
