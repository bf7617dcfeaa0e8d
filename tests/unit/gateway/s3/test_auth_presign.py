"""Presigned SigV4 URLs and SigV2 (header and presigned), with botocore's
S3SigV4QueryAuth, HmacV1Auth and HmacV1QueryAuth as the oracles."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote, urlsplit

import pytest
from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from botocore.auth import HmacV1Auth, HmacV1QueryAuth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

from kurastore.gateway.s3 import _sigv4
from kurastore.gateway.s3.auth import authenticate
from kurastore.gateway.s3.errors import (
    AccessDenied,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidArgument,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
HOST = "127.0.0.1:9000"
ODD_KEYS = ["k", "a b+c%d", "ключ/日本/é", "double//slash/", "x/./y/../~z"]


async def lookup(access_key: str) -> tuple[str, str] | None:
    return (SECRET_KEY, "user-1") if access_key == ACCESS_KEY else None


def make_request(method: str, url: str, headers: dict[str, str] | None = None):
    loop = asyncio.get_running_loop()
    reader = StreamReader(BaseProtocol(loop), 1 << 30, loop=loop)
    reader.feed_eof()
    parts = urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    all_headers = CIMultiDict(headers or {})
    all_headers.setdefault("Host", parts.netloc)
    return make_mocked_request(method, target, headers=all_headers, payload=reader)


def presign_v4(method: str, path: str, query: str = "", expires: int = 3600, **kw: str) -> str:
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url)
    creds = Credentials(ACCESS_KEY, kw.get("secret", SECRET_KEY))
    S3SigV4QueryAuth(creds, "s3", kw.get("region", REGION), expires=expires).add_auth(request)
    return request.url


async def auth(method: str, url: str, headers: dict[str, str] | None = None, **kw: object):
    return await authenticate(make_request(method, url, headers), lookup, region=REGION, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ODD_KEYS)
async def test_presigned_v4_urls_are_accepted(key: str) -> None:
    disposition = "response-content-disposition=attachment%3B%20filename%3D%22a%20b%22"
    url = presign_v4("GET", "/bucket/" + quote(key, safe="/~"), query=disposition)
    result = await auth("GET", url)
    assert result.principal is not None and result.principal.user_id == "user-1"
    assert result.payload == _sigv4.UNSIGNED_PAYLOAD
    assert result.scheme == "sigv4-query"


async def test_presigned_v4_expiry_is_enforced() -> None:
    url = presign_v4("PUT", "/bucket/key", expires=60)
    now = time.time()
    await auth("PUT", url, now=now + 59)
    with pytest.raises(AccessDenied) as info:
        await auth("PUT", url, now=now + 62)
    assert info.value.text == "Request has expired"
    with pytest.raises(AccessDenied):
        await auth("PUT", url, now=now - 3600)  # not valid yet
    with pytest.raises(AccessDenied):
        await auth("GET", presign_v4("GET", "/bucket/key", expires=604801))
    with pytest.raises(AccessDenied):
        await auth("GET", presign_v4("GET", "/bucket/key", expires=-7))
    await auth("GET", presign_v4("GET", "/bucket/key", expires=604800))


async def test_presigned_v4_tampering_is_rejected() -> None:
    url = presign_v4("GET", "/bucket/key", query="versionId=v1")
    await auth("GET", url)
    signature = url[-64:]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    for method, variant in [
        ("PUT", url),
        ("GET", url.replace("/bucket/key", "/bucket/kez")),
        ("GET", url.replace("versionId=v1", "versionId=v2")),
        ("GET", url + "&partNumber=1"),
        ("GET", url[:-64] + flipped),
    ]:
        with pytest.raises(SignatureDoesNotMatch):
            await auth(method, variant)
    with pytest.raises(SignatureDoesNotMatch):
        await auth("GET", url, {"Host": "127.0.0.1:9001"})


async def test_presigned_v4_refuses_unsigned_amz_headers() -> None:
    url = presign_v4("PUT", "/bucket/key")
    with pytest.raises(AccessDenied) as info:
        await auth("PUT", url, {"x-amz-copy-source": "/other/secret"})
    assert info.value.fields["HeadersNotSigned"] == "x-amz-copy-source"


async def test_presigned_v4_parameter_errors() -> None:
    url = presign_v4("GET", "/bucket/key")
    without_expires = "&".join(p for p in url.split("&") if not p.startswith("X-Amz-Expires="))
    with pytest.raises(AuthorizationQueryParametersError):
        await auth("GET", without_expires)
    with pytest.raises(AuthorizationQueryParametersError):
        await auth("GET", url.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"))
    with pytest.raises(AuthorizationQueryParametersError) as info:
        await auth("GET", presign_v4("GET", "/bucket/key", region="ap-south-1"))
    assert info.value.fields["Region"] == REGION
    with pytest.raises(InvalidAccessKeyId):
        await auth("GET", url.replace(ACCESS_KEY, "AKIDOTHER"))
    with pytest.raises(SignatureDoesNotMatch):
        await auth("GET", presign_v4("GET", "/bucket/key", secret="wrong"))
    with pytest.raises(InvalidArgument):  # header and query at once
        await auth("GET", url, {"Authorization": "AWS4-HMAC-SHA256 Credential=x"})


def sign_v2(method: str, url: str, headers: dict[str, str] | None = None, *,
            auth_path: str | None = None, secret: str = SECRET_KEY) -> dict[str, str]:  # fmt: skip
    request = AWSRequest(method=method, url=url, headers=headers or {}, auth_path=auth_path)
    HmacV1Auth(Credentials(ACCESS_KEY, secret)).add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize(
    "query",
    ["", "uploads", "partNumber=2&uploadId=u%2B1", "acl", "tagging&versionId=3",
     "response-content-type=text%2Fplain&prefix=ignored", "list-type=2&prefix=a%20b"],
)  # fmt: skip
async def test_sigv2_header_with_subresources(query: str) -> None:
    url = f"http://{HOST}/bucket/" + quote("a b+é", safe="/~") + (f"?{query}" if query else "")
    headers = sign_v2("PUT", url, {"Content-Type": "text/plain", "x-amz-meta-Tag": " v ",
                                   "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="})  # fmt: skip
    result = await auth("PUT", url, headers)
    assert result.principal is not None and result.scheme == "sigv2"
    assert result.payload == ""
    for changed in ({"Content-Type": "text/html"}, {"x-amz-meta-tag": "w"}, {"x-amz-acl": "x"}):
        with pytest.raises(SignatureDoesNotMatch):
            await auth("PUT", url, {**headers, **changed})


async def test_sigv2_virtual_host_signs_the_bucket() -> None:
    url = "http://photos.s3.example.test/puppy%20dog.jpg?acl"
    headers = sign_v2("GET", url, auth_path="/photos/puppy%20dog.jpg")
    result = await auth("GET", url, headers, bucket_in_host="photos")
    assert result.principal is not None
    with pytest.raises(SignatureDoesNotMatch):
        await auth("GET", url, headers)


async def test_sigv2_header_errors() -> None:
    url = f"http://{HOST}/bucket/key"
    with pytest.raises(SignatureDoesNotMatch):
        await auth("GET", url, sign_v2("GET", url, secret="wrong"))
    headers = sign_v2("GET", url)
    with pytest.raises(RequestTimeTooSkewed):
        await auth("GET", url, headers, now=time.time() + 3600)
    with pytest.raises(InvalidAccessKeyId):
        await auth("GET", url, {**headers, "Authorization": "AWS AKIDX:abc="})
    with pytest.raises(InvalidArgument):
        await auth("GET", url, {**headers, "Authorization": "AWS nocolon"})
    with pytest.raises(AccessDenied):
        await auth("GET", url, {**headers, "Date": "yesterday"})
    # A date before 1970 is no valid date to S3 (AccessDenied), not a skewed one.
    with pytest.raises(AccessDenied):
        await auth("GET", url, {**headers, "x-amz-date": "Tue, 07 Jul 1950 21:53:04 GMT"})
    with pytest.raises(RequestTimeTooSkewed):
        await auth("GET", url, {**headers, "x-amz-date": "Tue, 07 Jul 9999 21:53:04 GMT"})


async def test_sigv2_with_x_amz_date_signs_an_empty_date_line() -> None:
    url = f"http://{HOST}/bucket/key"
    amz_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    text = f"GET\n\n\n\nx-amz-date:{amz_date}\n/bucket/key"
    from kurastore.gateway.s3 import _sigv2

    headers = {
        "x-amz-date": amz_date,
        "Authorization": f"AWS {ACCESS_KEY}:{_sigv2.sign(SECRET_KEY, text)}",
    }
    assert (await auth("GET", url, headers)).principal is not None


@pytest.mark.parametrize(("query", "signed"), [
    ("uploads=", "?uploads"),  # minio-go: url.Values encodes "uploads=", signs "uploads"
    ("policy=", "?policy"),
    ("partNumber=1&uploadId=u1", "?partNumber=1&uploadId=u1"),
    ("encryption=", "?encryption"),  # a sub-resource minio-go signs ...
    ("encryption", ""),  # ... and botocore does not
    ("retention&versionId=7", "?retention&versionId=7"),
    ("retention&versionId=7", "?versionId=7"),
])  # fmt: skip
async def test_sigv2_accepts_each_clients_sub_resources(query: str, signed: str) -> None:
    from kurastore.gateway.s3 import _sigv2

    url = f"http://{HOST}/bucket/key?{query}"
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    text = f"PUT\n\n\n{date}\n/bucket/key{signed}"
    headers = {"Date": date, "Authorization": f"AWS {ACCESS_KEY}:{_sigv2.sign(SECRET_KEY, text)}"}
    assert (await auth("PUT", url, headers)).principal is not None
    # Only the readings of what was sent: a sub-resource that was not sent never matches.
    forged = f"PUT\n\n\n{date}\n/bucket/key?acl"
    headers["Authorization"] = f"AWS {ACCESS_KEY}:{_sigv2.sign(SECRET_KEY, forged)}"
    with pytest.raises(SignatureDoesNotMatch):
        await auth("PUT", url, headers)


def presign_v2(
    method: str, url: str, expires: int = 3600, headers: dict[str, str] | None = None
) -> str:
    request = AWSRequest(method=method, url=url, headers=headers or {})
    HmacV1QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), expires=expires).add_auth(request)
    return request.url


async def test_sigv2_presigned_urls() -> None:
    base = f"http://{HOST}/bucket/" + quote("dir/a b+c", safe="/~")
    url = presign_v2("GET", base + "?response-content-disposition=inline", expires=60)
    result = await auth("GET", url)
    assert result.principal is not None and result.scheme == "sigv2-query"
    with pytest.raises(AccessDenied):
        await auth("GET", url, now=time.time() + 120)
    with pytest.raises(SignatureDoesNotMatch):
        await auth("GET", url.replace("inline", "attachment"))
    with pytest.raises(SignatureDoesNotMatch):
        await auth("PUT", url)
    # botocore moves x-amz-* and content-type into the query of a presigned PUT.
    put = presign_v2("PUT", base, headers={"Content-Type": "text/plain", "x-amz-acl": "private"})
    assert "x-amz-acl=private" in put
    assert (await auth("PUT", put, {"Content-Type": "text/plain"})).principal is not None
    assert (await auth("PUT", put)).principal is not None
    with pytest.raises(SignatureDoesNotMatch):
        await auth("PUT", put, {"Content-Type": "text/html"})
    with pytest.raises(AccessDenied):
        await auth("GET", base + f"?AWSAccessKeyId={ACCESS_KEY}&Expires=1")
