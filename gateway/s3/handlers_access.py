"""S3 access-control handlers: Get/Put bucket and object ACLs, bucket policies
(Put/Get/Delete, GetBucketPolicyStatus) and PublicAccessBlock (Put/Get/Delete);
plus `request_acl`, the ACL a write request asks for (x-amz-acl or
x-amz-grant-*), which the frontend resolves before a write's handler runs.

Rules: the bucket ACL, policy and PublicAccessBlock live in the bucket's settings
("acl", "policy" and "policy_text", "public_access_block"); an object's ACL lives
in its version's stored headers (acl.OBJECT_ACL_HEADER), so PutObjectAcl changes
neither the object's data nor its Last-Modified. BlockPublicAcls refuses public
ACLs with AccessDenied, BlockPublicPolicy refuses public policies, as AWS does.
Who may call these is access.py's decision, taken before.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from kurastore.gateway.objects.errors import UserNotFound
from kurastore.gateway.s3 import access, acl, policy
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3 import headers as hdr
from kurastore.gateway.s3.context import Handler, S3Request, empty_response, xml_response
from kurastore.gateway.s3.routes import S3Op
from kurastore.gateway.s3.xml import child_text, document, el, parse, parse_bool
from kurastore.metadata import BucketRecord

_PAB_FIELDS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
               "RestrictPublicBuckets")  # fmt: skip
NoSuchPublicAccessBlockConfiguration = type(
    "NoSuchPublicAccessBlockConfiguration", (s3e.S3Error,),
    {"code": "NoSuchPublicAccessBlockConfiguration", "status": 404,
     "message": "The public access block configuration was not found"},
)  # fmt: skip


def resolver(s3: S3Request) -> acl.Resolver:
    """Grantee lookup: canonical ids must name a user; e-mail addresses name no one
    (users have no e-mail address here)."""

    async def resolve(kind: str, value: str) -> str:
        if kind == "email":
            raise s3e.UnresolvableGrantByEmailAddress(EmailAddress=value)
        try:
            await s3.display_name_strict(value)
        except UserNotFound:
            raise s3e.InvalidArgument("Invalid id", ArgumentName="CanonicalUser/ID",
                                      ArgumentValue=value) from None
        return value

    return resolve


async def request_acl(
    s3: S3Request, owner_id: str, bucket_owner: str, headers: Mapping[str, str] | None = None
) -> acl.Acl | None:
    """The ACL a write request sets through its headers (or `headers`: a POST form's
    acl field); None for the default. Checked against the bucket's BlockPublicAcls."""
    headers = s3.headers if headers is None else headers
    if not acl.has_acl_headers(headers):
        return None
    grants = await acl.from_headers(headers, owner_id, bucket_owner, resolver(s3))
    if grants is not None and s3.bucket_record is not None:
        _check_block_public(s3.bucket_record, grants)
    return grants


def _check_block_public(record: BucketRecord, grants: acl.Acl) -> None:
    if access.public_access_block(record).get("BlockPublicAcls") and acl.is_public(grants):
        raise s3e.AccessDenied()


async def _answer(s3: S3Request, owner_id: str, grants: acl.Acl,
                  headers: dict[str, str] | None = None) -> web.StreamResponse:
    names = {uid: await s3.display_name(uid) for uid in {owner_id, *acl.user_ids(grants)}}
    return xml_response(acl.render(owner_id, names, grants), headers=headers)


async def _new_acl(s3: S3Request, owner_id: str, bucket_owner: str) -> acl.Acl:
    """The ACL a Put*Acl request sets: headers, else the AccessControlPolicy body."""
    if s3.bucket_record is not None and access.acls_disabled(s3.bucket_record):
        raise s3e.AccessControlListNotSupported()
    from_headers = await request_acl(s3, owner_id, bucket_owner)
    body = await s3.read_xml_body()
    if from_headers is not None:
        if body.strip():
            raise s3e.UnexpectedContent()
        return from_headers
    if not body.strip():
        raise s3e.MissingSecurityHeader(MissingHeaderName="x-amz-acl")
    given_owner, grants = await acl.from_document(body, resolver(s3))
    if given_owner is not None and given_owner != owner_id:
        raise s3e.AccessDenied()
    if s3.bucket_record is not None:
        _check_block_public(s3.bucket_record, grants)
    return grants


def _record(s3: S3Request) -> BucketRecord:
    assert s3.bucket_record is not None  # bucket operations always carry it
    return s3.bucket_record


async def get_bucket_acl(s3: S3Request) -> web.StreamResponse:
    record = _record(s3)
    return await _answer(s3, record.owner, acl.bucket_acl(record.settings, record.owner))


async def put_bucket_acl(s3: S3Request) -> web.StreamResponse:
    record = _record(s3)
    grants = await _new_acl(s3, record.owner, record.owner)
    settings = access.stored_settings(record, acl=acl.encode(grants))
    await s3.service.update_bucket(s3.bucket, settings=settings)
    return empty_response()


async def get_object_acl(s3: S3Request) -> web.StreamResponse:
    version = await s3.service.head_object(s3.bucket, s3.key,
                                           version_id=s3.query.get("versionId") or None)
    access.check_loaded(s3, version)
    owner = version.owner or _record(s3).owner
    headers = hdr.version_headers(version.version_id, s3.is_versioned)
    return await _answer(s3, owner, acl.object_acl(version.headers, owner), headers)


async def put_object_acl(s3: S3Request) -> web.StreamResponse:
    version_id = s3.query.get("versionId") or None
    version = await s3.service.head_object(s3.bucket, s3.key, version_id=version_id)
    access.check_loaded(s3, version)
    owner = version.owner or _record(s3).owner
    grants = await _new_acl(s3, owner, _record(s3).owner)
    stored = {k: v for k, v in version.headers.items() if k != acl.OBJECT_ACL_HEADER}
    stored.update(acl.object_headers(grants, owner))
    updated = await s3.service.put_object_headers(s3.bucket, s3.key, version_id, stored)
    return empty_response(headers=hdr.version_headers(updated.version_id, s3.is_versioned))


# --- bucket policy ------------------------------------------------------------------------


async def get_bucket_policy(s3: S3Request) -> web.StreamResponse:
    text = _record(s3).settings.get("policy_text")
    if not text:
        raise s3e.NoSuchBucketPolicy(BucketName=s3.bucket)
    return web.Response(body=text.encode(), content_type="application/json")


async def put_bucket_policy(s3: S3Request) -> web.StreamResponse:
    record = _record(s3)
    body = await s3.read_xml_body()
    doc = policy.parse(body, s3.bucket)
    if access.public_access_block(record).get("BlockPublicPolicy") and policy.is_public(doc):
        raise s3e.AccessDenied()
    text = body.decode("utf-8")
    settings = access.stored_settings(record, policy=doc, policy_text=text)
    await s3.service.update_bucket(s3.bucket, settings=settings)
    return empty_response(204)


async def delete_bucket_policy(s3: S3Request) -> web.StreamResponse:
    settings = access.stored_settings(_record(s3), policy=None, policy_text=None)
    await s3.service.update_bucket(s3.bucket, settings=settings)
    return empty_response(204)


async def get_bucket_policy_status(s3: S3Request) -> web.StreamResponse:
    record = _record(s3)
    doc = record.settings.get("policy")
    public = bool(doc) and policy.is_public(doc)
    if not access.public_access_block(record).get("IgnorePublicAcls"):
        public = public or acl.is_public(acl.bucket_acl(record.settings, record.owner))
    return xml_response(document("PolicyStatus", [el("IsPublic", public)]))


# --- PublicAccessBlock --------------------------------------------------------------------


async def get_public_access_block(s3: S3Request) -> web.StreamResponse:
    config = _record(s3).settings.get("public_access_block")
    if config is None:
        raise NoSuchPublicAccessBlockConfiguration(BucketName=s3.bucket)
    return xml_response(document("PublicAccessBlockConfiguration", [
        el(name, bool(config.get(name))) for name in _PAB_FIELDS
    ]))  # fmt: skip


async def put_public_access_block(s3: S3Request) -> web.StreamResponse:
    doc = parse(await s3.read_xml_body(), "PublicAccessBlockConfiguration")
    config = {name: parse_bool(child_text(doc, name)) for name in _PAB_FIELDS}
    settings = access.stored_settings(_record(s3), public_access_block=config)
    await s3.service.update_bucket(s3.bucket, settings=settings)
    return empty_response()


async def delete_public_access_block(s3: S3Request) -> web.StreamResponse:
    settings = access.stored_settings(_record(s3), public_access_block=None)
    await s3.service.update_bucket(s3.bucket, settings=settings)
    return empty_response(204)


HANDLERS: dict[S3Op, Handler] = {
    S3Op.GET_BUCKET_ACL: get_bucket_acl,
    S3Op.PUT_BUCKET_ACL: put_bucket_acl,
    S3Op.GET_OBJECT_ACL: get_object_acl,
    S3Op.PUT_OBJECT_ACL: put_object_acl,
    S3Op.GET_BUCKET_POLICY: get_bucket_policy,
    S3Op.PUT_BUCKET_POLICY: put_bucket_policy,
    S3Op.DELETE_BUCKET_POLICY: delete_bucket_policy,
    S3Op.GET_BUCKET_POLICY_STATUS: get_bucket_policy_status,
    S3Op.GET_PUBLIC_ACCESS_BLOCK: get_public_access_block,
    S3Op.PUT_PUBLIC_ACCESS_BLOCK: put_public_access_block,
    S3Op.DELETE_PUBLIC_ACCESS_BLOCK: delete_public_access_block,
}
