"""Swift large objects: Static (SLO) and Dynamic (DLO), over plain objects;
the entry points object handlers call.

An SLO manifest is an object whose body is the manifest in Swift's stored form
(slo_manifest.py) and whose stored headers carry the markers
x-static-large-object, x-object-sysmeta-slo-etag and -slo-size. Stored headers
(not user metadata) hold the markers because S3 clients cannot set them: an S3
user cannot turn an object into a manifest naming other data. A DLO manifest
is an object with the stored header x-object-manifest ("container/prefix"); its
segments are the objects under the prefix, in order. What GET serves of them
is large_content.py's.

Rules:
- SLO PUT checks every segment (exists in this account, etag and size match,
  range satisfiable, at least 1 byte but for the last one) and answers 400
  with Swift's "Errors:" list; nothing is written then. A segment may itself
  be an SLO (a sub-manifest); not a DLO, whose bytes no etag pins.
- ?multipart-manifest=delete deletes the segments (of sub-manifests too), then
  the manifests, answering Swift's bulk summary; long work (a heartbeat PUT,
  a big delete) keeps the connection alive with spaces, as Swift does.
- Segments live in containers of this account (own_bucket decides).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from aiohttp import web

from kurastore.gateway.middlewares import write_to_client
from kurastore.gateway.objects import errors as dom
from kurastore.gateway.objects.api import PutOptions
from kurastore.gateway.swift import errors as swe
from kurastore.gateway.swift import headers as hdr
from kurastore.gateway.swift import symlinks as links
from kurastore.gateway.swift.context import SwiftRequest, empty_response, one_chunk
from kurastore.gateway.swift.large_content import (
    DLO_MAX_SEGMENTS,
    Content,
    content_of,
    dlo_manifest,
    head_status,
    is_slo,
    parse_dlo_manifest,
    read_manifest,
    requested_ranges,
    slo_identity,
    stream,
)
from kurastore.gateway.swift.listing import swift_time
from kurastore.gateway.swift.routes import ACCOUNT_PREFIX
from kurastore.gateway.swift.slo_manifest import (
    MAX_MANIFEST_SEGMENTS,
    MAX_MANIFEST_SIZE,
    Problem,
    answer_body,
    answer_format,
    error_summary,
    etag_part,
    large_etag,
    parse_put_body,
    parse_range,
    raw_form,
    segment_of,
    span_in,
    split_name,
)
from kurastore.metadata import ObjectVersion

# What object handlers and /info use from here (the reading side re-exported).
__all__ = ["DLO_MAX_SEGMENTS", "MAX_MANIFEST_SEGMENTS", "MAX_MANIFEST_SIZE", "SLO_HEADERS",
           "YIELD_FREQUENCY_S", "Content", "content_of", "copy_content", "delete_slo",
           "head_status", "is_slo", "parse_dlo_manifest", "put_slo", "requested_ranges",
           "stream"]

log = logging.getLogger(__name__)

YIELD_FREQUENCY_S = 10  # seconds between keep-alive spaces; /info calls it yield_frequency
HEAD_CONCURRENCY = 4  # segment HEADs in flight while a manifest PUT is checked
SLO_HEADERS = (hdr.SLO_MARKER, hdr.SLO_ETAG, hdr.SLO_SIZE)  # what makes an SLO; POST keeps them
TRUE_VALUES = ("true", "1", "yes", "on", "t", "y")


# --- copies --------------------------------------------------------------------------------


async def copy_content(sw: SwiftRequest, source: ObjectVersion,
                       account_user: str | None = None) -> Content:
    """What a copy of `source` writes: under ?multipart-manifest=get the manifest
    itself (it keeps its markers; an SLO's segments are checked again as the
    destination account, `account_user`'s, sees them: 400 when one fails, as
    Swift's PUT of the manifest there would), else the bytes of the large
    object, or of one part of it under ?part-number=."""
    if sw.query.get("multipart-manifest") == "get":
        if is_slo(source):
            await _recheck(sw, source, account_user)
        return Content(source, source.size, source.etag)
    content = await content_of(sw, source)
    if content.part is None or not content.segments:
        return content
    segment = content.segments[int(sw.query["part-number"]) - 1]
    return replace(content, size=segment.size, segments=(segment,), part=None)


async def _recheck(sw: SwiftRequest, manifest: ObjectVersion, account_user: str | None) -> None:
    entries = json.loads(raw_form(await read_manifest(sw.service, manifest)))
    problems, _ = await _check_segments(sw, entries, account_user)
    if problems:
        raise swe.BadRequest(answer_body("text/plain", {}, problems, "upload").decode())


# --- SLO PUT -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    """A segment as a HEAD of it shows it (an SLO's own size and etag)."""

    version: ObjectVersion
    size: int
    etag: str


async def put_slo(sw: SwiftRequest, opts: PutOptions) -> web.StreamResponse:
    """PUT ?multipart-manifest=put: check the segments, then store the manifest.
    With &heartbeat=on the answer is a 202 at once, the outcome in its body."""
    if (sw.request.content_length or 0) > MAX_MANIFEST_SIZE:
        raise swe.RequestEntityTooLarge(f"Manifest File > {MAX_MANIFEST_SIZE} bytes")
    items = parse_put_body(await sw.read_small(MAX_MANIFEST_SIZE), sw.container, sw.obj)
    fmt = answer_format(sw.headers.get("Accept"))
    if sw.query.get("heartbeat", "").lower() in TRUE_VALUES:
        return await _answer_while(sw, 202, fmt, _put_outcome(sw, opts, items), "upload",
                                   eager=True)
    problems, stored = await _check_segments(sw, items)
    if problems:
        return web.Response(status=400, body=answer_body(fmt, {}, problems, "upload"),
                            content_type=fmt)
    version, etag = await _store(sw, opts, stored)
    return empty_response(201, {"Etag": f'"{etag}"',
                                "Last-Modified": hdr.http_date(version.last_modified)})


async def _put_outcome(sw: SwiftRequest, opts: PutOptions,
                       items: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Problem]]:
    """The heartbeat answer's summary and problems."""
    try:
        problems, stored = await _check_segments(sw, items)
        if problems:
            return error_summary(swe.BadRequest()), problems
        version, etag = await _store(sw, opts, stored)
    except Exception as exc:
        err = swe.to_swift_error(exc)
        if err.status >= 500:
            log.error("SLO PUT %s/%s failed", sw.container, sw.obj, exc_info=exc)
        return error_summary(err), []
    return {"Response Status": "201 Created", "Response Body": "", "Etag": f'"{etag}"',
            "Last Modified": hdr.http_date(version.last_modified)}, []


async def _check_segments(sw: SwiftRequest, items: list[dict[str, Any]],
                          account_user: str | None = None
                          ) -> tuple[list[Problem], list[dict[str, Any]]]:
    """(problems, stored entries): every distinct path HEADed once, in this
    account or `account_user`'s."""
    paths = list(dict.fromkeys(item["path"] for item in items if "path" in item))
    limit = asyncio.Semaphore(HEAD_CONCURRENCY)

    async def head(path: str) -> _Found | str:
        async with limit:
            return await _head_segment(sw, path, account_user)

    found = dict(zip(paths, await asyncio.gather(*(head(p) for p in paths)), strict=True))
    problems: list[Problem] = []
    stored: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if "data" in item:
            stored.append({"data": item["data"]})
            continue
        entry, issues = _stored_entry(item, found[item["path"]], i == len(items) - 1)
        problems += [(quote(item["path"]), issue) for issue in issues]
        stored.append(entry)
    return problems, stored


async def _head_segment(sw: SwiftRequest, path: str,
                        account_user: str | None = None) -> _Found | str:
    """The segment a manifest names, or the status a HEAD of it would answer."""
    try:
        bucket, key = split_name(path)
        await sw.own_bucket(bucket, write=False, account_user=account_user)
        version, _ = await links.follow(  # a segment may be a symlink: its target counts
            sw, await sw.service.head_object(bucket, key),
            ACCOUNT_PREFIX + (account_user or sw.user_id))
    except Exception as exc:
        err = swe.to_swift_error(exc)
        if err.status >= 500:
            raise
        return str(error_summary(err)["Response Status"])
    if hdr.is_expired(version):
        return "404 Not Found"
    if dlo_manifest(version) is not None:
        return "400 Bad Request"  # a DLO's bytes are a listing: no etag can pin them
    if is_slo(version):
        items = None if hdr.SLO_ETAG in version.headers else \
            await read_manifest(sw.service, version)
        size, etag = slo_identity(version, items)
        return _Found(version, size, etag)
    return _Found(version, version.size, version.etag)


def _stored_entry(item: dict[str, Any], found: _Found | str,
                  last: bool) -> tuple[dict[str, Any], list[str]]:
    """The stored form of one path entry, and what is wrong with it (Swift's words)."""
    if isinstance(found, str):
        return {}, [found]
    entry: dict[str, Any] = {
        "name": "/" + item["path"].lstrip("/"), "bytes": found.size, "hash": found.etag,
        "content_type": found.version.content_type,
        "last_modified": swift_time(found.version.last_modified)}
    issues: list[str] = []
    length = found.size
    if item.get("range"):
        span = span_in(parse_range(str(item["range"]))[0], found.size)
        if span is None:
            issues.append("Unsatisfiable Range")
        elif span != (0, found.size - 1):  # the whole object needs no range
            entry["range"] = f"{span[0]}-{span[1]}"
            length = span[1] - span[0] + 1
    if length < 1 and not last:
        issues.append("Too small; each segment must be at least 1 byte.")
    if item.get("size_bytes") is not None and item["size_bytes"] != found.size:
        issues.append("Size Mismatch")
    if item.get("etag") is not None and item["etag"].strip('"') != found.etag:
        issues.append("Etag Mismatch")
    if is_slo(found.version):
        entry["sub_slo"] = True
    return entry, issues


async def _store(sw: SwiftRequest, opts: PutOptions,
                 stored: list[dict[str, Any]]) -> tuple[ObjectVersion, str]:
    """Writes the manifest; (its version, the large object's etag). 422 when the
    client's Etag is not the large object's."""
    etag = large_etag([etag_part(e) for e in stored])
    expected = sw.headers.get("Etag")
    if expected and expected.strip().strip('"') != etag:
        raise swe.UnprocessableEntity()
    body = json.dumps(stored).encode()
    total = sum(segment_of(e).size for e in stored)
    markers = {hdr.SLO_MARKER: "True", hdr.SLO_ETAG: etag, hdr.SLO_SIZE: str(total)}
    opts = replace(opts, headers={**opts.headers, **markers}, content_length=len(body),
                   check=None)
    version = await sw.service.put_object(sw.container, sw.obj, one_chunk(body), opts)
    return version, etag


async def _answer_while(sw: SwiftRequest, status: int, fmt: str,
                        work: Awaitable[tuple[dict[str, Any], list[Problem]]], root: str, *,
                        eager: bool) -> web.StreamResponse:
    """Swift's long-running answer: once `work` takes longer than
    YIELD_FREQUENCY_S (at once when `eager`), the status goes out and then a
    space every YIELD_FREQUENCY_S, so no proxy times the client out; the outcome
    follows as a bulk answer body."""
    task = asyncio.ensure_future(work)
    try:
        if not eager and (await asyncio.wait({task}, timeout=YIELD_FREQUENCY_S))[0]:
            summary, problems = task.result()  # quick: a plain answer, headers after the work
            return web.Response(status=status, content_type=fmt,
                                body=answer_body(fmt, summary, problems, root))
        resp = web.StreamResponse(status=status, headers={"Content-Type": fmt})
        resp.enable_chunked_encoding()
        await resp.prepare(sw.request)
        spacers = _spacers(fmt, eager)
        while True:
            if not await write_to_client(sw.request, resp, next(spacers)):
                return resp
            if (await asyncio.wait({task}, timeout=YIELD_FREQUENCY_S))[0]:
                break
        summary, problems = task.result()
        tail = b"\r\n\r\n" + answer_body(fmt, summary, problems, root)
        if await write_to_client(sw.request, resp, tail):
            await resp.write_eof()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return resp


def _spacers(fmt: str, eager: bool) -> Iterator[bytes]:
    """Keep-alive bytes: spaces; a late XML answer opens with its declaration
    (whitespace may not precede it), as Swift's bulk delete does."""
    if not eager and fmt.endswith("/xml"):
        yield b'<?xml version="1.0" encoding="UTF-8"?>\n'
    while True:
        yield b" "


# --- SLO DELETE ----------------------------------------------------------------------------


async def delete_slo(sw: SwiftRequest, version: ObjectVersion) -> web.StreamResponse:
    """?multipart-manifest=delete: every segment (of sub-manifests too), then the
    manifests; answered 200 with Swift's bulk-delete summary."""
    fmt = answer_format(sw.headers.get("Accept"))
    return await _answer_while(sw, 200, fmt, _delete_outcome(sw, version), "delete",
                               eager=False)


async def _delete_outcome(sw: SwiftRequest, version: ObjectVersion
                          ) -> tuple[dict[str, Any], list[Problem]]:
    summary: dict[str, Any] = {"Response Status": "200 OK", "Response Body": "",
                               "Number Deleted": 0, "Number Not Found": 0}
    errors: list[Problem] = []
    try:
        for name, problem in await _deletion_order(sw, version):
            problem = problem or await _delete_one(
                sw, name, version.etag if name == f"/{sw.container}/{sw.obj}" else None)
            if problem is None:
                summary["Number Deleted"] += 1
            elif problem.startswith("404"):
                summary["Number Not Found"] += 1
            else:
                errors.append((quote(name), problem))
    except swe.SwiftError as err:
        summary.update(error_summary(err))
        return summary, errors
    if errors:
        summary["Response Status"] = "400 Bad Request"
    elif not (summary["Number Deleted"] or summary["Number Not Found"]):
        summary.update({"Response Status": "400 Bad Request",
                        "Response Body": "Invalid bulk delete."})
    return summary, errors


async def _deletion_order(sw: SwiftRequest, top: ObjectVersion
                          ) -> list[tuple[str, str | None]]:
    """(name, problem found already) of everything to delete: segments before
    the manifests naming them, as Swift orders them. A manifest is opened once,
    so manifests naming each other cannot loop."""
    queue: list[dict[str, Any]] = [{"name": f"/{sw.container}/{sw.obj}", "sub_slo": True}]
    order: list[tuple[str, str | None]] = []
    opened: set[str] = set()
    while queue:
        if len(queue) > MAX_MANIFEST_SEGMENTS * 10:  # bounds memory, as Swift does
            raise swe.BadRequest("Too many buffered slo segments to delete.")
        item = queue.pop(0)
        if "data" in item or (item.get("sub_slo") and item["name"] in opened):
            continue  # a manifest named again is deleted once, after its segments
        if not item.get("sub_slo"):
            order.append((item["name"], item.get("problem")))
            continue
        try:
            queue += await _manifest_items(sw, item["name"], None if opened else top)
        except swe.SwiftError as err:
            item["problem"] = "404 Not Found" if err.status == 404 else \
                err.text if err.is_plain else error_summary(err)["Response Status"]
        opened.add(item["name"])
        queue.append({**item, "sub_slo": False})
    return order


async def _manifest_items(sw: SwiftRequest, name: str,
                          version: ObjectVersion | None) -> list[dict[str, Any]]:
    if version is None:
        try:
            bucket, key = split_name(name)
            await sw.own_bucket(bucket, write=False)
            version = await sw.service.head_object(bucket, key)
        except dom.ObjectNotFound:
            raise swe.NotFound("SLO manifest not found") from None
    if not is_slo(version):
        raise swe.BadRequest("Not an SLO manifest")
    return await read_manifest(sw.service, version)


async def _delete_one(sw: SwiftRequest, name: str, if_match: str | None) -> str | None:
    """Deletes one object; None, or the status that DELETE would answer."""
    try:
        bucket, key = split_name(name)
        await sw.own_bucket(bucket, write=True)
        await sw.service.head_object(bucket, key)  # a missing one counts as not found
        await sw.service.delete_object(bucket, key, if_match=if_match)
    except Exception as exc:
        err = swe.to_swift_error(exc)
        if err.status >= 500:
            raise
        return str(error_summary(err)["Response Status"])
    return None
