"""Server-side encryption through real clients (boto3, aws-cli, rclone) against a real
kurastore server: SSE-S3, SSE-KMS and SSE-C on PUT/GET/HEAD, ranges, multipart, copies,
the refusals AWS makes, and that the pods' disks never hold the plaintext.

Rules: every test checks what a user sees (answer headers, bytes, error status); the
bucket default-encryption API is tested in test_boto3_bucket_encryption.py, restart
survival elsewhere. rclone (aws-sdk-go) will not send SSE-C keys over plain HTTP, so its
tests go through a TLS relay in front of the server (self-signed, --no-check-certificate).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from support.certs import CertificateAuthority
from support.cli_env import aws_env, rclone_env
from support.cluster import ACCESS_KEY, SECRET_KEY
from support.s3client import error_code, make_client
from swiftclient import client as swift_client

pytestmark = pytest.mark.clients

KiB = 1 << 10
MiB = 1 << 20
# SSE-C keys as boto3 takes them everywhere (GetObjectAttributes accepts only str): 32
# ASCII characters are the raw 256-bit key.
KEY = "kurastore-sse-c-test-key-000001A"
OTHER_KEY = "kurastore-sse-c-test-key-000002B"
SSE_C_HEADERS = "x-amz-server-side-encryption-customer-"
GOOD_KEY_B64 = base64.b64encode(KEY.encode()).decode()


def sse_c(key: str = KEY) -> dict[str, object]:
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def copy_source_sse_c(key: str = KEY) -> dict[str, object]:
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}


def b64md5(key: str) -> str:
    return base64.b64encode(hashlib.md5(key.encode()).digest()).decode()


def failure(call, *args, **kwargs) -> tuple[int, str]:
    """(HTTP status, S3 error code) of a call that must fail."""
    with pytest.raises(ClientError) as err:
        call(*args, **kwargs)
    return err.value.response["ResponseMetadata"]["HTTPStatusCode"], error_code(err.value)


def assert_absent(s3, bucket: str, key: str) -> None:
    assert failure(s3.head_object, Bucket=bucket, Key=key)[0] == 404


def read(s3, bucket: str, key: str, **kwargs) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()


def odd_ranges(size: int) -> list[tuple[int, int]]:
    """Inclusive (first, last) ranges at offsets that are not multiples of 16, spread over
    the whole object: its start, every MiB boundary (stripes), its end."""
    out = [(1, 17), (3, 3), (size - 7, size - 1)]
    for boundary in range(MiB, size, MiB):
        out.append((boundary - 13, boundary + 5))
    out.append((size // 3 + 1, size // 3 + 1 + 100_003))
    return [(a, min(b, size - 1)) for a, b in out if 0 <= a < size]


# -- SSE-S3 and SSE-KMS --------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 3 * KiB + 5, MiB + 7, 9 * MiB + 11])
def test_sse_s3_round_trip(s3, bucket: str, size: int) -> None:
    body = os.urandom(size)
    put = s3.put_object(Bucket=bucket, Key="o", Body=body, ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    # The ETag stays the MD5 of the plaintext (AWS does so for SSE-S3).
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    head = s3.head_object(Bucket=bucket, Key="o")
    assert head["ServerSideEncryption"] == "AES256" and head["ContentLength"] == size
    got = s3.get_object(Bucket=bucket, Key="o")
    assert got["ServerSideEncryption"] == "AES256"
    assert got["Body"].read() == body
    if size >= 16:
        for first, last in odd_ranges(size):
            ranged = s3.get_object(Bucket=bucket, Key="o", Range=f"bytes={first}-{last}")
            assert ranged["Body"].read() == body[first:last + 1], (first, last)
            assert ranged["ContentRange"] == f"bytes {first}-{last}/{size}"
        assert read(s3, bucket, "o", Range="bytes=-21") == body[-21:]


def test_sse_kms_key_ids_and_context(s3, bucket: str) -> None:
    body = os.urandom(200 * KiB + 3)
    put = s3.put_object(Bucket=bucket, Key="named", Body=body, ServerSideEncryption="aws:kms",
                        SSEKMSKeyId="some-key")
    assert (put["ServerSideEncryption"], put["SSEKMSKeyId"]) == ("aws:kms", "some-key")
    for answer in (s3.head_object(Bucket=bucket, Key="named"),
                   s3.get_object(Bucket=bucket, Key="named")):
        assert (answer["ServerSideEncryption"], answer["SSEKMSKeyId"]) == ("aws:kms", "some-key")
    assert read(s3, bucket, "named") == body

    put = s3.put_object(Bucket=bucket, Key="default", Body=b"kms", ServerSideEncryption="aws:kms")
    assert put["SSEKMSKeyId"] == "aws/s3"
    head = s3.head_object(Bucket=bucket, Key="default")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", "aws/s3")
    assert read(s3, bucket, "default") == b"kms"

    context = base64.b64encode(json.dumps({"project": "kura", "team": "x"}).encode()).decode()
    s3.put_object(Bucket=bucket, Key="ctx", Body=body, ServerSideEncryption="aws:kms",
                  SSEKMSKeyId="ctx-key", SSEKMSEncryptionContext=context)
    got = s3.get_object(Bucket=bucket, Key="ctx", Range="bytes=77-5000")
    assert got["SSEKMSKeyId"] == "ctx-key" and got["Body"].read() == body[77:5001]

    put = s3.put_object(Bucket=bucket, Key="dsse", Body=body, ServerSideEncryption="aws:kms:dsse",
                        SSEKMSKeyId="some-key")
    assert put["ServerSideEncryption"] == "aws:kms:dsse"
    assert s3.head_object(Bucket=bucket, Key="dsse")["ServerSideEncryption"] == "aws:kms:dsse"
    assert read(s3, bucket, "dsse") == body


def test_unknown_sse_value_is_refused(s3, bucket: str) -> None:
    status, code = failure(s3.put_object, Bucket=bucket, Key="o", Body=b"x",
                           ServerSideEncryption="aes:kms")
    assert (status, code) == (400, "InvalidArgument")
    assert_absent(s3, bucket, "o")
    # x-amz-server-side-encryption on a read is refused too (boto3 has no parameter for
    # it on GetObject: the header goes in raw).
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x", ServerSideEncryption="AES256")
    client = make_client(s3.meta.endpoint_url)
    client.meta.events.register(
        "before-call.s3.GetObject",
        lambda params, **_: params["headers"].update({"x-amz-server-side-encryption": "AES256"}))
    assert failure(client.get_object, Bucket=bucket, Key="plain")[0] == 400


# -- SSE-C ---------------------------------------------------------------------------


def test_sse_c_reads_need_the_right_key(s3, bucket: str) -> None:
    body = os.urandom(3 * MiB + 101)
    put = s3.put_object(Bucket=bucket, Key="c", Body=body, **sse_c())
    assert put["SSECustomerAlgorithm"] == "AES256"
    assert put["SSECustomerKeyMD5"] == b64md5(KEY)
    assert "ServerSideEncryption" not in put

    assert failure(s3.get_object, Bucket=bucket, Key="c") == (400, "InvalidRequest")
    assert failure(s3.head_object, Bucket=bucket, Key="c")[0] == 400
    assert failure(s3.get_object, Bucket=bucket, Key="c", **sse_c(OTHER_KEY))[0] == 400
    assert failure(s3.head_object, Bucket=bucket, Key="c", **sse_c(OTHER_KEY))[0] == 400

    for answer in (s3.head_object(Bucket=bucket, Key="c", **sse_c()),
                   s3.get_object(Bucket=bucket, Key="c", **sse_c())):
        assert answer["SSECustomerAlgorithm"] == "AES256"
        assert answer["SSECustomerKeyMD5"] == b64md5(KEY)
        assert answer["ContentLength"] == len(body)
    assert read(s3, bucket, "c", **sse_c()) == body
    for first, last in odd_ranges(len(body)):
        assert read(s3, bucket, "c", Range=f"bytes={first}-{last}", **sse_c()) == \
            body[first:last + 1], (first, last)

    attrs = ["ETag", "ObjectSize"]
    status, _ = failure(s3.get_object_attributes, Bucket=bucket, Key="c",
                        ObjectAttributes=attrs)
    assert status == 400
    # botocore base64-encodes the key and adds its MD5 for GetObject but not for
    # GetObjectAttributes: the caller sends the headers' values as they go on the wire.
    got = s3.get_object_attributes(Bucket=bucket, Key="c", ObjectAttributes=attrs,
                                   SSECustomerAlgorithm="AES256", SSECustomerKey=GOOD_KEY_B64,
                                   SSECustomerKeyMD5=b64md5(KEY))
    assert got["ObjectSize"] == len(body)


def test_sse_c_key_for_an_unencrypted_object_is_refused(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="plain", Body=b"clear")
    assert failure(s3.get_object, Bucket=bucket, Key="plain", **sse_c())[0] == 400
    assert failure(s3.head_object, Bucket=bucket, Key="plain", **sse_c())[0] == 400
    s3.put_object(Bucket=bucket, Key="s3", Body=b"sse-s3", ServerSideEncryption="AES256")
    assert failure(s3.get_object, Bucket=bucket, Key="s3", **sse_c())[0] == 400
    assert read(s3, bucket, "plain") == b"clear"


BAD_SSE_C_REQUESTS = {
    "md5 mismatch": {f"{SSE_C_HEADERS}algorithm": "AES256", f"{SSE_C_HEADERS}key": GOOD_KEY_B64,
                     f"{SSE_C_HEADERS}key-md5": "AAAAAAAAAAAAAAAAAAAAAA=="},
    "algorithm not AES256": {f"{SSE_C_HEADERS}algorithm": "AES128",
                             f"{SSE_C_HEADERS}key": GOOD_KEY_B64,
                             f"{SSE_C_HEADERS}key-md5": b64md5(KEY)},
    "key without algorithm": {f"{SSE_C_HEADERS}key": GOOD_KEY_B64,
                              f"{SSE_C_HEADERS}key-md5": b64md5(KEY)},
    "short key": {f"{SSE_C_HEADERS}algorithm": "AES256",
                  f"{SSE_C_HEADERS}key": base64.b64encode(KEY[:16].encode()).decode(),
                  f"{SSE_C_HEADERS}key-md5": b64md5(KEY[:16])},
    "with x-amz-server-side-encryption": {
        f"{SSE_C_HEADERS}algorithm": "AES256", f"{SSE_C_HEADERS}key": GOOD_KEY_B64,
        f"{SSE_C_HEADERS}key-md5": b64md5(KEY), "x-amz-server-side-encryption": "AES256"},
}


@pytest.mark.parametrize("case", sorted(BAD_SSE_C_REQUESTS))
def test_bad_sse_c_requests_store_nothing(s3, bucket: str, case: str) -> None:
    headers = BAD_SSE_C_REQUESTS[case]
    client = make_client(s3.meta.endpoint_url)
    client.meta.events.register(
        "before-call.s3.PutObject", lambda params, **_: params["headers"].update(headers))
    status, _ = failure(client.put_object, Bucket=bucket, Key="o", Body=b"A" * 100)
    assert status == 400
    assert_absent(s3, bucket, "o")


# -- Multipart -----------------------------------------------------------------------


def test_sse_c_multipart(s3, bucket: str) -> None:
    parts_data = [os.urandom(5 * MiB), os.urandom(MiB + 9)]
    body = b"".join(parts_data)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", **sse_c())
    assert upload["SSECustomerKeyMD5"] == b64md5(KEY)
    uid = upload["UploadId"]
    status, _ = failure(s3.upload_part, Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1,
                        Body=parts_data[0])
    assert status == 400
    assert failure(s3.upload_part, Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1,
                   Body=parts_data[0], **sse_c(OTHER_KEY))[0] == 400
    parts = []
    for number, data in enumerate(parts_data, 1):
        answer = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=number,
                                Body=data, **sse_c())
        assert answer["SSECustomerKeyMD5"] == b64md5(KEY)
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid,
                                 MultipartUpload={"Parts": parts}, **sse_c())

    assert failure(s3.get_object, Bucket=bucket, Key="mp")[0] == 400
    assert read(s3, bucket, "mp", **sse_c()) == body
    second = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2, **sse_c())
    assert second["Body"].read() == parts_data[1]
    crossing = (5 * MiB - 27, 5 * MiB + 35)
    assert read(s3, bucket, "mp", Range=f"bytes={crossing[0]}-{crossing[1]}", **sse_c()) == \
        body[crossing[0]:crossing[1] + 1]


def test_sse_s3_multipart_parts_answer_aes256(s3, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", ServerSideEncryption="AES256")
    assert upload["ServerSideEncryption"] == "AES256"
    uid = upload["UploadId"]
    data = [os.urandom(5 * MiB), b"tail-of-the-object"]
    parts = []
    for number, chunk in enumerate(data, 1):
        answer = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=number,
                                Body=chunk)
        assert answer["ServerSideEncryption"] == "AES256"
        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid,
                                        MultipartUpload={"Parts": parts})
    assert done["ServerSideEncryption"] == "AES256"
    head = s3.head_object(Bucket=bucket, Key="mp")
    assert head["ServerSideEncryption"] == "AES256"
    assert read(s3, bucket, "mp") == b"".join(data)


# -- Copies --------------------------------------------------------------------------


def test_copies_between_encryption_modes(s3, bucket: str) -> None:
    body = os.urandom(1 * MiB + 333)
    s3.put_object(Bucket=bucket, Key="c", Body=body, **sse_c())

    # SSE-C source -> SSE-S3 destination: the source key is needed, the copy is readable
    # without any key afterwards.
    assert failure(s3.copy_object, Bucket=bucket, Key="to-s3",
                   CopySource={"Bucket": bucket, "Key": "c"},
                   ServerSideEncryption="AES256")[0] == 400
    copied = s3.copy_object(Bucket=bucket, Key="to-s3", CopySource={"Bucket": bucket, "Key": "c"},
                            ServerSideEncryption="AES256", **copy_source_sse_c())
    assert copied["ServerSideEncryption"] == "AES256"
    assert s3.head_object(Bucket=bucket, Key="to-s3")["ServerSideEncryption"] == "AES256"
    assert read(s3, bucket, "to-s3") == body

    # SSE-S3 -> SSE-C under another key.
    copied = s3.copy_object(Bucket=bucket, Key="to-c",
                            CopySource={"Bucket": bucket, "Key": "to-s3"}, **sse_c(OTHER_KEY))
    assert copied["SSECustomerKeyMD5"] == b64md5(OTHER_KEY)
    assert failure(s3.get_object, Bucket=bucket, Key="to-c")[0] == 400
    assert failure(s3.get_object, Bucket=bucket, Key="to-c", **sse_c())[0] == 400
    assert read(s3, bucket, "to-c", **sse_c(OTHER_KEY)) == body

    # Unencrypted -> SSE-KMS.
    s3.put_object(Bucket=bucket, Key="plain", Body=body)
    copied = s3.copy_object(Bucket=bucket, Key="to-kms",
                            CopySource={"Bucket": bucket, "Key": "plain"},
                            ServerSideEncryption="aws:kms", SSEKMSKeyId="copy-key")
    assert (copied["ServerSideEncryption"], copied["SSEKMSKeyId"]) == ("aws:kms", "copy-key")
    head = s3.head_object(Bucket=bucket, Key="to-kms")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", "copy-key")
    assert read(s3, bucket, "to-kms") == body


def test_copy_onto_itself_changes_the_encryption(s3, bucket: str) -> None:
    body = os.urandom(300 * KiB + 1)
    s3.put_object(Bucket=bucket, Key="o", Body=body)
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="o")
    source = {"Bucket": bucket, "Key": "o"}
    s3.copy_object(Bucket=bucket, Key="o", CopySource=source, ServerSideEncryption="AES256")
    head = s3.head_object(Bucket=bucket, Key="o")
    assert head["ServerSideEncryption"] == "AES256"
    assert read(s3, bucket, "o") == body

    s3.copy_object(Bucket=bucket, Key="o", CopySource=source, **sse_c())
    assert failure(s3.get_object, Bucket=bucket, Key="o")[0] == 400
    assert read(s3, bucket, "o", **sse_c()) == body

    # Back to SSE-S3: the source is now SSE-C, so its key must come along.
    s3.copy_object(Bucket=bucket, Key="o", CopySource=source, ServerSideEncryption="AES256",
                   **copy_source_sse_c())
    assert s3.head_object(Bucket=bucket, Key="o")["ServerSideEncryption"] == "AES256"
    assert read(s3, bucket, "o") == body


def test_upload_part_copy_from_an_sse_c_source(s3, bucket: str) -> None:
    source = os.urandom(6 * MiB + 7)
    s3.put_object(Bucket=bucket, Key="src", Body=source, **sse_c())
    upload = s3.create_multipart_upload(Bucket=bucket, Key="dst", ServerSideEncryption="AES256")
    uid = upload["UploadId"]
    copy_source = {"Bucket": bucket, "Key": "src"}
    assert failure(s3.upload_part_copy, Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                   CopySource=copy_source, CopySourceRange=f"bytes=0-{5 * MiB - 1}")[0] == 400
    first = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                                CopySource=copy_source, CopySourceRange=f"bytes=0-{5 * MiB - 1}",
                                **copy_source_sse_c())
    second = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=2,
                                 CopySource=copy_source,
                                 CopySourceRange=f"bytes={5 * MiB}-{len(source) - 1}",
                                 **copy_source_sse_c())
    parts = [{"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
             {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]}]
    s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=uid,
                                 MultipartUpload={"Parts": parts})
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["ServerSideEncryption"] == "AES256"
    assert got["Body"].read() == source


# -- Data at rest --------------------------------------------------------------------


def _files_containing(root: Path, marker: bytes) -> list[Path]:
    """Files under `root` holding `marker`. The server keeps working meanwhile (a pod
    prunes a partition directory its collector emptied): what vanishes is skipped."""
    found = []
    for directory, _dirs, files in os.walk(root):  # os.walk skips directories that vanish
        for name in files:
            path = Path(directory, name)
            try:
                if marker in path.read_bytes():
                    found.append(path)
            except FileNotFoundError:
                continue
    return found


def test_pods_hold_only_ciphertext(server, s3, bucket: str) -> None:
    marker = b"KURA-PLAINTEXT-MARKER-" + os.urandom(8).hex().encode() + b"|"
    body = (marker * (2 * MiB // len(marker) + 1))[:2 * MiB]
    s3.put_object(Bucket=bucket, Key="secret", Body=body, ServerSideEncryption="AES256")
    assert read(s3, bucket, "secret") == body
    assert _files_containing(server.data_dir, marker) == []

    # The same scan finds an unencrypted copy of the body: the scan itself works.
    s3.put_object(Bucket=bucket, Key="clear", Body=body)
    assert _files_containing(server.data_dir / "pods", marker)


# -- aws-cli -------------------------------------------------------------------------


def aws(server, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("aws")
    assert exe, "aws-cli is installed by the project's test dependencies"
    env = aws_env(server.data_dir.parent)
    out = subprocess.run([exe, "--endpoint-url", server.endpoint, *args],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, f"aws {' '.join(args)} failed:\n{out.stderr}"
    return out


def test_awscli_sse_s3_and_sse_c_multipart(server, s3, bucket: str, workdir: Path) -> None:
    small = workdir / "small.bin"
    small.write_bytes(os.urandom(70 * KiB))
    aws(server, "s3", "cp", str(small), f"s3://{bucket}/small.bin", "--sse", "AES256")
    head = json.loads(aws(server, "s3api", "head-object", "--bucket", bucket,
                          "--key", "small.bin").stdout)
    assert head["ServerSideEncryption"] == "AES256"

    keyfile = workdir / "key.bin"
    keyfile.write_bytes(KEY.encode())
    big = workdir / "big.bin"
    big.write_bytes(os.urandom(20 * MiB))  # above the 8 MiB threshold: multipart
    key_args = ("--sse-c", "AES256", "--sse-c-key", f"fileb://{keyfile}")
    aws(server, "s3", "cp", str(big), f"s3://{bucket}/big.bin", *key_args)
    head = s3.head_object(Bucket=bucket, Key="big.bin", **sse_c())
    assert head["ETag"].endswith('-3"') and head["SSECustomerKeyMD5"] == b64md5(KEY)
    assert failure(s3.head_object, Bucket=bucket, Key="big.bin")[0] == 400
    back = workdir / "back.bin"
    aws(server, "s3", "cp", f"s3://{bucket}/big.bin", str(back), *key_args)
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()


# -- rclone --------------------------------------------------------------------------


def rclone(server, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("rclone")
    assert exe, "rclone is installed by scripts/system-deps.sh"
    env = rclone_env(home, server.endpoint)
    out = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, f"rclone {' '.join(args)} failed:\n{out.stderr}"
    return out


RCLONE_KEY = "0123456789abcdefghijklmnopqrstuv"  # 32 characters: the raw AES-256 key


def _server_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (rclone runs with --no-check-certificate)."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    CertificateAuthority.create().issue(cert_path, key_path, "127.0.0.1", server=True)
    return cert_path, key_path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest.fixture(scope="module")
def tls_endpoint(server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """HTTPS in front of the server: rclone's AWS SDK refuses to send SSE-C keys over
    plain HTTP ("cannot send SSE keys over HTTP"); a user would have a TLS frontend too."""
    cert, key = _server_certificate(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    loop = asyncio.new_event_loop()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    listener = loop.run_until_complete(
        asyncio.start_server(relay, "127.0.0.1", 0, ssl=context))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    finally:
        loop.call_soon_threadsafe(listener.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.mark.parametrize("mode", ["sse-s3", "sse-c"])
def test_rclone_round_trip(server, s3, bucket: str, workdir: Path, tls_endpoint: str,
                           mode: str) -> None:
    flags = (["--s3-server-side-encryption", "AES256"] if mode == "sse-s3" else
             ["--s3-sse-customer-algorithm", "AES256", "--s3-sse-customer-key", RCLONE_KEY])
    flags += ["--s3-endpoint", tls_endpoint, "--no-check-certificate"]
    src = workdir / "up.bin"
    src.write_bytes(os.urandom(3 * MiB + 17))
    rclone(server, workdir, "copyto", *flags, str(src), f"ks:{bucket}/up.bin")
    if mode == "sse-s3":
        assert s3.head_object(Bucket=bucket, Key="up.bin")["ServerSideEncryption"] == "AES256"
    else:
        assert failure(s3.head_object, Bucket=bucket, Key="up.bin")[0] == 400
        head = s3.head_object(Bucket=bucket, Key="up.bin", **sse_c(RCLONE_KEY))
        assert head["SSECustomerKeyMD5"] == b64md5(RCLONE_KEY)
    back = workdir / "down.bin"
    rclone(server, workdir, "copyto", *flags, f"ks:{bucket}/up.bin", str(back))
    assert back.read_bytes() == src.read_bytes()


# -- Bucket default encryption, whichever protocol writes ------------------------------


def test_bucket_default_encryption_covers_swift_writes_and_copies(server, s3, bucket: str) -> None:
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    conn = swift_client.Connection(authurl=f"{server.endpoint}/auth/v1.0", user=ACCESS_KEY,
                                   key=SECRET_KEY)
    body = os.urandom(300 * KiB + 5)
    conn.put_object(bucket, "via-swift", contents=body)
    assert s3.head_object(Bucket=bucket, Key="via-swift")["ServerSideEncryption"] == "AES256"
    assert conn.get_object(bucket, "via-swift")[1] == body
    # A copy that asks for nothing is encrypted as the bucket says, like a PUT.
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                "KMSMasterKeyID": "bucket-key"}}]})
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "via-swift"})
    head = s3.head_object(Bucket=bucket, Key="copy")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", "bucket-key")
    assert read(s3, bucket, "copy") == body
