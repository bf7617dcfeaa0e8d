"""Swift's container versioning by location (versioned_writes): a container with
X-Versions-Location (stack mode) or X-History-Location (history mode) copies an
object's current version into that container before a PUT, a copy or a DELETE
replaces it, named "<name length, 3 hex digits><name>/<its X-Timestamp>".

Rules (as Swift's versioned_writes answers):
- The two headers exclude each other (400 when both are set); an empty value or
  X-Remove-Versions-Location / X-Remove-History-Location turns versioning off.
  The value is stored as given (percent-encoded) and answered in HEAD/GET.
- The versions container must be the same account's; a missing one is 412 when
  something must be archived (a stack-mode DELETE is then a plain one); the
  archive is written on the account's behalf, so a user granted writes to the
  versioned container needs no grant on it.
- POST never makes a version.
- Stack mode: DELETE restores the newest archived version in the object's place
  (and removes it from the archive); with none, it is a plain DELETE. A history
  marker on top (the mode changed) is popped with the version under it.
- History mode: DELETE archives the current version, then records a delete
  marker (an empty object of type DELETE_MARKER) in the archive, then deletes;
  404 (marker still written) when there was nothing to delete.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from kurastore.gateway.objects.api import CopySource, PutOptions, ReadConditions
from kurastore.gateway.objects.errors import BucketNotFound, ObjectNotFound
from kurastore.gateway.swift import errors as swe
from kurastore.gateway.swift import headers as hdr
from kurastore.gateway.swift import listing
from kurastore.gateway.swift.context import SwiftRequest, deleted, one_chunk, swift_settings
from kurastore.metadata import BucketRecord, ObjectVersion

MODES = {"x-versions-location": "stack", "x-history-location": "history"}
HEADER_OF = {"stack": "X-Versions-Location", "history": "X-History-Location"}
DELETE_MARKER = "application/x-deleted;swift_versions_deleted=1"
SETTING = "versions"  # swift settings: {"mode": ..., "location": <as given>}


def capabilities() -> dict[str, Any]:
    return {"allowed_flags": ["x-versions-location", "x-history-location"]}


def updated(sw: SwiftRequest, current: dict[str, Any]) -> dict[str, Any] | None:
    """The container's versioning setting after this request: {} for off, None
    when the request does not touch it."""
    given = {name: sw.headers[name] for name in MODES if name in sw.headers}
    removed = any(f"x-remove-{name[2:]}" in sw.headers for name in MODES)
    if len(given) > 1 and all(given.values()):
        raise swe.BadRequest("Only one of X-Versions-Location or X-History-Location "
                             "may be specified")
    chosen = {name: value for name, value in given.items() if value}
    if chosen:
        name, value = next(iter(chosen.items()))
        location = unquote(value)
        hdr.check_container_name(location)
        if not location:
            raise swe.PreconditionFailed("Version location container name must not be empty")
        return {"mode": MODES[name], "location": value}
    if given or removed:
        return {}
    return None


def location_headers(swift: dict[str, Any]) -> dict[str, str]:
    setting = swift.get(SETTING) or {}
    if not setting:
        return {}
    return {HEADER_OF[setting["mode"]]: setting["location"]}


def _setting(record: BucketRecord) -> dict[str, Any]:
    return swift_settings(record).get(SETTING) or {}


def archive_prefix(obj: str) -> str:
    return f"{len(obj.encode()):03x}{obj}/"


async def _archive_bucket(sw: SwiftRequest, setting: dict[str, Any]) -> str | None:
    """The versions container (None when it does not exist): one of the same
    account's. The archive is written on the account's behalf: a user who may
    write the versioned container needs no grant on it (as in Swift)."""
    location = unquote(setting["location"])
    try:
        record = await sw.service.get_bucket(location)
    except BucketNotFound:
        return None
    if record.owner != sw.user_id:
        raise swe.PreconditionFailed(f"Versions container {location!r} is not this account's")
    return location


def _missing(setting: dict[str, Any]) -> swe.SwiftError:
    return swe.PreconditionFailed(f"Versions container {unquote(setting['location'])!r} "
                                  "not found")


async def _live(sw: SwiftRequest, container: str, obj: str) -> ObjectVersion | None:
    try:
        version = await sw.service.head_object(container, obj)
    except ObjectNotFound:
        return None
    return None if hdr.is_expired(version) else version


async def _copy(sw: SwiftRequest, version: ObjectVersion, bucket: str, key: str) -> None:
    """A server-side copy of `version`, its type, headers and metadata with it."""
    src = CopySource(version.bucket, version.key, version_id=version.version_id,
                     conditions=ReadConditions(if_match=version.etag))
    opts = PutOptions(owner=version.owner or sw.user_id)
    await sw.service.copy_object(src, bucket, key, opts, replace_metadata=False)


async def archive_current(sw: SwiftRequest, record: BucketRecord, obj: str) -> None:
    """Before a write replaces `obj` in `record`'s container: its current version
    into the versions container, when the container keeps versions."""
    setting = _setting(record)
    if not setting:
        return
    archive = await _archive_bucket(sw, setting)
    current = await _live(sw, record.name, obj)
    if current is not None:
        if archive is None:
            raise _missing(setting)
        await _copy(sw, current, archive,
                    archive_prefix(obj) + hdr.timestamp(current.last_modified))


async def delete(sw: SwiftRequest, record: BucketRecord, obj: str) -> web.StreamResponse | None:
    """The DELETE of a versioned container's object; None when the container does
    not keep versions (a plain delete then)."""
    setting = _setting(record)
    if not setting:
        return None
    archive = await _archive_bucket(sw, setting)
    if setting["mode"] == "history":
        if archive is None:
            raise _missing(setting)
        return await _delete_history(sw, record.name, obj, archive)
    if archive is None:  # nothing to pop: a plain DELETE
        return None
    return await _delete_stack(sw, record.name, obj, archive)


async def _delete_history(sw: SwiftRequest, container: str, obj: str, archive: str
                          ) -> web.StreamResponse:
    current = await _live(sw, container, obj)
    if current is not None:
        await _copy(sw, current, archive,
                    archive_prefix(obj) + hdr.timestamp(current.last_modified))
    marker = archive_prefix(obj) + hdr.timestamp(max(time.time(), (
        current.last_modified + 0.00001) if current else 0))
    await sw.service.put_object(archive, marker, one_chunk(b""), PutOptions(
        owner=sw.user_id, content_type=DELETE_MARKER, content_length=0))
    if current is None:
        raise swe.NotFound()
    await sw.service.delete_object(container, obj)
    return deleted()


async def _delete_stack(sw: SwiftRequest, container: str, obj: str, archive: str
                        ) -> web.StreamResponse:
    newest = [e for e in await listing.list_container(sw.service, archive, listing.ListingParams(
        limit=2, prefix=archive_prefix(obj), reverse=True)) if isinstance(e, listing.ObjectEntry)]
    current = await _live(sw, container, obj)
    if newest and newest[0].content_type == DELETE_MARKER:
        # A history-mode marker on top: with an object in place, this DELETE just
        # brings back the "deleted" state; without one, the marker goes and the
        # version under it (if it is data) comes back.
        if current is not None:
            await sw.service.delete_object(container, obj)
            return deleted()
        if len(newest) > 1 and newest[1].content_type != DELETE_MARKER:
            await _restore(sw, archive, newest[1].name, container, obj)
        await sw.service.delete_object(archive, newest[0].name)
        return deleted()
    if newest:
        await _restore(sw, archive, newest[0].name, container, obj)
        return deleted()
    if current is None:
        raise swe.NotFound()
    await sw.service.delete_object(container, obj)
    return deleted()


async def _restore(sw: SwiftRequest, archive: str, name: str, container: str, obj: str) -> None:
    """An archived version back in the object's place, and out of the archive."""
    previous = await sw.service.head_object(archive, name)
    await _copy(sw, previous, container, obj)
    await sw.service.delete_object(archive, name)
