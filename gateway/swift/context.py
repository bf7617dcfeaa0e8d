"""What a Swift handler receives: one value per request, built by the front end
after the token was checked and the account found to be the token's own.

Handlers reach the request body only through `body()` (streamed, with the
object size limit enforced on the way) or `read_small()` (manifests), and
other containers only through `own_bucket()`, which refuses (403) a container
that belongs to another account.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import CIMultiDictProxy, MultiDictProxy

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

    @property
    def query(self) -> MultiDictProxy[str]:
        return self.request.query

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self.request.headers

    @property
    def account(self) -> str:
        return self.route.account

    @property
    def container(self) -> str:
        return self.route.container

    @property
    def obj(self) -> str:
        return self.route.obj

    async def own_bucket(self, name: str) -> BucketRecord:
        """The container `name` of this account: NotFound, or Forbidden when the
        name is taken by another account."""
        # POST and PUT may rewrite the container's metadata: start from the stored one.
        fresh = self.request.method in ("POST", "PUT") and not self.obj
        record = await self.service.get_bucket(name, fresh=fresh)
        if record.owner != self.user_id:
            raise swe.Forbidden()
        if self.public_read and not public_readable(record, listing=False):
            raise swe.Unauthorized()
        return record

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


Handler = Callable[[SwiftRequest], Awaitable[web.StreamResponse]]
