"""Browser-form uploads (PostObject) signed by boto3's generate_presigned_post,
sent as a browser sends them: an HTML multipart/form-data body, built here with
the standard library and posted with http.client."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import uuid
import xml.etree.ElementTree as ET
from http.client import HTTPConnection
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from support.cluster import ACCESS_KEY, REGION, SECRET_KEY

from kurastore.gateway.admin.client import AdminClient

pytestmark = pytest.mark.clients


def encode_form(fields: dict[str, str], file_name: str, data: bytes,
                file_type: str = "application/octet-stream") -> tuple[bytes, str]:
    """A multipart/form-data body, the file field last (as S3 requires)."""
    boundary = "----kurastore" + uuid.uuid4().hex
    out = bytearray()
    for name, value in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{value}\r\n").encode()
    out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{file_name}\"\r\nContent-Type: {file_type}\r\n\r\n").encode()
    out += data + f"\r\n--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def post_form(url: str, fields: dict[str, str], file_name: str, data: bytes
              ) -> tuple[int, dict[str, str], bytes]:
    body, ctype = encode_form(fields, file_name, data)
    parts = urlsplit(url)
    conn = HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", parts.path or "/", body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def error(body: bytes) -> tuple[str, str]:
    doc = ET.fromstring(body)
    return doc.findtext("Code") or "", doc.findtext("Message") or ""


@pytest.fixture(scope="module")
def v4(server):
    """generate_presigned_post signs with SigV2 unless SigV4 is asked for."""
    return boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name=REGION,
                        config=Config(signature_version="s3v4"))


def test_client_version() -> None:
    assert tuple(int(x) for x in boto3.__version__.split(".")[:2]) >= (1, 26)


def test_presigned_post_upload_with_conditions(s3, v4, bucket: str) -> None:
    post = v4.generate_presigned_post(
        bucket, "uploads/${filename}",
        Fields={"Content-Type": "image/png", "x-amz-meta-origin": "browser",
                "success_action_status": "201"},
        Conditions=[["starts-with", "$key", "uploads/"], {"Content-Type": "image/png"},
                    {"x-amz-meta-origin": "browser"}, {"success_action_status": "201"},
                    ["content-length-range", 1, 10_000]],
        ExpiresIn=600,
    )
    assert set(post["fields"]) >= {"key", "policy", "x-amz-algorithm", "x-amz-credential",
                                    "x-amz-date", "x-amz-signature"}
    policy = json.loads(base64.b64decode(post["fields"]["policy"]))
    assert {"bucket": bucket} in policy["conditions"]
    data = os.urandom(5000)
    status, headers, body = post_form(post["url"], post["fields"], "photo.png", data)
    assert status == 201, body
    doc = ET.fromstring(body)
    assert (doc.findtext("Bucket"), doc.findtext("Key")) == (bucket, "uploads/photo.png")
    got = s3.get_object(Bucket=bucket, Key="uploads/photo.png")
    assert got["Body"].read() == data
    assert got["ContentType"] == "image/png"
    assert got["Metadata"] == {"origin": "browser"}
    assert got["ETag"] == headers["etag"] == doc.findtext("ETag")


def test_default_answer_is_204_and_redirect_is_303(s3, v4, bucket: str) -> None:
    post = v4.generate_presigned_post(bucket, "plain.txt", ExpiresIn=600)
    status, headers, _ = post_form(post["url"], post["fields"], "x.txt", b"hello")
    assert status == 204
    assert s3.get_object(Bucket=bucket, Key="plain.txt")["Body"].read() == b"hello"
    target = "https://example.com/done?from=form"
    post = v4.generate_presigned_post(bucket, "r.txt", Fields={"success_action_redirect": target},
                                      Conditions=[{"success_action_redirect": target}])
    status, headers, _ = post_form(post["url"], post["fields"], "r.txt", b"r")
    assert status == 303
    assert headers["location"].startswith(target + f"&bucket={bucket}&key=r.txt&etag=")


def test_tampered_policy_is_refused(s3, v4, bucket: str) -> None:
    post = v4.generate_presigned_post(bucket, "t.txt", Conditions=[["content-length-range", 1, 10]])
    policy = json.loads(base64.b64decode(post["fields"]["policy"]))
    policy["conditions"] = [c for c in policy["conditions"] if not isinstance(c, list)
                            or c[0] != "content-length-range"]
    fields = {**post["fields"], "policy": base64.b64encode(json.dumps(policy).encode()).decode()}
    status, _, body = post_form(post["url"], fields, "t.txt", b"x" * 100)
    assert status == 403
    assert error(body)[0] == "SignatureDoesNotMatch"
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="t.txt")


def test_expired_policy_is_refused(s3, v4, bucket: str) -> None:
    post = v4.generate_presigned_post(bucket, "e.txt", ExpiresIn=-60)
    status, _, body = post_form(post["url"], post["fields"], "e.txt", b"late")
    assert status == 403
    assert error(body) == ("AccessDenied", "Invalid according to Policy: Policy expired.")


def test_too_big_and_failed_conditions(s3, v4, bucket: str) -> None:
    post = v4.generate_presigned_post(
        bucket, "docs/${filename}",
        Conditions=[["content-length-range", 10, 1000], ["starts-with", "$key", "docs/"]],
    )
    status, _, body = post_form(post["url"], post["fields"], "big.bin", os.urandom(4000))
    assert status == 400
    assert error(body)[0] == "EntityTooLarge"
    status, _, body = post_form(post["url"], post["fields"], "small.bin", b"x")
    assert (status, error(body)[0]) == (400, "EntityTooSmall")
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert listed == []
    fields = {**post["fields"], "key": "elsewhere/${filename}"}
    status, _, body = post_form(post["url"], fields, "ok.bin", b"x" * 20)
    assert status == 403
    assert error(body) == ("AccessDenied", 'Invalid according to Policy: Policy Condition '
                                           'failed: ["starts-with", "$key", "docs/"]')
    fields = {**post["fields"], "x-amz-meta-sneaky": "1"}
    status, _, body = post_form(post["url"], fields, "ok.bin", b"x" * 20)
    extra = "Invalid according to Policy: Extra input fields: x-amz-meta-sneaky"
    assert (status, error(body)) == (403, ("AccessDenied", extra))
    status, _, body = post_form(post["url"], post["fields"], "ok.bin", b"x" * 20)
    assert status == 204
    assert s3.get_object(Bucket=bucket, Key="docs/ok.bin")["Body"].read() == b"x" * 20


def test_a_form_posted_to_an_object_url_is_method_not_allowed(s3, v4, bucket: str) -> None:
    post = v4.generate_presigned_post(bucket, "misdirected.txt")
    status, _, body = post_form(post["url"] + "/misdirected.txt", post["fields"],
                                "misdirected.txt", b"data")
    assert (status, error(body)[0]) == (405, "MethodNotAllowed")
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="misdirected.txt")


def test_missing_fields(s3, v4, bucket: str) -> None:
    post = v4.generate_presigned_post(bucket, "m.txt")
    without_key = {k: v for k, v in post["fields"].items() if k != "key"}
    status, _, body = post_form(post["url"], without_key, "m.txt", b"m")
    assert (status, error(body)[0]) == (400, "InvalidArgument")
    without_sig = {k: v for k, v in post["fields"].items() if k != "x-amz-signature"}
    status, _, body = post_form(post["url"], without_sig, "m.txt", b"m")
    assert (status, error(body)[0]) == (400, "InvalidArgument")
    anonymous = {"key": "m.txt"}
    status, _, body = post_form(post["url"], anonymous, "m.txt", b"m")
    assert (status, error(body)[0]) == (403, "AccessDenied")


def test_a_form_part_without_a_name_is_malformed(s3, v4, bucket: str) -> None:
    post = v4.generate_presigned_post(bucket, "nameless.txt")
    body, ctype = encode_form(post["fields"], "nameless.txt", b"data")
    body = body.replace(b'name="file"', b'name=""')
    parts = urlsplit(post["url"])
    conn = HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", parts.path or "/", body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        status, answer = resp.status, resp.read()
    finally:
        conn.close()
    assert (status, error(answer)[0]) == (400, "MalformedPOSTRequest")
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="nameless.txt")


def test_sigv2_form(server, bucket: str) -> None:
    v2 = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
                      aws_secret_access_key=SECRET_KEY, region_name=REGION,
                      config=Config(signature_version="s3"))
    post = v2.generate_presigned_post(bucket, "v2.txt")
    assert {"AWSAccessKeyId", "signature", "policy"} <= set(post["fields"])
    status, _, body = post_form(post["url"], post["fields"], "v2.txt", b"version two")
    assert status == 204, body
    assert v2.get_object(Bucket=bucket, Key="v2.txt")["Body"].read() == b"version two"
    bad = {**post["fields"], "signature": base64.b64encode(b"0" * 20).decode()}
    status, _, body = post_form(post["url"], bad, "v2.txt", b"x")
    assert (status, error(body)[0]) == (403, "SignatureDoesNotMatch")


def test_checksum_and_tagging_fields(s3, v4, bucket: str) -> None:
    data = os.urandom(2048)
    good = base64.b64encode(hashlib.sha256(data).digest()).decode()
    tagging = ("<Tagging><TagSet><Tag><Key>team</Key><Value>web</Value></Tag>"
               "</TagSet></Tagging>")
    conditions = [["starts-with", "$x-amz-checksum-sha256", ""], {"tagging": tagging}]
    post = v4.generate_presigned_post(bucket, "sum.bin", Conditions=conditions,
                                      Fields={"tagging": tagging})
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    status, _, body = post_form(post["url"], {**post["fields"], "x-amz-checksum-sha256": wrong},
                                "sum.bin", data)
    assert (status, error(body)[0]) == (400, "BadDigest")
    status, headers, body = post_form(
        post["url"], {**post["fields"], "x-amz-checksum-sha256": good}, "sum.bin", data)
    assert status == 204, body
    assert headers["x-amz-checksum-sha256"] == good  # echoed, as a PUT echoes its header's
    head = s3.head_object(Bucket=bucket, Key="sum.bin", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == good
    tags = s3.get_object_tagging(Bucket=bucket, Key="sum.bin")["TagSet"]
    assert tags == [{"Key": "team", "Value": "web"}]


def test_signer_must_own_the_bucket(server, s3, bucket: str) -> None:
    async def new_user() -> dict:
        async with AdminClient(server.endpoint, ACCESS_KEY, SECRET_KEY) as admin:
            return await admin.create_user(f"poster-{uuid.uuid4().hex[:8]}")

    user = asyncio.run(new_user())
    other = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=user["access_key"],
                         aws_secret_access_key=user["secret_key"], region_name=REGION,
                         config=Config(signature_version="s3v4"))
    post = other.generate_presigned_post(bucket, "intruder.txt")
    status, _, body = post_form(post["url"], post["fields"], "i.txt", b"not yours")
    assert (status, error(body)[0]) == (403, "AccessDenied")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_large_file_streams_through(s3, v4, bucket: str) -> None:
    data = os.urandom(12 * (1 << 20) + 5)
    post = v4.generate_presigned_post(bucket, "big/${filename}",
                                      Conditions=[["starts-with", "$key", "big/"],
                                                  ["content-length-range", 0, 64 << 20]])
    status, _, body = post_form(post["url"], post["fields"], "blob.bin", data)
    assert status == 204, body
    got = s3.get_object(Bucket=bucket, Key="big/blob.bin")
    assert got["ContentLength"] == len(data)
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(data).digest()


def test_acl_field(s3, v4, bucket: str) -> None:
    post = v4.generate_presigned_post(bucket, "acl.txt", Fields={"acl": "private"},
                                      Conditions=[["starts-with", "$acl", ""]])
    status, _, body = post_form(post["url"], post["fields"], "acl.txt", b"a")
    assert status == 204, body
    assert s3.get_object_acl(Bucket=bucket, Key="acl.txt")["Grants"][0]["Permission"] == (
        "FULL_CONTROL"
    )
    status, _, body = post_form(post["url"], {**post["fields"], "acl": "public-read"},
                                "acl.txt", b"b")
    assert status == 204, body
    grants = s3.get_object_acl(Bucket=bucket, Key="acl.txt")["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
            "Permission": "READ"} in grants
    assert s3.get_object(Bucket=bucket, Key="acl.txt")["Body"].read() == b"b"


def test_a_form_asking_for_sse_s3_is_stored_encrypted_and_says_so(s3, v4, bucket: str) -> None:
    sse = {"x-amz-server-side-encryption": "AES256"}
    post = v4.generate_presigned_post(bucket, "enc.txt", Fields=sse, Conditions=[sse],
                                      ExpiresIn=600)
    status, headers, _ = post_form(post["url"], post["fields"], "enc.txt", b"secret")
    assert status == 204
    assert headers["x-amz-server-side-encryption"] == "AES256"
    got = s3.get_object(Bucket=bucket, Key="enc.txt")
    assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == b"secret"
