"""Swift container handlers: PUT (create, 201; exists, 202), HEAD, GET (object
listing), POST (metadata), DELETE (409 when not empty).

A container is a bucket owned by the account's user. Its Swift metadata
(X-Container-Meta-*, X-Container-Read, X-Container-Write) lives in the Swift
part of BucketRecord.settings; other settings (S3 tagging...) are kept as they
are. The read/write ACLs are stored and returned to the owner only;
X-Container-Read ".r:*" (".rlistings" for listings) opens reads to requests
without a token (frontend), and an entry naming another account's user
("AUTH_<id>", "<account>:<user>", "<user>") lets that user read (or, in
X-Container-Write, write objects) with its own token (context.own_bucket).
"""

from __future__ import annotations

import math
import time
from typing import Any

from aiohttp import web

from kurastore.gateway.objects.errors import BucketAlreadyOwnedByYou, BucketNotFound
from kurastore.gateway.swift import errors as swe
from kurastore.gateway.swift import headers as hdr
from kurastore.gateway.swift import listing, tempurl
from kurastore.gateway.swift import versioned_writes as vw
from kurastore.gateway.swift.context import (
    SwiftRequest,
    container_modified,
    empty_response,
    swift_settings,
    with_swift_settings,
)
from kurastore.metadata import BucketRecord

ACL_HEADERS = {"x-container-read": "read", "x-container-write": "write"}


def updated_settings(sw: SwiftRequest, current: dict[str, Any]) -> dict[str, Any] | None:
    """The container's Swift settings after this request's headers; None when the
    request changes nothing."""
    values, removed = hdr.metadata(sw.headers, "container")
    acls = {field: sw.headers[name] for name, field in ACL_HEADERS.items()
            if name in sw.headers}
    acl_removed = {field for name, field in ACL_HEADERS.items()
                   if f"x-remove-{name[2:]}" in {h.lower() for h in sw.headers}}
    versions = vw.updated(sw, current)
    if not values and not removed and not acls and not acl_removed and versions is None:
        return None
    meta = {k: v for k, v in dict(current.get("meta") or {}).items() if k not in removed}
    meta.update(values)
    hdr.check_metadata(meta, "X-Container-Meta-")
    out = {**current, "meta": meta, "modified": time.time()}
    for field, value in acls.items():
        if value:
            out[field] = value
        else:
            out.pop(field, None)
    for field in acl_removed:
        out.pop(field, None)
    if versions is not None:
        out[vw.SETTING] = versions
    return out


async def put_container(sw: SwiftRequest) -> web.StreamResponse:
    hdr.check_container_name(sw.container)
    policy = sw.headers.get("X-Storage-Policy")
    if policy and policy.strip().lower() != listing.STORAGE_POLICY.lower():  # "": default
        raise swe.BadRequest(f"Invalid X-Storage-Policy {policy!r}")
    hdr.metadata(sw.headers, "container")  # refuse bad metadata before creating anything
    try:
        record = await sw.own_bucket(sw.container)
        status = 202
    except BucketNotFound:
        try:
            record = await sw.service.create_bucket(sw.container, owner=sw.user_id)
            status = 201
        except BucketAlreadyOwnedByYou:
            record = await sw.own_bucket(sw.container)
            status = 202
    swift = updated_settings(sw, swift_settings(record))
    if swift is None and status == 202:  # a PUT again is a new put timestamp, as in Swift
        swift = {**swift_settings(record), "modified": time.time()}
    if swift is not None:
        await sw.service.update_bucket(sw.container, settings=with_swift_settings(record, swift))
    return empty_response(status)


def _visible_meta(sw: SwiftRequest, meta: dict[str, str]) -> dict[str, str]:
    """Container metadata as this caller may see it: TempURL keys are the owner's."""
    if not sw.grantee and not sw.public_read:
        return meta
    return {k: v for k, v in meta.items() if k not in tempurl.KEY_NAMES}


async def container_headers(sw: SwiftRequest, record: BucketRecord) -> dict[str, str]:
    count, size = await sw.service.bucket_usage(record.name)
    swift = swift_settings(record)
    out = {
        "X-Container-Object-Count": str(count),
        "X-Container-Bytes-Used": str(size),
        "X-Timestamp": hdr.timestamp(record.created),
        "X-Storage-Policy": listing.STORAGE_POLICY,
        "Last-Modified": hdr.http_date(math.ceil(container_modified(record))),  # as Swift
        **hdr.meta_headers(_visible_meta(sw, swift.get("meta") or {}), "container"),
        **vw.location_headers(swift),
    }
    for name, field in ACL_HEADERS.items():
        if swift.get(field) and not sw.grantee and not sw.public_read:
            out[hdr.title(name)] = swift[field]
    return out


async def head_container(sw: SwiftRequest) -> web.StreamResponse:
    hdr.check_container_name(sw.container)
    record = await sw.own_bucket(sw.container)
    headers = await container_headers(sw, record)
    headers["Content-Type"] = listing.content_type_of(listing.listing_format(sw.query, sw.headers))
    return empty_response(204, headers)


async def get_container(sw: SwiftRequest) -> web.StreamResponse:
    hdr.check_container_name(sw.container)
    record = await sw.own_bucket(sw.container)
    fmt = listing.listing_format(sw.query, sw.headers)
    params = listing.listing_params(sw.query)
    items = await listing.list_container(sw.service, sw.container, params)
    headers = await container_headers(sw, record)
    headers["Content-Type"] = listing.content_type_of(fmt)
    if not items and fmt == "plain":
        return empty_response(204, headers)
    body = listing.render_objects(fmt, sw.container, items)
    if sw.request.method == "HEAD":
        return web.Response(status=200, headers=headers)
    return web.Response(status=200, body=body, headers=headers)


async def post_container(sw: SwiftRequest) -> web.StreamResponse:
    hdr.check_container_name(sw.container)
    record = await sw.own_bucket(sw.container)
    swift = updated_settings(sw, swift_settings(record))
    if swift is not None:
        await sw.service.update_bucket(sw.container, settings=with_swift_settings(record, swift))
    return empty_response(204)


async def delete_container(sw: SwiftRequest) -> web.StreamResponse:
    hdr.check_container_name(sw.container)
    await sw.own_bucket(sw.container)
    await sw.service.delete_bucket(sw.container)  # BucketNotEmpty -> 409
    return empty_response(204)
