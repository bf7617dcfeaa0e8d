"""Swift object handlers: PUT (plain, SLO manifest, DLO manifest), GET and HEAD
(ranges, several ranges as multipart/byteranges, conditions), POST (replace
metadata), DELETE, and copies (the COPY verb, PUT with X-Copy-From).

Rules:
- The body is streamed; an ETag header is checked through PutOptions.check
  before the commit, so a mismatch (422) leaves nothing visible.
- An object past its X-Delete-At is gone for every verb (404), even before
  the expiry worker removes it.
- GET raises every clean error before prepare(): the first chunk is read
  before the headers go out. After that a failure drops the connection.
- POST rewrites the object onto itself with the new metadata (a conditional
  copy: it fails rather than overwrite a version written meanwhile).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Mapping
from urllib.parse import quote, unquote

from aiohttp import web

from kurastore.gateway.middlewares import write_to_client
from kurastore.gateway.objects import errors as dom
from kurastore.gateway.objects.api import (
    BodyCheck,
    BodyDigest,
    CopySource,
    PutOptions,
    ReadConditions,
    WriteConditions,
)
from kurastore.gateway.objects.conditions import check_read_conditions
from kurastore.gateway.swift import errors as swe
from kurastore.gateway.swift import headers as hdr
from kurastore.gateway.swift import large_objects as lo
from kurastore.gateway.swift import symlinks as links
from kurastore.gateway.swift import versioned_writes as vw
from kurastore.gateway.swift.context import (
    SwiftRequest,
    deleted,
    empty_response,
    swift_settings,
    with_swift_settings,
)
from kurastore.gateway.swift.routes import parse_copy_path, user_id_of
from kurastore.metadata import BucketRecord, ObjectVersion

log = logging.getLogger(__name__)

MARKERS = (hdr.SLO_MARKER, hdr.SLO_ETAG, hdr.SLO_SIZE, hdr.OBJECT_MANIFEST)


def etag_check(expected: str | None) -> BodyCheck | None:
    if not expected:
        return None
    want = expected.strip().strip('"').lower()

    def check(digest: BodyDigest) -> None:
        if digest.md5.hex() != want:
            raise swe.UnprocessableEntity()

    return check


async def mark_expiring(sw: SwiftRequest, record: BucketRecord) -> None:
    """Tell the expiry worker this container holds objects with X-Delete-At."""
    if swift_settings(record).get("expiring"):
        return
    record = await sw.service.get_bucket(record.name, fresh=True)  # rewritten whole below
    swift = swift_settings(record)
    if not swift.get("expiring"):
        swift["expiring"] = True
        await sw.service.update_bucket(record.name, settings=with_swift_settings(record, swift))


async def put_options(sw: SwiftRequest, record: BucketRecord) -> PutOptions:
    h = sw.headers
    meta, _removed = hdr.metadata(h, "object")
    expires_at = hdr.delete_at(h)
    if expires_at is not None:
        await mark_expiring(sw, record)
    none_match = h.get("If-None-Match")
    if none_match is not None and none_match.strip() != "*":
        raise swe.BadRequest("If-None-Match only supports *")
    return PutOptions(
        owner=sw.user_id,
        content_type=hdr.content_type(h, sw.obj),
        headers=hdr.stored_headers(h),
        user_meta=meta,
        expires_at=expires_at,
        conditions=WriteConditions(if_none_match=None if none_match is None else "*"),
    )


async def put_object(sw: SwiftRequest) -> web.StreamResponse:
    hdr.check_object_name(sw.obj)
    record = await sw.own_bucket(sw.container)
    length = sw.require_length()
    opts = await links.put_options(sw, await put_options(sw, record), length)
    await vw.archive_current(sw, record, sw.obj)
    if sw.query.get("multipart-manifest") == "put":
        return await lo.put_slo(sw, opts)
    manifest = sw.headers.get("X-Object-Manifest")
    if manifest is not None:
        lo.parse_dlo_manifest(manifest)
        opts = dataclasses.replace(opts, headers={**opts.headers, hdr.OBJECT_MANIFEST: manifest})
    opts = dataclasses.replace(opts, content_length=length,
                               check=etag_check(sw.headers.get("Etag")))
    version = await sw.service.put_object(sw.container, sw.obj, sw.body(), opts)
    return empty_response(201, {"Etag": version.etag,
                                "Last-Modified": hdr.http_date(version.last_modified)})


async def current(sw: SwiftRequest, container: str, obj: str, *, write: bool | None = None,
                  account_user: str | None = None) -> ObjectVersion:
    """The live version (404 when missing or past its X-Delete-At)."""
    hdr.check_object_name(obj)
    await sw.own_bucket(container, write=write, account_user=account_user)
    version = await sw.service.head_object(container, obj)
    if hdr.is_expired(version):
        raise swe.NotFound()
    return version


async def resolve(sw: SwiftRequest, version: ObjectVersion,
                  added: Mapping[str, str] | None = None) -> lo.Content:
    """What GET/HEAD serve (a manifest itself, one part, a large object: lo.content_of),
    with `added` headers (a followed link's Content-Location) on it and its errors."""
    content = await lo.content_of(sw, version)
    if added:
        content = dataclasses.replace(content, headers={**content.headers, **added})
    conditions = hdr.read_conditions(sw.headers)
    described = dataclasses.replace(version, etag=content.bare_etag)
    try:
        check_read_conditions(described, conditions)
        if conditions.if_match is not None and conditions.if_unmodified_since is not None:
            # Swift checks If-Unmodified-Since even when If-Match matched (RFC 7232
            # and S3 skip it then).
            check_read_conditions(described, ReadConditions(
                if_unmodified_since=conditions.if_unmodified_since))
    except (dom.PreconditionFailed, dom.NotModified) as exc:
        # Swift's 304 and 412 still describe the object (Etag, Last-Modified...).
        failed = swe.NotModified if isinstance(exc, dom.NotModified) else swe.PreconditionFailed
        raise failed(headers=answer_headers(sw, content)) from None
    return content


def answer_headers(sw: SwiftRequest, content: lo.Content) -> dict[str, str]:
    return {**hdr.object_headers(content.version, content.etag), **content.headers}


async def head_object(sw: SwiftRequest) -> web.StreamResponse:
    content = await resolve(sw, *await links.served(sw, await current(sw, sw.container, sw.obj)))
    headers = answer_headers(sw, content)
    status, length = lo.head_status(content)  # a ?part-number= HEAD is a 206
    headers["Content-Length"] = str(length)
    return web.Response(status=status, headers=headers)


async def _prefetched(chunks: AsyncIterator[bytes | memoryview]
                      ) -> tuple[bytes | memoryview | None, AsyncIterator[bytes | memoryview]]:
    """Reads the first chunk now, so errors of the first read come before the
    answer's headers."""
    async for chunk in chunks:
        return chunk, chunks
    return None, chunks


async def get_object(sw: SwiftRequest) -> web.StreamResponse:
    content = await resolve(sw, *await links.served(sw, await current(sw, sw.container, sw.obj)))
    headers = answer_headers(sw, content)
    ranges = lo.requested_ranges(content, hdr.parse_ranges(sw.headers.get("Range")))
    try:
        spans = hdr.resolve_ranges(content.size, ranges) if ranges else [(0, content.size - 1)]
    except swe.RangeNotSatisfiable as exc:
        exc.headers = {**headers, **exc.headers}  # a 416 still describes the object
        raise
    if len(spans) > 1:
        return await _multirange(sw, content, headers, spans)
    first, last = spans[0]
    if ranges:
        headers["Content-Range"] = f"bytes {first}-{last}/{content.size}"
    return await send_bytes(sw, 206 if ranges else 200, headers, content, first, last)


async def send_bytes(sw: SwiftRequest, status: int, headers: dict[str, str],
                     content: lo.Content, first: int, last: int) -> web.StreamResponse:
    """Bytes first..last of `content`, streamed with `status`; the first read comes
    before the headers, so an unreadable object gets its error, not a cut 200."""
    chunks = lo.stream(sw.service, content, first, last)
    head, rest = await _prefetched(chunks)
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = last - first + 1
    await resp.prepare(sw.request)
    request = sw.request
    try:
        if head is not None and not await write_to_client(request, resp, head):
            return resp
        async for chunk in rest:
            if not await write_to_client(request, resp, chunk):
                return resp
        await resp.write_eof()
    except BaseException:
        log.warning("GET %s/%s failed after the response started", sw.container, sw.obj,
                    exc_info=True)
        raise
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
    return resp


async def _multirange(sw: SwiftRequest, content: lo.Content, headers: dict[str, str],
                      spans: list[tuple[int, int]]) -> web.StreamResponse:
    boundary = os.urandom(16).hex()
    part_type = headers["Content-Type"]
    heads = [
        (f"--{boundary}\r\nContent-Type: {part_type}\r\n"
         f"Content-Range: bytes {a}-{b}/{content.size}\r\n\r\n").encode()
        for a, b in spans
    ]
    tail = f"--{boundary}--".encode()
    length = sum(len(h) + (b - a + 1) + 2 for h, (a, b) in zip(heads, spans, strict=True))
    chunks = lo.stream(sw.service, content, *spans[0])
    first, rest = await _prefetched(chunks)
    headers["Content-Type"] = f"multipart/byteranges;boundary={boundary}"
    resp = web.StreamResponse(status=206, headers=headers)
    resp.content_length = length + len(tail)
    await resp.prepare(sw.request)
    request = sw.request
    try:
        for i, (a, b) in enumerate(spans):
            pieces: list[bytes | memoryview] = [heads[i]]
            if i == 0:
                pieces += [first] if first is not None else []
                body = rest
            else:
                body = lo.stream(sw.service, content, a, b)
            for piece in pieces:
                if not await write_to_client(request, resp, piece):
                    return resp
            async for chunk in body:
                if not await write_to_client(request, resp, chunk):
                    return resp
            if not await write_to_client(request, resp, b"\r\n"):
                return resp
        if not await write_to_client(request, resp, tail):
            return resp
        await resp.write_eof()
    except BaseException:
        log.warning("multi-range GET %s/%s failed after the response started", sw.container,
                    sw.obj, exc_info=True)
        raise
    return resp


async def delete_object(sw: SwiftRequest) -> web.StreamResponse:
    expected_expiry = hdr.if_delete_at(sw.headers)
    if expected_expiry is not None:
        version = await current(sw, sw.container, sw.obj)
        if version.expires_at != expected_expiry:
            raise swe.PreconditionFailed()
    if sw.query.get("multipart-manifest") != "delete":
        hdr.check_object_name(sw.obj)
        versioned = await vw.delete(sw, await sw.own_bucket(sw.container), sw.obj)
        if versioned is not None:
            return versioned
    version = await current(sw, sw.container, sw.obj)
    if sw.query.get("multipart-manifest") == "delete" and lo.is_slo(version):
        return await lo.delete_slo(sw, version)
    await sw.service.delete_object(sw.container, sw.obj)
    return deleted()


async def post_object(sw: SwiftRequest) -> web.StreamResponse:
    links.refuse_retarget(sw)
    record = await sw.own_bucket(sw.container)
    version = await current(sw, sw.container, sw.obj)
    meta, _removed = hdr.metadata(sw.headers, "object")
    expires_at = hdr.delete_at(sw.headers)
    if expires_at is not None:
        await mark_expiring(sw, record)
    # X-Object-Manifest is metadata (a POST without it ends a DLO); an SLO stays one.
    kept = {k: v for k, v in version.headers.items() if k in lo.SLO_HEADERS}
    kept.update(links.stored(version))  # a link stays one
    if "X-Object-Manifest" in sw.headers:
        lo.parse_dlo_manifest(sw.headers["X-Object-Manifest"])
        kept[hdr.OBJECT_MANIFEST] = sw.headers["X-Object-Manifest"]
    opts = PutOptions(
        owner=version.owner,
        content_type=sw.headers.get("Content-Type") or version.content_type,
        headers={**hdr.stored_headers(sw.headers), **kept},
        user_meta=meta,
        tags=dict(version.tags),
        storage_class=version.storage_class,
        expires_at=expires_at,
        conditions=WriteConditions(if_match=version.etag),
    )
    source = CopySource(sw.container, sw.obj, version_id=version.version_id,
                        conditions=ReadConditions(if_match=version.etag))
    await sw.service.copy_object(source, sw.container, sw.obj, opts, replace_metadata=True)
    return links.post_answer(sw, version) or empty_response(202)


def _account_user(sw: SwiftRequest, header: str) -> str:
    """The user whose account a copy header names (default: the path's)."""
    if header not in sw.headers:
        return sw.user_id
    user_id = user_id_of(unquote(sw.headers[header].strip()))
    if not user_id:
        raise swe.PreconditionFailed(f"{header} must name an account (AUTH_...)")
    return user_id


def _copy_ends(sw: SwiftRequest) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    """((source account's user, container, object), (the destination's))."""
    h = sw.headers
    try:
        if sw.request.method == "COPY":
            if "Destination" not in h:
                raise swe.PreconditionFailed("You must provide a Destination header")
            dst_c, dst_o = parse_copy_path(h["Destination"])
            return ((sw.user_id, sw.container, sw.obj),
                    (_account_user(sw, "Destination-Account"), dst_c, dst_o))
        src_c, src_o = parse_copy_path(h["X-Copy-From"])
        return ((_account_user(sw, "X-Copy-From-Account"), src_c, src_o),
                (sw.user_id, sw.container, sw.obj))
    except ValueError:
        raise swe.PreconditionFailed(
            "X-Copy-From header must be of the form <container name>/<object name>") from None


async def copy_object(sw: SwiftRequest) -> web.StreamResponse:
    (src_user, src_c, src_o), (dst_user, dst_c, dst_o) = _copy_ends(sw)
    hdr.check_object_name(dst_o)
    source = await links.copy_source(
        sw, await current(sw, src_c, src_o, write=False, account_user=src_user), src_user)
    record = await sw.own_bucket(dst_c, write=True, account_user=dst_user)
    if sw.request.method == "PUT":
        sw.require_length()
    check_read_conditions(source, hdr.read_conditions(sw.headers))
    content = await lo.copy_content(sw, source, dst_user)
    opts = await put_options(sw, record)
    await vw.archive_current(sw, record, dst_o)
    fresh = sw.headers.get("X-Fresh-Metadata", "").lower() in ("true", "1", "yes")
    # A copy never inherits the source's S3 ACL (kept under x-kurastore-*): it is private.
    headers = dict(opts.headers) if fresh else {**{
        k: v for k, v in source.headers.items()
        if k not in MARKERS and not k.startswith("x-kurastore-")}, **opts.headers}
    if content.segments is None:  # a manifest copied as a manifest keeps its markers
        headers.update({k: v for k, v in source.headers.items() if k in MARKERS})
    headers = await links.copied(sw, headers, dst_user, dst_c, dst_o)
    opts = dataclasses.replace(
        opts, owner=dst_user, headers=headers,
        user_meta=dict(opts.user_meta) if fresh else {**source.user_meta, **opts.user_meta},
        content_type=sw.headers.get("Content-Type") or source.content_type,
    )  # fmt: skip
    ranges = hdr.parse_ranges(sw.headers.get("Range"))  # a copy of one range of the source
    spans = hdr.resolve_ranges(content.size, ranges) if ranges else []
    if len(spans) > 1:
        raise swe.RangeNotSatisfiable("A copy takes one range")
    if content.segments is None and not spans:
        src = CopySource(source.bucket, source.key, version_id=source.version_id,
                         conditions=ReadConditions(if_match=source.etag))
        version = await sw.service.copy_object(src, dst_c, dst_o, opts, replace_metadata=True)
    else:
        first, last = spans[0] if spans else (0, content.size - 1)
        body = lo.stream(sw.service, content, first, last)
        version = await sw.service.put_object(
            dst_c, dst_o, body, dataclasses.replace(opts, content_length=last - first + 1))
    return empty_response(201, {
        "Etag": version.etag,
        "Last-Modified": hdr.http_date(version.last_modified),
        "X-Copied-From": f"{quote(src_c)}/{quote(src_o)}",
        "X-Copied-From-Last-Modified": hdr.http_date(source.last_modified),
    })  # fmt: skip
