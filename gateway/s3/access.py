"""Who may do what: the one authorization decision for every S3 request.

`authorize` runs after authentication and after the bucket record is loaded,
before any handler touches data. The order is AWS's: x-amz-expected-bucket-owner;
then the bucket policy, where an explicit Deny refuses the request whoever sends
it (the owner keeps the bucket-policy operations, as the account root does); then
the bucket owner, who may do everything in its bucket; then a policy Allow; then
the bucket's or the object's ACL for the permission the operation needs.
Operations outside ACLs (bucket configuration, tagging, deletion of the bucket)
belong to the owner and to policy grants only.

Rules:
- Anonymous callers (no credentials) get exactly what AllUsers grants and
  "Principal": "*" statements allow; everything else is AccessDenied.
- A caller without read access to a bucket learns nothing about its keys: a
  missing object is AccessDenied for them, NoSuchKey only for those who may list.
- The PublicAccessBlock of the bucket is honoured: IgnorePublicAcls drops grants
  to AllUsers and AuthenticatedUsers, RestrictPublicBuckets drops a public
  policy's Allow for anyone but the owner. (BlockPublicAcls and BlockPublicPolicy
  are checked where ACLs and policies are written: handlers_access.)
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from kurastore.gateway.objects import errors as dom
from kurastore.gateway.s3 import acl, policy
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3.routes import S3Op
from kurastore.gateway.s3.server_log import ACL_REQUIRED

if TYPE_CHECKING:
    from kurastore.gateway.s3.context import S3Request
    from kurastore.metadata import BucketRecord, ObjectVersion

BUCKET, OBJECT, OWNER = "bucket", "object", "owner"

# op -> (policy action, what the ACL check looks at, the ACL permission)
_RULES: dict[S3Op, tuple[str, str, str]] = {
    S3Op.LIST_OBJECTS: ("s3:ListBucket", BUCKET, acl.READ),
    S3Op.LIST_OBJECTS_V2: ("s3:ListBucket", BUCKET, acl.READ),
    S3Op.HEAD_BUCKET: ("s3:ListBucket", BUCKET, acl.READ),
    S3Op.LIST_OBJECT_VERSIONS: ("s3:ListBucketVersions", BUCKET, acl.READ),
    S3Op.LIST_MULTIPART_UPLOADS: ("s3:ListBucketMultipartUploads", BUCKET, acl.READ),
    S3Op.GET_BUCKET_ACL: ("s3:GetBucketAcl", BUCKET, acl.READ_ACP),
    S3Op.PUT_BUCKET_ACL: ("s3:PutBucketAcl", BUCKET, acl.WRITE_ACP),
    S3Op.PUT_OBJECT: ("s3:PutObject", BUCKET, acl.WRITE),
    S3Op.POST_OBJECT: ("s3:PutObject", BUCKET, acl.WRITE),
    S3Op.COPY_OBJECT: ("s3:PutObject", BUCKET, acl.WRITE),
    S3Op.CREATE_MULTIPART_UPLOAD: ("s3:PutObject", BUCKET, acl.WRITE),
    S3Op.UPLOAD_PART: ("s3:PutObject", BUCKET, acl.WRITE),
    S3Op.UPLOAD_PART_COPY: ("s3:PutObject", BUCKET, acl.WRITE),
    S3Op.COMPLETE_MULTIPART_UPLOAD: ("s3:PutObject", BUCKET, acl.WRITE),
    S3Op.ABORT_MULTIPART_UPLOAD: ("s3:AbortMultipartUpload", BUCKET, acl.WRITE),
    S3Op.LIST_PARTS: ("s3:ListMultipartUploadParts", BUCKET, acl.WRITE),
    S3Op.DELETE_OBJECT: ("s3:DeleteObject", BUCKET, acl.WRITE),
    S3Op.DELETE_OBJECTS: ("s3:DeleteObject", BUCKET, acl.WRITE),
    S3Op.GET_OBJECT: ("s3:GetObject", OBJECT, acl.READ),
    S3Op.HEAD_OBJECT: ("s3:GetObject", OBJECT, acl.READ),
    S3Op.GET_OBJECT_ATTRIBUTES: ("s3:GetObjectAttributes", OBJECT, acl.READ),
    S3Op.GET_OBJECT_TORRENT: ("s3:GetObjectTorrent", OBJECT, acl.READ),
    S3Op.GET_OBJECT_ACL: ("s3:GetObjectAcl", OBJECT, acl.READ_ACP),
    S3Op.PUT_OBJECT_ACL: ("s3:PutObjectAcl", OBJECT, acl.WRITE_ACP),
}
# Policy action names that differ from "s3:" + the operation's name.
_ACTIONS = {
    S3Op.GET_BUCKET_LIFECYCLE: "s3:GetLifecycleConfiguration",
    S3Op.GET_PUBLIC_ACCESS_BLOCK: "s3:GetBucketPublicAccessBlock",
    S3Op.PUT_PUBLIC_ACCESS_BLOCK: "s3:PutBucketPublicAccessBlock",
    S3Op.DELETE_PUBLIC_ACCESS_BLOCK: "s3:PutBucketPublicAccessBlock",
    S3Op.DELETE_BUCKET_TAGGING: "s3:PutBucketTagging",
    S3Op.DELETE_OBJECT_TAGGING: "s3:DeleteObjectTagging",
    S3Op.GET_BUCKET_CORS: "s3:GetBucketCORS",
    S3Op.PUT_BUCKET_CORS: "s3:PutBucketCORS",
    S3Op.DELETE_BUCKET_CORS: "s3:PutBucketCORS",
    S3Op.PUT_BUCKET_LIFECYCLE: "s3:PutLifecycleConfiguration",
    S3Op.DELETE_BUCKET_LIFECYCLE: "s3:PutLifecycleConfiguration",
    S3Op.GET_OBJECT_LOCK_CONFIG: "s3:GetBucketObjectLockConfiguration",
    S3Op.PUT_OBJECT_LOCK_CONFIG: "s3:PutBucketObjectLockConfiguration",
    S3Op.GET_BUCKET_ENCRYPTION: "s3:GetEncryptionConfiguration",
    S3Op.PUT_BUCKET_ENCRYPTION: "s3:PutEncryptionConfiguration",
    S3Op.DELETE_BUCKET_ENCRYPTION: "s3:PutEncryptionConfiguration",
    S3Op.GET_BUCKET_ACCELERATE: "s3:GetAccelerateConfiguration",
    S3Op.GET_BUCKET_NOTIFICATION: "s3:GetBucketNotification",
    S3Op.PUT_BUCKET_NOTIFICATION: "s3:PutBucketNotification",
    S3Op.GET_BUCKET_REPLICATION: "s3:GetReplicationConfiguration",
    S3Op.DELETE_BUCKET_REPLICATION: "s3:PutReplicationConfiguration",
    S3Op.LIST_BUCKET_ANALYTICS_CONFIGS: "s3:GetAnalyticsConfiguration",
    S3Op.LIST_BUCKET_METRICS_CONFIGS: "s3:GetMetricsConfiguration",
    S3Op.LIST_BUCKET_INVENTORY_CONFIGS: "s3:GetInventoryConfiguration",
    S3Op.LIST_BUCKET_INTELLIGENT_TIERING_CONFIGS: "s3:GetIntelligentTieringConfiguration",
    S3Op.DELETE_BUCKET_ANALYTICS_CONFIG: "s3:PutAnalyticsConfiguration",
    S3Op.DELETE_BUCKET_METRICS_CONFIG: "s3:PutMetricsConfiguration",
    S3Op.DELETE_BUCKET_INVENTORY_CONFIG: "s3:PutInventoryConfiguration",
    S3Op.DELETE_BUCKET_INTELLIGENT_TIERING_CONFIG: "s3:PutIntelligentTieringConfiguration",
}
_VERSIONED_ACTIONS = {"s3:GetObject": "s3:GetObjectVersion", "s3:DeleteObject":
                      "s3:DeleteObjectVersion", "s3:GetObjectAcl": "s3:GetObjectVersionAcl",
                      "s3:PutObjectAcl": "s3:PutObjectVersionAcl",
                      "s3:GetObjectTorrent": "s3:GetObjectVersionTorrent"}  # fmt: skip
_POLICY_OPS = frozenset({S3Op.GET_BUCKET_POLICY, S3Op.PUT_BUCKET_POLICY,
                         S3Op.DELETE_BUCKET_POLICY})
_OBJECT_OPS = frozenset({S3Op.GET_OBJECT_TAGGING, S3Op.PUT_OBJECT_TAGGING,
                         S3Op.DELETE_OBJECT_TAGGING, S3Op.GET_OBJECT_RETENTION,
                         S3Op.PUT_OBJECT_RETENTION, S3Op.GET_OBJECT_LEGAL_HOLD,
                         S3Op.PUT_OBJECT_LEGAL_HOLD})
# Operations on an existing object whose policy context carries its tags
# (s3:ExistingObjectTag/<key>), as the AWS condition-key table lists them.
_TAGGED_OPS = frozenset({S3Op.GET_OBJECT, S3Op.HEAD_OBJECT, S3Op.GET_OBJECT_ACL,
                         S3Op.PUT_OBJECT_ACL, S3Op.GET_OBJECT_TAGGING, S3Op.PUT_OBJECT_TAGGING,
                         S3Op.DELETE_OBJECT_TAGGING, S3Op.GET_OBJECT_ATTRIBUTES,
                         S3Op.GET_OBJECT_RETENTION, S3Op.PUT_OBJECT_RETENTION,
                         S3Op.GET_OBJECT_LEGAL_HOLD, S3Op.PUT_OBJECT_LEGAL_HOLD})
_CONTEXT_HEADERS = ("x-amz-acl", "x-amz-copy-source", "x-amz-metadata-directive",
                    "x-amz-server-side-encryption", "x-amz-storage-class",
                    "x-amz-server-side-encryption-customer-algorithm",
                    "x-amz-server-side-encryption-aws-kms-key-id",
                    "x-amz-content-sha256", *acl.GRANT_HEADERS)  # fmt: skip


def acls_disabled(record: BucketRecord) -> bool:
    """Object Ownership BucketOwnerEnforced (ownership.py): ACLs grant nothing."""
    return record.settings.get("ownership") == "BucketOwnerEnforced"


def public_access_block(record: BucketRecord) -> Mapping[str, bool]:
    return record.settings.get("public_access_block") or {}


def action_for(op: S3Op, versioned: bool) -> str:
    rule = _RULES.get(op)
    action = rule[0] if rule else _ACTIONS.get(op, "s3:" + op.value)
    return _VERSIONED_ACTIONS.get(action, action) if versioned else action


def check_expected_owner(s3: S3Request, record: BucketRecord, header: str) -> None:
    expected = s3.headers.get(header)
    if expected is not None and expected != record.owner:
        raise s3e.AccessDenied()


async def authorize(s3: S3Request) -> None:
    """Raises AccessDenied (or, for callers who may list, NoSuchKey) unless allowed."""
    record = s3.bucket_record
    if record is None:  # ListBuckets, CreateBucket: any authenticated user
        if s3.principal is None:
            raise s3e.AccessDenied()
        return
    check_expected_owner(s3, record, "x-amz-expected-bucket-owner")
    caller = s3.principal.user_id if s3.principal else None
    if s3.op is S3Op.DELETE_OBJECTS:  # decided key by key (delete_allowed)
        if (caller is not None and caller == record.owner) or record.settings.get("policy") or (
            _bucket_permits(record, caller, acl.WRITE)
        ):
            return
        raise s3e.AccessDenied()
    rule = _RULES.get(s3.op)
    versioned = bool(s3.query.get("versionId"))
    action = action_for(s3.op, versioned)
    on_object = s3.key and (rule is None or rule[1] == OBJECT or s3.op in _OBJECT_OPS
                            or rule[0] in ("s3:PutObject", "s3:DeleteObject",
                                           "s3:AbortMultipartUpload",
                                           "s3:ListMultipartUploadParts"))
    resource = f"arn:aws:s3:::{s3.bucket}/{s3.key}" if on_object else f"arn:aws:s3:::{s3.bucket}"
    extra = await _existing_tags(s3, record) if s3.op in _TAGGED_OPS else None
    decision = policy_decision(s3, record, caller, action, resource, extra)
    if decision == "Deny" and not (caller == record.owner and s3.op in _POLICY_OPS):
        raise s3e.AccessDenied()
    if caller is not None and caller == record.owner:
        if rule is not None and rule[1] == OBJECT and decision != "Allow":
            s3.loaded_check = rule[2]  # the object may be another user's: check_loaded
        return
    if decision == "Allow":
        return
    if rule is None:
        raise s3e.AccessDenied()
    _, target, permission = rule
    if target == BUCKET:
        if not _bucket_permits(record, caller, permission):
            raise s3e.AccessDenied()
        s3.request[ACL_REQUIRED] = True  # the server access log's "ACL required"
        return
    version = await _version_or_denied(s3, record, s3.key, s3.query.get("versionId"), caller)
    if not object_permits(version, record, caller, permission):
        raise s3e.AccessDenied()
    s3.request[ACL_REQUIRED] = True


async def check_copy_source(s3: S3Request, bucket: str, key: str, version_id: str | None) -> None:
    """A copy reads its source: the caller needs s3:GetObject (or READ) on it."""
    record = await s3.service.get_bucket(bucket)
    check_expected_owner(s3, record, "x-amz-source-expected-bucket-owner")
    caller = s3.principal.user_id if s3.principal else None
    action = action_for(S3Op.GET_OBJECT, bool(version_id))
    decision = policy_decision(s3, record, caller, action, f"arn:aws:s3:::{bucket}/{key}")
    if decision == "Deny":
        raise s3e.AccessDenied()
    if decision == "Allow":
        return
    version = await _version_or_denied(s3, record, key, version_id, caller)
    if caller is not None and caller == record.owner and (
        acls_disabled(record) or version.owner in ("", record.owner)
    ):
        return
    if not object_permits(version, record, caller, acl.READ):
        raise s3e.AccessDenied()


def _bucket_permits(record: BucketRecord, caller: str | None, permission: str) -> bool:
    if acls_disabled(record):
        return caller is not None and caller == record.owner
    ignore_public = bool(public_access_block(record).get("IgnorePublicAcls"))
    return acl.permits(acl.bucket_acl(record.settings, record.owner), record.owner, caller,
                       permission, ignore_public=ignore_public)


def delete_allowed(s3: S3Request, key: str, version_id: str | None) -> bool:
    """DeleteObjects, per key: the policy for this key's ARN, then owner and ACL."""
    record = s3.bucket_record
    if record is None:
        return False
    caller = s3.principal.user_id if s3.principal else None
    action = action_for(S3Op.DELETE_OBJECT, bool(version_id))
    decision = policy_decision(s3, record, caller, action, f"arn:aws:s3:::{record.name}/{key}")
    if decision == "Deny":
        return False
    if decision == "Allow" or (caller is not None and caller == record.owner):
        return True
    return _bucket_permits(record, caller, acl.WRITE)


def check_loaded(s3: S3Request, version: ObjectVersion) -> None:
    """The bucket owner's object operations skip the lookup `authorize` would need;
    the handler calls this with the version it loaded: an object another user
    wrote answers to its own ACL (the bucket owner may still delete it)."""
    permission, record = s3.loaded_check, s3.bucket_record
    if permission is None or record is None or version.owner in ("", record.owner):
        return
    if acls_disabled(record):  # the bucket owner owns everything (ownership.py)
        return
    if not object_permits(version, record, s3.user_id or None, permission):
        raise s3e.AccessDenied()


def object_permits(version: ObjectVersion, record: BucketRecord, caller: str | None,
                   permission: str) -> bool:
    if acls_disabled(record):
        return caller is not None and caller == record.owner
    owner = version.owner or record.owner
    ignore_public = bool(public_access_block(record).get("IgnorePublicAcls"))
    return acl.permits(acl.object_acl(version.headers, owner), owner, caller, permission,
                       ignore_public=ignore_public)


async def _version_or_denied(s3: S3Request, record: BucketRecord, key: str,
                             version_id: str | None, caller: str | None) -> ObjectVersion:
    try:
        return await s3.service.head_object(record.name, key, version_id=version_id or None)
    except (dom.ObjectNotFound, dom.VersionNotFound):
        if may_list(s3, record, caller, key):
            raise
        raise s3e.AccessDenied() from None


async def _existing_tags(s3: S3Request, record: BucketRecord) -> dict[str, Sequence[str]]:
    """s3:ExistingObjectTag/<key> of the object the request names, loaded only when
    the bucket's policy asks for it (a missing object has no tags)."""
    if "existingobjecttag/" not in str(record.settings.get("policy") or "").lower():
        return {}
    try:
        version = await s3.service.head_object(record.name, s3.key,
                                               version_id=s3.query.get("versionId") or None)
    except (dom.ObjectNotFound, dom.VersionNotFound):
        return {}
    return {"s3:existingobjecttag/" + k.lower(): [v] for k, v in version.tags.items()}


def may_bypass_governance(s3: S3Request, key: str) -> bool:
    """s3:BypassGovernanceRetention on `key`, which x-amz-bypass-governance-retention
    needs: the bucket owner has it unless the bucket policy denies it; anyone else
    only by a policy Allow (no ACL grants it)."""
    record = s3.bucket_record
    if record is None:
        return False
    caller = s3.principal.user_id if s3.principal else None
    decision = policy_decision(s3, record, caller, "s3:BypassGovernanceRetention",
                               f"arn:aws:s3:::{record.name}/{key}")
    if decision is not None:
        return decision == "Allow"
    return caller is not None and caller == record.owner


def may_list(s3: S3Request, record: BucketRecord, caller: str | None, key: str) -> bool:
    """May the caller list `key` (a listing with the key as prefix would show it)?"""
    if caller is not None and caller == record.owner:
        return True
    resource = f"arn:aws:s3:::{record.name}"
    decision = policy_decision(s3, record, caller, "s3:ListBucket", resource,
                               {"s3:prefix": [key]})
    if decision is not None:
        return decision == "Allow"
    return _bucket_permits(record, caller, acl.READ)


def policy_decision(s3: S3Request, record: BucketRecord, caller: str | None, action: str,
                    resource: str, extra: Mapping[str, Sequence[str]] | None = None
                    ) -> str | None:
    doc = record.settings.get("policy")
    if not doc:
        return None
    context = {**request_context(s3), **(extra or {})}
    decision = policy.evaluate(doc, caller=caller, action=action, resource=resource,
                               context=context)
    if (decision == "Allow" and caller != record.owner
            and public_access_block(record).get("RestrictPublicBuckets")
            and policy.is_public(doc)):
        return None
    return decision


def request_context(s3: S3Request) -> dict[str, Sequence[str]]:
    """Condition keys of this request (lowercase names), as AWS defines them."""
    request, h, q = s3.request, s3.headers, s3.query
    now = time.time()
    ctx: dict[str, Sequence[str]] = {
        "aws:securetransport": ["true" if request.secure else "false"],
        "aws:currenttime": [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))],
        "aws:epochtime": [str(int(now))],
    }
    if request.remote:
        ctx["aws:sourceip"] = [request.remote]
    for name, header in (("aws:referer", "Referer"), ("aws:useragent", "User-Agent")):
        if header in h:
            ctx[name] = [h[header]]
    if s3.principal is not None:
        ctx["aws:userid"] = ctx["aws:username"] = [s3.principal.user_id]
        ctx["s3:signatureversion"] = ["AWS4-HMAC-SHA256" if s3.auth.scheme.startswith("sigv4")
                                      else "AWS"]
        ctx["s3:authtype"] = ["REST-QUERY-STRING" if s3.auth.scheme.endswith("query")
                              else "REST-HEADER"]
    for name in ("prefix", "delimiter", "max-keys"):
        if name in q:
            ctx["s3:" + name] = [q[name]]
    if "versionId" in q:
        ctx["s3:versionid"] = [q["versionId"]]
    for name in _CONTEXT_HEADERS:
        if name in h:
            ctx["s3:" + name] = [h[name]]
    _tags(ctx, h.get("x-amz-tagging", ""))
    return ctx


def _tags(ctx: dict[str, Sequence[str]], header: str) -> None:
    pairs: list[tuple[str, str]] = parse_qsl(header, keep_blank_values=True) if header else []
    for key, value in pairs:
        ctx["s3:requestobjecttag/" + key.lower()] = [value]
    if pairs:
        ctx["s3:requestobjecttagkeys"] = [k for k, _ in pairs]


def stored_settings(record: BucketRecord, **changes: Any) -> dict[str, Any]:
    """The bucket's settings with `changes` applied (None removes a setting)."""
    out = dict(record.settings)
    for name, value in changes.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out
