"""S3 object handlers: PutObject, GetObject, HeadObject, DeleteObject,
DeleteObjects and CopyObject.

Rules: the body is streamed (never read whole); Content-MD5 and x-amz-checksum
values are checked by the service through PutOptions.check before the commit,
so a bad digest leaves nothing visible. GET raises every clean error before
prepare(); after it, a failure is logged and re-raised so aiohttp drops the
connection: an error is never written into a body.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from aiohttp import web

from kurastore.gateway.middlewares import write_to_client
from kurastore.gateway.objects.api import PutOptions
from kurastore.gateway.objects.conditions import resolve_range
from kurastore.gateway.objects.errors import NotModified
from kurastore.gateway.objects.lifecycle import rules_of
from kurastore.gateway.s3 import access, acl, lifecycle, lock, sse
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3 import headers as hdr
from kurastore.gateway.s3.context import Handler, S3Request, empty_response, xml_response
from kurastore.gateway.s3.routes import S3Op
from kurastore.gateway.s3.xml import child_text, document, el, iso8601, parse, parse_bool, quoted
from kurastore.metadata import ObjectVersion, PartLayout

log = logging.getLogger(__name__)

MAX_DELETE_KEYS = 1000
# Requests that make a new version (and so take Object Lock headers or defaults).
_NEW_VERSION_OPS = frozenset({S3Op.PUT_OBJECT, S3Op.COPY_OBJECT, S3Op.CREATE_MULTIPART_UPLOAD})
SELF_COPY_MESSAGE = (
    "This copy request is illegal because it is trying to copy an object to itself without "
    "changing the object's metadata, storage class, website redirect location or encryption "
    "attributes."
)


def require_length(s3: S3Request) -> None:
    """A body must have a stated length (or be HTTP-chunked)."""
    chunked = "chunked" in s3.headers.get("Transfer-Encoding", "").lower()
    if s3.request.content_length is None and not chunked:
        raise s3e.MissingContentLength()


def put_options(s3: S3Request, spec: hdr.IntegritySpec, *, with_body: bool = True) -> PutOptions:
    """PutOptions from the request headers (shared by PutObject, multipart)."""
    h = s3.headers
    body = s3.body() if with_body else None
    return PutOptions(
        owner=s3.object_owner or s3.writer,
        content_type=hdr.content_type(h),
        headers={**hdr.stored_headers(h), **s3.acl_headers, **_lock_headers(s3)},
        user_meta=hdr.user_metadata(h),
        tags=hdr.tagging_header(h),
        content_length=body.decoded_length if body is not None else None,
        checksum_algorithms=spec.algorithms,
        check=hdr.body_check(spec, lambda: body.trailers if body is not None else {}),
        conditions=hdr.write_conditions(h),
        storage_class=hdr.storage_class(h),
        encryption=sse.write_request(h),
    )


def _lock_headers(s3: S3Request) -> dict[str, str]:
    return lock.write_headers(s3) if s3.op in _NEW_VERSION_OPS else {}


def echo_checksum(sums: Mapping[str, str], spec: hdr.IntegritySpec) -> dict[str, str]:
    """The checksum the client sent (or announced), as we computed it."""
    if spec.algorithm and spec.algorithm in sums:
        return hdr.checksum_headers({spec.algorithm: sums[spec.algorithm]})
    return {}


async def put_object(s3: S3Request) -> web.StreamResponse:
    require_length(s3)
    spec = hdr.integrity_spec(s3.headers)
    opts = put_options(s3, spec)
    version = await s3.service.put_object(s3.bucket, s3.key, s3.body(), opts)
    headers = {"ETag": quoted(version.etag), **hdr.version_headers(version.version_id,
                                                                   s3.versioning_enabled)}
    headers.update(sse.response_headers(version.encryption))
    echoed = echo_checksum(version.checksums, spec)
    if echoed:  # a single PUT's checksum is always of the whole object (SDKs expose it)
        echoed["x-amz-checksum-type"] = "FULL_OBJECT"
    headers.update(echoed)
    headers.update(expiration(s3, version))
    return empty_response(headers=headers)


def expiration(s3: S3Request, version: ObjectVersion) -> dict[str, str]:
    """x-amz-expiration when a lifecycle rule will expire this current version."""
    found = rules_of(s3.bucket_record.settings) if s3.bucket_record else []
    return lifecycle.expiration_header(found, version) if found and version.is_latest else {}


def _read_args(s3: S3Request) -> dict:
    part = hdr.part_number(s3.query.get("partNumber"))
    byte_range = hdr.parse_range(s3.headers.get("Range"))
    if part is not None and "Range" in s3.headers:
        raise s3e.InvalidRequest("Cannot specify both Range header and partNumber query parameter")
    return {
        "version_id": s3.query.get("versionId") or None,
        "part_number": part,
        "conditions": hdr.read_conditions(s3.headers),
        "byte_range": byte_range,
        "customer_key": sse.read_key(s3.headers),
    }


def _answer_headers(
    s3: S3Request, version: ObjectVersion, first: int, last: int, partial: bool, parts: int
) -> dict[str, str]:
    whole = first == 0 and last == version.size - 1
    checksum_mode = s3.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
    part = _multipart_part(version, s3.query.get("partNumber"))
    out = hdr.object_headers(
        version, versioned=s3.is_versioned, with_checksums=checksum_mode and whole and not part
    )
    if checksum_mode and part is not None:  # a part answers with its own checksum
        out.update(hdr.checksum_headers(part.checksums, version.checksum_type))
    if partial:
        out["Content-Range"] = f"bytes {first}-{last}/{version.size}"
    if s3.query.get("partNumber") is not None:
        out["x-amz-mp-parts-count"] = str(parts)
    out.update(expiration(s3, version))
    out.update(hdr.response_overrides(s3.query))
    return out


async def get_object(s3: S3Request) -> web.StreamResponse:
    reader = await s3.service.open_object(s3.bucket, s3.key, **_read_args(s3))
    try:
        access.check_loaded(s3, reader.version)
        headers = _answer_headers(
            s3, reader.version, reader.start, reader.end, reader.is_partial, reader.parts_count
        )
        # The first read happens before the headers go: an object that cannot be read
        # at all (too few shards reachable or intact) gets its S3 error, not a 200
        # cut off after the headers.
        chunks = aiter(reader)
        head = await anext(chunks, None)
        resp = web.StreamResponse(status=206 if reader.is_partial else 200, headers=headers)
        resp.content_length = reader.length
        await resp.prepare(s3.request)
        try:
            if head is not None and not await write_to_client(s3.request, resp, head):
                return resp
            async for chunk in chunks:
                if not await write_to_client(s3.request, resp, chunk):
                    return resp
            await resp.write_eof()
        except BaseException:
            # Headers are gone: the only honest signal left is a dropped connection.
            log.warning("GET %s/%s failed after the response started", s3.bucket, s3.key,
                        exc_info=True)
            raise
    finally:
        await reader.aclose()
    return resp


def _multipart_part(version: ObjectVersion, number: str | None) -> PartLayout | None:
    """The part ?partNumber= names in an object a multipart upload made (a plain
    object is its own part 1, whose checksum is the object's)."""
    if number is None or "-" not in version.etag or not version.parts:
        return None
    index = int(number) - 1  # validated by _read_args
    return version.parts[index] if 0 <= index < len(version.parts) else None


def _part_span(version: ObjectVersion, number: int) -> tuple[int, int]:
    if len(version.parts) <= 1:
        return 0, version.size - 1
    first = sum(p.size for p in version.parts[: number - 1])
    return first, first + version.parts[number - 1].size - 1


async def head_object(s3: S3Request) -> web.StreamResponse:
    args = _read_args(s3)
    byte_range = args.pop("byte_range")
    version = await s3.service.head_object(s3.bucket, s3.key, verify_key=True, **args)
    access.check_loaded(s3, version)
    if args["part_number"] is not None:
        first, last = _part_span(version, args["part_number"])
        partial = True
    else:
        first, last, partial = resolve_range(version.size, byte_range)
    headers = _answer_headers(s3, version, first, last, partial, max(1, len(version.parts)))
    headers["Content-Length"] = str(last - first + 1)
    return empty_response(206 if partial else 200, headers)


async def delete_object(s3: S3Request) -> web.StreamResponse:
    if_match = s3.headers.get("If-Match")
    version_id = s3.query.get("versionId") or None
    result = await s3.service.delete_object(
        s3.bucket, s3.key, version_id=version_id,
        if_match=if_match.strip().strip('"') if if_match else None,
        refuse=lock.removal_guard(s3) if version_id else None,
    )  # fmt: skip
    headers = {"x-amz-delete-marker": "true"} if result.delete_marker else {}
    if s3.is_versioned or "versionId" in s3.query:
        headers["x-amz-version-id"] = result.version_id
    return empty_response(204, headers)


async def delete_objects(s3: S3Request) -> web.StreamResponse:
    spec = hdr.integrity_spec(s3.headers)
    body = await s3.read_xml_body()
    hdr.check_small_body(spec, body)
    doc = parse(body, "Delete")
    quiet = parse_bool(child_text(doc, "Quiet"))
    targets = [(child_text(o, "Key"), child_text(o, "VersionId")) for o in doc.findall("Object")]
    if not targets or len(targets) > MAX_DELETE_KEYS or any(k is None for k, _ in targets):
        raise s3e.MalformedXML()
    out = []
    guard = lock.removal_guard(s3)
    for key, version_id in targets:
        try:
            if not access.delete_allowed(s3, key, version_id):
                raise s3e.AccessDenied()
            result = await s3.service.delete_object(
                s3.bucket, key, version_id=version_id or None,
                refuse=guard if version_id else None)
        except Exception as exc:  # reported per key, as S3 does
            err = s3e.to_s3_error(exc)
            out.append(el("Error", [el("Key", key), el("VersionId", version_id),
                                    el("Code", err.code), el("Message", err.text)]))
            continue
        if quiet:
            continue
        marker = result.delete_marker
        out.append(el("Deleted", [
            el("Key", key), el("VersionId", version_id),
            el("DeleteMarker", True if marker else None),
            # The marker made, or (deleting one by version id) the marker removed.
            el("DeleteMarkerVersionId", result.version_id if marker else None),
        ]))  # fmt: skip
    return xml_response(document("DeleteResult", out))


async def copy_object(s3: S3Request) -> web.StreamResponse:
    h = s3.headers
    src = replace(hdr.copy_source(h), customer_key=sse.customer_key(h, sse.COPY_SOURCE))
    if src.version_id is not None:
        hdr.check_version_id(src.version_id)
    await access.check_copy_source(s3, src.bucket, src.key, src.version_id)
    directive = h.get("x-amz-metadata-directive", "COPY").upper()
    tag_directive = h.get("x-amz-tagging-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise s3e.InvalidArgument("Unknown metadata directive.")
    if tag_directive not in ("COPY", "REPLACE"):
        raise s3e.InvalidArgument("Unknown tagging directive.")
    same = (src.bucket, src.key) == (s3.bucket, s3.key) and src.version_id is None
    # The copy carries the algorithm asked for, else the source's (copy.py).
    opts = put_options(s3, hdr.announced_checksum(h), with_body=False)
    explicit_sse = sse.SSE in h or sse.CUSTOMER_ALGORITHM in h
    if same and directive == "COPY" and "x-amz-storage-class" not in h and not explicit_sse:
        raise s3e.InvalidRequest(SELF_COPY_MESSAGE)
    try:
        version = await s3.service.copy_object(
            src, s3.bucket, s3.key, opts, replace_metadata=directive == "REPLACE",
            replace_tags=tag_directive == "REPLACE",
        )
    except NotModified as exc:  # copy-source conditions answer 412, never 304
        raise s3e.PreconditionFailed() from exc
    version = await _copy_acl(s3, version)
    headers = hdr.version_headers(version.version_id, s3.versioning_enabled)
    headers.update(sse.response_headers(version.encryption))
    if src.version_id:
        headers["x-amz-copy-source-version-id"] = src.version_id
    sums = [el(f"Checksum{algo}", value) for algo, value in version.checksums.items()]
    if sums:
        sums.append(el("ChecksumType", version.checksum_type or "FULL_OBJECT"))
    return xml_response(document("CopyObjectResult", [
        el("LastModified", iso8601(version.last_modified)), el("ETag", quoted(version.etag)),
        *sums,
    ]), headers=headers)  # fmt: skip

async def _copy_acl(s3: S3Request, version: ObjectVersion) -> ObjectVersion:
    """A copy gets the ACL its request asks for (default: private), never the
    source's, which a COPY metadata directive carried over with the headers."""
    if version.headers.get(acl.OBJECT_ACL_HEADER) == s3.acl_headers.get(acl.OBJECT_ACL_HEADER):
        return version
    stored = {k: v for k, v in version.headers.items() if k != acl.OBJECT_ACL_HEADER}
    stored.update(s3.acl_headers)
    return await s3.service.put_object_headers(s3.bucket, s3.key, version.version_id, stored)


HANDLERS: dict[S3Op, Handler] = {
    S3Op.PUT_OBJECT: put_object,
    S3Op.GET_OBJECT: get_object,
    S3Op.HEAD_OBJECT: head_object,
    S3Op.DELETE_OBJECT: delete_object,
    S3Op.DELETE_OBJECTS: delete_objects,
    S3Op.COPY_OBJECT: copy_object,
}
