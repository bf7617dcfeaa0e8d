"""Swift TempURL: an object URL that works without a token until it expires,
signed with a key the account (or the container) keeps in its metadata.

The signature is HMAC(key, "[ip=<range>\\n]<METHOD>\\n<expires>\\n<path>") with
SHA-1, SHA-256 or SHA-512, given in hex or as "<digest>:<base64>"; <path> is
"/v1/<account>/<container>/<object>" (decoded), or "prefix:/v1/<account>/
<container>/<prefix>" with temp_url_prefix. Keys are X-Account-Meta-Temp-URL-Key
(-2) and X-Container-Meta-Temp-URL-Key(-2).

Rules (as Swift's tempurl middleware answers):
- A query with temp_url_sig or temp_url_expires is a TempURL request: anything
  wrong (a missing half, expired, a bad or unknown digest, not an object of
  GET/HEAD/PUT/POST/DELETE, outside temp_url_ip_range, no key, no matching
  signature) is 401 "Temp URL invalid". Signatures are compared in constant time.
- HEAD accepts a URL signed for HEAD, GET, PUT or POST.
- An account key reaches the account's containers; a container key only that
  container (segments and copy sources elsewhere are refused).
- The request sees only the TempURL query parameters (no multipart-manifest=...),
  loses X-Timestamp and X-Open-Expired, and may not set X-Object-Manifest or
  X-Symlink-Target (400).
- Answers lose X-Object-Meta-* except X-Object-Meta-Public-*; a successful
  GET/HEAD gets Content-Disposition (inline / filename= / the object's own / an
  attachment named after the object) and Expires.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import ipaddress
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from kurastore.gateway.objects.errors import BucketNotFound, UserNotFound
from kurastore.gateway.swift import errors as swe
from kurastore.gateway.swift import headers as hdr
from kurastore.gateway.swift.context import swift_settings
from kurastore.gateway.swift.routes import SwiftRoute, user_id_of

if TYPE_CHECKING:
    from kurastore.gateway.objects.service import ObjectService

DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
_HEX_LENGTHS = {40: "sha1", 64: "sha256", 128: "sha512"}
METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")
KEY_NAMES = ("temp-url-key", "temp-url-key-2")  # metadata names, without X-*-Meta-
PARAMS = ("temp_url_sig", "temp_url_expires", "temp_url_prefix", "temp_url_ip_range",
          "filename", "inline")
INCOMING_REMOVE = ("x-timestamp", "x-open-expired")
DISALLOWED = ("X-Object-Manifest", "X-Symlink-Target")
OUTGOING_REMOVE = "x-object-meta-"
OUTGOING_ALLOW = "x-object-meta-public-"
ISO8601 = "%Y-%m-%dT%H:%M:%SZ"
INVALID = "401 Unauthorized: Temp URL invalid\n"
# Set on a page the gateway composes (staticweb's listings): a TempURL shows it inline.
INLINE = web.ResponseKey("tempurl_inline", bool)


def capabilities() -> dict[str, object]:
    """The /info entry clients read before signing."""
    return {
        "methods": list(METHODS),
        "allowed_digests": sorted(DIGESTS),
        "incoming_remove_headers": list(INCOMING_REMOVE),
        "incoming_allow_headers": [],
        "outgoing_remove_headers": [OUTGOING_REMOVE + "*"],
        "outgoing_allow_headers": [OUTGOING_ALLOW + "*"],
    }


def is_tempurl(query: MultiDictProxy[str]) -> bool:
    return "temp_url_sig" in query or "temp_url_expires" in query


@dataclass(frozen=True)
class Grant:
    """What a valid TempURL lets the request do."""

    expires: int
    container: str | None  # a container key's container; None: the whole account
    query: MultiDictProxy[str]  # what the handlers see
    headers: CIMultiDictProxy[str]


def _invalid() -> swe.SwiftError:
    return swe.Unauthorized(INVALID)


def _expiry(raw: str, now: float) -> int:
    """Unix seconds, from seconds or ISO 8601; 0 when unreadable or past."""
    try:
        when = int(raw)
    except ValueError:
        try:
            when = calendar.timegm(time.strptime(raw, ISO8601))
        except ValueError:
            return 0
    return when if when > now else 0


def _digest(sig: str) -> tuple[str, str]:
    """(algorithm, hex signature); ValueError when malformed."""
    if ":" in sig:
        algo, value = sig.split(":", 1)
        if ("-" in value or "_" in value) and not ("+" in value or "/" in value):
            value = value.replace("-", "+").replace("_", "/")  # url-safe base64
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        return algo, raw.hex()
    binascii.unhexlify(sig)
    algo = _HEX_LENGTHS.get(len(sig))
    if algo is None:
        raise ValueError("bad digest length")
    return algo, sig.lower()


async def _keys(service: ObjectService, owner: str, container: str
                ) -> list[tuple[str, str | None]]:
    """(key, scope) pairs: the account's keys (scope None), then the container's."""
    try:
        account_meta = (await service.get_account_settings(owner)).get("meta") or {}
        record = await service.get_bucket(container)
    except (BucketNotFound, UserNotFound):
        return []
    if record.owner != owner:
        return []
    container_meta = swift_settings(record).get("meta") or {}
    return ([(str(account_meta[n]), None) for n in KEY_NAMES if account_meta.get(n)]
            + [(str(container_meta[n]), container) for n in KEY_NAMES if container_meta.get(n)])


async def check(request: web.Request, route: SwiftRoute, service: ObjectService,
                now: float | None = None) -> Grant:
    """The grant of a TempURL request; 401 (or 400 for a disallowed header)."""
    query = request.query
    sig, raw_expires = query.get("temp_url_sig"), query.get("temp_url_expires")
    if not sig or not raw_expires:
        raise _invalid()
    expires = _expiry(raw_expires, time.time() if now is None else now)
    try:
        algo, sig = _digest(sig)
    except ValueError:
        raise _invalid() from None
    method = request.method.upper()
    owner = user_id_of(route.account)
    prefix = query.get("temp_url_prefix")
    # The container root too for a whole-container prefix: staticweb's listings.
    root = method in ("GET", "HEAD") and prefix == "" and not route.obj
    if (not expires or algo not in DIGESTS or method not in METHODS or not owner
            or not route.container or not (route.obj.strip("/") or root)):
        raise _invalid()
    ip_range = query.get("temp_url_ip_range")
    if ip_range and not _address_in(request.remote, ip_range):
        raise _invalid()
    if prefix is not None and not route.obj.startswith(prefix):
        raise _invalid()
    base = f"/v1/{route.account}/{route.container}/"
    path = f"prefix:{base}{prefix}" if prefix is not None else base + route.obj
    signed = ("HEAD", "GET", "POST", "PUT") if method == "HEAD" else (method,)
    matched, scope = False, None
    for key, key_scope in await _keys(service, owner, route.container):
        for m in signed:
            body = (f"ip={ip_range}\n" if ip_range else "") + f"{m}\n{expires}\n{path}"
            mac = hmac.new(key.encode(), body.encode(), DIGESTS[algo]).hexdigest()
            if hmac.compare_digest(mac, sig) and not matched:
                matched, scope = True, key_scope
    if not matched:
        raise _invalid()
    if method not in ("GET", "HEAD"):
        for name in DISALLOWED:
            if name in request.headers:
                raise swe.BadRequest(f"The header {name!r} is not allowed in this tempurl")
    headers = CIMultiDict((k, v) for k, v in request.headers.items()
                          if k.lower() not in INCOMING_REMOVE)
    kept = MultiDict((k, v) for k, v in query.items() if k in PARAMS)
    kept["temp_url_sig"] = sig  # in hex, as Swift passes it on (staticweb links carry it)
    return Grant(expires, scope, MultiDictProxy(kept), CIMultiDictProxy(headers))


def _address_in(remote: str | None, ip_range: str) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote) in ipaddress.ip_network(
            ip_range)
    except ValueError:
        return False


def filter_answer(grant: Grant, request: web.Request, obj: str,
                  response: web.StreamResponse) -> None:
    """The answer's headers as a TempURL gives them (run as the answer is sent)."""
    headers = response.headers
    for name in [n for n in headers if n.lower().startswith(OUTGOING_REMOVE)
                 and not n.lower().startswith(OUTGOING_ALLOW)]:
        del headers[name]
    if request.method not in ("GET", "HEAD") or not 200 <= response.status < 300:
        return
    filename = grant.query.get("filename")
    inline = "inline" in grant.query or response.get(INLINE, False)
    if inline:
        disposition = _disposition("inline", filename) if filename else "inline"
    elif filename:
        disposition = _disposition("attachment", filename)
    else:
        disposition = headers.get("Content-Disposition") or _disposition(
            "attachment", obj.rstrip("/").rsplit("/", 1)[-1])
    headers["Content-Disposition"] = disposition.replace("\n", "%0A")
    headers["Expires"] = hdr.http_date(grant.expires)


def _disposition(kind: str, filename: str) -> str:
    """RFC 6266: a quoted name for old clients, the UTF-8 one (RFC 5987) for the rest."""
    return f"{kind}; filename=\"{quote(filename, safe=' /')}\"; filename*=UTF-8''{quote(filename)}"
