"""Multipart uploads: create, upload a part (or copy one), complete, abort, list.

Rules:
- An upload fixes its object id, partition, epoch and erasure geometry at
  creation; every part is stored under that object id with its own shard tag
  `p<part number>-<random>`, unique per attempt, so re-uploading a part never
  touches the shards of the attempt it replaces (the store queues those).
- Parts are always on pods, never inline: Complete copies no data, the
  version's parts are the uploaded parts' layouts.
- Complete checks, in S3's order: ascending part numbers (InvalidPartOrder),
  every listed part exists with that ETag (InvalidPart), every part but the
  last is at least 5 MiB (EntityTooSmall). The ETag is MD5 of the parts' raw
  MD5s, hex, then "-N".
- The commit checks that every part it names is still its number's current
  record: a part uploaded again while Complete ran (a client's retry) had its old
  shards queued for collection, and a version naming them lost its data (found by
  fault injection). Complete then reads the parts again.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
import time
from collections.abc import AsyncIterable, Callable, Sequence

from kurastore.erasure import ErasureParams
from kurastore.gateway.objects import checksums
from kurastore.gateway.objects.api import CompletedPart, PutOptions, WriteConditions
from kurastore.gateway.objects.conditions import precheck_write
from kurastore.gateway.objects.config import MAX_PART_NUMBER, MIN_PART_SIZE
from kurastore.gateway.objects.context import ObjectContext
from kurastore.gateway.objects.encryption import data_key_of, new_data_key
from kurastore.gateway.objects.errors import (
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
)
from kurastore.gateway.objects.hashing import BodyHasher
from kurastore.gateway.objects.put import (
    WriteGuard,
    current_map,
    queue_missing,
    with_bucket_default,
    write_part,
)
from kurastore.metadata import (
    ObjectVersion,
    PartLayout,
    PartRecord,
    PartReplaced,
    PartsPage,
    PendingWrite,
    UploadNotFound,
    UploadRecord,
    UploadsPage,
)

Body = AsyncIterable[bytes | memoryview]
# Complete reads the parts again when one was re-uploaded under it, this many times in all
COMPLETE_ATTEMPTS = 5


async def create_upload(
    ctx: ObjectContext, bucket: str, key: str, opts: PutOptions
) -> UploadRecord:
    await ctx.buckets.get(bucket)
    opts = await with_bucket_default(ctx, bucket, opts)
    algorithms = [checksums.normalize(a) for a in opts.checksum_algorithms]
    if len(algorithms) > 1:
        raise InvalidArgument("one checksum algorithm per multipart upload")
    await ctx.topology.ensure_fresh()
    pmap = current_map(ctx)
    object_id = secrets.token_hex(16)
    _data_key, sealed = new_data_key(ctx.keyring, opts.encryption, object_id)
    params = ctx.params
    upload = UploadRecord(
        upload_id=secrets.token_hex(24),
        bucket=bucket,
        key=key,
        object_id=object_id,
        initiated=time.time(),
        owner=opts.owner,
        content_type=opts.content_type,
        headers=dict(opts.headers),
        user_meta=dict(opts.user_meta),
        tags=dict(opts.tags),
        checksum_algorithm=algorithms[0] if algorithms else "",
        checksum_type=_checksum_type(algorithms, opts),
        storage_class=opts.storage_class,
        k=params.k,
        m=params.m,
        block_size=params.block_size,
        encryption=sealed,
        partition=pmap.partition_of(object_id),
        epoch=pmap.epoch,
    )
    await ctx.store.create_upload(upload)
    return upload


def _checksum_type(algorithms: Sequence[str], opts: PutOptions) -> str:
    if not algorithms:
        return ""
    algorithm = algorithms[0]
    wanted = opts.checksum_type.upper() or (
        "FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE"
    )
    if wanted not in ("FULL_OBJECT", "COMPOSITE"):
        raise InvalidArgument(f"unknown checksum type {opts.checksum_type!r}")
    if wanted == "FULL_OBJECT" and algorithm not in checksums.CRC_ALGORITHMS:
        raise InvalidArgument(f"{algorithm} has no FULL_OBJECT multipart checksum")
    if wanted == "COMPOSITE" and algorithm == "CRC64NVME":
        raise InvalidArgument("CRC64NVME supports only FULL_OBJECT multipart checksums")
    return wanted


async def get_upload(ctx: ObjectContext, bucket: str, key: str, upload_id: str) -> UploadRecord:
    upload = await ctx.store.get_upload(upload_id)
    if upload.bucket != bucket or upload.key != key:
        raise UploadNotFound(upload_id)
    return upload


def _check_part_number(part_number: int) -> None:
    if not 1 <= part_number <= MAX_PART_NUMBER:
        raise InvalidArgument(f"part number must be in 1..{MAX_PART_NUMBER}")


async def upload_part(
    ctx: ObjectContext,
    bucket: str,
    key: str,
    upload_id: str,
    part_number: int,
    body: Body,
    opts: PutOptions,
) -> PartRecord:
    """Store one part; raises UploadNotFound, QuorumNotReached, IncompleteBody, and
    whatever opts.check raises."""
    _check_part_number(part_number)
    upload = await get_upload(ctx, bucket, key, upload_id)
    data_key = _part_key(ctx, upload, opts)
    params = ErasureParams(upload.k, upload.m, upload.block_size)
    await ctx.topology.ensure_fresh()
    pmap = await ctx.topology.get_map(upload.epoch)
    algorithms = list(opts.checksum_algorithms)
    if upload.checksum_algorithm:
        algorithms.append(upload.checksum_algorithm)
    elif not algorithms:  # the default: the parts' CRCs combine into the object's
        algorithms.append(checksums.DEFAULT_ALGORITHM)
    hasher = BodyHasher(algorithms, ctx.cpu, ctx.config.offload_bytes)
    shard_tag = f"p{part_number}-{secrets.token_hex(4)}"
    pending = PendingWrite(upload.object_id, shard_tag, bucket, key, upload.partition,
                           upload.epoch, params.width, time.time())
    async with WriteGuard(ctx, pending) as guard:
        missing = await write_part(
            ctx, params=params, pmap=pmap, partition=upload.partition,
            object_id=upload.object_id, shard_tag=shard_tag, body=body, hasher=hasher,
            content_length=opts.content_length, data_key=data_key,
        )
        digest = hasher.digest()
        if opts.check is not None:
            opts.check(digest)
        layout = PartLayout(part_number, shard_tag, digest.size, digest.md5.hex(),
                            dict(digest.checksums))
        record = PartRecord(upload_id, layout, time.time())
        await guard.commit(ctx.store.put_part(record))
    await queue_missing(ctx, pending, missing)
    return record


def _part_key(ctx: ObjectContext, upload: UploadRecord, opts: PutOptions) -> bytes | None:
    """The upload's data key: an SSE-C upload needs its customer key with every part;
    the upload's own settings apply whatever else a part's request says."""
    customer_key = opts.encryption.customer_key if opts.encryption is not None else None
    return data_key_of(ctx.keyring, upload.encryption, upload.object_id, customer_key)


async def all_parts(ctx: ObjectContext, upload_id: str) -> dict[int, PartRecord]:
    parts: dict[int, PartRecord] = {}
    marker = 0
    while True:
        page = await ctx.store.list_parts(upload_id, part_number_marker=marker)
        parts.update((p.part.part_number, p) for p in page.parts)
        if not page.is_truncated or not page.parts:
            return parts
        marker = page.next_part_number_marker or page.parts[-1].part.part_number


def _chosen_layouts(
    stored: dict[int, PartRecord], parts: Sequence[CompletedPart]
) -> list[PartLayout]:
    if not parts:
        raise InvalidArgument("CompleteMultipartUpload lists no parts")
    numbers = [p.part_number for p in parts]
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        raise InvalidPartOrder("parts must be listed in ascending order")
    layouts = []
    for given in parts:
        record = stored.get(given.part_number)
        if record is None or record.part.etag != given.etag.strip().strip('"'):
            raise InvalidPart(f"part {given.part_number} was not uploaded with that ETag")
        for algorithm, value in given.checksums.items():
            if record.part.checksums.get(algorithm.upper(), value) != value:
                raise InvalidPart(f"part {given.part_number}: {algorithm} checksum differs")
        layouts.append(record.part)
    for layout in layouts[:-1]:
        if layout.size < MIN_PART_SIZE:
            raise EntityTooSmall(
                f"part {layout.part_number} has {layout.size} bytes, below 5 MiB"
            )
    return layouts


def _object_checksum(
    upload: UploadRecord, layouts: Sequence[PartLayout]
) -> tuple[dict[str, str], str]:
    """The object's checksum and its type ({}, "" when it cannot have one)."""
    algorithm = upload.checksum_algorithm or checksums.DEFAULT_ALGORITHM
    kind = upload.checksum_type if upload.checksum_algorithm else "FULL_OBJECT"
    values = [layout.checksums.get(algorithm) for layout in layouts]
    if any(v is None for v in values):
        return {}, ""  # a part was stored without it: the object cannot claim one
    return _combined(algorithm, kind, layouts, values), kind


def _combined(
    algorithm: str, kind: str, layouts: Sequence[PartLayout], values: Sequence[str]
) -> dict[str, str]:
    if kind == "FULL_OBJECT":
        combined = base64.b64decode(values[0])
        for layout, value in zip(layouts[1:], values[1:], strict=True):
            combined = checksums.combine_crc(
                algorithm, combined, base64.b64decode(value), layout.size
            )
        return {algorithm: base64.b64encode(combined).decode("ascii")}
    return {algorithm: checksums.composite_checksum(algorithm, values)}


async def complete_upload(
    ctx: ObjectContext,
    bucket: str,
    key: str,
    upload_id: str,
    parts: Sequence[CompletedPart],
    conditions: WriteConditions,
    check: Callable[[ObjectVersion], None] | None = None,
    customer_key: bytes | None = None,
) -> ObjectVersion:
    """Assemble and commit the object; `check` may refuse the assembled version
    (the client's whole-object checksum or size) before anything is committed. An SSE-C
    key is not needed (no data is read), but one that is given must be the upload's."""
    upload = await get_upload(ctx, bucket, key, upload_id)
    if customer_key is not None:
        data_key_of(ctx.keyring, upload.encryption, upload.object_id, customer_key)
    # If-Match on a missing key is NoSuchKey, as for PutObject; the commit re-checks.
    await precheck_write(ctx.store, ctx.buckets, bucket, key, conditions)
    for attempt in itertools.count(1):
        layouts = _chosen_layouts(await all_parts(ctx, upload_id), parts)
        version = _assembled(upload, bucket, key, layouts)
        if check is not None:
            check(version)
        try:
            result = await ctx.store.complete_upload(
                upload_id, version, if_match=conditions.if_match,
                if_none_match=conditions.if_none_match,
            )  # fmt: skip
            break
        except PartReplaced:
            # A listed part was uploaded again since all_parts read it (a client's retry
            # racing its Complete): read the parts again; the ETags still decide.
            if attempt >= COMPLETE_ATTEMPTS:
                raise InvalidPart("a listed part is being uploaded again; retry") from None
    ctx.stats.bytes_written += result.version.size
    return result.version


def _assembled(
    upload: UploadRecord, bucket: str, key: str, layouts: Sequence[PartLayout]
) -> ObjectVersion:
    md5s = b"".join(bytes.fromhex(layout.etag) for layout in layouts)
    etag = f"{hashlib.md5(md5s).hexdigest()}-{len(layouts)}"
    object_checksums, checksum_type = _object_checksum(upload, layouts)
    return ObjectVersion(
        bucket=bucket,
        key=key,
        version_id="",
        object_id=upload.object_id,
        size=sum(layout.size for layout in layouts),
        etag=etag,
        last_modified=time.time(),
        owner=upload.owner,
        content_type=upload.content_type,
        headers=dict(upload.headers),
        user_meta=dict(upload.user_meta),
        checksums=object_checksums,
        checksum_type=checksum_type,
        tags=dict(upload.tags),
        storage_class=upload.storage_class,
        k=upload.k,
        m=upload.m,
        block_size=upload.block_size,
        partition=upload.partition,
        epoch=upload.epoch,
        parts=tuple(layouts),
        encryption=dict(upload.encryption),
    )


async def abort_upload(ctx: ObjectContext, bucket: str, key: str, upload_id: str) -> None:
    await get_upload(ctx, bucket, key, upload_id)
    await ctx.store.abort_upload(upload_id)


async def list_parts(
    ctx: ObjectContext,
    bucket: str,
    key: str,
    upload_id: str,
    *,
    part_number_marker: int = 0,
    max_parts: int = 1000,
) -> tuple[UploadRecord, PartsPage]:
    upload = await get_upload(ctx, bucket, key, upload_id)
    page = await ctx.store.list_parts(
        upload_id, part_number_marker=part_number_marker, max_parts=max_parts
    )
    return upload, page


async def list_uploads(
    ctx: ObjectContext,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str = "",
    key_marker: str = "",
    upload_id_marker: str = "",
    max_uploads: int = 1000,
) -> UploadsPage:
    await ctx.buckets.get(bucket)
    return await ctx.store.list_uploads(
        bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
        upload_id_marker=upload_id_marker, max_uploads=max_uploads,
    )
