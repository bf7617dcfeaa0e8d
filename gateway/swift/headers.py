"""Swift request headers in, response headers out: pure functions, no I/O.

Requests: X-{Account,Container,Object}-Meta-* with Swift's limits and its exact
400 messages, X-Remove-*-Meta-*, names' lengths, X-Delete-At / X-Delete-After,
Content-Type (guessed from the name when absent, as Swift does), conditions,
and Range with several ranges. Responses: what GET/HEAD answer about a version.

Object metadata is the version's user_meta under the same lowercase names S3
shows as x-amz-meta-*, so metadata written by one protocol reads in the other.
"""

from __future__ import annotations

import email.utils
import mimetypes
import re
import time
from collections.abc import Mapping
from datetime import UTC

from kurastore.gateway.objects.api import ByteRange, ReadConditions
from kurastore.gateway.swift import errors as swe
from kurastore.metadata import ObjectVersion

MAX_META_NAME_LENGTH = 128
MAX_META_VALUE_LENGTH = 256
MAX_META_COUNT = 90
MAX_META_OVERALL_SIZE = 4096
MAX_OBJECT_NAME_LENGTH = 1024
MAX_CONTAINER_NAME_LENGTH = 256
MAX_FILE_SIZE = 5 * (1 << 30) + 2
MAX_RANGES = 50
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Standard headers an object keeps (the same ones S3 keeps), and Swift's markers.
STORED_HEADERS = ("cache-control", "content-disposition", "content-encoding",
                  "content-language", "expires")
OBJECT_MANIFEST = "x-object-manifest"
SLO_MARKER = "x-static-large-object"
SLO_ETAG = "x-object-sysmeta-slo-etag"
SLO_SIZE = "x-object-sysmeta-slo-size"
_RANGE_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")

Headers = Mapping[str, str]


def check_container_name(name: str) -> None:
    size = len(name.encode())
    if size > MAX_CONTAINER_NAME_LENGTH:
        raise swe.BadRequest(
            f"Container name length of {size} longer than {MAX_CONTAINER_NAME_LENGTH}",
            html=True)
    if "/" in name:
        raise swe.BadRequest("Container name cannot contain slashes")


def check_object_name(name: str) -> None:
    size = len(name.encode())
    if size > MAX_OBJECT_NAME_LENGTH:
        raise swe.BadRequest(
            f"Object name length of {size} longer than {MAX_OBJECT_NAME_LENGTH}")


def metadata(headers: Headers, kind: str) -> tuple[dict[str, str], set[str]]:
    """(set, removed): X-<kind>-Meta-* by lowercase name without the prefix, and the
    names of X-Remove-<kind>-Meta-* (or of X-<kind>-Meta-* sent empty). Checked
    against Swift's limits (400 with Swift's message)."""
    prefix = f"x-{kind}-meta-"
    remove_prefix = f"x-remove-{kind}-meta-"
    values: dict[str, str] = {}
    removed: set[str] = set()
    for raw_name, value in headers.items():
        name = raw_name.lower()
        if name.startswith(prefix):
            key = name[len(prefix):]
            if value == "":
                removed.add(key)
            else:
                values[key] = value
        elif name.startswith(remove_prefix):
            removed.add(name[len(remove_prefix):])
    check_metadata(values, f"X-{kind.capitalize()}-Meta-")
    return {k: _storable(v) for k, v in values.items()}, removed


def _octets(text: str) -> bytes:
    """The bytes a header value arrived as (aiohttp keeps non-UTF-8 ones as
    surrogate escapes)."""
    return text.encode("utf-8", "surrogateescape")


def _storable(value: str) -> str:
    """Swift takes metadata values that are not UTF-8; they are kept with the
    undecodable bytes replaced (U+FFFD), since headers and the store hold text."""
    return _octets(value).decode("utf-8", "replace")


def check_metadata(values: Mapping[str, str], prefix: str) -> None:
    size = 0
    for key, value in values.items():
        if not key:
            raise swe.BadRequest("Metadata name is empty")
        if len(_octets(key)) > MAX_META_NAME_LENGTH:
            raise swe.BadRequest(f"Metadata name too long: {prefix}{_storable(key)}")
        if len(_octets(value)) > MAX_META_VALUE_LENGTH:
            raise swe.BadRequest(
                f"Metadata value longer than {MAX_META_VALUE_LENGTH}: {prefix}{_storable(key)}")
        size += len(_octets(key)) + len(_octets(value))
    if len(values) > MAX_META_COUNT:
        raise swe.BadRequest(f"Too many metadata items; max {MAX_META_COUNT}")
    if size > MAX_META_OVERALL_SIZE:
        raise swe.BadRequest(f"Total metadata too large; max {MAX_META_OVERALL_SIZE}")


def stored_headers(headers: Headers) -> dict[str, str]:
    return {name: headers[name] for name in STORED_HEADERS if headers.get(name)}


def content_type(headers: Headers, name: str) -> str:
    """The given Content-Type, or one guessed from the object name (Swift's way)."""
    given = headers.get("Content-Type")
    if given and headers.get("X-Detect-Content-Type", "").lower() not in ("true", "1", "yes"):
        return given
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or DEFAULT_CONTENT_TYPE


MAX_DELETE_AT = 9_999_999_999


def delete_at(headers: Headers, now: float | None = None) -> float | None:
    """X-Delete-At (Unix seconds) or X-Delete-After (seconds from now) -> expiry."""
    now = time.time() if now is None else now
    if "X-Delete-After" in headers:
        try:
            after = int(headers["X-Delete-After"])
        except ValueError:
            raise swe.BadRequest("Non-integer X-Delete-After") from None
        if after <= 0:
            raise swe.BadRequest("X-Delete-After in past")
        return float(int(now) + after)
    if "X-Delete-At" in headers:
        try:
            at = int(headers["X-Delete-At"])
        except ValueError:
            raise swe.BadRequest("Non-integer X-Delete-At") from None
        if at <= now:
            raise swe.BadRequest("X-Delete-At in past")
        return float(min(at, MAX_DELETE_AT))  # Swift keeps ten digits
    return None


def if_delete_at(headers: Headers) -> float | None:
    """X-If-Delete-At: a DELETE only of the object expiring at that second."""
    raw = headers.get("X-If-Delete-At")
    if raw is None:
        return None
    try:
        return float(int(raw))
    except ValueError:
        raise swe.BadRequest("Bad X-If-Delete-At header value") from None


def is_expired(version: ObjectVersion, now: float | None = None) -> bool:
    return version.expires_at is not None and version.expires_at <= (
        time.time() if now is None else now)


def parse_http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # asctime ("Sun Nov  6 08:49:37 1994"): GMT, as RFC 9110 says
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def read_conditions(headers: Headers) -> ReadConditions:
    return ReadConditions(
        if_match=headers.get("If-Match"),
        if_none_match=headers.get("If-None-Match"),
        if_modified_since=parse_http_date(headers.get("If-Modified-Since")),
        if_unmodified_since=parse_http_date(headers.get("If-Unmodified-Since")),
    )


def parse_ranges(value: str | None) -> list[ByteRange] | None:
    """The ranges of a Range header; None when absent or malformed (the whole
    object is then sent, as Swift does), or when it asks for too many ranges."""
    unit, eq, specs = (value or "").partition("=")
    if not eq or unit.strip().lower() != "bytes":  # "BYTES = 0 - 9" is fine, as in Swift
        return None
    out: list[ByteRange] = []
    for spec in specs.split(","):
        match = _RANGE_SPEC.match(spec)
        if match is None:
            return None
        first, last = match.group(1), match.group(2)
        if not first and not last:
            return None
        if not first:
            out.append(ByteRange(None, int(last)))
            continue
        end = int(last) if last else None
        if end is not None and end < int(first):
            return None
        out.append(ByteRange(int(first), end))
    return out if len(out) <= MAX_RANGES else None


def resolve_ranges(size: int, ranges: list[ByteRange]) -> list[tuple[int, int]]:
    """Satisfiable (first, last) spans; unsatisfiable ones are dropped. Raises
    RangeNotSatisfiable when none is left."""
    spans: list[tuple[int, int]] = []
    for r in ranges:
        if r.start is None:
            if r.end and size:
                spans.append((max(0, size - r.end), size - 1))
        elif r.start < size:
            spans.append((r.start, size - 1 if r.end is None else min(r.end, size - 1)))
    if not spans:
        raise swe.RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return spans


def http_date(ts: float) -> str:
    return email.utils.formatdate(int(ts), usegmt=True)


def timestamp(ts: float) -> str:
    """X-Timestamp: Unix seconds with five decimals, as Swift writes them."""
    return f"{ts:016.5f}"


def title(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def meta_headers(values: Mapping[str, str], kind: str) -> dict[str, str]:
    return {f"X-{kind.capitalize()}-Meta-{title(k)}": v for k, v in values.items()}


def object_headers(version: ObjectVersion, etag: str) -> dict[str, str]:
    """What GET and HEAD answer about a version (Content-Length is the caller's)."""
    out = {
        "Etag": etag,
        "Last-Modified": http_date(version.last_modified),
        "X-Timestamp": timestamp(version.last_modified),
        "Content-Type": version.content_type,
        "Accept-Ranges": "bytes",
    }
    for name, value in version.headers.items():
        if name in STORED_HEADERS or name == OBJECT_MANIFEST:
            out[title(name)] = value
        elif name == SLO_MARKER:
            out["X-Static-Large-Object"] = "True"
    out.update(meta_headers(version.user_meta, "object"))
    if version.expires_at is not None:
        out["X-Delete-At"] = str(int(version.expires_at))
    return out
