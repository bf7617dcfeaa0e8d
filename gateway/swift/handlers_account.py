"""Swift account handlers: GET (container listing), HEAD (counts and bytes),
POST (X-Account-Meta-*).

An account is one user's: AUTH_<user id>. It exists as long as the user does
(Swift's account autocreate); its containers are the user's buckets, and its
metadata is kept with the store's account settings under "meta".
"""

from __future__ import annotations

from aiohttp import web

from kurastore.gateway.swift import headers as hdr
from kurastore.gateway.swift import listing
from kurastore.gateway.swift.context import SwiftRequest, container_modified, empty_response
from kurastore.gateway.swift.listing import ContainerEntry, Subdir
from kurastore.metadata import BucketRecord

META_KEY = "meta"


async def account_headers(sw: SwiftRequest, buckets: list[BucketRecord]) -> dict[str, str]:
    objects = size = 0
    for bucket in buckets:
        count, used = await sw.service.bucket_usage(bucket.name)
        objects += count
        size += used
    settings = await sw.service.get_account_settings(sw.user_id)
    created = (await sw.service.get_user(sw.user_id)).created
    return {
        "X-Account-Container-Count": str(len(buckets)),
        "X-Account-Object-Count": str(objects),
        "X-Account-Bytes-Used": str(size),
        "X-Timestamp": hdr.timestamp(created),
        **hdr.meta_headers(settings.get(META_KEY) or {}, "account"),
    }


async def head_account(sw: SwiftRequest) -> web.StreamResponse:
    buckets = await sw.service.list_buckets(owner=sw.user_id)
    headers = await account_headers(sw, buckets)
    headers["Content-Type"] = listing.content_type_of(listing.listing_format(sw.query, sw.headers))
    return empty_response(204, headers)


def _group(names: list[BucketRecord], p: listing.ListingParams) -> list[BucketRecord | Subdir]:
    """Containers rolled up by delimiter after the prefix, in name order."""
    out: list[BucketRecord | Subdir] = []
    seen: set[str] = set()
    for record in names:
        cut = record.name.find(p.delimiter, len(p.prefix)) if p.delimiter else -1
        if cut < 0:
            out.append(record)
        else:
            sub = record.name[: cut + len(p.delimiter)]
            if sub not in seen:
                seen.add(sub)
                out.append(Subdir(sub))
    return out


async def get_account(sw: SwiftRequest) -> web.StreamResponse:
    fmt = listing.listing_format(sw.query, sw.headers)
    params = listing.listing_params(sw.query)
    buckets = await sw.service.list_buckets(owner=sw.user_id)
    headers = await account_headers(sw, buckets)
    stub = [ContainerEntry(b.name, 0, 0, 0.0) for b in buckets]
    chosen = {e.name for e in listing.select_containers(stub, params)}
    selected = [b for b in buckets if b.name in chosen]
    selected.sort(key=lambda b: b.name.encode(), reverse=params.reverse)
    items: list[ContainerEntry | Subdir] = []
    for item in _group(selected, params):
        if isinstance(item, Subdir):
            items.append(item)
        elif fmt == "plain":
            items.append(ContainerEntry(item.name, 0, 0, container_modified(item)))
        else:
            count, used = await sw.service.bucket_usage(item.name)
            items.append(ContainerEntry(item.name, count, used, container_modified(item)))
    headers["Content-Type"] = listing.content_type_of(fmt)
    if not items and fmt == "plain":
        return empty_response(204, headers)
    body = listing.render_containers(fmt, sw.account, items)
    if sw.request.method == "HEAD":
        return web.Response(status=200, headers=headers)
    return web.Response(status=200, body=body, headers=headers)


async def post_account(sw: SwiftRequest) -> web.StreamResponse:
    values, removed = hdr.metadata(sw.headers, "account")
    if values or removed:
        settings = await sw.service.get_account_settings(sw.user_id)
        meta = {k: v for k, v in dict(settings.get(META_KEY) or {}).items() if k not in removed}
        meta.update(values)
        hdr.check_metadata(meta, "X-Account-Meta-")
        await sw.service.put_account_settings(sw.user_id, {**settings, META_KEY: meta})
    return empty_response(204)
