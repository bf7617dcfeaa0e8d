"""The scrubber against in-memory pods and the real SQLite store: flipped bytes and
missing shards are queued for the healer, orphans for the collector, durability
is measured, and a pod that does not answer is not called scrubbed."""

from __future__ import annotations

import os
import secrets
import time

from kurastore.gateway.maintenance.collect import collect_once
from kurastore.gateway.maintenance.scrub import Scrubber, ScrubSettings
from kurastore.metadata import PendingWrite
from kurastore.storage import ShardId

KiB = 1 << 10


async def heal_queue(cluster) -> list[tuple[str, int, str]]:
    return sorted((i.object_id, i.index, i.reason)
                  for _id, i in await cluster.store.take_heal(1000))


async def test_flipped_byte_is_found_queued_and_healed(cluster) -> None:
    versions = [await cluster.put(f"k{n}", os.urandom(150 * KiB)) for n in range(5)]
    bad = versions[2]
    original = cluster.shard(bad, 1)
    assert cluster.pods.corrupt(cluster.holders(bad)[1], bad.object_id, 16 * KiB + 500) == 1

    durability = await cluster.scrubber.scrub_pass()

    assert await heal_queue(cluster) == [(bad.object_id, 1, "corrupt")]
    assert durability.objects == {6: 4, 5: 1}
    assert durability.bytes == {6: 4 * 150 * KiB, 5: 150 * KiB}
    pod = cluster.scrubber.progress.pods[cluster.holders(bad)[1]]
    assert pod.corrupt == 1
    checked = sum(p.shards_checked for p in cluster.scrubber.progress.pods.values())
    assert checked == 5 * 6

    await cluster.heal_all()
    assert cluster.shard(bad, 1) == original
    assert (await cluster.scrubber.scrub_pass()).objects == {6: 5}
    assert await cluster.store.heal_queue_length() == 0


async def test_missing_shard_is_found(cluster) -> None:
    v = await cluster.put("k", os.urandom(100 * KiB))
    other = await cluster.put("other", os.urandom(100 * KiB))
    cluster.pods.drop_shards(cluster.holders(v)[5], v.object_id)
    cluster.pods.drop_shards(cluster.holders(v)[0], v.object_id)

    durability = await cluster.scrubber.scrub_pass()

    assert await heal_queue(cluster) == [(v.object_id, 0, "missing"), (v.object_id, 5, "missing")]
    assert durability.objects == {4: 1, 6: 1}
    assert cluster.scrubber.progress.pods[cluster.holders(v)[0]].missing == 1
    await cluster.heal_all()
    assert (await cluster.scrubber.scrub_pass()).objects == {6: 2}
    assert other.object_id  # untouched neighbour


async def test_wiped_pod_is_found_missing_everywhere(cluster) -> None:
    versions = [await cluster.put(f"k{n}", os.urandom(70 * KiB)) for n in range(8)]
    wiped = cluster.pods.pod(2)
    lost = dict(wiped.shards)
    assert lost  # with 6 pods and width 6 every object has a shard here
    wiped.shards.clear()
    await cluster.scrubber.scrub_pass()
    assert len(await heal_queue(cluster)) == len(versions)
    await cluster.heal_all()
    assert wiped.shards == lost


async def test_orphans_are_queued_for_the_collector(cluster) -> None:
    kept = await cluster.put("kept", os.urandom(100 * KiB))
    pmap = cluster.topology.current
    old_orphan, young_orphan = secrets.token_hex(16), secrets.token_hex(16)
    for oid, age in ((old_orphan, 7200.0), (young_orphan, 60.0)):
        partition = pmap.partition_of(oid)
        url = cluster.topology.url_of(pmap.pods_for(partition)[2])
        await cluster.pods.put_shard(url, partition, ShardId(oid, "0", 2), b"leftover")
        pod = cluster.pods.pod(url)
        pod.mtimes[(partition, f"{oid}.0.2")] = time.time() - age
    # A write still streaming is pinned by its pending record, however old.
    pending_oid = secrets.token_hex(16)
    partition = pmap.partition_of(pending_oid)
    url = cluster.topology.url_of(pmap.pods_for(partition)[0])
    await cluster.pods.put_shard(url, partition, ShardId(pending_oid, "0", 0), b"streaming")
    cluster.pods.pod(url).mtimes[(partition, f"{pending_oid}.0.0")] = time.time() - 7200
    await cluster.store.begin_write(PendingWrite(pending_oid, "0", "b", "w", partition,
                                                 pmap.epoch, 6, time.time() - 7200))

    await cluster.scrubber.scrub_pass()

    queued = [ref.object_id for _id, ref in await cluster.store.take_collect(time.time())]
    assert queued == [old_orphan]
    assert sum(p.orphans for p in cluster.scrubber.progress.pods.values()) == 1
    await collect_once(cluster.store, cluster.pods, cluster.topology)
    names = [name for _pod, name in cluster.pods.shard_names()]
    assert not any(n.startswith(old_orphan) for n in names)
    assert any(n.startswith(young_orphan) for n in names)
    assert any(n.startswith(pending_oid) for n in names)
    assert len(cluster.pods.shard_names(kept.object_id)) == 6
    assert await cluster.store.heal_queue_length() == 0  # the pending write is not "missing"


async def test_unanswering_pod_is_not_called_scrubbed(cluster) -> None:
    v = await cluster.put("k", os.urandom(100 * KiB))
    dead = cluster.holders(v)[3]
    cluster.pods.kill(dead)
    started = time.time()
    durability = await cluster.scrubber.scrub_pass(now=started)
    progress = cluster.scrubber.progress
    assert durability.objects == {5: 1}
    assert await cluster.store.heal_queue_length() == 0  # unknown is not missing
    assert progress.pods[dead].last_full_scrub is None
    assert progress.pods[cluster.holders(v)[0]].last_full_scrub == started
    ids = cluster.scrubber.pod_ids()
    assert progress.oldest_unscrubbed_s(ids, now=started + 5) >= 5
    cluster.pods.revive(dead)
    await cluster.scrubber.scrub_pass(now=started + 10)
    assert progress.oldest_unscrubbed_s(ids, now=started + 15) == 5


async def test_recent_write_is_not_judged(cluster) -> None:
    v = await cluster.put("k", os.urandom(100 * KiB))
    cluster.pods.drop_shards(cluster.holders(v)[0], v.object_id)
    # A pass whose listing started before the version was written says nothing of it:
    # its shards may have landed after the listing.
    early = Scrubber(cluster.store, cluster.pods, cluster.topology, ScrubSettings(rate_bytes_s=0),
                     clock=lambda: v.last_modified - 1)
    durability = await early.scrub_pass()
    assert await cluster.store.heal_queue_length() == 0
    assert durability.objects == {}
    await cluster.scrubber.scrub_pass()
    assert await cluster.store.heal_queue_length() == 1


async def test_write_landing_after_the_partition_listing_is_not_missing(cluster) -> None:
    """A pass lists partitions first; an object written right after lands in a
    partition that listing did not show: it must wait for the next pass."""
    pods = cluster.pods

    class ListThenWrite:
        def __getattr__(self, name: str):
            return getattr(pods, name)

        async def list_partitions(self, url: str) -> list[int]:
            found = await pods.list_partitions(url)
            if url == pods.pods[-1].url:  # the last pod listed: now a write lands
                await cluster.put("late", os.urandom(100 * KiB))
            return found

    racing = Scrubber(cluster.store, ListThenWrite(), cluster.topology,
                      ScrubSettings(rate_bytes_s=0))
    await racing.scrub_pass()
    assert await cluster.store.heal_queue_length() == 0
    assert (await cluster.scrubber.scrub_pass()).objects == {6: 1}
