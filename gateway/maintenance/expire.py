"""The expiry worker: removes objects past their X-Delete-At (Swift's object
expirer).

Work: only containers flagged "expiring" in their Swift settings are walked
(the Swift adapter flags a container when it stores an object with an expiry,
so a store that never uses X-Delete-At costs one bucket listing per pass).
Each flagged container is listed in pages and every latest version whose
expires_at has passed is deleted.

Rules:
- The delete is conditional on the etag seen in the listing: an object
  overwritten since (with or without a new expiry) is never removed by a
  stale decision.
- Readers do not wait for this worker: the Swift adapter already answers 404
  for an object past its expiry; this only frees the space.
- A pass is bounded (`max_deletes`) and the loop sleeps `interval_s` between
  passes; a failure is logged and retried at the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from kurastore.metadata import BucketNotFound, ObjectNotFound, PreconditionFailed

if TYPE_CHECKING:
    from kurastore.gateway.objects.service import ObjectService

log = logging.getLogger(__name__)

SETTINGS_KEY = "swift"  # the Swift adapter's part of BucketRecord.settings
PAGE = 1000


def is_flagged(settings: object) -> bool:
    swift = settings.get(SETTINGS_KEY) if isinstance(settings, dict) else None
    return bool(isinstance(swift, dict) and swift.get("expiring"))


async def expire_bucket(service: ObjectService, bucket: str, now: float, budget: int) -> int:
    """Deletes up to `budget` expired objects of one bucket; returns how many."""
    removed = 0
    start = ""
    while removed < budget:
        page = await service.list_objects(bucket, start_after=start, max_keys=PAGE)
        for version in page.entries:
            if version.expires_at is None or version.expires_at > now:
                continue
            with contextlib.suppress(PreconditionFailed, ObjectNotFound):
                await service.delete_object(bucket, version.key, if_match=version.etag)
                removed += 1
                if removed >= budget:
                    return removed
        if not page.is_truncated or not page.next_marker:
            break
        start = page.next_marker
    return removed


async def expire_once(service: ObjectService, now: float | None = None,
                      max_deletes: int = 10_000) -> int:
    """One pass over the flagged containers; returns how many objects it removed."""
    now = time.time() if now is None else now
    removed = 0
    for bucket in await service.list_buckets():
        if removed >= max_deletes:
            break
        if not is_flagged(dict(bucket.settings)):
            continue
        with contextlib.suppress(BucketNotFound):  # deleted while we walked
            removed += await expire_bucket(service, bucket.name, now, max_deletes - removed)
    if removed:
        log.info("expiry pass removed %d objects", removed)
    return removed


async def run_expirer(service: ObjectService, *, interval_s: float,
                      stop_event: asyncio.Event) -> None:
    """Passes every `interval_s` until `stop_event` is set."""
    while not stop_event.is_set():
        try:
            await expire_once(service)
        except Exception:
            log.exception("expiry pass failed; retrying in %.0f s", interval_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), timeout=interval_s)
