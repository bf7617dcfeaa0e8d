"""What a Swift handler receives: one value per request, built by the front end
once it knows who asks: the account's own user, another account's user (whom
container ACLs may let in), an anonymous reader of a public container, or a
TempURL.

Handlers reach the request body only through `body()` (streamed, with the
object size limit enforced on the way) or `read_small()` (manifests), and
containers only through `own_bucket()`, which refuses (403) a container that
belongs to another account and checks, for every container a request touches,
that this caller may use it that way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import CIMultiDictProxy, MultiDictProxy

from kurastore.gateway.objects.errors import BucketNotFound
from kurastore.gateway.swift import errors as swe
from kurastore.gateway.swift.headers import MAX_FILE_SIZE
from kurastore.gateway.swift.routes import SwiftRoute
from kurastore.metadata import BucketRecord

if TYPE_CHECKING:  # the service is handed in; only objects/ reaches pods
    from kurastore.gateway.objects.service import ObjectService

SETTINGS_KEY = "swift"  # BucketRecord.settings[SETTINGS_KEY]: container metadata and ACLs


@dataclass
class SwiftRequest:
    request: web.Request
    service: ObjectService
    route: SwiftRoute
    user_id: str
    max_file_size: int = MAX_FILE_SIZE
    # An anonymous read let in by a container's X-Container-Read (.r:*): every
    # container it touches (segments too) must grant it as well.
    public_read: bool = False
    # Who sent the token ("" for an anonymous read) and the names ACL entries may
    # call them by. A caller other than the account's user was let in by the
    # container's X-Container-Read/-Write: every container it touches must grant it.
    caller: str = ""
    caller_names: frozenset[str] = frozenset()
    # A TempURL request (tempurl.py): the query and headers it may use, and the
    # one container a container key confines it to.
    query_view: MultiDictProxy[str] | None = None
    headers_view: CIMultiDictProxy[str] | None = None
    tempurl_container: str | None = None

    @property
    def grantee(self) -> bool:
        """Is the caller another account's user?"""
        return self._stranger(self.user_id)

    def _stranger(self, owner: str) -> bool:
        return bool(self.caller) and self.caller != owner

    @property
    def query(self) -> MultiDictProxy[str]:
        return self.request.query if self.query_view is None else self.query_view

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self.request.headers if self.headers_view is None else self.headers_view

    @property
    def account(self) -> str:
        return self.route.account

    @property
    def container(self) -> str:
        return self.route.container

    @property
    def obj(self) -> str:
        return self.route.obj

    async def own_bucket(self, name: str, *, write: bool | None = None,
                         account_user: str | None = None) -> BucketRecord:
        """The container `name` of this account (or of `account_user`'s, for a
        copy across accounts): NotFound, or Forbidden when the name is taken by
        another account. A caller who is not that account's user needs the
        container's grant: `write` (default: this request writes to `name`
        itself; another container, a segment's or a copy's source, is read)."""
        owner = account_user or self.user_id
        # POST and PUT may rewrite the container's metadata: start from the stored one.
        fresh = self.request.method in ("POST", "PUT") and not self.obj
        stranger = self._stranger(owner)
        try:
            record = await self.service.get_bucket(name, fresh=fresh)
        except BucketNotFound:
            if stranger:  # another account's user learns nothing of what is missing
                raise swe.Forbidden() from None
            raise
        if record.owner != owner:
            raise swe.Forbidden()
        if self.public_read and not public_readable(record, listing=False):
            raise swe.Unauthorized()
        if self.tempurl_container is not None and name != self.tempurl_container:
            raise swe.Unauthorized()  # a container's key opens that container only
        if stranger and not self._granted(record, name, write):
            raise swe.Forbidden()
        return record

    def _granted(self, record: BucketRecord, name: str, write: bool | None) -> bool:
        """A grantee reads objects and listings under the read ACL and writes
        objects under the write ACL; container PUT, POST and DELETE stay the
        owner's."""
        reading = self.request.method in ("GET", "HEAD")
        if name == self.container and not self.obj and not reading:
            return False
        if write is None:
            write = name == self.container and not reading
        if not write and public_readable(record, listing=name == self.container
                                         and not self.obj):
            return True  # what anyone may read, another account's user may too
        return acl_grants(record, "write" if write else "read", self.caller_names)

    def require_length(self) -> int | None:
        """Content-Length (None for chunked transfer encoding); 411 without either,
        413 above the object size limit."""
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length = self.request.content_length
        if length is None and not chunked:
            raise swe.LengthRequired()
        if length is not None and length > self.max_file_size:
            raise swe.RequestEntityTooLarge()
        return length

    async def body(self) -> AsyncIterator[bytes]:
        """The request body, streamed; 413 once it grows past the size limit."""
        if not self.request.body_exists:
            return
        received = 0
        async for chunk in self.request.content.iter_any():
            received += len(chunk)
            if received > self.max_file_size:
                raise swe.RequestEntityTooLarge()
            yield chunk

    async def read_small(self, limit: int) -> bytes:
        """The whole body, refused (413) when larger than `limit`."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.body():
            size += len(chunk)
            if size > limit:
                raise swe.RequestEntityTooLarge()
            chunks.append(chunk)
        return b"".join(chunks)


def swift_settings(record: BucketRecord) -> dict[str, Any]:
    """The Swift part of a bucket's settings (container metadata, ACLs, flags)."""
    return dict(record.settings.get(SETTINGS_KEY) or {})


def public_readable(record: BucketRecord, *, listing: bool) -> bool:
    """Does the container's read ACL let anyone in (".r:*"; listings also need
    ".rlistings")? Referrer-restricted grants (.r:<host>) are not honoured: a
    Referer header proves nothing."""
    items = {item.strip() for item in str(swift_settings(record).get("read", "")).split(",")}
    return ".r:*" in items and (not listing or ".rlistings" in items)


def acl_grants(record: BucketRecord, field: str, names: frozenset[str]) -> bool:
    """Does the container's `field` ACL ("read" or "write") list one of `names`?
    An entry is an account ("AUTH_<id>"), a user name, or "<account>:<user>"
    (the account label before ":" is not checked, as at login)."""
    for entry in str(swift_settings(record).get(field, "")).split(","):
        entry = entry.strip()
        if entry in names or (":" in entry and entry.split(":", 1)[1] in names):
            return True
    return False


def container_modified(record: BucketRecord) -> float:
    """When the container was last PUT or POSTed to (Swift's put timestamp): its
    Last-Modified and its account listing's last_modified."""
    return float(swift_settings(record).get("modified") or record.created)


def with_swift_settings(record: BucketRecord, swift: dict[str, Any]) -> dict[str, Any]:
    """The bucket's whole settings with its Swift part replaced (the store
    replaces settings as a whole; other protocols' settings are kept)."""
    return {**record.settings, SETTINGS_KEY: swift}


def empty_response(status: int, headers: dict[str, str] | None = None) -> web.Response:
    """Swift's bodiless answers still name a content type, as Swift's do."""
    resp = web.Response(status=status, headers=headers)
    if status not in (204, 304):
        resp.content_type = "text/html"
        resp.charset = "UTF-8"
    return resp


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    """A body the gateway writes itself (a manifest, a delete marker), as the
    object service takes bodies: an async iterable."""
    yield data


def deleted() -> web.Response:
    """An object DELETE's 204, typed text/html as Swift's object server types it."""
    resp = empty_response(204)
    resp.headers["Content-Type"] = "text/html; charset=UTF-8"
    return resp


Handler = Callable[[SwiftRequest], Awaitable[web.StreamResponse]]
