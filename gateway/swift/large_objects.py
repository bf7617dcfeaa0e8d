"""Swift large objects: Static (SLO) and Dynamic (DLO), over plain objects.

An SLO manifest is an object whose body is the manifest JSON in Swift's stored
form ([{"name": "/c/o", "hash", "bytes", ...}]) and whose stored headers carry
the markers x-static-large-object, x-object-sysmeta-slo-etag and -slo-size.
Stored headers (not user metadata) hold the markers because S3 clients cannot
set them: an S3 user cannot turn an object into a manifest naming other data.
A DLO manifest is an object with the stored header x-object-manifest
("container/prefix"); its segments are the objects under the prefix, in order.

Rules:
- SLO PUT checks every segment (exists in this account, etag and size match,
  at least 1 byte, not itself a large object) and answers 400 with Swift's
  "Errors:" body listing every problem; nothing is written then.
- GET reads each segment pinned to the etag seen when the large object was
  resolved: a segment replaced meanwhile fails before the first byte when it
  is the first one, and drops the connection otherwise (never a mixed body).
- The ETag of a large object is the quoted MD5 of its segments' etags joined,
  as Swift computes it.
- Segments live in containers of the same account; another account's
  container is refused (403) at PUT and at GET.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web

from kurastore.gateway.objects.api import ByteRange, PutOptions, ReadConditions
from kurastore.gateway.objects.errors import ObjectNotFound
from kurastore.gateway.swift import errors as swe
from kurastore.gateway.swift import headers as hdr
from kurastore.gateway.swift.context import SwiftRequest, empty_response
from kurastore.gateway.swift.listing import swift_time
from kurastore.metadata import ObjectVersion

if TYPE_CHECKING:
    from kurastore.gateway.objects.service import ObjectService

MAX_MANIFEST_SEGMENTS = 1000
MAX_MANIFEST_SIZE = 8 << 20
DLO_MAX_SEGMENTS = 10000


@dataclass(frozen=True)
class Segment:
    bucket: str
    key: str
    size: int
    etag: str  # the segment's etag when resolved: reads are pinned to it


@dataclass(frozen=True)
class Content:
    """What GET sends for a version: itself, or the segments of a large object."""

    version: ObjectVersion
    size: int
    etag: str  # as the Etag header shows it (quoted for large objects)
    segments: tuple[Segment, ...] | None = None  # None: a plain object

    @property
    def bare_etag(self) -> str:
        return self.etag.strip('"')


def is_slo(version: ObjectVersion) -> bool:
    return hdr.SLO_MARKER in version.headers


def dlo_manifest(version: ObjectVersion) -> str | None:
    return version.headers.get(hdr.OBJECT_MANIFEST)


def large_etag(etags: list[str]) -> str:
    return hashlib.md5("".join(etags).encode()).hexdigest()


def parse_dlo_manifest(value: str) -> tuple[str, str]:
    """(container, prefix) of an X-Object-Manifest value; 400 when malformed."""
    container, sep, prefix = unquote(value.strip().lstrip("/")).partition("/")
    if not sep or not container:
        raise swe.BadRequest("X-Object-Manifest must be in the format container/prefix")
    return container, prefix


async def content_of(sw: SwiftRequest, version: ObjectVersion) -> Content:
    if is_slo(version):
        items = await read_manifest(sw.service, version)
        segments = []
        checked: set[str] = set()
        for item in items:
            bucket, key = _split_name(item["name"])
            if bucket not in checked:
                await sw.own_bucket(bucket)
                checked.add(bucket)
            segments.append(Segment(bucket, key, int(item["bytes"]), str(item["hash"])))
        return _large(version, segments)
    manifest = dlo_manifest(version)
    if manifest is not None:
        bucket, prefix = parse_dlo_manifest(manifest)
        await sw.own_bucket(bucket)
        return _large(version, await _dlo_segments(sw.service, bucket, prefix))
    return Content(version, version.size, version.etag)


def _large(version: ObjectVersion, segments: list[Segment]) -> Content:
    etag = large_etag([s.etag for s in segments])
    return Content(version, sum(s.size for s in segments), f'"{etag}"', tuple(segments))


async def _dlo_segments(service: ObjectService, bucket: str, prefix: str) -> list[Segment]:
    segments: list[Segment] = []
    start = ""
    while len(segments) < DLO_MAX_SEGMENTS:
        page = await service.list_objects(bucket, prefix=prefix, start_after=start,
                                          max_keys=1000)
        segments += [Segment(bucket, v.key, v.size, v.etag) for v in page.entries
                     if not is_slo(v) and dlo_manifest(v) is None]
        if not page.is_truncated or not page.next_marker:
            break
        start = page.next_marker
    return segments[:DLO_MAX_SEGMENTS]


def _split_name(name: str) -> tuple[str, str]:
    bucket, sep, key = str(name).lstrip("/").partition("/")
    if not sep or not bucket or not key:
        raise swe.BadRequest("invalid path")
    return bucket, key


async def read_manifest(service: ObjectService, version: ObjectVersion) -> list[dict[str, Any]]:
    """The stored manifest of an SLO (its body), pinned to this version."""
    reader = await service.open_object(
        version.bucket, version.key, version_id=version.version_id,
        conditions=ReadConditions(if_match=version.etag),
    )  # fmt: skip
    try:
        raw = b"".join([bytes(chunk) async for chunk in reader])
    finally:
        await reader.aclose()
    return list(json.loads(raw))


async def stream(service: ObjectService, content: Content, first: int,
                 last: int) -> AsyncIterator[bytes | memoryview]:
    """Bytes first..last (inclusive) of the content, each read pinned to its etag."""
    if last < first:
        return
    if content.segments is None:
        v = content.version
        async for chunk in _read(service, v.bucket, v.key, v.etag, first, last, v.version_id):
            yield chunk
        return
    offset = 0
    for seg in content.segments:
        lo, hi = max(first, offset), min(last, offset + seg.size - 1)
        if lo <= hi:
            async for chunk in _read(service, seg.bucket, seg.key, seg.etag,
                                     lo - offset, hi - offset, None):
                yield chunk
        offset += seg.size
        if offset > last:
            return


async def _read(service: ObjectService, bucket: str, key: str, etag: str, first: int,
                last: int, version_id: str | None) -> AsyncIterator[bytes | memoryview]:
    reader = await service.open_object(
        bucket, key, version_id=version_id, byte_range=ByteRange(first, last),
        conditions=ReadConditions(if_match=etag),
    )  # fmt: skip
    try:
        if reader.length != last - first + 1:
            raise swe.Conflict("segment changed size")
        async for chunk in reader:
            yield chunk
    finally:
        await reader.aclose()


# --- SLO PUT and DELETE ------------------------------------------------------------------------


def parse_slo_manifest(raw: bytes) -> list[dict[str, Any]]:
    try:
        items = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise swe.BadRequest("Manifest must be valid JSON.\n") from None
    if not isinstance(items, list) or not items:
        raise swe.BadRequest("Manifest must be a list of segments.\n")
    if len(items) > MAX_MANIFEST_SEGMENTS:
        raise swe.RequestEntityTooLarge(
            f"Number of segments must be <= {MAX_MANIFEST_SEGMENTS}\n")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise swe.BadRequest(f"Index {i}: path does not refer to an object. Path must be "
                                 "of the form /container/object.\n")
        if "range" in item or "data" in item:
            raise swe.BadRequest(f"Index {i}: ranges and data segments are not supported.\n")
        size, etag = item.get("size_bytes"), item.get("etag")
        if size is not None and (not isinstance(size, int) or size < 0):
            raise swe.BadRequest(f"Index {i}: invalid size_bytes\n")
        if etag is not None and not isinstance(etag, str):
            raise swe.BadRequest(f"Index {i}: invalid etag\n")
    return items


async def _check_segment(
    sw: SwiftRequest, item: dict[str, Any]
) -> tuple[Segment | None, ObjectVersion | None, str | None]:
    """(segment, its version, None) or (None, None, problem) for one manifest entry."""
    path = item["path"]
    try:
        bucket, key = _split_name(path)
        await sw.own_bucket(bucket)
        version = await sw.service.head_object(bucket, key)
    except (swe.NotFound, swe.BadRequest, ObjectNotFound):
        return None, None, "404 Not Found"
    except swe.Forbidden:
        return None, None, "403 Forbidden"
    except Exception as exc:
        if swe.to_swift_error(exc).status == 404:
            return None, None, "404 Not Found"
        raise
    if (bucket, key) == (sw.container, sw.obj):
        return None, None, "409 Conflict"
    if hdr.is_expired(version):
        return None, None, "404 Not Found"
    if is_slo(version) or dlo_manifest(version) is not None:
        return None, None, "400 Bad Request"  # nested large objects are not supported
    if item.get("etag") and item["etag"].strip('"') != version.etag:
        return None, None, "Etag Mismatch"
    if item.get("size_bytes") is not None and item["size_bytes"] != version.size:
        return None, None, "Size Mismatch"
    if version.size < 1:
        return None, None, "Too small; each segment must be at least 1 byte."
    return Segment(bucket, key, version.size, version.etag), version, None


def problem_body(sw: SwiftRequest, problems: list[tuple[str, str]]) -> str:
    if "application/json" in sw.headers.get("Accept", ""):
        return json.dumps({"Errors": problems})
    return "Errors:\n" + "".join(f"{name}, {status}\n" for name, status in problems)


async def put_slo(sw: SwiftRequest, opts: PutOptions) -> web.StreamResponse:
    items = parse_slo_manifest(await sw.read_small(MAX_MANIFEST_SIZE))
    stored: list[dict[str, Any]] = []
    etags: list[str] = []
    problems: list[tuple[str, str]] = []
    total = 0
    for item in items:
        segment, version, problem = await _check_segment(sw, item)
        if problem is not None or segment is None or version is None:
            problems.append((item["path"], problem or "404 Not Found"))
            continue
        etags.append(segment.etag)
        total += segment.size
        stored.append({"name": f"/{segment.bucket}/{segment.key}", "hash": segment.etag,
                       "bytes": segment.size, "content_type": version.content_type,
                       "last_modified": swift_time(version.last_modified)})
    if problems:
        raise swe.BadRequest(problem_body(sw, problems))
    etag = large_etag(etags)
    expected = sw.headers.get("Etag")
    if expected is not None and expected.strip().strip('"') != etag:
        raise swe.UnprocessableEntity()
    body = json.dumps(stored).encode()
    markers = {hdr.SLO_MARKER: "True", hdr.SLO_ETAG: etag, hdr.SLO_SIZE: str(total)}
    opts = replace(opts, headers={**opts.headers, **markers}, content_length=len(body),
                   check=None)
    version = await sw.service.put_object(sw.container, sw.obj, _single(body), opts)
    return empty_response(201, {"Etag": f'"{etag}"',
                                "Last-Modified": hdr.http_date(version.last_modified)})


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def delete_slo(sw: SwiftRequest, version: ObjectVersion) -> web.StreamResponse:
    """?multipart-manifest=delete: every segment, then the manifest; answered
    with Swift's bulk-delete summary."""
    deleted = not_found = 0
    errors: list[tuple[str, str]] = []
    for item in await read_manifest(sw.service, version):
        try:
            bucket, key = _split_name(item["name"])
            await sw.own_bucket(bucket)
            await sw.service.head_object(bucket, key)
            await sw.service.delete_object(bucket, key)
            deleted += 1
        except swe.Forbidden:
            errors.append((item["name"], "403 Forbidden"))
        except Exception as exc:
            if swe.to_swift_error(exc).status != 404:
                raise
            not_found += 1
    await sw.service.delete_object(sw.container, sw.obj, if_match=version.etag)
    deleted += 1
    summary = {"Number Deleted": deleted, "Number Not Found": not_found,
               "Response Body": "", "Response Status": "200 OK", "Errors": errors}
    if "application/json" in sw.headers.get("Accept", ""):
        return web.json_response(summary)
    text = "".join(f"{k}: {summary[k]}\n" for k in sorted(summary) if k != "Errors")
    text += "Errors:\n" + "".join(f"{name}, {status}\n" for name, status in errors)
    return web.Response(text=text, content_type="text/plain")
