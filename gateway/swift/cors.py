"""Swift CORS: what a container's X-Container-Meta-Access-Control-Allow-Origin
(space-separated origins, or "*"), -Max-Age and -Expose-Headers let browsers do.

Rules (Swift's, in strict mode as /info says):
- OPTIONS needs no token. Without Origin it is 200 with Allow; with one, it is
  200 only when the container allows the origin and Access-Control-Request-Method
  is a method Swift serves, else 401. The answer allows the origin ("*" when the
  container says "*"), every method, the requested headers, and the max age.
- Any other request with an allowed Origin gets Access-Control-Allow-Origin and
  Access-Control-Expose-Headers (the standard ones, every X-Object-Meta-* and
  X-Container-Meta-* of the answer, and the container's list); an origin the
  container does not allow gets no CORS headers at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from kurastore.gateway.objects.errors import BucketNotFound
from kurastore.gateway.swift.context import swift_settings
from kurastore.gateway.swift.routes import SwiftRoute, user_id_of

if TYPE_CHECKING:
    from kurastore.gateway.objects.service import ObjectService

METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE", "COPY", "OPTIONS")
EXPOSED = ("cache-control", "content-language", "content-type", "expires", "last-modified",
           "pragma", "etag", "x-timestamp", "x-trans-id", "x-openstack-request-id")


async def container_cors(service: ObjectService, route: SwiftRoute) -> Mapping[str, str]:
    """The container's CORS metadata (lower-case names without X-Container-Meta-)."""
    if not route.container:
        return {}
    try:
        record = await service.get_bucket(route.container)
    except BucketNotFound:
        return {}
    if record.owner != user_id_of(route.account):
        return {}
    meta = swift_settings(record).get("meta") or {}
    return {k: str(v) for k, v in meta.items() if k.startswith("access-control-")}


def _allows(cors: Mapping[str, str], origin: str) -> bool:
    allowed = cors.get("access-control-allow-origin", "").split()
    return "*" in allowed or origin in allowed


def _allow_origin(cors: Mapping[str, str], origin: str, headers: dict[str, str]) -> None:
    if cors.get("access-control-allow-origin", "").strip() == "*":
        headers["Access-Control-Allow-Origin"] = "*"
    else:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Vary"] = "Origin"


async def preflight(request: web.Request, route: SwiftRoute, service: ObjectService
                    ) -> web.Response:
    headers = {"Allow": ", ".join(METHODS)}
    origin = request.headers.get("Origin")
    if not origin:
        return web.Response(status=200, headers=headers)
    cors = await container_cors(service, route)
    wanted = request.headers.get("Access-Control-Request-Method")
    if not _allows(cors, origin) or wanted not in METHODS:
        return web.Response(status=401, headers=headers)
    _allow_origin(cors, origin, headers)
    if "access-control-max-age" in cors:
        headers["Access-Control-Max-Age"] = cors["access-control-max-age"]
    headers["Access-Control-Allow-Methods"] = ", ".join(METHODS)
    asked = [h.strip() for h in request.headers.get("Access-Control-Request-Headers", "")
             .split(",") if h.strip()]
    if asked:
        headers["Access-Control-Allow-Headers"] = ", ".join(asked)
        headers["Vary"] = ", ".join(filter(None, (headers.get("Vary"),
                                                  "Access-Control-Request-Headers")))
    return web.Response(status=200, headers=headers)


def answer_filter(cors: Mapping[str, str], origin: str
                  ) -> Callable[[web.StreamResponse], None] | None:
    """What an actual request's answer gets (None: nothing, the origin is not allowed)."""
    if not _allows(cors, origin):
        return None

    def add(response: web.StreamResponse) -> None:
        headers = response.headers
        exposed = set(EXPOSED) | {n.lower() for n in headers
                                  if n.lower().startswith(("x-object-meta-",
                                                           "x-container-meta-"))}
        exposed |= {h.lower() for h in cors.get("access-control-expose-headers", "").split()}
        headers.setdefault("Access-Control-Expose-Headers", ", ".join(sorted(exposed)))
        if "Access-Control-Allow-Origin" not in headers:
            extra: dict[str, str] = {}
            _allow_origin(cors, origin, extra)
            headers.update(extra)

    return add
