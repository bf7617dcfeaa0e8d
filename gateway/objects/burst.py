"""Burst writes: a small part's k+m shards sent in one go (PodClient.put_shards).

Rules:
- Used for a part whose length is known and at most `ObjectConfig.burst_bytes`: the
  body is received whole (a few stripes, the memory a streamed write holds anyway),
  hashed and encoded on the burst thread that then sends every shard at once, each in
  one request with its Content-Length.
- The same guarantees as the streamed write of fanout.py: write quorum, a pod that is
  behind waited on only for the straggler grace once another shard is stored (a
  suspect pod for suspect_grace_s at most), pod_timeout_s as the hard bound, every
  drop and every stored shard told to the health tracker.
- The burst runs to its end even when the request is cancelled (shielded), so the
  caller's abort never races shards still being written.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import AsyncIterable, Sequence

from kurastore.erasure import ErasureParams, encode_stripe_parts, frame_owner
from kurastore.gateway.objects.context import ObjectContext
from kurastore.gateway.objects.encryption import PartKey, keystream_xor
from kurastore.gateway.objects.errors import IncompleteBody, QuorumNotReached
from kurastore.gateway.objects.executor import shielded
from kurastore.gateway.objects.hashing import BodyHasher
from kurastore.storage import PodError, PodTimedOut, PodUnavailable, ShardId, ShardInfo, ShardPut

log = logging.getLogger(__name__)

Pieces = list[bytes | memoryview]


async def receive_whole(body: AsyncIterable[bytes | memoryview], length: int) -> bytes | memoryview:
    """The whole body, which must be exactly `length` bytes (IncompleteBody otherwise)."""
    chunks: list[bytes | memoryview] = []
    received = 0
    async for chunk in body:
        received += len(chunk)
        if received > length:
            raise IncompleteBody(f"body longer than the stated {length} bytes")
        if chunk:
            chunks.append(chunk)
    if received != length:
        raise IncompleteBody(f"got {received} of {length} bytes")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def hash_and_encode(
    params: ErasureParams, data: bytes | memoryview, hasher: BodyHasher, key: PartKey | None,
    owner: bytes,
) -> list[Pieces]:
    """Hash `data`, then cut it into stripes, encrypt them under `key` if given and encode
    them, bound to `owner`: per block index, the frames of that shard as buffers to send
    back to back.
    Runs on a burst thread (hashlib, AES and the codec release the GIL)."""
    hasher.update_here(data)
    view = memoryview(data).cast("B")
    shards: list[Pieces] = [[] for _ in range(params.width)]
    for stripe_no, offset in enumerate(range(0, view.nbytes, params.stripe_size)):
        stripe: bytes | memoryview = view[offset : offset + params.stripe_size]
        if key is not None:
            stripe = keystream_xor(key.data_key, key.label, offset, stripe)
        frames = encode_stripe_parts(params, stripe_no, stripe, owner)
        for index, (header, payload) in enumerate(frames):
            shards[index] += (header, payload)
    return shards


async def write_burst(
    ctx: ObjectContext,
    *,
    params: ErasureParams,
    urls: Sequence[str | None],
    partition: int,
    object_id: str,
    shard_tag: str,
    data: bytes | memoryview,
    hasher: BodyHasher,
    key: PartKey | None,
) -> list[int]:
    """Store the part's shards on `urls` (block i on urls[i]). Returns the block indices
    not stored; raises QuorumNotReached when fewer than the write quorum were."""
    config, health = ctx.config, ctx.health
    puts = [
        ShardPut(url, partition, ShardId(object_id, shard_tag, index), (),
                 config.suspect_grace_s if health.is_suspect(url) else math.inf)
        for index, url in enumerate(urls)
    ]
    # Hashed and encoded on the thread that sends the shards: a hop of its own to the
    # CPU executor and back cost more than the encoding (two more wake-ups per object).
    results = await shielded(ctx.pods.put_shards(
        puts, timeout_s=config.pod_timeout_s, grace_s=config.straggler_grace_s,
        prepare=functools.partial(hash_and_encode, params, data, hasher, key,
                                  frame_owner(object_id, shard_tag)),
    ))
    missing: list[int] = []
    errors: list[PodError] = []
    for put, result in zip(puts, results, strict=True):
        if isinstance(result, ShardInfo):
            health.succeeded(put.url)
            continue
        log.warning("shard write %s to %s failed: %s", put.shard.name, put.url, result)
        missing.append(put.shard.index)
        errors.append(result)
        if isinstance(result, PodTimedOut):
            health.failed(put.url, "did not answer")
            ctx.stats.stalled_shards += 1
        elif isinstance(result, PodUnavailable):
            health.failed(put.url, "unreachable")
    quorum = min(config.write_quorum, params.width)
    stored = len(puts) - len(missing)
    if stored < quorum:
        reasons = "; ".join(str(error) for error in errors)
        raise QuorumNotReached(
            f"{stored} of {len(puts)} pods stored the shards, {quorum} needed ({reasons})"
        )
    return missing
