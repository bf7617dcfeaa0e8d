"""The collector: deletes the shards nothing refers to any more.

Work comes from the metadata store's collect queue, filled in the same
transaction as the change that orphaned the shards (overwrite, delete, aborted
write or upload, replaced part). Stale pending writes (a PUT whose gateway died
or that ran past the grace period) are turned into queue items by aborting them.

Rules:
- A ShardRef is deleted on every one of the `width` pods of its partition in
  the map of its epoch; only when every pod answered is the item done. A pod
  that cannot be reached leaves the item queued again for a later try.
- Deleting is idempotent (a shard already gone counts as deleted), so a crash
  between the pods' deletes and `done_collect` only repeats work.
- Shards are never deleted here before the metadata no longer names them: the
  queue is filled only after the change committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from kurastore.gateway.objects.context import Pods
from kurastore.gateway.objects.topology import Topology
from kurastore.metadata import PlacementMapNotFound, ShardRef, Store

log = logging.getLogger(__name__)

BATCH = 100
RETRY_S = 60.0
POD_TIMEOUT_S = 30.0


async def _delete_everywhere(pods: Pods, topology: Topology, ref: ShardRef) -> bool:
    """True when every pod of the ref's partition deleted (or never had) its shards."""
    if ref.width == 0:
        return True  # an inline object: nothing was ever on a pod
    try:
        pmap = await topology.get_map(ref.epoch)
    except PlacementMapNotFound:
        log.error("collect %s: epoch %d is unknown; retrying later", ref.object_id, ref.epoch)
        return False
    urls = [topology.url_of(pod_id) for pod_id in pmap.pods_for(ref.partition, ref.width)]
    if any(url is None for url in urls):
        await topology.refresh()
        urls = [topology.url_of(pod_id) for pod_id in pmap.pods_for(ref.partition, ref.width)]

    async def one(url: str | None) -> bool:
        if url is None:
            return False
        try:
            async with asyncio.timeout(POD_TIMEOUT_S):
                await pods.delete_object_shards(url, ref.partition, ref.object_id, ref.shard_tag)
        except Exception as exc:
            log.info("collect %s on %s failed: %r", ref.object_id, url, exc)
            return False
        return True

    results = await asyncio.gather(*(one(url) for url in urls))
    return all(results)


async def collect_once(
    store: Store,
    pods: Pods,
    topology: Topology,
    *,
    now: float | None = None,
    limit: int = BATCH,
    pending_grace_s: float | None = None,
    retry_s: float = RETRY_S,
) -> int:
    """One round: abort pending writes older than `pending_grace_s` (when given), then
    delete the shards of up to `limit` due collect items. Returns the items done."""
    now = time.time() if now is None else now
    if pending_grace_s is not None:
        await abandon_writes(store, now - pending_grace_s)
    items = await store.take_collect(now, limit)
    if not items:
        return 0
    outcomes = await asyncio.gather(
        *(_delete_everywhere(pods, topology, ref) for _id, ref in items)
    )
    done = [item_id for (item_id, _ref), ok in zip(items, outcomes, strict=True) if ok]
    retry = [ref for (_id, ref), ok in zip(items, outcomes, strict=True) if not ok]
    if retry:
        # Queued again with a delay (then the old item is done), so one dead pod
        # never makes the collector spin on the same items.
        await store.queue_collect(retry, not_before=now + retry_s)
    await store.done_collect([item_id for item_id, _ref in items])
    return len(done)


async def abandon_writes(store: Store, started_before: float) -> int:
    """Abort every pending write started before the given time (queues its shards)."""
    stale = await store.stale_writes(started_before)
    for pending in stale:
        log.info("abandoning pending write %s.%s of %s/%s", pending.object_id,
                 pending.shard_tag, pending.bucket, pending.key)
        await store.abort_write(pending)
    return len(stale)


async def run_collector(
    store: Store,
    pods: Pods,
    topology: Topology,
    *,
    interval_s: float,
    stop_event: asyncio.Event,
    pending_grace_s: float = 6 * 3600.0,
    abandon_before: float | None = None,
) -> None:
    """Collect until `stop_event` is set. `abandon_before`: at start, abort every pending
    write older than this (a single gateway passes its start time: those writes belong
    to a previous run that died)."""
    if abandon_before is not None:
        try:
            count = await abandon_writes(store, abandon_before)
            if count:
                log.info("aborted %d writes left by a previous run", count)
        except Exception:
            log.exception("aborting the writes of a previous run failed")
    while not stop_event.is_set():
        done = 0
        try:
            done = await collect_once(store, pods, topology, pending_grace_s=pending_grace_s)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("collector round failed")
        if done >= BATCH:
            continue  # more is due: no pause
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval_s):
                await stop_event.wait()
