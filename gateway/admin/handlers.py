"""The admin API: JSON over HTTP under /_kura/admin/v1, admin credentials required.

Users and access keys, cluster status (pods, capacity, placement epoch; under
`kurastore server` also the local operator's ObjectStore status) and maintenance
progress. Every handler goes through the object service; none
touches pods or metadata itself.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from kurastore.gateway.admin import auth
from kurastore.gateway.keys import LOCAL_PLATFORM, MAINTENANCE, SERVICE
from kurastore.gateway.middlewares import OP, PROTOCOL
from kurastore.gateway.objects import errors as dom

PREFIX = "/_kura/admin/v1"
MAX_BODY = 1 << 20


class AdminError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def render_admin_error(request: web.Request, exc: BaseException, request_id: str) -> web.Response:
    if isinstance(exc, AdminError):
        status, code, message = exc.status, exc.code, str(exc)
    elif isinstance(exc, dom.UserNotFound | dom.AccessKeyNotFound):
        status, code, message = 404, "NotFound", str(exc) or "not found"
    elif isinstance(exc, dom.UserExists):
        status, code, message = 409, "UserExists", str(exc) or "user exists"
    elif isinstance(exc, dom.MetadataUnavailable | dom.QuorumNotReached):
        status, code, message = 503, "ServiceUnavailable", "retry later"
    else:
        status, code, message = 500, "InternalError", "internal error"
    body = {"error": code, "message": message, "request_id": request_id}
    return web.json_response(body, status=status)


async def _authenticate(request: web.Request) -> bytes:
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise AdminError(413, "TooLarge", "request body too large")
    parsed = auth.parse_authorization(request.headers.get("Authorization", ""))
    if parsed is None:
        raise AdminError(401, "Unauthorized", "admin credentials required")
    access_key, ts, signature = parsed
    service = request.app[SERVICE]
    found = await service.lookup_secret(access_key)
    if found is None:
        raise AdminError(403, "Forbidden", "invalid credentials")
    secret, user_id = found
    if not auth.verify(secret, request.method, request.path_qs, ts, body, signature):
        raise AdminError(403, "Forbidden", "invalid credentials")
    user = await service.get_user(user_id)
    if not user.is_admin:
        raise AdminError(403, "Forbidden", "not an admin user")
    return body


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError as exc:
        raise AdminError(400, "BadRequest", "body is not JSON") from exc
    if not isinstance(value, dict):
        raise AdminError(400, "BadRequest", "body must be a JSON object")
    return value


def _user_json(user: Any) -> dict[str, Any]:
    return {"user": user.name, "user_id": user.user_id, "admin": user.is_admin,
            "created": user.created}


async def status(request: web.Request) -> web.Response:
    await _authenticate(request)
    out = await request.app[SERVICE].cluster_status()
    platform = request.app.get(LOCAL_PLATFORM)
    if platform is not None:  # kurastore server: its operator's ObjectStore status too
        out["objectstore"] = platform.status()
    return web.json_response(out)


async def maintenance(request: web.Request) -> web.Response:
    """Healer and scrubber progress: queue, shards rebuilt, bytes, rates, per-pod scrub
    state (last full scrub, bytes checked) and durability by healthy blocks."""
    await _authenticate(request)
    return web.json_response(await request.app[MAINTENANCE].progress())


async def placement(request: web.Request) -> web.Response:
    await _authenticate(request)
    pmap = request.app[SERVICE].topology.current
    return web.Response(text=pmap.to_json(), content_type="application/json")


async def list_users(request: web.Request) -> web.Response:
    await _authenticate(request)
    users = await request.app[SERVICE].list_users()
    return web.json_response({"users": [_user_json(u) for u in users]})


async def create_user(request: web.Request) -> web.Response:
    body = _json(await _authenticate(request))
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or not name.isprintable():
        raise AdminError(400, "BadRequest", "name must be 1-64 printable characters")
    user, key = await request.app[SERVICE].create_user(name, is_admin=bool(body.get("admin")))
    out = _user_json(user) | {"access_key": key.access_key, "secret_key": key.secret_key}
    return web.json_response(out, status=201)


async def delete_user(request: web.Request) -> web.Response:
    await _authenticate(request)
    service = request.app[SERVICE]
    user = await service.get_user_by_name(request.match_info["name"])
    await service.delete_user(user.user_id)
    return web.json_response({"deleted": user.name})


async def create_key(request: web.Request) -> web.Response:
    await _authenticate(request)
    service = request.app[SERVICE]
    user = await service.get_user_by_name(request.match_info["name"])
    key = await service.create_access_key(user.user_id)
    return web.json_response(
        {"user": user.name, "access_key": key.access_key, "secret_key": key.secret_key},
        status=201,
    )


async def list_keys(request: web.Request) -> web.Response:
    await _authenticate(request)
    service = request.app[SERVICE]
    user = await service.get_user_by_name(request.match_info["name"])
    keys = await service.list_access_keys(user.user_id)
    return web.json_response(
        {"user": user.name, "keys": [{"access_key": k.access_key, "created": k.created}
                                     for k in keys]}
    )


async def delete_key(request: web.Request) -> web.Response:
    await _authenticate(request)
    await request.app[SERVICE].delete_access_key(request.match_info["access_key"])
    return web.json_response({"deleted": request.match_info["access_key"]})


def _tag(op: str, handler: Any) -> Any:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        request[PROTOCOL] = "admin"
        request[OP] = op
        return await handler(request)

    return wrapped


def add_admin_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/status", _tag("AdminStatus", status))
    r.add_get(f"{PREFIX}/maintenance", _tag("AdminMaintenance", maintenance))
    r.add_get(f"{PREFIX}/placement", _tag("AdminPlacement", placement))
    r.add_get(f"{PREFIX}/users", _tag("AdminListUsers", list_users))
    r.add_post(f"{PREFIX}/users", _tag("AdminCreateUser", create_user))
    r.add_delete(f"{PREFIX}/users/{{name}}", _tag("AdminDeleteUser", delete_user))
    r.add_get(f"{PREFIX}/users/{{name}}/keys", _tag("AdminListKeys", list_keys))
    r.add_post(f"{PREFIX}/users/{{name}}/keys", _tag("AdminCreateKey", create_key))
    r.add_delete(f"{PREFIX}/keys/{{access_key}}", _tag("AdminDeleteKey", delete_key))
