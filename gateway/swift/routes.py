"""Swift routing: which requests on the shared port are Swift, and which Swift
operation each one is. Pure functions, no server needed.

Telling Swift from S3 without ambiguity (one port serves both):
- `/auth/v1.0`, `/auth/v1`, `/info` and `/healthcheck` are Swift only when the
  request carries no S3 credentials (no Authorization header, no X-Amz-Signature
  or Signature query): an S3 client may own buckets named "auth", "info" or
  "healthcheck", and its requests always carry credentials.
- `/v1/AUTH_*` is Swift unless the request carries S3 credentials and no
  X-Auth-Token: S3 path-style key "AUTH_..." in a bucket named "v1" stays S3
  for a signed request; anything with a Swift token, or anonymous, is Swift.
- Any other path is Swift when the request has a Swift token and no S3
  credentials (no S3 client sends X-Auth-Token), so a Swift client's malformed
  path gets Swift's answer: 412 "Bad URL" outside /v1/<account>, 404 for an
  empty account or container segment, 412 for a name that is not UTF-8 or
  holds a NUL.

Paths are split on the raw (still percent-encoded) path and each part is
decoded once: an encoded slash ("%2F") in a container name stays in the name
(and is refused later), in an object name it is part of the name, as the
client meant it. "/v1/AUTH_x/c/" (empty object name) is the container c.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from kurastore.gateway.s3.auth import has_s3_credentials

AUTH_PATHS = frozenset({"/auth/v1.0", "/auth/v1"})
ACCOUNT_PREFIX = "AUTH_"
V1_PREFIX = "/v1/" + ACCOUNT_PREFIX


class SwiftOp(enum.Enum):
    """Swift operations, valued by the names the access log and metrics show."""

    AUTH = "Auth"
    INFO = "Info"
    HEALTHCHECK = "Healthcheck"
    GET_ACCOUNT = "GetAccount"
    HEAD_ACCOUNT = "HeadAccount"
    POST_ACCOUNT = "PostAccount"
    PUT_CONTAINER = "PutContainer"
    GET_CONTAINER = "GetContainer"
    HEAD_CONTAINER = "HeadContainer"
    POST_CONTAINER = "PostContainer"
    DELETE_CONTAINER = "DeleteContainer"
    PUT_OBJECT = "PutObject"
    COPY_OBJECT = "CopyObject"  # the COPY verb, or PUT with X-Copy-From
    GET_OBJECT = "GetObject"
    HEAD_OBJECT = "HeadObject"
    POST_OBJECT = "PostObject"
    DELETE_OBJECT = "DeleteObject"
    METHOD_NOT_ALLOWED = "MethodNotAllowed"
    INVALID_PATH = "InvalidPath"  # a name that is not UTF-8 or holds a NUL
    BAD_URL = "BadURL"  # no /v1/<account> in the path
    MISSING_SEGMENT = "MissingSegment"  # "/v1//c/o", "/v1/a//o"


@dataclass(frozen=True)
class SwiftRoute:
    op: SwiftOp
    account: str = ""  # "AUTH_<user id>"
    container: str = ""
    obj: str = ""


def is_swift_request(path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    """Does this request belong to the Swift front end? `path` is the raw path
    without the query; `headers` looks names up case-insensitively."""
    has_token = "X-Auth-Token" in headers or "X-Storage-Token" in headers
    if path.startswith(V1_PREFIX):
        return has_token or not has_s3_credentials(headers, query)
    if path in AUTH_PATHS or path in ("/info", "/healthcheck") or has_token:
        return not has_s3_credentials(headers, query)
    return False


_ACCOUNT_OPS = {"GET": SwiftOp.GET_ACCOUNT, "HEAD": SwiftOp.HEAD_ACCOUNT,
                "POST": SwiftOp.POST_ACCOUNT}
_CONTAINER_OPS = {"GET": SwiftOp.GET_CONTAINER, "HEAD": SwiftOp.HEAD_CONTAINER,
                  "POST": SwiftOp.POST_CONTAINER, "PUT": SwiftOp.PUT_CONTAINER,
                  "DELETE": SwiftOp.DELETE_CONTAINER}
_OBJECT_OPS = {"GET": SwiftOp.GET_OBJECT, "HEAD": SwiftOp.HEAD_OBJECT,
               "POST": SwiftOp.POST_OBJECT, "PUT": SwiftOp.PUT_OBJECT,
               "DELETE": SwiftOp.DELETE_OBJECT, "COPY": SwiftOp.COPY_OBJECT}


def classify(method: str, path: str, headers: Mapping[str, str]) -> SwiftRoute:
    """The Swift operation of a request `is_swift_request` accepted."""
    method = method.upper()
    if path in AUTH_PATHS:
        return SwiftRoute(SwiftOp.AUTH if method == "GET" else SwiftOp.METHOD_NOT_ALLOWED)
    if path == "/info":
        return SwiftRoute(SwiftOp.INFO if method in ("GET", "HEAD") else
                          SwiftOp.METHOD_NOT_ALLOWED)
    if path == "/healthcheck":
        return SwiftRoute(SwiftOp.HEALTHCHECK if method in ("GET", "HEAD") else
                          SwiftOp.METHOD_NOT_ALLOWED)
    if path.startswith("//"):
        return SwiftRoute(SwiftOp.MISSING_SEGMENT)  # an empty version segment
    if not path.startswith("/v1/") or path == "/v1/":
        return SwiftRoute(SwiftOp.BAD_URL)
    try:
        account, container, obj = split_path(path)
    except UnicodeDecodeError:
        return SwiftRoute(SwiftOp.INVALID_PATH)
    except ValueError:
        return SwiftRoute(SwiftOp.MISSING_SEGMENT)
    if "\x00" in account + container + obj:
        return SwiftRoute(SwiftOp.INVALID_PATH)
    if obj:
        op = _OBJECT_OPS.get(method, SwiftOp.METHOD_NOT_ALLOWED)
        if op is SwiftOp.PUT_OBJECT and "X-Copy-From" in headers:
            op = SwiftOp.COPY_OBJECT
    elif container:
        op = _CONTAINER_OPS.get(method, SwiftOp.METHOD_NOT_ALLOWED)
    else:
        op = _ACCOUNT_OPS.get(method, SwiftOp.METHOD_NOT_ALLOWED)
    return SwiftRoute(op, account, container, obj)


def split_path(path: str) -> tuple[str, str, str]:
    """(account, container, object) of "/v1/<account>[/<container>[/<object>]]";
    UnicodeDecodeError when it is not percent-encoded UTF-8, ValueError when it is
    not under /v1/ or has an empty account (or container before an object)."""
    if not path.startswith("/v1/"):
        raise ValueError("not a Swift v1 path")
    parts = path[len("/v1/"):].split("/", 2)
    decoded = [unquote(part, errors="strict") for part in parts]
    decoded += [""] * (3 - len(decoded))
    account, container, obj = decoded
    if not account or (obj and not container):
        raise ValueError("empty path segment")
    return account, container, obj


def user_id_of(account: str) -> str:
    """The user id an account name stands for ("" when it is not AUTH_<id>)."""
    return account[len(ACCOUNT_PREFIX):] if account.startswith(ACCOUNT_PREFIX) else ""


def parse_copy_path(value: str) -> tuple[str, str]:
    """(container, object) of an X-Copy-From / Destination value
    ("[/]container/object", percent-encoded). ValueError when malformed."""
    raw = value.strip()
    if raw.startswith("/"):
        raw = raw[1:]
    container, sep, obj = raw.partition("/")
    container, obj = unquote(container, errors="strict"), unquote(obj, errors="strict")
    if not sep or not container or not obj:
        raise ValueError("must be of the form container/object")
    return container, obj
