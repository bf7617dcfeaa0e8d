"""S3 sub-resource handlers: object and bucket tagging, versioning,
GetObjectAttributes, and the one bucket configuration we answer as fixed
(CORS and lifecycle: handlers_config; object lock: lock): request payment is
always the bucket owner's, which is what AWS reports for a bucket without
Requester Pays (s3cmd `info` asks for it). ACLs and policies: handlers_access.

Bucket tags live in the bucket's settings under "tagging"; versioning is the
bucket record's own field.
"""

from __future__ import annotations

from aiohttp import web

from kurastore.gateway.objects import checksums
from kurastore.gateway.s3 import access, lock, sse
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3 import headers as hdr
from kurastore.gateway.s3.context import Handler, S3Request, empty_response, xml_response
from kurastore.gateway.s3.routes import S3Op
from kurastore.gateway.s3.xml import child_text, document, el, parse

MAX_BUCKET_TAGS = 50
_ATTRIBUTES = frozenset({"ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"})


def _version_id(s3: S3Request) -> str | None:
    return s3.query.get("versionId") or None


# --- tagging --------------------------------------------------------------------------


def _tag_set(tags: dict[str, str]) -> bytes:
    # Sorted by key, as S3 answers whatever order the tags were given in.
    items = [el("Tag", [el("Key", k), el("Value", tags[k])]) for k in sorted(tags)]
    return document("Tagging", [el("TagSet", items)])


async def _read_tags(s3: S3Request, limit: int) -> dict[str, str]:
    spec = hdr.integrity_spec(s3.headers)
    body = await s3.read_xml_body()
    hdr.check_small_body(spec, body)
    doc = parse(body, "Tagging")
    tag_set = doc.find("TagSet")
    if tag_set is None:
        raise s3e.MalformedXML()
    tags: dict[str, str] = {}
    for tag in tag_set.findall("Tag"):
        key, value = child_text(tag, "Key"), child_text(tag, "Value")
        if key is None or value is None:
            raise s3e.MalformedXML()
        if key in tags:
            raise s3e.InvalidTag("Cannot provide multiple Tags with the same key")
        tags[key] = value
    return hdr.validate_tags(tags, limit)


async def get_object_tagging(s3: S3Request) -> web.StreamResponse:
    version = await s3.service.head_object(s3.bucket, s3.key, version_id=_version_id(s3))
    headers = hdr.version_headers(version.version_id, s3.is_versioned)
    return xml_response(_tag_set(dict(version.tags)), headers=headers)


async def put_object_tagging(s3: S3Request) -> web.StreamResponse:
    tags = await _read_tags(s3, hdr.MAX_OBJECT_TAGS)
    version = await s3.service.put_object_tags(s3.bucket, s3.key, _version_id(s3), tags)
    return empty_response(headers=hdr.version_headers(version.version_id, s3.is_versioned))


async def delete_object_tagging(s3: S3Request) -> web.StreamResponse:
    version = await s3.service.put_object_tags(s3.bucket, s3.key, _version_id(s3), {})
    return empty_response(204, hdr.version_headers(version.version_id, s3.is_versioned))


def _settings(s3: S3Request) -> dict:
    return dict(s3.bucket_record.settings) if s3.bucket_record else {}


async def get_bucket_tagging(s3: S3Request) -> web.StreamResponse:
    tags = _settings(s3).get("tagging")
    if not tags:
        raise s3e.NoSuchTagSet(BucketName=s3.bucket)
    return xml_response(_tag_set(dict(tags)))


async def put_bucket_tagging(s3: S3Request) -> web.StreamResponse:
    tags = await _read_tags(s3, MAX_BUCKET_TAGS)
    await s3.service.update_bucket(s3.bucket, settings={**_settings(s3), "tagging": tags})
    # AWS answers 204; minio-js takes only 200 (RGW and MinIO answer 200): the client wins.
    return empty_response(200)


async def delete_bucket_tagging(s3: S3Request) -> web.StreamResponse:
    settings = _settings(s3)
    settings.pop("tagging", None)
    await s3.service.update_bucket(s3.bucket, settings=settings)
    return empty_response(204)


# --- versioning and configurations ------------------------------------------------------


async def get_bucket_versioning(s3: S3Request) -> web.StreamResponse:
    status = s3.bucket_record.versioning if s3.bucket_record else ""
    return xml_response(document("VersioningConfiguration", [el("Status", status or None)]))


async def put_bucket_versioning(s3: S3Request) -> web.StreamResponse:
    doc = parse(await s3.read_xml_body(), "VersioningConfiguration")
    status = child_text(doc, "Status")
    mfa_delete = child_text(doc, "MfaDelete")
    if status not in ("Enabled", "Suspended", None) or mfa_delete not in (
        "Enabled", "Disabled", None
    ):
        raise s3e.MalformedXML()
    if mfa_delete == "Enabled":
        # AWS needs the root account's MFA device (x-amz-mfa); we have no devices.
        if "x-amz-mfa" not in s3.headers:
            raise s3e.AccessDenied("Mfa Authentication must be used for this request")
        raise s3e.NotImplemented_("MFA delete is not supported.")
    if status is None:  # MfaDelete=Disabled alone: nothing changes
        return empty_response()
    record = s3.bucket_record
    if status == "Suspended" and record is not None and lock.enabled(record.settings):
        raise s3e.InvalidBucketState(
            "An Object Lock configuration is present on this bucket, so the versioning "
            "state cannot be changed."
        )
    await s3.service.update_bucket(s3.bucket, versioning=status)
    return empty_response()


async def get_bucket_request_payment(s3: S3Request) -> web.StreamResponse:
    return xml_response(document("RequestPaymentConfiguration", [el("Payer", "BucketOwner")]))


# --- GetObjectAttributes -----------------------------------------------------------------


async def get_object_attributes(s3: S3Request) -> web.StreamResponse:
    # A list header may come as one comma-separated line (botocore) or as one line per
    # value (the Go and Java SDKs); HTTP makes both one list (RFC 9110 section 5.3).
    listed = ",".join(s3.headers.getall("x-amz-object-attributes", []))
    wanted = {a.strip() for a in listed.split(",")}
    wanted.discard("")
    if not wanted or not wanted <= _ATTRIBUTES:
        raise s3e.InvalidArgument("Invalid attribute name specified.")
    # It tells about the data (ETag, checksums, parts): an SSE-C object needs its key.
    version = await s3.service.head_object(s3.bucket, s3.key, version_id=_version_id(s3),
                                           customer_key=sse.read_key(s3.headers),
                                           verify_key=True)
    access.check_loaded(s3, version)
    out = []
    if "ETag" in wanted:
        out.append(el("ETag", version.etag))
    if "Checksum" in wanted and version.checksums:
        # A COMPOSITE value goes without its "-N" here (the parts are in ObjectParts),
        # as S3 answers; HEAD and GET give it with the suffix.
        sums = [el(f"Checksum{a}", v.partition("-")[0]) for a, v in version.checksums.items()
                if a in checksums.ALGORITHMS]
        out.append(el("Checksum", [*sums, el("ChecksumType", version.checksum_type or None)]))
    # Any multipart object (etag "<md5>-N", even N = 1) has parts; a PUT has none.
    # The count goes on the wire as PartsCount (botocore's name for TotalPartsCount).
    if "ObjectParts" in wanted and "-" in version.etag:
        marker = hdr.int_param(s3.headers, "x-amz-part-number-marker", 0, hdr.MAX_PART_NUMBER)
        max_parts = hdr.int_param(s3.headers, "x-amz-max-parts", 1000, 1000)
        rest = [p for p in version.parts if p.part_number > marker]
        page = rest[:max_parts]
        out.append(el("ObjectParts", [
            el("PartsCount", len(version.parts)), el("PartNumberMarker", marker),
            el("NextPartNumberMarker", page[-1].part_number if page else marker),
            el("MaxParts", max_parts), el("IsTruncated", len(rest) > max_parts),
            *(el("Part", [el("PartNumber", p.part_number), el("Size", p.size),
                          *(el(f"Checksum{a}", v) for a, v in p.checksums.items())])
              for p in page),
        ]))  # fmt: skip
    if "StorageClass" in wanted:
        out.append(el("StorageClass", version.storage_class))
    if "ObjectSize" in wanted:
        out.append(el("ObjectSize", version.size))
    headers = {"Last-Modified": hdr.http_date(version.last_modified)}
    headers.update(hdr.version_headers(version.version_id, s3.is_versioned))
    return xml_response(document("GetObjectAttributesResponse", out), headers=headers)


HANDLERS: dict[S3Op, Handler] = {
    S3Op.GET_OBJECT_TAGGING: get_object_tagging,
    S3Op.PUT_OBJECT_TAGGING: put_object_tagging,
    S3Op.DELETE_OBJECT_TAGGING: delete_object_tagging,
    S3Op.GET_BUCKET_TAGGING: get_bucket_tagging,
    S3Op.PUT_BUCKET_TAGGING: put_bucket_tagging,
    S3Op.DELETE_BUCKET_TAGGING: delete_bucket_tagging,
    S3Op.GET_BUCKET_VERSIONING: get_bucket_versioning,
    S3Op.PUT_BUCKET_VERSIONING: put_bucket_versioning,
    S3Op.GET_BUCKET_REQUEST_PAYMENT: get_bucket_request_payment,
    S3Op.GET_OBJECT_ATTRIBUTES: get_object_attributes,
}
