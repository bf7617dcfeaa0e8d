"""Multipart uploads through the object service: parts on pods, Complete without copying."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest
from support.fakes import body_of

from kurastore.gateway.maintenance.collect import collect_once
from kurastore.gateway.objects.api import (
    ByteRange,
    CompletedPart,
    CopySource,
    PutOptions,
    WriteConditions,
)
from kurastore.gateway.objects.errors import (
    EntityTooSmall,
    InvalidArgument,
    InvalidPart,
    InvalidPartNumber,
    InvalidPartOrder,
)
from kurastore.metadata import PreconditionFailed, UploadNotFound

from .conftest import MiB, random_bytes

PART = 5 * MiB


async def upload(cluster, upload_id, number, data, key="big"):
    return await cluster.service.upload_part(
        "b", key, upload_id, number, body_of(data, 256 * 1024),
        PutOptions(content_length=len(data)),
    )


async def test_complete_assembles_parts_without_copying(cluster):
    svc = cluster.service
    up = await svc.create_upload("b", "big", PutOptions(content_type="text/plain",
                                                        user_meta={"a": "1"}))
    datas = [random_bytes(PART), random_bytes(PART + 3), random_bytes(1234)]
    parts = [await upload(cluster, up.upload_id, i + 1, d) for i, d in enumerate(datas)]
    writes_before = sum(p.writes for p in cluster.pods.pods)
    version = await svc.complete_upload(
        "b", "big", up.upload_id,
        [CompletedPart(p.part.part_number, f'"{p.part.etag}"') for p in parts],
        WriteConditions(),
    )
    assert sum(p.writes for p in cluster.pods.pods) == writes_before  # nothing rewritten
    md5s = b"".join(hashlib.md5(d).digest() for d in datas)
    assert version.etag == hashlib.md5(md5s).hexdigest() + "-3"
    assert version.size == sum(map(len, datas))
    assert version.content_type == "text/plain" and dict(version.user_meta) == {"a": "1"}
    whole = b"".join(datas)
    assert await cluster.read("big") == whole
    # Ranges across part boundaries, and partNumber.
    assert await cluster.read("big", byte_range=ByteRange(PART - 10, PART + 10)) == \
        whole[PART - 10 : PART + 11]
    reader = await svc.open_object("b", "big", part_number=2)
    assert reader.parts_count == 3 and reader.is_partial
    assert b"".join([bytes(p) async for p in reader]) == datas[1]
    with pytest.raises(InvalidPartNumber):
        await svc.open_object("b", "big", part_number=4)
    with pytest.raises(UploadNotFound):
        await svc.list_parts("b", "big", up.upload_id)


async def test_part_reupload_replaces_and_old_shards_are_collected(cluster):
    svc = cluster.service
    up = await svc.create_upload("b", "big")
    first = await upload(cluster, up.upload_id, 1, random_bytes(100_000))
    second_data = random_bytes(200_000)
    second = await upload(cluster, up.upload_id, 1, second_data)
    assert first.part.shard_tag != second.part.shard_tag
    _upload, page = await svc.list_parts("b", "big", up.upload_id)
    assert [(p.part.part_number, p.part.etag) for p in page.parts] == [(1, second.part.etag)]
    await collect_once(cluster.store, cluster.pods, cluster.topology)
    names = {name for _pod, name in cluster.pods.shard_names(up.object_id)}
    assert all(f".{second.part.shard_tag}." in name for name in names) and len(names) == 6
    await svc.complete_upload("b", "big", up.upload_id,
                              [CompletedPart(1, second.part.etag)], WriteConditions())
    assert await cluster.read("big") == second_data


async def test_complete_validation(cluster):
    svc = cluster.service
    up = await svc.create_upload("b", "big")
    small = await upload(cluster, up.upload_id, 1, random_bytes(1000))
    last = await upload(cluster, up.upload_id, 2, random_bytes(1000))
    with pytest.raises(InvalidPartOrder):
        await svc.complete_upload("b", "big", up.upload_id,
                                  [CompletedPart(2, last.part.etag),
                                   CompletedPart(1, small.part.etag)], WriteConditions())
    with pytest.raises(InvalidPart):
        await svc.complete_upload("b", "big", up.upload_id,
                                  [CompletedPart(1, "0" * 32)], WriteConditions())
    with pytest.raises(InvalidPart):
        await svc.complete_upload("b", "big", up.upload_id,
                                  [CompletedPart(3, small.part.etag)], WriteConditions())
    with pytest.raises(EntityTooSmall):
        await svc.complete_upload("b", "big", up.upload_id,
                                  [CompletedPart(1, small.part.etag),
                                   CompletedPart(2, last.part.etag)], WriteConditions())
    with pytest.raises(InvalidArgument):
        await upload(cluster, up.upload_id, 10_001, b"x")
    # A single small part is fine (it is the last one).
    version = await svc.complete_upload("b", "big", up.upload_id,
                                        [CompletedPart(2, last.part.etag)], WriteConditions())
    assert version.size == 1000 and version.etag.endswith("-1")


async def test_complete_honours_write_conditions(cluster):
    svc = cluster.service
    await cluster.put("big", b"existing")
    up = await svc.create_upload("b", "big")
    part = await upload(cluster, up.upload_id, 1, random_bytes(10))
    with pytest.raises(PreconditionFailed):
        await svc.complete_upload("b", "big", up.upload_id,
                                  [CompletedPart(1, part.part.etag)],
                                  WriteConditions(if_none_match="*"))
    assert await cluster.read("big") == b"existing"


async def test_abort_and_list(cluster):
    svc = cluster.service
    ups = [await svc.create_upload("b", key) for key in ("x/1", "x/2", "y")]
    await upload(cluster, ups[0].upload_id, 1, random_bytes(300_000), key="x/1")
    page = await svc.list_uploads("b", prefix="x/")
    assert [u.key for u in page.uploads] == ["x/1", "x/2"]
    with pytest.raises(UploadNotFound):
        await svc.abort_upload("b", "y", ups[0].upload_id)  # wrong key
    await svc.abort_upload("b", "x/1", ups[0].upload_id)
    with pytest.raises(UploadNotFound):
        await upload(cluster, ups[0].upload_id, 2, b"late", key="x/1")
    await collect_once(cluster.store, cluster.pods, cluster.topology)
    assert cluster.pods.shard_names(ups[0].object_id) == []
    page = await svc.list_uploads("b")
    assert [u.key for u in page.uploads] == ["x/2", "y"]


async def test_composite_and_full_object_checksums(cluster):
    svc = cluster.service
    datas = [random_bytes(PART), random_bytes(777)]
    for checksum_type in ("COMPOSITE", "FULL_OBJECT"):
        up = await svc.create_upload("b", checksum_type, PutOptions(
            checksum_algorithms=("CRC32",), checksum_type=checksum_type))
        parts = [await upload(cluster, up.upload_id, i + 1, d, key=checksum_type)
                 for i, d in enumerate(datas)]
        crcs = [zlib.crc32(d).to_bytes(4, "big") for d in datas]
        assert [p.part.checksums["CRC32"] for p in parts] == \
            [base64.b64encode(c).decode() for c in crcs]
        version = await svc.complete_upload(
            "b", checksum_type, up.upload_id,
            [CompletedPart(p.part.part_number, p.part.etag) for p in parts], WriteConditions())
        if checksum_type == "COMPOSITE":
            want = base64.b64encode(zlib.crc32(b"".join(crcs)).to_bytes(4, "big")).decode()
            assert version.checksums == {"CRC32": want + "-2"}
        else:
            whole = zlib.crc32(b"".join(datas)).to_bytes(4, "big")
            assert version.checksums == {"CRC32": base64.b64encode(whole).decode()}
        assert version.checksum_type == checksum_type


async def test_upload_part_copy_with_range(cluster):
    svc = cluster.service
    source = random_bytes(3 * MiB)
    await cluster.put("src", source)
    up = await svc.create_upload("b", "dst")
    part = await svc.upload_part_copy(
        "b", "dst", up.upload_id, 1,
        CopySource("b", "src", byte_range=ByteRange(1000, 2 * MiB)),
    )
    assert part.part.size == 2 * MiB - 1000 + 1
    await svc.complete_upload("b", "dst", up.upload_id,
                              [CompletedPart(1, part.part.etag)], WriteConditions())
    assert await cluster.read("dst") == source[1000 : 2 * MiB + 1]
