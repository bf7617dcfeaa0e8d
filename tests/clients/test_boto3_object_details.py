"""Object details against a real `kurastore server`, as boto3 users see them: a
part's own checksum on GET/HEAD ?partNumber= with checksum mode, non-ASCII user
metadata (stored decoded, answered RFC 2047-encoded as AWS does), bucket policies
on s3:ExistingObjectTag, and POST policies AWS refuses as malformed."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import time
import uuid
import xml.etree.ElementTree as ET
from email.header import decode_header, make_header
from http.client import HTTPConnection
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError
from support.cluster import ACCESS_KEY, REGION, SECRET_KEY
from support.s3client import error_code

pytestmark = pytest.mark.clients


def _sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_part_checksums_on_get_and_head(s3, bucket: str) -> None:
    bodies = [os.urandom(5 << 20), os.urandom(1000)]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp",
                                           ChecksumAlgorithm="SHA256")["UploadId"]
    parts = []
    for number, body in enumerate(bodies, 1):
        got = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=number,
                             Body=body, ChecksumAlgorithm="SHA256")
        assert got["ChecksumSHA256"] == _sha256(body)
        parts.append({"ETag": got["ETag"], "PartNumber": number,
                      "ChecksumSHA256": got["ChecksumSHA256"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                        MultipartUpload={"Parts": parts})
    assert done["ChecksumSHA256"].endswith("-2")
    whole = s3.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    assert whole["ChecksumSHA256"] == done["ChecksumSHA256"]
    for number, body in enumerate(bodies, 1):
        head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=number, ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] == _sha256(body)
        assert head["ChecksumType"] == "COMPOSITE" and head["PartsCount"] == 2
        # botocore checks the part's bytes against the checksum it is given.
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=number, ChecksumMode="ENABLED")
        assert got["ChecksumSHA256"] == _sha256(body)
        assert got["Body"].read() == body
    plain = s3.head_object(Bucket=bucket, Key="mp", PartNumber=1)
    assert "ChecksumSHA256" not in plain


def test_non_ascii_metadata_is_answered_rfc2047_encoded(s3, bucket: str) -> None:
    def raw_utf8_header(**kwargs) -> None:  # botocore's Metadata= takes ASCII only
        kwargs["params"]["headers"]["x-amz-meta-note"] = "café ☕"

    s3.meta.events.register("before-call.s3.PutObject", raw_utf8_header)
    try:
        s3.put_object(Bucket=bucket, Key="utf8", Body=b"x", Metadata={"plain": "ascii"})
    finally:
        s3.meta.events.unregister("before-call.s3.PutObject", raw_utf8_header)
    meta = s3.head_object(Bucket=bucket, Key="utf8")["Metadata"]
    assert meta["plain"] == "ascii"
    assert meta["note"].startswith("=?UTF-8?B?")
    assert str(make_header(decode_header(meta["note"]))) == "café ☕"

    # A value sent RFC 2047-encoded is stored decoded and answered the same way.
    encoded = "=?ISO-8859-1?Q?na=EFve?="
    s3.put_object(Bucket=bucket, Key="2047", Body=b"x", Metadata={"word": encoded})
    word = s3.get_object(Bucket=bucket, Key="2047")["Metadata"]["word"]
    assert str(make_header(decode_header(word))) == "naïve"


def test_iso_8859_1_metadata_bytes_are_signed_and_stored(server, s3, bucket: str) -> None:
    """A client that sends a raw ISO-8859-1 byte (and signs those bytes) is served."""
    body, now = b"x", datetime.datetime.now(datetime.UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    url = urlsplit(server.endpoint)
    headers = [(b"host", url.netloc.encode()),
               (b"x-amz-content-sha256", hashlib.sha256(body).hexdigest().encode()),
               (b"x-amz-date", amz_date.encode()), (b"x-amz-meta-note", b"caf\xe9")]
    names = b";".join(name for name, _ in headers)
    canonical = (f"PUT\n/{bucket}/latin1\n\n".encode()
                 + b"".join(name + b":" + value + b"\n" for name, value in headers)
                 + b"\n" + names + b"\n" + headers[1][1])
    scope = f"{day}/{REGION}/s3/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical).hexdigest()}"
    key = ("AWS4" + SECRET_KEY).encode()
    for part in (day, REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    conn = HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest("PUT", f"/{bucket}/latin1", skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.putheader("Authorization", f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, "
                                        f"SignedHeaders={names.decode()}, Signature={signature}")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    note = s3.head_object(Bucket=bucket, Key="latin1")["Metadata"]["note"]
    assert str(make_header(decode_header(note))) == "café"


def test_policy_on_existing_object_tags(s3, bucket: str, other) -> None:
    for key, tags in (("public", {"security": "public", "x": "y"}),
                      ("private", {"security": "private"}), ("untagged", {})):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        if tags:
            s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": [
                {"Key": k, "Value": v} for k, v in tags.items()]})
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow", "Principal": "*",
            "Action": ["s3:GetObject", "s3:GetObjectTagging"],
            "Resource": f"arn:aws:s3:::{bucket}/*",
            "Condition": {"StringEquals": {"s3:ExistingObjectTag/security": "public"}},
        }],
    }))  # fmt: skip
    assert other["client"].get_object(Bucket=bucket, Key="public")["Body"].read() == b"public"
    assert len(other["client"].get_object_tagging(Bucket=bucket, Key="public")["TagSet"]) == 2
    for key in ("private", "untagged"):
        for call in (other["client"].get_object, other["client"].get_object_tagging):
            with pytest.raises(ClientError) as err:
                call(Bucket=bucket, Key=key)
            assert error_code(err.value) == "AccessDenied"


def _post(server, bucket: str, policy: dict) -> tuple[int, str]:
    """A SigV2-signed browser form upload of k.txt; (status, error code)."""
    encoded = base64.b64encode(json.dumps(policy).encode())
    signature = base64.b64encode(hmac.new(SECRET_KEY.encode(), encoded, hashlib.sha1).digest())
    fields = {"key": "k.txt", "AWSAccessKeyId": ACCESS_KEY, "policy": encoded.decode(),
              "signature": signature.decode(), "Content-Type": "text/plain"}
    boundary = "----kurastore" + uuid.uuid4().hex
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                    f"{value}\r\n".encode() for name, value in fields.items())
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="k.txt"'
             f"\r\nContent-Type: text/plain\r\n\r\nbar\r\n--{boundary}--\r\n").encode()
    url = urlsplit(server.endpoint)
    conn = HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("POST", f"/{bucket}", body=body,
                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    return resp.status, (ET.fromstring(data).findtext("Code") or "") if data else ""


def test_post_policies_aws_refuses(server, s3, bucket: str) -> None:
    later = time.time() + 600
    conditions = [{"bucket": bucket}, ["starts-with", "$key", ""],
                  ["starts-with", "$Content-Type", "text/"]]
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(later))
    assert _post(server, bucket, {"expiration": iso, "conditions": conditions})[0] == 204
    s3.delete_object(Bucket=bucket, Key="k.txt")
    spaced = time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime(later))  # str(datetime)
    assert _post(server, bucket, {"expiration": spaced, "conditions": conditions}) == (
        400, "InvalidPolicyDocument")
    assert _post(server, bucket, {"expiration": iso, "conditions": [*conditions, {}]}) == (
        400, "InvalidPolicyDocument")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k.txt")
