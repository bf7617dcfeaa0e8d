"""S3 multipart handlers: Create, UploadPart, UploadPartCopy, Complete, Abort,
ListParts and ListMultipartUploads.

Rules: part numbers are 1..10000 (InvalidArgument otherwise); parts are stored
by the service as they arrive and Complete only assembles the record, so the
handlers here parse, call and render. The CompleteMultipartUpload body must
list parts in ascending order (InvalidPartOrder) and at least one part.
A repeated Complete of an upload already completed answers the first result
again, as S3 does, when the key still holds the object those parts made.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from aiohttp import web

from kurastore.gateway.objects import checksums
from kurastore.gateway.objects.api import SSE_C, CompletedPart, PutOptions
from kurastore.gateway.objects.encryption import key_md5
from kurastore.gateway.objects.errors import NotModified
from kurastore.gateway.s3 import access, mpu_checksums, sse
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3 import headers as hdr
from kurastore.gateway.s3.context import Handler, S3Request, empty_response, xml_response
from kurastore.gateway.s3.handlers_object import echo_checksum, put_options, require_length
from kurastore.gateway.s3.routes import S3Op
from kurastore.gateway.s3.xml import child_text, document, el, iso8601, owner, parse, quoted
from kurastore.metadata import ObjectNotFound, ObjectVersion, UploadNotFound, UploadRecord

MAX_PARTS_LISTED = 1000


def _part_number(s3: S3Request) -> int:
    # classify sends only requests with a partNumber here; "" is refused too.
    return hdr.part_number(s3.query.get("partNumber", "")) or 0


def _upload_id(s3: S3Request) -> str:
    upload_id = s3.query.get("uploadId", "")
    if not upload_id:
        raise s3e.NoSuchUpload()
    return upload_id


async def create_upload(s3: S3Request) -> web.StreamResponse:
    spec = hdr.announced_checksum(s3.headers)
    opts = put_options(s3, spec, with_body=False)
    checksum_type = mpu_checksums.requested_type(s3.headers, spec.algorithm or "")
    upload = await s3.service.create_upload(
        s3.bucket, s3.key, replace(opts, checksum_type=checksum_type)
    )
    headers = sse.response_headers(upload.encryption)
    if upload.checksum_algorithm:
        headers["x-amz-checksum-algorithm"] = upload.checksum_algorithm
        headers["x-amz-checksum-type"] = upload.checksum_type or "COMPOSITE"
    return xml_response(document("InitiateMultipartUploadResult", [
        el("Bucket", s3.bucket), el("Key", s3.key), el("UploadId", upload.upload_id),
    ]), headers=headers)  # fmt: skip


async def upload_part(s3: S3Request) -> web.StreamResponse:
    number = _part_number(s3)
    require_length(s3)
    spec = hdr.integrity_spec(s3.headers)
    part = await s3.service.upload_part(
        s3.bucket, s3.key, _upload_id(s3), number, s3.body(), put_options(s3, spec)
    )
    headers = {"ETag": quoted(part.part.etag), **echo_checksum(part.part.checksums, spec)}
    headers.update(await _part_encryption(s3))
    return empty_response(headers=headers)


async def _part_encryption(s3: S3Request) -> dict[str, str]:
    """UploadPart and UploadPartCopy answer with their upload's encryption (an SSE-C
    key is echoed as given: the part was stored under it, or refused)."""
    key = sse.customer_key(s3.headers)
    if key is not None:
        return sse.response_headers({"mode": SSE_C, "key_md5": key_md5(key)})
    upload = await s3.service.get_upload(s3.bucket, s3.key, _upload_id(s3))
    return sse.response_headers(upload.encryption)


async def upload_part_copy(s3: S3Request) -> web.StreamResponse:
    number = _part_number(s3)
    src = replace(hdr.copy_source(s3.headers, with_range=True),
                  customer_key=sse.customer_key(s3.headers, sse.COPY_SOURCE))
    if src.version_id is not None:
        hdr.check_version_id(src.version_id)
    await access.check_copy_source(s3, src.bucket, src.key, src.version_id)
    try:
        part = await s3.service.upload_part_copy(
            s3.bucket, s3.key, _upload_id(s3), number, src,
            PutOptions(encryption=sse.write_request(s3.headers)),
        )
    except NotModified as exc:  # copy-source conditions answer 412, never 304
        raise s3e.PreconditionFailed() from exc
    headers = {"x-amz-copy-source-version-id": src.version_id} if src.version_id else {}
    headers.update(await _part_encryption(s3))
    sums = [el(f"Checksum{a}", v) for a, v in part.part.checksums.items()]
    return xml_response(document("CopyPartResult", [
        el("LastModified", iso8601(part.last_modified)), el("ETag", quoted(part.part.etag)),
        *sums,
    ]), headers=headers)  # fmt: skip


def parse_completed_parts(body: bytes) -> list[CompletedPart]:
    """The CompleteMultipartUpload document, in the order given (ascending)."""
    doc = parse(body, "CompleteMultipartUpload")
    parts = []
    for node in doc.findall("Part"):
        number_text, etag = child_text(node, "PartNumber"), child_text(node, "ETag")
        if number_text is None or etag is None or not number_text.strip().isdigit():
            raise s3e.MalformedXML()
        sums = {
            algo: value
            for algo in checksums.ALGORITHMS
            if (value := child_text(node, f"Checksum{algo}"))
        }
        parts.append(CompletedPart(int(number_text), etag.strip().strip('"'), sums))
    if not parts:
        raise s3e.MalformedXML()
    numbers = [p.part_number for p in parts]
    if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
        raise s3e.InvalidPartOrder()
    return parts


async def _completed_before(
    s3: S3Request, parts: list[CompletedPart], gone: UploadNotFound
) -> ObjectVersion:
    """The object a finished upload of exactly these parts made, or `gone` again."""
    try:
        md5s = b"".join(bytes.fromhex(p.etag) for p in parts)
        version = await s3.service.head_object(s3.bucket, s3.key)
    except (ValueError, ObjectNotFound):
        raise gone from None
    if version.etag != f"{hashlib.md5(md5s).hexdigest()}-{len(parts)}":
        raise gone
    return version


async def complete_upload(s3: S3Request) -> web.StreamResponse:
    parts = parse_completed_parts(await s3.read_xml_body())
    try:
        version = await s3.service.complete_upload(
            s3.bucket, s3.key, _upload_id(s3), parts, hdr.write_conditions(s3.headers),
            mpu_checksums.complete_check(s3.headers), sse.customer_key(s3.headers),
        )
    except UploadNotFound as gone:
        version = await _completed_before(s3, parts, gone)
    headers = hdr.version_headers(version.version_id, s3.versioning_enabled)
    headers.update(sse.response_headers(version.encryption))
    if version.checksums and version.checksum_type:
        headers["x-amz-checksum-type"] = version.checksum_type
    location = f"{s3.request.scheme}://{s3.request.host}/{s3.bucket}/{s3.key}"
    sums = [el(f"Checksum{a}", v) for a, v in version.checksums.items()]
    return xml_response(document("CompleteMultipartUploadResult", [
        el("Location", location), el("Bucket", s3.bucket), el("Key", s3.key),
        el("ETag", quoted(version.etag)), *sums,
        el("ChecksumType", version.checksum_type or None) if sums else "",
    ]), headers=headers)  # fmt: skip


async def abort_upload(s3: S3Request) -> web.StreamResponse:
    await s3.service.abort_upload(s3.bucket, s3.key, _upload_id(s3))
    return empty_response(204)


async def _people(s3: S3Request, upload: UploadRecord) -> list[str]:
    name = await s3.display_name(upload.owner)
    return [owner(upload.owner, name, "Initiator"), owner(upload.owner, name)]


async def list_parts(s3: S3Request) -> web.StreamResponse:
    q = s3.query
    marker = hdr.int_param(q, "part-number-marker", 0, hdr.MAX_PART_NUMBER)
    max_parts = hdr.int_param(q, "max-parts", MAX_PARTS_LISTED, MAX_PARTS_LISTED)
    upload, page = await s3.service.list_parts(
        s3.bucket, s3.key, _upload_id(s3), part_number_marker=marker, max_parts=max_parts
    )
    items = [
        el("Part", [
            el("PartNumber", p.part.part_number), el("LastModified", iso8601(p.last_modified)),
            el("ETag", quoted(p.part.etag)), el("Size", p.part.size),
            *(el(f"Checksum{a}", v) for a, v in p.part.checksums.items()),
        ])
        for p in page.parts
    ]
    return xml_response(document("ListPartsResult", [
        el("Bucket", s3.bucket), el("Key", s3.key), el("UploadId", upload.upload_id),
        *await _people(s3, upload), el("StorageClass", upload.storage_class),
        el("PartNumberMarker", marker),
        el("NextPartNumberMarker", page.next_part_number_marker if page.is_truncated else None),
        el("MaxParts", max_parts), el("IsTruncated", page.is_truncated),
        el("ChecksumAlgorithm", upload.checksum_algorithm or None),
        el("ChecksumType", upload.checksum_type or None), *items,
    ]))  # fmt: skip


async def list_uploads(s3: S3Request) -> web.StreamResponse:
    q, enc = s3.query, hdr.key_encoder(s3.query)
    max_uploads = hdr.int_param(q, "max-uploads", 1000, s3.max_keys_limit)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
    page = await s3.service.list_uploads(
        s3.bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
        upload_id_marker=id_marker, max_uploads=max_uploads,
    )  # fmt: skip
    items = []
    for u in page.uploads:
        items.append(el("Upload", [
            el("Key", enc(u.key)), el("UploadId", u.upload_id), *await _people(s3, u),
            el("StorageClass", u.storage_class), el("Initiated", iso8601(u.initiated)),
            el("ChecksumAlgorithm", u.checksum_algorithm or None),
        ]))  # fmt: skip
    truncated = page.is_truncated
    return xml_response(document("ListMultipartUploadsResult", [
        el("Bucket", s3.bucket), el("KeyMarker", enc(key_marker)),
        el("UploadIdMarker", id_marker),
        el("NextKeyMarker", enc(page.next_key_marker) if truncated else None),
        el("NextUploadIdMarker", page.next_upload_id_marker if truncated else None),
        el("Delimiter", enc(delimiter) if delimiter else None), el("Prefix", enc(prefix)),
        el("MaxUploads", max_uploads), el("EncodingType", q.get("encoding-type")),
        el("IsTruncated", truncated), *items,
        *(el("CommonPrefixes", [el("Prefix", enc(p))]) for p in page.common_prefixes),
    ]))  # fmt: skip


HANDLERS: dict[S3Op, Handler] = {
    S3Op.CREATE_MULTIPART_UPLOAD: create_upload,
    S3Op.UPLOAD_PART: upload_part,
    S3Op.UPLOAD_PART_COPY: upload_part_copy,
    S3Op.COMPLETE_MULTIPART_UPLOAD: complete_upload,
    S3Op.ABORT_MULTIPART_UPLOAD: abort_upload,
    S3Op.LIST_PARTS: list_parts,
    S3Op.LIST_MULTIPART_UPLOADS: list_uploads,
}
