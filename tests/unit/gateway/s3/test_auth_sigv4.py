"""SigV4 with the Authorization header, with botocore's signer as the oracle:
what botocore signs is accepted, and any change to what was signed is not."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote, urlsplit

import pytest
from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict

from kurastore.gateway.s3 import _sigv4
from kurastore.gateway.s3.auth import authenticate
from kurastore.gateway.s3.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
HOST = "127.0.0.1:9000"
ODD_KEYS = [
    "plain.txt",
    "with space/and+plus",
    "percent%20literal%2F",
    "unicode/ключ/日本語/é",
    "tilde~and*star'quote(paren)!",
    "double//slash",
    "trailing/",
    "dot/./segment/../x",
    "semi;colon,comma=eq&amp?q#h",
]


async def lookup(access_key: str) -> tuple[str, str] | None:
    return (SECRET_KEY, "user-1") if access_key == ACCESS_KEY else None


def make_request(method: str, url: str, headers: dict[str, str], body: bytes = b""):
    """An aiohttp request with exactly the target, headers and body given."""
    loop = asyncio.get_running_loop()
    reader = StreamReader(BaseProtocol(loop), 1 << 30, loop=loop)
    if body:
        reader.feed_data(body)
    reader.feed_eof()
    parts = urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    all_headers = CIMultiDict(headers)
    all_headers.setdefault("Host", parts.netloc)
    return make_mocked_request(method, target, headers=all_headers, payload=reader)


def sign(
    method: str,
    path: str,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    secret: str = SECRET_KEY,
    region: str = REGION,
) -> tuple[str, dict[str, str]]:
    """Sign as boto3 does (keys encoded with quote(safe='/~')); (url, headers)."""
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, headers=headers or {}, data=body)
    S3SigV4Auth(Credentials(ACCESS_KEY, secret), "s3", region).add_auth(request)
    return url, dict(request.headers.items())


def key_path(bucket: str, key: str) -> str:
    return f"/{bucket}/" + quote(key, safe="/~")


@pytest.mark.parametrize("key", ODD_KEYS)
async def test_botocore_signed_requests_with_odd_keys_are_accepted(key: str) -> None:
    url, headers = sign("GET", key_path("bucket", key))
    result = await authenticate(make_request("GET", url, headers), lookup, region=REGION)
    assert result.principal is not None
    assert (result.principal.user_id, result.principal.access_key) == ("user-1", ACCESS_KEY)
    assert result.payload == _sigv4.EMPTY_SHA256
    assert result.scheme == "sigv4"


async def test_signed_payload_headers_and_query_are_covered() -> None:
    body = b"hello world"
    url, headers = sign(
        "PUT",
        key_path("bucket", "a b"),
        query="partNumber=3&uploadId=abc%2Bdef&uploads=",
        headers={"Content-Type": "text/plain", "x-amz-meta-Color": "  blue   and  green ",
                 "Content-MD5": "XrY7u+Ae7tCTyyK7j1rNww=="},
        body=body,
    )  # fmt: skip
    request = make_request("PUT", url, headers, body)
    result = await authenticate(request, lookup, region=REGION)
    assert result.payload == _sigv4.hashlib.sha256(body).hexdigest()
    assert result.seed_signature and result.signing_key
    assert result.scope == f"{result.amz_date[:8]}/{REGION}/s3/aws4_request"


async def test_every_single_byte_change_is_rejected() -> None:
    url, headers = sign(
        "PUT", key_path("bucket", "k+ey"), query="tagging=", headers={"x-amz-meta-a": "b"}
    )
    parts = urlsplit(url)
    variants = [
        ("POST", url, headers),
        ("PUT", url.replace("k%2Bey", "k%2Bez"), headers),
        ("PUT", url.replace("tagging=", "taggink="), headers),
        ("PUT", url + "&extra=1", headers),
        ("PUT", url.replace(parts.netloc, "127.0.0.1:9001"), {**headers, "Host": "127.0.0.1:9001"}),
        ("PUT", url, {**headers, "x-amz-meta-a": "c"}),
        ("PUT", url, {**headers, "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}),
    ]
    signature = headers["Authorization"][-64:]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    variants.append(
        ("PUT", url, {**headers, "Authorization": headers["Authorization"][:-64] + flipped})
    )
    date = headers["X-Amz-Date"]
    later = date[:-3] + ("00Z" if date[-3:] != "00Z" else "01Z")
    variants.append(("PUT", url, {**headers, "X-Amz-Date": later}))
    for method, variant_url, variant_headers in variants:
        request = make_request(method, variant_url, variant_headers)
        with pytest.raises(SignatureDoesNotMatch):
            await authenticate(request, lookup, region=REGION)
    # The original is still good.
    await authenticate(make_request("PUT", url, headers), lookup, region=REGION)


async def test_wrong_secret_and_unknown_key() -> None:
    url, headers = sign("GET", "/bucket/key", secret="not-the-secret")
    with pytest.raises(SignatureDoesNotMatch) as info:
        await authenticate(make_request("GET", url, headers), lookup, region=REGION)
    assert "not-the-secret" not in repr(info.value.fields) + str(info.value)
    assert info.value.fields["AWSAccessKeyId"] == ACCESS_KEY

    url, headers = sign("GET", "/bucket/key")
    headers["Authorization"] = headers["Authorization"].replace(ACCESS_KEY, "AKIDUNKNOWN")
    with pytest.raises(InvalidAccessKeyId):
        await authenticate(make_request("GET", url, headers), lookup, region=REGION)


async def test_clock_skew_beyond_fifteen_minutes_is_refused() -> None:
    url, headers = sign("GET", "/bucket/key")
    now = time.time()
    for offset in (-890, 890):
        request = make_request("GET", url, headers)
        await authenticate(request, lookup, region=REGION, now=now + offset)
    for offset in (-1000, 1000):
        with pytest.raises(RequestTimeTooSkewed) as info:
            await authenticate(
                make_request("GET", url, headers), lookup, region=REGION, now=now + offset
            )
        assert info.value.fields["MaxAllowedSkewMilliseconds"] == "900000"


async def test_wrong_region_names_the_expected_one() -> None:
    url, headers = sign("GET", "/bucket/key", region="eu-west-1")
    with pytest.raises(AuthorizationHeaderMalformed) as info:
        await authenticate(make_request("GET", url, headers), lookup, region=REGION)
    assert info.value.fields["Region"] == REGION
    assert "eu-west-1" in info.value.text
    # The same request is good for a server configured with that region.
    result = await authenticate(make_request("GET", url, headers), lookup, region="eu-west-1")
    assert result.principal is not None


async def test_malformed_authorization_headers() -> None:
    url, headers = sign("GET", "/bucket/key")
    auth = headers["Authorization"]
    cases = {
        auth.replace("SignedHeaders=", "SignedHeadrs="): AuthorizationHeaderMalformed,
        auth.replace("/aws4_request", "/aws5_request"): AuthorizationHeaderMalformed,
        auth.replace("/s3/", "/ec2/"): AuthorizationHeaderMalformed,
        auth.replace("SignedHeaders=host;", "SignedHeaders="): AuthorizationHeaderMalformed,
        "AWS4-ECDSA-P256-SHA256 Credential=x": InvalidArgument,
        "Bearer abc": InvalidArgument,
    }
    for value, error in cases.items():
        with pytest.raises(error):
            request = make_request("GET", url, {**headers, "Authorization": value})
            await authenticate(request, lookup, region=REGION)
    # Scope date different from x-amz-date.
    other_day = auth.replace(f"/{headers['X-Amz-Date'][:8]}/", "/20000101/")
    with pytest.raises(AuthorizationHeaderMalformed):
        request = make_request("GET", url, {**headers, "Authorization": other_day})
        await authenticate(request, lookup, region=REGION)


async def test_date_and_payload_headers_are_required() -> None:
    url, headers = sign("GET", "/bucket/key")
    without_date = {k: v for k, v in headers.items() if k != "X-Amz-Date"}
    with pytest.raises(AccessDenied):
        await authenticate(make_request("GET", url, without_date), lookup, region=REGION)
    with pytest.raises(AccessDenied):
        bad_date = {**headers, "X-Amz-Date": "2013-05-24T00:00:00Z"}
        await authenticate(make_request("GET", url, bad_date), lookup, region=REGION)
    without_sha = {k: v for k, v in headers.items() if k != "X-Amz-Content-SHA256"}
    with pytest.raises(InvalidRequest):
        await authenticate(make_request("GET", url, without_sha), lookup, region=REGION)
    with pytest.raises(InvalidArgument):
        bad_sha = {**headers, "X-Amz-Content-SHA256": "abc"}
        await authenticate(make_request("GET", url, bad_sha), lookup, region=REGION)


async def test_date_header_instead_of_x_amz_date() -> None:
    url = f"http://{HOST}/bucket/key"
    request = AWSRequest(method="GET", url=url, headers={"Date": "x"})
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
    headers = dict(request.headers.items())
    assert "X-Amz-Date" not in headers
    result = await authenticate(make_request("GET", url, headers), lookup, region=REGION)
    assert result.amz_date == _sigv4.format_amz_date(_sigv4.parse_amz_date(result.amz_date) or 0)


async def test_repeated_headers_and_whitespace_are_canonicalised() -> None:
    # Build the request by hand: two x-amz-meta-tag lines and odd spacing.
    now = time.time()
    amz_date = _sigv4.format_amz_date(now)
    credential = _sigv4.Credential(ACCESS_KEY, amz_date[:8], REGION, "s3")
    headers = CIMultiDict(
        [("Host", HOST), ("x-amz-date", amz_date), ("x-amz-meta-tag", " a   b "),
         ("x-amz-meta-tag", "c"), ("x-amz-content-sha256", _sigv4.UNSIGNED_PAYLOAD)]
    )  # fmt: skip
    signed = ["host", "x-amz-content-sha256", "x-amz-date", "x-amz-meta-tag"]
    canonical = "\n".join(
        ["GET", "/b/k", "", f"host:{HOST}", f"x-amz-content-sha256:{_sigv4.UNSIGNED_PAYLOAD}",
         f"x-amz-date:{amz_date}", "x-amz-meta-tag:a b,c", "", ";".join(signed),
         _sigv4.UNSIGNED_PAYLOAD]
    )  # fmt: skip
    to_sign = _sigv4.string_to_sign(amz_date, credential.scope, canonical)
    sig = _sigv4.signature(_sigv4.signing_key(SECRET_KEY, credential), to_sign)
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{credential.scope},"
        f"SignedHeaders={';'.join(signed)},Signature={sig}"
    )
    loop = asyncio.get_running_loop()
    reader = StreamReader(BaseProtocol(loop), 1 << 30, loop=loop)
    reader.feed_eof()
    request = make_mocked_request("GET", "/b/k", headers=headers, payload=reader)
    result = await authenticate(request, lookup, region=REGION, now=now)
    assert result.payload == _sigv4.UNSIGNED_PAYLOAD


async def test_anonymous_and_mixed_mechanisms() -> None:
    request = make_request("GET", f"http://{HOST}/bucket/key", {})
    result = await authenticate(request, lookup, region=REGION)
    assert result.principal is None and result.payload == "" and result.scheme == "anonymous"
    url, headers = sign("GET", "/bucket/key", query="X-Amz-Algorithm=AWS4-HMAC-SHA256")
    with pytest.raises(InvalidArgument):
        await authenticate(make_request("GET", url, headers), lookup, region=REGION)


def test_canonical_uri_is_not_normalised() -> None:
    assert _sigv4.canonical_uri("/b//k/./x/../") == "/b//k/./x/../"
    assert _sigv4.canonical_uri("/b/a%20b+c") == "/b/a%20b%2Bc"
    assert _sigv4.canonical_uri("/b/%7e%7E~") == "/b/~~~"
    assert _sigv4.canonical_uri("/b/%C3%A9") == "/b/%C3%A9"
    assert _sigv4.canonical_uri("/b/%e9") == "/b/%E9"  # not UTF-8: bytes kept
    assert _sigv4.canonical_uri("") == "/"


def test_canonical_query_rules() -> None:
    query = "uploads&prefix=a+b&b=%7e&a=2&a=1&X-Amz-Signature=s&empty="
    assert (
        _sigv4.canonical_query(query, exclude_signature=True)
        == "a=1&a=2&b=~&empty=&prefix=a%20b&uploads="
    )
    assert "X-Amz-Signature=s" in _sigv4.canonical_query(query, exclude_signature=False)
