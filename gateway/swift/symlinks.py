"""Swift symlinks (the `symlink` middleware's behaviour): a zero-byte object
that names another object ("container/object", optionally in another account).

A link is a zero-byte object whose stored headers (not user metadata) carry
its target: x-object-sysmeta-symlink-target ("container/object",
percent-encoded), -target-account (only when the PUT named one: without it the
target is in the link's own account, wherever the link is copied), and for a
static link (X-Symlink-Target-Etag) the target's etag and size, checked at PUT.
Stored headers hold them because S3 clients cannot set those: an S3 user
cannot forge a link into a container they may not read.

Rules (as Swift answers):
- PUT: zero-byte body (400), target "<container>/<object>" (412), not itself
  (400); a static link's target must exist (409) with that etag (409); its
  Content-Type defaults to the target's, a dynamic link's to
  application/symlink.
- GET/HEAD follow the link (the caller needs read access to every container on
  the way) and answer the target with Content-Location; errors on the way carry
  it too. More than SYMLOOP_MAX links in a row is a 409. ?symlink=get answers
  the link itself with its X-Symlink-Target* headers.
- POST updates the link's own metadata and answers 307 with the target as
  Location; POST with X-Symlink-Target is a 400.
- COPY copies the target, or the link itself under ?symlink=get.
- JSON listings show symlink_path (and a static link's symlink_etag,
  symlink_bytes, and the target SLO's slo_etag).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from aiohttp import web

from kurastore.gateway.objects.errors import BucketNotFound, ObjectNotFound
from kurastore.gateway.swift import errors as swe
from kurastore.gateway.swift import headers as hdr
from kurastore.gateway.swift.context import SwiftRequest
from kurastore.gateway.swift.routes import ACCOUNT_PREFIX, user_id_of
from kurastore.metadata import BucketRecord, ObjectVersion

if TYPE_CHECKING:
    from kurastore.gateway.objects.api import PutOptions
    from kurastore.gateway.objects.service import ObjectService

SYMLOOP_MAX = 2  # links followed in a row before a 409 (Swift's default)
MD5_OF_EMPTY = "d41d8cd98f00b204e9800998ecf8427e"  # every link's own etag
TARGET = "x-object-sysmeta-symlink-target"
TARGET_ACCOUNT = "x-object-sysmeta-symlink-target-account"
TARGET_ETAG = "x-object-sysmeta-symlink-target-etag"
TARGET_BYTES = "x-object-sysmeta-symlink-target-bytes"
TARGET_SLO_ETAG = "x-object-sysmeta-symlink-target-slo-etag"
STORED = (TARGET, TARGET_ACCOUNT, TARGET_ETAG, TARGET_BYTES, TARGET_SLO_ETAG)
# What ?symlink=get answers for each stored header.
SHOWN = {TARGET: "X-Symlink-Target", TARGET_ACCOUNT: "X-Symlink-Target-Account",
         TARGET_ETAG: "X-Symlink-Target-Etag", TARGET_BYTES: "X-Symlink-Target-Bytes"}
DEFAULT_TYPE = "application/symlink"
TARGET_FORM = "X-Symlink-Target header must be of the form <container name>/<object name>"
LOOP = f"Too many levels of symbolic links, maximum allowed is {SYMLOOP_MAX}"


def capabilities() -> dict[str, Any]:
    return {"symloop_max": SYMLOOP_MAX, "static_links": True}


def is_link(version: ObjectVersion) -> bool:
    return TARGET in version.headers


def stored(version: ObjectVersion) -> dict[str, str]:
    """The link headers of a version (what a POST must keep)."""
    return {k: v for k, v in version.headers.items() if k in STORED}


@dataclass(frozen=True)
class _Hop:
    """One link: where it points (percent-encoded, as Content-Location shows it)."""

    account: str  # "AUTH_..." percent-encoded
    target: str  # "container/object" percent-encoded
    etag: str  # a static link's target etag, else ""

    @property
    def location(self) -> str:
        return f"/v1/{self.account}/{self.target}"


def _hop(version: ObjectVersion, account: str) -> _Hop:
    """The link in `version`, whose own account (unencoded) is `account`."""
    h = version.headers
    return _Hop(h.get(TARGET_ACCOUNT) or quote(account), h[TARGET], h.get(TARGET_ETAG, ""))


def _plain(cls: type[swe.SwiftError], text: str, location: str | None = None
           ) -> swe.SwiftError:
    return cls(text, headers={"Content-Location": location} if location else None)


# --- GET and HEAD --------------------------------------------------------------------------


async def served(sw: SwiftRequest, version: ObjectVersion
                 ) -> tuple[ObjectVersion, dict[str, str]]:
    """What GET/HEAD of the request's object answer: (the version, headers to
    add). ?symlink=get: the link itself and its X-Symlink-Target* headers; else
    the object at the end of the links, with Content-Location."""
    if sw.query.get("symlink") == "get":
        return version, {SHOWN[k]: v for k, v in version.headers.items() if k in SHOWN}
    return await follow(sw, version, sw.account)


async def follow(sw: SwiftRequest, version: ObjectVersion, account: str
                 ) -> tuple[ObjectVersion, dict[str, str]]:
    """The object `version` (in `account`) leads to, and its Content-Location
    ({} when `version` is no link). A static link pins the etag of what it
    names (409 on a mismatch); errors on the way carry Content-Location."""
    location, want, hops = "", "", 0
    while is_link(version):
        hop = _hop(version, account)
        found = hop.etag or version.etag
        if want and want != found:
            raise _plain(swe.Conflict, "X-Symlink-Target-Etag headers do not match", location)
        if hops >= SYMLOOP_MAX:
            raise _plain(swe.Conflict, LOOP)
        hops += 1
        location, want = hop.location, hop.etag
        account, version = await _fetch(sw, hop)
    if want and want != version.etag:
        raise _plain(swe.Conflict, f"Object Etag {version.etag!r} does not match "
                     f"X-Symlink-Target-Etag header {want!r}", location)
    return version, ({"Content-Location": location} if location else {})


async def _fetch(sw: SwiftRequest, hop: _Hop) -> tuple[str, ObjectVersion]:
    """(account, version) of a link's target, read as this caller may read it."""
    account = unquote(hop.account)
    container, _, obj = unquote(hop.target).partition("/")
    try:
        user = user_id_of(account)
        if not user:
            raise swe.NotFound()
        await sw.own_bucket(container, write=False, account_user=user)
        version = await sw.service.head_object(container, obj)
        if hdr.is_expired(version):
            raise swe.NotFound()
    except Exception as exc:
        err = swe.to_swift_error(exc)
        if err.status >= 500:
            raise
        err.headers = {**err.headers, "Content-Location": hop.location}
        if err is exc:
            raise
        raise err from exc
    return account, version


# --- PUT -----------------------------------------------------------------------------------


async def put_options(sw: SwiftRequest, opts: PutOptions, length: int | None) -> PutOptions:
    """A PUT with X-Symlink-Target: checked, its link headers added to `opts`;
    other PUTs: `opts` as they are."""
    h = sw.headers
    if "X-Symlink-Target" not in h:
        return opts
    if await _has_body(sw, length):
        raise swe.BadRequest("Symlink requests require a zero byte body")
    container, obj = _parse_target(h["X-Symlink-Target"])
    headers = {TARGET: quote(f"{container}/{obj}")}
    account = sw.account
    if "X-Symlink-Target-Account" in h:
        account = _parse_account(h["X-Symlink-Target-Account"])
        headers[TARGET_ACCOUNT] = quote(account)
    if (account, container, obj) == (sw.account, sw.container, sw.obj):
        raise swe.BadRequest("Symlink cannot target itself")
    content_type = opts.content_type if h.get("Content-Type") else DEFAULT_TYPE
    etag = h.get("X-Symlink-Target-Etag", "")
    if etag.startswith('"') and etag.endswith('"') and etag != '"':
        etag = etag[1:-1]
    if etag:
        if any(c in etag for c in ';"\\'):  # they would break the listing's hash field
            raise swe.BadRequest("Bad X-Symlink-Target-Etag format")
        target = await _check_static(sw, _Hop(quote(account), headers[TARGET], etag))
        headers.update(_static_headers(etag, target))
        content_type = opts.content_type if h.get("Content-Type") else target.content_type
    return replace(opts, headers={**opts.headers, **headers}, content_type=content_type)


async def _has_body(sw: SwiftRequest, length: int | None) -> bool:
    if length is not None:
        return length > 0
    try:  # chunked: read it, it may hold no byte at all
        await sw.read_small(0)
    except swe.RequestEntityTooLarge:
        return True
    return False


def _parse_target(value: str) -> tuple[str, str]:
    raw = unquote(value)
    if raw.startswith("/"):
        raise _plain(swe.PreconditionFailed, TARGET_FORM)
    container, _, obj = raw.partition("/")
    if not container or not obj:
        raise _plain(swe.PreconditionFailed, TARGET_FORM)
    return container, obj


def _parse_account(value: str) -> str:
    account = unquote(value)
    if not account:
        raise _plain(swe.PreconditionFailed, "Account name cannot be empty")
    if "/" in account:
        raise _plain(swe.PreconditionFailed, "Account name cannot contain slashes")
    return account


async def _check_static(sw: SwiftRequest, hop: _Hop) -> ObjectVersion:
    """What a static link names: it must exist with the given etag. Static
    links on the way are followed (each pins the next), a dynamic one is not:
    its own (empty) etag is what must match."""
    want, hops, location = hop.etag, 0, hop.location
    account, version = await _fetch_existing(sw, hop)
    while is_link(version) and TARGET_ETAG in version.headers:
        nxt = _hop(version, account)
        if want != nxt.etag:
            raise _plain(swe.Conflict, "X-Symlink-Target-Etag headers do not match", location)
        if hops >= SYMLOOP_MAX:
            raise _plain(swe.Conflict, LOOP)
        hops += 1
        want, location = nxt.etag, nxt.location
        account, version = await _fetch_existing(sw, nxt)
    if want != version.etag:
        raise _plain(swe.Conflict, f"Object Etag {version.etag!r} does not match "
                     f"X-Symlink-Target-Etag header {want!r}", location)
    return version


async def _fetch_existing(sw: SwiftRequest, hop: _Hop) -> tuple[str, ObjectVersion]:
    try:
        return await _fetch(sw, hop)
    except swe.NotFound:
        raise _plain(swe.Conflict, "X-Symlink-Target does not exist", hop.location) from None


def _static_headers(etag: str, target: ObjectVersion) -> dict[str, str]:
    """What a static link records of its target for listings: its size (an
    SLO's whole size) and an SLO's etag."""
    out = {TARGET_ETAG: etag,
           TARGET_BYTES: target.headers.get(hdr.SLO_SIZE) or str(target.size)}
    if hdr.SLO_ETAG in target.headers:
        out[TARGET_SLO_ETAG] = f'"{target.headers[hdr.SLO_ETAG]}"'
    return out


# --- POST and COPY -------------------------------------------------------------------------


def refuse_retarget(sw: SwiftRequest) -> None:
    """A POST cannot change where a link points (nor make one)."""
    if "X-Symlink-Target" in sw.headers:
        raise swe.BadRequest("A PUT request is required to set a symlink target")


def post_answer(sw: SwiftRequest, version: ObjectVersion) -> web.Response | None:
    """After a POST applied to `version`: a link answers 307 to its target (the
    metadata went to the link, not the target); None for other objects."""
    if not is_link(version):
        return None
    hop = _hop(version, sw.account)
    headers = {"Location": hop.location}
    if hop.etag:
        headers["X-Symlink-Target-Etag"] = hop.etag
    return web.Response(
        status=307, headers=headers, content_type="text/html", charset="UTF-8",
        text="The requested POST was applied to a symlink. POST directly to the target "
             "to apply requested metadata.")


async def copy_source(sw: SwiftRequest, source: ObjectVersion, account_user: str
                      ) -> ObjectVersion:
    """What a copy of `source` (in `account_user`'s account) reads: the object
    its links lead to, or under ?symlink=get the link itself."""
    if sw.query.get("symlink") == "get":
        return source
    target, _ = await follow(sw, source, ACCOUNT_PREFIX + account_user)
    return target


async def copied(sw: SwiftRequest, headers: Mapping[str, str], account_user: str,
                 container: str, obj: str) -> dict[str, str]:
    """The stored headers of a copy's destination: a copied link may be given
    X-Symlink-Target-Account, may not name itself, and a static one is checked
    again as the destination account sees it."""
    out = dict(headers)
    if TARGET not in out:
        return out
    account = ACCOUNT_PREFIX + account_user
    if "X-Symlink-Target-Account" in sw.headers:
        out[TARGET_ACCOUNT] = quote(_parse_account(sw.headers["X-Symlink-Target-Account"]))
    hop = _hop_of(out, account)
    if (unquote(hop.account), unquote(hop.target)) == (account, f"{container}/{obj}"):
        raise swe.BadRequest("Symlink cannot target itself")
    if hop.etag:
        out.update(_static_headers(hop.etag, await _check_static(sw, hop)))
    return out


def _hop_of(headers: Mapping[str, str], account: str) -> _Hop:
    return _Hop(headers.get(TARGET_ACCOUNT) or quote(account), headers[TARGET],
                headers.get(TARGET_ETAG, ""))


# --- large objects' segments --------------------------------------------------------------


SegmentCheck = Callable[[str], Awaitable[object]]  # a segment container's read check


async def segment_target(service: ObjectService, check: SegmentCheck | None, bucket: str,
                         key: str) -> ObjectVersion | None:
    """The object a large object's segment leads to when the segment is a
    link; None when it is no link."""
    try:
        version = await service.head_object(bucket, key)
    except ObjectNotFound:
        raise swe.Conflict() from None
    return await segment_version(service, check, version) if is_link(version) else None


async def segment_version(service: ObjectService, check: SegmentCheck | None,
                          version: ObjectVersion) -> ObjectVersion:
    """`version`, or what its links lead to. Segments live in the manifest's
    account, so a link there may only lead within it; a link elsewhere, too
    long a chain or a missing target is a 409, as a changed segment is."""
    hops = 0
    while is_link(version):
        if hops >= SYMLOOP_MAX or check is None:
            raise swe.Conflict()
        hops += 1
        container, _, obj = unquote(version.headers[TARGET]).partition("/")
        named = version.headers.get(TARGET_ACCOUNT)
        try:
            record = await check(container)
            if named and (not isinstance(record, BucketRecord)
                          or user_id_of(unquote(named)) != record.owner):
                raise swe.Conflict()
            version = await service.head_object(container, obj)
        except (ObjectNotFound, BucketNotFound, swe.SwiftError) as exc:
            raise swe.Conflict() from exc
        if hdr.is_expired(version):
            raise swe.Conflict()
    return version


# --- listings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListedLink:
    path: str  # /v1/<account>/<container>/<object>
    etag: str = ""  # a static link's
    bytes: int | None = None
    slo_etag: str = ""


def listed(version: ObjectVersion) -> ListedLink | None:
    """What a JSON listing adds for a link; its account is the one it was
    written in (the container's) unless it names another."""
    if not is_link(version):
        return None
    hop = _hop_of(version.headers, ACCOUNT_PREFIX + version.owner)
    size = version.headers.get(TARGET_BYTES, "")
    return ListedLink(hop.location, hop.etag, int(size) if size.isdigit() else None,
                      version.headers.get(TARGET_SLO_ETAG, ""))
