"""PUT then GET through the whole data path: sizes around every threshold, ranges,
inline objects, overwrite."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest
from support.fakes import body_of

from kurastore.gateway.objects.api import SSE_S3, ByteRange, CopySource, EncryptionSpec, PutOptions
from kurastore.gateway.objects.errors import DataLost, IncompleteBody, InvalidRange
from kurastore.metadata import BucketNotFound, ObjectNotFound

from .conftest import KiB, MiB, random_bytes

INLINE = 64 * KiB
STRIPE = 1 * MiB


@pytest.mark.parametrize(
    "size",
    [0, 1, INLINE - 1, INLINE, INLINE + 1, STRIPE - 1, STRIPE, STRIPE + 1, 10_000_000],
)
async def test_round_trip(cluster, size):
    data = random_bytes(size)
    version = await cluster.put("k", data, chunk=100_000)
    assert version.size == size
    assert version.etag == hashlib.md5(data).hexdigest()
    assert await cluster.read("k") == data
    head = await cluster.service.head_object("b", "k")
    assert (head.size, head.etag) == (size, version.etag)
    on_pods = cluster.pods.shard_names(version.object_id)
    if size <= INLINE:
        assert version.inline == data and on_pods == []
    else:
        assert version.inline is None
        assert len(on_pods) == 6  # one shard per block index, one per pod
        assert {pod for pod, _ in on_pods} == {f"pod-{i}" for i in range(6)}


async def test_inline_decision_without_content_length(cluster):
    small = random_bytes(INLINE)
    version = await cluster.put("small", small)
    assert version.inline == small
    big = random_bytes(INLINE + 1)
    version = await cluster.put("big", big, content_length=None)
    assert version.inline is None
    assert await cluster.read("big") == big


async def test_stated_length_is_enforced(cluster):
    data = random_bytes(3 * STRIPE)
    with pytest.raises(IncompleteBody):
        await cluster.put("short", data, content_length=len(data) + 1)
    with pytest.raises(IncompleteBody):
        await cluster.put("long", data, content_length=len(data) - 1)
    with pytest.raises(IncompleteBody):
        await cluster.put("tiny", b"abc", content_length=4)
    for key in ("short", "long", "tiny"):
        with pytest.raises(ObjectNotFound):
            await cluster.service.head_object("b", key)
    # Nothing pending; every shard sent is queued for collection.
    assert await cluster.store.stale_writes(float("inf")) == []


async def test_put_into_missing_bucket(cluster):
    with pytest.raises(BucketNotFound):
        await cluster.put("k", b"x" * 100_000, bucket="nope")


@pytest.mark.parametrize("size", [1, 5_000, 3 * STRIPE + 12_345])
async def test_ranges(make_cluster, size):
    # Small stripes and small read batches: ranges cross stripes and batches.
    cluster = await make_cluster(stripe_size=16 * KiB, inline_threshold_bytes=0,
                                 read_batch_bytes=8 * KiB)
    data = random_bytes(size)
    await cluster.put("k", data, chunk=7_000)
    cases = [(0, 0), (0, size - 1), (size - 1, size - 1), (0, size + 100)]
    if size > 10:
        cases += [(1, size - 2), (size // 3, size // 2), (size // 2, None), (None, 7)]
    if size > 40 * KiB:
        cases += [(16 * KiB - 1, 16 * KiB), (4 * KiB, 4 * KiB + 1), (20 * KiB, 50 * KiB)]
    for start, end in cases:
        reader = await cluster.service.open_object("b", "k", byte_range=ByteRange(start, end))
        got = b"".join([bytes(p) async for p in reader])
        if start is None:
            want = data[-end:]
        else:
            want = data[start : (size if end is None else end + 1)]
        assert got == want, (start, end)
        assert reader.is_partial and reader.length == len(want)
        assert reader.start == (size - len(want) if start is None else start)


async def test_range_reads_only_needed_bytes(make_cluster):
    cluster = await make_cluster(stripe_size=64 * KiB, inline_threshold_bytes=0)
    data = random_bytes(40 * 64 * KiB)
    await cluster.put("k", data)
    before = cluster.pods.bytes_read
    assert await cluster.read("k", byte_range=ByteRange(100_000, 100_099)) == data[100_000:100_100]
    # One block (16 KiB payload + header) of one stripe, not the object.
    assert cluster.pods.bytes_read - before <= 16 * KiB + 64


async def test_invalid_ranges(cluster):
    await cluster.put("k", b"0123456789")
    await cluster.put("empty", b"")
    for bad in (ByteRange(10, 20), ByteRange(10, None), ByteRange(None, 0)):
        with pytest.raises(InvalidRange) as info:
            await cluster.service.open_object("b", "k", byte_range=bad)
        assert info.value.size == 10
    with pytest.raises(InvalidRange):
        await cluster.service.open_object("b", "empty", byte_range=ByteRange(0, 0))
    # Suffix longer than the object: the whole object; end before start: ignored.
    assert await cluster.read("k", byte_range=ByteRange(None, 50)) == b"0123456789"
    reader = await cluster.service.open_object("b", "k", byte_range=ByteRange(5, 2))
    assert not reader.is_partial and reader.length == 10
    assert await cluster.read("empty") == b""


async def test_overwrite_replaces_and_queues_old_shards(cluster):
    first = await cluster.put("k", random_bytes(2 * STRIPE))
    second_data = random_bytes(STRIPE + 7)
    second = await cluster.put("k", second_data)
    assert first.object_id != second.object_id
    assert await cluster.read("k") == second_data
    due = await cluster.store.take_collect(float("inf"))
    assert first.object_id in {ref.object_id for _id, ref in due}


async def test_open_missing_key(cluster):
    with pytest.raises(ObjectNotFound):
        await cluster.service.open_object("b", "nope")


async def test_body_as_memoryviews(cluster):
    data = random_bytes(STRIPE * 2 + 3)

    async def views():
        buf = memoryview(bytearray(data))
        for i in range(0, len(data), 300_000):
            yield buf[i : i + 300_000]

    from kurastore.gateway.objects.api import PutOptions

    await cluster.service.put_object("b", "v", views(), PutOptions(content_length=len(data)))
    assert await cluster.read("v") == data


async def test_checksums_computed_and_check_called(cluster):
    import base64
    import zlib

    from kurastore.gateway.objects.api import PutOptions

    data = random_bytes(3 * STRIPE + 5)
    seen = []
    version = await cluster.service.put_object(
        "b", "c", body_of(data),
        PutOptions(checksum_algorithms=("CRC32", "SHA256"), check=seen.append),
    )
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert version.checksums == {"CRC32": crc, "SHA256": sha}
    assert seen[0].size == len(data) and seen[0].md5 == hashlib.md5(data).digest()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "sse-s3"])
async def test_a_damaged_inline_record_is_never_served(cluster, tmp_path, encrypted):
    """Inline bytes live in the metadata record, with no frame hash: one bit flipped
    there on disk must answer DataLost before a reader exists, never wrong bytes
    (found by flipping a byte of metadata.db under a stopped server)."""
    data = random_bytes(20_000)
    opts = {"encryption": EncryptionSpec(SSE_S3)} if encrypted else {}
    version = await cluster.put("small", data, **opts)
    assert version.inline is not None
    assert await cluster.read("small") == data
    damaged = bytearray(version.inline)
    damaged[1234] ^= 0x01
    conn = sqlite3.connect(tmp_path / "meta0.db")  # what bitrot on the volume does
    with conn:
        conn.execute("UPDATE versions SET inline = ?", (bytes(damaged),))
    conn.close()
    with pytest.raises(DataLost):
        await cluster.read("small")
    with pytest.raises(DataLost):
        await cluster.read("small", byte_range=ByteRange(0, 10))
    with pytest.raises(DataLost):  # nor copied elsewhere as if it were good
        await cluster.service.copy_object(CopySource("b", "small"), "b", "copy",
                                          PutOptions(), replace_metadata=False)
