"""S3 service and bucket handlers: ListBuckets, Create/Head/Delete bucket,
GetBucketLocation, ListObjects (v1 and v2) and ListObjectVersions.

Each handler turns the wire into object-service calls and renders the answer;
listing order, markers and grouping by delimiter are the service's. Rules kept
here: bucket-name validation on create, an owner's re-create never changes the
bucket (another ACL than its own: 409 BucketAlreadyExists), the v2 continuation token is opaque
(base64 of the marker), encoding-type=url encodes exactly the fields botocore
decodes, max-keys is capped by the frontend's limit.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

from aiohttp import web

from kurastore.gateway.objects import errors as dom
from kurastore.gateway.s3 import access, acl, handlers_access, lock, ownership
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3 import headers as hdr
from kurastore.gateway.s3.context import Handler, S3Request, empty_response, xml_response
from kurastore.gateway.s3.routes import S3Op
from kurastore.gateway.s3.xml import (
    child_text,
    document,
    el,
    escape,
    iso8601,
    owner,
    parse,
    quoted,
)
from kurastore.metadata import BucketRecord, ObjectVersion

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def is_valid_bucket_name(name: str) -> bool:
    """AWS's general-purpose bucket naming rules."""
    if not _BUCKET_NAME.match(name) or ".." in name or ".-" in name or "-." in name:
        return False
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        return False
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return True
    return False


async def list_buckets(s3: S3Request) -> web.StreamResponse:
    prefix = s3.query.get("prefix", "")
    token = s3.query.get("continuation-token", "")
    limit = hdr.int_param(s3.query, "max-buckets", 10_000, 10_000)
    buckets = [
        b for b in await s3.service.list_buckets(s3.user_id)
        if b.name.startswith(prefix) and b.name > token
    ]
    page, more = buckets[:limit], len(buckets) > limit
    entries = (
        el("Bucket", [el("Name", b.name), el("CreationDate", iso8601(b.created)),
                      el("BucketRegion", b.region)])
        for b in page
    )
    name = await s3.display_name(s3.user_id)
    return xml_response(document("ListAllMyBucketsResult", [
        owner(s3.user_id, name),
        el("Buckets", entries),
        el("ContinuationToken", page[-1].name if more else None),
        el("Prefix", s3.query.get("prefix")),
    ]))  # fmt: skip


async def create_bucket(s3: S3Request) -> web.StreamResponse:
    if not is_valid_bucket_name(s3.bucket):
        raise s3e.InvalidBucketName(BucketName=s3.bucket)
    body = await s3.read_xml_body()
    if body.strip():
        config = parse(body, "CreateBucketConfiguration")
        location = child_text(config, "LocationConstraint") or ""
        if location and location != s3.region:
            raise s3e.InvalidLocationConstraint(LocationConstraint=location)
    grants = await handlers_access.request_acl(s3, s3.user_id, s3.user_id)
    object_ownership = ownership.create_setting(s3, grants)
    try:
        await s3.service.create_bucket(s3.bucket, s3.user_id, s3.region)
    except dom.BucketAlreadyOwnedByYou:
        # Re-creating a bucket you own changes nothing. Asking for another ACL than
        # the bucket's is a conflict (409 BucketAlreadyExists, as Ceph RGW answers);
        # with the same ACL us-east-1 keeps Amazon's legacy 200, other regions 409.
        record = await s3.service.get_bucket(s3.bucket, fresh=True)
        if _acl_differs(record, grants, s3.user_id):
            raise s3e.BucketAlreadyExists(BucketName=s3.bucket) from None
        if s3.region != "us-east-1":
            raise
    else:
        settings: dict = {"ownership": object_ownership} if object_ownership else {}
        if grants is not None and grants != acl.default(s3.user_id):
            settings["acl"] = acl.encode(grants)
        if settings:
            await s3.service.update_bucket(s3.bucket, settings=settings)
        if s3.headers.get("x-amz-bucket-object-lock-enabled", "").lower() == "true":
            # Object Lock needs versioning, for good (lock.py).
            record = await s3.service.get_bucket(s3.bucket, fresh=True)
            settings = {**record.settings, lock.SETTINGS_KEY: {"enabled": True}}
            await s3.service.update_bucket(s3.bucket, versioning="Enabled", settings=settings)
    return empty_response(headers={"Location": "/" + s3.bucket})


def _acl_differs(record: BucketRecord, grants: acl.Acl | None, owner_id: str) -> bool:
    """Does a CreateBucket's ACL (none asked: private) differ from the bucket's? With
    ACLs disabled (BucketOwnerEnforced) the bucket's is the owner's full control."""
    wanted = acl.default(owner_id) if grants is None else grants
    if access.acls_disabled(record):
        current = acl.default(owner_id)
    else:
        current = acl.bucket_acl(record.settings, owner_id)
    return set(wanted) != set(current)


async def head_bucket(s3: S3Request) -> web.StreamResponse:
    region = s3.bucket_record.region if s3.bucket_record else s3.region
    return empty_response(
        headers={"x-amz-bucket-region": region, "x-amz-access-point-alias": "false"}
    )


async def delete_bucket(s3: S3Request) -> web.StreamResponse:
    await s3.service.delete_bucket(s3.bucket)
    return empty_response(204)


async def get_bucket_location(s3: S3Request) -> web.StreamResponse:
    region = s3.bucket_record.region if s3.bucket_record else s3.region
    # us-east-1 is the empty constraint, as AWS answers.
    text = "" if region == "us-east-1" else region
    return xml_response(document("LocationConstraint", [escape(text)]))


async def _contents(
    s3: S3Request, entries: tuple[ObjectVersion, ...], enc, with_owner: bool
) -> list[str]:
    out = []
    for v in entries:
        who = owner(v.owner, await s3.display_name(v.owner)) if with_owner else ""
        algo = "".join(el("ChecksumAlgorithm", a) for a in v.checksums)
        out.append(el("Contents", [
            el("Key", enc(v.key)), el("LastModified", iso8601(v.last_modified)),
            el("ETag", quoted(v.etag)), algo,
            el("ChecksumType", v.checksum_type or None) if algo else "",
            el("Size", v.size), el("StorageClass", v.storage_class), who,
        ]))  # fmt: skip
    return out


def _prefixes(prefixes: tuple[str, ...], enc) -> list[str]:
    return [el("CommonPrefixes", [el("Prefix", enc(p))]) for p in prefixes]


async def list_objects(s3: S3Request) -> web.StreamResponse:
    q, enc = s3.query, hdr.key_encoder(s3.query)
    max_keys = hdr.int_param(q, "max-keys", 1000, s3.max_keys_limit)
    prefix, delimiter, marker = q.get("prefix", ""), q.get("delimiter", ""), q.get("marker", "")
    page = await s3.service.list_objects(
        s3.bucket, prefix=prefix, delimiter=delimiter, start_after=marker, max_keys=max_keys
    )
    # AWS returns NextMarker only with a delimiter; without one the last key is it.
    # The v1 Prefix is echoed unencoded: botocore does not decode it (v2 it does).
    next_marker = enc(page.next_marker) if page.is_truncated and delimiter else None
    return xml_response(document("ListBucketResult", [
        el("Name", s3.bucket), el("Prefix", prefix), el("Marker", enc(marker)),
        el("NextMarker", next_marker), el("MaxKeys", max_keys),
        el("Delimiter", enc(delimiter) if delimiter else None),
        el("EncodingType", q.get("encoding-type")), el("IsTruncated", page.is_truncated),
        *await _contents(s3, page.entries, enc, with_owner=True),
        *_prefixes(page.common_prefixes, enc),
    ]))  # fmt: skip


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise s3e.InvalidArgument("The continuation token provided is incorrect") from exc


def _encode_token(marker: str) -> str:
    return base64.urlsafe_b64encode(marker.encode()).decode("ascii")


async def list_objects_v2(s3: S3Request) -> web.StreamResponse:
    q, enc = s3.query, hdr.key_encoder(s3.query)
    max_keys = hdr.int_param(q, "max-keys", 1000, s3.max_keys_limit)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    token, start_after = q.get("continuation-token"), q.get("start-after", "")
    after = _decode_token(token) if token else start_after
    page = await s3.service.list_objects(
        s3.bucket, prefix=prefix, delimiter=delimiter, start_after=after, max_keys=max_keys
    )
    fetch_owner = q.get("fetch-owner", "").lower() == "true"
    return xml_response(document("ListBucketResult", [
        el("Name", s3.bucket), el("Prefix", enc(prefix)), el("MaxKeys", max_keys),
        el("Delimiter", enc(delimiter) if delimiter else None),
        el("EncodingType", q.get("encoding-type")),
        el("KeyCount", len(page.entries) + len(page.common_prefixes)),
        el("IsTruncated", page.is_truncated), el("ContinuationToken", token),
        el("NextContinuationToken",
           _encode_token(page.next_marker) if page.is_truncated else None),
        el("StartAfter", enc(start_after) if "start-after" in q else None),
        *await _contents(s3, page.entries, enc, with_owner=fetch_owner),
        *_prefixes(page.common_prefixes, enc),
    ]))  # fmt: skip


async def list_object_versions(s3: S3Request) -> web.StreamResponse:
    q, enc = s3.query, hdr.key_encoder(s3.query)
    max_keys = hdr.int_param(q, "max-keys", 1000, s3.max_keys_limit)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, vid_marker = q.get("key-marker", ""), q.get("version-id-marker", "")
    if vid_marker and not key_marker:
        raise s3e.InvalidArgument("A version-id marker cannot be specified without a key marker.")
    if vid_marker:
        hdr.check_version_id(vid_marker, "version-id-marker")
    page = await s3.service.list_versions(
        s3.bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
        version_id_marker=vid_marker, max_keys=max_keys,
    )  # fmt: skip
    items = []
    for v in page.entries:
        common = [
            el("Key", enc(v.key)), el("VersionId", v.version_id or "null"),
            el("IsLatest", v.is_latest), el("LastModified", iso8601(v.last_modified)),
        ]  # fmt: skip
        who = owner(v.owner, await s3.display_name(v.owner))
        if v.is_delete_marker:
            items.append(el("DeleteMarker", [*common, who]))
        else:
            items.append(el("Version", [
                *common, el("ETag", quoted(v.etag)), el("Size", v.size),
                el("StorageClass", v.storage_class), who,
            ]))  # fmt: skip
    truncated = page.is_truncated
    return xml_response(document("ListVersionsResult", [
        el("Name", s3.bucket), el("Prefix", enc(prefix)), el("KeyMarker", enc(key_marker)),
        el("VersionIdMarker", vid_marker),
        el("NextKeyMarker", enc(page.next_key_marker) if truncated else None),
        el("NextVersionIdMarker", page.next_version_id_marker if truncated else None),
        el("MaxKeys", max_keys), el("Delimiter", enc(delimiter) if delimiter else None),
        el("EncodingType", q.get("encoding-type")), el("IsTruncated", truncated),
        *items, *_prefixes(page.common_prefixes, enc),
    ]))  # fmt: skip


HANDLERS: dict[S3Op, Handler] = {
    S3Op.LIST_BUCKETS: list_buckets,
    S3Op.CREATE_BUCKET: create_bucket,
    S3Op.HEAD_BUCKET: head_bucket,
    S3Op.DELETE_BUCKET: delete_bucket,
    S3Op.GET_BUCKET_LOCATION: get_bucket_location,
    S3Op.LIST_OBJECTS: list_objects,
    S3Op.LIST_OBJECTS_V2: list_objects_v2,
    S3Op.LIST_OBJECT_VERSIONS: list_object_versions,
}
