"""Conditional requests and byte ranges, decided before any byte moves.

Rules (RFC 7232 section 6 and S3):
- If-Match (or, without it, If-Unmodified-Since) failing -> PreconditionFailed;
  an If-Match that holds overrides a failing If-Unmodified-Since.
- If-None-Match (or, without it, If-Modified-Since) failing -> NotModified;
  an If-None-Match that holds overrides a failing If-Modified-Since.
- ETags compare without quotes and without W/ (S3 has no weak etags); "*"
  matches any existing version. Dates compare at whole-second precision, as
  Last-Modified is sent.
- Ranges: bytes a-b (b clipped to the end), a- (to the end), -n (suffix). A
  start past the end, a zero suffix, or any range of an empty object ->
  InvalidRange(size). A range whose end is before its start is ignored (the
  whole object is sent), as RFC 7233 says.
"""

from __future__ import annotations

import math

from kurastore.gateway.objects.api import ByteRange, ReadConditions, WriteConditions
from kurastore.gateway.objects.buckets import BucketCache
from kurastore.gateway.objects.errors import InvalidRange, NotModified
from kurastore.metadata import ObjectNotFound, ObjectVersion, PreconditionFailed, Store


def etag_matches(header: str, etag: str) -> bool:
    """Does an If-Match / If-None-Match header value list this etag (or '*')?"""
    for item in header.split(","):
        item = item.strip()
        if item.startswith("W/"):
            item = item[2:]
        if item == "*" or item.strip('"') == etag:
            return True
    return False


def _seconds(t: float) -> int:
    return math.floor(t)


def check_read_conditions(version: ObjectVersion, cond: ReadConditions) -> None:
    """Raise PreconditionFailed or NotModified as S3 does for GET and HEAD."""
    if cond.if_match is not None:
        if not etag_matches(cond.if_match, version.etag):
            raise PreconditionFailed(f"If-Match {cond.if_match!r} does not match")
    elif cond.if_unmodified_since is not None:
        if _seconds(version.last_modified) > _seconds(cond.if_unmodified_since):
            raise PreconditionFailed("modified since If-Unmodified-Since")
    if cond.if_none_match is not None:
        if etag_matches(cond.if_none_match, version.etag):
            raise NotModified(version)
    elif cond.if_modified_since is not None:
        if _seconds(version.last_modified) <= _seconds(cond.if_modified_since):
            raise NotModified(version)


def check_copy_conditions(version: ObjectVersion, cond: ReadConditions) -> None:
    """x-amz-copy-source-if-*: every failure is a 412, never a 304."""
    try:
        check_read_conditions(version, cond)
    except NotModified as exc:
        raise PreconditionFailed("copy source not modified") from exc


def resolve_range(size: int, byte_range: ByteRange | None) -> tuple[int, int, bool]:
    """(first, last, is_partial) bytes to send; last = first - 1 for nothing."""
    if byte_range is None:
        return 0, size - 1, False
    start, end = byte_range.start, byte_range.end
    if start is None:
        if end is None or end <= 0 or size == 0:
            raise InvalidRange(size)
        return max(0, size - end), size - 1, True
    if end is not None and end < start:
        return 0, size - 1, False
    if start >= size:
        raise InvalidRange(size)
    last = size - 1 if end is None else min(end, size - 1)
    return start, last, True


async def precheck_write(
    store: Store, buckets: BucketCache, bucket: str, key: str, cond: WriteConditions
) -> None:
    """Fail fast, before a body is read, on a bucket that does not exist or a write
    condition that already fails (If-Match with no object: ObjectNotFound). The
    commit checks again atomically (there a vanished object is PreconditionFailed).
    If-None-Match "*" fails on any current version, an etag on one that has it."""
    await buckets.get(bucket)
    if cond.if_match is None and cond.if_none_match is None:
        return
    try:
        current: ObjectVersion | None = await store.get_version(bucket, key)
    except ObjectNotFound:
        current = None
    refused = None if cond.if_none_match is None else cond.if_none_match.strip('"')
    if current is not None and refused is not None and refused in ("*", current.etag):
        raise PreconditionFailed("If-None-Match: the object exists")
    if cond.if_match is not None:
        if current is None:  # S3: If-Match on a missing key is NoSuchKey, not 412
            raise ObjectNotFound(f"{bucket}/{key}: If-Match on a missing object")
        if not etag_matches(cond.if_match, current.etag):
            raise PreconditionFailed("If-Match does not match the current version")
