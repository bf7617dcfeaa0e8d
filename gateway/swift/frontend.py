"""The Swift front: one aiohttp handler for every Swift request, and the Swift
error answer.

`SwiftFrontend.handle` runs the one obvious path: mark the request as Swift
(so errors render here and X-Trans-Id is stamped) -> classify (pure) ->
public endpoints (/auth/v1.0, /info, /healthcheck) or: check the token, check
the account is the token's own, check the user still exists -> the handler.
It raises SwiftErrors and domain errors; the error middleware turns them into
answers with `render_swift_error`, the only place an exception becomes a
Swift error answer.

Rules: a missing, forged or expired token is a 401; a token for another
account is a 403 unless the container's X-Container-Read / X-Container-Write
names its user (reads, listings; object writes); a deleted user's tokens stop
working at once. A request
without a token may GET/HEAD objects of a container whose X-Container-Read has
".r:*" (and list it with ".rlistings"); every container it reaches must grant it.
A request with TempURL parameters is judged by its signature alone (tempurl.py).
GET/HEAD without a token, with X-Web-Mode: true, or by TempURL go through static
web (staticweb.py), which falls back on the plain handler.
OPTIONS (CORS preflight) needs no token; the container's CORS metadata decides
(cors.py), and also adds CORS headers to the answers of allowed origins.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from aiohttp import web

from kurastore.gateway.middlewares import ANSWER_FILTERS, OP, PROTOCOL
from kurastore.gateway.objects import errors as dom
from kurastore.gateway.swift import bulk, cors, staticweb, tempurl
from kurastore.gateway.swift import errors as swe
from kurastore.gateway.swift import handlers_account as account
from kurastore.gateway.swift import handlers_container as container
from kurastore.gateway.swift import handlers_object as objects
from kurastore.gateway.swift import headers as hdr
from kurastore.gateway.swift.auth import Authenticator, TempAuth, TokenSigner
from kurastore.gateway.swift.context import Handler, SwiftRequest, public_readable
from kurastore.gateway.swift.info import handle_healthcheck, handle_info
from kurastore.gateway.swift.routes import (
    ACCOUNT_PREFIX,
    SwiftOp,
    SwiftRoute,
    classify,
    is_swift_request,
    user_id_of,
)

if TYPE_CHECKING:
    from kurastore.gateway.objects.service import ObjectService

log = logging.getLogger(__name__)

HANDLERS: dict[SwiftOp, Handler] = {
    SwiftOp.GET_ACCOUNT: account.get_account,
    SwiftOp.HEAD_ACCOUNT: account.head_account,
    SwiftOp.POST_ACCOUNT: account.post_account,
    SwiftOp.PUT_CONTAINER: container.put_container,
    SwiftOp.GET_CONTAINER: container.get_container,
    SwiftOp.HEAD_CONTAINER: container.head_container,
    SwiftOp.POST_CONTAINER: container.post_container,
    SwiftOp.DELETE_CONTAINER: container.delete_container,
    SwiftOp.PUT_OBJECT: objects.put_object,
    SwiftOp.COPY_OBJECT: objects.copy_object,
    SwiftOp.GET_OBJECT: objects.get_object,
    SwiftOp.HEAD_OBJECT: objects.head_object,
    SwiftOp.POST_OBJECT: objects.post_object,
    SwiftOp.DELETE_OBJECT: objects.delete_object,
}


def wants_swift(request: web.Request) -> bool:
    """Routing for the shared port (see routes.is_swift_request)."""
    path = request.raw_path.split("?", 1)[0]
    return is_swift_request(path, request.query, request.headers)


class SwiftFrontend:
    def __init__(
        self,
        service: ObjectService,
        signer: TokenSigner,
        *,
        authenticator: Authenticator | None = None,
        max_file_size: int = hdr.MAX_FILE_SIZE,
    ) -> None:
        self._service = service
        self.signer = signer
        self._auth = authenticator or TempAuth(service)
        self._max_file_size = max_file_size

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request[PROTOCOL] = "swift"
        route = classify(request.method, request.raw_path.split("?", 1)[0], request.headers)
        request[OP] = route.op.value
        if route.op is SwiftOp.AUTH:
            return await self._issue_token(request)
        if route.op is SwiftOp.INFO:
            return await handle_info(request, self._max_file_size)
        if route.op is SwiftOp.HEALTHCHECK:
            return await handle_healthcheck(request)
        if route.op is SwiftOp.INVALID_PATH:
            raise swe.PreconditionFailed("Invalid UTF8 or contains NULL")
        if route.op is SwiftOp.BAD_URL:
            raise swe.PreconditionFailed("Bad URL")
        if route.op is SwiftOp.MISSING_SEGMENT:
            raise swe.NotFound()
        if request.method == "OPTIONS":
            request[OP] = "Options"
            return await cors.preflight(request, route, self._service)
        origin = request.headers.get("Origin")
        if origin and route.container:
            add = cors.answer_filter(await cors.container_cors(self._service, route), origin)
            if add is not None:
                request.setdefault(ANSWER_FILTERS, []).append(add)
        if tempurl.is_tempurl(request.query):
            return await self._tempurl(request, route)
        web_site = staticweb.wanted(request, route)  # it checks an anonymous caller's reach
        public = (web_site and staticweb.anonymous(request)) or await self._public_read(
            request, route)
        caller, names = ("", frozenset[str]()) if public else await self._authorize(
            request, route)
        handler = HANDLERS.get(route.op)
        if bulk.is_bulk_delete(request.method, request.query):
            if caller != user_id_of(route.account):  # the account's own user only
                raise swe.Forbidden()
            request[OP], handler = "BulkDelete", bulk.bulk_delete
        if handler is None:
            raise swe.MethodNotAllowed()
        sw = SwiftRequest(request=request, service=self._service, route=route,
                          user_id=user_id_of(route.account), max_file_size=self._max_file_size,
                          public_read=public, caller=caller, caller_names=names)
        return await (staticweb.serve(sw, handler) if web_site else handler(sw))

    async def _tempurl(self, request: web.Request, route: SwiftRoute) -> web.StreamResponse:
        """A request signed with the account's (or the container's) TempURL key."""
        grant = await tempurl.check(request, route, self._service)
        request.setdefault(ANSWER_FILTERS, []).append(
            lambda resp: tempurl.filter_answer(grant, request, route.obj, resp))
        handler = HANDLERS.get(route.op)
        if handler is None:
            raise swe.MethodNotAllowed()
        sw = SwiftRequest(request=request, service=self._service, route=route,
                          user_id=user_id_of(route.account), max_file_size=self._max_file_size,
                          query_view=grant.query, headers_view=grant.headers,
                          tempurl_container=grant.container)
        if staticweb.takes(request, route):
            return await staticweb.serve(sw, handler)
        return await handler(sw)

    async def _public_read(self, request: web.Request, route: SwiftRoute) -> bool:
        """A request without a token may read an object of a container whose
        X-Container-Read has ".r:*", and list it with ".rlistings" as well."""
        if request.headers.get("X-Auth-Token") or request.headers.get("X-Storage-Token"):
            return False
        listing = route.op in (SwiftOp.GET_CONTAINER, SwiftOp.HEAD_CONTAINER)
        if not (listing or route.op in (SwiftOp.GET_OBJECT, SwiftOp.HEAD_OBJECT)):
            return False
        try:
            record = await self._service.get_bucket(route.container)
        except dom.BucketNotFound:
            return False
        return record.owner == user_id_of(route.account) and public_readable(
            record, listing=listing
        )

    async def _authorize(self, request: web.Request, route: SwiftRoute
                         ) -> tuple[str, frozenset[str]]:
        """(the token's user id, the names its ACL entries may use). A user may
        reach another account only in a container (whose ACLs
        SwiftRequest.own_bucket checks)."""
        token = request.headers.get("X-Auth-Token") or request.headers.get("X-Storage-Token")
        if not token:
            raise swe.Unauthorized()
        user_id, _expires = self.signer.verify(token)
        try:
            user = await self._service.get_user(user_id)
        except dom.UserNotFound:
            raise swe.Unauthorized() from None
        owner = user_id_of(route.account)
        if owner != user_id and (not owner or not route.container):
            raise swe.Forbidden()
        return user_id, frozenset({ACCOUNT_PREFIX + user_id, user.name})

    async def _issue_token(self, request: web.Request) -> web.StreamResponse:
        h = request.headers
        user = h.get("X-Auth-User") or h.get("X-Storage-User") or ""
        key = h.get("X-Auth-Key") or h.get("X-Storage-Pass") or ""
        user_id = await self._auth.authenticate(user, key)
        token = self.signer.issue(user_id)
        url = f"{request.scheme}://{request.host}/v1/{ACCOUNT_PREFIX}{user_id}"
        return web.json_response(
            {"storage": {"default": "local", "local": url}},
            headers={
                "X-Auth-Token": token,
                "X-Storage-Token": token,
                "X-Storage-Url": url,
                "X-Auth-Token-Expires": str(int(self.signer.lifetime_s)),
            },
        )


def render_swift_error(request: web.Request, exc: BaseException, request_id: str
                       ) -> web.Response:
    """The Swift error answer for any exception: the status and Swift's short body
    (none for HEAD and 304), with the headers the error implies.

    When part of a response already went out, there is no honest answer: the
    exception is re-raised so the connection drops."""
    writer = getattr(request, "_payload_writer", None)
    if writer is not None and getattr(writer, "output_size", 0) > 0:
        raise exc
    err = swe.to_swift_error(exc)
    if isinstance(exc, dom.DataLost):  # the cause says it all; a traceback would not
        log.error("request %s: object unreadable: %s", request_id, exc)
    elif err.status == 503 and not isinstance(exc, swe.SwiftError):  # pods or metadata out
        log.warning("request %s refused: %s", request_id, exc)
    elif err.status == 500 and not isinstance(exc, swe.SwiftError):
        log.error("request %s failed", request_id, exc_info=exc)
    headers = dict(err.headers)
    if isinstance(exc, dom.NotModified):
        headers["Etag"] = exc.version.etag
        headers["Last-Modified"] = hdr.http_date(exc.version.last_modified)
    if isinstance(exc, dom.InvalidRange):
        headers["Content-Range"] = f"bytes */{exc.size}"
    if err.status == 401:
        headers["Www-Authenticate"] = f'Swift realm="{_realm(request)}"'
    if request.method == "HEAD" or err.status in (204, 304):
        return web.Response(status=err.status, headers=headers)
    headers.pop("Content-Type", None)  # the object's, when a 412 describes one
    content_type = "text/plain" if err.is_plain else err.content_type
    return web.Response(status=err.status, text=err.text, headers=headers,
                        content_type=content_type, charset="UTF-8")


def _realm(request: web.Request) -> str:
    """The account the path names, percent-encoded (so no quote or newline can
    break out of the header), as TempAuth answers; "unknown" without one."""
    parts = request.raw_path.split("?", 1)[0].split("/")
    if len(parts) < 3 or parts[1] != "v1" or not parts[2]:
        return "unknown"
    return quote(unquote(parts[2]))


SWIFT_FRONTEND = web.AppKey("swift_frontend", SwiftFrontend)
