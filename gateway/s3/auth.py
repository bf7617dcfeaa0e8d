"""Who sent an S3 request, and the request body as it was signed.

`authenticate` recognises every form clients send: SigV4 in the Authorization
header or in a presigned query (X-Amz-*), SigV2 (`AWS key:signature`, or the
AWSAccessKeyId/Signature/Expires query), or none (anonymous). `body_stream`
then yields the body decoded and verified against what was signed (payload
hash, aws-chunked chunk and trailer signatures).

Rules:
- Checks run in S3's order: form of the credentials, scope (service, region),
  date and clock skew (or presign expiry), the access key, then the signature.
- Signatures are compared in constant time. Nothing here logs; secrets and
  signatures never reach an error message (errors carry the string to sign, as
  S3's do, never what was signed with).
- The canonical forms are in _sigv4.py and _sigv2.py; this module only reads
  the request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from urllib.parse import unquote, urlsplit

from aiohttp import web

from kurastore.gateway.s3 import _sigv2, _sigv4
from kurastore.gateway.s3.chunked import ChunkSigning, DecodedBody
from kurastore.gateway.s3.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    S3Error,
    SignatureDoesNotMatch,
)

__all__ = ["AuthResult", "DecodedBody", "Principal", "SecretLookup", "authenticate", "body_stream"]

MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600
_V4_QUERY = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date",
             "X-Amz-SignedHeaders", "X-Amz-Expires")  # fmt: skip
_NO_DATE = "AWS authentication requires a valid Date or x-amz-date header"


@dataclass(frozen=True)
class Principal:
    user_id: str
    access_key: str


# access key -> (secret key, user id); None when the key is unknown.
SecretLookup = Callable[[str], Awaitable[tuple[str, str] | None]]


@dataclass(frozen=True)
class AuthResult:
    """The outcome of `authenticate`.

    `payload` is the x-amz-content-sha256 mode: a lowercase hex sha256,
    "UNSIGNED-PAYLOAD", one of the three STREAMING-* modes, or "" when the
    request stated none (SigV2 and anonymous requests without that header).
    The signing fields chain aws-chunked chunk signatures (SigV4 header only).
    """

    principal: Principal | None
    payload: str
    scheme: str = "anonymous"  # sigv4 | sigv4-query | sigv2 | sigv2-query | anonymous
    scope: str = ""
    amz_date: str = ""
    seed_signature: str = field(default="", repr=False)
    signing_key: bytes = field(default=b"", repr=False)



def has_s3_credentials(headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """Does the request carry an S3 signature in any form (header, SigV4 or SigV2 query)?
    Requests without one may belong to the probes or to Swift on the same port."""
    return "Authorization" in headers or "X-Amz-Signature" in query or "Signature" in query

async def authenticate(
    request: web.Request,
    lookup: SecretLookup,
    *,
    region: str,
    max_skew_s: float = 900.0,
    now: float | None = None,
    bucket_in_host: str | None = None,
) -> AuthResult:
    """Verify the request's credentials; anonymous requests get principal None.

    `bucket_in_host` is the bucket of a virtual-host-style request: SigV2 signs
    the resource as "/bucket/key" whatever the addressing.
    """
    now = time.time() if now is None else now
    raw_path, raw_query = _split_target(request.raw_path)
    params = _sigv4.query_params(raw_query)
    header = request.headers.get("Authorization")
    v4_query = any(name in params for name in _V4_QUERY)
    v2_query = "AWSAccessKeyId" in params or "Signature" in params
    if (header is not None) + v4_query + v2_query > 1:
        raise InvalidArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified"
        )
    ctx = _Context(request, lookup, region, max_skew_s, now, raw_path, raw_query, params)
    if header is not None:
        scheme = header.split(" ", 1)[0]
        if scheme == _sigv4.ALGORITHM:
            return await _v4_header(ctx, header)
        if scheme == "AWS":
            return await _v2(ctx, header, bucket_in_host)
        raise InvalidArgument("Unsupported Authorization Type")
    if v4_query:
        return await _v4_query(ctx)
    if v2_query:
        return await _v2(ctx, None, bucket_in_host)
    return AuthResult(None, _unsigned_payload(request), "anonymous")


def body_stream(
    request: web.Request, auth: AuthResult, *, chunk_size: int = 1 << 20
) -> DecodedBody:
    """The request body decoded per `auth.payload`, verified while it streams."""
    mode = auth.payload
    if mode not in _sigv4.STREAMING_MODES:
        expected = mode if _sigv4.is_hex_sha256(mode) else None
        return DecodedBody(
            request.content,
            decoded_length=request.content_length,
            expected_sha256=expected,
            chunk_size=chunk_size,
        )
    signing = None
    if mode in _sigv4.SIGNED_STREAMING_MODES:
        if not auth.signing_key:
            raise InvalidRequest(f"{mode} needs a SigV4 Authorization header.")
        signing = ChunkSigning(auth.signing_key, auth.amz_date, auth.scope, auth.seed_signature)
    declared = request.headers.get("x-amz-trailer", "")
    return DecodedBody(
        request.content,
        decoded_length=_decoded_length(request),
        aws_chunked=True,
        signing=signing,
        trailer=mode != _sigv4.STREAMING_SIGNED,
        declared_trailers=frozenset(n.strip().lower() for n in declared.split(",") if n.strip()),
        chunk_size=chunk_size,
    )


@dataclass(frozen=True)
class _Context:
    request: web.Request
    lookup: SecretLookup
    region: str
    max_skew_s: float
    now: float
    raw_path: str
    raw_query: str
    params: dict[str, str]


async def _v4_header(ctx: _Context, header: str) -> AuthResult:
    malformed = "The authorization header is malformed"
    fields = _sigv4.parse_authorization(header)
    if fields is None:
        raise AuthorizationHeaderMalformed(
            f"{malformed}; the authorization header requires three components: "
            "Credential, SignedHeaders, and Signature."
        )
    credential = _credential(
        fields["Credential"], ctx.region, AuthorizationHeaderMalformed, malformed
    )
    headers = ctx.request.headers
    amz_date, epoch = _v4_request_date(headers)
    if credential.date != amz_date[:8]:
        raise AuthorizationHeaderMalformed(
            f"{malformed}; Invalid credential date. Date is not the same as X-Amz-Date."
        )
    _check_skew(ctx, epoch, headers.get("x-amz-date") or headers.get("Date", ""))
    payload = headers.get("x-amz-content-sha256")
    if payload is None:
        raise InvalidRequest("Missing required header for this request: x-amz-content-sha256")
    if not _sigv4.is_payload_mode(payload):
        raise InvalidArgument(
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER "
            "or a valid sha256 value."
        )
    signed = _signed_headers(fields["SignedHeaders"], AuthorizationHeaderMalformed, malformed)
    secret, user_id = await _secret(ctx, credential.access_key)
    query = _sigv4.canonical_query(ctx.raw_query, exclude_signature=False)
    key, provided = _verify_v4(ctx, credential, secret, amz_date, signed, fields, query, payload)
    return AuthResult(
        Principal(user_id, credential.access_key),
        payload.lower() if _sigv4.is_hex_sha256(payload) else payload,
        "sigv4",
        credential.scope,
        amz_date,
        provided,
        key,
    )


async def _v4_query(ctx: _Context) -> AuthResult:
    params = ctx.params
    error = AuthorizationQueryParametersError
    if not all(params.get(name) for name in _V4_QUERY):
        raise error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
            "and X-Amz-Expires parameters."
        )
    if params["X-Amz-Algorithm"] != _sigv4.ALGORITHM:
        raise error('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    credential = _credential(
        params["X-Amz-Credential"],
        ctx.region,
        error,
        "Error parsing the X-Amz-Credential parameter",
    )
    amz_date = params["X-Amz-Date"]
    epoch = _sigv4.parse_amz_date(amz_date)
    if epoch is None:
        raise error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    if credential.date != amz_date[:8]:
        raise error("Invalid credential date. Date is not the same as X-Amz-Date.")
    expires = _presign_expires(params["X-Amz-Expires"])
    if ctx.now < epoch - ctx.max_skew_s:
        raise AccessDenied("Request is not valid yet")
    if ctx.now > epoch + expires:
        raise AccessDenied(
            "Request has expired",
            **{"X-Amz-Expires": str(expires), "Expires": _iso(epoch + expires),
               "ServerTime": _iso(ctx.now)},
        )  # fmt: skip
    signed = _signed_headers(
        params["X-Amz-SignedHeaders"], error, "Error parsing X-Amz-SignedHeaders"
    )
    unsigned = sorted(
        {n.lower() for n in ctx.request.headers if n.lower().startswith("x-amz-")} - set(signed)
    )
    if unsigned:
        raise AccessDenied(
            "There were headers present in the request which were not signed",
            HeadersNotSigned=", ".join(unsigned),
        )
    payload = params.get("X-Amz-Content-Sha256") or _sigv4.UNSIGNED_PAYLOAD
    if "x-amz-content-sha256" in signed and "X-Amz-Content-Sha256" not in params:
        payload = ctx.request.headers.get("x-amz-content-sha256", payload)
    if payload in _sigv4.SIGNED_STREAMING_MODES or not _sigv4.is_payload_mode(payload):
        raise InvalidArgument("x-amz-content-sha256 is not valid for a presigned request.")
    secret, user_id = await _secret(ctx, credential.access_key)
    query = _sigv4.canonical_query(ctx.raw_query, exclude_signature=True)
    fields = {"Signature": params["X-Amz-Signature"]}
    _verify_v4(ctx, credential, secret, amz_date, signed, fields, query, payload)
    return AuthResult(
        Principal(user_id, credential.access_key),
        payload.lower() if _sigv4.is_hex_sha256(payload) else payload,
        "sigv4-query",
        credential.scope,
        amz_date,
    )


def _verify_v4(
    ctx: _Context,
    credential: _sigv4.Credential,
    secret: str,
    amz_date: str,
    signed: list[str],
    fields: dict[str, str],
    query: str,
    payload: str,
) -> tuple[bytes, str]:
    headers = ctx.request.headers
    canonical = _sigv4.canonical_request(
        ctx.request.method,
        _sigv4.canonical_uri(ctx.raw_path),
        query,
        _sigv4.canonical_headers((name, headers.getall(name, [])) for name in signed),
        ";".join(signed),
        payload,
    )
    to_sign = _sigv4.string_to_sign(amz_date, credential.scope, canonical)
    key = _sigv4.signing_key(secret, credential)
    provided = fields["Signature"]
    if not _sigv4.signatures_equal(_sigv4.signature(key, to_sign), provided):
        raise SignatureDoesNotMatch(
            AWSAccessKeyId=credential.access_key, StringToSign=to_sign, CanonicalRequest=canonical
        )
    return key, provided.lower()


async def _v2(ctx: _Context, header: str | None, bucket_in_host: str | None) -> AuthResult:
    headers = ctx.request.headers
    if header is not None:
        parsed = _sigv2.parse_authorization(header)
        if parsed is None:
            raise InvalidArgument(
                "AWS authorization header is invalid. Expected AwsAccessKeyId:signature"
            )
        access_key, provided = parsed
        amz_date = headers.get("x-amz-date")
        sent_date = amz_date if amz_date is not None else headers.get("Date", "")
        epoch = _http_date(sent_date)
        if epoch < 0:  # before 1970: no valid date at all to S3, not a skewed one
            raise AccessDenied(_NO_DATE)
        _check_skew(ctx, epoch, sent_date)
        dates = [""] if amz_date is not None else [sent_date]
        if amz_date is not None and "Date" in headers:
            dates.append(headers["Date"])
        standard = {n: headers.get(n, "") for n in ("content-md5", "content-type")}
        amz_headers = _sigv2.canonical_amz_headers(headers.items())
        scheme = "sigv2"
    else:
        access_key, provided, expires = _v2_query_fields(ctx)
        dates = [expires]
        standard = {
            n: headers.get(n, ctx.params.get(n, "")) for n in ("content-md5", "content-type")
        }
        query_amz = [(n, v) for n, v in ctx.params.items() if n.lower().startswith("x-amz-")]
        present = {n.lower() for n in headers}
        extra = [(n, v) for n, v in query_amz if n.lower() not in present]
        amz_headers = _sigv2.canonical_amz_headers([*headers.items(), *extra])
        scheme = "sigv2-query"
    secret, user_id = await _secret(ctx, access_key)
    resources = _sigv2.canonical_resources(ctx.raw_path, ctx.raw_query, bucket_in_host)
    candidates = _sigv2.strings_to_sign(ctx.request.method, standard, amz_headers, resources, dates)
    if not _sigv2.matches(secret, candidates, provided):
        raise SignatureDoesNotMatch(AWSAccessKeyId=access_key, StringToSign=candidates[0])
    return AuthResult(Principal(user_id, access_key), _unsigned_payload(ctx.request), scheme)


def _v2_query_fields(ctx: _Context) -> tuple[str, str, str]:
    params = ctx.params
    access_key, expires = params.get("AWSAccessKeyId", ""), params.get("Expires", "")
    # The signature is base64: a raw '+' in it is a '+', not a space.
    raw_signature = next(
        (
            item[len("Signature=") :]
            for item in ctx.raw_query.split("&")
            if item.startswith("Signature=")
        ),
        "",
    )
    provided = unquote(raw_signature)
    if not access_key or not provided or not expires:
        raise AccessDenied(
            "Query-string authentication requires the Signature, Expires and "
            "AWSAccessKeyId parameters"
        )
    if not expires.isdigit():
        raise AccessDenied("Invalid date (should be seconds since epoch): " + expires[:32])
    if ctx.now > int(expires):
        raise AccessDenied(
            "Request has expired", Expires=_iso(int(expires)), ServerTime=_iso(ctx.now)
        )
    return access_key, provided, expires


def _credential(value: str, region: str, error: type[S3Error], prefix: str) -> _sigv4.Credential:
    credential = _sigv4.parse_credential(value)
    if credential is None:
        raise error(
            f"{prefix}; the Credential is mal-formed; expecting "
            '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'
        )
    if credential.service != _sigv4.SERVICE:
        raise error(
            f'{prefix}; incorrect service "{credential.service}". This endpoint belongs to "s3".'
        )
    if credential.region != region:
        raise error(
            f"{prefix}; the region '{credential.region}' is wrong; expecting '{region}'",
            Region=region,
        )
    return credential


def _signed_headers(value: str, error: type[S3Error], prefix: str) -> list[str]:
    names = [name.strip().lower() for name in value.split(";") if name.strip()]
    if "host" not in names:
        raise error(f"{prefix}; the signed headers must include host.")
    return names


def _v4_request_date(headers: Mapping[str, str]) -> tuple[str, float]:
    """The SigV4 timestamp (x-amz-date, else the Date header) and its Unix time."""
    amz = headers.get("x-amz-date")
    if amz is not None:
        epoch = _sigv4.parse_amz_date(amz)
        if epoch is None:
            raise AccessDenied(_NO_DATE)
        return amz, epoch
    epoch = _http_date(headers.get("Date", ""))
    return _sigv4.format_amz_date(epoch), epoch


def _http_date(value: str) -> float:
    """Unix time of an RFC 1123 date (or a SigV4 timestamp); AccessDenied if neither."""
    epoch = _sigv4.parse_amz_date(value)
    if epoch is not None:
        return epoch
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        raise AccessDenied(_NO_DATE) from None
    if parsed.tzinfo is None:  # "-0000" (botocore's formatdate): UTC
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _check_skew(ctx: _Context, epoch: float, sent: str) -> None:
    if abs(ctx.now - epoch) > ctx.max_skew_s:
        raise RequestTimeTooSkewed(
            RequestTime=sent,
            ServerTime=_iso(ctx.now),
            MaxAllowedSkewMilliseconds=str(int(ctx.max_skew_s * 1000)),
        )


def _presign_expires(value: str) -> int:
    try:
        expires = int(value)
    except ValueError:
        raise AuthorizationQueryParametersError("X-Amz-Expires should be a number") from None
    # Out-of-range lifetimes are refused as S3 refuses them to clients (403), which
    # is what the conformance suites check.
    if expires < 0:
        raise AccessDenied("X-Amz-Expires must be non-negative")
    if expires > MAX_PRESIGN_EXPIRES_S:
        raise AccessDenied(
            "X-Amz-Expires must be less than a week (in seconds) that is; 604800 seconds"
        )
    return expires


async def _secret(ctx: _Context, access_key: str) -> tuple[str, str]:
    found = await ctx.lookup(access_key)
    if found is None:
        raise InvalidAccessKeyId(AWSAccessKeyId=access_key)
    return found


def _unsigned_payload(request: web.Request) -> str:
    """The payload mode of a request without a SigV4 signature over it."""
    value = request.headers.get("x-amz-content-sha256", "")
    if not value:
        return ""
    if _sigv4.is_hex_sha256(value):
        return value.lower()
    if value in (_sigv4.UNSIGNED_PAYLOAD, _sigv4.STREAMING_UNSIGNED_TRAILER):
        return value
    if value in _sigv4.SIGNED_STREAMING_MODES:
        raise InvalidRequest(f"{value} needs a SigV4 Authorization header.")
    raise InvalidArgument("x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a valid sha256 value.")


def _decoded_length(request: web.Request) -> int | None:
    value = request.headers.get("x-amz-decoded-content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise InvalidArgument("x-amz-decoded-content-length must be a non-negative integer.")
    return int(value)


def _split_target(raw: str) -> tuple[str, str]:
    """(path, query) of the request target exactly as sent."""
    if not raw.startswith("/"):  # absolute form: "http://host/path?query"
        parts = urlsplit(raw)
        return parts.path or "/", parts.query
    path, _, query = raw.partition("?")
    return path, query.partition("#")[0]


def _iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))
