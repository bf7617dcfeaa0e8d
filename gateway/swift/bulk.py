"""Swift bulk delete: `POST` (or `DELETE`) with `?bulk-delete` and a body of
newline-separated, percent-encoded "container/object" or "container" names, all
in the caller's account. python-swiftclient uses it when /info announces it.

Rules (as Swift's bulk middleware answers):
- Up to MAX_DELETES names (413 above); objects and containers are deleted in the
  order given, so a container named after its objects is deleted once empty.
- A missing name counts as "not found", never an error; a container that is not
  empty is "409 Conflict", a name that is not this account's "403 Forbidden"; the
  answer is still 200, its "Response Status" 400 when any name failed.
- The answer is text/plain, JSON or XML, as the Accept header asks.
"""

from __future__ import annotations

import json
from urllib.parse import unquote
from xml.sax.saxutils import escape

from aiohttp import web

from kurastore.gateway.objects import errors as dom
from kurastore.gateway.swift import errors as swe
from kurastore.gateway.swift import headers as hdr
from kurastore.gateway.swift.context import SwiftRequest

MAX_DELETES = 10000
MAX_FAILED = 1000
MAX_BODY = MAX_DELETES * (hdr.MAX_CONTAINER_NAME_LENGTH + hdr.MAX_OBJECT_NAME_LENGTH + 2) * 3


def capabilities() -> dict[str, int]:
    return {"max_deletes_per_request": MAX_DELETES, "max_failed_deletes": MAX_FAILED}


def is_bulk_delete(method: str, query: object) -> bool:
    return method in ("POST", "DELETE") and "bulk-delete" in query  # type: ignore[operator]


def _names(body: bytes) -> list[str]:
    names = [unquote(line.strip(), errors="strict") for line in body.decode().splitlines()]
    names = [n.lstrip("/") for n in names if n.strip()]
    if len(names) > MAX_DELETES:
        raise swe.RequestEntityTooLarge(f"Maximum Bulk Deletes: {MAX_DELETES} per request")
    return names


async def _delete_one(sw: SwiftRequest, name: str) -> str | None:
    """None when deleted, "404" when missing, else the failure's status line."""
    container, _, obj = name.partition("/")
    try:
        await sw.own_bucket(container)
        if obj:
            version = await sw.service.head_object(container, obj)
            if hdr.is_expired(version):
                return "404"
            await sw.service.delete_object(container, obj)
        else:
            await sw.service.delete_bucket(container)
    except (dom.BucketNotFound, dom.ObjectNotFound):
        return "404"
    except dom.BucketNotEmpty:
        return "409 Conflict"
    except swe.SwiftError as exc:
        return f"{exc.status} {type(exc).__name__}"
    return None


async def bulk_delete(sw: SwiftRequest) -> web.StreamResponse:
    try:
        names = _names(await sw.read_small(MAX_BODY))
    except UnicodeDecodeError:
        raise swe.BadRequest("Invalid UTF8 or contains NULL") from None
    deleted = not_found = 0
    errors: list[tuple[str, str]] = []
    for name in names:
        if len(errors) >= MAX_FAILED:
            break
        outcome = await _delete_one(sw, name)
        if outcome is None:
            deleted += 1
        elif outcome == "404":
            not_found += 1
        else:
            errors.append(("/" + name, outcome))
    status = "400 Bad Request" if errors else "200 OK"
    return _answer(sw, deleted, not_found, status, errors)


def _answer(sw: SwiftRequest, deleted: int, not_found: int, status: str,
            errors: list[tuple[str, str]]) -> web.Response:
    accept = sw.headers.get("Accept", "").lower()
    if "json" in accept:
        body = json.dumps({"Number Deleted": deleted, "Number Not Found": not_found,
                           "Response Body": "", "Response Status": status,
                           "Errors": [list(e) for e in errors]})
        return web.Response(text=body, content_type="application/json")
    if "xml" in accept:
        items = "".join(f"<object><name>{escape(n)}</name><status>{escape(s)}</status></object>"
                        for n, s in errors)
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<delete>'
                f"<number_deleted>{deleted}</number_deleted>"
                f"<number_not_found>{not_found}</number_not_found>"
                f"<response_body></response_body><response_status>{status}</response_status>"
                f"<errors>{items}</errors></delete>")
        return web.Response(text=body, content_type="application/xml")
    lines = [f"Number Deleted: {deleted}", f"Number Not Found: {not_found}",
             "Response Body: ", f"Response Status: {status}", "Errors:"]
    lines += [f"{n}, {s}" for n, s in errors]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")
