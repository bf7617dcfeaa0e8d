"""Conditional reads and writes, and copies (with their own source conditions)."""

from __future__ import annotations

import pytest

from kurastore.gateway.objects.api import (
    CopySource,
    PutOptions,
    ReadConditions,
    WriteConditions,
)
from kurastore.gateway.objects.errors import NotModified
from kurastore.metadata import PreconditionFailed

from .conftest import MiB, random_bytes


async def test_read_conditions(cluster):
    v = await cluster.put("k", b"hello")
    svc = cluster.service
    t = v.last_modified
    ok = [
        ReadConditions(if_match=v.etag),
        ReadConditions(if_match=f'"{v.etag}"'),
        ReadConditions(if_match=f'"nope", "{v.etag}"'),
        ReadConditions(if_match="*"),
        ReadConditions(if_none_match='"other"'),
        ReadConditions(if_modified_since=t - 10),
        ReadConditions(if_unmodified_since=t + 10),
        # If-Match true overrides a failing If-Unmodified-Since.
        ReadConditions(if_match=v.etag, if_unmodified_since=t - 10),
        # If-None-Match false (no match) overrides a failing If-Modified-Since.
        ReadConditions(if_none_match='"other"', if_modified_since=t + 10),
    ]
    for cond in ok:
        reader = await svc.open_object("b", "k", conditions=cond)
        assert b"".join([bytes(p) async for p in reader]) == b"hello", cond
        await svc.head_object("b", "k", conditions=cond)
    failing = [
        ReadConditions(if_match='"nope"'),
        ReadConditions(if_unmodified_since=t - 10),
    ]
    for cond in failing:
        with pytest.raises(PreconditionFailed):
            await svc.open_object("b", "k", conditions=cond)
    not_modified = [
        ReadConditions(if_none_match=v.etag),
        ReadConditions(if_none_match="*"),
        ReadConditions(if_modified_since=t + 10),
        ReadConditions(if_modified_since=t),  # same second: not modified
        ReadConditions(if_none_match=f'"{v.etag}"', if_modified_since=t - 10),
    ]
    for cond in not_modified:
        with pytest.raises(NotModified) as info:
            await svc.head_object("b", "k", conditions=cond)
        assert info.value.version.etag == v.etag


async def test_conditional_writes(cluster):
    svc = cluster.service
    first = await cluster.put("k", b"one", conditions=WriteConditions(if_none_match="*"))
    with pytest.raises(PreconditionFailed):
        await cluster.put("k", b"two", conditions=WriteConditions(if_none_match="*"))
    with pytest.raises(PreconditionFailed):
        await cluster.put("k", random_bytes(MiB), conditions=WriteConditions(if_match="0" * 32))
    second = await cluster.put("k", random_bytes(MiB),
                               conditions=WriteConditions(if_match=first.etag))
    assert (await svc.head_object("b", "k")).etag == second.etag
    # If-None-Match with an etag refuses only the current version's etag.
    for refused in (second.etag, f'"{second.etag}"'):
        with pytest.raises(PreconditionFailed):
            await cluster.put("k", b"x", conditions=WriteConditions(if_none_match=refused))
    third = await cluster.put("k", b"three", conditions=WriteConditions(if_none_match=first.etag))
    assert (await svc.head_object("b", "k")).etag == third.etag
    # Nothing half-written remains from the refused writes.
    assert await cluster.store.stale_writes(float("inf")) == []


async def test_check_callback_refusal_aborts(cluster):
    class BadDigest(Exception):
        pass

    def refuse(_digest):
        raise BadDigest

    with pytest.raises(BadDigest):
        await cluster.put("k", random_bytes(2 * MiB), check=refuse)
    with pytest.raises(BadDigest):
        await cluster.put("small", b"abc", check=refuse)
    assert (await cluster.service.list_objects("b")).entries == ()
    assert await cluster.store.stale_writes(float("inf")) == []
    assert len(await cluster.store.take_collect(float("inf"))) == 1


@pytest.mark.parametrize("size", [10, 3 * MiB + 1])
async def test_copy_keeps_or_replaces_metadata(cluster, size):
    svc = cluster.service
    data = random_bytes(size)
    src = await cluster.put("src", data, content_type="text/x-src", user_meta={"a": "1"},
                            headers={"cache-control": "no-cache"}, tags={"t": "v"},
                            checksum_algorithms=("CRC32C",))
    copied = await svc.copy_object(CopySource("b", "src"), "b", "copy",
                                   PutOptions(content_type="ignored"), replace_metadata=False)
    assert copied.object_id != src.object_id
    assert (copied.etag, copied.size) == (src.etag, size)
    assert copied.content_type == "text/x-src" and dict(copied.user_meta) == {"a": "1"}
    assert dict(copied.headers) == {"cache-control": "no-cache"}
    assert dict(copied.tags) == {"t": "v"}
    assert copied.checksums == src.checksums
    assert await cluster.read("copy") == data
    replaced = await svc.copy_object(
        CopySource("b", "src"), "b", "src",
        PutOptions(content_type="text/new", user_meta={"b": "2"}), replace_metadata=True,
    )
    assert replaced.content_type == "text/new" and dict(replaced.user_meta) == {"b": "2"}
    assert await cluster.read("src") == data


async def test_copy_source_conditions_are_412(cluster):
    v = await cluster.put("src", b"data")
    svc = cluster.service
    for cond in (ReadConditions(if_none_match=v.etag), ReadConditions(if_match='"x"'),
                 ReadConditions(if_modified_since=v.last_modified + 5)):
        with pytest.raises(PreconditionFailed):
            await svc.copy_object(CopySource("b", "src", conditions=cond), "b", "dst",
                                  PutOptions(), replace_metadata=False)
