"""Swift listings: query parameters, paging over the object service, and the
three renderings (plain, json, xml).

Rules (as Swift answers them):
- format= (plain, json, xml) wins over Accept; plain is the default. An empty
  plain listing is a 204 with no body; json and xml always answer 200.
- limit is at most 10000 (412 above; a limit that is not digits is ignored);
  a delimiter may be several characters; marker and end_marker are exclusive
  bounds; reverse=true walks names downwards (marker is then the upper bound).
- path=p lists the objects directly "in" p/ (prefix p/, delimiter /, without
  subdir entries, but with "directory marker" objects named "p/sub/", and
  without "p/" itself) and overrides prefix and delimiter.
- Names order by their UTF-8 bytes, as the store orders keys.
- json object entries: name, hash, bytes, content_type, last_modified (UTC,
  ISO 8601 with microseconds and no zone, as Swift), and for an SLO its whole
  size as bytes and its quoted etag as slo_etag; for a symlink symlink_path
  (and a static one's symlink_etag, symlink_bytes); delimiter groups are
  {"subdir": ...} entries, interleaved in name order.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from kurastore.gateway.objects.errors import ObjectNotFound
from kurastore.gateway.swift import errors as swe
from kurastore.gateway.swift.headers import SLO_ETAG, SLO_SIZE
from kurastore.gateway.swift.symlinks import ListedLink, listed

if TYPE_CHECKING:
    from kurastore.gateway.objects.service import ObjectService
    from kurastore.metadata import ObjectVersion

LISTING_LIMIT = 10000
STORAGE_POLICY = "Policy-0"  # the one policy /info announces
PAGE = 1000
FORMATS = {"plain": "text/plain", "json": "application/json",
           "xml": "application/xml", "text": "text/plain"}


@dataclass(frozen=True)
class ListingParams:
    limit: int = LISTING_LIMIT
    marker: str = ""
    end_marker: str = ""
    prefix: str = ""
    delimiter: str = ""
    reverse: bool = False
    path: str | None = None


@dataclass(frozen=True)
class ObjectEntry:
    name: str
    hash: str
    bytes: int
    content_type: str
    last_modified: float
    slo_etag: str = ""  # an SLO's: bytes is then the whole object's, hash the manifest's
    link: ListedLink | None = None  # a symlink's target (json only, as in Swift)


@dataclass(frozen=True)
class Subdir:
    name: str


@dataclass(frozen=True)
class ContainerEntry:
    name: str
    count: int
    bytes: int
    last_modified: float


def listing_format(query: Mapping[str, str], headers: Mapping[str, str]) -> str:
    """"plain", "json" or "xml"."""
    fmt = query.get("format", "").lower()
    if fmt in FORMATS:
        return "plain" if fmt == "text" else fmt
    accept = headers.get("Accept", "").lower()
    if "application/json" in accept:
        return "json"
    if "application/xml" in accept or "text/xml" in accept:
        return "xml"
    return "plain"


def listing_params(query: Mapping[str, str]) -> ListingParams:
    raw = query.get("limit", "")
    limit = LISTING_LIMIT
    if raw.isdigit():  # anything else is ignored, as Swift does
        limit = int(raw)
        if limit > LISTING_LIMIT:
            raise swe.PreconditionFailed(f"Maximum limit is {LISTING_LIMIT}")
    delimiter = query.get("delimiter", "")
    return ListingParams(
        limit=limit,
        marker=query.get("marker", ""),
        end_marker=query.get("end_marker", ""),
        prefix=query.get("prefix", ""),
        delimiter=delimiter,
        reverse=query.get("reverse", "").lower() in ("true", "1", "yes", "on", "t", "y"),
        path=query.get("path"),
    )


def _key(name: str) -> bytes:
    return name.encode()


def in_bounds(name: str, p: ListingParams) -> bool:
    """Is `name` within the marker / end_marker bounds (which swap for reverse)?"""
    low, high = (p.end_marker, p.marker) if p.reverse else (p.marker, p.end_marker)
    return (not low or _key(name) > _key(low)) and (not high or _key(name) < _key(high))


async def list_container(
    service: ObjectService, bucket: str, p: ListingParams
) -> list[ObjectEntry | Subdir]:
    """Up to p.limit entries, paging the store 1000 at a time. Forward listings
    stop at the limit or the end marker; reverse ones walk their bounded range
    and keep only the last `limit` entries (memory stays bounded)."""
    prefix, delimiter = p.prefix, p.delimiter
    if p.path is not None:
        prefix = p.path.rstrip("/") + "/" if p.path else ""
        delimiter = "/"
    start = p.end_marker if p.reverse else p.marker
    if prefix and (not start or _key(start) < _key(prefix)):
        start = ""  # the store starts at the prefix anyway
    kept: deque[ObjectEntry | Subdir] = deque(maxlen=p.limit if p.reverse else None)
    if p.limit == 0:
        return []
    while True:
        page = await service.list_objects(bucket, prefix=prefix, delimiter=delimiter,
                                          start_after=start, max_keys=PAGE)
        items: list[ObjectEntry | Subdir] = [
            _entry(v) for v in page.entries if p.path is None or v.key != prefix
        ]
        if p.path is None:
            items += [Subdir(cp) for cp in page.common_prefixes]
        else:  # a "directory marker" object named like a rolled-up prefix is listed
            items += await _markers(service, bucket, page.common_prefixes)
        items.sort(key=lambda item: _key(item.name))
        for item in items:
            if not in_bounds(item.name, p):
                if not p.reverse and p.end_marker and _key(item.name) >= _key(p.end_marker):
                    return list(kept)
                if p.reverse and p.marker and _key(item.name) >= _key(p.marker):
                    return list(reversed(kept))
                continue
            kept.append(item)
            if not p.reverse and len(kept) >= p.limit:
                return list(kept)
        if not page.is_truncated or not page.next_marker:
            break
        start = page.next_marker
    return list(reversed(kept)) if p.reverse else list(kept)


def _entry(v: ObjectVersion) -> ObjectEntry:
    slo_size, slo_etag = v.headers.get(SLO_SIZE), v.headers.get(SLO_ETAG)
    if slo_size is not None and slo_etag is not None and slo_size.isdigit():
        return ObjectEntry(v.key, v.etag, int(slo_size), v.content_type, v.last_modified,
                           f'"{slo_etag}"')
    link = listed(v)
    return ObjectEntry(v.key, v.etag, v.size, v.content_type, v.last_modified,
                       link.slo_etag if link else "", link)


async def _markers(service: ObjectService, bucket: str, prefixes: list[str]) -> list[ObjectEntry]:
    """The objects named exactly like these prefixes ("dir/"), as a path= listing
    shows them."""
    found = []
    for name in prefixes:
        try:
            found.append(_entry(await service.head_object(bucket, name)))
        except ObjectNotFound:
            continue
    return found


def select_containers(entries: list[ContainerEntry], p: ListingParams) -> list[ContainerEntry]:
    """Account listings filter the (few) containers of one account in memory."""
    chosen = [e for e in entries if e.name.startswith(p.prefix) and in_bounds(e.name, p)]
    chosen.sort(key=lambda e: _key(e.name), reverse=p.reverse)
    return chosen[: p.limit]


def swift_time(ts: float) -> str:
    """2016-07-21T17:54:02.123450: UTC, microseconds, no zone (Swift's json)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def render_objects(fmt: str, container: str, items: list[ObjectEntry | Subdir]) -> bytes:
    if fmt == "json":
        return json.dumps([_object_json(i) for i in items]).encode()
    if fmt == "xml":
        body = "".join(_object_xml(i) for i in items)
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<container name={quoteattr(container)}>'
                f"{body}</container>").encode()
    return "".join(i.name + "\n" for i in items).encode()


def _object_json(item: ObjectEntry | Subdir) -> dict[str, object]:
    if isinstance(item, Subdir):
        return {"subdir": item.name}
    out: dict[str, object] = {
        "name": item.name, "hash": item.hash, "bytes": item.bytes,
        "content_type": item.content_type, "last_modified": swift_time(item.last_modified)}
    if item.slo_etag:
        out["slo_etag"] = item.slo_etag
    if item.link is not None:
        out["symlink_path"] = item.link.path
        if item.link.etag:
            out["symlink_etag"] = item.link.etag
        if item.link.bytes is not None:
            out["symlink_bytes"] = item.link.bytes
    return out


def _object_xml(item: ObjectEntry | Subdir) -> str:
    if isinstance(item, Subdir):
        return f"<subdir name={quoteattr(item.name)}><name>{escape(item.name)}</name></subdir>"
    return (f"<object><name>{escape(item.name)}</name><hash>{item.hash}</hash>"
            f"<bytes>{item.bytes}</bytes><content_type>{escape(item.content_type)}"
            f"</content_type><last_modified>{swift_time(item.last_modified)}"
            "</last_modified>"
            + (f"<slo_etag>{escape(item.slo_etag)}</slo_etag>" if item.slo_etag else "")
            + "</object>")


def render_containers(fmt: str, account: str, items: list[ContainerEntry | Subdir]) -> bytes:
    if fmt == "json":
        return json.dumps([
            {"subdir": i.name} if isinstance(i, Subdir) else
            {"name": i.name, "count": i.count, "bytes": i.bytes,
             "last_modified": swift_time(i.last_modified), "storage_policy": STORAGE_POLICY}
            for i in items
        ]).encode()
    if fmt == "xml":
        body = "".join(
            f"<subdir name={quoteattr(i.name)}><name>{escape(i.name)}</name></subdir>"
            if isinstance(i, Subdir) else
            f"<container><name>{escape(i.name)}</name><count>{i.count}</count>"
            f"<bytes>{i.bytes}</bytes><last_modified>{swift_time(i.last_modified)}"
            f"</last_modified><storage_policy>{STORAGE_POLICY}</storage_policy></container>"
            for i in items
        )
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<account name={quoteattr(account)}>'
                f"{body}</account>").encode()
    return "".join(i.name + "\n" for i in items).encode()


def content_type_of(fmt: str) -> str:
    return FORMATS[fmt] + "; charset=utf-8"
