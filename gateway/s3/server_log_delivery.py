"""Delivery of S3 server access logs: records of the requests on buckets with logging
on, buffered per source bucket and written as objects into their target bucket.

Path: the frontend `watch`es every S3 request that names a bucket. When the request
is over (middlewares.ON_COMPLETE) `_note` formats its record (server_log.entry_of)
and puts it on a bounded queue: no I/O and nothing awaited on the request's path, and
a request on a bucket already known to have logging off costs one dict lookup. One
task takes the records, finds each source bucket's configuration (the bucket cache)
and appends the line to the buffer of that source bucket and target. A buffer becomes
one log object when it is `roll_s` old, when it holds `max_object_bytes`, and at clean
shutdown (`close`). Objects are written through the object service like any other
(erasure-coded, the target's default encryption), owned by the target bucket's owner,
with the configuration's TargetGrants as their ACL. Deliveries are not requests: they
never reach the middlewares, so they are never logged themselves, whatever the target.

Before each delivery the target is checked again (it exists, has the source's owner,
still grants the delivery: bucket_logging.delivery_allowed); a refused delivery drops
its records with a warning.

Best effort, as AWS's delivery is. What is lost:
- a gateway that dies without a clean shutdown (crash, SIGKILL, out of memory, power)
  loses every record it still holds: up to `roll_s` of requests per logged bucket,
  at most `max_buffer_bytes` in all, plus the records queued;
- records beyond `max_queue` waiting, or beyond `max_buffer_bytes` buffered, are
  dropped (counted in `dropped`, warned once a minute), so a flood of requests
  never grows the gateway's memory;
- a delivery that fails (pods down, target deleted, grant withdrawn) drops its buffer.
A request whose record was lost was still answered normally: logging never fails or
slows a client's request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from kurastore.gateway.middlewares import ON_COMPLETE
from kurastore.gateway.objects.api import PutOptions
from kurastore.gateway.s3 import access, acl, bucket_logging, server_log
from kurastore.metadata import BucketNotFound, BucketRecord

if TYPE_CHECKING:
    from kurastore.gateway.objects.service import ObjectService

log = logging.getLogger("kurastore.gateway.server_log")

# request key: the bucket record the frontend loaded
BUCKET_RECORD = web.RequestKey("s3_bucket_record", BucketRecord)
DAY_S = 86_400
_STOP = object()  # the queue's last item: deliver everything and end


@dataclass
class _Buffer:
    source: BucketRecord
    config: Mapping[str, Any]  # the configuration the records were taken under
    day: float | None  # EventTime partitions: midnight (UTC) of the records' day
    opened: float  # time.monotonic() of the first record
    lines: list[str] = field(default_factory=list)
    size: int = 0


class ServerLogDelivery:
    def __init__(self, service: ObjectService, *, roll_s: float = 300.0,
                 max_object_bytes: int = 8 << 20, max_buffer_bytes: int = 64 << 20,
                 max_queue: int = 10_000) -> None:
        self._service = service
        self._roll_s = roll_s
        self._max_object_bytes = max_object_bytes
        self._max_buffer_bytes = max_buffer_bytes
        self._queue: asyncio.Queue[Any] = asyncio.Queue(max_queue)
        self._buffers: dict[tuple[Any, ...], _Buffer] = {}
        self._buffered = 0
        self._task: asyncio.Task[None] | None = None
        self._warned_at = 0.0
        self.delivered = 0  # log objects written
        self.dropped = 0  # records lost (queue or buffers full, delivery failed)

    # --- the request side (never awaits) --------------------------------------------------

    def watch(self, request: web.Request) -> None:
        """Log this request when it is over, if its bucket has logging on."""
        request[server_log.ARRIVED] = time.monotonic()
        request.setdefault(ON_COMPLETE, []).append(self._note)

    def _note(self, request: web.Request, response: web.StreamResponse | None, status: int,
              elapsed_s: float) -> None:
        record = request.get(BUCKET_RECORD)
        if record is not None and bucket_logging.config_of(record.settings) is None:
            return
        if not request.get(server_log.S3_BUCKET) or self._task is None:
            return
        if request.get(server_log.ERROR_CODE) == "NoSuchBucket":  # nothing to log it into
            return
        entry = server_log.entry_of(request, response, status, elapsed_s)
        try:
            self._queue.put_nowait((entry, record))
        except asyncio.QueueFull:
            self._drop(1, "the queue of records is full")

    # --- lifetime ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="server-access-log")

    async def close(self, timeout_s: float = 30.0) -> None:
        """Clean shutdown: every record taken so far is delivered (within timeout_s)."""
        task, self._task = self._task, None  # no new records from here on
        if task is None:
            return
        await self._queue.put(_STOP)
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            log.warning("server access logs: delivery at shutdown cut off after %.0f s",
                        timeout_s)

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._until_next_roll()):
                    item = await self._queue.get()
            except TimeoutError:
                item = None
            if item is _STOP:
                break
            try:
                if item is not None:
                    await self._take(*item)
                await self._deliver_due()
            except Exception:  # one bad record or delivery never stops the logging
                log.exception("server access logs: delivery failed")
        for key in list(self._buffers):
            await self._deliver(self._buffers.pop(key))

    def _until_next_roll(self) -> float:
        if not self._buffers:
            return self._roll_s
        oldest = min(buf.opened for buf in self._buffers.values())
        return max(0.0, oldest + self._roll_s - time.monotonic())

    # --- buffering -----------------------------------------------------------------------

    async def _take(self, entry: server_log.Entry, record: BucketRecord | None) -> None:
        if record is None:  # the request failed before its bucket was loaded
            try:
                record = await self._service.get_bucket(entry.bucket)
            except BucketNotFound:
                return
        config = bucket_logging.config_of(record.settings)
        if config is None:
            return
        line = server_log.record(record.owner, entry)
        size = len(line.encode())
        if self._buffered + size > self._max_buffer_bytes:
            self._drop(1, "the buffers are full")
            return
        day = (entry.received - entry.received % DAY_S
               if config.get("date_source") == "EventTime" else None)
        key = (record.name, config["target_bucket"], config["target_prefix"],
               config.get("key_format"), day)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = _Buffer(record, config, day, time.monotonic())
        buf.lines.append(line)
        buf.size += size
        self._buffered += size
        if buf.size >= self._max_object_bytes:
            await self._deliver(self._buffers.pop(key))

    async def _deliver_due(self) -> None:
        now = time.monotonic()
        for key in [k for k, b in self._buffers.items() if b.opened + self._roll_s <= now]:
            await self._deliver(self._buffers.pop(key))

    # --- delivery ------------------------------------------------------------------------

    async def _deliver(self, buf: _Buffer) -> None:
        self._buffered -= buf.size
        prefix, target_name = buf.config["target_prefix"], buf.config["target_bucket"]
        try:
            target = await self._service.get_bucket(target_name)
        except BucketNotFound:
            self._drop(len(buf.lines), f"target bucket {target_name} does not exist")
            return
        if target.owner != buf.source.owner or not bucket_logging.delivery_allowed(
            buf.source, target, prefix
        ):
            self._drop(len(buf.lines), f"target bucket {target_name} refuses the delivery")
            return
        body = "".join(buf.lines).encode()
        key = server_log.object_key(
            prefix, partitioned=buf.config.get("key_format") == bucket_logging.PARTITIONED,
            owner=buf.source.owner, region=buf.source.region, bucket=buf.source.name,
            when=buf.day if buf.day is not None else time.time(),
            unique=os.urandom(8).hex().upper(),
        )
        opts = PutOptions(owner=target.owner, content_type="text/plain",
                          headers=_acl_headers(buf.config, target), content_length=len(body))
        try:
            await self._service.put_object(target.name, key, _once(body), opts)
        except Exception as exc:
            self._drop(len(buf.lines), f"writing {target_name}/{key} failed: {exc!r}")
            return
        self.delivered += 1

    def _drop(self, records: int, why: str) -> None:
        self.dropped += records
        now = time.monotonic()
        if now - self._warned_at >= 60.0:
            self._warned_at = now
            log.warning("server access logs: %d record(s) dropped: %s (%d dropped so far)",
                        records, why, self.dropped)


def _acl_headers(config: Mapping[str, Any], target: BucketRecord) -> dict[str, str]:
    """The log object's ACL: the target owner's FULL_CONTROL and the TargetGrants."""
    grants = bucket_logging.grants_of(config)
    if not grants or access.acls_disabled(target):
        return {}
    return acl.object_headers((*acl.default(target.owner), *grants), target.owner)


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def note_prepared(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: when a watched request's answer started (turn-around)."""
    if server_log.ARRIVED in request:
        request[server_log.PREPARED] = time.monotonic()
