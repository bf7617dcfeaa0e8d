"""S3 request headers in, response headers out: pure functions, no I/O.

Requests: user metadata (x-amz-meta-*, 2 KiB in total), the standard headers
an object keeps, conditions (If-* and x-amz-copy-source-if-*), Range, tagging,
Content-MD5 and the x-amz-checksum-* family (in a header or an aws-chunked
trailer), and the x-amz-copy-source(-range) pair. Bad values raise the S3 error
AWS answers for them.

Responses: what GET/HEAD/PUT answer about a version (ETag in quotes,
Last-Modified in RFC 1123, metadata, checksums only when asked).
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.header
import email.utils
import functools
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote

from kurastore.gateway.objects import checksums
from kurastore.gateway.objects.api import (
    BodyCheck,
    BodyDigest,
    ByteRange,
    CopySource,
    ReadConditions,
    WriteConditions,
)
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3 import sse
from kurastore.metadata import ObjectVersion

META_PREFIX = "x-amz-meta-"
MAX_USER_META_BYTES = 2048
MAX_PART_NUMBER = 10_000
MAX_OBJECT_TAGS = 10
# Standard headers an object keeps and returns; Content-Type is kept apart.
STORED_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
    "x-amz-website-redirect-location",
)
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
STORAGE_CLASSES = frozenset(
    {
        "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
        "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "OUTPOSTS", "SNOW", "EXPRESS_ONEZONE",
    }
)  # fmt: skip
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_VERSION_ID = re.compile(r"[0-9a-f]{32}")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=")

Headers = Mapping[str, str]


# --- request: object attributes -------------------------------------------------------


def user_metadata(headers: Headers) -> dict[str, str]:
    """x-amz-meta-* by lowercase name without the prefix, values decoded as AWS
    stores them (`meta_value`). MetadataTooLarge when names and values together
    exceed 2 KiB of UTF-8, as AWS counts them."""
    meta = {
        name.lower()[len(META_PREFIX) :]: meta_value(value)
        for name, value in headers.items()
        if name.lower().startswith(META_PREFIX)
    }
    size = sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())
    if size > MAX_USER_META_BYTES:
        raise s3e.MetadataTooLarge()
    return meta


def meta_value(value: str) -> str:
    """A user metadata value as stored: header bytes that are not UTF-8 are read as
    ISO-8859-1 (HTTP's historical charset), then RFC 2047 encoded words
    (=?UTF-8?B?...?=) are decoded, as AWS decodes them before storing."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # aiohttp's surrogate escapes of non-UTF-8 bytes
        value = value.encode("utf-8", "surrogateescape").decode("latin-1")
    if _ENCODED_WORD.search(value) is None:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (LookupError, ValueError, email.errors.HeaderParseError):
        return value  # not a well-formed encoded word: kept as sent


def meta_header(value: str) -> str:
    """A stored value as GET and HEAD send it: ASCII as is, anything else UTF-8
    encoded in one RFC 2047 encoded word, as AWS answers (a header cannot carry it)."""
    if value.isascii():
        return value
    return "=?UTF-8?B?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="


def stored_headers(headers: Headers) -> dict[str, str]:
    """The standard headers an object keeps; aws-chunked is transfer framing, not
    an encoding of the object, so it is dropped from Content-Encoding (the other
    codings are kept as sent, joined by ", " as S3 echoes them)."""
    kept: dict[str, str] = {}
    for name in STORED_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        if name == "content-encoding":
            codings = [c.strip() for c in value.split(",") if c.strip()]
            value = ", ".join(c for c in codings if c.lower() != "aws-chunked")
            if not value:
                continue
        kept[name] = value
    return kept


def content_type(headers: Headers) -> str:
    return headers.get("Content-Type") or "binary/octet-stream"


def storage_class(headers: Headers) -> str:
    value = headers.get("x-amz-storage-class", "STANDARD")
    if value not in STORAGE_CLASSES:
        raise s3e.InvalidStorageClass()
    return value


def validate_tags(tags: Mapping[str, str], limit: int = MAX_OBJECT_TAGS) -> dict[str, str]:
    """AWS limits: `limit` tags, keys 1..128 and values 0..256 characters."""
    if len(tags) > limit:
        raise s3e.InvalidTag(f"Object tags cannot be greater than {limit}")
    for key, value in tags.items():
        if not 1 <= len(key) <= 128:
            raise s3e.InvalidTag("The TagKey you have provided is invalid")
        if len(value) > 256:
            raise s3e.InvalidTag("The TagValue you have provided is invalid")
    return dict(tags)


def tagging_header(headers: Headers) -> dict[str, str]:
    """x-amz-tagging: a URL query string ("k1=v1&k2=v2")."""
    value = headers.get("x-amz-tagging")
    if not value:
        return {}
    pairs = parse_qsl(value, keep_blank_values=True)
    tags = dict(pairs)
    if len(tags) != len(pairs):
        raise s3e.InvalidTag("Cannot provide multiple Tags with the same key")
    return validate_tags(tags)


# --- request: conditions and ranges -----------------------------------------------------


def parse_http_date(value: str | None) -> float | None:
    """Unix seconds of an HTTP date; None when absent or unparsable (AWS then
    ignores the condition)."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.timestamp() if parsed.tzinfo else None


def read_conditions(headers: Headers, prefix: str = "") -> ReadConditions:
    """If-Match, If-None-Match, If-(Un)Modified-Since; prefix "x-amz-copy-source-"
    gives the copy-source ones."""
    return ReadConditions(
        if_match=headers.get(prefix + "if-match"),
        if_none_match=headers.get(prefix + "if-none-match"),
        if_modified_since=parse_http_date(headers.get(prefix + "if-modified-since")),
        if_unmodified_since=parse_http_date(headers.get(prefix + "if-unmodified-since")),
    )


def write_conditions(headers: Headers) -> WriteConditions:
    """Conditional writes: If-Match and If-None-Match each name "*" or one etag
    (quotes dropped)."""
    return WriteConditions(if_match=_write_condition(headers.get("If-Match")),
                           if_none_match=_write_condition(headers.get("If-None-Match")))


def _write_condition(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value if value == "*" else value.strip('"')


def parse_range(value: str | None) -> ByteRange | None:
    """One byte range, or None: absent, malformed, multi-range and end-before-start
    ranges are ignored (the whole object is sent), as AWS does."""
    if not value:
        return None
    match = _RANGE.match(value.strip())
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:
        return ByteRange(start=None, end=int(last))
    start = int(first)
    end = int(last) if last else None
    if end is not None and end < start:
        return None
    return ByteRange(start=start, end=end)


def part_number(value: str | None) -> int | None:
    """?partNumber=: an int in 1..10000, else InvalidArgument."""
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_PART_NUMBER:
        raise s3e.InvalidArgument("Part number must be an integer between 1 and 10000, inclusive")
    return number


def check_version_id(value: str, argument: str = "versionId") -> str:
    """A versionId argument: "null" or one of ours (32 lowercase hex characters).
    Anything else cannot name a version: 400 InvalidArgument, as AWS answers, not
    the 404 NoSuchVersion a well-formed id of no version gets."""
    if value == "":
        raise s3e.InvalidArgument("Version id cannot be the empty string",
                                  ArgumentName=argument, ArgumentValue=value)
    if value != "null" and not _VERSION_ID.fullmatch(value):
        raise s3e.InvalidArgument("Invalid version id specified",
                                  ArgumentName=argument, ArgumentValue=value)
    return value


def copy_source(headers: Headers, *, with_range: bool = False) -> CopySource:
    """x-amz-copy-source: "[/]bucket/key[?versionId=id]", percent-encoded."""
    raw = headers.get("x-amz-copy-source", "")
    path, _, query = raw.partition("?")
    try:
        decoded = unquote(path, errors="strict").lstrip("/")
    except UnicodeDecodeError as exc:
        raise s3e.InvalidArgument("Invalid copy source encoding") from exc
    bucket, _, key = decoded.partition("/")
    if not bucket or not key:
        raise s3e.InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey"
        )
    version_id = dict(parse_qsl(query)).get("versionId") if query else None
    byte_range = None
    if with_range and headers.get("x-amz-copy-source-range"):
        byte_range = parse_range(headers["x-amz-copy-source-range"])
        if byte_range is None or byte_range.start is None or byte_range.end is None:
            raise s3e.InvalidArgument("The x-amz-copy-source-range value must be of the form "
                                      "bytes=first-last where first and last are the "
                                      "zero-based offsets of the first and last bytes to copy")
    return CopySource(
        bucket=bucket,
        key=key,
        version_id=version_id or None,
        conditions=read_conditions(headers, "x-amz-copy-source-"),
        byte_range=byte_range,
    )


# --- request: integrity -------------------------------------------------------------------


@dataclass(frozen=True)
class IntegritySpec:
    """What the client says the body hashes to."""

    content_md5: bytes | None = None
    algorithm: str | None = None  # the one x-amz-checksum algorithm sent or announced
    value: str | None = None  # from the header; None when it comes as a trailer
    trailer: str | None = None  # lowercase trailer name carrying the value

    @property
    def algorithms(self) -> tuple[str, ...]:
        return (self.algorithm,) if self.algorithm else ()


def announced_checksum(headers: Headers) -> IntegritySpec:
    """The x-amz-checksum-algorithm of a request without a body to check (multipart
    create, copies): the algorithm the new object is to carry."""
    algorithm = headers.get("x-amz-checksum-algorithm", "").strip().upper()
    if algorithm and algorithm not in checksums.ALGORITHMS:
        raise s3e.InvalidRequest("Checksum algorithm provided is unsupported.")
    return IntegritySpec(algorithm=algorithm or None)


def integrity_spec(headers: Headers) -> IntegritySpec:
    """Reads Content-MD5, x-amz-checksum-<algo>, x-amz-sdk-checksum-algorithm and
    x-amz-trailer. InvalidDigest / InvalidRequest for malformed values."""
    md5 = None
    if "Content-MD5" in headers:
        try:
            md5 = base64.b64decode(headers["Content-MD5"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise s3e.InvalidDigest() from exc
        if len(md5) != 16:
            raise s3e.InvalidDigest()
    sent = {
        algo: value
        for name, value in headers.items()
        if (algo := checksums.algorithm_from_header(name)) is not None
    }
    if len(sent) > 1:
        raise s3e.InvalidRequest(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    trailer = None
    for name in headers.get("x-amz-trailer", "").split(","):
        if checksums.algorithm_from_header(name.strip()):
            trailer = name.strip().lower()
    algorithm = value = None
    if sent:
        ((algorithm, value),) = sent.items()
        if not checksums.is_valid_b64(algorithm, value):
            raise s3e.InvalidRequest(
                f"Value for {checksums.header_name(algorithm)} header is invalid."
            )
    elif trailer:
        algorithm = checksums.algorithm_from_header(trailer)
    elif headers.get("x-amz-sdk-checksum-algorithm"):
        algorithm = checksums.algorithm_from_header(
            "x-amz-checksum-" + headers["x-amz-sdk-checksum-algorithm"]
        )
        if algorithm is None:
            raise s3e.InvalidRequest("Checksum algorithm provided is unsupported.")
    return IntegritySpec(content_md5=md5, algorithm=algorithm, value=value, trailer=trailer)


def body_check(spec: IntegritySpec, trailers: Callable[[], Mapping[str, str]]) -> BodyCheck:
    """The PutOptions.check callback: compares what the service computed with what
    the client declared (trailers are read only once the body is exhausted)."""

    def check(digest: BodyDigest) -> None:
        if spec.content_md5 is not None and digest.md5 != spec.content_md5:
            raise s3e.BadDigest()
        if spec.algorithm is None:
            return
        expected = spec.value
        if expected is None and spec.trailer:
            sent = {k.lower(): v for k, v in trailers().items()}
            expected = sent.get(spec.trailer)
            if expected is not None and not checksums.is_valid_b64(spec.algorithm, expected):
                raise s3e.InvalidRequest(f"Value for {spec.trailer} trailing header is invalid.")
        if expected is not None and digest.checksums.get(spec.algorithm) != expected:
            raise s3e.BadDigest(
                f"The {spec.algorithm} you specified did not match the calculated checksum."
            )

    return check


# --- responses ----------------------------------------------------------------------------


def http_date(ts: float) -> str:
    """RFC 1123, whole seconds: Mon, 12 Oct 2009 17:50:00 GMT."""
    return _http_date(int(ts))


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    # Every GET and HEAD formats a Last-Modified; objects written in the same second
    # share it, and email.utils takes several microseconds for each.
    return email.utils.formatdate(seconds, usegmt=True)


def version_headers(version_id: str, versioned: bool) -> dict[str, str]:
    """x-amz-version-id, sent once a bucket has had versioning turned on."""
    return {"x-amz-version-id": version_id} if versioned and version_id else {}


def checksum_headers(sums: Mapping[str, str], checksum_type: str = "") -> dict[str, str]:
    out = {checksums.header_name(algo): value for algo, value in sums.items()}
    if out and checksum_type:
        out["x-amz-checksum-type"] = checksum_type
    return out


# Stored headers under this prefix are the gateway's own (the object ACL): never sent.
INTERNAL_PREFIX = "x-kurastore-"


def object_headers(
    version: ObjectVersion, *, versioned: bool, with_checksums: bool
) -> dict[str, str]:
    """What GET and HEAD answer about a version (Content-Length is set by the caller)."""
    out = {
        "ETag": f'"{version.etag}"',
        "Last-Modified": http_date(version.last_modified),
        "Content-Type": version.content_type,
        "Accept-Ranges": "bytes",
    }
    # Canonical case, so response-* overrides replace rather than duplicate them.
    out.update({_canonical(name): value for name, value in version.headers.items()
                if not name.startswith(INTERNAL_PREFIX)})
    out.update({META_PREFIX + name: meta_header(value)
                for name, value in version.user_meta.items()})
    out.update(version_headers(version.version_id, versioned))
    if version.tags:
        out["x-amz-tagging-count"] = str(len(version.tags))
    if version.storage_class != "STANDARD":
        out["x-amz-storage-class"] = version.storage_class
    if with_checksums:
        out.update(checksum_headers(version.checksums, version.checksum_type))
    out.update(sse.response_headers(version.encryption))
    return out


def _canonical(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def response_overrides(query: Mapping[str, str]) -> dict[str, str]:
    """GetObject's response-content-type & co. query parameters as headers."""
    return {header: query[param] for param, header in RESPONSE_OVERRIDES.items() if param in query}


# --- query parameters ---------------------------------------------------------------------


def int_param(query: Mapping[str, str], name: str, default: int, limit: int) -> int:
    """A non-negative integer query parameter (max-keys & co.), capped at `limit`."""
    raw = query.get(name)
    if raw is None or raw == "":
        return min(default, limit)
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise s3e.InvalidArgument(f"Provided {name} not an integer or within integer range")
    return min(value, limit)


def key_encoder(query: Mapping[str, str]) -> Callable[[str], str]:
    """encoding-type=url percent-encodes keys and prefixes in listings (botocore
    decodes them with unquote_plus, so '+' and ' ' must both be encoded)."""
    encoding = query.get("encoding-type")
    if encoding is None:
        return _identity
    if encoding.lower() != "url":
        raise s3e.InvalidArgument("Invalid Encoding Method specified in Request")
    return _url_encode


def _identity(value: str) -> str:
    return value


def _url_encode(value: str) -> str:
    return quote(value, safe="/")


def check_small_body(spec: IntegritySpec, body: bytes) -> None:
    """Content-MD5 / x-amz-checksum-* of a body read whole (XML documents)."""
    if spec.content_md5 is not None and hashlib.md5(body).digest() != spec.content_md5:
        raise s3e.BadDigest()
    if spec.algorithm and spec.value is not None:
        if checksums.checksum_b64(spec.algorithm, body) != spec.value:
            raise s3e.BadDigest(
                f"The {spec.algorithm} you specified did not match the calculated checksum."
            )
