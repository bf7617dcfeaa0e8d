"""CopyObject and UploadPartCopy: a version's bytes written again under a new
object id (shards belong to one object id, so a copy is a new write).

Rules:
- Source conditions (x-amz-copy-source-if-*) fail with PreconditionFailed only
  (no 304 for copies), checked before any byte moves.
- Metadata COPY keeps the source's content type, standard headers and user
  metadata; REPLACE takes them from the request. Tags follow their own directive
  (`replace_tags`; when None, the metadata one): COPY keeps the source's. Copying an object
  onto itself without REPLACE is the adapter's error to raise, not ours.
- The copy keeps the source's checksum algorithms (recomputed on the way).
- The source is read in the clear (its SSE-C key comes with the CopySource) and
  written encrypted as the destination's request asks, never as the source was.
- UploadPartCopy's range must lie inside the source: a last byte past its end
  is InvalidRange (S3 does not clip copy ranges as it clips GET ranges).
"""

from __future__ import annotations

import dataclasses

from kurastore.gateway.objects import retention
from kurastore.gateway.objects.api import CopySource, PutOptions
from kurastore.gateway.objects.conditions import check_copy_conditions
from kurastore.gateway.objects.context import ObjectContext
from kurastore.gateway.objects.errors import InvalidRange
from kurastore.gateway.objects.get import decrypted_reader_for, lookup
from kurastore.gateway.objects.multipart import upload_part
from kurastore.gateway.objects.put import put_object
from kurastore.metadata import ObjectVersion, PartRecord


async def copy_object(
    ctx: ObjectContext,
    src: CopySource,
    bucket: str,
    key: str,
    opts: PutOptions,
    *,
    replace_metadata: bool,
    replace_tags: bool | None = None,
) -> ObjectVersion:
    source = await lookup(ctx, src.bucket, src.key, src.version_id)
    check_copy_conditions(source, src.conditions)
    if not replace_metadata:
        opts = dataclasses.replace(
            opts,
            content_type=source.content_type,
            # The copy's Object Lock state is its own request's, never the source's.
            headers={**retention.without_lock(source.headers),
                     **{k: v for k, v in opts.headers.items() if k in retention.HEADERS}},
            user_meta=dict(source.user_meta),
        )
    if not (replace_metadata if replace_tags is None else replace_tags):
        opts = dataclasses.replace(opts, tags=dict(source.tags))
    algorithms = opts.checksum_algorithms or tuple(source.checksums)
    opts = dataclasses.replace(opts, content_length=source.size, checksum_algorithms=algorithms)
    reader = decrypted_reader_for(ctx, source, src.customer_key)
    try:
        return await put_object(ctx, bucket, key, reader, opts)
    finally:
        await reader.aclose()


async def upload_part_copy(
    ctx: ObjectContext,
    bucket: str,
    key: str,
    upload_id: str,
    part_number: int,
    src: CopySource,
    opts: PutOptions = PutOptions(),
) -> PartRecord:
    """`opts`: only its `encryption` is used (the upload's SSE-C key)."""
    source = await lookup(ctx, src.bucket, src.key, src.version_id)
    check_copy_conditions(source, src.conditions)
    end = src.byte_range.end if src.byte_range is not None else None
    if end is not None and end >= source.size:
        raise InvalidRange(source.size)
    reader = decrypted_reader_for(ctx, source, src.customer_key, byte_range=src.byte_range)
    try:
        return await upload_part(
            ctx, bucket, key, upload_id, part_number, reader,
            PutOptions(content_length=reader.length, encryption=opts.encryption),
        )
    finally:
        await reader.aclose()
