"""S3 Object Ownership: who owns what others write into a bucket, and whether
the bucket uses ACLs at all. Put/Get/DeleteBucketOwnershipControls, the
x-amz-object-ownership header of CreateBucket, and `write_owner`, which decides
the owner and stored ACL of every object write (PutObject, CopyObject,
CreateMultipartUpload).

Rules (AWS's): the setting lives in the bucket's settings["ownership"]; none set
behaves as ObjectWriter (the writer owns the object). BucketOwnerPreferred gives
the bucket owner what is written with the bucket-owner-full-control canned ACL.
BucketOwnerEnforced disables ACLs: the bucket owner owns every object, writes may
only name bucket-owner-full-control (else AccessControlListNotSupported), Put*Acl
is refused, ACL grants no longer grant anything (access.py), and the setting
cannot be chosen while the bucket ACL grants anyone but the owner.
"""

from __future__ import annotations

from aiohttp import web

from kurastore.gateway.s3 import access, acl, handlers_access
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3.context import Handler, S3Request, empty_response, xml_response
from kurastore.gateway.s3.routes import S3Op
from kurastore.gateway.s3.xml import child_text, document, el, parse
from kurastore.metadata import BucketRecord

ENFORCED, PREFERRED, WRITER = "BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter"
MODES = (ENFORCED, PREFERRED, WRITER)
HEADER = "x-amz-object-ownership"



def mode(record: BucketRecord) -> str:
    return str(record.settings.get("ownership") or "")


acls_disabled = access.acls_disabled


def _only_owner_full_control(s3: S3Request) -> bool:
    canned = s3.headers.get("x-amz-acl")
    grants = any(name in s3.headers for name in acl.GRANT_HEADERS)
    return not grants and canned in (None, "bucket-owner-full-control")


async def write_owner(s3: S3Request, record: BucketRecord) -> tuple[str, dict[str, str]]:
    """(owner, stored ACL headers) of an object this request writes."""
    writer = s3.writer
    if acls_disabled(record):
        if not _only_owner_full_control(s3):
            raise s3e.AccessControlListNotSupported()
        return record.owner, {}
    if mode(record) == PREFERRED and s3.headers.get("x-amz-acl") == "bucket-owner-full-control":
        writer = record.owner
    grants = await handlers_access.request_acl(s3, writer, record.owner)
    return writer, acl.object_headers(grants, writer)


def create_setting(s3: S3Request, grants: acl.Acl | None) -> str | None:
    """CreateBucket's x-amz-object-ownership, checked against the ACL it sets."""
    value = s3.headers.get(HEADER)
    if value is None:
        return None
    if value not in MODES:
        raise s3e.InvalidArgument("Invalid x-amz-object-ownership header", ArgumentName=HEADER,
                                  ArgumentValue=value)
    if value == ENFORCED and grants is not None and grants != acl.default(s3.user_id):
        raise s3e.InvalidBucketAclWithObjectOwnership()
    return value


async def get_ownership_controls(s3: S3Request) -> web.StreamResponse:
    assert s3.bucket_record is not None
    value = mode(s3.bucket_record)
    if not value:
        raise s3e.OwnershipControlsNotFoundError(BucketName=s3.bucket)
    return xml_response(document("OwnershipControls", [
        el("Rule", [el("ObjectOwnership", value)]),
    ]))  # fmt: skip


async def put_ownership_controls(s3: S3Request) -> web.StreamResponse:
    record = s3.bucket_record
    assert record is not None
    doc = parse(await s3.read_xml_body(), "OwnershipControls")
    rules = doc.findall("Rule")
    value = child_text(rules[0], "ObjectOwnership") if len(rules) == 1 else None
    if value not in MODES:
        raise s3e.MalformedXML()
    if value == ENFORCED and acl.bucket_acl(record.settings, record.owner) != acl.default(
        record.owner
    ):
        raise s3e.InvalidBucketAclWithObjectOwnership()
    settings = access.stored_settings(record, ownership=value)
    await s3.service.update_bucket(s3.bucket, settings=settings)
    return empty_response()


async def delete_ownership_controls(s3: S3Request) -> web.StreamResponse:
    assert s3.bucket_record is not None
    settings = access.stored_settings(s3.bucket_record, ownership=None)
    await s3.service.update_bucket(s3.bucket, settings=settings)
    return empty_response(204)


HANDLERS: dict[S3Op, Handler] = {
    S3Op.GET_BUCKET_OWNERSHIP_CONTROLS: get_ownership_controls,
    S3Op.PUT_BUCKET_OWNERSHIP_CONTROLS: put_ownership_controls,
    S3Op.DELETE_BUCKET_OWNERSHIP_CONTROLS: delete_ownership_controls,
}
