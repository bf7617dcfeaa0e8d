"""Swift static web: a container served as a web site (Swift's staticweb
middleware), for GET and HEAD of a container or an object sent without a
token, with a token and `X-Web-Mode: true`, or through a TempURL.

The container's metadata decides (a container with neither Web-Index nor
Web-Listings answers as without static web; with X-Web-Mode its root is a 404):
- X-Container-Meta-Web-Index: "<dir>/" serves "<dir>/<index>"; "<dir>" without
  the slash redirects (301) to "<dir>/" when the index or any object under it
  exists. The container's own path redirects the same way.
- X-Container-Meta-Web-Listings (true): "<dir>/" without an index answers an
  HTML listing of that pseudo-directory (Web-Listings-CSS: a stylesheet link,
  relative to the container unless absolute; Web-Listings-Label: the title
  instead of the path); without it, a 404 page says listings are disabled.
- X-Container-Meta-Web-Error: an error of the container or of a listing, and a
  404 for a path, serve the object "<status><suffix>" with that status.
- X-Container-Meta-Web-Directory-Type (application/directory): objects of that
  type and at most 1 byte are directory markers, not pages.

Container-level answers (the root, listings) are allowed as a listing is: an
anonymous caller needs ".r:*,.rlistings". A TempURL with temp_url_prefix=""
reaches the container root, but only its generated listings (any other success
there is "Temp URL invalid"); listing links carry the prefix TempURL's query.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import quote, unquote

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from kurastore.gateway.objects.errors import BucketNotFound
from kurastore.gateway.swift import errors as swe
from kurastore.gateway.swift import handlers_object as objects
from kurastore.gateway.swift import listing, tempurl
from kurastore.gateway.swift import web_pages as pages
from kurastore.gateway.swift.context import (
    Handler,
    SwiftRequest,
    public_readable,
    swift_settings,
)
from kurastore.gateway.swift.routes import SwiftOp, SwiftRoute
from kurastore.metadata import BucketRecord

TRUE_VALUES = ("true", "1", "yes", "on", "t", "y")
DIRECTORY_TYPE = "application/directory"
READS = {"GET": (SwiftOp.GET_CONTAINER, SwiftOp.GET_OBJECT),
         "HEAD": (SwiftOp.HEAD_CONTAINER, SwiftOp.HEAD_OBJECT)}
MOVED = ("<html><h1>Moved Permanently</h1><p>The resource has moved permanently.</p>"
         "</html>")


def _true(value: str) -> bool:
    return value.strip().lower() in TRUE_VALUES


def _token(request: web.Request) -> str:
    return request.headers.get("X-Auth-Token") or request.headers.get("X-Storage-Token") or ""


def wanted(request: web.Request, route: SwiftRoute) -> bool:
    """Does static web take this (non-TempURL) request? GET/HEAD of a container
    or object, without a token or with X-Web-Mode: true."""
    return takes(request, route) and (
        not _token(request) or _true(request.headers.get("X-Web-Mode", "")))


def takes(request: web.Request, route: SwiftRoute) -> bool:
    """Is this a read static web may answer (a TempURL one too)?"""
    return route.op in READS.get(request.method, ())


def anonymous(request: web.Request) -> bool:
    """Sent without a token: every container it reaches must be public (.r:*)."""
    return not _token(request)


@dataclasses.dataclass(frozen=True)
class Site:
    """A container's static web settings (its X-Container-Meta-Web-* values)."""

    index: str = ""
    error: str = ""
    listings: str = ""
    css: str = ""
    label: str = ""
    directory_type: str = ""

    @property
    def active(self) -> bool:
        # Any value turns static web on; only a true one shows listings (as Swift).
        return bool(self.index or self.listings)


def site_of(record: BucketRecord | None) -> Site:
    meta = (swift_settings(record).get("meta") or {}) if record is not None else {}

    def value(name: str) -> str:
        return str(meta.get(name, "")).strip()

    return Site(index=value("web-index"), error=value("web-error"),
                listings=value("web-listings"), css=value("web-listings-css"),
                label=value("web-listings-label"),
                directory_type=value("web-directory-type"))


async def serve(sw: SwiftRequest, plain: Handler) -> web.StreamResponse:
    """The answer to a read static web takes; `plain` answers it without static web."""
    record = await _record(sw)
    if sw.public_read and (record is None or not public_readable(record, listing=False)):
        raise swe.Unauthorized()  # as without static web: nothing of a private container
    visit = _Visit(sw, plain, site_of(record))
    return await (visit.object() if sw.obj else visit.container())


async def _record(sw: SwiftRequest) -> BucketRecord | None:
    """The container, when it is this account's (settings are read unchecked, as
    Swift reads container info; every answer still passes own_bucket)."""
    try:
        record = await sw.service.get_bucket(sw.container)
    except BucketNotFound:
        return None
    return record if record.owner == sw.user_id else None


def _known(exc: BaseException) -> bool:
    """An error with a Swift answer of its own (not a bug, which must propagate)."""
    return isinstance(exc, swe.SwiftError) or any(
        cls in swe.DOMAIN_TO_SWIFT for cls in type(exc).__mro__)


def _not_found(exc: BaseException) -> bool:
    return _known(exc) and swe.to_swift_error(exc).status == 404


_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
_NO_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())


class _Visit:
    """One request's walk through the site: the object, the index, the listing,
    the error page, as Swift tries them."""

    def __init__(self, sw: SwiftRequest, plain: Handler, site: Site) -> None:
        self.sw = sw
        self.plain = plain
        self.site = site
        self.path = unquote(sw.request.raw_path.split("?", 1)[0])
        self.slash = self.path.endswith("/")
        # A prefix TempURL at the container root may only see generated listings.
        self.root_tempurl = not sw.obj and tempurl.is_tempurl(sw.query)

    # --- the two entry points ---------------------------------------------------------------

    async def container(self) -> web.StreamResponse:
        try:
            await self._listable()
        except Exception as exc:
            if not _known(exc):
                raise
            return await self._error(exc)
        if not self.site.active:
            if _true(self.sw.request.headers.get("X-Web-Mode", "")):
                raise swe.NotFound()
            if self.root_tempurl:
                raise swe.Unauthorized(tempurl.INVALID)
            return await self.plain(self.sw)
        if not self.slash:
            return self._redirect()
        if not self.site.index:
            return await self._listing("")
        index = self._at(self.site.index, self.sw)
        try:
            found = await objects.head_object(index)
        except Exception as exc:
            if _not_found(exc):
                return await self._listing("")
            if not _known(exc):
                raise
            return await self._error(exc)
        return await self._object(index, found)

    async def object(self) -> web.StreamResponse:
        if not self.site.active:  # Swift's answer is then exactly the plain one
            return await self.plain(self.sw)
        missing: BaseException | None = None
        try:
            found: web.StreamResponse | None = await objects.head_object(self.sw)
        except Exception as exc:
            if not _not_found(exc):
                raise  # other errors are answered as they are, without an error page
            missing, found = exc, None
        if found is not None and not self._directory(found):
            return await self._object(self.sw, found)
        if self.site.index:
            folder = self.sw.obj if self.slash else self.sw.obj + "/"
            index = self._at(folder + self.site.index, self.sw)
            try:
                found = await objects.head_object(index)
            except Exception as exc:
                if not _not_found(exc):
                    raise
            else:
                return self._redirect() if not self.slash else await self._object(index, found)
        if not self.slash:
            if await self._has_objects_under(self.sw.obj + "/"):
                return self._redirect()
            return await self._error(missing or swe.NotFound())
        return await self._listing(self.sw.obj)

    # --- objects --------------------------------------------------------------------------------

    def _at(self, obj: str, base: SwiftRequest) -> SwiftRequest:
        """`base` (its headers, query and caller) reading another object."""
        op = SwiftOp.HEAD_OBJECT if self.sw.request.method == "HEAD" else SwiftOp.GET_OBJECT
        return dataclasses.replace(base, route=dataclasses.replace(base.route, op=op, obj=obj))

    def _directory(self, found: web.StreamResponse) -> bool:
        """Is this a directory marker (its type, at most 1 byte), not a page?"""
        length = found.headers.get("Content-Length", "0")
        return (found.headers.get("Content-Type") == (self.site.directory_type or DIRECTORY_TYPE)
                and (not length.isdigit() or int(length) <= 1))

    async def _object(self, sub: SwiftRequest, found: web.StreamResponse
                      ) -> web.StreamResponse:
        """The object `found` describes, as a plain GET or HEAD answers it."""
        if self.root_tempurl:
            raise swe.Unauthorized(tempurl.INVALID)
        if self.sw.request.method == "HEAD":
            return found
        return await objects.get_object(sub)

    # --- the container --------------------------------------------------------------------------

    async def _listable(self) -> BucketRecord:
        """The container, if this caller may list it (401/403/404 otherwise)."""
        op = SwiftOp.HEAD_CONTAINER if self.sw.request.method == "HEAD" else SwiftOp.GET_CONTAINER
        sub = dataclasses.replace(self.sw, route=dataclasses.replace(self.sw.route, op=op, obj=""))
        record = await sub.own_bucket(self.sw.container)
        if self.sw.public_read and not public_readable(record, listing=True):
            raise swe.Unauthorized()
        return record

    async def _has_objects_under(self, prefix: str) -> bool:
        try:
            await self._listable()
            found = await listing.list_container(
                self.sw.service, self.sw.container,
                listing.ListingParams(limit=1, prefix=prefix, delimiter="/"))
        except Exception as exc:
            if not _known(exc):
                raise
            return False
        return bool(found)

    async def _listing(self, prefix: str) -> web.StreamResponse:
        if not _true(self.site.listings):
            return await self._error(swe.NotFound(self._disabled_page(prefix), html=True))
        try:
            await self._listable()
            items = await listing.list_container(
                self.sw.service, self.sw.container,
                listing.ListingParams(prefix=prefix, delimiter="/"))
        except Exception as exc:
            if not _known(exc):
                raise
            return await self._error(exc)
        if prefix and not items:
            return await self._error(swe.NotFound())
        resp = web.Response(
            body=self._listing_page(prefix, items).encode(),
            headers={"Content-Type": "text/html; charset=UTF-8"})
        resp[tempurl.INLINE] = True
        return resp

    def _label(self) -> str:
        if not self.site.label:
            return self.path
        return self.site.label + "/" + "/".join(self.path.split("/")[4:])

    def _css(self, prefix: str) -> str | None:
        return pages.css_href(self.site.css, prefix) if self.site.css else None

    def _disabled_page(self, prefix: str) -> str:
        return pages.disabled_page(self._label(), self._css(prefix), self.site.index)

    def _listing_page(self, prefix: str, items: list[listing.ObjectEntry | listing.Subdir]
                      ) -> str:
        return pages.listing_page(self._label(), self._css(prefix), prefix, items,
                                  pages.tempurl_links(self.sw.query))

    # --- redirects and errors -------------------------------------------------------------------

    def _redirect(self) -> web.Response:
        """301 to the same path with a slash; TempURL parameters are not carried
        over (a prefix TempURL should end with its own slash)."""
        request = self.sw.request
        location = f"{request.scheme}://{request.host}{quote(self.path + '/')}"
        return web.Response(status=301, text=MOVED, content_type="text/html", charset="UTF-8",
                            headers={"Location": location})

    async def _error(self, exc: BaseException) -> web.StreamResponse:
        """The error's answer: the container's "<status><suffix>" page with the
        error's status when there is one, else the error itself."""
        status = swe.to_swift_error(exc).status
        if not self.site.error:
            raise exc
        page = self._at(f"{status}{self.site.error}", dataclasses.replace(
            self.sw, query_view=_NO_QUERY, headers_view=_NO_HEADERS))
        try:
            return await _send_as(page, status)
        except Exception as page_exc:
            if not _known(page_exc):
                raise
        raise exc


async def _send_as(sw: SwiftRequest, status: int) -> web.StreamResponse:
    """The object `sw` names, whole, answered with `status` (an error page)."""
    content = await objects.resolve(sw, await objects.current(sw, sw.container, sw.obj))
    headers = objects.answer_headers(sw, content)
    if sw.request.method == "HEAD":
        headers["Content-Length"] = str(content.size)
        return web.Response(status=status, headers=headers)
    return await objects.send_bytes(sw, status, headers, content, 0, content.size - 1)
