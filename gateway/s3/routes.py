"""S3 routing: one pure function from (method, path, query, headers) to an operation.

`classify` decides which S3 operation a request is, and for which bucket and
key, without a server, a store or an exception for "unsupported": operations we
recognise but do not implement get their own S3Op (so logs and metrics name
them) and simply have no handler; anything unrecognisable is S3Op.UNKNOWN. The
frontend answers both with NotImplemented.

Rules: `path` is the raw, still percent-encoded request path (no query); it is
decoded exactly once here, so "a%2Fb", "a//b", "+" and trailing slashes reach
the object service as the client meant them. Virtual-host-style requests name
the bucket in Host ("<bucket>.<domain>[:port]"); any other Host is path-style.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from urllib.parse import unquote

from kurastore.gateway.s3.errors import InvalidURI


class S3Op(enum.Enum):
    """S3 operations, valued by their AWS API names."""

    LIST_BUCKETS = "ListBuckets"
    CREATE_BUCKET = "CreateBucket"
    HEAD_BUCKET = "HeadBucket"
    DELETE_BUCKET = "DeleteBucket"
    GET_BUCKET_LOCATION = "GetBucketLocation"
    LIST_OBJECTS = "ListObjects"
    LIST_OBJECTS_V2 = "ListObjectsV2"
    LIST_OBJECT_VERSIONS = "ListObjectVersions"
    LIST_MULTIPART_UPLOADS = "ListMultipartUploads"
    GET_BUCKET_VERSIONING = "GetBucketVersioning"
    PUT_BUCKET_VERSIONING = "PutBucketVersioning"
    GET_BUCKET_ACL = "GetBucketAcl"
    PUT_BUCKET_ACL = "PutBucketAcl"
    GET_BUCKET_TAGGING = "GetBucketTagging"
    PUT_BUCKET_TAGGING = "PutBucketTagging"
    DELETE_BUCKET_TAGGING = "DeleteBucketTagging"
    GET_BUCKET_POLICY = "GetBucketPolicy"
    PUT_BUCKET_POLICY = "PutBucketPolicy"
    DELETE_BUCKET_POLICY = "DeleteBucketPolicy"
    GET_BUCKET_POLICY_STATUS = "GetBucketPolicyStatus"
    GET_PUBLIC_ACCESS_BLOCK = "GetPublicAccessBlock"
    PUT_PUBLIC_ACCESS_BLOCK = "PutPublicAccessBlock"
    DELETE_PUBLIC_ACCESS_BLOCK = "DeletePublicAccessBlock"
    GET_BUCKET_OWNERSHIP_CONTROLS = "GetBucketOwnershipControls"
    PUT_BUCKET_OWNERSHIP_CONTROLS = "PutBucketOwnershipControls"
    DELETE_BUCKET_OWNERSHIP_CONTROLS = "DeleteBucketOwnershipControls"
    GET_BUCKET_CORS = "GetBucketCors"
    PUT_BUCKET_CORS = "PutBucketCors"
    DELETE_BUCKET_CORS = "DeleteBucketCors"
    GET_BUCKET_LIFECYCLE = "GetBucketLifecycleConfiguration"
    PUT_BUCKET_LIFECYCLE = "PutBucketLifecycleConfiguration"
    DELETE_BUCKET_LIFECYCLE = "DeleteBucketLifecycle"
    GET_BUCKET_LOGGING = "GetBucketLogging"
    PUT_BUCKET_LOGGING = "PutBucketLogging"
    GET_BUCKET_ENCRYPTION = "GetBucketEncryption"
    PUT_BUCKET_ENCRYPTION = "PutBucketEncryption"
    DELETE_BUCKET_ENCRYPTION = "DeleteBucketEncryption"
    GET_OBJECT_LOCK_CONFIG = "GetObjectLockConfiguration"
    PUT_OBJECT_LOCK_CONFIG = "PutObjectLockConfiguration"
    GET_OBJECT_RETENTION = "GetObjectRetention"
    PUT_OBJECT_RETENTION = "PutObjectRetention"
    GET_OBJECT_LEGAL_HOLD = "GetObjectLegalHold"
    PUT_OBJECT_LEGAL_HOLD = "PutObjectLegalHold"
    GET_BUCKET_REQUEST_PAYMENT = "GetBucketRequestPayment"
    DELETE_OBJECTS = "DeleteObjects"
    PUT_OBJECT = "PutObject"
    COPY_OBJECT = "CopyObject"
    GET_OBJECT = "GetObject"
    HEAD_OBJECT = "HeadObject"
    DELETE_OBJECT = "DeleteObject"
    GET_OBJECT_TAGGING = "GetObjectTagging"
    PUT_OBJECT_TAGGING = "PutObjectTagging"
    DELETE_OBJECT_TAGGING = "DeleteObjectTagging"
    GET_OBJECT_ACL = "GetObjectAcl"
    PUT_OBJECT_ACL = "PutObjectAcl"
    GET_OBJECT_ATTRIBUTES = "GetObjectAttributes"
    CREATE_MULTIPART_UPLOAD = "CreateMultipartUpload"
    UPLOAD_PART = "UploadPart"
    UPLOAD_PART_COPY = "UploadPartCopy"
    COMPLETE_MULTIPART_UPLOAD = "CompleteMultipartUpload"
    ABORT_MULTIPART_UPLOAD = "AbortMultipartUpload"
    LIST_PARTS = "ListParts"
    POST_OBJECT = "PostObject"  # browser-form upload, authenticated by its form (handlers_post)
    GET_OBJECT_TORRENT = "GetObjectTorrent"
    # Features not offered, answered as for a bucket without them (handlers_unconfigured).
    GET_BUCKET_ACCELERATE = "GetBucketAccelerateConfiguration"
    GET_BUCKET_NOTIFICATION = "GetBucketNotificationConfiguration"
    PUT_BUCKET_NOTIFICATION = "PutBucketNotificationConfiguration"
    GET_BUCKET_REPLICATION = "GetBucketReplication"
    DELETE_BUCKET_REPLICATION = "DeleteBucketReplication"
    GET_BUCKET_WEBSITE = "GetBucketWebsite"
    DELETE_BUCKET_WEBSITE = "DeleteBucketWebsite"
    LIST_BUCKET_ANALYTICS_CONFIGS = "ListBucketAnalyticsConfigurations"
    LIST_BUCKET_METRICS_CONFIGS = "ListBucketMetricsConfigurations"
    LIST_BUCKET_INVENTORY_CONFIGS = "ListBucketInventoryConfigurations"
    LIST_BUCKET_INTELLIGENT_TIERING_CONFIGS = "ListBucketIntelligentTieringConfigurations"
    DELETE_BUCKET_ANALYTICS_CONFIG = "DeleteBucketAnalyticsConfiguration"
    DELETE_BUCKET_METRICS_CONFIG = "DeleteBucketMetricsConfiguration"
    DELETE_BUCKET_INVENTORY_CONFIG = "DeleteBucketInventoryConfiguration"
    DELETE_BUCKET_INTELLIGENT_TIERING_CONFIG = "DeleteBucketIntelligentTieringConfiguration"
    # Recognised, not implemented (answered NotImplemented).
    BUCKET_SUBRESOURCE = "BucketSubresource"
    OBJECT_SUBRESOURCE = "ObjectSubresource"
    SELECT_OBJECT_CONTENT = "SelectObjectContent"
    RESTORE_OBJECT = "RestoreObject"
    OPTIONS = "Options"
    UNKNOWN = "Unknown"


# Bucket sub-resources with an operation of their own, per method. Any other
# sub-resource in _BUCKET_SUBRESOURCES is recognised but not implemented.
_BUCKET_GET = {
    "uploads": S3Op.LIST_MULTIPART_UPLOADS,
    "versions": S3Op.LIST_OBJECT_VERSIONS,
    "location": S3Op.GET_BUCKET_LOCATION,
    "versioning": S3Op.GET_BUCKET_VERSIONING,
    "acl": S3Op.GET_BUCKET_ACL,
    "tagging": S3Op.GET_BUCKET_TAGGING,
    "policy": S3Op.GET_BUCKET_POLICY,
    "policyStatus": S3Op.GET_BUCKET_POLICY_STATUS,
    "publicAccessBlock": S3Op.GET_PUBLIC_ACCESS_BLOCK,
    "ownershipControls": S3Op.GET_BUCKET_OWNERSHIP_CONTROLS,
    "cors": S3Op.GET_BUCKET_CORS,
    "lifecycle": S3Op.GET_BUCKET_LIFECYCLE,
    "encryption": S3Op.GET_BUCKET_ENCRYPTION,
    "logging": S3Op.GET_BUCKET_LOGGING,
    "object-lock": S3Op.GET_OBJECT_LOCK_CONFIG,
    "requestPayment": S3Op.GET_BUCKET_REQUEST_PAYMENT,
    "accelerate": S3Op.GET_BUCKET_ACCELERATE,
    "notification": S3Op.GET_BUCKET_NOTIFICATION,
    "replication": S3Op.GET_BUCKET_REPLICATION,
    "website": S3Op.GET_BUCKET_WEBSITE,
    "analytics": S3Op.LIST_BUCKET_ANALYTICS_CONFIGS,
    "metrics": S3Op.LIST_BUCKET_METRICS_CONFIGS,
    "inventory": S3Op.LIST_BUCKET_INVENTORY_CONFIGS,
    "intelligent-tiering": S3Op.LIST_BUCKET_INTELLIGENT_TIERING_CONFIGS,
}
_BUCKET_PUT = {
    "policy": S3Op.PUT_BUCKET_POLICY,
    "publicAccessBlock": S3Op.PUT_PUBLIC_ACCESS_BLOCK,
    "ownershipControls": S3Op.PUT_BUCKET_OWNERSHIP_CONTROLS,
    "versioning": S3Op.PUT_BUCKET_VERSIONING,
    "acl": S3Op.PUT_BUCKET_ACL,
    "tagging": S3Op.PUT_BUCKET_TAGGING,
    "cors": S3Op.PUT_BUCKET_CORS,
    "lifecycle": S3Op.PUT_BUCKET_LIFECYCLE,
    "encryption": S3Op.PUT_BUCKET_ENCRYPTION,
    "logging": S3Op.PUT_BUCKET_LOGGING,
    "object-lock": S3Op.PUT_OBJECT_LOCK_CONFIG,
    "notification": S3Op.PUT_BUCKET_NOTIFICATION,
}
_BUCKET_DELETE = {
    "tagging": S3Op.DELETE_BUCKET_TAGGING,
    "cors": S3Op.DELETE_BUCKET_CORS,
    "lifecycle": S3Op.DELETE_BUCKET_LIFECYCLE,
    "encryption": S3Op.DELETE_BUCKET_ENCRYPTION,
    "policy": S3Op.DELETE_BUCKET_POLICY,
    "publicAccessBlock": S3Op.DELETE_PUBLIC_ACCESS_BLOCK,
    "ownershipControls": S3Op.DELETE_BUCKET_OWNERSHIP_CONTROLS,
    "replication": S3Op.DELETE_BUCKET_REPLICATION,
    "website": S3Op.DELETE_BUCKET_WEBSITE,
    "analytics": S3Op.DELETE_BUCKET_ANALYTICS_CONFIG,
    "metrics": S3Op.DELETE_BUCKET_METRICS_CONFIG,
    "inventory": S3Op.DELETE_BUCKET_INVENTORY_CONFIG,
    "intelligent-tiering": S3Op.DELETE_BUCKET_INTELLIGENT_TIERING_CONFIG,
}
_BUCKET_SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "analytics", "cors", "encryption", "intelligent-tiering",
        "inventory", "lifecycle", "location", "logging", "metadataConfiguration",
        "metadataTable", "metrics", "notification", "object-lock", "ownershipControls",
        "policy", "policyStatus", "publicAccessBlock", "replication", "requestPayment",
        "tagging", "uploads", "versioning", "versions", "website",
    }
)  # fmt: skip
_OBJECT_SUBRESOURCES = frozenset({"torrent", "renameObject"})
_OBJECT_LOCK_GET = {"retention": S3Op.GET_OBJECT_RETENTION,
                    "legal-hold": S3Op.GET_OBJECT_LEGAL_HOLD}
_OBJECT_LOCK_PUT = {"retention": S3Op.PUT_OBJECT_RETENTION,
                    "legal-hold": S3Op.PUT_OBJECT_LEGAL_HOLD}


def classify(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    domain: str | None = None,
) -> tuple[S3Op, str, str]:
    """Returns (operation, bucket, key); bucket and key are "" when absent.

    `headers` must look names up case-insensitively (aiohttp's CIMultiDict does).
    Raises InvalidURI when the path is not percent-encoded UTF-8.
    """
    bucket, key = split_path(path, headers.get("Host", ""), domain)
    method = method.upper()
    if method == "OPTIONS":
        return S3Op.OPTIONS, bucket, key
    if not bucket:
        op = S3Op.LIST_BUCKETS if method == "GET" else S3Op.UNKNOWN
        return op, "", ""
    if not key:
        return _bucket_op(method, query), bucket, ""
    return _object_op(method, query, headers), bucket, key


def split_path(path: str, host: str, domain: str | None) -> tuple[str, str]:
    """(bucket, key) from the raw path and the Host header."""
    try:
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidURI() from exc
    if not decoded.startswith("/"):
        decoded = "/" + decoded
    host_bucket = bucket_from_host(host, domain)
    if host_bucket:
        return host_bucket, decoded[1:]
    bucket, _, key = decoded[1:].partition("/")
    return bucket, key


def bucket_from_host(host: str, domain: str | None) -> str:
    if not domain:
        return ""
    name = host.strip().lower()
    if name.startswith("["):  # an IPv6 literal is never a virtual host
        return ""
    name = name.rsplit(":", 1)[0] if ":" in name else name
    suffix = "." + domain.lower().strip(".")
    if name.endswith(suffix) and len(name) > len(suffix):
        return name[: -len(suffix)]
    return ""


def _bucket_op(method: str, query: Mapping[str, str]) -> S3Op:
    if method == "GET":
        for name, op in _BUCKET_GET.items():
            if name in query:
                return op
        if _has_any(query, _BUCKET_SUBRESOURCES):
            return S3Op.BUCKET_SUBRESOURCE
        return S3Op.LIST_OBJECTS_V2 if query.get("list-type") == "2" else S3Op.LIST_OBJECTS
    if method == "HEAD":
        return S3Op.HEAD_BUCKET
    if method == "PUT":
        for name, op in _BUCKET_PUT.items():
            if name in query:
                return op
        return S3Op.BUCKET_SUBRESOURCE if _has_any(query, _BUCKET_SUBRESOURCES) else (
            S3Op.CREATE_BUCKET
        )
    if method == "DELETE":
        for name, op in _BUCKET_DELETE.items():
            if name in query:
                return op
        return S3Op.BUCKET_SUBRESOURCE if _has_any(query, _BUCKET_SUBRESOURCES) else (
            S3Op.DELETE_BUCKET
        )
    if method == "POST":
        if "delete" in query:
            return S3Op.DELETE_OBJECTS
        return S3Op.UNKNOWN if query else S3Op.POST_OBJECT
    return S3Op.UNKNOWN


def _object_op(method: str, query: Mapping[str, str], headers: Mapping[str, str]) -> S3Op:
    if "torrent" in query and method == "GET":
        return S3Op.GET_OBJECT_TORRENT
    if _has_any(query, _OBJECT_SUBRESOURCES):
        return S3Op.OBJECT_SUBRESOURCE
    lock_ops = _OBJECT_LOCK_GET if method == "GET" else _OBJECT_LOCK_PUT
    for name, op in lock_ops.items():
        if name in query and method in ("GET", "PUT"):
            return op
    if "retention" in query or "legal-hold" in query:
        return S3Op.UNKNOWN
    if method == "GET":
        if "uploadId" in query:
            return S3Op.LIST_PARTS
        if "tagging" in query:
            return S3Op.GET_OBJECT_TAGGING
        if "acl" in query:
            return S3Op.GET_OBJECT_ACL
        if "attributes" in query:
            return S3Op.GET_OBJECT_ATTRIBUTES
        return S3Op.GET_OBJECT
    if method == "HEAD":
        return S3Op.HEAD_OBJECT
    if method == "PUT":
        copy = "x-amz-copy-source" in headers
        if "partNumber" in query and "uploadId" in query:
            return S3Op.UPLOAD_PART_COPY if copy else S3Op.UPLOAD_PART
        if "uploadId" in query or "partNumber" in query:
            return S3Op.UNKNOWN
        if "tagging" in query:
            return S3Op.PUT_OBJECT_TAGGING
        if "acl" in query:
            return S3Op.PUT_OBJECT_ACL
        return S3Op.COPY_OBJECT if copy else S3Op.PUT_OBJECT
    if method == "DELETE":
        if "uploadId" in query:
            return S3Op.ABORT_MULTIPART_UPLOAD
        if "tagging" in query:
            return S3Op.DELETE_OBJECT_TAGGING
        return S3Op.DELETE_OBJECT
    if method == "POST":
        if "uploads" in query:
            return S3Op.CREATE_MULTIPART_UPLOAD
        if "uploadId" in query:
            return S3Op.COMPLETE_MULTIPART_UPLOAD
        if "select" in query:
            return S3Op.SELECT_OBJECT_CONTENT
        if "restore" in query:
            return S3Op.RESTORE_OBJECT
    return S3Op.UNKNOWN


def _has_any(query: Mapping[str, str], names: frozenset[str]) -> bool:
    return any(name in names for name in query)
