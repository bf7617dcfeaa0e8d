"""PUT: a body becomes a committed version (DESIGN.md, write path).

Rules:
- The pending write is recorded before the first shard is sent; the version is
  committed last, shielded from cancellation. Any failure or cancellation
  before the commit aborts the pending write (shielded), which queues the
  shards for the collector: nothing half-written is ever visible.
- Stripes are cut, hashed in body order, encoded in the CPU executor and
  handed to the k+m shard streams, at most `stripes_in_flight` at a time, so
  memory per request is a few stripes whatever the size. Each stripe is charged
  to the gateway's write budget before its first byte is cut, each burst before
  its body is received (budget.py), so all requests together hold a bounded
  amount.
- A part of known length up to `burst_bytes` (two stripes) is received whole
  and its k+m shards sent together, one request each (burst.py): for small
  objects the per-stream cost outweighed the streaming.
- Bodies up to `inline_threshold_bytes` are kept in the record: no pod I/O.
- Shards a dropped pod did not store are queued for the healer after commit;
  a pod that is behind costs a bounded grace, not a timeout (fanout.py).
- An encrypted write (encryption.py) hashes the plaintext, then encrypts each
  stripe in the executor right before it is encoded: pods see ciphertext only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Sequence
from types import TracebackType
from typing import TypeVar

from kurastore.erasure import ErasureParams, StripeCutter, encode_stripe_parts, frame_owner
from kurastore.gateway.objects import checksums
from kurastore.gateway.objects.api import BodyDigest, PutOptions
from kurastore.gateway.objects.budget import StripeCharge
from kurastore.gateway.objects.burst import receive_whole, write_burst
from kurastore.gateway.objects.conditions import precheck_write
from kurastore.gateway.objects.context import ObjectContext
from kurastore.gateway.objects.encryption import INLINE_LABEL, PartKey, keystream_xor, new_data_key
from kurastore.gateway.objects.errors import IncompleteBody, QuorumNotReached
from kurastore.gateway.objects.executor import shielded
from kurastore.gateway.objects.fanout import ShardWriter
from kurastore.gateway.objects.hashing import BodyHasher
from kurastore.gateway.objects.topology import NoPlacementMap
from kurastore.metadata import HealItem, ObjectVersion, PartLayout, PendingWrite
from kurastore.placement import PlacementMap

log = logging.getLogger(__name__)

Body = AsyncIterable[bytes | memoryview]
SINGLE_PART_TAG = "0"
T = TypeVar("T")


class WriteGuard:
    """`async with WriteGuard(ctx, pending) as guard:` records the pending write;
    `await guard.commit(coro)` runs the commit shielded; leaving the block without
    a commit (error or cancellation) aborts the pending write, shielded too."""

    def __init__(self, ctx: ObjectContext, pending: PendingWrite) -> None:
        self._ctx = ctx
        self.pending = pending
        self.committed = False

    async def __aenter__(self) -> WriteGuard:
        await self._ctx.store.begin_write(self.pending)
        return self

    async def commit(self, commit: Awaitable[T]) -> T:
        async def run() -> T:
            result = await commit
            self.committed = True
            return result

        return await shielded(run())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.committed or exc_type is None:
            return
        try:
            await shielded(self._ctx.store.abort_write(self.pending))
        except Exception:  # the stale-write sweep will catch it later
            log.exception("abort of pending write %s failed", self.pending.object_id)


async def _chain(
    prefix: Sequence[bytes | memoryview], rest: AsyncIterator[bytes | memoryview]
) -> AsyncIterator[bytes | memoryview]:
    for chunk in prefix:
        yield chunk
    async for chunk in rest:
        yield chunk


async def read_prefix(
    body: AsyncIterator[bytes | memoryview], limit: int
) -> tuple[list[bytes | memoryview], int, bool]:
    """Read until more than `limit` bytes or the end: (chunks, size, reached_end)."""
    chunks: list[bytes | memoryview] = []
    size = 0
    async for chunk in body:
        if chunk:
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            return chunks, size, False
    return chunks, size, True


def _encrypt_and_encode(
    params: ErasureParams, stripe_no: int, stripe: bytes | memoryview, key: PartKey,
    owner: bytes,
) -> list[tuple[bytes, memoryview]]:
    sealed = keystream_xor(key.data_key, key.label, stripe_no * params.stripe_size, stripe)
    return encode_stripe_parts(params, stripe_no, sealed, owner)


async def _pump(
    ctx: ObjectContext,
    params: ErasureParams,
    writer: ShardWriter,
    body: Body,
    hasher: BodyHasher,
    content_length: int | None,
    key: PartKey | None,
    owner: bytes,
) -> None:
    """Cut, hash, (encrypt,) encode and send the whole body, every frame bound to
    `owner` (the part's frame_owner); checks its length."""
    cutter = StripeCutter(params)
    in_flight: deque[tuple[asyncio.Future[list[tuple[bytes, memoryview]]], StripeCharge]] = (
        deque())
    charged: deque[StripeCharge] = deque()  # not yet given back in full
    budget = ctx.write_budget
    stripe_no = 0

    async def send_oldest() -> None:
        encoding, charge = in_flight.popleft()
        await writer.send(await encoding, charge)
        while charged and charged[0].released:
            charged.popleft()

    async def reserve() -> StripeCharge:
        """The charge of the next stripe, taken before any byte of it is cut: encoded, a
        stripe is width/k times its size."""
        nbytes = params.stripe_size * params.width // params.k
        amount = budget.try_take(nbytes)
        if not amount:
            # Wait holding nothing that only this PUT's progress would give back (the
            # stripes still being encoded): every PUT waiting so would wait for good.
            while in_flight:
                await send_oldest()
            amount = await budget.take(nbytes)
        charge = StripeCharge(budget, amount)
        charged.append(charge)
        return charge

    async def submit(stripe: bytes | memoryview, charge: StripeCharge) -> None:
        nonlocal stripe_no
        await hasher.update(stripe)
        if key is None:
            encode = ctx.cpu.run(encode_stripe_parts, params, stripe_no, stripe, owner)
        else:
            encode = ctx.cpu.run(_encrypt_and_encode, params, stripe_no, stripe, key, owner)
        in_flight.append((asyncio.ensure_future(encode), charge))
        stripe_no += 1
        while len(in_flight) >= ctx.config.stripes_in_flight:
            await send_oldest()

    received = 0
    cutting: StripeCharge | None = None  # the charge of the stripe being cut
    try:
        async for chunk in body:
            received += len(chunk)
            if content_length is not None and received > content_length:
                raise IncompleteBody(f"body longer than the stated {content_length} bytes")
            # Fed up to a stripe's end at a time, so each stripe is charged before it
            # starts (slices of an immutable chunk are still cut without a copy).
            pos, size = 0, len(chunk)
            while pos < size:
                if cutting is None:
                    cutting = await reserve()
                end = min(size, pos + cutter.room)
                piece = chunk if pos == 0 and end == size else memoryview(chunk)[pos:end]
                pos = end
                for stripe in cutter.feed(piece):
                    charge, cutting = cutting, None
                    await submit(stripe, charge)
        tail = cutter.finish()
        if tail:
            assert cutting is not None
            charge, cutting = cutting, None
            await submit(tail, charge)
        if content_length is not None and received != content_length:
            raise IncompleteBody(f"got {received} of {content_length} bytes")
        while in_flight:
            await send_oldest()
    finally:
        for future, _charge in in_flight:
            future.cancel()
        # What the streams have not given back: frames still queued or being sent when
        # the write ended (the writer's close() cancels those streams), or frames of a
        # failed write.
        for charge in charged:
            charge.release_all()


async def write_part(
    ctx: ObjectContext,
    *,
    params: ErasureParams,
    pmap: PlacementMap,
    partition: int,
    object_id: str,
    shard_tag: str,
    body: Body,
    hasher: BodyHasher,
    content_length: int | None,
    data_key: bytes | None = None,
) -> list[int]:
    """Write one part to its pods (in one burst when small, else streamed), encrypted
    under `data_key` when given. Returns the block indices not stored (the write reached
    the quorum anyway). Raises QuorumNotReached, IncompleteBody."""
    urls = [ctx.topology.url_of(pod_id) for pod_id in pmap.pods_for(partition, params.width)]
    key = None if data_key is None else PartKey(data_key, shard_tag)
    if content_length is not None and 0 < content_length <= ctx.config.burst_bytes:
        # The body and its parity, held until every shard is sent (the burst is shielded).
        charge = await ctx.write_budget.take(params.shard_size(content_length) * params.width)
        try:
            data = await receive_whole(body, content_length)
            return await write_burst(
                ctx, params=params, urls=urls, partition=partition, object_id=object_id,
                shard_tag=shard_tag, data=data, hasher=hasher, key=key,
            )
        except QuorumNotReached:
            ctx.stats.quorum_failures += 1
            raise
        finally:
            ctx.write_budget.give(charge)
    writer = ShardWriter(
        ctx.pods,
        urls,
        partition,
        object_id,
        shard_tag,
        quorum=min(ctx.config.write_quorum, params.width),
        config=ctx.config,
        health=ctx.health,
        shard_length=None if content_length is None else params.shard_size(content_length),
    )
    try:
        writer.start()
        await _pump(ctx, params, writer, body, hasher, content_length, key,
                    frame_owner(object_id, shard_tag))
        _stored, missing = await writer.finish()
    except QuorumNotReached:
        ctx.stats.quorum_failures += 1
        raise
    finally:
        ctx.stats.stalled_shards += len(writer.stalled)
        await writer.close()
    return missing


async def queue_missing(ctx: ObjectContext, pending: PendingWrite, missing: Sequence[int]) -> None:
    """After a commit: hand the shards a dropped pod did not store to the healer."""
    if not missing or pending.shard_tag is None:
        return
    ctx.stats.dropped_shards += len(missing)
    now = time.time()
    items = [
        HealItem(pending.object_id, pending.shard_tag, index, pending.partition,
                 pending.epoch, "unreachable", now)
        for index in missing
    ]
    try:
        await ctx.store.queue_heal(items)
    except Exception:  # the scrubber finds them later
        log.exception("queueing %d shards of %s for healing failed", len(items), pending.object_id)


def current_map(ctx: ObjectContext) -> PlacementMap:
    try:
        return ctx.topology.current
    except NoPlacementMap as exc:
        ctx.stats.quorum_failures += 1
        raise QuorumNotReached("no placement map: no pods to write to") from exc


def new_version(
    bucket: str, key: str, object_id: str, opts: PutOptions, digest: BodyDigest,
    encryption: dict[str, str], **layout: object,
) -> ObjectVersion:
    etag = digest.md5.hex()
    return ObjectVersion(
        bucket=bucket,
        key=key,
        version_id="",
        object_id=object_id,
        size=digest.size,
        etag=etag,
        last_modified=time.time(),
        owner=opts.owner,
        content_type=opts.content_type,
        headers=dict(opts.headers),
        user_meta=dict(opts.user_meta),
        checksums=dict(digest.checksums),
        checksum_type="FULL_OBJECT" if digest.checksums else "",
        tags=dict(opts.tags),
        storage_class=opts.storage_class,
        expires_at=opts.expires_at,
        encryption=encryption,
        **layout,  # type: ignore[arg-type]
    )


async def with_bucket_default(ctx: ObjectContext, bucket: str, opts: PutOptions) -> PutOptions:
    """A write that asks for no encryption gets its bucket's default, if any, whichever
    protocol it came by (a Swift PUT into a bucket S3 set default encryption on too)."""
    if opts.encryption is not None or ctx.bucket_encryption is None:
        return opts
    spec = ctx.bucket_encryption((await ctx.buckets.get(bucket)).settings)
    return opts if spec is None else dataclasses.replace(opts, encryption=spec)


async def put_object(
    ctx: ObjectContext, bucket: str, key: str, body: Body, opts: PutOptions
) -> ObjectVersion:
    await precheck_write(ctx.store, ctx.buckets, bucket, key, opts.conditions)
    opts = await with_bucket_default(ctx, bucket, opts)
    algorithms = opts.checksum_algorithms or (checksums.DEFAULT_ALGORITHM,)
    hasher = BodyHasher(algorithms, ctx.cpu, ctx.config.offload_bytes)
    chunks = aiter(body)
    threshold = ctx.config.inline_threshold_bytes
    if opts.content_length is None or opts.content_length <= threshold:
        # A body of unknown length is read up to the burst size: a small one is then
        # written as if its length had been given (inline, or in one burst).
        prefix, size, at_end = await read_prefix(
            chunks,
            threshold if opts.content_length is not None
            else max(threshold, ctx.config.burst_bytes),
        )
        if at_end and size <= threshold:
            return await _put_inline(ctx, bucket, key, b"".join(prefix), hasher, opts)
        if at_end:
            opts = dataclasses.replace(opts, content_length=size)
        chunks = _chain(prefix, chunks)
    return await _put_sharded(ctx, bucket, key, chunks, hasher, opts)


async def _commit(ctx: ObjectContext, version: ObjectVersion, opts: PutOptions) -> ObjectVersion:
    result = await ctx.store.commit_version(
        version, if_match=opts.conditions.if_match, if_none_match=opts.conditions.if_none_match
    )
    ctx.stats.bytes_written += version.size
    return result.version


async def _put_inline(
    ctx: ObjectContext, bucket: str, key: str, data: bytes, hasher: BodyHasher, opts: PutOptions
) -> ObjectVersion:
    if opts.content_length is not None and len(data) != opts.content_length:
        raise IncompleteBody(f"got {len(data)} of {opts.content_length} bytes")
    await hasher.update(data)
    digest = hasher.digest()
    if opts.check is not None:
        opts.check(digest)
    object_id = secrets.token_hex(16)
    data_key, sealed = new_data_key(ctx.keyring, opts.encryption, object_id)
    if data_key is not None:
        data = keystream_xor(data_key, INLINE_LABEL, 0, data)
    version = new_version(bucket, key, object_id, opts, digest, sealed, inline=data)
    return await shielded(_commit(ctx, version, opts))


async def _put_sharded(
    ctx: ObjectContext, bucket: str, key: str, body: Body, hasher: BodyHasher, opts: PutOptions
) -> ObjectVersion:
    params = ctx.params
    await ctx.topology.ensure_fresh()
    pmap = current_map(ctx)
    object_id = secrets.token_hex(16)
    data_key, sealed = new_data_key(ctx.keyring, opts.encryption, object_id)
    partition = pmap.partition_of(object_id)
    pending = PendingWrite(object_id, SINGLE_PART_TAG, bucket, key, partition, pmap.epoch,
                           params.width, time.time())
    async with WriteGuard(ctx, pending) as guard:
        missing = await write_part(
            ctx, params=params, pmap=pmap, partition=partition, object_id=object_id,
            shard_tag=SINGLE_PART_TAG, body=body, hasher=hasher,
            content_length=opts.content_length, data_key=data_key,
        )
        digest = hasher.digest()
        if opts.check is not None:
            opts.check(digest)
        layout = PartLayout(1, SINGLE_PART_TAG, digest.size, digest.md5.hex(),
                            dict(digest.checksums))
        version = new_version(
            bucket, key, object_id, opts, digest, sealed, k=params.k, m=params.m,
            block_size=params.block_size, partition=partition, epoch=pmap.epoch,
            parts=(layout,),
        )
        committed = await guard.commit(_commit(ctx, version, opts))
    await queue_missing(ctx, pending, missing)
    return committed
