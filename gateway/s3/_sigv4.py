"""AWS Signature Version 4 for S3: canonical request, string to sign, signing
key, and the chunk and trailer signatures of aws-chunked bodies.

Pure functions on strings and bytes; auth.py feeds them from the request.

Rules (S3 differs from the other AWS services here):
- The canonical URI is the path as the client encoded it, decoded once and
  encoded once again byte by byte (unreserved A-Z a-z 0-9 - _ . ~ and '/' kept):
  no normalisation, so '//', '/./' and a trailing '/' stay, and a key signed by
  botocore ('+' -> %2B, space -> %20, UTF-8 percent-encoded) maps to itself.
- The canonical query is every parameter but X-Amz-Signature, decoded as a form
  ('+' is a space, as S3 reads it), encoded strictly, sorted by key then value;
  a parameter without '=' is "name=".
- Header values are trimmed and inner whitespace runs collapsed; repeated
  headers are joined with ','.
"""

from __future__ import annotations

import calendar
import datetime
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
TERMINATOR = "aws4_request"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
SIGNED_STREAMING_MODES = frozenset({STREAMING_SIGNED, STREAMING_SIGNED_TRAILER})
STREAMING_MODES = SIGNED_STREAMING_MODES | {STREAMING_UNSIGNED_TRAILER}

_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")


@dataclass(frozen=True)
class Credential:
    """The parsed "<key>/<yyyymmdd>/<region>/<service>/aws4_request"."""

    access_key: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


def parse_credential(value: str) -> Credential | None:
    """None when the credential does not have the five parts S3 expects."""
    parts = value.rsplit("/", 4)
    if len(parts) != 5 or parts[4] != TERMINATOR or not parts[0]:
        return None
    access_key, date, region, service, _ = parts
    if not re.fullmatch(r"\d{8}", date) or not region or not service:
        return None
    return Credential(access_key, date, region, service)


def parse_authorization(value: str) -> dict[str, str] | None:
    """The Credential, SignedHeaders and Signature fields of an
    "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..." header."""
    _, _, rest = value.partition(" ")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, field_value = item.strip().partition("=")
        if sep:
            fields.setdefault(name, field_value.strip())
    if not all(fields.get(n) for n in ("Credential", "SignedHeaders", "Signature")):
        return None
    return fields


def is_payload_mode(value: str) -> bool:
    """True for the x-amz-content-sha256 values S3 accepts with SigV4."""
    return (
        value == UNSIGNED_PAYLOAD or value in STREAMING_MODES or bool(_HEX_SHA256.fullmatch(value))
    )


def is_hex_sha256(value: str) -> bool:
    return bool(_HEX_SHA256.fullmatch(value))


def parse_amz_date(value: str) -> float | None:
    """Unix seconds of a "yyyymmddThhmmssZ" timestamp; None when malformed."""
    if not _AMZ_DATE.fullmatch(value):
        return None
    # By hand, not strptime: this runs on every request and strptime is ~20 us of it.
    try:
        moment = (int(value[0:4]), int(value[4:6]), int(value[6:8]),
                  int(value[9:11]), int(value[11:13]), int(value[13:15]))
        datetime.datetime(*moment)  # range checks: month 13, Feb 30, hour 24 ...
    except ValueError:
        return None
    return float(calendar.timegm((*moment, 0, 0, 0)))


def format_amz_date(epoch_s: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch_s))


def canonical_uri(raw_path: str) -> str:
    """The path as sent, decoded once and strictly encoded once ('/' kept)."""
    return quote(unquote_to_bytes(raw_path or "/"), safe="/~")


def query_pairs(raw_query: str) -> list[tuple[bytes, bytes]]:
    """The raw query string as (name, value) byte pairs, decoded like a form."""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append(
            (unquote_to_bytes(name.replace("+", " ")), unquote_to_bytes(value.replace("+", " ")))
        )
    return pairs


def query_params(raw_query: str) -> dict[str, str]:
    """First value of each parameter, decoded (for the presigned X-Amz-* fields)."""
    params: dict[str, str] = {}
    for name, value in query_pairs(raw_query):
        params.setdefault(name.decode("utf-8", "replace"), value.decode("utf-8", "replace"))
    return params


def canonical_query(raw_query: str, *, exclude_signature: bool) -> str:
    encoded = []
    for name, value in query_pairs(raw_query):
        if exclude_signature and name == b"X-Amz-Signature":
            continue
        encoded.append((quote(name, safe="-_.~"), quote(value, safe="-_.~")))
    encoded.sort()
    return "&".join(f"{name}={value}" for name, value in encoded)


def canonical_headers(signed: Iterable[tuple[str, list[str]]]) -> str:
    """ "name:value\\n" for each signed header, already in signed-header order."""
    lines = []
    for name, values in signed:
        joined = ",".join(" ".join(v.split()) for v in values)
        lines.append(f"{name}:{joined}\n")
    return "".join(lines)


def canonical_request(
    method: str,
    uri: str,
    query: str,
    headers: str,
    signed_headers: str,
    payload: str,
) -> str:
    return "\n".join((method, uri, query, headers, signed_headers, payload))


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    # A header that was not UTF-8 (aiohttp keeps its bytes as surrogate escapes) is
    # hashed as the bytes the client sent and signed.
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def signing_key(secret: str, credential: Credential) -> bytes:
    return _signing_key(secret, credential.date, credential.region, credential.service)


@functools.lru_cache(maxsize=1024)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    # Four HMACs that change once a day per key: cached, as AWS SDKs cache them too. The
    # cache lives in this process's memory only, beside the secrets it is derived from.
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, TERMINATOR)


def signature(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def chunk_signature(key: bytes, amz_date: str, scope: str, previous: str, data_sha256: str) -> str:
    """The signature of one aws-chunked chunk, chained from the previous one."""
    text = f"{ALGORITHM}-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{EMPTY_SHA256}\n{data_sha256}"
    return signature(key, text)


def trailer_signature(
    key: bytes, amz_date: str, scope: str, previous: str, trailers: Iterable[tuple[str, str]]
) -> str:
    """The x-amz-trailer-signature over the trailing headers, sorted by name."""
    canonical = "".join(f"{name}:{value}\n" for name, value in sorted(trailers))
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return signature(key, f"{ALGORITHM}-TRAILER\n{amz_date}\n{scope}\n{previous}\n{digest}")


def signatures_equal(expected: str, provided: str) -> bool:
    """Constant-time comparison; the provided value may hold any characters."""
    given = provided.lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected.encode("ascii"), given)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()
