"""Hung pods (they take the request and never answer, as after SIGSTOP) cost a
client a bounded, small wait, not pod_timeout_s: hedged reads, bounded write
stragglers, suspect pods skipped, and recovery when the pod answers again.

Every cluster here has pod_timeout_s=30: any test that waited on it would fail
its time bound."""

from __future__ import annotations

import asyncio
import time

import pytest

from kurastore.gateway.objects.api import ByteRange
from kurastore.gateway.objects.errors import DataUnavailable, QuorumNotReached
from kurastore.metadata import ObjectNotFound

from .conftest import KiB, MiB, random_bytes

SIZE = 3 * MiB + 12_345  # four stripes of a 4+2 code with 1 MiB stripes
PATIENT = {"pod_timeout_s": 30.0}


def holders_of(cluster, version) -> list[str]:
    """Pod ids holding block 0..k+m-1 of the version, in block order."""
    return list(cluster.topology.current.pods_for(version.partition, version.k + version.m))


async def timed(awaitable):
    started = time.monotonic()
    result = await awaitable
    return result, time.monotonic() - started


async def heal_items(cluster):
    return [item for _id, item in await cluster.store.take_heal(1000)]


# --- reads -----------------------------------------------------------------------------


@pytest.mark.parametrize("blocks", [(0, 2), (1, 4), (3,)], ids=["two-data", "data+parity", "one"])
async def test_get_with_up_to_m_hung_pods_returns_exact_bytes_quickly(make_cluster, blocks):
    cluster = await make_cluster(**PATIENT)
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    holders = holders_of(cluster, version)
    cluster.pods.hang(*(holders[b] for b in blocks))
    got, elapsed = await timed(cluster.read("k"))
    assert got == data
    # One hedge delay (0.5 s) per hung pod that had to be read around, at most.
    assert elapsed < 1.0 + 0.5 * len(blocks), elapsed
    stats = cluster.service.stats
    assert stats.degraded_reads == 1
    assert stats.degraded_stripes == 4
    assert stats.hedged_reads >= 1
    queued = {(i.index, i.reason) for i in await heal_items(cluster)}
    assert {(b, "unreachable") for b in blocks if b < 4} <= queued


async def test_ranged_get_inside_one_hung_block_decodes_from_the_others(make_cluster):
    cluster = await make_cluster(**PATIENT)
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    cluster.pods.hang(holders_of(cluster, version)[1])

    first = MiB + 256 * KiB + 10  # inside block 1 of stripe 1
    got, elapsed = await timed(cluster.read("k", byte_range=ByteRange(first, first + 999)))
    assert got == data[first : first + 1000]
    assert elapsed < 1.5, elapsed


async def test_suspect_pods_are_read_around_without_a_new_wait(make_cluster):
    cluster = await make_cluster(**PATIENT)
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    holders = holders_of(cluster, version)
    hung = [cluster.pods.pod(holders[b]) for b in (0, 2)]
    cluster.pods.hang(*(p.pod_id for p in hung))
    await cluster.read("k")  # pays the hedge delay once, marks both pods suspect
    hedged = cluster.service.stats.hedged_reads
    calls = [p.calls for p in hung]
    for _ in range(3):
        got, elapsed = await timed(cluster.read("k"))
        assert got == data
        assert elapsed < 0.45, elapsed  # below one hedge delay (0.5 s)
    assert [p.calls for p in hung] == calls  # no request even reached them
    assert cluster.service.stats.hedged_reads == hedged
    assert cluster.service.stats.degraded_reads == 4


async def test_more_than_m_hung_pods_is_data_unavailable_after_the_timeout(make_cluster):
    cluster = await make_cluster(pod_timeout_s=1.0)
    version = await cluster.put("k", random_bytes(SIZE))
    cluster.pods.hang(*holders_of(cluster, version)[:3])
    with pytest.raises(DataUnavailable):
        await cluster.read("k")


async def test_more_than_m_pods_known_hung_answer_within_the_suspect_timeout(make_cluster):
    # pod_timeout_s stays 30: only the suspect pods' shorter deadline can end the read.
    cluster = await make_cluster(**PATIENT, suspect_read_timeout_s=1.0)
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    hung = holders_of(cluster, version)[:3]
    cluster.pods.hang(*hung)
    for pod_id in hung:  # as earlier requests to them would have left the tracker
        cluster.service.health.failed(cluster.pods.pod(pod_id).url, "did not answer")
    started = time.monotonic()
    with pytest.raises(DataUnavailable):
        await asyncio.wait_for(cluster.read("k"), 10)
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed  # one suspect deadline (plus a hedge delay), not 30 s
    cluster.pods.revive(*hung)
    assert await cluster.read("k") == data  # answering again: read as before


async def test_hung_pods_cost_one_pod_timeout_not_one_per_cooldown(make_cluster):
    # Found on a live server with three of six pods stopped: every GET took the full
    # pod_timeout_s, because the cool-down (shorter) had run out by the next request.
    cluster = await make_cluster(pod_timeout_s=3.0, suspect_read_timeout_s=0.5,
                                 suspect_cooldown_s=0.2)
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    hung = holders_of(cluster, version)[:3]
    cluster.pods.hang(*hung)
    with pytest.raises(DataUnavailable):  # the first finds out: one pod_timeout_s
        await asyncio.wait_for(cluster.read("k"), 10)
    for _ in range(2):
        await asyncio.sleep(0.5)  # the cool-down has run out: the pods are probed
        assert not any(cluster.service.health.is_suspect(cluster.pods.pod(p).url)
                       for p in hung)
        started = time.monotonic()
        with pytest.raises(DataUnavailable):
            await asyncio.wait_for(cluster.read("k"), 10)
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, elapsed  # the suspect deadline (and a hedge), not 3 s
    cluster.pods.revive(*hung)
    assert await cluster.read("k") == data


async def test_a_slow_pod_is_hedged_but_a_merely_slower_one_is_not(make_cluster):
    cluster = await make_cluster(**PATIENT)
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    holders = holders_of(cluster, version)
    slower = cluster.pods.pod(holders[0])
    slower.delay_s = 0.1  # answers, a bit late: below the hedge delay
    assert await cluster.read("k") == data
    assert cluster.service.stats.hedged_reads == 0
    assert cluster.service.stats.degraded_reads == 0
    slower.delay_s = 5.0  # now far beyond it: parity wins, the pod becomes suspect
    got, elapsed = await timed(cluster.read("k"))
    assert got == data and elapsed < 1.5
    assert cluster.service.stats.degraded_reads == 1
    assert cluster.service.health.is_suspect(slower.url)


async def test_reads_use_the_pod_again_after_its_cooldown(make_cluster):
    cluster = await make_cluster(**PATIENT, suspect_cooldown_s=0.3)
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    pod = cluster.pods.pod(holders_of(cluster, version)[1])
    cluster.pods.hang(pod.pod_id)
    assert await cluster.read("k") == data
    cluster.pods.revive(pod.pod_id)
    assert await cluster.read("k") == data  # still suspect: read around
    assert cluster.service.stats.degraded_reads == 2
    await asyncio.sleep(0.35)
    reads = pod.reads
    assert await cluster.read("k") == data
    assert pod.reads > reads
    assert cluster.service.stats.degraded_reads == 2  # all data blocks again
    assert not cluster.service.health.is_suspect(pod.url)


# --- writes ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [200 * KiB, SIZE, 6 * MiB], ids=["one-stripe", "4", "6"])
@pytest.mark.parametrize("how", ["hang", "stall_commit"])
async def test_put_with_one_hung_pod_completes_in_bounded_time(make_cluster, size, how):
    cluster = await make_cluster(**PATIENT)
    pod = cluster.pods.pod(2)
    if how == "hang":
        cluster.pods.hang(2)  # stalled from the start
    else:
        pod.stall_commit = True  # takes the whole body, then never answers
    data = random_bytes(size)
    version, elapsed = await timed(cluster.put("k", data))
    assert elapsed < 2.5, elapsed
    index = holders_of(cluster, version).index(pod.pod_id)
    assert [(i.index, i.reason) for i in await heal_items(cluster)] == [(index, "unreachable")]
    assert cluster.service.stats.stalled_shards == 1
    cluster.pods.revive(2)
    assert await cluster.read("k") == data
    assert pod.pod_id not in {p for p, _name in cluster.pods.shard_names(version.object_id)}


# Up to 2 MiB a part is sent in one burst (burst.py), above it streamed (fanout.py).
WRITE_SIZES = pytest.mark.parametrize("size", [1 * MiB, SIZE], ids=["burst", "streamed"])


@WRITE_SIZES
@pytest.mark.parametrize("hung", [2, 3], ids=["m", "m+1"])
async def test_put_without_quorum_fails_in_bounded_time_and_leaves_nothing(
    make_cluster, hung, size
):
    cluster = await make_cluster(**PATIENT)  # quorum k+1 = 5 of 6
    cluster.pods.hang(*range(hung))
    with pytest.raises(QuorumNotReached):
        await asyncio.wait_for(cluster.put("k", random_bytes(size)), timeout=2.5)
    with pytest.raises(ObjectNotFound):
        await cluster.service.head_object("b", "k")
    assert await cluster.store.stale_writes(float("inf")) == []
    assert cluster.service.stats.quorum_failures == 1


@WRITE_SIZES
async def test_next_put_tries_a_suspect_pod_but_barely_waits(make_cluster, size):
    cluster = await make_cluster(**PATIENT)
    pod = cluster.pods.pod(4)
    cluster.pods.hang(4)
    await cluster.put("k1", random_bytes(size))
    assert cluster.service.health.is_suspect(pod.url)
    calls = pod.calls
    data = random_bytes(size, seed=7)
    _version, elapsed = await timed(cluster.put("k2", data))
    assert elapsed < 0.8, elapsed  # suspect_grace_s (0.25 s), not the 1 s grace
    assert pod.calls > calls  # it was tried
    assert await cluster.read("k2") == data


async def test_a_write_that_succeeds_clears_the_suspicion(make_cluster):
    cluster = await make_cluster(**PATIENT)  # cool-down 10 s: only a success clears it
    data = random_bytes(SIZE)
    version = await cluster.put("k", data)
    pod = cluster.pods.pod(holders_of(cluster, version)[0])
    cluster.pods.hang(pod.pod_id)
    assert await cluster.read("k") == data
    assert cluster.service.health.is_suspect(pod.url)
    cluster.pods.revive(pod.pod_id)
    await cluster.put("k2", random_bytes(SIZE, seed=3))  # the write probes the pod
    assert not cluster.service.health.is_suspect(pod.url)
    degraded = cluster.service.stats.degraded_reads
    assert await cluster.read("k") == data
    assert cluster.service.stats.degraded_reads == degraded


async def test_uniformly_slow_pods_are_not_dropped(make_cluster):
    """Every pod is slow: nobody is behind the others, so nobody is dropped."""
    cluster = await make_cluster(**PATIENT, stripes_in_flight=1)
    for pod in cluster.pods.pods:
        pod.delay_s = 1.2  # longer than the 1 s grace, but the same for all
    data = random_bytes(2 * MiB)
    version = await cluster.put("k", data)
    assert len(cluster.pods.shard_names(version.object_id)) == 6
    assert cluster.service.stats.stalled_shards == 0


# --- status ------------------------------------------------------------------------------


async def test_status_probes_do_not_wait_on_a_hung_pod(make_cluster):
    cluster = await make_cluster(**PATIENT, status_timeout_s=0.3)
    version = await cluster.put("k", random_bytes(SIZE))
    pod = cluster.pods.pod(holders_of(cluster, version)[0])
    cluster.pods.hang(pod.pod_id)
    (ready, detail), elapsed = await timed(cluster.service.readiness())
    assert ready and detail["pods_ready"] == 5
    assert elapsed < 1.0, elapsed
    await cluster.read("k")
    summary = await cluster.service.cluster_status()
    suspects = [p["pod_id"] for p in summary["pods"] if p["suspect"]]
    assert suspects == [pod.pod_id]
    assert summary["hedged_reads"] >= 1
