"""What GET and HEAD serve of Swift's large objects, and their bytes.

A `Content` says what a request reads from a version: the version itself, a
body built here (a manifest in its PUT form), or the segments of an SLO or DLO
(large_objects.py has the rules and the writing side). Segments are read as
the requested span reaches them, following sub-manifests up to MAX_SLO_DEPTH
levels; every read is pinned to the etag the manifest recorded (a
sub-manifest's own SLO etag), so a segment gone or changed is a 409 before the
first byte and drops the connection after it: never a mixed body.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from kurastore.gateway.objects import errors as dom
from kurastore.gateway.objects.api import ByteRange, ReadConditions
from kurastore.gateway.swift import errors as swe
from kurastore.gateway.swift import headers as hdr
from kurastore.gateway.swift import symlinks as links
from kurastore.gateway.swift.context import SwiftRequest
from kurastore.gateway.swift.slo_manifest import (
    MAX_SLO_DEPTH,
    Segment,
    Span,
    etag_part,
    large_etag,
    raw_form,
    segment_of,
)
from kurastore.metadata import ObjectVersion

if TYPE_CHECKING:
    from kurastore.gateway.objects.service import ObjectService

log = logging.getLogger(__name__)

DLO_MAX_SEGMENTS = 10000
SUB_MANIFEST_CACHE = 20  # sub-manifests one GET keeps (a span may cross one several times)
JSON_TYPE = "application/json; charset=utf-8"

BucketCheck = Callable[[str], Awaitable[object]]


@dataclass(frozen=True)
class Content:
    """What GET sends for a version: itself, bytes built here, or the segments
    of a large object."""

    version: ObjectVersion
    size: int
    etag: str  # as the Etag header shows it (quoted for large objects)
    segments: tuple[Segment, ...] | None = None  # None: not a large object
    data: bytes | None = None  # a body built here (a manifest in its PUT form)
    headers: Mapping[str, str] = field(default_factory=dict)  # added to the answer's
    part: Span | None = None  # the bytes of the ?part-number asked for
    check_bucket: BucketCheck | None = field(default=None, compare=False, repr=False)

    @property
    def bare_etag(self) -> str:
        return self.etag.strip('"')

    @property
    def is_dlo(self) -> bool:
        return self.segments is not None and dlo_manifest(self.version) is not None


def is_slo(version: ObjectVersion) -> bool:
    return hdr.SLO_MARKER in version.headers


def dlo_manifest(version: ObjectVersion) -> str | None:
    return version.headers.get(hdr.OBJECT_MANIFEST)


def parse_dlo_manifest(value: str) -> tuple[str, str]:
    """(container, prefix) of an X-Object-Manifest value; 400 when malformed."""
    container, sep, prefix = unquote(value.strip().lstrip("/")).partition("/")
    if not sep or not container:
        raise swe.BadRequest("X-Object-Manifest must be in the format container/prefix")
    return container, prefix


# --- what GET and HEAD serve ---------------------------------------------------------


async def content_of(sw: SwiftRequest, version: ObjectVersion) -> Content:
    """What GET/HEAD serve for `version` under this request's query:
    ?multipart-manifest=get the manifest itself (&format=raw in its PUT form),
    ?part-number= one part of an SLO, else the large object's bytes."""
    if sw.query.get("multipart-manifest") == "get":
        return await _manifest_itself(sw, version)
    if is_slo(version):
        return _with_part(sw, await _slo(sw, version))
    manifest = dlo_manifest(version)
    if manifest is None:
        return Content(version, version.size, version.etag)
    bucket, prefix = parse_dlo_manifest(manifest)
    check = _reader_check(sw)
    await check(bucket)
    segments = await _dlo_segments(sw.service, bucket, prefix)
    etag = large_etag([s.etag for s in segments])
    return Content(version, sum(s.size for s in segments), f'"{etag}"', tuple(segments),
                   check_bucket=check)


def requested_ranges(content: Content, ranges: list[ByteRange] | None) -> list[ByteRange] | None:
    """The ranges a GET serves: a ?part-number='s span; a DLO ignores several
    ranges and sends the whole object (200), as Swift's DLO does."""
    if content.part is not None:
        return [ByteRange(*content.part)]
    if ranges and len(ranges) > 1 and content.is_dlo:
        return None
    return ranges


def head_status(content: Content) -> tuple[int, int]:
    """(status, Content-Length) of a HEAD: a part is a 206 of that part's size."""
    if content.part is None:
        return 200, content.size
    first, last = content.part
    return 206, last - first + 1


def _reader_check(sw: SwiftRequest) -> BucketCheck:
    """Reading a segment needs read access to its container (not write, even
    when it is the manifest's own container)."""
    return functools.partial(sw.own_bucket, write=False)


async def _manifest_itself(sw: SwiftRequest, version: ObjectVersion) -> Content:
    if not is_slo(version):
        return Content(version, version.size, version.etag)
    if sw.query.get("format") != "raw":
        return Content(version, version.size, version.etag, headers={"Content-Type": JSON_TYPE})
    raw = raw_form(await read_manifest(sw.service, version))
    return Content(version, len(raw), hashlib.md5(raw).hexdigest(), data=raw)


async def _slo(sw: SwiftRequest, version: ObjectVersion) -> Content:
    items = await read_manifest(sw.service, version)
    size, etag = slo_identity(version, items)
    return Content(version, size, f'"{etag}"', tuple(segment_of(i) for i in items),
                   headers={"X-Manifest-Etag": version.etag}, check_bucket=_reader_check(sw))


def slo_identity(version: ObjectVersion, items: list[dict[str, Any]] | None) -> tuple[int, str]:
    """(size, etag) of an SLO: the markers stored at PUT, else (a manifest stored
    without them) computed from its entries."""
    size, etag = version.headers.get(hdr.SLO_SIZE), version.headers.get(hdr.SLO_ETAG)
    if size is not None and etag:
        return int(size), etag
    items = items or []
    return sum(segment_of(i).size for i in items), large_etag([etag_part(i) for i in items])


def part_number(sw: SwiftRequest) -> int | None:
    """?part-number= of a GET or HEAD of an SLO; 400 when not a positive integer
    or sent with a Range."""
    value = sw.query.get("part-number")
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise swe.BadRequest("Part number must be an integer greater than 0")
    if hdr.parse_ranges(sw.headers.get("Range")) is not None:
        raise swe.BadRequest("Range requests are not supported with part number queries")
    return number


def _with_part(sw: SwiftRequest, content: Content) -> Content:
    """The content restricted to ?part-number='s part (a top-level entry of the
    manifest); 416 past the last part."""
    number = part_number(sw)
    if number is None:
        return content
    segments = content.segments or ()
    headers = {**content.headers, "X-Parts-Count": str(len(segments))}
    if number > len(segments):
        known = {k: v for k, v in hdr.object_headers(content.version, content.etag).items()
                 if k != "Content-Type"}  # the error page sets its own
        if sw.request.method == "HEAD":  # Swift states the empty body's length
            known["Content-Length"] = "0"
        raise swe.RangeNotSatisfiable("The requested part number is not satisfiable", headers={
            **known, **headers, "Content-Range": f"bytes */{content.size}"})
    first = sum(s.size for s in segments[:number - 1])
    last = first + segments[number - 1].size - 1
    headers["Content-Range"] = f"bytes {first}-{last}/{content.size}"
    return replace(content, headers=headers, part=(first, last))


async def _dlo_segments(service: ObjectService, bucket: str, prefix: str) -> list[Segment]:
    segments: list[Segment] = []
    start = ""
    while len(segments) < DLO_MAX_SEGMENTS:
        page = await service.list_objects(bucket, prefix=prefix, start_after=start,
                                          max_keys=1000)
        segments += [Segment(bucket, v.key, v.etag, v.size) for v in page.entries
                     if not is_slo(v) and dlo_manifest(v) is None]
        if not page.is_truncated or not page.next_marker:
            break
        start = page.next_marker
    return segments[:DLO_MAX_SEGMENTS]


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


# --- reading the bytes -----------------------------------------------------------------------


async def stream(service: ObjectService, content: Content, first: int,
                 last: int) -> AsyncIterator[bytes | memoryview]:
    """Bytes first..last (inclusive) of the content, each read pinned to its etag."""
    if last < first:
        return
    if content.data is not None:
        yield content.data[first:last + 1]
        return
    if content.segments is None:
        v = content.version
        async for chunk in _read(service, v.bucket, v.key, v.etag, first, last, v.version_id):
            yield chunk
        return
    walker = _Walker(service, content.check_bucket)
    async for chunk in walker.walk(content.segments, first, last, 1):
        yield chunk


class _Walker:
    """Reads a span of a tree of segments: a sub-manifest is fetched when the
    span reaches it (the last few are kept), each container checked once."""

    def __init__(self, service: ObjectService, check: BucketCheck | None) -> None:
        self.service = service
        self.check = check
        self.checked: set[str] = set()
        self.manifests: OrderedDict[tuple[str, str, str], tuple[Segment, ...]] = OrderedDict()

    async def walk(self, segments: tuple[Segment, ...], first: int, last: int,
                   depth: int) -> AsyncIterator[bytes | memoryview]:
        offset = 0
        for seg in segments:
            lo, hi = max(first, offset), min(last, offset + seg.size - 1)
            if lo <= hi:
                async for chunk in self._segment(seg, lo - offset, hi - offset, depth):
                    yield chunk
            offset += seg.size
            if offset > last:
                return

    async def _segment(self, seg: Segment, first: int, last: int,
                       depth: int) -> AsyncIterator[bytes | memoryview]:
        """Bytes first..last of one entry (relative to what the entry contributes)."""
        if seg.data is not None:
            yield seg.data[first:last + 1]
            return
        if self.check is not None and seg.bucket not in self.checked:
            await self.check(seg.bucket)
            self.checked.add(seg.bucket)
        if not seg.sub_slo:
            async for chunk in _segment_read(self.service, seg, seg.start + first,
                                             seg.start + last, self.check):
                yield chunk
            return
        if depth >= MAX_SLO_DEPTH:
            log.warning("SLO %s/%s: sub-manifests nested deeper than %d", seg.bucket,
                        seg.key, MAX_SLO_DEPTH)
            raise swe.Conflict()
        subs = await self._sub_manifest(seg)
        async for chunk in self.walk(subs, seg.start + first, seg.start + last, depth + 1):
            yield chunk

    async def _sub_manifest(self, seg: Segment) -> tuple[Segment, ...]:
        """The entries of a sub-manifest that is still the SLO its parent recorded."""
        key = (seg.bucket, seg.key, seg.etag)
        if key in self.manifests:
            self.manifests.move_to_end(key)
            return self.manifests[key]
        try:
            version = await links.segment_version(
                self.service, self.check, await self.service.head_object(seg.bucket, seg.key))
            items = await read_manifest(self.service, version) if is_slo(version) else None
        except (dom.ObjectNotFound, dom.PreconditionFailed) as exc:
            raise swe.Conflict() from exc
        if items is None or hdr.is_expired(version) or \
                slo_identity(version, items)[1] != seg.etag:
            raise swe.Conflict()
        self.manifests[key] = tuple(segment_of(i) for i in items)
        if len(self.manifests) > SUB_MANIFEST_CACHE:
            self.manifests.popitem(last=False)
        return self.manifests[key]


async def _segment_read(service: ObjectService, seg: Segment, first: int,
                        last: int, check: BucketCheck | None) -> AsyncIterator[bytes | memoryview]:
    """A segment's bytes; a segment gone, expired or rewritten is a 409 (Swift's).
    A segment that is a symlink recorded its target's etag, so the pin fails on
    the link itself: the target is read then (only then, so plain segments cost
    one read)."""
    try:
        async for chunk in _read(service, seg.bucket, seg.key, seg.etag, first, last, None,
                                 expiring=True):
            yield chunk
        return
    except (dom.PreconditionFailed, dom.InvalidRange) as exc:  # the pin, before any byte
        target = await links.segment_target(service, check, seg.bucket, seg.key)
        if target is None:
            raise swe.Conflict() from exc
    except dom.ObjectNotFound as exc:
        raise swe.Conflict() from exc
    try:
        async for chunk in _read(service, target.bucket, target.key, seg.etag, first, last,
                                 None, expiring=True):
            yield chunk
    except (dom.ObjectNotFound, dom.PreconditionFailed, dom.InvalidRange) as exc:
        raise swe.Conflict() from exc


async def _read(service: ObjectService, bucket: str, key: str, etag: str, first: int,
                last: int, version_id: str | None,
                expiring: bool = False) -> AsyncIterator[bytes | memoryview]:
    reader = await service.open_object(
        bucket, key, version_id=version_id, byte_range=ByteRange(first, last),
        conditions=ReadConditions(if_match=etag),
    )  # fmt: skip
    try:
        if reader.length != last - first + 1:
            raise swe.Conflict("segment changed size")
        if expiring and hdr.is_expired(reader.version):
            raise swe.Conflict()
        async for chunk in reader:
            yield chunk
    finally:
        await reader.aclose()
