"""The lifecycle worker: applies the buckets' lifecycle rules (S3's bucket
lifecycle configuration; the rules and their dates are objects/lifecycle.py's).

Work, per bucket with rules, for the keys under each rule's prefix:
- a current version past its expiration is deleted as a DELETE without a
  version id would delete it: removed in an unversioned bucket, hidden behind
  a delete marker in a versioned one;
- a noncurrent version past its NoncurrentVersionExpiration (counted from when
  its successor was written, keeping NewerNoncurrentVersions) is removed;
- a delete marker left with no older version is removed (ExpiredObjectDeleteMarker);
- a multipart upload older than AbortIncompleteMultipartUpload is aborted.

Rules:
- Deleting a current version is conditional on the etag seen in the listing: an
  object overwritten since is never removed by a stale decision.
- Versions under Object Lock (retention or legal hold) are never removed.
- A pass is bounded by `budget` actions; a failure in one bucket is logged and
  the pass goes on with the next one. `run_lifecycle` makes a pass every hour;
  a shortened day (`day_s`, to try rules out) makes them as often as needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kurastore.gateway.objects import lifecycle as lc
from kurastore.gateway.objects.retention import protected
from kurastore.metadata import (
    BucketNotFound,
    ObjectNotFound,
    ObjectVersion,
    PreconditionFailed,
    UploadNotFound,
    VersionNotFound,
    VersionProtected,
)

if TYPE_CHECKING:
    from kurastore.gateway.objects.service import ObjectService

log = logging.getLogger(__name__)

PAGE = 1000
# VersionProtected: a retention or legal hold set after this pass looked at the version.
_GONE = (ObjectNotFound, VersionNotFound, PreconditionFailed, UploadNotFound, VersionProtected)


class _Pass:
    def __init__(self, service: ObjectService, bucket: str, rules: Sequence[lc.Rule],
                 now: float, budget: int, day_s: float) -> None:
        self.service, self.bucket, self.rules = service, bucket, rules
        self.now, self.budget, self.done, self.day_s = now, budget, 0, day_s

    @property
    def spent(self) -> bool:
        return self.done >= self.budget

    async def run(self) -> int:
        prefixes = sorted({lc.rule_prefix(r) for r in self.rules if r.get("status") == "Enabled"})
        # A prefix covered by a shorter one is walked once, with it.
        walk = [p for p in prefixes if not any(p != q and p.startswith(q) for q in prefixes)]
        for prefix in walk:
            if not self.spent:
                await self._versions(prefix)
            if not self.spent:
                await self._uploads(prefix)
        return self.done

    async def _act(self, coro) -> None:
        with contextlib.suppress(*_GONE):
            await coro
            self.done += 1

    async def _versions(self, prefix: str) -> None:
        key_marker, vid_marker = "", ""
        key, newest, older = None, None, 0  # the key being walked and what we saw of it
        while not self.spent:
            page = await self.service.list_versions(
                self.bucket, prefix=prefix, key_marker=key_marker,
                version_id_marker=vid_marker, max_keys=PAGE,
            )  # fmt: skip
            for version in page.entries:
                if version.key != key:
                    key, newest, older = version.key, None, 0
                await self._one(version, newest, older)
                older += 0 if newest is None else (0 if version.is_delete_marker else 1)
                newest = version
                if self.spent:
                    return
            if not page.is_truncated:
                return
            key_marker, vid_marker = page.next_key_marker, page.next_version_id_marker

    async def _one(self, v: ObjectVersion, successor: ObjectVersion | None, newer: int) -> None:
        """`successor`: the next newer version of the key (None: `v` is the newest);
        `newer`: how many noncurrent versions of the key are newer than `v`."""
        if successor is None:
            if v.is_delete_marker:
                await self._lone_marker(v)
                return
            found = lc.current_expiry(self.rules, v, self.day_s)
            if found is not None and found[0] <= self.now and not protected(v, now=self.now):
                await self._act(self.service.delete_object(self.bucket, v.key, if_match=v.etag))
            return
        if v.is_delete_marker:
            return
        when = lc.noncurrent_expiry(self.rules, v, successor.last_modified, newer, self.day_s)
        if when is not None and when <= self.now and not protected(v, now=self.now):
            await self._act(self.service.delete_object(
                self.bucket, v.key, version_id=v.version_id,
                refuse=lambda found: protected(found, now=self.now)))

    async def _lone_marker(self, marker: ObjectVersion) -> None:
        if not lc.lone_marker_expired(self.rules, marker, self.now, self.day_s):
            return
        page = await self.service.list_versions(self.bucket, prefix=marker.key, max_keys=2)
        alone = [e for e in page.entries if e.key == marker.key]
        if len(alone) == 1 and alone[0].version_id == marker.version_id:
            await self._act(self.service.delete_object(self.bucket, marker.key,
                                                       version_id=marker.version_id))

    async def _uploads(self, prefix: str) -> None:
        key_marker, id_marker = "", ""
        while not self.spent:
            page = await self.service.list_uploads(
                self.bucket, prefix=prefix, key_marker=key_marker,
                upload_id_marker=id_marker, max_uploads=PAGE,
            )  # fmt: skip
            for upload in page.uploads:
                when = lc.abort_after(self.rules, upload.key, upload.initiated, self.day_s)
                if when is not None and when <= self.now:
                    await self._act(self.service.abort_upload(self.bucket, upload.key,
                                                              upload.upload_id))
                if self.spent:
                    return
            if not page.is_truncated:
                return
            key_marker, id_marker = page.next_key_marker, page.next_upload_id_marker


async def apply_bucket(service: ObjectService, bucket: str, rules: Sequence[lc.Rule],
                       now: float, budget: int, day_s: float = lc.DAY_S) -> int:
    """Applies one bucket's rules; returns how many versions and uploads it removed."""
    return await _Pass(service, bucket, rules, now, budget, day_s).run()


async def lifecycle_once(service: ObjectService, now: float | None = None,
                         max_actions: int = 10_000, day_s: float = lc.DAY_S) -> int:
    """One pass over every bucket with lifecycle rules; returns how many actions."""
    now = time.time() if now is None else now
    done = 0
    for bucket in await service.list_buckets():
        rules = lc.rules_of(dict(bucket.settings))
        if not rules or done >= max_actions:
            continue
        try:
            done += await apply_bucket(service, bucket.name, rules, now, max_actions - done,
                                       day_s)
        except BucketNotFound:  # deleted while we walked
            continue
        except Exception:
            log.exception("lifecycle pass failed on bucket %s", bucket.name)
    if done:
        log.info("lifecycle pass removed or aborted %d versions and uploads", done)
    return done


async def run_lifecycle(service: ObjectService, *, stop_event: asyncio.Event,
                        day_s: float = lc.DAY_S, interval_s: float | None = None) -> None:
    """A pass every `interval_s` (default: an hour, or a quarter of a day when days
    are shortened below four hours) until `stop_event` is set."""
    every = interval_s if interval_s is not None else min(3600.0, day_s / 4)
    while not stop_event.is_set():
        try:
            await lifecycle_once(service, day_s=day_s)
        except Exception:
            log.exception("lifecycle pass failed; retrying in %.0f s", every)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), timeout=every)
