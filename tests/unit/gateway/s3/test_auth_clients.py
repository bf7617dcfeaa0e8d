"""Real clients against a real aiohttp server that authenticates and decodes
bodies: boto3 (SigV4 over http with signed payloads, over https with its
default aws-chunked unsigned trailer; SigV2), presigned URLs fetched with
urllib."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import ssl
import urllib.request
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from xml.sax.saxutils import escape

import boto3
import pytest
import urllib3
from aiohttp import web
from aiohttp.test_utils import TestServer
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kurastore.gateway.objects.checksums import checksum_b64
from kurastore.gateway.s3.auth import authenticate, body_stream
from kurastore.gateway.s3.errors import S3Error

ACCESS_KEY = "KURATESTKEY"
SECRET_KEY = "kura/secret+key=="
REGION = "eu-central-1"
ODD_KEYS = ["a b+c%d", "ключ/日本語/é", "double//slash", "trailing/", "x/./y/../z", "~*'()!$&;=,@:"]


async def lookup(access_key: str) -> tuple[str, str] | None:
    return (SECRET_KEY, "owner") if access_key == ACCESS_KEY else None


def make_app(records: list[dict]) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            auth = await authenticate(request, lookup, region=REGION)
            sha, size = hashlib.sha256(), 0
            decoded = body_stream(request, auth, chunk_size=65536)
            async for piece in decoded:
                sha.update(piece)
                size += len(piece)
        except S3Error as exc:
            text = f"<Error><Code>{exc.code}</Code><Message>{escape(exc.text)}</Message></Error>"
            return web.Response(status=exc.status, text=text, content_type="application/xml")
        records.append(
            {"path": request.path, "scheme": auth.scheme, "payload": auth.payload,
             "sha256": sha.hexdigest(), "size": size, "trailers": decoded.trailers}
        )  # fmt: skip
        if "list-type" in request.query:
            xml = "<ListBucketResult><Name>b</Name><KeyCount>0</KeyCount></ListBucketResult>"
            return web.Response(text=xml, content_type="application/xml")
        body = b"payload" if request.method == "GET" else b""
        return web.Response(body=body, headers={"ETag": '"0"'})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def self_signed(tmp: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return context


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[tuple[str, str, list[dict]]]:
    records: list[dict] = []
    plain = TestServer(make_app(records))
    tls = TestServer(make_app(records))
    await plain.start_server()
    await tls.start_server(ssl=self_signed(tmp_path))
    yield str(plain.make_url("")), str(tls.make_url("")), records
    await plain.close()
    await tls.close()


def client(endpoint: str, secret: str = SECRET_KEY, **config: object):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION, verify=False,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}, **config),
    )  # fmt: skip


async def test_boto3_sigv4_over_http_signs_the_payload(servers) -> None:
    http, _, records = servers
    s3 = client(http)
    for key in ODD_KEYS:
        body = key.encode() * 1000
        await asyncio.to_thread(s3.put_object, Bucket="bucket", Key=key, Body=body)
        record = records.pop()
        assert record["path"] == f"/bucket/{key}"
        assert record["scheme"] == "sigv4"
        assert record["payload"] == record["sha256"] == hashlib.sha256(body).hexdigest()
        got = await asyncio.to_thread(s3.get_object, Bucket="bucket", Key=key)
        assert got["Body"].read() == b"payload"
    await asyncio.to_thread(
        s3.list_objects_v2, Bucket="bucket", Prefix="a b+é/ключ", Delimiter="/", StartAfter="~x"
    )
    assert records.pop()["scheme"] == "sigv4"
    with pytest.raises(ClientError) as info:
        await asyncio.to_thread(client(http, "wrong").get_object, Bucket="bucket", Key="k")
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


@pytest.mark.parametrize("algorithm", [None, "CRC32C", "CRC64NVME", "SHA256"])
async def test_boto3_over_https_sends_aws_chunked_trailers(servers, algorithm) -> None:
    _, https, records = servers
    s3 = client(https)
    body = bytes(range(256)) * 9000  # 2.2 MiB: several 1 MiB aws-chunked chunks
    extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        await asyncio.to_thread(s3.put_object, Bucket="b", Key="k y", Body=body, **extra)
    record = records.pop()
    assert record["payload"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert record["sha256"] == hashlib.sha256(body).hexdigest() and record["size"] == len(body)
    name = (algorithm or "CRC32").lower()
    assert record["trailers"] == {f"x-amz-checksum-{name}": checksum_b64(name, body)}


async def test_boto3_sigv2_header_and_presigned(servers) -> None:
    http, _, records = servers
    s3 = client(http, signature_version="s3")
    for key in ODD_KEYS[:3]:
        await asyncio.to_thread(s3.put_object, Bucket="bucket", Key=key, Body=b"x" * 100)
        assert records.pop()["scheme"] == "sigv2"
    await asyncio.to_thread(s3.create_multipart_upload, Bucket="bucket", Key="a b")
    assert records.pop()["scheme"] == "sigv2"
    url = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": "bucket", "Key": "a b+é", "ResponseContentType": "text/plain"},
        ExpiresIn=300,
    )
    assert "AWSAccessKeyId=" in url
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read())
    assert body == b"payload" and records.pop()["scheme"] == "sigv2-query"


async def test_presigned_v4_get_and_put_with_urllib(servers) -> None:
    http, _, records = servers
    s3 = client(http, signature_version="s3v4")
    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "bucket", "Key": ODD_KEYS[1]}, ExpiresIn=600
    )
    assert "X-Amz-Signature=" in get_url
    assert await asyncio.to_thread(lambda: urllib.request.urlopen(get_url).read()) == b"payload"
    assert records.pop()["scheme"] == "sigv4-query"
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": "bucket", "Key": "up load"}, ExpiresIn=600
    )
    request = urllib.request.Request(put_url, data=b"uploaded", method="PUT")
    await asyncio.to_thread(lambda: urllib.request.urlopen(request).read())
    record = records.pop()
    assert record["payload"] == "UNSIGNED-PAYLOAD"
    assert record["sha256"] == hashlib.sha256(b"uploaded").hexdigest()
    tampered = urllib.request.Request(
        put_url.replace("up%20load", "other"), data=b"x", method="PUT"
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        await asyncio.to_thread(lambda: urllib.request.urlopen(tampered).read())
    assert info.value.code == 403
