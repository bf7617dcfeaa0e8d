"""The gateway-wide read budget: what all GETs together may hold in large batches."""

from __future__ import annotations

import asyncio
import hashlib
import os

from kurastore.gateway.objects.budget import ReadBudget

MiB = 1 << 20


def test_takes_up_to_the_limit_and_cuts_oversized_charges() -> None:
    budget = ReadBudget(10)
    assert budget.try_take(6) == 6
    assert budget.try_take(5) == 0  # would pass the limit: nothing taken
    assert budget.held == 6
    budget.give(6)
    assert budget.try_take(100) == 10  # a charge above the budget is cut to it
    assert budget.try_take(1) == 0
    budget.give(10)
    assert budget.held == 0


async def test_concurrent_gets_stay_within_the_budget_and_read_exact_bytes(make_cluster):
    # 3 MiB for every GET together: each 6 MiB object is six 1 MiB stripes, read in
    # batches of two (512 KiB per pod request), so at most one batch fits at a time.
    cluster = await make_cluster(read_buffer_bytes=3 * MiB, read_batch_bytes=512 << 10)
    bodies = {f"o{i}": os.urandom(6 * MiB) for i in range(6)}
    for key, data in bodies.items():
        await cluster.put(key, data)
    budget = cluster.service._ctx.read_budget
    peak = 0

    async def read(key: str) -> str:
        nonlocal peak
        reader = await cluster.service.open_object("b", key)
        digest = hashlib.md5()
        async for piece in reader:
            peak = max(peak, budget.held)
            digest.update(piece)
            await asyncio.sleep(0.001)  # a client taking its time
        return digest.hexdigest()

    reads_before = sum(pod.reads for pod in cluster.pods.pods)
    digests = await asyncio.gather(*(read(key) for key in bodies for _ in range(2)))
    assert digests == [hashlib.md5(bodies[key]).hexdigest() for key in bodies for _ in range(2)]
    assert 0 < peak <= budget.limit
    assert budget.held == 0  # every charge given back
    # Twelve GETs of three 2-stripe batches each would make 36 pod requests per data
    # block; the GETs the budget turned away read stripe by stripe, so there were more.
    reads = sum(pod.reads for pod in cluster.pods.pods) - reads_before
    assert reads > 12 * 3 * 4


async def test_with_room_a_get_reads_in_batches_and_ahead(make_cluster):
    cluster = await make_cluster(read_batch_bytes=512 << 10)
    await cluster.put("k", os.urandom(8 * MiB))
    reads_before = sum(pod.reads for pod in cluster.pods.pods)
    budget = cluster.service._ctx.read_budget
    reader = await cluster.service.open_object("b", "k")
    pieces = aiter(reader)
    await anext(pieces)
    assert budget.held > 2 * MiB  # the batch being read and the one fetched ahead
    await asyncio.sleep(0.05)  # the batch ahead finishes its reads; no third one starts
    assert sum(pod.reads for pod in cluster.pods.pods) - reads_before == 2 * 4
    await reader.aclose()
    assert budget.held == 0  # a GET dropped midway gives its charges back
