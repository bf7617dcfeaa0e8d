"""S3 server access log records and log object keys, in AWS's formats (Amazon S3 user
guide, "Amazon S3 server access log format" and "Enabling Amazon S3 server access
logging"). Pure: `entry_of` reads a finished request and its answer, the rest is
string work; server_log_delivery.py buffers and delivers.

A record is one line of space-separated fields: bucket owner, bucket, [time], remote
IP, requester, request id, operation (REST.<METHOD>.<RESOURCE>), key,
"request-uri", HTTP status, error code, bytes sent, object size, total time (ms),
turn-around time (ms), "referrer", "user-agent", version id, host id, signature
version, cipher suite, authentication type, host header, TLS version, access point
ARN, ACL required. "-" stands for a field that is empty, unknown or not applicable.

Rules:
- Nothing secret is written: no header but Referer, User-Agent and Host is read,
  and the signature and security token of a presigned URL are written as REDACTED in
  the request-uri (the credential's access key id is an identifier, kept as AWS does).
- Every field is one token: keys are percent-encoded, quoted fields escape '"' and
  '\\', control characters are dropped; a record never spans two lines.
- Turn-around time is known only for requests without a body (from arrival to the
  first byte of the answer); with a body the time spent receiving it is not
  separated, and the field is "-".
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from kurastore.gateway.middlewares import REQUEST_ID, body_bytes_sent
from kurastore.gateway.s3.routes import S3Op

# request keys: the operation's AWS name (S3Op value), the bucket and key ("" absent)
S3_OP = web.RequestKey("s3_op", str)
S3_BUCKET = web.RequestKey("s3_bucket", str)
S3_KEY = web.RequestKey("s3_key", str)
# request key: the S3 error code answered (frontend.render_s3_error)
ERROR_CODE = web.RequestKey("s3_error_code", str)
# request key: the authenticated user id ("" anonymous)
REQUESTER = web.RequestKey("s3_requester", str)
AUTH_SCHEME = web.RequestKey("s3_auth_scheme", str)  # request key: auth.AuthResult.scheme
# request key: an ACL grant authorized the request
ACL_REQUIRED = web.RequestKey("s3_acl_required", bool)
# request key: time.monotonic() when the request arrived
ARRIVED = web.RequestKey("s3_arrived", float)
# request key: time.monotonic() when the answer started
PREPARED = web.RequestKey("s3_prepared", float)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SECRET_PARAMS = frozenset({"x-amz-signature", "signature", "x-amz-security-token"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SIGNATURE_VERSIONS = {"sigv4": "SigV4", "sigv4-query": "SigV4", "sigv2": "SigV2",
                       "sigv2-query": "SigV2"}  # fmt: skip
_AUTH_TYPES = {"sigv4": "AuthHeader", "sigv2": "AuthHeader", "sigv4-query": "QueryString",
               "sigv2-query": "QueryString"}  # fmt: skip
_SIZED_WRITES = frozenset({S3Op.PUT_OBJECT, S3Op.UPLOAD_PART, S3Op.POST_OBJECT})
_SIZED_READS = frozenset({S3Op.GET_OBJECT, S3Op.HEAD_OBJECT})
# The <RESOURCE> of REST.<METHOD>.<RESOURCE>, as AWS names it.
_RESOURCES: dict[S3Op, str] = {
    S3Op.LIST_OBJECTS: "BUCKET", S3Op.LIST_OBJECTS_V2: "BUCKET", S3Op.HEAD_BUCKET: "BUCKET",
    S3Op.CREATE_BUCKET: "BUCKET", S3Op.DELETE_BUCKET: "BUCKET",
    S3Op.LIST_OBJECT_VERSIONS: "BUCKETVERSIONS", S3Op.LIST_MULTIPART_UPLOADS: "UPLOADS",
    S3Op.GET_BUCKET_LOCATION: "LOCATION", S3Op.GET_BUCKET_VERSIONING: "VERSIONING",
    S3Op.PUT_BUCKET_VERSIONING: "VERSIONING", S3Op.GET_BUCKET_ACL: "ACL",
    S3Op.PUT_BUCKET_ACL: "ACL", S3Op.GET_OBJECT_ACL: "ACL", S3Op.PUT_OBJECT_ACL: "ACL",
    S3Op.GET_BUCKET_TAGGING: "TAGGING", S3Op.PUT_BUCKET_TAGGING: "TAGGING",
    S3Op.DELETE_BUCKET_TAGGING: "TAGGING", S3Op.GET_OBJECT_TAGGING: "OBJECT_TAGGING",
    S3Op.PUT_OBJECT_TAGGING: "OBJECT_TAGGING", S3Op.DELETE_OBJECT_TAGGING: "OBJECT_TAGGING",
    S3Op.GET_BUCKET_POLICY: "BUCKETPOLICY", S3Op.PUT_BUCKET_POLICY: "BUCKETPOLICY",
    S3Op.DELETE_BUCKET_POLICY: "BUCKETPOLICY", S3Op.GET_BUCKET_POLICY_STATUS: "POLICY_STATUS",
    S3Op.GET_PUBLIC_ACCESS_BLOCK: "PUBLIC_ACCESS_BLOCK",
    S3Op.PUT_PUBLIC_ACCESS_BLOCK: "PUBLIC_ACCESS_BLOCK",
    S3Op.DELETE_PUBLIC_ACCESS_BLOCK: "PUBLIC_ACCESS_BLOCK",
    S3Op.GET_BUCKET_OWNERSHIP_CONTROLS: "OWNERSHIP_CONTROLS",
    S3Op.PUT_BUCKET_OWNERSHIP_CONTROLS: "OWNERSHIP_CONTROLS",
    S3Op.DELETE_BUCKET_OWNERSHIP_CONTROLS: "OWNERSHIP_CONTROLS",
    S3Op.GET_BUCKET_CORS: "CORS", S3Op.PUT_BUCKET_CORS: "CORS", S3Op.DELETE_BUCKET_CORS: "CORS",
    S3Op.GET_BUCKET_LIFECYCLE: "LIFECYCLE", S3Op.PUT_BUCKET_LIFECYCLE: "LIFECYCLE",
    S3Op.DELETE_BUCKET_LIFECYCLE: "LIFECYCLE", S3Op.GET_BUCKET_LOGGING: "LOGGING_STATUS",
    S3Op.PUT_BUCKET_LOGGING: "LOGGING_STATUS", S3Op.GET_BUCKET_ENCRYPTION: "ENCRYPTION",
    S3Op.PUT_BUCKET_ENCRYPTION: "ENCRYPTION", S3Op.DELETE_BUCKET_ENCRYPTION: "ENCRYPTION",
    S3Op.GET_OBJECT_LOCK_CONFIG: "OBJECT_LOCK_CONFIGURATION",
    S3Op.PUT_OBJECT_LOCK_CONFIG: "OBJECT_LOCK_CONFIGURATION",
    S3Op.GET_OBJECT_RETENTION: "RETENTION", S3Op.PUT_OBJECT_RETENTION: "RETENTION",
    S3Op.GET_OBJECT_LEGAL_HOLD: "LEGAL_HOLD", S3Op.PUT_OBJECT_LEGAL_HOLD: "LEGAL_HOLD",
    S3Op.GET_BUCKET_REQUEST_PAYMENT: "REQUEST_PAYMENT",
    S3Op.DELETE_OBJECTS: "MULTI_OBJECT_DELETE", S3Op.PUT_OBJECT: "OBJECT",
    S3Op.COPY_OBJECT: "OBJECT", S3Op.GET_OBJECT: "OBJECT", S3Op.HEAD_OBJECT: "OBJECT",
    S3Op.DELETE_OBJECT: "OBJECT", S3Op.POST_OBJECT: "OBJECT",
    S3Op.GET_OBJECT_ATTRIBUTES: "OBJECT_ATTRIBUTES", S3Op.GET_OBJECT_TORRENT: "TORRENT",
    S3Op.CREATE_MULTIPART_UPLOAD: "UPLOADS", S3Op.UPLOAD_PART: "PART",
    S3Op.UPLOAD_PART_COPY: "PART", S3Op.COMPLETE_MULTIPART_UPLOAD: "UPLOAD",
    S3Op.ABORT_MULTIPART_UPLOAD: "UPLOAD", S3Op.LIST_PARTS: "UPLOAD",
    S3Op.OPTIONS: "PREFLIGHT", S3Op.GET_BUCKET_ACCELERATE: "ACCELERATE",
    S3Op.GET_BUCKET_NOTIFICATION: "NOTIFICATION", S3Op.PUT_BUCKET_NOTIFICATION: "NOTIFICATION",
    S3Op.GET_BUCKET_REPLICATION: "REPLICATION", S3Op.DELETE_BUCKET_REPLICATION: "REPLICATION",
    S3Op.GET_BUCKET_WEBSITE: "WEBSITE", S3Op.DELETE_BUCKET_WEBSITE: "WEBSITE",
}  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One request on `bucket`, every field but the bucket owner's already formatted."""

    bucket: str
    received: float  # Unix seconds
    fields: str  # from [time] to the end of the record


def operation(op: S3Op, method: str) -> str:
    """REST.<METHOD>.<RESOURCE>: REST.PUT.OBJECT, REST.GET.BUCKET, REST.COPY.OBJECT..."""
    if op in (S3Op.COPY_OBJECT, S3Op.UPLOAD_PART_COPY):
        method = "COPY"
    return f"REST.{method.upper()}.{_RESOURCES.get(op, 'UNKNOWN')}"


def log_time(ts: float) -> str:
    """[06/Feb/2019:00:00:38 +0000], in UTC and English whatever the locale."""
    t = time.gmtime(ts)
    return (f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000]")


def quoted(text: str | None) -> str:
    if not text:
        return '"-"'
    text = _CONTROL.sub("", text).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def token(text: str | int | None) -> str:
    """A bare field: "-" when empty; spaces and control characters cannot split it."""
    if text is None or text == "":
        return "-"
    return _CONTROL.sub("", str(text)).replace(" ", "%20")


def request_uri(method: str, raw_path: str, version: tuple[int, int]) -> str:
    """"METHOD /path?query HTTP/1.1" with a presigned URL's secrets REDACTED."""
    path, sep, query = raw_path.partition("?")
    if sep:
        params = []
        for param in query.split("&"):
            name, eq, _ = param.partition("=")
            params.append(f"{name}=REDACTED" if eq and name.lower() in _SECRET_PARAMS
                          else param)
        path = path + "?" + "&".join(params)
    return quoted(f"{method} {path} HTTP/{version[0]}.{version[1]}")


def entry_of(request: web.Request, response: web.StreamResponse | None, status: int,
             elapsed_s: float) -> Entry:
    """The record of a finished S3 request, but for its bucket owner."""
    op = _op(request.get(S3_OP, ""))
    key = request.get(S3_KEY, "")
    scheme = request.get(AUTH_SCHEME, "anonymous")
    answer: Mapping[str, str] = response.headers if response is not None else {}
    cipher, tls_version = _tls(request)
    received = time.time() - elapsed_s
    fields = [
        log_time(received), token(request.remote),
        token(request.get(REQUESTER)), token(request.get(REQUEST_ID)),
        operation(op, request.method), token(quote(key, safe="/") if key else ""),
        request_uri(request.method, request.raw_path, request.version), str(status),
        token(request.get(ERROR_CODE)), token(body_bytes_sent(request, response) or None),
        token(_object_size(op, request, answer, status)), str(round(elapsed_s * 1000)),
        token(_turn_around_ms(request)), quoted(request.headers.get("Referer")),
        quoted(request.headers.get("User-Agent")),
        token(request.query.get("versionId") if key else None), token(answer.get("x-amz-id-2")),
        _SIGNATURE_VERSIONS.get(scheme, "-"), cipher, _AUTH_TYPES.get(scheme, "-"),
        token(request.headers.get("Host")), tls_version, "-",
        "Yes" if request.get(ACL_REQUIRED) else "-",
    ]  # fmt: skip
    return Entry(request.get(S3_BUCKET, ""), received, " ".join(fields))


def record(owner: str, entry: Entry) -> str:
    return f"{token(owner)} {token(entry.bucket)} {entry.fields}\n"


def object_key(prefix: str, *, partitioned: bool, owner: str, region: str, bucket: str,
               when: float, unique: str) -> str:
    """The key of a delivered log object, AWS's two formats:
    SimplePrefix      [prefix]YYYY-mm-DD-HH-MM-SS-Unique
    PartitionedPrefix [prefix][owner]/[region]/[bucket]/YYYY/mm/DD/YYYY-mm-DD-HH-MM-SS-Unique
    `when` is the delivery time, or for EventTime partitions midnight of the events' day."""
    t = time.gmtime(when)
    stamp = (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}-"
             f"{t.tm_hour:02d}-{t.tm_min:02d}-{t.tm_sec:02d}-{unique}")
    if not partitioned:
        return prefix + stamp
    return (f"{prefix}{owner}/{region}/{bucket}/"
            f"{t.tm_year:04d}/{t.tm_mon:02d}/{t.tm_mday:02d}/{stamp}")


def _op(value: str) -> S3Op:
    try:
        return S3Op(value)
    except ValueError:
        return S3Op.UNKNOWN


def _object_size(op: S3Op, request: web.Request, answer: Mapping[str, str],
                 status: int) -> str | None:
    if status >= 300:
        return None
    if op in _SIZED_WRITES:
        return (request.headers.get("x-amz-decoded-content-length")
                or request.headers.get("Content-Length"))
    if op in _SIZED_READS:
        content_range = answer.get("Content-Range", "")
        if "/" in content_range:
            return content_range.rsplit("/", 1)[1]
        return answer.get("Content-Length")
    return None


def _turn_around_ms(request: web.Request) -> int | None:
    arrived, prepared = request.get(ARRIVED), request.get(PREPARED)
    if arrived is None or prepared is None or request.body_exists:
        return None
    return round((prepared - arrived) * 1000)


def _tls(request: web.Request) -> tuple[str, str]:
    """(cipher suite, TLS version) of an HTTPS request; ("-", "-") for plain HTTP."""
    ssl_object: Any = request.transport.get_extra_info("ssl_object") if (
        request.transport is not None) else None
    if ssl_object is None:
        return "-", "-"
    cipher = ssl_object.cipher()
    version = ssl_object.version() or ""
    return token(cipher[0] if cipher else None), token(version.replace("TLSv", "TLSV"))
