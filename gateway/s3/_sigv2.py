"""AWS Signature Version 2 for S3 (HMAC-SHA1): the string to sign of the
`Authorization: AWS key:signature` header and of `AWSAccessKeyId/Signature/
Expires` presigned URLs.

Pure functions; auth.py feeds them from the request.

Rules:
- The canonical resource is "/bucket" (for virtual-host requests) + the path as
  sent + the S3 sub-resources of the query (?acl, ?uploads, ?partNumber=..,
  ?uploadId=.., ?versionId=.., response-* overrides, ...), sorted by name, with
  their decoded values; a sub-resource sent without '=' is signed without it.
- Clients differ on four points, so both readings are candidates: the path as
  sent or re-encoded strictly; (with x-amz-date) an empty Date line or the
  Date header's value; a sub-resource sent as "name=" signed with or without
  the '='; and a few sub-resources only some clients sign. A path-style bucket
  ("/bucket") is also tried as "/bucket/", which botocore signs. A signature
  matching any candidate is accepted; each candidate still needs the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import quote, unquote, unquote_to_bytes

# The query parameters that are part of the signed resource (botocore's list,
# a superset of the one in the S3 documentation).
SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete",
        "inventory", "lifecycle", "location", "logging", "metrics", "notification",
        "object-lock", "partNumber", "policy", "replication", "requestPayment",
        "response-cache-control", "response-content-disposition",
        "response-content-encoding", "response-content-language",
        "response-content-type", "response-expires", "restore", "select",
        "select-type", "storageClass", "tagging", "torrent", "uploadId", "uploads",
        "versionId", "versioning", "versions", "website",
    }
)  # fmt: skip
# Sub-resources minio-go signs and botocore does not: tried both ways.
CLIENT_SUBRESOURCES = frozenset({"encryption", "legal-hold", "retention"})


def parse_authorization(value: str) -> tuple[str, str] | None:
    """(access key, signature) of "AWS <key>:<signature>"; None when malformed."""
    _, _, credentials = value.partition(" ")
    access_key, sep, provided = credentials.strip().rpartition(":")
    if not sep or not access_key or not provided:
        return None
    return access_key, provided


def _suffixes(raw_query: str) -> list[str]:
    """The candidate sub-resource suffixes ("?acl&versionId=3"), the strict reading first:
    the other readings sign an empty value as the bare name (minio-go signs `?uploads=`
    as "?uploads") and add the sub-resources only some clients sign."""
    found: list[tuple[str, str, bool]] = []  # (name, decoded value, sent with '=')
    for item in raw_query.split("&"):
        name, sep, value = item.partition("=")
        if name in SUBRESOURCES or name in CLIENT_SUBRESOURCES:
            found.append((name, unquote(value), bool(sep)))
    found.sort(key=lambda entry: entry[0])
    with_optional = (False, True) if any(n in CLIENT_SUBRESOURCES for n, _, _ in found) else (
        False,)
    bare_empty = (False, True) if any(sep and not v for _, v, sep in found) else (False,)
    suffixes: list[str] = []
    for optional in with_optional:
        for bare in bare_empty:
            texts = [name if not sep or (bare and not value) else f"{name}={value}"
                     for name, value, sep in found
                     if optional or name not in CLIENT_SUBRESOURCES]
            suffix = "?" + "&".join(texts) if texts else ""
            if suffix not in suffixes:
                suffixes.append(suffix)
    return suffixes


def canonical_resources(raw_path: str, raw_query: str, bucket_in_host: str | None) -> list[str]:
    """The candidate canonical resources, the path as sent and the strict reading first."""
    prefix = f"/{bucket_in_host}" if bucket_in_host else ""
    sent = raw_path or "/"
    paths = [sent]
    reencoded = quote(unquote_to_bytes(sent), safe="/~")
    if reencoded != sent:
        paths.append(reencoded)
    if not bucket_in_host and sent.count("/") == 1 and sent != "/":
        paths.append(sent + "/")  # botocore signs a path-style bucket as "/bucket/"
    return [prefix + path + suffix for suffix in _suffixes(raw_query) for path in paths]


def canonical_amz_headers(headers: Iterable[tuple[str, str]]) -> str:
    """ "name:v1,v2\\n" for each x-amz-* header (lowercase names), sorted by name."""
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        lower = name.lower()
        if lower.startswith("x-amz-"):
            grouped.setdefault(lower, []).append(value.strip())
    return "".join(f"{name}:{','.join(grouped[name])}\n" for name in sorted(grouped))


def strings_to_sign(
    method: str,
    headers: Mapping[str, str],
    amz_headers: str,
    resources: list[str],
    dates: list[str],
) -> list[str]:
    """Every candidate string to sign; `headers` holds content-md5 and content-type."""
    md5 = headers.get("content-md5", "").strip()
    ctype = headers.get("content-type", "").strip()
    return [
        f"{method}\n{md5}\n{ctype}\n{date}\n{amz_headers}{resource}"
        for date in dates
        for resource in resources
    ]


def sign(secret: str, text: str) -> str:
    message = text.encode("utf-8", "surrogateescape")  # non-UTF-8 header bytes as sent
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def matches(secret: str, candidates: list[str], provided: str) -> bool:
    """Constant-time check of the provided signature against every candidate."""
    provided_bytes = provided.encode("utf-8", "surrogateescape")
    found = False
    for text in candidates:
        found |= hmac.compare_digest(sign(secret, text).encode("ascii"), provided_bytes)
    return found
