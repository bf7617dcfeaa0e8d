"""GET and HEAD: a version's bytes, streamed from its pinned pods (DESIGN.md, read path).

Rules:
- Every clean error (not found, precondition, not modified, range, part number)
  is raised by `open_object` before a reader exists; a failure while iterating
  means the connection must be dropped, never an error in the body.
- The reader reads only the stripes of the range and, per pod, one request
  for a run of frames (about `read_batch_bytes`); every frame is verified.
  With all wanted data blocks good nothing is decoded and the block payloads
  are yielded as views, without a copy.
- A missing, unreachable or corrupt block: parity is read for the stripes
  concerned, they are decoded in the executor, the read is counted as degraded
  and the block queued for the healer. A slow or hung pod costs one hedge
  delay, then parity is read beside it; a pod known to be in trouble is read
  around from the start (stripes.py, health.py). A stripe that cannot be
  rebuilt leads to one re-read of the version record (the rebalancer may have
  re-pinned it) before DataLost.
- At most `read_prefetch_batches` batches are fetched ahead of the client, and
  only while the gateway's read budget has room for them (budget.py); without
  room a GET reads one stripe at a time, nothing ahead, and never waits for room.
- An encrypted version is opened (its data key unsealed, the SSE-C key checked)
  before a reader exists, and read through a DecryptingReader (encryption.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from kurastore.erasure import ErasureParams
from kurastore.gateway.objects.api import ByteRange, ObjectReader, ReadConditions
from kurastore.gateway.objects.conditions import check_read_conditions, resolve_range
from kurastore.gateway.objects.context import ObjectContext
from kurastore.gateway.objects.encryption import (
    INLINE_LABEL,
    DecryptingReader,
    data_key_of,
    keystream_xor,
)
from kurastore.gateway.objects.errors import (
    DataLost,
    InvalidArgument,
    InvalidPartNumber,
    InvalidRange,
)
from kurastore.gateway.objects.stripes import BatchRead
from kurastore.metadata import HealItem, ObjectNotFound, ObjectVersion, PartLayout

log = logging.getLogger(__name__)


async def lookup(
    ctx: ObjectContext, bucket: str, key: str, version_id: str | None
) -> ObjectVersion:
    version = await ctx.store.get_version(bucket, key, version_id)
    if version.is_delete_marker:  # only reachable by version id
        raise ObjectNotFound(
            f"{key} version {version.version_id} is a delete marker",
            delete_marker=True,
            version_id=version.version_id,
        )
    return version


def part_span(version: ObjectVersion, part_number: int) -> tuple[int, int]:
    """(first, last) bytes of one part; a plain object is its own part 1."""
    if part_number < 1:
        raise InvalidArgument("part number must be >= 1")
    if len(version.parts) <= 1:
        if part_number != 1:
            raise InvalidPartNumber(version.size)
        return 0, version.size - 1
    if part_number > len(version.parts):
        raise InvalidPartNumber(version.size)
    offset = sum(part.size for part in version.parts[: part_number - 1])
    return offset, offset + version.parts[part_number - 1].size - 1


def parts_count(version: ObjectVersion) -> int:
    return max(1, len(version.parts))


async def head_object(
    ctx: ObjectContext,
    bucket: str,
    key: str,
    *,
    version_id: str | None = None,
    part_number: int | None = None,
    conditions: ReadConditions = ReadConditions(),
    customer_key: bytes | None = None,
    verify_key: bool = False,
) -> ObjectVersion:
    """The version's record. `verify_key`: answer as a read of its bytes would about
    its encryption (an SSE-C object needs its key); metadata reads (tags, ACLs) skip it."""
    version = await lookup(ctx, bucket, key, version_id)
    if verify_key:
        data_key_of(ctx.keyring, version.encryption, version.object_id, customer_key)
    check_read_conditions(version, conditions)
    if part_number is not None:
        part_span(version, part_number)
    return version


async def open_object(
    ctx: ObjectContext,
    bucket: str,
    key: str,
    *,
    version_id: str | None = None,
    byte_range: ByteRange | None = None,
    part_number: int | None = None,
    conditions: ReadConditions = ReadConditions(),
    customer_key: bytes | None = None,
) -> ObjectReader:
    version = await lookup(ctx, bucket, key, version_id)
    data_key = data_key_of(ctx.keyring, version.encryption, version.object_id, customer_key)
    check_read_conditions(version, conditions)
    check_inline(version, data_key)
    reader = reader_for(ctx, version, byte_range=byte_range, part_number=part_number)
    return reader if data_key is None else DecryptingReader(reader, data_key)


def decrypted_reader_for(
    ctx: ObjectContext,
    version: ObjectVersion,
    customer_key: bytes | None,
    *,
    byte_range: ByteRange | None = None,
) -> ObjectReader:
    """A reader of `version`'s bytes in the clear (copies read their source this way)."""
    data_key = data_key_of(ctx.keyring, version.encryption, version.object_id, customer_key)
    check_inline(version, data_key)
    reader = reader_for(ctx, version, byte_range=byte_range)
    return reader if data_key is None else DecryptingReader(reader, data_key)


def check_inline(version: ObjectVersion, data_key: bytes | None) -> None:
    """An inline version's bytes live in the metadata record, where no frame hash
    guards them: they are checked against the ETag (their MD5, as written) before a
    reader exists, so a record damaged on disk answers DataLost, never wrong bytes."""
    data = version.inline
    if data is None:
        return
    if data_key is not None:
        data = keystream_xor(data_key, INLINE_LABEL, 0, data)
    if len(data) != version.size or hashlib.md5(data).hexdigest() != version.etag:
        log.error("inline version %s of %s/%s does not match its ETag: damaged record",
                  version.object_id, version.bucket, version.key)
        raise DataLost(f"{version.bucket}/{version.key}: stored bytes do not match the ETag")


def reader_for(
    ctx: ObjectContext,
    version: ObjectVersion,
    *,
    byte_range: ByteRange | None = None,
    part_number: int | None = None,
) -> StripeReader:
    """The stored bytes of `version` (ciphertext when it is encrypted)."""
    if part_number is not None:
        if byte_range is not None:
            raise InvalidArgument("Range and partNumber cannot be used together")
        first, last = part_span(version, part_number)
        return StripeReader(ctx, version, first, last, True)
    if byte_range is not None and version.size == 0:
        raise InvalidRange(0)
    first, last, partial = resolve_range(version.size, byte_range)
    return StripeReader(ctx, version, first, last, partial)


@dataclass(frozen=True)
class _Batch:
    part: PartLayout
    first_stripe: int
    last_stripe: int
    lo: int  # first wanted byte, relative to the part
    hi: int  # one past the last wanted byte, relative to the part


class StripeReader(ObjectReader):
    def __init__(
        self,
        ctx: ObjectContext,
        version: ObjectVersion,
        start: int,
        end: int,
        is_partial: bool,
    ) -> None:
        self._ctx = ctx
        self.version = version
        self.start = start
        self.end = end
        self.is_partial = is_partial
        self.parts_count = parts_count(version)
        self._gen: AsyncIterator[memoryview] | None = None
        self._reread: asyncio.Future[None] | None = None
        self._degraded = False
        self._healed: set[tuple[str, int]] = set()
        self._down: set[tuple[int, str, int]] = set()  # (epoch, tag, index) unreadable

    def __aiter__(self) -> AsyncIterator[memoryview]:
        if self._gen is None:
            self._gen = self._iterate()
        return self._gen

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()  # type: ignore[attr-defined]

    @property
    def _params(self) -> ErasureParams:
        v = self.version
        return ErasureParams(v.k, v.m, v.block_size)

    def _batches(self) -> list[_Batch]:
        if self.length <= 0 or self.version.inline is not None:
            return []
        params = self._params
        per_request = max(1, self._ctx.config.read_batch_bytes // params.block_size)
        batches = []
        offset = 0
        for part in self.version.parts:
            lo = max(self.start, offset) - offset
            hi = min(self.end + 1, offset + part.size) - offset
            offset += part.size
            if lo >= hi:
                continue
            first = lo // params.stripe_size
            last = (hi - 1) // params.stripe_size
            for s0 in range(first, last + 1, per_request):
                s1 = min(last, s0 + per_request - 1)
                batches.append(_Batch(part, s0, s1, lo, hi))
        return batches

    def _cost(self, batch: _Batch) -> int:
        """Bytes a batch holds once fetched, near enough: its wanted object bytes and a
        block for the edges (what the read budget is charged)."""
        params = self._params
        lo = max(batch.lo, batch.first_stripe * params.stripe_size)
        hi = min(batch.hi, (batch.last_stripe + 1) * params.stripe_size)
        return hi - lo + params.block_size

    async def _iterate(self) -> AsyncIterator[memoryview]:
        if self.version.inline is not None:
            if self.length > 0:
                self._ctx.stats.bytes_read += self.length
                yield memoryview(self.version.inline)[self.start : self.end + 1]
            return
        budget = self._ctx.read_budget
        ahead = self._ctx.config.read_prefetch_batches
        batches = deque(self._batches())
        pending: deque[tuple[asyncio.Task[list[memoryview]], int]] = deque()  # (fetch, charge)
        try:
            while batches or pending:
                if batches:
                    charge = budget.try_take(self._cost(batches[0]))
                    if charge or not pending:  # else: let what was fetched ahead go first
                        batch = batches.popleft()
                        if not charge and batch.first_stripe < batch.last_stripe:
                            # The budget is spent: one stripe now, uncharged, nothing ahead.
                            first = batch.first_stripe
                            batches.appendleft(dataclasses.replace(batch, first_stripe=first + 1))
                            batch = dataclasses.replace(batch, last_stripe=first)
                        pending.append((asyncio.create_task(self._fetch(batch)), charge))
                        if charge and batches and len(pending) <= ahead:
                            continue
                task, charge = pending.popleft()
                try:
                    for piece in await task:
                        yield piece
                finally:
                    budget.give(charge)
        finally:
            for task, _charge in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*(task for task, _charge in pending),
                                     return_exceptions=True)
            for _task, charge in pending:
                budget.give(charge)

    async def _fetch(self, batch: _Batch) -> list[memoryview]:
        while True:
            used = self.version
            try:
                pieces = await self._fetch_once(batch, used)
            except DataLost:
                # One re-read per reader, shared by the batches that fail meanwhile.
                if self._reread is None:
                    self._reread = asyncio.ensure_future(self._repin())
                await self._reread
                if self.version is used:
                    raise
                continue
            self._ctx.stats.bytes_read += sum(len(p) for p in pieces)
            return pieces

    async def _repin(self) -> None:
        """Read the record again once: did the rebalancer move this version?"""
        v = self.version
        try:
            fresh = await self._ctx.store.get_version(v.bucket, v.key, v.version_id)
        except Exception:
            return
        if fresh.object_id != v.object_id or (fresh.epoch, fresh.partition) == (
            v.epoch, v.partition
        ):
            return
        log.info("version %s re-pinned to epoch %d while reading", v.object_id, fresh.epoch)
        self.version = fresh

    async def _fetch_once(self, batch: _Batch, version: ObjectVersion) -> list[memoryview]:
        params = ErasureParams(version.k, version.m, version.block_size)
        read = BatchRead(self._ctx, version, batch.part, params,
                         batch.first_stripe, batch.last_stripe, batch.lo, batch.hi, self._down)
        try:
            pieces = await read.run()
        finally:
            self._ctx.stats.hedged_reads += read.hedged
        if read.bad or read.degraded_stripes:
            await self._report(version, batch.part, read.bad, read.degraded_stripes)
        return pieces

    async def _report(
        self, v: ObjectVersion, part: PartLayout, bad: dict[int, str], stripes: int
    ) -> None:
        stats = self._ctx.stats
        if stripes:
            stats.degraded_stripes += stripes
            if not self._degraded:
                self._degraded = True
                stats.degraded_reads += 1
        now = time.time()
        items = []
        for index, reason in sorted(bad.items()):
            if (part.shard_tag, index) in self._healed:
                continue
            self._healed.add((part.shard_tag, index))
            items.append(HealItem(v.object_id, part.shard_tag, index, v.partition, v.epoch,
                                  reason, now))
        if items:
            try:
                await self._ctx.store.queue_heal(items)
            except Exception:
                log.exception("queueing %d blocks of %s for healing failed", len(items),
                              v.object_id)

