"""Server-side encryption in the object service: keys sealed per object, ciphertext on
the pods, exact plaintext back through ranges, parts, copies and degraded reads."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import pytest
from support.fakes import body_of

from kurastore.gateway.objects.api import (
    SSE_C,
    SSE_KMS,
    SSE_S3,
    ByteRange,
    CompletedPart,
    CopySource,
    EncryptionSpec,
    PutOptions,
)
from kurastore.gateway.objects.encryption import Keyring, keystream_xor
from kurastore.gateway.objects.errors import KeyMismatch, KeyNotExpected, KeyRequired

from .conftest import CLUSTER_KEY, KiB, MiB, random_bytes

CUSTOMER_KEY = bytes(range(100, 132))
SSE_C_SPEC = EncryptionSpec(SSE_C, customer_key=CUSTOMER_KEY)


def test_the_key_stream_is_positional():
    """Any slice encrypts to the same bytes as that slice of the whole: a range or a
    stripe needs nothing before it. CTR is its own inverse."""
    key, data = os.urandom(32), os.urandom(10_000)
    whole = keystream_xor(key, "0", 0, data)
    assert whole != data
    for start, end in [(0, 1), (7, 33), (16, 48), (4095, 9999), (9999, 10_000)]:
        assert keystream_xor(key, "0", start, data[start:end]) == whole[start:end]
    assert keystream_xor(key, "0", 0, whole) == data
    # Another part label or key gives another stream.
    assert keystream_xor(key, "p1-aa", 0, data) != whole
    assert keystream_xor(os.urandom(32), "0", 0, data) != whole


@pytest.mark.parametrize("spec", [EncryptionSpec(SSE_S3), EncryptionSpec(SSE_KMS, kms_key_id="k1"),
                                  SSE_C_SPEC], ids=["sse-s3", "sse-kms", "sse-c"])
def test_a_sealed_data_key_opens_only_for_its_object(spec):
    ring = Keyring(CLUSTER_KEY)
    data_key, record = ring.seal_new(spec, "a" * 32)
    assert data_key.hex() not in repr(record) and len(data_key) == 32
    assert ring.open(record, "a" * 32, spec.customer_key) == data_key
    # Another gateway of the same cluster opens it too.
    assert Keyring(CLUSTER_KEY).open(record, "a" * 32, spec.customer_key) == data_key
    with pytest.raises(KeyMismatch):  # the record copied onto another object
        ring.open(record, "b" * 32, spec.customer_key)
    if spec.mode != SSE_C:
        with pytest.raises(KeyMismatch):  # another cluster's key
            Keyring(os.urandom(32)).open(record, "a" * 32, None)


def test_kms_key_ids_and_contexts_are_bound():
    ring = Keyring(CLUSTER_KEY)
    _key, record = ring.seal_new(EncryptionSpec(SSE_KMS, kms_key_id="k1", kms_context="e30="),
                                 "a" * 32)
    assert record["kms_key_id"] == "k1"
    with pytest.raises(KeyMismatch):
        ring.open({**record, "kms_key_id": "k2"}, "a" * 32, None)
    with pytest.raises(KeyMismatch):
        ring.open({**record, "kms_context": ""}, "a" * 32, None)


def test_an_sse_c_record_keeps_only_the_key_md5():
    ring = Keyring(CLUSTER_KEY)
    _key, record = ring.seal_new(SSE_C_SPEC, "a" * 32)
    assert CUSTOMER_KEY.hex() not in str(record) and "key_md5" in record
    with pytest.raises(KeyRequired):
        ring.open(record, "a" * 32, None)
    with pytest.raises(KeyMismatch):
        ring.open(record, "a" * 32, os.urandom(32))
    assert "customer_key" not in repr(SSE_C_SPEC)  # never in a log line


def _stored_bytes(cluster, object_id: str) -> bytes:
    return b"".join(data for pod in cluster.pods.pods for key, data in pod.shards.items()
                    if key[1].startswith(object_id))


@pytest.mark.parametrize("size", [0, 100, 3 * KiB, 2 * MiB + 12_345])
async def test_encrypted_objects_read_back_exact_and_pods_hold_ciphertext(cluster, size):
    marker = b"kurastore-plaintext-marker"
    data = (marker * (size // len(marker) + 1))[:size]
    version = await cluster.put("k", data, encryption=EncryptionSpec(SSE_S3))
    assert version.encryption["mode"] == SSE_S3
    assert version.etag == hashlib.md5(data).hexdigest()  # of the plaintext
    assert await cluster.read("k") == data
    if version.inline is not None:
        assert size == 0 or marker not in version.inline
    elif size:
        stored = _stored_bytes(cluster, version.object_id)
        assert len(stored) >= size and marker not in stored
    if size > 100:
        for start, end in [(1, 17), (15, size // 2), (size - 33, size - 1)]:
            got = await cluster.read("k", byte_range=ByteRange(start, end))
            assert got == data[start:end + 1]


async def test_the_same_body_in_clear_is_visible_on_the_pods(cluster):
    """The check above can fail: without encryption the marker is found."""
    data = b"kurastore-plaintext-marker" * 40_000
    version = await cluster.put("k", data)
    assert b"kurastore-plaintext-marker" in _stored_bytes(cluster, version.object_id)


async def test_sse_c_needs_the_right_key_to_read(cluster):
    data = random_bytes(300 * KiB)
    await cluster.put("k", data, encryption=SSE_C_SPEC)
    with pytest.raises(KeyRequired):
        await cluster.read("k")
    with pytest.raises(KeyMismatch):
        await cluster.read("k", customer_key=os.urandom(32))
    with pytest.raises(KeyRequired):
        await cluster.service.head_object("b", "k", verify_key=True)
    head = await cluster.service.head_object("b", "k")  # tags, ACLs: no key needed
    assert head.size == len(data)
    assert await cluster.read("k", customer_key=CUSTOMER_KEY) == data


async def test_a_customer_key_for_an_unencrypted_object_is_refused(cluster):
    await cluster.put("k", b"x" * 100)
    with pytest.raises(KeyNotExpected):
        await cluster.read("k", customer_key=CUSTOMER_KEY)


async def test_degraded_reads_of_encrypted_objects_are_exact(cluster):
    data = random_bytes(3 * MiB + 77)
    version = await cluster.put("k", data, encryption=EncryptionSpec(SSE_S3))
    holders = list(cluster.topology.current.pods_for(version.partition, version.k + version.m))
    cluster.pods.kill(holders[0])
    cluster.pods.corrupt(holders[1], version.object_id, 100)
    assert await cluster.read("k") == data
    assert cluster.service.stats.degraded_reads == 1


async def test_multipart_parts_share_the_uploads_key_with_their_own_streams(cluster):
    svc = cluster.service
    upload = await svc.create_upload("b", "mp", PutOptions(encryption=SSE_C_SPEC))
    assert upload.encryption["mode"] == SSE_C
    parts = [random_bytes(5 * MiB, seed=3), random_bytes(MiB + 5, seed=4)]
    done = []
    for number, body in enumerate(parts, 1):
        with pytest.raises(KeyRequired):
            await svc.upload_part("b", "mp", upload.upload_id, number, body_of(body),
                                  PutOptions(content_length=len(body)))
        record = await svc.upload_part("b", "mp", upload.upload_id, number, body_of(body),
                                       PutOptions(content_length=len(body),
                                                  encryption=SSE_C_SPEC))
        done.append(CompletedPart(number, record.part.etag))
    with pytest.raises(KeyMismatch):
        await svc.complete_upload("b", "mp", upload.upload_id, done,
                                  customer_key=os.urandom(32))
    version = await svc.complete_upload("b", "mp", upload.upload_id, done)
    assert version.encryption == upload.encryption
    whole = b"".join(parts)
    assert await cluster.read("mp", customer_key=CUSTOMER_KEY) == whole
    assert await cluster.read("mp", customer_key=CUSTOMER_KEY, part_number=2) == parts[1]
    cross = ByteRange(5 * MiB - 1000, 5 * MiB + 1000)
    assert await cluster.read("mp", customer_key=CUSTOMER_KEY, byte_range=cross) == \
        whole[5 * MiB - 1000:5 * MiB + 1001]


async def test_a_copy_decrypts_its_source_and_encrypts_as_asked(cluster):
    data = random_bytes(700 * KiB)
    await cluster.put("src", data, encryption=SSE_C_SPEC)
    source = CopySource("b", "src")
    with pytest.raises(KeyRequired):
        await cluster.service.copy_object(source, "b", "dst", PutOptions(),
                                          replace_metadata=False)
    copied = await cluster.service.copy_object(
        dataclasses.replace(source, customer_key=CUSTOMER_KEY), "b", "dst",
        PutOptions(encryption=EncryptionSpec(SSE_KMS, kms_key_id="k2")), replace_metadata=False)
    assert copied.encryption["mode"] == SSE_KMS and copied.encryption["kms_key_id"] == "k2"
    assert await cluster.read("dst") == data
    plain = await cluster.service.copy_object(
        dataclasses.replace(source, customer_key=CUSTOMER_KEY), "b", "plain", PutOptions(),
        replace_metadata=False)
    assert plain.encryption == {}
    assert await cluster.read("plain") == data
